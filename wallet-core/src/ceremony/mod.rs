//! The setup and maintenance protocol: every document that creates or
//! changes a group, defined once, transport-agnostic, and authenticated.
//!
//! | document | kind | author | scope | secret part |
//! |---|---|---|---|---|
//! | [`IdentityCard`] | (plain JSON) | its holder | — | — |
//! | [`Roster`] | `roster` | — (derived) | group | — |
//! | [`dkg::Round1Document`] | `dkg-round1` | member, signed | ceremony | — |
//! | [`dkg::Round2Document`] | `dkg-round2` | member, signed then sealed | ceremony | share of the sender's polynomial |
//! | [`dealer::Dealing`] | `dealing` | dealer, signed | group | one [`SealedPart`] (key share) per member |
//! | [`maintain::RefreshProposal`] | `refresh-proposal` | member or pinned dealer, signed | group | one refreshing share per member |
//! | [`maintain::RefreshEndorsement`] | `refresh-endorsement` | member, signed | group | — |
//! | [`maintain::RefreshReceipt`] | `refresh-receipt` | member, signed | group | — |
//! | [`maintain::RepairMessage`] | `repair-message` (inside: `repair-delta` / `repair-sigma`) | helper, signed then sealed | group | delta / sigma |
//!
//! A refresh by DKG ([`dkg::Ceremony::for_refresh`]) uses the DKG round
//! documents with the refresh ceremony's id as scope.
//!
//! Trust comes from people comparing fingerprints over another channel:
//! a [`Fingerprint`] of each identity card, of each ceremony
//! ([`dkg::Ceremony::fingerprint`]: suite, threshold, every member's
//! identifier, label and identity key, the dealer's card if any, and the
//! ceremony nonce), and of each resulting group ([`group_fingerprint`]:
//! group key, roster, threshold). A participant that confirmed the
//! ceremony's fingerprint holds the same cards as everyone who confirmed it,
//! and every later message is checked against those cards: a message whose
//! signature does not verify under the claimed sender's pinned key is
//! refused as [`CeremonyError::NotAuthentic`], which names the *claimed*
//! sender and never blames them.
//!
//! Secret parts are signed by their sender, then sealed to their recipient's
//! identity key with associated data from the one builder [`seal_context`].

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use frost_core::Identifier;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::format::{self, DocumentBody, FormatError, GroupId};
use crate::group::{identifier_hex, GroupError, Label, PublicGroup};
use crate::identity::{IdentityError, IdentityPublicKey, IdentitySignature};
use crate::keygen::KeygenError;
use crate::keystore::{Keystore, KeystoreError};
use crate::suite::{KuraSuite, SuiteId};

pub mod dealer;
pub mod dkg;
pub mod maintain;
pub mod reshare;
pub mod state;

/// Why a ceremony step was refused or failed.
///
/// [`CeremonyError::is_refusal`] tells a check that refused input (exit 1 in
/// the CLI) from a failure to run at all.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CeremonyError {
    /// The fingerprint the participant confirmed is not this ceremony's.
    #[error("fingerprint mismatch: you confirmed {confirmed}, but the cards and ceremony you hold give {computed} — somebody's card was swapped or the convener used other inputs; do not go on")]
    FingerprintMismatch {
        /// What the participant typed or passed.
        confirmed: String,
        /// What its own inputs give.
        computed: Fingerprint,
    },
    /// A fingerprint that is not one (wrong length or characters).
    #[error("\"{0}\" is not a fingerprint (groups of base32 characters, e.g. ABCD-EFGH-…)")]
    BadFingerprint(String),
    /// A message whose signature does not verify under the pinned key of
    /// the participant it claims to come from. It was forged or altered on
    /// the way; the claimed sender is **not** to blame.
    #[error("the {what} claiming to come from {claimed} is not signed by {claimed}'s pinned identity key: it was forged or altered in transit ({claimed} is not to blame)")]
    NotAuthentic {
        /// What the message is.
        what: &'static str,
        /// The label of the claimed sender.
        claimed: String,
    },
    /// A sealed part that does not open for this participant.
    #[error("the {what} from {from} does not open with this participant's identity key: it was altered in transit, sealed to someone else, or {from} saw another set of round-1 messages (inconsistent broadcast) — abort the ceremony")]
    SealOpen {
        /// What the message is.
        what: &'static str,
        /// The label of the claimed sender.
        from: String,
    },
    /// A member signed a round-2 share bound to a different round-1 set.
    #[error("{from} signed its round-2 share over a different set of round-1 messages than yours: an inconsistent broadcast — abort the ceremony and compare round-1 sets")]
    InconsistentBroadcast {
        /// The label of the sender.
        from: String,
    },
    /// A message from someone outside the roster or ceremony.
    #[error("{what} from {who}, who is not a member of this ceremony or group")]
    Outsider {
        /// What the message is.
        what: &'static str,
        /// Its claimed sender (identifier hex or label).
        who: String,
    },
    /// A message that is not for this participant or purpose.
    #[error("{0}")]
    Misaddressed(String),
    /// Two messages from one sender, or a missing one.
    #[error("{0}")]
    Messages(String),
    /// This participant's own card is not among the ceremony's.
    #[error("this participant's identity key and label are not among the ceremony's cards")]
    NotAMember,
    /// A card of the wrong role, two cards with one label or key, …
    #[error("invalid cards: {0}")]
    Cards(String),
    /// A dealing or refresh by a dealer whose card is not the pinned one.
    #[error("{0}")]
    Dealer(String),
    /// A refresh without the signatures of a quorum.
    #[error("refresh not accepted: signed by {have} distinct member(s), it needs at least {need} (the threshold), or the group's pinned dealer")]
    NoQuorum {
        /// Distinct valid member signatures.
        have: usize,
        /// The threshold.
        need: u16,
    },
    /// A refresh or repair that would change labels, roster, threshold or key.
    #[error("{0}")]
    Changed(String),
    /// No saved state for this step (not run here, or run already).
    #[error("{0}")]
    NoState(String),
    /// A proposal past its expiry, or one whose expiry is too far away.
    #[error("{0}")]
    Expired(String),
    /// This dealer's audit log records a deal for this reshare proposal
    /// already: it deals once per proposal.
    #[error("this member dealt for this reshare proposal already (its audit log says so); it deals once per proposal — ask the proposer for a new proposal if the deal was lost")]
    AlreadyDealt,
    /// The audit log could not record a step (nothing was released).
    #[error(transparent)]
    Audit(#[from] crate::audit::AuditError),
    /// A key-generation check (bad proof, bad share) with its own blame.
    #[error(transparent)]
    Keygen(#[from] KeygenError),
    /// A group-level check.
    #[error(transparent)]
    Group(#[from] GroupError),
    /// A malformed document.
    #[error(transparent)]
    Format(#[from] FormatError),
    /// An identity-key operation.
    #[error(transparent)]
    Identity(#[from] IdentityError),
    /// The keystore failed.
    #[error(transparent)]
    Keystore(#[from] KeystoreError),
}

impl CeremonyError {
    /// Whether this is a check refusing its input (tampering, mismatch,
    /// missing consent) rather than a failure to run.
    pub fn is_refusal(&self) -> bool {
        match self {
            CeremonyError::FingerprintMismatch { .. }
            | CeremonyError::NotAuthentic { .. }
            | CeremonyError::SealOpen { .. }
            | CeremonyError::InconsistentBroadcast { .. }
            | CeremonyError::Outsider { .. }
            | CeremonyError::Misaddressed(_)
            | CeremonyError::Messages(_)
            | CeremonyError::NotAMember
            | CeremonyError::Cards(_)
            | CeremonyError::Dealer(_)
            | CeremonyError::NoQuorum { .. }
            | CeremonyError::Changed(_)
            | CeremonyError::Expired(_)
            | CeremonyError::AlreadyDealt
            | CeremonyError::Keygen(_) => true,
            CeremonyError::BadFingerprint(_)
            | CeremonyError::NoState(_)
            | CeremonyError::Group(_)
            | CeremonyError::Format(_)
            | CeremonyError::Identity(_)
            | CeremonyError::Audit(_)
            | CeremonyError::Keystore(_) => false,
        }
    }
}

// ---------------------------------------------------------------------------
// Fingerprints

const BASE32: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// A short digest for people to compare over another channel: Crockford
/// base32 in groups of four (`K7Q2-0M3A-…`). Card fingerprints have 80 bits
/// (16 characters), ceremony and group fingerprints 160 bits (32
/// characters), enough that nobody can make two sets of cards that agree.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Fingerprint(String);

impl Fingerprint {
    fn of(tag: &str, parts: &[&[u8]], bytes: usize) -> Fingerprint {
        let mut h = Sha256::new();
        h.update(b"kura/v1/fingerprint/");
        h.update(tag.as_bytes());
        h.update([0u8]);
        for p in parts {
            h.update((p.len() as u64).to_be_bytes());
            h.update(p);
        }
        let digest = h.finalize();
        let mut chars = String::new();
        let mut acc: u32 = 0;
        let mut bits = 0;
        for b in digest.iter().take(bytes) {
            acc = (acc << 8) | u32::from(*b);
            bits += 8;
            while bits >= 5 {
                bits -= 5;
                let i = ((acc >> bits) & 31) as usize;
                chars.push(char::from(BASE32.get(i).copied().unwrap_or(b'0')));
            }
            acc &= (1 << bits) - 1;
        }
        Fingerprint(chars)
    }

    /// Whether `typed` (as a person copies it: any case, with or without
    /// dashes and spaces, `O` for `0`, `I`/`L` for `1`) is this fingerprint.
    pub fn matches(&self, typed: &str) -> bool {
        normalize(typed).is_some_and(|t| t == self.0)
    }

    /// Checks a confirmed fingerprint.
    ///
    /// # Errors
    /// [`CeremonyError::FingerprintMismatch`], or
    /// [`CeremonyError::BadFingerprint`] for text that is no fingerprint.
    pub fn confirm(&self, typed: &str) -> Result<(), CeremonyError> {
        match normalize(typed) {
            None => Err(CeremonyError::BadFingerprint(
                typed
                    .chars()
                    .take(80)
                    .collect::<String>()
                    .escape_default()
                    .to_string(),
            )),
            Some(t) if t == self.0 => Ok(()),
            Some(_) => Err(CeremonyError::FingerprintMismatch {
                confirmed: typed
                    .chars()
                    .take(80)
                    .collect::<String>()
                    .escape_default()
                    .to_string(),
                computed: self.clone(),
            }),
        }
    }
}

fn normalize(typed: &str) -> Option<String> {
    let mut out = String::new();
    for c in typed.chars() {
        match c.to_ascii_uppercase() {
            '-' | ' ' => {}
            'O' => out.push('0'),
            'I' | 'L' => out.push('1'),
            u if u.is_ascii() && BASE32.contains(&(u as u8)) => out.push(u),
            _ => return None,
        }
        if out.len() > 64 {
            return None;
        }
    }
    (!out.is_empty()).then_some(out)
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, chunk) in self.0.as_bytes().chunks(4).enumerate() {
            if i > 0 {
                f.write_str("-")?;
            }
            f.write_str(std::str::from_utf8(chunk).map_err(|_| fmt::Error)?)?;
        }
        Ok(())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

impl FromStr for Fingerprint {
    type Err = CeremonyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        normalize(s).map(Fingerprint).ok_or_else(|| {
            CeremonyError::BadFingerprint(
                s.chars()
                    .take(80)
                    .collect::<String>()
                    .escape_default()
                    .to_string(),
            )
        })
    }
}

// ---------------------------------------------------------------------------
// Identity cards

/// What a participant does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Holds a share and co-signs.
    Signer,
    /// Signs withdrawal requests.
    Requester,
    /// Deals shares (trusted-dealer keygen, dealer refresh).
    Dealer,
}

impl Role {
    /// The role's name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Role::Signer => "signer",
            Role::Requester => "requester",
            Role::Dealer => "dealer",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A public identity card: who, which role, which key. Its
/// [`IdentityCard::fingerprint`] is what people compare.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct IdentityCard {
    /// Format version (1).
    pub kura_identity_card: u32,
    /// Label.
    pub label: Label,
    /// Role.
    pub role: Role,
    /// P-256 identity public key.
    pub key: IdentityPublicKey,
}

/// The largest card file read.
pub const MAX_CARD_BYTES: usize = 4096;

impl IdentityCard {
    /// A version-1 card.
    pub fn new(label: Label, role: Role, key: IdentityPublicKey) -> Self {
        IdentityCard {
            kura_identity_card: 1,
            label,
            role,
            key,
        }
    }

    /// Parses a card.
    ///
    /// # Errors
    /// [`FormatError`] for oversized, malformed or unknown-version cards.
    pub fn from_json(bytes: &[u8]) -> Result<Self, FormatError> {
        if bytes.len() > MAX_CARD_BYTES {
            return Err(FormatError::invalid("identity card", "larger than 4 KiB"));
        }
        let card: IdentityCard =
            serde_json::from_slice(bytes).map_err(|e| FormatError::Malformed(e.to_string()))?;
        if card.kura_identity_card != 1 {
            return Err(FormatError::UnknownVersion {
                found: u64::from(card.kura_identity_card),
                supported: 1,
            });
        }
        Ok(card)
    }

    /// The card as pretty JSON.
    ///
    /// # Errors
    /// Only on an internal serialization failure.
    pub fn to_json(&self) -> Result<Vec<u8>, FormatError> {
        let mut v =
            serde_json::to_vec_pretty(self).map_err(|e| FormatError::Malformed(e.to_string()))?;
        v.push(b'\n');
        Ok(v)
    }

    /// The card's fingerprint (16 characters) over role, label and key.
    pub fn fingerprint(&self) -> Fingerprint {
        Fingerprint::of(
            "card",
            &[
                self.role.as_str().as_bytes(),
                self.label.as_str().as_bytes(),
                &self.key.to_sec1(),
            ],
            10,
        )
    }
}

/// The FROST identifier of the member labelled `label`: derived from the
/// label, so every participant computes the same one whatever order the
/// cards come in.
///
/// # Errors
/// Only if frost cannot derive an identifier (it always can for a label).
pub fn identifier_for<C: KuraSuite>(label: &Label) -> Result<Identifier<C>, CeremonyError> {
    Identifier::<C>::derive(label.as_str().as_bytes())
        .map_err(|e| CeremonyError::Keygen(KeygenError::Frost(crate::error::Cause::new(e))))
}

// ---------------------------------------------------------------------------
// Roster

/// One roster entry.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(bound = "C: KuraSuite", deny_unknown_fields)]
pub struct RosterEntry<C: KuraSuite> {
    /// FROST identifier.
    pub participant: Identifier<C>,
    /// Label.
    pub label: Label,
    /// Identity key.
    pub key: IdentityPublicKey,
}

/// The group's members with their identity keys (a `roster` document), in
/// identifier order; for a dealt group also the dealer's card, pinned by
/// every member at import and the only key a dealer refresh is accepted from.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(bound = "C: KuraSuite", deny_unknown_fields)]
pub struct Roster<C: KuraSuite> {
    /// Members.
    pub members: Vec<RosterEntry<C>>,
    /// The dealer who dealt the group, if one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dealer: Option<IdentityCard>,
}

impl<C: KuraSuite> DocumentBody for Roster<C> {
    const KIND: &'static str = "roster";
    fn suite() -> SuiteId {
        C::SUITE
    }
}

impl<C: KuraSuite> Roster<C> {
    /// Identity keys by identifier, checked against the group's members.
    ///
    /// # Errors
    /// [`CeremonyError::Changed`] when the roster and the group disagree.
    pub fn identities(
        &self,
        group: &PublicGroup<C>,
    ) -> Result<BTreeMap<Identifier<C>, IdentityPublicKey>, CeremonyError> {
        let mut map = BTreeMap::new();
        for m in &self.members {
            if group.label(&m.participant) != Some(&m.label) {
                return Err(CeremonyError::Changed(format!(
                    "roster entry {} is not a member of group {} under that label",
                    m.label,
                    group.id().short()
                )));
            }
            if map.insert(m.participant, m.key).is_some() {
                return Err(CeremonyError::Changed(format!(
                    "roster lists {} twice",
                    m.label
                )));
            }
        }
        if map.len() != group.participants().len() {
            return Err(CeremonyError::Changed(format!(
                "roster has {} members, the group {}",
                map.len(),
                group.participants().len()
            )));
        }
        Ok(map)
    }

    /// The entry of `id`.
    pub fn member(&self, id: &Identifier<C>) -> Option<&RosterEntry<C>> {
        self.members.iter().find(|m| &m.participant == id)
    }

    /// The entry with identity key `key`.
    pub fn member_by_key(&self, key: &IdentityPublicKey) -> Option<&RosterEntry<C>> {
        self.members.iter().find(|m| &m.key == key)
    }

    /// The label of `id`, or its hex for an outsider (for messages).
    pub fn describe(&self, id: &Identifier<C>) -> String {
        self.member(id)
            .map(|m| m.label.to_string())
            .unwrap_or_else(|| format!("outsider {}", identifier_hex(id)))
    }

    /// Encodes the roster of `group`.
    ///
    /// # Errors
    /// Only on an internal serialization failure.
    pub fn to_document(&self, group: &GroupId) -> Result<Vec<u8>, FormatError> {
        format::encode(group, self)
    }

    /// Reads a roster document of `group` and checks it against the group.
    ///
    /// # Errors
    /// [`CeremonyError`] for a malformed roster or one that does not fit.
    pub fn from_document(bytes: &[u8], group: &PublicGroup<C>) -> Result<Self, CeremonyError> {
        let roster: Roster<C> = format::decode_for_group(bytes, group.id())?;
        roster.identities(group)?;
        Ok(roster)
    }
}

/// The group's fingerprint (32 characters) over suite, group key,
/// threshold and every member's identifier, label and identity key (and the
/// dealer's card, if any): printed after DKG finish and import for every
/// participant to compare. It does not change when shares are refreshed.
pub fn group_fingerprint<C: KuraSuite>(group: &PublicGroup<C>, roster: &Roster<C>) -> Fingerprint {
    let vk = group.verifying_key().serialize().unwrap_or_default();
    let t = group.min_signers().to_be_bytes();
    let mut parts: Vec<Vec<u8>> = vec![C::SUITE.as_str().as_bytes().to_vec(), vk, t.to_vec()];
    for m in &roster.members {
        parts.push(m.participant.serialize());
        parts.push(m.label.as_str().as_bytes().to_vec());
        parts.push(m.key.to_sec1());
    }
    if let Some(d) = &roster.dealer {
        parts.push(b"dealer".to_vec());
        parts.push(d.label.as_str().as_bytes().to_vec());
        parts.push(d.key.to_sec1());
    }
    let refs: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
    Fingerprint::of("group", &refs, 20)
}

// ---------------------------------------------------------------------------
// Sealing and signing

/// What a sealed part is; part of its associated data, so a part sealed for
/// one purpose never opens as another.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SealPurpose {
    /// A DKG round-2 share.
    DkgRound2,
    /// A dealt key share.
    DealtShare,
    /// A refreshing share.
    RefreshShare,
    /// A repair delta.
    RepairDelta,
    /// A repair sigma.
    RepairSigma,
    /// A reshare dealer's share for a new member.
    ReshareShare,
}

impl SealPurpose {
    /// The purpose's name.
    pub const fn as_str(self) -> &'static str {
        match self {
            SealPurpose::DkgRound2 => "dkg-round2",
            SealPurpose::DealtShare => "dealt-share",
            SealPurpose::RefreshShare => "refresh-share",
            SealPurpose::RepairDelta => "repair-delta",
            SealPurpose::RepairSigma => "repair-sigma",
            SealPurpose::ReshareShare => "reshare-share",
        }
    }
}

/// The associated data of every sealed part: purpose, scope (the ceremony
/// or group id), sender (`None` for a dealer), recipient, and a binding the
/// purpose adds (the DKG round-1 set digest, a refresh or repair digest).
/// The one place this is built.
pub fn seal_context<C: KuraSuite>(
    purpose: SealPurpose,
    scope: &GroupId,
    from: Option<&Identifier<C>>,
    to: &Identifier<C>,
    binding: &[u8],
) -> Vec<u8> {
    let mut ctx = format!("kura/v1/seal/{}\0", purpose.as_str()).into_bytes();
    ctx.extend_from_slice(C::SUITE.as_str().as_bytes());
    ctx.push(0);
    ctx.extend_from_slice(scope.as_bytes());
    let from = from.map(Identifier::serialize).unwrap_or_default();
    ctx.extend_from_slice(&(from.len() as u64).to_be_bytes());
    ctx.extend_from_slice(&from);
    let to = to.serialize();
    ctx.extend_from_slice(&(to.len() as u64).to_be_bytes());
    ctx.extend_from_slice(&to);
    ctx.extend_from_slice(&(binding.len() as u64).to_be_bytes());
    ctx.extend_from_slice(binding);
    ctx
}

/// A body signed by its author's identity key over
/// [`format::canonical_bytes`] in its scope. Who the author is comes from
/// the body (a `from` field) and the pinned roster — never from the
/// message itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Authored<T> {
    /// The signed content.
    pub body: T,
    /// The author's signature. A document without one parses (so that it
    /// is refused as [`CeremonyError::NotAuthentic`] naming its claimed
    /// author, not as a malformed file) but never verifies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<IdentitySignature>,
}

impl<T: DocumentBody> DocumentBody for Authored<T> {
    const KIND: &'static str = T::KIND;
    fn suite() -> SuiteId {
        T::suite()
    }
}

impl<T: DocumentBody> Authored<T> {
    /// Signs `body` in `scope` with the keystore's identity key.
    ///
    /// # Errors
    /// A keystore failure.
    pub fn sign(scope: &GroupId, body: T, keystore: &dyn Keystore) -> Result<Self, CeremonyError> {
        // Some bodies are secret (a round-2 share, a repair piece, signed
        // before they are sealed): their canonical bytes are zeroized too.
        let bytes = Zeroizing::new(format::canonical_bytes(scope, &body)?);
        Ok(Authored {
            signature: Some(keystore.sign_identity(&bytes)?),
            body,
        })
    }

    /// Checks the signature against `key`, the pinned key of the claimed
    /// author `claimed`.
    ///
    /// # Errors
    /// [`CeremonyError::NotAuthentic`] naming the claimed author.
    pub fn verify(
        &self,
        scope: &GroupId,
        key: &IdentityPublicKey,
        claimed: &Label,
    ) -> Result<&T, CeremonyError> {
        let bytes = Zeroizing::new(format::canonical_bytes(scope, &self.body)?);
        let not_authentic = || CeremonyError::NotAuthentic {
            what: T::KIND,
            claimed: claimed.to_string(),
        };
        let signature = self.signature.as_ref().ok_or_else(not_authentic)?;
        key.verify(&bytes, signature).map_err(|_| not_authentic())?;
        Ok(&self.body)
    }

    /// SHA-256 of the canonical signed bytes and the signature: names this
    /// exact message (round-1 set digests, endorsements).
    ///
    /// # Errors
    /// Only on an internal serialization failure.
    pub fn digest(&self, scope: &GroupId) -> Result<[u8; 32], CeremonyError> {
        let mut h = Sha256::new();
        h.update(Zeroizing::new(format::canonical_bytes(scope, &self.body)?).as_slice());
        match &self.signature {
            Some(sig) => h.update(sig.to_bytes()),
            None => h.update([]),
        }
        Ok(h.finalize().into())
    }
}

/// A message sealed to one recipient, with its envelope addressing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(bound = "C: KuraSuite", deny_unknown_fields)]
pub struct SealedPart<C: KuraSuite> {
    /// Sender (`None` for a dealer).
    pub from: Option<Identifier<C>>,
    /// Recipient.
    pub to: Identifier<C>,
    /// The sealed JSON.
    pub sealed: crate::identity::SealedMessage,
}

impl<C: KuraSuite> SealedPart<C> {
    /// Seals `plaintext` to `key` with [`seal_context`] (whose inputs are
    /// the first five arguments, kept apart so none can be forgotten).
    ///
    /// # Errors
    /// Only if the AEAD fails.
    #[allow(clippy::too_many_arguments)]
    pub fn seal<R: rand_core::RngCore + rand_core::CryptoRng>(
        purpose: SealPurpose,
        scope: &GroupId,
        from: Option<Identifier<C>>,
        to: Identifier<C>,
        binding: &[u8],
        key: &IdentityPublicKey,
        plaintext: &[u8],
        rng: &mut R,
    ) -> Result<Self, CeremonyError> {
        let ctx = seal_context(purpose, scope, from.as_ref(), &to, binding);
        Ok(SealedPart {
            from,
            to,
            sealed: key.seal(plaintext, &ctx, rng)?,
        })
    }

    /// Opens this part with the keystore's identity key.
    ///
    /// # Errors
    /// [`CeremonyError::SealOpen`] naming the claimed sender `from`.
    pub fn open(
        &self,
        purpose: SealPurpose,
        scope: &GroupId,
        binding: &[u8],
        keystore: &dyn Keystore,
        what: &'static str,
        from: &str,
    ) -> Result<crate::SecretBytes, CeremonyError> {
        let ctx = seal_context(purpose, scope, self.from.as_ref(), &self.to, binding);
        keystore
            .open_sealed(&self.sealed, &ctx)
            .map_err(|_| CeremonyError::SealOpen {
                what,
                from: from.to_owned(),
            })
    }
}

/// JSON of a secret value in zeroizing memory.
pub(crate) fn secret_json<T: Serialize>(value: &T) -> Result<crate::SecretBytes, CeremonyError> {
    let mut buf = Vec::with_capacity(16 * 1024);
    serde_json::to_writer(&mut buf, value).map_err(|e| FormatError::Malformed(e.to_string()))?;
    Ok(crate::SecretBytes::new(buf))
}

/// Parses a secret value from opened bytes.
pub(crate) fn parse_secret<T: serde::de::DeserializeOwned>(
    bytes: &crate::SecretBytes,
    field: &'static str,
) -> Result<T, CeremonyError> {
    serde_json::from_slice(bytes.expose())
        .map_err(|e| CeremonyError::Format(FormatError::invalid(field, e)))
}

/// The participant's own identifier in `roster`, by its keystore's key.
///
/// # Errors
/// [`CeremonyError::NotAMember`].
pub fn own_entry<'r, C: KuraSuite>(
    roster: &'r Roster<C>,
    keystore: &dyn Keystore,
) -> Result<&'r RosterEntry<C>, CeremonyError> {
    let key = keystore.identity_public_key()?;
    roster.member_by_key(&key).ok_or(CeremonyError::NotAMember)
}
