//! The two FROST signing rounds, checked the way a signer who trusts no
//! coordinator must check them.
//!
//! ```text
//!  signer                              coordinator
//!  commit() ── SigningCommitments ──▶  SigningPackage::new (build_package)
//!  sign()   ◀── SigningPackage ──────
//!           ── SignatureShare ─────▶  aggregate()  → Signature (verified)
//! ```
//!
//! [`commit`] returns a [`Round1State`] holding the secret nonces. It is not
//! `Clone` and [`sign`] takes it by value, so a state can be used for at most
//! one signature share: reusing it does not compile. Before signing, [`sign`]
//! checks what frost leaves to the caller: that the package's message is the
//! one *this signer* computed, that its own commitment is in the package
//! unchanged, that every other commitment comes from a group member, and that
//! there are at least `t` of them.

use std::collections::BTreeMap;
use std::fmt;

use frost_core::round1::{SigningCommitments, SigningNonces};
use frost_core::round2::SignatureShare;
use frost_core::{CheaterDetection, Identifier, Signature, SigningPackage};
use rand_core::{CryptoRng, RngCore};

use crate::group::{identifier_hex, Culprit, GroupError, KeyShare, PublicGroup};
use crate::suite::KuraSuite;

/// A signer's secret round-1 state: the nonces behind its commitments.
///
/// Consumed by [`sign`]; dropping it zeroizes the nonces. `Debug` shows only
/// the public commitments' owner.
pub struct Round1State<C: KuraSuite> {
    identifier: Identifier<C>,
    nonces: SigningNonces<C>,
}

impl<C: KuraSuite> fmt::Debug for Round1State<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Round1State")
            .field("identifier", &identifier_hex(&self.identifier))
            .field("nonces", &"<redacted>")
            .finish()
    }
}

impl<C: KuraSuite> Round1State<C> {
    /// Rebuilds a state from nonces that were persisted (see the keystore's
    /// take-once nonce storage). Crate-internal: outside code gets a state
    /// only from [`commit`] or a keystore's take.
    pub(crate) fn from_nonces(identifier: Identifier<C>, nonces: SigningNonces<C>) -> Self {
        Round1State { identifier, nonces }
    }

    /// The public commitments to these nonces.
    pub fn commitments(&self) -> &SigningCommitments<C> {
        self.nonces.commitments()
    }

    /// The participant the state belongs to.
    pub fn identifier(&self) -> &Identifier<C> {
        &self.identifier
    }

    /// The nonces, for a keystore to persist them encrypted.
    pub(crate) fn nonces(&self) -> &SigningNonces<C> {
        &self.nonces
    }

    /// The nonces, for known-answer tests that compare them with a vector
    /// (feature `hazmat`). `SigningNonces` is `Clone`: whoever copies them
    /// out takes on the single-use duty this type otherwise enforces.
    #[cfg(feature = "hazmat")]
    pub fn hazmat_nonces(&self) -> &SigningNonces<C> {
        &self.nonces
    }
}

/// Why a signer refused to release a signature share.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SignError {
    /// The package asks to sign something other than what this signer computed.
    #[error("signing package message {found} differs from the message this signer computed ({expected}); refusing to sign")]
    MessageMismatch {
        /// Hex of what the signer computed.
        expected: String,
        /// Hex of what the package carries.
        found: String,
    },
    /// Fewer commitments than the threshold.
    #[error("signing package has {have} commitments but the group needs {need}")]
    TooFewSigners {
        /// Commitments in the package.
        have: usize,
        /// The threshold.
        need: u16,
    },
    /// A commitment from outside the group.
    #[error("signing package includes {0}, who is not a member of this group")]
    UnknownSigner(String),
    /// The same identifier twice.
    #[error("signing package lists identifier {0} more than once")]
    DuplicateSigner(String),
    /// This signer's commitment is not in the package.
    #[error("signing package does not include this signer's commitment")]
    MissingOwnCommitment,
    /// This signer's commitment was replaced.
    #[error("signing package carries a commitment for this signer that it did not make")]
    CommitmentChanged,
    /// The round-1 state is another participant's.
    #[error("round-1 state belongs to participant {0}, not to this key share")]
    WrongState(String),
    /// The key share does not belong to the group.
    #[error(transparent)]
    Group(#[from] GroupError),
    /// Any other failure inside frost.
    #[error("FROST signing failed: {0}")]
    Frost(crate::error::Cause),
}

/// Why aggregation produced no signature.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AggregateError<C: KuraSuite> {
    /// Some shares do not verify; every sender of a bad share is named.
    #[error("invalid signature shares from: {}", .culprits.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "))]
    InvalidShares {
        /// All participants whose share failed to verify.
        culprits: Vec<Culprit<C>>,
    },
    /// Shares and package commitments name different participants.
    #[error("signature shares do not match the package's signers: {0}")]
    SignerMismatch(String),
    /// The package is not acceptable.
    #[error(transparent)]
    Package(#[from] SignError),
    /// Any other failure inside frost.
    #[error("FROST aggregation failed: {0}")]
    Frost(crate::error::Cause),
}

/// A signature that does not verify.
#[derive(Debug, thiserror::Error)]
#[error("signature does not verify under the group's output key")]
pub struct VerifyError;

/// Round 1: draws fresh nonces for `share`.
///
/// The RNG should be a cryptographic one; frost additionally hedges it with
/// the signing share.
pub fn commit<C: KuraSuite, R: RngCore + CryptoRng>(
    share: &KeyShare<C>,
    rng: &mut R,
) -> (Round1State<C>, SigningCommitments<C>) {
    let (nonces, commitments) =
        frost_core::round1::commit(share.key_package().signing_share(), rng);
    (
        Round1State {
            identifier: *share.identifier(),
            nonces,
        },
        commitments,
    )
}

/// Coordinator: builds a signing package from members' commitments.
///
/// # Errors
/// [`SignError`] for non-members or fewer than `t` commitments.
pub fn build_package<C: KuraSuite>(
    group: &PublicGroup<C>,
    commitments: BTreeMap<Identifier<C>, SigningCommitments<C>>,
    message: &[u8],
) -> Result<SigningPackage<C>, SignError> {
    check_signers(group, commitments.keys(), commitments.len())?;
    Ok(SigningPackage::new(commitments, message))
}

fn check_signers<'a, C: KuraSuite>(
    group: &PublicGroup<C>,
    ids: impl Iterator<Item = &'a Identifier<C>>,
    count: usize,
) -> Result<(), SignError> {
    for id in ids {
        if group.label(id).is_none() {
            return Err(SignError::UnknownSigner(identifier_hex(id)));
        }
    }
    if count < usize::from(group.min_signers()) {
        return Err(SignError::TooFewSigners {
            have: count,
            need: group.min_signers(),
        });
    }
    Ok(())
}

/// Checks a signing package before any nonce is used: the share belongs to
/// the group, the message is `expected_message`, every signer is a member,
/// there are at least `t`, and this signer's commitment is `own_commitments`.
///
/// [`sign`] runs this itself; it is public so that a signer whose nonces are
/// persisted can refuse a package *before* taking the nonces.
///
/// # Errors
/// The [`SignError`] naming the first failed check.
pub fn check_package<C: KuraSuite>(
    share: &KeyShare<C>,
    group: &PublicGroup<C>,
    package: &SigningPackage<C>,
    expected_message: &[u8],
    own_commitments: &SigningCommitments<C>,
) -> Result<(), SignError> {
    share.check_member_of(group)?;
    if package.message() != expected_message {
        return Err(SignError::MessageMismatch {
            expected: hex::encode(expected_message),
            found: hex::encode(package.message()),
        });
    }
    check_signers(
        group,
        package.signing_commitments().keys(),
        package.signing_commitments().len(),
    )?;
    match package.signing_commitments().get(share.identifier()) {
        None => Err(SignError::MissingOwnCommitment),
        Some(c) if c != own_commitments => Err(SignError::CommitmentChanged),
        Some(_) => Ok(()),
    }
}

/// Round 2: checks `package` (see [`check_package`]) and computes this
/// signer's share, consuming the round-1 state.
///
/// `expected_message` is the message this signer computed itself (for a
/// withdrawal: the sighash of the input). The state is consumed even when the
/// package is refused: its nonces are never used again.
///
/// # Errors
/// [`SignError`] for any refused package or a state of another participant.
pub fn sign<C: KuraSuite>(
    share: &KeyShare<C>,
    group: &PublicGroup<C>,
    package: &SigningPackage<C>,
    expected_message: &[u8],
    state: Round1State<C>,
) -> Result<SignatureShare<C>, SignError> {
    if state.identifier != *share.identifier() {
        return Err(SignError::WrongState(identifier_hex(&state.identifier)));
    }
    check_package(
        share,
        group,
        package,
        expected_message,
        state.nonces.commitments(),
    )?;
    let key_package = share.signing_key_package();
    frost_core::round2::sign(package, &state.nonces, &key_package)
        .map_err(|e| SignError::Frost(crate::error::Cause::new(e)))
}

/// Coordinator: verifies one participant's share on its own, against the
/// package and the participant's verifying share (tweaked for Taproot as the
/// group's signing key is), so that a coordinator can name a cheater the
/// moment its share arrives instead of at aggregation.
///
/// # Errors
/// [`AggregateError::InvalidShares`] naming `participant`;
/// [`AggregateError::SignerMismatch`] when it is not in the package or not a
/// member.
pub fn verify_share<C: KuraSuite>(
    group: &PublicGroup<C>,
    package: &SigningPackage<C>,
    participant: &Identifier<C>,
    share: &SignatureShare<C>,
) -> Result<(), AggregateError<C>> {
    if !package.signing_commitments().contains_key(participant) {
        return Err(AggregateError::SignerMismatch(
            "a share from a participant without a commitment in the package".into(),
        ));
    }
    let keys = group.signing_public_key_package();
    let verifying_share = keys.verifying_shares().get(participant).ok_or_else(|| {
        AggregateError::SignerMismatch("a share from a participant outside the group".into())
    })?;
    frost_core::verify_signature_share(
        *participant,
        verifying_share,
        share,
        package,
        keys.verifying_key(),
    )
    .map_err(|e| match e {
        frost_core::Error::InvalidSignatureShare { .. } => AggregateError::InvalidShares {
            culprits: vec![group.culprit(participant)],
        },
        other => AggregateError::Frost(crate::error::Cause::new(other)),
    })
}

/// Coordinator: aggregates the shares into a signature that verifies under
/// the group's output key, or names every participant whose share is invalid.
///
/// # Errors
/// [`AggregateError::InvalidShares`] with all culprits; other variants for a
/// package or share set that does not fit the group.
pub fn aggregate<C: KuraSuite>(
    group: &PublicGroup<C>,
    package: &SigningPackage<C>,
    shares: &BTreeMap<Identifier<C>, SignatureShare<C>>,
) -> Result<Signature<C>, AggregateError<C>> {
    check_signers(
        group,
        package.signing_commitments().keys(),
        package.signing_commitments().len(),
    )?;
    if shares.len() != package.signing_commitments().len()
        || shares
            .keys()
            .any(|id| !package.signing_commitments().contains_key(id))
    {
        return Err(AggregateError::SignerMismatch(format!(
            "{} shares for {} commitments",
            shares.len(),
            package.signing_commitments().len()
        )));
    }
    // aggregate_custom verifies the aggregate signature under the package's
    // verifying key — the output key, since the group's signing package is
    // tweaked for Taproot — and, only if that fails, every share.
    frost_core::aggregate_custom(
        package,
        shares,
        group.signing_public_key_package(),
        CheaterDetection::AllCheaters,
    )
    .map_err(|e| match e {
        frost_core::Error::InvalidSignatureShare { culprits } => AggregateError::InvalidShares {
            culprits: culprits.iter().map(|id| group.culprit(id)).collect(),
        },
        other => AggregateError::Frost(crate::error::Cause::new(other)),
    })
}

/// Verifies a group signature over `message` under the group's output key.
///
/// # Errors
/// [`VerifyError`] when it does not verify.
pub fn verify<C: KuraSuite>(
    group: &PublicGroup<C>,
    message: &[u8],
    signature: &Signature<C>,
) -> Result<(), VerifyError> {
    group
        .output_key()
        .verify(message, signature)
        .map_err(|_| VerifyError)
}

#[cfg(test)]
mod tests {
    use rand_core::OsRng;

    use super::*;
    use crate::suite::Secp256k1Tr;

    #[test]
    fn round1_state_debug_redacts_the_nonces() {
        let labels: Vec<_> = ["a", "b", "c"]
            .iter()
            .map(|l| crate::group::Label::new(*l).expect("label"))
            .collect();
        let dealt = crate::keygen::dealer::<Secp256k1Tr, _>(
            2,
            &labels,
            crate::keygen::Identifiers::Default,
            &mut OsRng,
        )
        .expect("deal");
        let share = dealt.shares.first().expect("a share");
        let (state, _) = commit(share, &mut OsRng);
        let hiding = hex::encode(state.nonces().hiding().serialize());
        let binding = hex::encode(state.nonces().binding().serialize());
        let dbg = format!("{state:?}");
        assert!(!dbg.contains(&hiding) && !dbg.contains(&binding), "{dbg}");
        assert!(dbg.contains("redacted"), "{dbg}");
    }
}
