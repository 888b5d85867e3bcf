//! Repair: `t` helpers rebuild a lost share for a participant without anyone
//! learning any share (frost's repairable threshold scheme).
//!
//! ```text
//! each helper: helper_deltas(helpers, lost) ──delta to each helper──▶
//! each helper: helper_sigma(deltas received) ──sigma to the participant──▶
//! participant: recover(sigmas, group)
//! ```
//! Deltas and sigmas are secret and must travel confidentially.

use std::collections::BTreeMap;

use frost_core::keys::repairable::{Delta, Sigma};
use frost_core::Identifier;
use rand_core::{CryptoRng, RngCore};

use super::KeygenError;
use crate::group::{identifier_hex, GroupError, KeyShare, PublicGroup};
use crate::suite::KuraSuite;

/// Helper, step 1: split this helper's contribution into one delta per
/// helper (itself included).
///
/// # Errors
/// [`KeygenError`] when `helpers` has fewer than `t` members, includes
/// non-members or the lost participant, or does not include this helper.
pub fn helper_deltas<C: KuraSuite, R: RngCore + CryptoRng>(
    helper: &KeyShare<C>,
    group: &PublicGroup<C>,
    helpers: &[Identifier<C>],
    lost: &Identifier<C>,
    rng: &mut R,
) -> Result<BTreeMap<Identifier<C>, Delta<C>>, KeygenError> {
    helper.check_member_of(group)?;
    if group.label(lost).is_none() {
        return Err(GroupError::UnknownParticipant(identifier_hex(lost)).into());
    }
    for h in helpers {
        if group.label(h).is_none() {
            return Err(GroupError::UnknownParticipant(identifier_hex(h)).into());
        }
        if h == lost {
            return Err(KeygenError::Messages(
                "the participant being repaired cannot be a helper".into(),
            ));
        }
    }
    frost_core::keys::repairable::repair_share_part1(helpers, helper.key_package(), rng, *lost)
        .map_err(|e| KeygenError::Frost(crate::error::Cause::new(e)))
}

/// Helper, step 2: sum the deltas this helper received into its sigma.
pub fn helper_sigma<C: KuraSuite>(deltas: &[Delta<C>]) -> Sigma<C> {
    frost_core::keys::repairable::repair_share_part2(deltas)
}

/// The repaired participant: rebuilds its share from the helpers' sigmas and
/// checks it against its verifying share in the group, so a wrong or
/// missing sigma is detected rather than yielding a bad share.
///
/// # Errors
/// [`KeygenError::InvalidShare`] when the rebuilt share does not match the
/// group's verifying share.
pub fn recover<C: KuraSuite>(
    sigmas: &[Sigma<C>],
    lost: &Identifier<C>,
    group: &PublicGroup<C>,
) -> Result<KeyShare<C>, KeygenError> {
    let label = group
        .label(lost)
        .cloned()
        .ok_or_else(|| GroupError::UnknownParticipant(identifier_hex(lost)))?;
    let key_package =
        frost_core::keys::repairable::repair_share_part3(sigmas, *lost, group.public_key_package())
            .map_err(|e| KeygenError::Frost(crate::error::Cause::new(e)))?;
    let share = KeyShare::new(key_package, label.clone())?;
    share
        .check_member_of(group)
        .map_err(|_| KeygenError::InvalidShare {
            participant: label.to_string(),
            culprit: None,
        })?;
    Ok(share)
}
