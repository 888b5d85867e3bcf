//! Distributed key generation (RFC 9591's companion DKG, as in frost's
//! `keys::dkg`), as three explicit parts with typed round messages.
//!
//! ```text
//! part1 ── Round1Message (broadcast to all) ──▶ part2 ── Round2Message (to each peer, confidential) ──▶ part3
//! ```
//!
//! Round-1 messages must reach everyone identically (a broadcast channel, or
//! every participant confirming the same set); round-2 messages must travel
//! confidentially and authenticated. Each participant verifies the others'
//! proofs of knowledge in part 2 and every received share against its
//! sender's VSS commitment in part 3.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use frost_core::keys::dkg::{round1, round2};
use frost_core::Identifier;
use rand_core::{CryptoRng, RngCore};
use serde::{Deserialize, Serialize};

use super::{group_from, KeygenError};
use crate::group::{check_threshold, identifier_hex, GroupError, KeyShare, Label, PublicGroup};
use crate::suite::KuraSuite;

/// A participant's secret state between part 1 and part 2.
pub struct Round1Secret<C: KuraSuite> {
    pub(super) label: Label,
    pub(super) secret: round1::SecretPackage<C>,
}

/// A participant's secret state between part 2 and part 3.
pub struct Round2Secret<C: KuraSuite> {
    pub(super) label: Label,
    pub(super) identifier: Identifier<C>,
    pub(super) secret: round2::SecretPackage<C>,
}

impl<C: KuraSuite> fmt::Debug for Round1Secret<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Round1Secret")
            .field("label", &self.label)
            .finish_non_exhaustive()
    }
}

impl<C: KuraSuite> fmt::Debug for Round2Secret<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Round2Secret")
            .field("label", &self.label)
            .finish_non_exhaustive()
    }
}

/// Part 1's broadcast: the sender's VSS commitment and proof of knowledge.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(bound = "C: KuraSuite", deny_unknown_fields)]
pub struct Round1Message<C: KuraSuite> {
    /// Sender.
    pub from: Identifier<C>,
    /// Sender's label.
    pub label: Label,
    /// frost's round-1 package.
    pub package: round1::Package<C>,
}

/// Part 2's message to one peer: a secret share of the sender's polynomial.
/// Confidential: encrypt it to the recipient before it leaves the sender.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(bound = "C: KuraSuite", deny_unknown_fields)]
pub struct Round2Message<C: KuraSuite> {
    /// Sender.
    pub from: Identifier<C>,
    /// Recipient.
    pub to: Identifier<C>,
    /// frost's round-2 package (secret).
    pub package: round2::Package<C>,
}

impl<C: KuraSuite> fmt::Debug for Round2Message<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Round2Message")
            .field("from", &identifier_hex(&self.from))
            .field("to", &identifier_hex(&self.to))
            .field("package", &"<redacted>")
            .finish()
    }
}

/// Part 1: draws this participant's polynomial and returns its secret state
/// and the broadcast message.
///
/// # Errors
/// [`KeygenError`] for a threshold out of range.
pub fn part1<C: KuraSuite, R: RngCore + CryptoRng>(
    identifier: Identifier<C>,
    label: Label,
    max_signers: u16,
    min_signers: u16,
    rng: &mut R,
) -> Result<(Round1Secret<C>, Round1Message<C>), KeygenError> {
    check_threshold(min_signers, max_signers)?;
    let (secret, package) = frost_core::keys::dkg::part1(identifier, max_signers, min_signers, rng)
        .map_err(|e| KeygenError::Frost(crate::error::Cause::new(e)))?;
    let message = Round1Message {
        from: identifier,
        label: label.clone(),
        package,
    };
    Ok((Round1Secret { label, secret }, message))
}

/// Collects the peers' round-1 messages into frost's map, checking that there
/// is exactly one from each of the other `n - 1` participants and that labels
/// are unique.
pub(super) fn round1_map<C: KuraSuite>(
    me: &Identifier<C>,
    my_label: &Label,
    max_signers: u16,
    messages: &[Round1Message<C>],
) -> Result<BTreeMap<Identifier<C>, round1::Package<C>>, KeygenError> {
    let mut map = BTreeMap::new();
    let mut labels = BTreeSet::from([my_label.clone()]);
    for m in messages {
        if &m.from == me {
            continue;
        }
        if !labels.insert(m.label.clone()) {
            return Err(GroupError::DuplicateLabel(m.label.to_string()).into());
        }
        if map.insert(m.from, m.package.clone()).is_some() {
            return Err(GroupError::DuplicateIdentifier(identifier_hex(&m.from)).into());
        }
    }
    if map.len() + 1 != usize::from(max_signers) {
        return Err(KeygenError::Messages(format!(
            "{} round-1 messages from peers, expected {}",
            map.len(),
            max_signers.saturating_sub(1)
        )));
    }
    Ok(map)
}

/// Part 2: verifies every peer's proof of knowledge and computes one secret
/// message per peer. `round1` may include this participant's own message; it
/// is skipped.
///
/// # Errors
/// [`KeygenError::InvalidProofOfKnowledge`] naming the peer, or
/// [`KeygenError::Messages`] for a missing or duplicated message.
pub fn part2<C: KuraSuite>(
    secret: Round1Secret<C>,
    round1: &[Round1Message<C>],
) -> Result<(Round2Secret<C>, Vec<Round2Message<C>>), KeygenError> {
    part2_with(secret, round1, frost_core::keys::dkg::part2)
}

type Part2Output<C> = (
    round2::SecretPackage<C>,
    BTreeMap<Identifier<C>, round2::Package<C>>,
);

/// Part 2 with frost's DKG or refresh-DKG step `step`: the message checks,
/// culprit naming and message wrapping shared by both.
pub(super) fn part2_with<C: KuraSuite>(
    secret: Round1Secret<C>,
    round1: &[Round1Message<C>],
    step: impl FnOnce(
        round1::SecretPackage<C>,
        &BTreeMap<Identifier<C>, round1::Package<C>>,
    ) -> Result<Part2Output<C>, frost_core::Error<C>>,
) -> Result<(Round2Secret<C>, Vec<Round2Message<C>>), KeygenError> {
    let me = *secret.secret.identifier();
    let map = round1_map(&me, &secret.label, *secret.secret.max_signers(), round1)?;
    let (secret2, packages) = step(secret.secret, &map).map_err(|e| match e {
        frost_core::Error::InvalidProofOfKnowledge { culprit } => {
            KeygenError::InvalidProofOfKnowledge(describe(round1, &culprit))
        }
        other => KeygenError::Frost(crate::error::Cause::new(other)),
    })?;
    let messages = packages
        .into_iter()
        .map(|(to, package)| Round2Message {
            from: me,
            to,
            package,
        })
        .collect();
    Ok((
        Round2Secret {
            label: secret.label,
            identifier: me,
            secret: secret2,
        },
        messages,
    ))
}

/// Part 3: verifies each received share against its sender's commitment and
/// derives this participant's key share and the group.
///
/// `round1` must be the same set of broadcast messages used in part 2;
/// `round2` the messages addressed to this participant.
///
/// # Errors
/// [`KeygenError::InvalidShare`] naming the sender of a bad share, or
/// [`KeygenError::Messages`] for messages that are missing, duplicated or
/// addressed to someone else.
pub fn part3<C: KuraSuite>(
    secret: &Round2Secret<C>,
    round1: &[Round1Message<C>],
    round2: &[Round2Message<C>],
) -> Result<(KeyShare<C>, PublicGroup<C>), KeygenError> {
    let me = secret.identifier;
    let r1 = round1_map(&me, &secret.label, *secret.secret.max_signers(), round1)?;
    let r2 = round2_map(&me, &r1, round1, round2)?;
    let (key_package, public_key_package) = frost_core::keys::dkg::part3(&secret.secret, &r1, &r2)
        .map_err(|e| match e {
            frost_core::Error::InvalidSecretShare { culprit } => KeygenError::InvalidShare {
                participant: secret.label.to_string(),
                culprit: culprit.map(|c| describe(round1, &c)),
            },
            frost_core::Error::IncorrectNumberOfPackages | frost_core::Error::PackageNotFound => {
                KeygenError::Messages(format!(
                    "{} round-2 messages, expected one from each of the {} peers",
                    r2.len(),
                    r1.len()
                ))
            }
            other => KeygenError::Frost(crate::error::Cause::new(other)),
        })?;
    let mut labels: BTreeMap<Identifier<C>, Label> =
        round1.iter().map(|m| (m.from, m.label.clone())).collect();
    labels.insert(me, secret.label.clone());
    let group = group_from(public_key_package, labels)?;
    let share = KeyShare::new(key_package, secret.label.clone())?;
    share.check_member_of(&group)?;
    Ok((share, group))
}

/// Collects the round-2 messages addressed to `me`, one per round-1 sender.
pub(super) fn round2_map<C: KuraSuite>(
    me: &Identifier<C>,
    r1: &BTreeMap<Identifier<C>, round1::Package<C>>,
    round1: &[Round1Message<C>],
    round2: &[Round2Message<C>],
) -> Result<BTreeMap<Identifier<C>, round2::Package<C>>, KeygenError> {
    let mut r2 = BTreeMap::new();
    for m in round2 {
        if &m.to != me {
            return Err(KeygenError::Messages(format!(
                "a round-2 message from {} is addressed to {}, not to this participant",
                describe(round1, &m.from),
                describe(round1, &m.to)
            )));
        }
        if !r1.contains_key(&m.from) {
            return Err(KeygenError::Messages(format!(
                "round-2 message from {}, who sent no round-1 message",
                identifier_hex(&m.from)
            )));
        }
        if r2.insert(m.from, m.package.clone()).is_some() {
            return Err(GroupError::DuplicateIdentifier(identifier_hex(&m.from)).into());
        }
    }
    Ok(r2)
}

pub(super) fn describe<C: KuraSuite>(round1: &[Round1Message<C>], id: &Identifier<C>) -> String {
    round1
        .iter()
        .find(|m| &m.from == id)
        .map(|m| m.label.to_string())
        .unwrap_or_else(|| identifier_hex(id))
}

/// A DKG secret state as a document (secret: only ever stored through a
/// keystore, e.g. as a take-once entry between the rounds of a file-based
/// ceremony).
#[derive(Serialize, Deserialize)]
#[serde(bound = "C: KuraSuite", deny_unknown_fields)]
struct SecretStateBody<C: KuraSuite> {
    label: Label,
    state: SecretState<C>,
}

#[derive(Serialize, Deserialize)]
#[serde(bound = "C: KuraSuite", rename_all = "kebab-case")]
enum SecretState<C: KuraSuite> {
    Round1(round1::SecretPackage<C>),
    Round2(round2::SecretPackage<C>),
}

impl<C: KuraSuite> crate::format::DocumentBody for SecretStateBody<C> {
    const KIND: &'static str = "dkg-secret-state";
    fn suite() -> crate::suite::SuiteId {
        C::SUITE
    }
}

fn bad_state(reason: &str) -> KeygenError {
    KeygenError::Messages(format!("DKG secret state: {reason}"))
}

impl<C: KuraSuite> SecretStateBody<C> {
    fn encode(&self, ceremony: &crate::format::GroupId) -> Result<crate::SecretBytes, KeygenError> {
        crate::format::encode(ceremony, self)
            .map(crate::SecretBytes::new)
            .map_err(|e| bad_state(&e.to_string()))
    }

    fn decode(bytes: &[u8], ceremony: &crate::format::GroupId) -> Result<Self, KeygenError> {
        crate::format::decode_for_group::<Self>(bytes, ceremony)
            .map_err(|e| bad_state(&e.to_string()))
    }
}

impl<C: KuraSuite> Round1Secret<C> {
    /// This participant's identifier.
    pub fn identifier(&self) -> &Identifier<C> {
        self.secret.identifier()
    }

    /// Encodes the state for a keystore (secret bytes) under `ceremony`.
    ///
    /// # Errors
    /// Only on an internal serialization failure.
    pub fn to_secret_document(
        &self,
        ceremony: &crate::format::GroupId,
    ) -> Result<crate::SecretBytes, KeygenError> {
        SecretStateBody {
            label: self.label.clone(),
            state: SecretState::Round1(self.secret.clone()),
        }
        .encode(ceremony)
    }

    /// Reads a state written by [`Round1Secret::to_secret_document`].
    ///
    /// # Errors
    /// [`KeygenError::Messages`] for another ceremony, round or a malformed state.
    pub fn from_secret_document(
        bytes: &[u8],
        ceremony: &crate::format::GroupId,
    ) -> Result<Self, KeygenError> {
        let body = SecretStateBody::<C>::decode(bytes, ceremony)?;
        match body.state {
            SecretState::Round1(secret) => Ok(Round1Secret {
                label: body.label,
                secret,
            }),
            SecretState::Round2(_) => Err(bad_state("not a round-1 state")),
        }
    }
}

impl<C: KuraSuite> Round2Secret<C> {
    /// Encodes the state for a keystore (secret bytes) under `ceremony`.
    ///
    /// # Errors
    /// Only on an internal serialization failure.
    pub fn to_secret_document(
        &self,
        ceremony: &crate::format::GroupId,
    ) -> Result<crate::SecretBytes, KeygenError> {
        SecretStateBody {
            label: self.label.clone(),
            state: SecretState::Round2(self.secret.clone()),
        }
        .encode(ceremony)
    }

    /// Reads a state written by [`Round2Secret::to_secret_document`].
    ///
    /// # Errors
    /// [`KeygenError::Messages`] for another ceremony, round or a malformed state.
    pub fn from_secret_document(
        bytes: &[u8],
        ceremony: &crate::format::GroupId,
    ) -> Result<Self, KeygenError> {
        let body = SecretStateBody::<C>::decode(bytes, ceremony)?;
        match body.state {
            SecretState::Round2(secret) => Ok(Round2Secret {
                label: body.label,
                identifier: *secret.identifier(),
                secret,
            }),
            SecretState::Round1(_) => Err(bad_state("not a round-2 state")),
        }
    }
}
