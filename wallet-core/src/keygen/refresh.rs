//! Share refresh: new shares of the same group key, so that shares stolen
//! before the refresh are useless afterwards. The threshold cannot change;
//! participants left out of a refresh leave the group.
//!
//! Two ways: a trusted dealer deals zero-sharings ([`dealer_refresh`] then
//! [`apply_dealer_refresh`] by each participant), or the participants run a
//! DKG of zero-sharings ([`dkg_part1`], [`dkg_part2`], [`dkg_finish`]).

use std::collections::BTreeMap;

use frost_core::keys::{KeyPackage, SecretShare, VerifyingShare};
use frost_core::Identifier;
use rand_core::{CryptoRng, RngCore};

use super::dkg::{
    describe, round1_map, round2_map, Round1Message, Round1Secret, Round2Message, Round2Secret,
};
use super::KeygenError;
use crate::group::{identifier_hex, GroupError, KeyShare, Label, PublicGroup};
use crate::suite::KuraSuite;

/// A dealer refresh: the refreshed public group and one refreshing share per
/// remaining participant (secret; deliver each to its participant).
#[derive(Debug)]
pub struct DealerRefresh<C: KuraSuite> {
    /// The refreshed group: same group key, new verifying shares.
    pub group: PublicGroup<C>,
    /// Refreshing shares by identifier (secret).
    pub refreshing_shares: BTreeMap<Identifier<C>, SecretShare<C>>,
}

/// Dealer: computes refreshing shares for `keep` (at least `t` members of
/// `group`; members not listed are removed).
///
/// # Errors
/// [`KeygenError`] when `keep` has non-members or fewer than `t` entries.
pub fn dealer_refresh<C: KuraSuite, R: RngCore + CryptoRng>(
    group: &PublicGroup<C>,
    keep: &[Identifier<C>],
    rng: &mut R,
) -> Result<DealerRefresh<C>, KeygenError> {
    let labels = kept_labels(group, keep)?;
    let (shares, public_key_package) = frost_core::keys::refresh::compute_refreshing_shares(
        group.public_key_package().clone(),
        keep,
        rng,
    )
    .map_err(|e| KeygenError::Frost(crate::error::Cause::new(e)))?;
    let new_group = PublicGroup::new(public_key_package, labels)?;
    Ok(DealerRefresh {
        group: new_group,
        refreshing_shares: keep.iter().copied().zip(shares).collect(),
    })
}

fn kept_labels<C: KuraSuite>(
    group: &PublicGroup<C>,
    keep: &[Identifier<C>],
) -> Result<BTreeMap<Identifier<C>, Label>, KeygenError> {
    let mut labels = BTreeMap::new();
    for id in keep {
        let label = group
            .label(id)
            .ok_or_else(|| GroupError::UnknownParticipant(identifier_hex(id)))?;
        if labels.insert(*id, label.clone()).is_some() {
            return Err(GroupError::DuplicateIdentifier(identifier_hex(id)).into());
        }
    }
    Ok(labels)
}

/// Participant: applies a dealer's refreshing share to its current share and
/// checks the result against the refreshed group.
///
/// # Errors
/// [`KeygenError::InvalidShare`] when the refreshing share does not verify,
/// or a [`GroupError`] when the result does not fit `new_group`.
pub fn apply_dealer_refresh<C: KuraSuite>(
    current: &KeyShare<C>,
    refreshing_share: SecretShare<C>,
    new_group: &PublicGroup<C>,
) -> Result<KeyShare<C>, KeygenError> {
    if new_group.id() != current.group_id() {
        return Err(GroupError::ShareMismatch("the refresh is for another group".into()).into());
    }
    let refreshed =
        frost_core::keys::refresh::refresh_share(refreshing_share, current.key_package()).map_err(
            |_| KeygenError::InvalidShare {
                participant: current.label().to_string(),
                culprit: Some("the refresh dealer".into()),
            },
        )?;
    // frost 3.0.0's `refresh_share` replaces the signing share but keeps the
    // old verifying share; rebuild the package so the two agree.
    let key_package = KeyPackage::new(
        *refreshed.identifier(),
        *refreshed.signing_share(),
        VerifyingShare::from(*refreshed.signing_share()),
        *refreshed.verifying_key(),
        *refreshed.min_signers(),
    );
    let share = KeyShare::new(key_package, current.label().clone())?;
    share.check_member_of(new_group)?;
    Ok(share)
}

/// DKG refresh, part 1: a zero-sharing polynomial for this participant.
/// All `n` current members take part.
///
/// # Errors
/// [`KeygenError`] on an internal frost failure.
pub fn dkg_part1<C: KuraSuite, R: RngCore + CryptoRng>(
    current: &KeyShare<C>,
    group: &PublicGroup<C>,
    rng: &mut R,
) -> Result<(Round1Secret<C>, Round1Message<C>), KeygenError> {
    current.check_member_of(group)?;
    let (secret, package) = frost_core::keys::refresh::refresh_dkg_part1(
        *current.identifier(),
        group.max_signers(),
        group.min_signers(),
        rng,
    )
    .map_err(|e| KeygenError::Frost(crate::error::Cause::new(e)))?;
    let message = Round1Message {
        from: *current.identifier(),
        label: current.label().clone(),
        package,
    };
    Ok((
        Round1Secret {
            label: current.label().clone(),
            secret,
        },
        message,
    ))
}

/// DKG refresh, part 2 (like [`super::dkg::part2`]).
///
/// # Errors
/// As [`super::dkg::part2`].
pub fn dkg_part2<C: KuraSuite>(
    secret: Round1Secret<C>,
    round1: &[Round1Message<C>],
) -> Result<(Round2Secret<C>, Vec<Round2Message<C>>), KeygenError> {
    super::dkg::part2_with(secret, round1, frost_core::keys::refresh::refresh_dkg_part2)
}

/// DKG refresh, finish: verifies the received zero-shares and adds them to
/// the current share. The group key is unchanged; the verifying shares are new.
///
/// # Errors
/// [`KeygenError::InvalidShare`] naming a sender whose share does not
/// verify, or [`KeygenError::Messages`] for missing or misaddressed messages.
pub fn dkg_finish<C: KuraSuite>(
    secret: &Round2Secret<C>,
    round1: &[Round1Message<C>],
    round2: &[Round2Message<C>],
    current: &KeyShare<C>,
    group: &PublicGroup<C>,
) -> Result<(KeyShare<C>, PublicGroup<C>), KeygenError> {
    let me = secret.identifier;
    if &me != current.identifier() {
        return Err(GroupError::ShareMismatch(
            "refresh state belongs to another participant".into(),
        )
        .into());
    }
    let r1 = round1_map(&me, &secret.label, *secret.secret.max_signers(), round1)?;
    let r2 = round2_map(&me, &r1, round1, round2)?;
    let (key_package, public_key_package) = frost_core::keys::refresh::refresh_dkg_shares(
        &secret.secret,
        &r1,
        &r2,
        group.public_key_package().clone(),
        current.key_package().clone(),
    )
    .map_err(|e| match e {
        frost_core::Error::InvalidSecretShare { culprit } => KeygenError::InvalidShare {
            participant: secret.label.to_string(),
            culprit: culprit.map(|c| describe(round1, &c)),
        },
        other => KeygenError::Frost(crate::error::Cause::new(other)),
    })?;
    let new_group = PublicGroup::new(public_key_package, group.participants().clone())?;
    if new_group.id() != group.id() {
        return Err(GroupError::ShareMismatch("refresh changed the group key".into()).into());
    }
    let share = KeyShare::new(key_package, current.label().clone())?;
    share.check_member_of(&new_group)?;
    Ok((share, new_group))
}
