//! Changing the quorum — members join or leave, the threshold rises or
//! falls — with the same group key and addresses, as authenticated
//! documents ([`crate::keygen::reshare`] is the arithmetic).
//!
//! 1. A current member signs a [`ReshareProposal`] ([`ReshareTerms`]): the
//!    new threshold, the new members' identity cards (current members keep
//!    their labels, so their identifiers), the current members who will
//!    deal (at least the current threshold), and when it expires. It names
//!    the exact group it reshares (the digest of its document, verifying
//!    shares included: a refresh makes it stale).
//! 2. Each of those dealers checks the proposal against its pinned roster,
//!    shows its operator the plan, and consents ([`Consent`]) only with the
//!    fingerprint of every *joining* member's card confirmed out of band —
//!    a proposer who slipped in a card with its own key would otherwise
//!    collect `t′` shares of every dealer's polynomial, that is the group
//!    secret. The dealer records the deal in its audit log (once per
//!    proposal: a second deal is refused) and signs a [`ReshareDeal`]: its
//!    Feldman commitment and one share per new member, each sealed to that
//!    member's card key. The reshare needs every named dealer's deal, so at
//!    least `t` current members consent.
//! 3. Each new member checks the proposal (signed by a member of the
//!    current roster, for the current group fingerprint) and every deal
//!    (signed by its dealer's pinned key, for this proposal, its commitment
//!    starting at the dealer's current verifying share), opens and checks
//!    its shares, and stages its new share, group and roster
//!    ([`super::state::MemberState::stage_reshare`]); then it signs a
//!    receipt ([`super::maintain::receipt`], tagged with the proposal's
//!    digest).
//! 4. With every new member's receipt, each activates
//!    ([`activate_reshare`]): crash-atomic, `group.json` the commit point.
//!
//! A member who leaves is refused by every new member from then on (it is
//! not in the new roster, and its share is not on the new polynomial); it
//! should still erase its share, because `t` old shares kept together
//! would still sign (see [`crate::keygen::reshare`]).

use std::collections::{BTreeMap, BTreeSet};

use frost_core::keys::{SecretShare, VerifiableSecretSharingCommitment};
use frost_core::Identifier;
use rand_core::{CryptoRng, RngCore};
use serde::{Deserialize, Serialize};

use super::maintain::{check_receipts, RefreshReceipt};
use super::{
    group_fingerprint, identifier_for, own_entry, parse_secret, secret_json, Authored,
    CeremonyError, IdentityCard, Role, Roster, RosterEntry, SealPurpose, SealedPart,
};
use crate::audit::{AuditEvent, AuditLog, AuditRecord};
use crate::format::{hex_bytes, DocumentBody};
use crate::group::{KeyShare, Label, PublicGroup};
use crate::keygen::reshare;
use crate::keystore::Keystore;
use crate::suite::{KuraSuite, SuiteId};

/// A reshare proposal's content (kind `reshare-proposal`, envelope group =
/// the group id), signed by its proposer, a current member.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(bound = "C: KuraSuite", deny_unknown_fields)]
pub struct ReshareBody<C: KuraSuite> {
    /// 32 random bytes naming this reshare.
    #[serde(with = "hex_bytes")]
    pub reshare: Vec<u8>,
    /// The proposing member.
    pub proposer: Identifier<C>,
    /// The group fingerprint (key, roster, threshold) it reshares.
    pub group_fingerprint: String,
    /// The digest of the group document it reshares ([`group_digest`]:
    /// every verifying share included, so a refresh since makes it stale).
    #[serde(with = "hex_bytes")]
    pub group_digest: Vec<u8>,
    /// Unix seconds after which nobody deals or accepts it.
    pub expires: u64,
    /// The new threshold.
    pub threshold: u16,
    /// The new members' identity cards (role `signer`).
    pub members: Vec<IdentityCard>,
    /// The current members who deal (at least the current threshold).
    pub dealers: Vec<Identifier<C>>,
}

impl<C: KuraSuite> DocumentBody for ReshareBody<C> {
    const KIND: &'static str = "reshare-proposal";
    fn suite() -> SuiteId {
        C::SUITE
    }
}

/// A signed reshare proposal.
pub type ReshareProposal<C> = Authored<ReshareBody<C>>;

/// The longest a reshare proposal may stay open: 30 days. A proposal that
/// claims more is refused (an expiry nobody reaches is none).
pub const MAX_PROPOSAL_LIFETIME: u64 = 30 * 24 * 3600;

/// What a reshare proposes.
#[derive(Clone, Debug)]
pub struct ReshareTerms<C: KuraSuite> {
    /// The new threshold.
    pub threshold: u16,
    /// Every new member's identity card (current members who stay included).
    pub members: Vec<IdentityCard>,
    /// The current members who deal (at least the current threshold).
    pub dealers: Vec<Identifier<C>>,
    /// Unix seconds after which nobody deals or accepts it (at most
    /// [`MAX_PROPOSAL_LIFETIME`] from when it is dealt).
    pub expires: u64,
}

/// The digest a reshare proposal names its group by: SHA-256 of the group
/// document (key, threshold, every member's label and verifying share).
///
/// # Errors
/// Only on an internal encoding failure.
pub fn group_digest<C: KuraSuite>(group: &PublicGroup<C>) -> Result<[u8; 32], CeremonyError> {
    use sha2::{Digest, Sha256};
    Ok(Sha256::digest(group.to_document()?).into())
}

/// One dealer's deal (kind `reshare-deal`), signed by the dealer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(bound = "C: KuraSuite", deny_unknown_fields)]
pub struct DealBody<C: KuraSuite> {
    /// The dealer.
    pub from: Identifier<C>,
    /// The digest of the proposal ([`Authored::digest`]).
    #[serde(with = "hex_bytes")]
    pub proposal: Vec<u8>,
    /// The Feldman commitment to the dealer's polynomial.
    pub commitment: VerifiableSecretSharingCommitment<C>,
    /// One share per new member, sealed to it.
    pub shares: Vec<SealedPart<C>>,
}

impl<C: KuraSuite> DocumentBody for DealBody<C> {
    const KIND: &'static str = "reshare-deal";
    fn suite() -> SuiteId {
        C::SUITE
    }
}

/// A signed deal.
pub type ReshareDeal<C> = Authored<DealBody<C>>;

/// The dealers' commitments, by dealer.
type Commitments<C> = BTreeMap<Identifier<C>, VerifiableSecretSharingCommitment<C>>;

/// The outcome of a reshare as anyone with its documents computes it.
#[derive(Clone, Debug)]
pub struct Reshared<C: KuraSuite> {
    /// The group after the reshare (same key and id).
    pub group: PublicGroup<C>,
    /// The checked proposal (with the new roster).
    pub plan: Plan<C>,
    /// What every new member's receipt names ([`receipt_tag`]).
    pub tag: [u8; 32],
}

/// A new member's outcome of a reshare: its share, to be staged.
pub struct Accepted<C: KuraSuite> {
    /// This member's new share.
    pub share: KeyShare<C>,
    /// The group after the reshare.
    pub group: PublicGroup<C>,
    /// The checked proposal (with the new roster).
    pub plan: Plan<C>,
    /// What this member stages and its receipt names ([`receipt_tag`]).
    pub tag: [u8; 32],
}

impl<C: KuraSuite> std::fmt::Debug for Accepted<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Accepted")
            .field("share", &self.share)
            .field("group", &self.group)
            .finish_non_exhaustive()
    }
}

/// What a reshare's receipts name: the proposal *and* the group it
/// produced, every verifying share included. Each new member computes the
/// group from the deals it was given; a dealer who signed two different
/// deals and gave them to different members would leave them on different
/// sharings of the key (a group that can never sign again), so activation
/// needs every new member's receipt to name the same group as its own.
///
/// # Errors
/// Only on an internal encoding failure.
pub fn receipt_tag<C: KuraSuite>(
    plan: &Plan<C>,
    new_group: &PublicGroup<C>,
) -> Result<[u8; 32], CeremonyError> {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(b"kura/v1/reshare-receipt\0");
    h.update(plan.digest);
    h.update(new_group.to_document()?);
    Ok(h.finalize().into())
}

/// What a checked proposal says.
#[derive(Clone, Debug)]
pub struct Plan<C: KuraSuite> {
    /// The proposal's digest (what deals and receipts name).
    pub digest: [u8; 32],
    /// The proposing member.
    pub proposer: Identifier<C>,
    /// The new threshold.
    pub threshold: u16,
    /// The new roster (the current one's dealer card kept).
    pub roster: Roster<C>,
    /// The dealers.
    pub dealers: BTreeSet<Identifier<C>>,
    /// Unix seconds after which nobody deals or accepts it.
    pub expires: u64,
}

impl<C: KuraSuite> Plan<C> {
    /// The new members' labels by identifier.
    pub fn labels(&self) -> BTreeMap<Identifier<C>, Label> {
        self.roster
            .members
            .iter()
            .map(|m| (m.participant, m.label.clone()))
            .collect()
    }

    /// The cards of the members who join (not in the current `group`):
    /// whose fingerprints a dealer confirms before it deals.
    pub fn joining_cards(&self, group: &PublicGroup<C>) -> Vec<IdentityCard> {
        self.roster
            .members
            .iter()
            .filter(|m| !group.participants().contains_key(&m.participant))
            .map(|m| IdentityCard::new(m.label.clone(), Role::Signer, m.key))
            .collect()
    }

    /// Refuses a proposal past its expiry at `now`, or one whose expiry is
    /// more than [`MAX_PROPOSAL_LIFETIME`] away.
    ///
    /// # Errors
    /// [`CeremonyError::Expired`].
    pub fn check_fresh(&self, now: u64) -> Result<(), CeremonyError> {
        if now >= self.expires {
            return Err(CeremonyError::Expired(format!(
                "the reshare proposal expired at {} (unix time; now {now}): ask for a new one",
                self.expires
            )));
        }
        if self.expires - now > MAX_PROPOSAL_LIFETIME {
            return Err(CeremonyError::Expired(format!(
                "the reshare proposal expires {} days from now, more than the {} allowed",
                (self.expires - now) / 86_400,
                MAX_PROPOSAL_LIFETIME / 86_400
            )));
        }
        Ok(())
    }

    /// Who joins, who leaves, against the current `group` (labels).
    pub fn changes(&self, group: &PublicGroup<C>) -> (Vec<String>, Vec<String>) {
        let new = self.labels();
        let joining = new
            .iter()
            .filter(|(id, _)| !group.participants().contains_key(id))
            .map(|(_, l)| l.to_string())
            .collect();
        let leaving = group
            .participants()
            .iter()
            .filter(|(id, _)| !new.contains_key(id))
            .map(|(_, l)| l.to_string())
            .collect();
        (joining, leaving)
    }
}

fn new_roster<C: KuraSuite>(
    roster: &Roster<C>,
    cards: &[IdentityCard],
) -> Result<Roster<C>, CeremonyError> {
    let mut labels = BTreeSet::new();
    let mut keys = BTreeSet::new();
    let mut members = Vec::with_capacity(cards.len());
    for card in cards {
        if card.role != Role::Signer {
            return Err(CeremonyError::Cards(format!(
                "{} is a {} card; every member of a group is a signer",
                card.label, card.role
            )));
        }
        if !labels.insert(card.label.clone()) || !keys.insert(card.key.to_sec1()) {
            return Err(CeremonyError::Cards(format!(
                "{} (or its key) appears twice",
                card.label
            )));
        }
        // A current member keeps its label, so its identifier (and its
        // share's slot, which activation overwrites): under another label
        // it would get a new identifier and its old share would stay in
        // its keystore, never overwritten.
        if let Some(current) = roster
            .members
            .iter()
            .find(|m| m.key == card.key && m.label != card.label)
        {
            return Err(CeremonyError::Cards(format!(
                "{}'s card has the key of current member {}: a member keeps its label across a reshare",
                card.label, current.label
            )));
        }
        // A current member keeps its identifier only under its own key; a
        // new member's comes from its label.
        let participant = match roster.members.iter().find(|m| m.label == card.label) {
            Some(current) if current.key == card.key => current.participant,
            Some(_) => {
                return Err(CeremonyError::Cards(format!(
                    "{}'s card has another key than the roster's: a member's key changes only by leaving and joining under a new label",
                    card.label
                )))
            }
            None => identifier_for::<C>(&card.label)?,
        };
        members.push(RosterEntry {
            participant,
            label: card.label.clone(),
            key: card.key,
        });
    }
    members.sort_by_key(|m| m.participant);
    if members
        .windows(2)
        .any(|w| matches!(w, [a, b] if a.participant == b.participant))
    {
        return Err(CeremonyError::Cards(
            "two members would share an identifier; choose another label".into(),
        ));
    }
    // A departed member's identifier is not handed to a newcomer (its old
    // share would then sit in the newcomer's slot name).
    if let Some(m) = members.iter().find(|m| {
        roster
            .members
            .iter()
            .any(|c| c.participant == m.participant && c.label != m.label)
    }) {
        return Err(CeremonyError::Cards(format!(
            "{} would take a current member's identifier; choose another label",
            m.label
        )));
    }
    Ok(Roster {
        members,
        dealer: roster.dealer.clone(),
    })
}

/// Checks a proposal against the pinned roster and the current group
/// (not its expiry: [`Plan::check_fresh`]).
///
/// # Errors
/// [`CeremonyError::NotAuthentic`] for one not signed by its proposer,
/// [`CeremonyError::Outsider`] for a proposer or dealer outside the
/// group, [`CeremonyError::Changed`] for another group fingerprint or
/// group document (a refresh since),
/// [`CeremonyError::Cards`] for bad cards, [`CeremonyError::NoQuorum`] for
/// fewer than `t` dealers, an invalid new threshold.
pub fn check_proposal<C: KuraSuite>(
    group: &PublicGroup<C>,
    roster: &Roster<C>,
    proposal: &ReshareProposal<C>,
) -> Result<Plan<C>, CeremonyError> {
    roster.identities(group)?;
    let body = &proposal.body;
    let proposer = roster
        .member(&body.proposer)
        .ok_or_else(|| CeremonyError::Outsider {
            what: "a reshare proposal",
            who: roster.describe(&body.proposer),
        })?;
    proposal.verify(group.id(), &proposer.key, &proposer.label)?;
    if !group_fingerprint(group, roster).matches(&body.group_fingerprint) {
        return Err(CeremonyError::Changed(
            "the reshare proposal is for another group, roster or threshold".into(),
        ));
    }
    if body.group_digest != group_digest(group)? {
        return Err(CeremonyError::Changed(
            "the reshare proposal is for another state of this group (its verifying shares changed: a refresh or repair since); propose it again".into(),
        ));
    }
    let roster2 = new_roster(roster, &body.members)?;
    let n = u16::try_from(roster2.members.len()).unwrap_or(u16::MAX);
    crate::group::check_threshold(body.threshold, n)?;
    let dealers: BTreeSet<_> = body.dealers.iter().copied().collect();
    if dealers.len() != body.dealers.len() {
        return Err(CeremonyError::Messages(
            "the reshare names a dealer twice".into(),
        ));
    }
    if let Some(d) = dealers.iter().find(|d| roster.member(d).is_none()) {
        return Err(CeremonyError::Outsider {
            what: "a reshare dealer",
            who: roster.describe(d),
        });
    }
    if dealers.len() < usize::from(group.min_signers()) {
        return Err(CeremonyError::NoQuorum {
            have: dealers.len(),
            need: group.min_signers(),
        });
    }
    Ok(Plan {
        digest: proposal.digest(group.id())?,
        proposer: body.proposer,
        threshold: body.threshold,
        roster: roster2,
        dealers,
        expires: body.expires,
    })
}

/// Proposes resharing `group` on `terms`; signed by the keystore's member.
///
/// # Errors
/// [`CeremonyError::NotAMember`] for a keystore outside the roster; the
/// checks of [`check_proposal`].
pub fn propose_reshare<C: KuraSuite, R: RngCore + CryptoRng>(
    group: &PublicGroup<C>,
    roster: &Roster<C>,
    terms: ReshareTerms<C>,
    keystore: &dyn Keystore,
    rng: &mut R,
) -> Result<ReshareProposal<C>, CeremonyError> {
    let me = own_entry(roster, keystore)?;
    let mut reshare = [0u8; 32];
    rng.fill_bytes(&mut reshare);
    let body = ReshareBody {
        reshare: reshare.to_vec(),
        proposer: me.participant,
        group_fingerprint: group_fingerprint(group, roster).to_string(),
        group_digest: group_digest(group)?.to_vec(),
        expires: terms.expires,
        threshold: terms.threshold,
        members: terms.members,
        dealers: terms.dealers,
    };
    let proposal = Authored::sign(group.id(), body, keystore)?;
    check_proposal(group, roster, &proposal)?;
    Ok(proposal)
}

/// A dealer's consent to a checked proposal: its plan, not expired, with
/// the fingerprint of every joining member's card confirmed by the dealer's
/// operator over another channel (the joining member reads out its card's
/// fingerprint, `kura fingerprint`). The only way to [`deal_reshare`].
#[derive(Clone, Debug)]
pub struct Consent<C: KuraSuite> {
    plan: Plan<C>,
    now: u64,
}

impl<C: KuraSuite> Consent<C> {
    /// Checks `proposal` ([`check_proposal`], [`Plan::check_fresh`] at
    /// `now`) and that `joining` holds exactly the fingerprints of the
    /// joining members' cards ([`Plan::joining_cards`]), each once.
    ///
    /// # Errors
    /// [`CeremonyError::FingerprintMismatch`] naming a joining card whose
    /// fingerprint was not confirmed (or a confirmed one no joining card
    /// has); [`CeremonyError::BadFingerprint`]; the checks named.
    pub fn check(
        group: &PublicGroup<C>,
        roster: &Roster<C>,
        proposal: &ReshareProposal<C>,
        joining: &[&str],
        now: u64,
    ) -> Result<Consent<C>, CeremonyError> {
        let plan = check_proposal(group, roster, proposal)?;
        plan.check_fresh(now)?;
        let cards = plan.joining_cards(group);
        let mut unmatched: Vec<&str> = joining.to_vec();
        for card in &cards {
            let fp = card.fingerprint();
            match unmatched.iter().position(|typed| fp.matches(typed)) {
                Some(i) => {
                    unmatched.swap_remove(i);
                }
                None => {
                    return Err(CeremonyError::Cards(format!(
                        "joining member {}'s card (fingerprint {fp}) was not confirmed: confirm each joining member's card fingerprint with that member over another channel; do not deal for a card you have not confirmed",
                        card.label
                    )))
                }
            }
        }
        if let Some(extra) = unmatched.first() {
            // Text that is no fingerprint says so; one that is names no
            // joining card (a typo, or a card the proposal left out).
            let fp = cards.first().map(IdentityCard::fingerprint);
            return Err(match fp {
                Some(fp) => match fp.confirm(extra) {
                    Err(e @ CeremonyError::BadFingerprint(_)) => e,
                    _ => CeremonyError::Cards(format!(
                        "{} was confirmed, but no joining member's card has that fingerprint",
                        crate::display::inert_bounded(extra, 80)
                    )),
                },
                None => CeremonyError::Cards(format!(
                    "{} was confirmed, but nobody joins in this reshare",
                    crate::display::inert_bounded(extra, 80)
                )),
            });
        }
        Ok(Consent { plan, now })
    }

    /// The plan consented to.
    pub fn plan(&self) -> &Plan<C> {
        &self.plan
    }
}

/// Whether `log` records a deal for the proposal with digest `proposal`.
pub fn has_dealt(log: &AuditLog, proposal: &[u8; 32]) -> bool {
    let hex = hex::encode(proposal);
    log.entries().iter().any(
        |e| matches!(&e.record.event, AuditEvent::ReshareDealt { proposal } if *proposal == hex),
    )
}

/// A dealer's part of the reshare it consented to: deals this member's
/// part of the key to the new members, seals each share to its member, and
/// records the deal in the dealer's audit log (durably, before the deal is
/// returned). A second deal for the same proposal is refused: the log is
/// anchored in the keystore, so a disk writer cannot make it forget.
///
/// # Errors
/// [`CeremonyError::AlreadyDealt`] for a proposal this log records a deal
/// for; [`CeremonyError::Misaddressed`] for a member the proposal does not
/// name as a dealer; [`CeremonyError::Audit`] when the log cannot record
/// it (nothing is dealt then).
pub fn deal_reshare<C: KuraSuite, R: RngCore + CryptoRng>(
    group: &PublicGroup<C>,
    roster: &Roster<C>,
    share: &KeyShare<C>,
    consent: &Consent<C>,
    keystore: &dyn Keystore,
    log: &mut AuditLog,
    rng: &mut R,
) -> Result<ReshareDeal<C>, CeremonyError> {
    let plan = &consent.plan;
    let me = own_entry(roster, keystore)?;
    if me.participant != *share.identifier() {
        return Err(CeremonyError::NotAMember);
    }
    if !plan.dealers.contains(&me.participant) {
        return Err(CeremonyError::Misaddressed(
            "the reshare does not name this member as a dealer".into(),
        ));
    }
    let _guard = log.begin(keystore)?;
    if has_dealt(log, &plan.digest) {
        return Err(CeremonyError::AlreadyDealt);
    }
    let ids: BTreeSet<_> = plan.roster.members.iter().map(|m| m.participant).collect();
    let dealt = reshare::deal(share, group, &plan.dealers, &ids, plan.threshold, rng)?;
    let mut shares = Vec::with_capacity(dealt.shares.len());
    for m in &plan.roster.members {
        let s = dealt
            .shares
            .get(&m.participant)
            .ok_or_else(|| CeremonyError::Messages("a new member without a share".into()))?;
        let plain = secret_json(s)?;
        shares.push(SealedPart::seal(
            SealPurpose::ReshareShare,
            group.id(),
            Some(me.participant),
            m.participant,
            &plan.digest,
            &m.key,
            plain.expose(),
            rng,
        )?);
    }
    let deal = Authored::sign(
        group.id(),
        DealBody {
            from: me.participant,
            proposal: plan.digest.to_vec(),
            commitment: dealt.commitment,
            shares,
        },
        keystore,
    )?;
    let at = consent.now.max(log.last_time());
    log.append(
        keystore,
        at,
        AuditRecord::new(AuditEvent::ReshareDealt {
            proposal: hex::encode(plan.digest),
        }),
    )?;
    Ok(deal)
}

/// Checks every deal (one from each named dealer, signed by its pinned key,
/// for this proposal) and returns the commitments and the new group.
fn check_deals<C: KuraSuite>(
    group: &PublicGroup<C>,
    roster: &Roster<C>,
    plan: &Plan<C>,
    deals: &[ReshareDeal<C>],
) -> Result<(Commitments<C>, PublicGroup<C>), CeremonyError> {
    let mut commitments = BTreeMap::new();
    for d in deals {
        let dealer = roster
            .member(&d.body.from)
            .ok_or_else(|| CeremonyError::Outsider {
                what: "a reshare deal",
                who: roster.describe(&d.body.from),
            })?;
        d.verify(group.id(), &dealer.key, &dealer.label)?;
        if d.body.proposal != plan.digest {
            return Err(CeremonyError::Misaddressed(format!(
                "{}'s deal is for another reshare proposal",
                dealer.label
            )));
        }
        if !plan.dealers.contains(&dealer.participant) {
            return Err(CeremonyError::Misaddressed(format!(
                "{} dealt, but the proposal does not name it as a dealer",
                dealer.label
            )));
        }
        if commitments
            .insert(dealer.participant, d.body.commitment.clone())
            .is_some()
        {
            return Err(CeremonyError::Messages(format!(
                "two deals from {}",
                dealer.label
            )));
        }
    }
    let missing: Vec<String> = plan
        .dealers
        .iter()
        .filter(|d| !commitments.contains_key(d))
        .map(|d| roster.describe(d))
        .collect();
    if !missing.is_empty() {
        return Err(CeremonyError::Messages(format!(
            "no deal yet from {}",
            missing.join(", ")
        )));
    }
    let new_group = reshare::reshared_group(
        group,
        &plan.dealers,
        &commitments,
        plan.labels(),
        plan.threshold,
    )?;
    Ok((commitments, new_group))
}

/// The group and roster after a reshare, from the proposal and every deal,
/// for anyone holding the current group and roster (a coordinator, a
/// member who leaves).
///
/// # Errors
/// The checks of [`check_proposal`] and of every deal.
pub fn reshared<C: KuraSuite>(
    group: &PublicGroup<C>,
    roster: &Roster<C>,
    proposal: &ReshareProposal<C>,
    deals: &[ReshareDeal<C>],
) -> Result<Reshared<C>, CeremonyError> {
    let plan = check_proposal(group, roster, proposal)?;
    let (_, new_group) = check_deals(group, roster, &plan, deals)?;
    plan.roster.identities(&new_group)?;
    let tag = receipt_tag(&plan, &new_group)?;
    Ok(Reshared {
        group: new_group,
        plan,
        tag,
    })
}

/// A new member's side at `now`: checks the proposal (not expired) and
/// every deal, opens its share from each dealer and combines them; returns
/// its new share and the new group and roster (to be staged, not yet used).
///
/// # Errors
/// [`CeremonyError::Expired`] for a proposal past its expiry;
/// [`CeremonyError::NotAMember`] for a keystore not among the new members;
/// [`CeremonyError::SealOpen`] for a share that does not open;
/// [`CeremonyError::Keygen`] naming the dealer of a share that does not
/// verify; the checks of [`reshared`].
pub fn accept_reshare<C: KuraSuite>(
    group: &PublicGroup<C>,
    roster: &Roster<C>,
    proposal: &ReshareProposal<C>,
    deals: &[ReshareDeal<C>],
    keystore: &dyn Keystore,
    now: u64,
) -> Result<Accepted<C>, CeremonyError> {
    let plan = check_proposal(group, roster, proposal)?;
    plan.check_fresh(now)?;
    let (commitments, new_group) = check_deals(group, roster, &plan, deals)?;
    let me = own_entry(&plan.roster, keystore)?;
    let mut received: BTreeMap<Identifier<C>, SecretShare<C>> = BTreeMap::new();
    for d in deals {
        let dealer = roster.describe(&d.body.from);
        let mut mine = d.body.shares.iter().filter(|p| p.to == me.participant);
        let part = mine.next().ok_or_else(|| {
            CeremonyError::Misaddressed(format!("{dealer}'s deal holds no share for this member"))
        })?;
        if mine.next().is_some() || part.from != Some(d.body.from) {
            return Err(CeremonyError::Messages(format!(
                "{dealer}'s deal holds two shares for this member, or one from someone else"
            )));
        }
        let plain = part.open(
            SealPurpose::ReshareShare,
            group.id(),
            &plan.digest,
            keystore,
            "reshared share",
            &dealer,
        )?;
        received.insert(d.body.from, parse_secret(&plain, "reshared share")?);
    }
    let share = reshare::combine(group, &new_group, &me.participant, &commitments, &received)?;
    plan.roster.identities(&new_group)?;
    let tag = receipt_tag(&plan, &new_group)?;
    Ok(Accepted {
        share,
        group: new_group,
        plan,
        tag,
    })
}

/// Activates a staged reshare once every new member's receipt for it is
/// given (crash-safe; see [`super::state::MemberState::activate`]). `None`
/// when nothing is staged.
///
/// # Errors
/// [`CeremonyError::NotAuthentic`] for a forged receipt,
/// [`CeremonyError::Messages`] naming the members whose receipt is missing,
/// [`CeremonyError::NoState`] when what is staged is not a reshare.
pub fn activate_reshare<C: KuraSuite>(
    state: &super::state::MemberState,
    receipts: &[RefreshReceipt<C>],
    keystore: &dyn Keystore,
    hook: super::state::Hook<'_>,
) -> Result<Option<PublicGroup<C>>, CeremonyError> {
    use super::state::{StagedReshare, Staging};
    if state.staged::<C>()?.is_none() {
        return Ok(None);
    }
    if state.switched::<C>()? {
        // An activation to complete (its receipts were checked before it
        // switched); the roster is the staged one, or written already.
        let roster =
            match state.staged_reshare::<C>()? {
                Some(s) => s.roster,
                None => state.roster(&state.staged::<C>()?.ok_or_else(|| {
                    CeremonyError::NoState("the staged group went away".into())
                })?)?,
            };
        let me = own_entry(&roster, keystore)?.participant;
        return state.activate::<C>(keystore, &me, Staging::Reshare, hook);
    }
    let Some(StagedReshare {
        group: new_group,
        roster: new_roster,
    }) = state.staged_reshare::<C>()?
    else {
        return Err(CeremonyError::NoState(
            "what is staged here is a refresh, not a reshare".into(),
        ));
    };
    let tag = state.staged_tag()?.ok_or_else(|| {
        CeremonyError::NoState("a staged reshare without its proposal's digest".into())
    })?;
    let me = own_entry(&new_roster, keystore)?.participant;
    check_receipts(
        new_group.id(),
        &new_roster,
        receipts,
        &tag,
        "reshare",
        "not activated: no receipt yet from {} — every new member must have staged its share first",
    )?;
    state.activate::<C>(keystore, &me, Staging::Reshare, hook)
}

/// A member who leaves: checks that the reshare it is leaving by is real
/// (the proposal and every deal, against the current group and roster),
/// that this member is not among the new members, and that every new member
/// has staged its share (a receipt from each); then erases this member's
/// share and group files ([`super::state::MemberState::retire`]). Returns
/// the group it left.
///
/// # Errors
/// [`CeremonyError::Misaddressed`] for a member who stays; the checks of
/// [`reshared`]; a missing or forged receipt.
pub fn retire<C: KuraSuite>(
    state: &super::state::MemberState,
    group: &PublicGroup<C>,
    roster: &Roster<C>,
    proposal: &ReshareProposal<C>,
    deals: &[ReshareDeal<C>],
    receipts: &[RefreshReceipt<C>],
    keystore: &dyn Keystore,
) -> Result<PublicGroup<C>, CeremonyError> {
    let me = own_entry(roster, keystore)?.participant;
    let done = reshared(group, roster, proposal, deals)?;
    let new_roster = &done.plan.roster;
    if own_entry(new_roster, keystore).is_ok() || new_roster.member(&me).is_some() {
        return Err(CeremonyError::Misaddressed(
            "this member stays in the group: it accepts the reshare, it does not retire".into(),
        ));
    }
    check_receipts(
        group.id(),
        new_roster,
        receipts,
        &done.tag,
        "reshare",
        "not retired: no receipt yet from {} — the share is erased only once every new member holds its own",
    )?;
    state.retire::<C>(keystore, group.id(), &me)?;
    Ok(done.group)
}
