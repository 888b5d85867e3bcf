//! The coordinator's side: untrusted, so everything it does is checked by
//! the signers (packages) or by the math (aggregation, finalization). Its
//! own checks here exist to fail early and to name culprits.

use std::collections::BTreeMap;

use bitcoin::psbt::Psbt;
use bitcoin::Transaction;
use frost_core::Identifier;

use super::finalize::{finalize, FinalizeError};
use super::request::{
    Approval, MessageRequest, Signed, WithdrawalPackages, WithdrawalRequest, WithdrawalShares,
};
use super::review::{parse_psbt, review, ReviewError};
use super::signer::{verify_approvals, Refusal};
use crate::digest::{RequestDigest, SigningDigest};
use crate::format::FormatError;
use crate::group::{Culprit, PublicGroup};
use crate::identity::IdentityPublicKey;
use crate::keystore::SessionId;
use crate::messages::PackageMessage;
use crate::signing::{self, AggregateError};
use crate::suite::Secp256k1Tr;

/// Why the coordinator could not go on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CoordinatorError {
    /// The request's signature does not verify.
    #[error("the request's signature does not verify")]
    BadRequest,
    /// The PSBT does not pass review.
    #[error(transparent)]
    Review(#[from] ReviewError),
    /// An approval does not hold up.
    #[error(transparent)]
    Approval(#[from] Refusal),
    /// Not enough approvals.
    #[error("{have} valid approvals, the group needs {need}")]
    TooFewApprovals {
        /// Approvals present.
        have: usize,
        /// The threshold.
        need: u16,
    },
    /// A shares document that does not hold up.
    #[error("shares from {participant} are not acceptable: {reason}")]
    BadShares {
        /// Who they claim to come from.
        participant: Culprit<Secp256k1Tr>,
        /// Why.
        reason: String,
    },
    /// Aggregation failed, naming culprits where shares were invalid.
    #[error("input {input}: {source}")]
    Aggregate {
        /// Input index.
        input: usize,
        /// The failure.
        source: AggregateError<Secp256k1Tr>,
    },
    /// Finalization failed.
    #[error(transparent)]
    Finalize(#[from] FinalizeError),
    /// Internal encoding failure.
    #[error(transparent)]
    Format(#[from] FormatError),
    /// A child of the group could not be derived.
    #[error(transparent)]
    Group(#[from] crate::group::GroupError),
}

/// What each input of a withdrawal is signed with, as the coordinator
/// reads the PSBT itself: its sighash and the group under the child key it
/// spends (the group itself for an input of the group key).
#[derive(Clone, Debug)]
pub struct InputKeys {
    /// The sighash of every input, in order.
    pub sighashes: Vec<SigningDigest>,
    /// The group signing each input, in order.
    pub groups: Vec<PublicGroup<Secp256k1Tr>>,
}

impl InputKeys {
    /// Reads a reviewed PSBT's inputs.
    ///
    /// # Errors
    /// [`CoordinatorError::Group`] when a child cannot be derived.
    pub fn of(
        group: &PublicGroup<Secp256k1Tr>,
        summary: &super::review::WithdrawalSummary,
    ) -> Result<Self, CoordinatorError> {
        Ok(InputKeys {
            sighashes: summary.sighashes(),
            groups: summary
                .inputs
                .iter()
                .map(|i| group.derive_child(i.key.tweak()))
                .collect::<Result<_, _>>()?,
        })
    }

    /// Reviews `request`'s PSBT for `group` on `network` and reads it.
    ///
    /// # Errors
    /// [`CoordinatorError`]: a bad request signature, a refused review.
    pub fn of_request(
        group: &PublicGroup<Secp256k1Tr>,
        request: &Signed<WithdrawalRequest>,
        network: bitcoin::Network,
    ) -> Result<Self, CoordinatorError> {
        Ok(request_parts(group, request, network)?.2)
    }

    fn group(&self, input: usize) -> Result<&PublicGroup<Secp256k1Tr>, CoordinatorError> {
        self.groups.get(input).ok_or(CoordinatorError::Aggregate {
            input,
            source: AggregateError::SignerMismatch(format!("there is no input {input}")),
        })
    }
}

fn request_parts(
    group: &PublicGroup<Secp256k1Tr>,
    request: &Signed<WithdrawalRequest>,
    network: bitcoin::Network,
) -> Result<(RequestDigest, Psbt, InputKeys), CoordinatorError> {
    let body = request
        .verify(group.id())
        .map_err(|_| CoordinatorError::BadRequest)?;
    let psbt = parse_psbt(&body.psbt)?;
    let summary = review(&psbt, &group.xpub(), network)?;
    let inputs = InputKeys::of(group, &summary)?;
    Ok((request.request_digest(group.id())?, psbt, inputs))
}

/// Builds one signing package per input from the signers' approvals. All
/// valid approvals are used (at least `t`).
///
/// # Errors
/// [`CoordinatorError`] for a bad request, a bad approval or too few.
pub fn build_packages(
    group: &PublicGroup<Secp256k1Tr>,
    identities: &BTreeMap<Identifier<Secp256k1Tr>, IdentityPublicKey>,
    request: &Signed<WithdrawalRequest>,
    approvals: &[Signed<Approval>],
    network: bitcoin::Network,
) -> Result<WithdrawalPackages, CoordinatorError> {
    let (digest, _, inputs) = request_parts(group, request, network)?;
    let sighashes = &inputs.sighashes;
    let verified = verify_approvals(group, identities, &digest, sighashes, approvals)?;
    if verified.len() < usize::from(group.min_signers()) {
        return Err(CoordinatorError::TooFewApprovals {
            have: verified.len(),
            need: group.min_signers(),
        });
    }
    let package_session = SessionId::from_bytes(digest.to_bytes());
    let mut packages = Vec::with_capacity(sighashes.len());
    for (i, sighash) in sighashes.iter().enumerate() {
        let commitments = verified
            .iter()
            .filter_map(|(id, a)| a.commitments.get(i).map(|c| (*id, *c)))
            .collect();
        let package =
            signing::build_package(group, commitments, sighash.as_bytes()).map_err(|e| {
                CoordinatorError::Aggregate {
                    input: i,
                    source: e.into(),
                }
            })?;
        packages.push(PackageMessage::from_package(
            package_session.for_input(i),
            &package,
        ));
    }
    Ok(WithdrawalPackages {
        request_digest: digest,
        approvals: approvals.to_vec(),
        packages,
    })
}

/// Aggregates the signers' shares input by input (naming every culprit),
/// puts the signatures into the PSBT, verifies and finalizes it.
///
/// # Errors
/// [`CoordinatorError`]; [`CoordinatorError::Aggregate`] carries the
/// culprits of an invalid share.
pub fn finalize_withdrawal(
    group: &PublicGroup<Secp256k1Tr>,
    identities: &BTreeMap<Identifier<Secp256k1Tr>, IdentityPublicKey>,
    request: &Signed<WithdrawalRequest>,
    packages: &WithdrawalPackages,
    shares: &[Signed<WithdrawalShares>],
    network: bitcoin::Network,
) -> Result<(Psbt, Transaction), CoordinatorError> {
    let (digest, mut psbt, inputs) = request_parts(group, request, network)?;
    let sighashes = &inputs.sighashes;
    let mut by_signer = BTreeMap::new();
    for s in shares {
        let bad = |reason: &str| CoordinatorError::BadShares {
            participant: group.culprit(&s.body.participant),
            reason: reason.to_owned(),
        };
        if identities.get(&s.body.participant) != Some(&s.signer) || s.verify(group.id()).is_err() {
            return Err(bad("not signed by the member's identity key"));
        }
        if s.body.request_digest != digest {
            return Err(bad("for another request"));
        }
        if s.body.shares.len() != sighashes.len() {
            return Err(bad("not one share per input"));
        }
        by_signer.insert(s.body.participant, &s.body.shares);
    }
    let mut signatures = Vec::with_capacity(sighashes.len());
    for (i, p) in packages.packages.iter().enumerate() {
        let package = p.to_package().map_err(|e| CoordinatorError::Aggregate {
            input: i,
            source: e.into(),
        })?;
        let input_shares = by_signer
            .iter()
            .filter_map(|(id, v)| v.get(i).map(|s| (*id, *s)))
            .collect();
        let sig = signing::aggregate(inputs.group(i)?, &package, &input_shares)
            .map_err(|source| CoordinatorError::Aggregate { input: i, source })?;
        signatures.push(sig);
    }
    let tx = finalize(&mut psbt, &signatures, &group.xpub(), network)?;
    Ok((psbt, tx))
}

/// Checks one member's shares for a session the moment they arrive (a
/// coordinator that retries sessions sets a cheater aside at once): signed
/// by the member's identity key, for this request, one share per input, and
/// each share valid for its input's package under the member's verifying
/// share of the key that input spends (`inputs`, [`InputKeys`]).
///
/// # Errors
/// [`CoordinatorError::BadShares`] or [`CoordinatorError::Aggregate`]
/// naming the member.
pub fn check_shares(
    group: &PublicGroup<Secp256k1Tr>,
    inputs: &InputKeys,
    identities: &BTreeMap<Identifier<Secp256k1Tr>, IdentityPublicKey>,
    packages: &WithdrawalPackages,
    shares: &Signed<WithdrawalShares>,
) -> Result<(), CoordinatorError> {
    let participant = shares.body.participant;
    let bad = |reason: &str| CoordinatorError::BadShares {
        participant: group.culprit(&participant),
        reason: reason.to_owned(),
    };
    if identities.get(&participant) != Some(&shares.signer) || shares.verify(group.id()).is_err() {
        return Err(bad("not signed by the member's identity key"));
    }
    if shares.body.request_digest != packages.request_digest {
        return Err(bad("for another request"));
    }
    if shares.body.shares.len() != packages.packages.len() {
        return Err(bad("not one share per input"));
    }
    for (i, (p, share)) in packages
        .packages
        .iter()
        .zip(&shares.body.shares)
        .enumerate()
    {
        let package = p.to_package().map_err(|e| CoordinatorError::Aggregate {
            input: i,
            source: e.into(),
        })?;
        signing::verify_share(inputs.group(i)?, &package, &participant, share)
            .map_err(|source| CoordinatorError::Aggregate { input: i, source })?;
    }
    Ok(())
}

/// Builds the signing package of a raw-message request from the signers'
/// approvals (each signer has checked its policy allows it).
///
/// # Errors
/// [`CoordinatorError`] for a bad request, a bad approval or too few.
pub fn build_message_packages(
    group: &PublicGroup<Secp256k1Tr>,
    identities: &BTreeMap<Identifier<Secp256k1Tr>, IdentityPublicKey>,
    request: &Signed<MessageRequest>,
    approvals: &[Signed<Approval>],
) -> Result<WithdrawalPackages, CoordinatorError> {
    let body = request
        .verify(group.id())
        .map_err(|_| CoordinatorError::BadRequest)?;
    let digest = request.request_digest(group.id())?;
    let signed = super::request::raw_message_digest(&body.message);
    let verified = verify_approvals(group, identities, &digest, &[signed], approvals)?;
    if verified.len() < usize::from(group.min_signers()) {
        return Err(CoordinatorError::TooFewApprovals {
            have: verified.len(),
            need: group.min_signers(),
        });
    }
    let commitments = verified
        .iter()
        .filter_map(|(id, a)| a.commitments.first().map(|c| (*id, *c)))
        .collect();
    let package = signing::build_package(group, commitments, signed.as_bytes()).map_err(|e| {
        CoordinatorError::Aggregate {
            input: 0,
            source: e.into(),
        }
    })?;
    Ok(WithdrawalPackages {
        request_digest: digest,
        approvals: approvals.to_vec(),
        packages: vec![PackageMessage::from_package(
            SessionId::from_bytes(digest.to_bytes()),
            &package,
        )],
    })
}
