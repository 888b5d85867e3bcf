//! Key generation: a trusted dealer, the split of an existing key, and
//! distributed key generation ([`dkg`]).
//!
//! Every path ends with each participant's share verified against the
//! dealer's or the DKG's VSS commitment before it becomes a [`KeyShare`].

use std::collections::BTreeMap;

use frost_core::keys::{IdentifierList, KeyPackage, PublicKeyPackage, SecretShare};
use frost_core::{Identifier, SigningKey};
use rand_core::{CryptoRng, RngCore};

use crate::group::{check_threshold, identifier_hex, GroupError, KeyShare, Label, PublicGroup};
use crate::suite::KuraSuite;

pub mod dkg;
pub mod refresh;
pub mod repair;
pub mod reshare;

/// Why key generation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeygenError {
    /// A group-level problem (threshold, labels, roster).
    #[error(transparent)]
    Group(#[from] GroupError),
    /// The number of labels and identifiers differ.
    #[error("{labels} labels for {identifiers} identifiers: give one label per participant")]
    LabelCount {
        /// Labels given.
        labels: usize,
        /// Identifiers given.
        identifiers: usize,
    },
    /// A share that does not verify against its VSS commitment.
    #[error("secret share for {participant} does not verify against the VSS commitment{}", .culprit.as_ref().map(|c| format!(" (sent by {c})")).unwrap_or_default())]
    InvalidShare {
        /// The receiving participant.
        participant: String,
        /// The sender, where known.
        culprit: Option<String>,
    },
    /// A DKG participant's proof of knowledge does not verify.
    #[error(
        "proof of knowledge from {0} does not verify; exclude that participant and restart the DKG"
    )]
    InvalidProofOfKnowledge(String),
    /// DKG messages missing, duplicated, or addressed to someone else.
    #[error("DKG messages do not fit: {0}")]
    Messages(String),
    /// A secret key to split that is not a valid scalar.
    #[error("the key to import is not a valid secp256k1 secret key")]
    InvalidSecretKey,
    /// Any other failure inside frost.
    #[error("FROST key generation failed: {0}")]
    Frost(crate::error::Cause),
}

/// The result of dealer key generation: the public group and every share.
///
/// The shares are secret: hand each to its participant's keystore.
#[derive(Debug)]
pub struct Dealt<C: KuraSuite> {
    /// The public group.
    pub group: PublicGroup<C>,
    /// One share per participant, in identifier order.
    pub shares: Vec<KeyShare<C>>,
}

/// Participant identifiers: `1..=n` by default, or chosen by the caller.
#[derive(Debug, Clone, Copy)]
pub enum Identifiers<'a, C: KuraSuite> {
    /// Identifiers 1 to n, in the order of the labels.
    Default,
    /// One identifier per label, in the same order.
    Custom(&'a [Identifier<C>]),
}

/// Generates a fresh `min_signers`-of-`labels.len()` group with a trusted dealer.
///
/// # Errors
/// [`KeygenError`] for a bad threshold, label list or identifier list.
pub fn dealer<C: KuraSuite, R: RngCore + CryptoRng>(
    min_signers: u16,
    labels: &[Label],
    identifiers: Identifiers<'_, C>,
    rng: &mut R,
) -> Result<Dealt<C>, KeygenError> {
    let key = SigningKey::<C>::new(rng);
    split(&key, min_signers, labels, identifiers, rng)
}

/// Splits an existing secret key (a single-key wallet being imported) into a
/// `min_signers`-of-`labels.len()` group. For the Taproot suite the group's
/// internal key is the imported key's, so the address stays the same.
///
/// # Errors
/// [`KeygenError`] for a bad threshold, label list or identifier list.
pub fn split<C: KuraSuite, R: RngCore + CryptoRng>(
    key: &SigningKey<C>,
    min_signers: u16,
    labels: &[Label],
    identifiers: Identifiers<'_, C>,
    rng: &mut R,
) -> Result<Dealt<C>, KeygenError> {
    let max_signers = u16::try_from(labels.len()).unwrap_or(u16::MAX);
    check_threshold(min_signers, max_signers)?;
    let ids: Vec<Identifier<C>> = match identifiers {
        Identifiers::Default => (1..=max_signers)
            .map(Identifier::try_from)
            .collect::<Result<_, _>>()
            .map_err(|e| KeygenError::Frost(crate::error::Cause::new(e)))?,
        Identifiers::Custom(ids) => {
            if ids.len() != labels.len() {
                return Err(KeygenError::LabelCount {
                    labels: labels.len(),
                    identifiers: ids.len(),
                });
            }
            ids.to_vec()
        }
    };
    let by_id: BTreeMap<Identifier<C>, Label> =
        ids.iter().copied().zip(labels.iter().cloned()).collect();
    if by_id.len() != ids.len() {
        return Err(GroupError::DuplicateIdentifier("in the identifier list".into()).into());
    }
    let (secret_shares, public_key_package) = frost_core::keys::split(
        key,
        max_signers,
        min_signers,
        IdentifierList::Custom(&ids),
        rng,
    )
    .map_err(|e| KeygenError::Frost(crate::error::Cause::new(e)))?;
    let group = PublicGroup::new(public_key_package, by_id)?;
    let shares = secret_shares
        .into_values()
        .map(|s| receive_dealt_share(&group, s))
        .collect::<Result<_, _>>()?;
    Ok(Dealt { group, shares })
}

/// A participant's side of dealer keygen: verifies its secret share against
/// the dealer's VSS commitment and against the group, and keeps it.
///
/// # Errors
/// [`KeygenError::InvalidShare`] when the share does not verify, or a
/// [`GroupError`] when it does not belong to `group`.
pub fn receive_dealt_share<C: KuraSuite>(
    group: &PublicGroup<C>,
    secret_share: SecretShare<C>,
) -> Result<KeyShare<C>, KeygenError> {
    let id = *secret_share.identifier();
    let label = group
        .label(&id)
        .cloned()
        .ok_or_else(|| GroupError::UnknownParticipant(identifier_hex(&id)))?;
    let key_package =
        KeyPackage::try_from(secret_share).map_err(|_| KeygenError::InvalidShare {
            participant: label.to_string(),
            culprit: Some("the dealer".into()),
        })?;
    let share = KeyShare::new(key_package, label)?;
    share.check_member_of(group)?;
    Ok(share)
}

/// Builds the group's public view from a public key package and labels.
pub(crate) fn group_from<C: KuraSuite>(
    public_key_package: PublicKeyPackage<C>,
    labels: BTreeMap<Identifier<C>, Label>,
) -> Result<PublicGroup<C>, KeygenError> {
    Ok(PublicGroup::new(public_key_package, labels)?)
}
