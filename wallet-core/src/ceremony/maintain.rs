//! Share refresh and share repair as authenticated documents.
//!
//! **Refresh** needs the quorum's consent. A proposer — a member, or the
//! group's pinned dealer — signs a [`RefreshProposal`]: the refreshed
//! public key package and one refreshing share sealed to each member. A
//! member-made proposal is accepted only with [`RefreshEndorsement`]s from
//! enough members that, with the proposer, at least `t` distinct members
//! signed it; a dealer-made one only when signed by the dealer card the
//! member pinned at import. The proposal names the group fingerprint
//! (group key, roster, threshold), so a refresh never changes labels or
//! roster. An accepted refresh is only *staged* (see
//! [`super::state::MemberState::stage`]); the old share stays in use
//! until activation.
//!
//! **Repair**: `t` helpers send each other deltas, then each sends the
//! lost member a sigma; every delta and sigma is signed by its helper, then
//! sealed to its recipient, and checked against the roster.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use frost_core::keys::repairable::{Delta, Sigma};
use frost_core::keys::{PublicKeyPackage, SecretShare};
use frost_core::Identifier;
use rand_core::{CryptoRng, RngCore};
use serde::{Deserialize, Serialize};

use super::state::same_group;
use super::{
    group_fingerprint, own_entry, parse_secret, secret_json, Authored, CeremonyError, Roster,
    SealPurpose, SealedPart,
};
use crate::format::{hex_bytes, DocumentBody};
use crate::group::{KeyShare, PublicGroup};
use crate::keygen::{refresh, repair};
use crate::keystore::Keystore;
use crate::suite::{KuraSuite, SuiteId};

/// Who proposed a refresh.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(bound = "C: KuraSuite", rename_all = "kebab-case")]
pub enum Proposer<C: KuraSuite> {
    /// A member of the group.
    Member(Identifier<C>),
    /// The group's dealer (its card is in the roster).
    Dealer,
}

/// A refresh proposal's content (kind `refresh-proposal`, envelope group =
/// the group id), signed by its proposer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(bound = "C: KuraSuite", deny_unknown_fields)]
pub struct RefreshBody<C: KuraSuite> {
    /// 32 random bytes naming this refresh.
    #[serde(with = "hex_bytes")]
    pub refresh: Vec<u8>,
    /// Who proposes it.
    pub proposer: Proposer<C>,
    /// The group fingerprint (group key, roster, threshold) it refreshes.
    pub group_fingerprint: String,
    /// The refreshed public key package: same key, new verifying shares.
    pub public_key_package: PublicKeyPackage<C>,
    /// One refreshing share per member, sealed to it.
    pub shares: Vec<SealedPart<C>>,
}

impl<C: KuraSuite> DocumentBody for RefreshBody<C> {
    const KIND: &'static str = "refresh-proposal";
    fn suite() -> SuiteId {
        C::SUITE
    }
}

/// A signed refresh proposal.
pub type RefreshProposal<C> = Authored<RefreshBody<C>>;

/// A member's consent to one refresh proposal (kind `refresh-endorsement`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(bound = "C: KuraSuite", deny_unknown_fields)]
pub struct EndorsementBody<C: KuraSuite> {
    /// The endorsing member.
    pub from: Identifier<C>,
    /// The digest of the proposal ([`Authored::digest`]).
    #[serde(with = "hex_bytes")]
    pub proposal: Vec<u8>,
}

impl<C: KuraSuite> DocumentBody for EndorsementBody<C> {
    const KIND: &'static str = "refresh-endorsement";
    fn suite() -> SuiteId {
        C::SUITE
    }
}

/// A signed endorsement.
pub type RefreshEndorsement<C> = Authored<EndorsementBody<C>>;

/// A member's statement that it accepted a refresh and staged its share
/// (kind `refresh-receipt`). Activation needs one from **every** member, so
/// nobody switches while another member is left without a refreshed share.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(bound = "C: KuraSuite", deny_unknown_fields)]
pub struct ReceiptBody<C: KuraSuite> {
    /// The member.
    pub from: Identifier<C>,
    /// The digest of the proposal it staged.
    #[serde(with = "hex_bytes")]
    pub proposal: Vec<u8>,
}

impl<C: KuraSuite> DocumentBody for ReceiptBody<C> {
    const KIND: &'static str = "refresh-receipt";
    fn suite() -> SuiteId {
        C::SUITE
    }
}

/// A signed receipt.
pub type RefreshReceipt<C> = Authored<ReceiptBody<C>>;

/// Signs this member's receipt for the refresh named `tag` — a proposal's
/// [`Authored::digest`], or a refresh DKG's ceremony id — after staging.
///
/// # Errors
/// [`CeremonyError::NotAMember`], or a keystore failure.
pub fn receipt<C: KuraSuite>(
    group: &PublicGroup<C>,
    roster: &Roster<C>,
    tag: &[u8; 32],
    keystore: &dyn Keystore,
) -> Result<RefreshReceipt<C>, CeremonyError> {
    let me = own_entry(roster, keystore)?;
    Authored::sign(
        group.id(),
        ReceiptBody {
            from: me.participant,
            proposal: tag.to_vec(),
        },
        keystore,
    )
}

/// Checks that `receipts` hold a valid receipt for `tag` from every member
/// of `roster` (signed by its pinned key, in `scope`). `missing` is the
/// message when some are missing, with `{}` for their labels; `what` names
/// the change ("refresh", "reshare").
///
/// # Errors
/// [`CeremonyError::Outsider`], [`CeremonyError::NotAuthentic`],
/// [`CeremonyError::Misaddressed`] for a receipt of another change (or of
/// another outcome of it), [`CeremonyError::Messages`] for missing ones.
pub(crate) fn check_receipts<C: KuraSuite>(
    scope: &crate::format::GroupId,
    roster: &Roster<C>,
    receipts: &[RefreshReceipt<C>],
    tag: &[u8; 32],
    what: &str,
    missing: &str,
) -> Result<(), CeremonyError> {
    let mut have = BTreeSet::new();
    for r in receipts {
        let m = roster
            .member(&r.body.from)
            .ok_or_else(|| CeremonyError::Outsider {
                what: "a receipt",
                who: roster.describe(&r.body.from),
            })?;
        r.verify(scope, &m.key, &m.label)?;
        if r.body.proposal != *tag {
            return Err(CeremonyError::Misaddressed(format!(
                "{}'s receipt is for another {what} than the one here, or for another outcome of it (members were given different messages)",
                m.label
            )));
        }
        have.insert(m.participant);
    }
    let absent: Vec<String> = roster
        .members
        .iter()
        .filter(|m| !have.contains(&m.participant))
        .map(|m| m.label.to_string())
        .collect();
    if absent.is_empty() {
        Ok(())
    } else {
        Err(CeremonyError::Messages(missing.replacen(
            "{}",
            &absent.join(", "),
            1,
        )))
    }
}

/// Activates a staged refresh once every member's receipt for the staged
/// proposal is given (crash-safe; see
/// [`super::state::MemberState::activate`]). `None` when nothing is staged.
///
/// # Errors
/// [`CeremonyError::NotAuthentic`] for a forged receipt,
/// [`CeremonyError::Messages`] naming the members whose receipt is missing,
/// [`CeremonyError::NoState`] when what is staged is a reshare, or a
/// refresh whose tag is missing or not what was staged.
pub fn activate_refresh<C: KuraSuite>(
    state: &super::state::MemberState,
    group: &PublicGroup<C>,
    roster: &Roster<C>,
    receipts: &[RefreshReceipt<C>],
    keystore: &dyn Keystore,
    hook: super::state::Hook<'_>,
) -> Result<Option<PublicGroup<C>>, CeremonyError> {
    let me = own_entry(roster, keystore)?.participant;
    let refresh = super::state::Staging::Refresh;
    if state.staged::<C>()?.is_none() || state.switched::<C>()? {
        // Nothing staged, or an activation to complete (its receipts were
        // checked before it switched).
        return state.activate::<C>(keystore, &me, refresh, hook);
    }
    if state.staged_reshare::<C>()?.is_some() {
        return Err(CeremonyError::NoState(
            "what is staged here is a reshare, not a refresh: activate it with the reshare's receipts".into(),
        ));
    }
    let tag = state.staged_tag()?.ok_or_else(|| {
        CeremonyError::NoState(format!(
            "a staged refresh without its proposal's digest ({} is missing): stage it again",
            state.staged_tag_path().display()
        ))
    })?;
    check_receipts(
        group.id(),
        roster,
        receipts,
        &tag,
        "refresh",
        "not activated: no receipt yet from {} — every member must have staged the refreshed share first",
    )?;
    state.activate::<C>(keystore, &me, refresh, hook)
}

/// Proposes a refresh of `group` for all its members, signed by the
/// keystore's identity key (a member's or the pinned dealer's).
///
/// # Errors
/// [`CeremonyError::Dealer`] when the keystore's key is neither a member's
/// nor the roster's dealer.
pub fn propose_refresh<C: KuraSuite, R: RngCore + CryptoRng>(
    group: &PublicGroup<C>,
    roster: &Roster<C>,
    keystore: &dyn Keystore,
    rng: &mut R,
) -> Result<RefreshProposal<C>, CeremonyError> {
    roster.identities(group)?;
    let key = keystore.identity_public_key()?;
    let proposer = match roster.member_by_key(&key) {
        Some(m) => Proposer::Member(m.participant),
        None if roster.dealer.as_ref().is_some_and(|d| d.key == key) => Proposer::Dealer,
        None => {
            return Err(CeremonyError::Dealer(
                "only a member or the group's pinned dealer can propose a refresh".into(),
            ))
        }
    };
    let mut refresh_id = [0u8; 32];
    rng.fill_bytes(&mut refresh_id);
    let keep: Vec<_> = group.participants().keys().copied().collect();
    let rf = refresh::dealer_refresh(group, &keep, rng)?;
    let from = match proposer {
        Proposer::Member(id) => Some(id),
        Proposer::Dealer => None,
    };
    let mut shares = Vec::new();
    for (id, share) in &rf.refreshing_shares {
        let to = roster.member(id).ok_or(CeremonyError::NotAMember)?;
        let plain = secret_json(share)?;
        shares.push(SealedPart::seal(
            SealPurpose::RefreshShare,
            group.id(),
            from,
            *id,
            &refresh_id,
            &to.key,
            plain.expose(),
            rng,
        )?);
    }
    let body = RefreshBody {
        refresh: refresh_id.to_vec(),
        proposer,
        group_fingerprint: group_fingerprint(group, roster).to_string(),
        public_key_package: rf.group.public_key_package().clone(),
        shares,
    };
    Authored::sign(group.id(), body, keystore)
}

/// Checks a proposal's signature against the roster and that it refreshes
/// exactly `group`; returns the refreshed group and the proposer's label.
fn check_proposal<C: KuraSuite>(
    group: &PublicGroup<C>,
    roster: &Roster<C>,
    proposal: &RefreshProposal<C>,
) -> Result<PublicGroup<C>, CeremonyError> {
    roster.identities(group)?;
    let body = &proposal.body;
    match body.proposer {
        Proposer::Member(id) => {
            let m = roster.member(&id).ok_or_else(|| CeremonyError::Outsider {
                what: "a refresh proposal",
                who: roster.describe(&id),
            })?;
            proposal.verify(group.id(), &m.key, &m.label)?;
        }
        Proposer::Dealer => {
            let d = roster.dealer.as_ref().ok_or_else(|| {
                CeremonyError::Dealer(
                    "a dealer refresh for a group without a pinned dealer (a DKG group): refused"
                        .into(),
                )
            })?;
            proposal.verify(group.id(), &d.key, &d.label)?;
        }
    }
    if !group_fingerprint(group, roster).matches(&body.group_fingerprint) {
        return Err(CeremonyError::Changed(
            "the refresh proposal is for another group, roster or threshold".into(),
        ));
    }
    let new_group = PublicGroup::new(
        body.public_key_package.clone(),
        group.participants().clone(),
    )?;
    same_group(group, &new_group)?;
    Ok(new_group)
}

/// A member's consent: checks the proposal and signs its digest.
///
/// # Errors
/// As [`accept_refresh`]'s checks of the proposal.
pub fn endorse_refresh<C: KuraSuite>(
    group: &PublicGroup<C>,
    roster: &Roster<C>,
    proposal: &RefreshProposal<C>,
    keystore: &dyn Keystore,
) -> Result<RefreshEndorsement<C>, CeremonyError> {
    check_proposal(group, roster, proposal)?;
    let me = own_entry(roster, keystore)?;
    Authored::sign(
        group.id(),
        EndorsementBody {
            from: me.participant,
            proposal: proposal.digest(group.id())?.to_vec(),
        },
        keystore,
    )
}

/// A member's side of a refresh: checks the proposal and the quorum's
/// consent against the pinned roster, opens its refreshing share and
/// returns its refreshed share and the refreshed group — to be staged, not
/// yet used.
///
/// # Errors
/// [`CeremonyError::NotAuthentic`] for a proposal or endorsement not signed
/// by its claimed author; [`CeremonyError::NoQuorum`] without `t` members'
/// consent (or the pinned dealer's); [`CeremonyError::Changed`] for a
/// refresh that changes the group; a share check for a bad refreshing share.
pub fn accept_refresh<C: KuraSuite>(
    group: &PublicGroup<C>,
    roster: &Roster<C>,
    current: &KeyShare<C>,
    proposal: &RefreshProposal<C>,
    endorsements: &[RefreshEndorsement<C>],
    keystore: &dyn Keystore,
) -> Result<(KeyShare<C>, PublicGroup<C>), CeremonyError> {
    let new_group = check_proposal(group, roster, proposal)?;
    let digest = proposal.digest(group.id())?;
    let body = &proposal.body;
    let mut consent = BTreeSet::new();
    let dealer_made = matches!(body.proposer, Proposer::Dealer);
    if let Proposer::Member(id) = body.proposer {
        consent.insert(id);
    }
    for e in endorsements {
        let m = roster
            .member(&e.body.from)
            .ok_or_else(|| CeremonyError::Outsider {
                what: "a refresh endorsement",
                who: roster.describe(&e.body.from),
            })?;
        e.verify(group.id(), &m.key, &m.label)?;
        if e.body.proposal != digest {
            return Err(CeremonyError::Misaddressed(format!(
                "{}'s endorsement is for another refresh proposal",
                m.label
            )));
        }
        consent.insert(m.participant);
    }
    if !dealer_made && consent.len() < usize::from(group.min_signers()) {
        return Err(CeremonyError::NoQuorum {
            have: consent.len(),
            need: group.min_signers(),
        });
    }
    let me = own_entry(roster, keystore)?;
    let mut mine = body.shares.iter().filter(|p| p.to == me.participant);
    let part = mine.next().ok_or_else(|| {
        CeremonyError::Misaddressed("the refresh holds no share for this member".into())
    })?;
    let expected_from = match body.proposer {
        Proposer::Member(id) => Some(id),
        Proposer::Dealer => None,
    };
    if mine.next().is_some() || part.from != expected_from {
        return Err(CeremonyError::Messages(
            "the refresh holds two shares for this member, or one from someone else".into(),
        ));
    }
    let proposer_label = match body.proposer {
        Proposer::Member(id) => roster.describe(&id),
        Proposer::Dealer => "the dealer".into(),
    };
    let plain = part.open(
        SealPurpose::RefreshShare,
        group.id(),
        &body.refresh,
        keystore,
        "refreshing share",
        &proposer_label,
    )?;
    let refreshing: SecretShare<C> = parse_secret(&plain, "refreshing share")?;
    let share = refresh::apply_dealer_refresh(current, refreshing, &new_group)?;
    Ok((share, new_group))
}

// ---------------------------------------------------------------------------
// Repair

/// One repair secret (a delta or a sigma) with its addressing, signed by
/// its helper before it is sealed.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    bound = "C: KuraSuite, V: Serialize + serde::de::DeserializeOwned",
    deny_unknown_fields
)]
pub struct RepairPiece<C: KuraSuite, V> {
    /// The helper.
    pub from: Identifier<C>,
    /// The recipient (a helper for a delta, the lost member for a sigma).
    pub to: Identifier<C>,
    /// The member being repaired.
    pub lost: Identifier<C>,
    /// Every helper, in identifier order.
    pub helpers: Vec<Identifier<C>>,
    /// The secret value.
    pub value: V,
}

impl<C: KuraSuite, V> fmt::Debug for RepairPiece<C, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RepairPiece")
            .field("from", &crate::group::identifier_hex(&self.from))
            .field("to", &crate::group::identifier_hex(&self.to))
            .field("value", &"<redacted>")
            .finish_non_exhaustive()
    }
}

impl<C: KuraSuite> DocumentBody for RepairPiece<C, Delta<C>> {
    const KIND: &'static str = "repair-delta";
    fn suite() -> SuiteId {
        C::SUITE
    }
}

impl<C: KuraSuite> DocumentBody for RepairPiece<C, Sigma<C>> {
    const KIND: &'static str = "repair-sigma";
    fn suite() -> SuiteId {
        C::SUITE
    }
}

/// A sealed, signed repair piece (kind `repair-message`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(bound = "C: KuraSuite", deny_unknown_fields)]
pub struct RepairMessage<C: KuraSuite> {
    /// Delta or sigma.
    pub purpose: RepairKind,
    /// The sealed piece.
    pub part: SealedPart<C>,
}

/// Which repair step a message belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RepairKind {
    /// Helper to helper.
    Delta,
    /// Helper to the lost member.
    Sigma,
}

impl<C: KuraSuite> DocumentBody for RepairMessage<C> {
    const KIND: &'static str = "repair-message";
    fn suite() -> SuiteId {
        C::SUITE
    }
}

fn repair_binding<C: KuraSuite>(lost: &Identifier<C>, helpers: &[Identifier<C>]) -> Vec<u8> {
    let mut b = lost.serialize();
    for h in helpers {
        b.extend_from_slice(&h.serialize());
    }
    b
}

fn seal_piece<C: KuraSuite, V: Serialize + serde::de::DeserializeOwned, R: RngCore + CryptoRng>(
    group: &PublicGroup<C>,
    roster: &Roster<C>,
    keystore: &dyn Keystore,
    kind: RepairKind,
    piece: RepairPiece<C, V>,
    rng: &mut R,
) -> Result<RepairMessage<C>, CeremonyError>
where
    RepairPiece<C, V>: DocumentBody,
{
    let to = roster.member(&piece.to).ok_or(CeremonyError::NotAMember)?;
    let (from, to_id) = (piece.from, piece.to);
    let binding = repair_binding(&piece.lost, &piece.helpers);
    let signed = Authored::sign(group.id(), piece, keystore)?;
    let plain = secret_json(&signed)?;
    let purpose = match kind {
        RepairKind::Delta => SealPurpose::RepairDelta,
        RepairKind::Sigma => SealPurpose::RepairSigma,
    };
    Ok(RepairMessage {
        purpose: kind,
        part: SealedPart::seal(
            purpose,
            group.id(),
            Some(from),
            to_id,
            &binding,
            &to.key,
            plain.expose(),
            rng,
        )?,
    })
}

/// Helper, step 1: one signed, sealed delta per helper (itself included).
///
/// # Errors
/// As [`repair::helper_deltas`]; [`CeremonyError::NotAMember`].
pub fn repair_deltas<C: KuraSuite, R: RngCore + CryptoRng>(
    group: &PublicGroup<C>,
    roster: &Roster<C>,
    share: &KeyShare<C>,
    keystore: &dyn Keystore,
    lost: &Identifier<C>,
    helpers: &[Identifier<C>],
    rng: &mut R,
) -> Result<Vec<RepairMessage<C>>, CeremonyError> {
    let me = own_entry(roster, keystore)?.participant;
    let helpers: Vec<_> = helpers
        .iter()
        .copied()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    if !helpers.contains(&me) {
        return Err(CeremonyError::Misaddressed(
            "the helper list must include this helper".into(),
        ));
    }
    let deltas = repair::helper_deltas(share, group, &helpers, lost, rng)?;
    let mut out = Vec::new();
    for (to, delta) in deltas {
        out.push(seal_piece(
            group,
            roster,
            keystore,
            RepairKind::Delta,
            RepairPiece {
                from: me,
                to,
                lost: *lost,
                helpers: helpers.clone(),
                value: delta,
            },
            rng,
        )?);
    }
    Ok(out)
}

/// Helper, step 2: checks the deltas sealed to this helper (one from each
/// helper) and seals its signed sigma to the lost member.
///
/// # Errors
/// [`CeremonyError::NotAuthentic`] / [`CeremonyError::SealOpen`] for a
/// forged or altered delta; [`CeremonyError::Messages`] for a missing one.
pub fn repair_sigma<C: KuraSuite, R: RngCore + CryptoRng>(
    group: &PublicGroup<C>,
    roster: &Roster<C>,
    keystore: &dyn Keystore,
    lost: &Identifier<C>,
    helpers: &[Identifier<C>],
    deltas: &[RepairMessage<C>],
    rng: &mut R,
) -> Result<RepairMessage<C>, CeremonyError> {
    let me = own_entry(roster, keystore)?.participant;
    let helpers: Vec<_> = helpers
        .iter()
        .copied()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let values = open_with::<C, Delta<C>>(
        group,
        roster,
        keystore,
        RepairKind::Delta,
        lost,
        &helpers,
        deltas,
    )?;
    let sigma = repair::helper_sigma(&values);
    seal_piece(
        group,
        roster,
        keystore,
        RepairKind::Sigma,
        RepairPiece {
            from: me,
            to: *lost,
            lost: *lost,
            helpers,
            value: sigma,
        },
        rng,
    )
}

/// The lost member: checks the sigmas (one from each helper, at least `t`)
/// and rebuilds its share, checked against the group.
///
/// # Errors
/// As [`repair_sigma`], or [`CeremonyError::Keygen`] when the rebuilt
/// share does not match the group.
pub fn repair_recover<C: KuraSuite>(
    group: &PublicGroup<C>,
    roster: &Roster<C>,
    keystore: &dyn Keystore,
    helpers: &[Identifier<C>],
    sigmas: &[RepairMessage<C>],
) -> Result<KeyShare<C>, CeremonyError> {
    let me = own_entry(roster, keystore)?.participant;
    let helpers: Vec<_> = helpers
        .iter()
        .copied()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let values = open_with::<C, Sigma<C>>(
        group,
        roster,
        keystore,
        RepairKind::Sigma,
        &me,
        &helpers,
        sigmas,
    )?;
    Ok(repair::recover(&values, &me, group)?)
}

fn open_with<C: KuraSuite, V: Serialize + serde::de::DeserializeOwned + Clone>(
    group: &PublicGroup<C>,
    roster: &Roster<C>,
    keystore: &dyn Keystore,
    kind: RepairKind,
    lost: &Identifier<C>,
    helpers: &[Identifier<C>],
    messages: &[RepairMessage<C>],
) -> Result<Vec<V>, CeremonyError>
where
    RepairPiece<C, V>: DocumentBody,
{
    let me = own_entry(roster, keystore)?.participant;
    let binding = repair_binding(lost, helpers);
    let what = match kind {
        RepairKind::Delta => "repair delta",
        RepairKind::Sigma => "repair sigma",
    };
    let purpose = match kind {
        RepairKind::Delta => SealPurpose::RepairDelta,
        RepairKind::Sigma => SealPurpose::RepairSigma,
    };
    let mut got: BTreeMap<Identifier<C>, V> = BTreeMap::new();
    for m in messages {
        if m.purpose != kind || m.part.to != me {
            return Err(CeremonyError::Misaddressed(format!(
                "a repair message that is not a {what} for this member"
            )));
        }
        let from_id = m
            .part
            .from
            .ok_or_else(|| CeremonyError::Misaddressed(format!("a {what} without a sender")))?;
        let from = roster
            .member(&from_id)
            .ok_or_else(|| CeremonyError::Outsider {
                what,
                who: roster.describe(&from_id),
            })?;
        let opened = m.part.open(
            purpose,
            group.id(),
            &binding,
            keystore,
            what,
            from.label.as_str(),
        )?;
        let signed: Authored<RepairPiece<C, V>> = parse_secret(&opened, what)?;
        let piece = signed.verify(group.id(), &from.key, &from.label)?;
        if piece.from != from_id
            || piece.to != me
            || &piece.lost != lost
            || piece.helpers != helpers
        {
            return Err(CeremonyError::Misaddressed(format!(
                "the {what} from {} is addressed differently inside",
                from.label
            )));
        }
        if got.insert(from_id, piece.value.clone()).is_some() {
            return Err(CeremonyError::Messages(format!(
                "two {what}s from {}",
                from.label
            )));
        }
    }
    let senders: Vec<_> = got.keys().copied().collect();
    if senders != helpers {
        return Err(CeremonyError::Messages(format!(
            "{what}s from [{}], but the helpers are [{}]: one from each helper is needed",
            senders
                .iter()
                .map(|h| roster.describe(h))
                .collect::<Vec<_>>()
                .join(", "),
            helpers
                .iter()
                .map(|h| roster.describe(h))
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    Ok(got.into_values().collect())
}
