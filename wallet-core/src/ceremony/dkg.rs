//! The DKG ceremony: who takes part (their cards), its fingerprint, and the
//! three steps as authenticated documents.
//!
//! ```text
//! Ceremony::new(t, cards, nonce) ── people compare fingerprint() ──▶ confirm()
//! round1(confirmed)  → Round1Document   signed, broadcast to everyone
//! round2(round1 set) → Round2Document   per peer: signed, then sealed to it
//! finish(round1 set, round2 to me) → KeyShare, PublicGroup, Roster
//! ```
//!
//! Each participant's secret state between the steps lives in its keystore,
//! bound to the ceremony id (which covers every card). Round-2 shares are
//! bound to a digest of the round-1 set the sender saw, so an inconsistent
//! broadcast is detected instead of producing split groups.

use std::collections::BTreeMap;

use frost_core::Identifier;
use rand_core::{CryptoRng, RngCore};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{
    identifier_for, parse_secret, secret_json, Authored, CeremonyError, Fingerprint, IdentityCard,
    Role, Roster, RosterEntry, SealPurpose, SealedPart,
};
use crate::format::{DocumentBody, GroupId};
use crate::group::{check_threshold, KeyShare, Label, PublicGroup};
use crate::keygen::dkg::{
    self as frost_dkg, Round1Message, Round1Secret, Round2Message, Round2Secret,
};
use crate::keystore::{Keystore, SecretSlot, SessionId};
use crate::suite::{KuraSuite, SuiteId};
use crate::SecretBytes;

/// The inputs of a ceremony, as a document can carry them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CeremonyPlan {
    /// The threshold t.
    pub min_signers: u16,
    /// 32 random bytes the convener picked, hex.
    #[serde(with = "crate::format::hex_bytes")]
    pub nonce: Vec<u8>,
    /// Every member's card.
    pub members: Vec<IdentityCard>,
    /// The dealer's card, for a dealt group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dealer: Option<IdentityCard>,
}

/// A ceremony as every participant computes it from the same inputs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ceremony<C: KuraSuite> {
    min_signers: u16,
    nonce: [u8; 32],
    members: BTreeMap<Identifier<C>, IdentityCard>,
    dealer: Option<IdentityCard>,
    /// For a refresh DKG: the group (id) it refreshes.
    refreshes: Option<GroupId>,
    id: GroupId,
}

/// A ceremony whose fingerprint this participant confirmed. Only a
/// confirmed ceremony runs round 1 or deals shares.
#[derive(Clone, Debug)]
pub struct Confirmed<C: KuraSuite>(Ceremony<C>);

impl<C: KuraSuite> std::ops::Deref for Confirmed<C> {
    type Target = Ceremony<C>;
    fn deref(&self) -> &Ceremony<C> {
        &self.0
    }
}

impl<C: KuraSuite> Ceremony<C> {
    /// A DKG ceremony of `min_signers`-of-`cards.len()` signers.
    ///
    /// # Errors
    /// [`CeremonyError::Cards`] for a card that is not a signer's, two cards
    /// with one label or key, or a bad threshold.
    pub fn new(
        min_signers: u16,
        cards: Vec<IdentityCard>,
        nonce: [u8; 32],
    ) -> Result<Self, CeremonyError> {
        Self::build(min_signers, cards, None, nonce)
    }

    /// A trusted-dealer ceremony: like [`Ceremony::new`] with the dealer's
    /// card, which the fingerprint covers too.
    ///
    /// # Errors
    /// As [`Ceremony::new`], or a dealer card whose role is not `dealer`.
    pub fn with_dealer(
        min_signers: u16,
        cards: Vec<IdentityCard>,
        dealer: IdentityCard,
        nonce: [u8; 32],
    ) -> Result<Self, CeremonyError> {
        if dealer.role != Role::Dealer {
            return Err(CeremonyError::Cards(format!(
                "{}'s card is a {} card, not a dealer's",
                dealer.label, dealer.role
            )));
        }
        Self::build(min_signers, cards, Some(dealer), nonce)
    }

    /// Rebuilds a ceremony from its plan.
    ///
    /// # Errors
    /// As [`Ceremony::new`], or a nonce that is not 32 bytes.
    pub fn from_plan(plan: &CeremonyPlan) -> Result<Self, CeremonyError> {
        let nonce: [u8; 32] = plan
            .nonce
            .as_slice()
            .try_into()
            .map_err(|_| CeremonyError::Cards("the ceremony nonce is not 32 bytes".into()))?;
        match &plan.dealer {
            None => Self::new(plan.min_signers, plan.members.clone(), nonce),
            Some(d) => Self::with_dealer(plan.min_signers, plan.members.clone(), d.clone(), nonce),
        }
    }

    fn build(
        min_signers: u16,
        cards: Vec<IdentityCard>,
        dealer: Option<IdentityCard>,
        nonce: [u8; 32],
    ) -> Result<Self, CeremonyError> {
        let n = u16::try_from(cards.len()).unwrap_or(u16::MAX);
        check_threshold(min_signers, n).map_err(|e| CeremonyError::Cards(e.to_string()))?;
        let mut members = BTreeMap::new();
        let mut keys = std::collections::BTreeSet::new();
        if let Some(d) = &dealer {
            keys.insert(d.key.to_sec1());
        }
        for card in cards {
            if card.role != Role::Signer {
                return Err(CeremonyError::Cards(format!(
                    "{}'s card is a {} card, not a signer's",
                    card.label, card.role
                )));
            }
            if !keys.insert(card.key.to_sec1()) {
                return Err(CeremonyError::Cards(format!(
                    "{}'s identity key appears on two cards",
                    card.label
                )));
            }
            let id = identifier_for::<C>(&card.label)?;
            let label = card.label.clone();
            if members.insert(id, card).is_some() {
                return Err(CeremonyError::Cards(format!(
                    "two cards are labelled {label}"
                )));
            }
        }
        let id = Self::derive_id(min_signers, &members, dealer.as_ref(), None, &nonce);
        Ok(Ceremony {
            min_signers,
            nonce,
            members,
            dealer,
            refreshes: None,
            id,
        })
    }

    /// A refresh DKG of `group`: every member of the pinned roster (under
    /// its identifier in the group) draws a zero-sharing, so nobody — no
    /// proposer, no dealer — learns anyone's refreshing share, and every
    /// member takes part (the consent of all). The id and fingerprint cover
    /// the group fingerprint and the nonce.
    ///
    /// # Errors
    /// [`CeremonyError::Changed`] when the roster does not fit the group.
    pub fn for_refresh(
        group: &PublicGroup<C>,
        roster: &Roster<C>,
        nonce: [u8; 32],
    ) -> Result<Self, CeremonyError> {
        roster.identities(group)?;
        let members: BTreeMap<Identifier<C>, IdentityCard> = roster
            .members
            .iter()
            .map(|m| {
                (
                    m.participant,
                    IdentityCard::new(m.label.clone(), Role::Signer, m.key),
                )
            })
            .collect();
        let fp = super::group_fingerprint(group, roster);
        let mut tag = Sha256::new();
        tag.update(group.id().as_bytes());
        tag.update(fp.to_string().as_bytes());
        let refreshes = GroupId::from_bytes(tag.finalize().into());
        let min_signers = group.min_signers();
        let id = Self::derive_id(min_signers, &members, None, Some(&refreshes), &nonce);
        Ok(Ceremony {
            min_signers,
            nonce,
            members,
            dealer: None,
            refreshes: Some(refreshes),
            id,
        })
    }

    fn derive_id(
        min_signers: u16,
        members: &BTreeMap<Identifier<C>, IdentityCard>,
        dealer: Option<&IdentityCard>,
        refreshes: Option<&GroupId>,
        nonce: &[u8; 32],
    ) -> GroupId {
        let mut h = Sha256::new();
        h.update(b"kura/v1/ceremony-id\0");
        h.update(C::SUITE.as_str().as_bytes());
        h.update([0u8]);
        h.update(min_signers.to_be_bytes());
        h.update((members.len() as u64).to_be_bytes());
        let mut put = |bytes: &[u8]| {
            h.update((bytes.len() as u64).to_be_bytes());
            h.update(bytes);
        };
        for (id, card) in members {
            put(&id.serialize());
            put(card.label.as_str().as_bytes());
            put(&card.key.to_sec1());
        }
        match dealer {
            None => put(b""),
            Some(d) => {
                put(b"dealer");
                put(d.label.as_str().as_bytes());
                put(&d.key.to_sec1());
            }
        }
        if let Some(r) = refreshes {
            put(b"refresh");
            put(r.as_bytes());
        }
        put(nonce);
        GroupId::from_bytes(h.finalize().into())
    }

    /// The ceremony id: every DKG document names it in its envelope.
    pub fn id(&self) -> &GroupId {
        &self.id
    }

    /// The fingerprint the convener announces and every participant
    /// confirms: over suite, threshold, every member's identifier, label
    /// and identity key, the dealer's card if any, and the nonce.
    pub fn fingerprint(&self) -> Fingerprint {
        Fingerprint::of("ceremony", &[self.id.as_bytes()], 20)
    }

    /// Confirms the fingerprint announced by the convener over another channel.
    ///
    /// # Errors
    /// [`CeremonyError::FingerprintMismatch`] when it is not this ceremony's.
    pub fn confirm(self, announced: &str) -> Result<Confirmed<C>, CeremonyError> {
        self.fingerprint().confirm(announced)?;
        Ok(Confirmed(self))
    }

    /// The threshold.
    pub fn min_signers(&self) -> u16 {
        self.min_signers
    }

    /// The number of members.
    pub fn max_signers(&self) -> u16 {
        u16::try_from(self.members.len()).unwrap_or(u16::MAX)
    }

    /// The members' cards by identifier.
    pub fn members(&self) -> &BTreeMap<Identifier<C>, IdentityCard> {
        &self.members
    }

    /// The dealer's card, for a dealt group.
    pub fn dealer(&self) -> Option<&IdentityCard> {
        self.dealer.as_ref()
    }

    /// The plan that rebuilds this ceremony.
    pub fn plan(&self) -> CeremonyPlan {
        CeremonyPlan {
            min_signers: self.min_signers,
            nonce: self.nonce.to_vec(),
            members: self.members.values().cloned().collect(),
            dealer: self.dealer.clone(),
        }
    }

    /// The roster the ceremony produces.
    pub fn roster(&self) -> Roster<C> {
        Roster {
            members: self
                .members
                .iter()
                .map(|(id, c)| RosterEntry {
                    participant: *id,
                    label: c.label.clone(),
                    key: c.key,
                })
                .collect(),
            dealer: self.dealer.clone(),
        }
    }

    /// The labels by identifier.
    pub fn labels(&self) -> BTreeMap<Identifier<C>, Label> {
        self.members
            .iter()
            .map(|(id, c)| (*id, c.label.clone()))
            .collect()
    }

    /// This participant's identifier: the member whose card carries the
    /// keystore's identity key.
    ///
    /// # Errors
    /// [`CeremonyError::NotAMember`].
    pub fn me(&self, keystore: &dyn Keystore) -> Result<Identifier<C>, CeremonyError> {
        let key = keystore.identity_public_key()?;
        self.members
            .iter()
            .find(|(_, c)| c.key == key)
            .map(|(id, _)| *id)
            .ok_or(CeremonyError::NotAMember)
    }

    fn card(&self, id: &Identifier<C>, what: &'static str) -> Result<&IdentityCard, CeremonyError> {
        self.members.get(id).ok_or_else(|| CeremonyError::Outsider {
            what,
            who: crate::group::identifier_hex(id),
        })
    }

    fn describe(&self, id: &Identifier<C>) -> String {
        self.members
            .get(id)
            .map(|c| c.label.to_string())
            .unwrap_or_else(|| format!("outsider {}", crate::group::identifier_hex(id)))
    }

    fn state_slot(&self, me: &Identifier<C>, round: u8) -> SecretSlot {
        let session = SessionId::from_bytes(
            Sha256::digest([b"kura/v1/dkg-state\0".as_slice(), &[round]].concat()).into(),
        );
        SecretSlot::for_nonces(C::SUITE, self.id, crate::group::identifier_hex(me), session)
    }

    /// Round-2 state is kept as a replaceable entry (not take-once), so
    /// that a `finish` killed half-way can be run again: finishing is
    /// deterministic, and the entry is overwritten once the share is kept.
    fn finish_slot(&self, me: &Identifier<C>) -> SecretSlot {
        SecretSlot::for_share(
            C::SUITE,
            self.id,
            format!("dkg-round2-{}", crate::group::identifier_hex(me)),
        )
    }
}

impl<C: KuraSuite> DocumentBody for Round1Message<C> {
    const KIND: &'static str = "dkg-round1";
    fn suite() -> SuiteId {
        C::SUITE
    }
}

/// A signed round-1 broadcast (kind `dkg-round1`, envelope group = ceremony id).
pub type Round1Document<C> = Authored<Round1Message<C>>;

/// The signed content of a round-2 message (sealed, never in the clear).
#[derive(Clone, Serialize, Deserialize)]
#[serde(bound = "C: KuraSuite", deny_unknown_fields)]
pub struct Round2Share<C: KuraSuite> {
    /// The share.
    pub message: Round2Message<C>,
    /// The digest of the round-1 set the sender saw.
    #[serde(with = "crate::format::hex_bytes")]
    pub round1_set: Vec<u8>,
}

impl<C: KuraSuite> std::fmt::Debug for Round2Share<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Round2Share")
            .field("message", &self.message)
            .finish_non_exhaustive()
    }
}

impl<C: KuraSuite> DocumentBody for Round2Share<C> {
    const KIND: &'static str = "dkg-round2-share";
    fn suite() -> SuiteId {
        C::SUITE
    }
}

/// A round-2 message: a signed [`Round2Share`] sealed to its recipient
/// (kind `dkg-round2`, envelope group = ceremony id).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(bound = "C: KuraSuite", deny_unknown_fields)]
pub struct Round2Document<C: KuraSuite> {
    /// The sealed, signed share.
    pub part: SealedPart<C>,
}

impl<C: KuraSuite> DocumentBody for Round2Document<C> {
    const KIND: &'static str = "dkg-round2";
    fn suite() -> SuiteId {
        C::SUITE
    }
}

/// The checked round-1 set: one authentic message from every member.
struct Round1Set<C: KuraSuite> {
    messages: Vec<Round1Message<C>>,
    digest: [u8; 32],
}

fn check_round1<C: KuraSuite>(
    c: &Ceremony<C>,
    docs: &[Round1Document<C>],
) -> Result<Round1Set<C>, CeremonyError> {
    let mut by_id: BTreeMap<Identifier<C>, &Round1Document<C>> = BTreeMap::new();
    for doc in docs {
        let from = doc.body.from;
        let card = c.card(&from, "a round-1 message")?;
        doc.verify(&c.id, &card.key, &card.label)?;
        if doc.body.label != card.label {
            return Err(CeremonyError::Misaddressed(format!(
                "{}'s round-1 message carries the label {}",
                card.label, doc.body.label
            )));
        }
        if let Some(prev) = by_id.insert(from, doc) {
            if prev != doc {
                return Err(CeremonyError::Messages(format!(
                    "two different round-1 messages signed by {}: {} equivocates — exclude {} and restart",
                    card.label, card.label, card.label
                )));
            }
        }
    }
    if by_id.len() != c.members.len() {
        let missing: Vec<String> = c
            .members
            .iter()
            .filter(|(id, _)| !by_id.contains_key(id))
            .map(|(_, card)| card.label.to_string())
            .collect();
        return Err(CeremonyError::Messages(format!(
            "round-1 messages missing from {}: give every member's, your own included",
            missing.join(", ")
        )));
    }
    let mut h = Sha256::new();
    h.update(b"kura/v1/dkg-round1-set\0");
    h.update(c.id.as_bytes());
    for doc in by_id.values() {
        h.update(doc.digest(&c.id)?);
    }
    Ok(Round1Set {
        messages: by_id.values().map(|d| d.body.clone()).collect(),
        digest: h.finalize().into(),
    })
}

/// The digest of a round-1 set (public: anyone holding the broadcasts can
/// compute it), after checking that the set has one authentic message from
/// every member.
///
/// # Errors
/// As [`round2`]'s checks of the round-1 set.
pub fn round1_set_digest<C: KuraSuite>(
    c: &Ceremony<C>,
    round1_docs: &[Round1Document<C>],
) -> Result<[u8; 32], CeremonyError> {
    Ok(check_round1(c, round1_docs)?.digest)
}

/// Round 1: draws this participant's polynomial, keeps its secret state in
/// the keystore (take-once) and returns the signed broadcast.
///
/// # Errors
/// [`CeremonyError::NotAMember`], or a keystore failure (also when round 1
/// already ran for this ceremony here).
pub fn round1<C: KuraSuite, R: RngCore + CryptoRng>(
    c: &Confirmed<C>,
    keystore: &dyn Keystore,
    rng: &mut R,
) -> Result<Round1Document<C>, CeremonyError> {
    if c.refreshes.is_some() {
        return Err(CeremonyError::Misaddressed(
            "a refresh ceremony starts with refresh_round1".into(),
        ));
    }
    let me = c.me(keystore)?;
    let label = c.card(&me, "this participant")?.label.clone();
    let (secret, message) =
        frost_dkg::part1::<C, _>(me, label, c.max_signers(), c.min_signers, rng)?;
    keep_round1(c, keystore, me, secret, message)
}

/// Round 1 of a refresh DKG ([`Ceremony::for_refresh`]): a zero-sharing
/// from this member's current share.
///
/// # Errors
/// As [`round1`]; a share that is not this member's in `group`.
pub fn refresh_round1<C: KuraSuite, R: RngCore + CryptoRng>(
    c: &Confirmed<C>,
    keystore: &dyn Keystore,
    share: &KeyShare<C>,
    group: &PublicGroup<C>,
    rng: &mut R,
) -> Result<Round1Document<C>, CeremonyError> {
    let me = c.me(keystore)?;
    if c.refreshes.is_none() || share.identifier() != &me {
        return Err(CeremonyError::Misaddressed(
            "not a refresh ceremony, or not this member's share".into(),
        ));
    }
    let (secret, message) = crate::keygen::refresh::dkg_part1(share, group, rng)?;
    keep_round1(c, keystore, me, secret, message)
}

fn keep_round1<C: KuraSuite>(
    c: &Ceremony<C>,
    keystore: &dyn Keystore,
    me: Identifier<C>,
    secret: Round1Secret<C>,
    message: Round1Message<C>,
) -> Result<Round1Document<C>, CeremonyError> {
    let doc = Authored::sign(&c.id, message, keystore)?;
    keystore.put_nonces(&c.state_slot(&me, 1), &secret.to_secret_document(&c.id)?)?;
    Ok(doc)
}

/// What round 2 produces.
#[derive(Debug)]
pub struct Round2Output<C: KuraSuite> {
    /// The digest of the round-1 set (show a prefix; all must agree).
    pub round1_set: [u8; 32],
    /// One sealed message per peer, with the peer's label.
    pub messages: Vec<(Label, Round2Document<C>)>,
}

/// Round 2: checks that the round-1 set has one authentic message from
/// every member, verifies the proofs, and seals a signed share to each peer.
///
/// # Errors
/// [`CeremonyError::NotAuthentic`] for a forged or altered round-1 message
/// (naming its claimed sender, who is not blamed);
/// [`CeremonyError::Keygen`] naming a member whose signed proof is bad;
/// [`CeremonyError::NoState`] when round 1 did not run here or round 2 ran.
pub fn round2<C: KuraSuite, R: RngCore + CryptoRng>(
    c: &Ceremony<C>,
    keystore: &dyn Keystore,
    round1_docs: &[Round1Document<C>],
    rng: &mut R,
) -> Result<Round2Output<C>, CeremonyError> {
    let me = c.me(keystore)?;
    let set = check_round1(c, round1_docs)?;
    let state = keystore.take_nonces(&c.state_slot(&me, 1)).map_err(|e| {
        CeremonyError::NoState(format!(
            "no round-1 state for this ceremony (round 1 not run here, or round 2 already run): {e}"
        ))
    })?;
    let secret = Round1Secret::<C>::from_secret_document(state.expose(), &c.id)?;
    let (secret2, outgoing) = if c.refreshes.is_some() {
        crate::keygen::refresh::dkg_part2(secret, &set.messages)?
    } else {
        frost_dkg::part2(secret, &set.messages)?
    };
    let mut messages = Vec::new();
    for m in outgoing {
        let to = c.card(&m.to, "a recipient")?.clone();
        let to_id = m.to;
        let signed = Authored::sign(
            &c.id,
            Round2Share {
                message: m,
                round1_set: set.digest.to_vec(),
            },
            keystore,
        )?;
        let plain = secret_json(&signed)?;
        let part = SealedPart::seal(
            SealPurpose::DkgRound2,
            &c.id,
            Some(me),
            to_id,
            &set.digest,
            &to.key,
            plain.expose(),
            rng,
        )?;
        messages.push((to.label, Round2Document { part }));
    }
    keystore.put_key_share(&c.finish_slot(&me), &secret2.to_secret_document(&c.id)?)?;
    Ok(Round2Output {
        round1_set: set.digest,
        messages,
    })
}

/// What a finished DKG gives this participant.
#[derive(Debug)]
pub struct Finished<C: KuraSuite> {
    /// Its key share (secret).
    pub share: KeyShare<C>,
    /// The group.
    pub group: PublicGroup<C>,
    /// The roster (the ceremony's cards).
    pub roster: Roster<C>,
    /// The group fingerprint to compare with every other member's.
    pub fingerprint: Fingerprint,
}

/// Finish: checks the round-1 set again, opens and authenticates the
/// round-2 messages addressed to this participant (others are ignored),
/// and derives its share and the group. Nothing is stored: keep the share
/// with [`super::state`], then call [`forget`].
///
/// Can be run again with the same inputs (after a crash) until [`forget`].
///
/// # Errors
/// [`CeremonyError::SealOpen`] / [`CeremonyError::NotAuthentic`] for a
/// message altered or forged in transit (naming the claimed sender, who is
/// not blamed); [`CeremonyError::InconsistentBroadcast`];
/// [`CeremonyError::Keygen`] naming a member whose *signed* share is bad.
pub fn finish<C: KuraSuite>(
    c: &Ceremony<C>,
    keystore: &dyn Keystore,
    round1_docs: &[Round1Document<C>],
    round2_docs: &[Round2Document<C>],
) -> Result<Finished<C>, CeremonyError> {
    if c.refreshes.is_some() {
        return Err(CeremonyError::Misaddressed(
            "a refresh ceremony ends with refresh_finish".into(),
        ));
    }
    let (set, received, secret2) = finish_inputs(c, keystore, round1_docs, round2_docs)?;
    let (share, group) = frost_dkg::part3(&secret2, &set.messages, &received)?;
    if group.participants() != &c.labels() || group.min_signers() != c.min_signers {
        return Err(CeremonyError::Changed(
            "the DKG produced a group with other members or threshold than the ceremony".into(),
        ));
    }
    let roster = c.roster();
    let fingerprint = super::group_fingerprint(&group, &roster);
    Ok(Finished {
        share,
        group,
        roster,
        fingerprint,
    })
}

/// Finish of a refresh DKG: this member's refreshed share and the
/// refreshed group (same key, threshold, members), to be staged with the
/// ceremony id as tag ([`super::state::MemberState::stage`]) and activated
/// with every member's receipt ([`super::maintain::activate_refresh`]).
///
/// # Errors
/// As [`finish`].
pub fn refresh_finish<C: KuraSuite>(
    c: &Ceremony<C>,
    keystore: &dyn Keystore,
    round1_docs: &[Round1Document<C>],
    round2_docs: &[Round2Document<C>],
    current: &KeyShare<C>,
    group: &PublicGroup<C>,
) -> Result<(KeyShare<C>, PublicGroup<C>), CeremonyError> {
    if c.refreshes.is_none() {
        return Err(CeremonyError::Misaddressed("not a refresh ceremony".into()));
    }
    let (set, received, secret2) = finish_inputs(c, keystore, round1_docs, round2_docs)?;
    let (share, new_group) =
        crate::keygen::refresh::dkg_finish(&secret2, &set.messages, &received, current, group)?;
    super::state::same_group(group, &new_group)?;
    Ok((share, new_group))
}

type FinishInputs<C> = (Round1Set<C>, Vec<Round2Message<C>>, Round2Secret<C>);

fn finish_inputs<C: KuraSuite>(
    c: &Ceremony<C>,
    keystore: &dyn Keystore,
    round1_docs: &[Round1Document<C>],
    round2_docs: &[Round2Document<C>],
) -> Result<FinishInputs<C>, CeremonyError> {
    let me = c.me(keystore)?;
    let set = check_round1(c, round1_docs)?;
    let mut received: BTreeMap<Identifier<C>, Round2Message<C>> = BTreeMap::new();
    for doc in round2_docs {
        let part = &doc.part;
        if part.to != me {
            continue;
        }
        let from_id = part.from.ok_or_else(|| {
            CeremonyError::Misaddressed("a round-2 message without a sender".into())
        })?;
        let from = c.card(&from_id, "a round-2 message")?;
        let plain = part.open(
            SealPurpose::DkgRound2,
            &c.id,
            &set.digest,
            keystore,
            "round-2 message",
            from.label.as_str(),
        )?;
        let signed: Authored<Round2Share<C>> = parse_secret(&plain, "round-2 message")?;
        let body = signed.verify(&c.id, &from.key, &from.label)?;
        if body.message.from != from_id || body.message.to != me {
            return Err(CeremonyError::Misaddressed(format!(
                "the round-2 message from {} is addressed from {} to {} inside",
                from.label,
                c.describe(&body.message.from),
                c.describe(&body.message.to)
            )));
        }
        if body.round1_set != set.digest {
            return Err(CeremonyError::InconsistentBroadcast {
                from: from.label.to_string(),
            });
        }
        if received.insert(from_id, body.message.clone()).is_some() {
            return Err(CeremonyError::Messages(format!(
                "two round-2 messages from {}",
                from.label
            )));
        }
    }
    let state = keystore.key_share(&c.finish_slot(&me)).map_err(|e| {
        CeremonyError::NoState(format!(
            "no round-2 state for this ceremony (round 2 not run here, or already finished): {e}"
        ))
    })?;
    let secret2 = Round2Secret::<C>::from_secret_document(state.expose(), &c.id)
        .map_err(|_| CeremonyError::NoState("this ceremony is already finished here".into()))?;
    Ok((set, received.into_values().collect(), secret2))
}

/// Overwrites this participant's round-2 state once its share is kept.
///
/// # Errors
/// A keystore failure.
pub fn forget<C: KuraSuite>(c: &Ceremony<C>, keystore: &dyn Keystore) -> Result<(), CeremonyError> {
    let me = c.me(keystore)?;
    keystore.put_key_share(&c.finish_slot(&me), &SecretBytes::new(b"finished".to_vec()))?;
    Ok(())
}
