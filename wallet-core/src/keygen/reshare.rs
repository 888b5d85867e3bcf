//! Resharing a group's key to another quorum, `(t, n)` to `(t′, n′)`, with
//! the same group key (and so the same addresses).
//!
//! The construction is Desmedt–Jajodia's resharing with Feldman
//! commitments, the same verifiable secret sharing FROST's DKG uses. A set
//! `S` of at least `t` current members are the *dealers*. Dealer `i` holds
//! `s_i`; with `λ_i` its Lagrange coefficient at 0 over `S`, the group
//! secret is `Σ λ_i·s_i`. Each dealer splits `λ_i·s_i` into `n′` shares of
//! a fresh random polynomial `g_i` of degree `t′−1` (frost's `split`) and
//! publishes the commitment `C_i` to `g_i`'s coefficients. Everyone checks
//! `C_i(0) = λ_i·Y_i` against the dealer's *current* verifying share `Y_i`,
//! so a dealer cannot deal anything but its own part of the group secret.
//! New member `j` checks each `g_i(j)` against `C_i` and keeps
//! `s′_j = Σ g_i(j)`; the new verifying shares come from `Σ C_i`, and the
//! new group key `Σ C_i(0) = Σ λ_i·Y_i` is checked to be the group key.
//!
//! The new shares lie on a polynomial unrelated to the old one: an old
//! share and a new one do not combine. What resharing cannot do is make
//! the old shares forget: `t` old members who keep their old shares could
//! still sign together. Activation therefore overwrites every member's old
//! share, and a member who leaves must erase its own.

use std::collections::{BTreeMap, BTreeSet};

use frost_core::keys::{
    IdentifierList, KeyPackage, PublicKeyPackage, SecretShare, SigningShare,
    VerifiableSecretSharingCommitment, VerifyingShare,
};
use frost_core::{Field, Group, Identifier, Scalar, SigningKey};
use rand_core::{CryptoRng, RngCore};
use zeroize::Zeroize;

use super::KeygenError;
use crate::group::{KeyShare, Label, PublicGroup};
use crate::suite::KuraSuite;

/// One dealer's part of a reshare: its commitment (public) and one share
/// per new member (secret: seal each to its reader).
pub struct Dealt<C: KuraSuite> {
    /// The Feldman commitment to the dealer's polynomial.
    pub commitment: VerifiableSecretSharingCommitment<C>,
    /// The new members' shares, by identifier.
    pub shares: BTreeMap<Identifier<C>, SecretShare<C>>,
}

impl<C: KuraSuite> std::fmt::Debug for Dealt<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dealt")
            .field("shares", &self.shares.len())
            .finish_non_exhaustive()
    }
}

fn scalar_of<C: KuraSuite>(bytes: &[u8]) -> Result<Scalar<C>, KeygenError> {
    let ser = <<C::Group as Group>::Field as Field>::Serialization::try_from(bytes)
        .map_err(|_| KeygenError::Messages("a scalar of the wrong length".into()))?;
    <<C::Group as Group>::Field as Field>::deserialize(&ser)
        .map_err(|_| KeygenError::Messages("not a scalar".into()))
}

fn element_of<C: KuraSuite>(bytes: &[u8]) -> Result<frost_core::Element<C>, KeygenError> {
    let ser = <C::Group as Group>::Serialization::try_from(bytes)
        .map_err(|_| KeygenError::Messages("a point of the wrong length".into()))?;
    <C::Group as Group>::deserialize(&ser)
        .map_err(|_| KeygenError::Messages("not a point of the group".into()))
}

fn element_bytes<C: KuraSuite>(e: &frost_core::Element<C>) -> Result<Vec<u8>, KeygenError> {
    <C::Group as Group>::serialize(e)
        .map(|s| s.as_ref().to_vec())
        .map_err(|_| KeygenError::Messages("the identity point".into()))
}

/// `λ_i`, the Lagrange coefficient of `i` at 0 over `set`.
fn lagrange<C: KuraSuite>(
    i: &Identifier<C>,
    set: &BTreeSet<Identifier<C>>,
) -> Result<Scalar<C>, KeygenError> {
    let xi = scalar_of::<C>(&i.serialize())?;
    let mut num = <<C::Group as Group>::Field as Field>::one();
    let mut den = <<C::Group as Group>::Field as Field>::one();
    for j in set.iter().filter(|j| *j != i) {
        let xj = scalar_of::<C>(&j.serialize())?;
        num = num * xj;
        den = den * (xj - xi);
    }
    let inv = <<C::Group as Group>::Field as Field>::invert(&den)
        .map_err(|_| KeygenError::Messages("two dealers share an identifier".into()))?;
    Ok(num * inv)
}

fn check_sets<C: KuraSuite>(
    group: &PublicGroup<C>,
    dealers: &BTreeSet<Identifier<C>>,
    new_members: &BTreeSet<Identifier<C>>,
    new_threshold: u16,
) -> Result<(), KeygenError> {
    if dealers.len() < usize::from(group.min_signers()) {
        return Err(KeygenError::Messages(format!(
            "{} dealers; a reshare needs at least the threshold, {}",
            dealers.len(),
            group.min_signers()
        )));
    }
    if let Some(d) = dealers
        .iter()
        .find(|d| !group.participants().contains_key(d))
    {
        return Err(KeygenError::Messages(format!(
            "dealer {} is not a member of the group",
            crate::group::identifier_hex(d)
        )));
    }
    let n = u16::try_from(new_members.len()).unwrap_or(u16::MAX);
    crate::group::check_threshold(new_threshold, n)?;
    Ok(())
}

/// Dealer `share`'s part of resharing its group to `new_members` with
/// threshold `new_threshold`, the dealers being `dealers` (this share's
/// member among them).
///
/// # Errors
/// [`KeygenError`] for fewer than `t` dealers, a dealer or this share
/// outside the group, an invalid new threshold.
pub fn deal<C: KuraSuite, R: RngCore + CryptoRng>(
    share: &KeyShare<C>,
    group: &PublicGroup<C>,
    dealers: &BTreeSet<Identifier<C>>,
    new_members: &BTreeSet<Identifier<C>>,
    new_threshold: u16,
    rng: &mut R,
) -> Result<Dealt<C>, KeygenError> {
    share.check_member_of(group)?;
    check_sets(group, dealers, new_members, new_threshold)?;
    if !dealers.contains(share.identifier()) {
        return Err(KeygenError::Messages(
            "this member is not one of the reshare's dealers".into(),
        ));
    }
    let lambda = lagrange::<C>(share.identifier(), dealers)?;
    let mut bytes = share.key_package().signing_share().serialize();
    let s = scalar_of::<C>(&bytes);
    bytes.zeroize();
    let key = SigningKey::<C>::from_scalar(s? * lambda)
        .map_err(|e| KeygenError::Frost(crate::error::Cause::new(e)))?;
    let ids: Vec<Identifier<C>> = new_members.iter().copied().collect();
    let n = u16::try_from(ids.len()).unwrap_or(u16::MAX);
    let (shares, _) =
        frost_core::keys::split(&key, n, new_threshold, IdentifierList::Custom(&ids), rng)
            .map_err(|e| KeygenError::Frost(crate::error::Cause::new(e)))?;
    let commitment = shares
        .values()
        .next()
        .map(|s| s.commitment().clone())
        .ok_or_else(|| KeygenError::Messages("no new members".into()))?;
    Ok(Dealt { commitment, shares })
}

/// Checks dealer `dealer`'s commitment against the group: `t′`
/// coefficients, and its constant term `λ_i·Y_i` (the dealer's current
/// verifying share, weighted over `dealers`).
///
/// # Errors
/// [`KeygenError::Messages`] naming what does not fit.
pub fn check_commitment<C: KuraSuite>(
    group: &PublicGroup<C>,
    dealers: &BTreeSet<Identifier<C>>,
    dealer: &Identifier<C>,
    commitment: &VerifiableSecretSharingCommitment<C>,
    new_threshold: u16,
) -> Result<(), KeygenError> {
    let who = group
        .label(dealer)
        .map_or_else(|| crate::group::identifier_hex(dealer), Label::to_string);
    let coefficients = commitment
        .serialize()
        .map_err(|e| KeygenError::Frost(crate::error::Cause::new(e)))?;
    if coefficients.len() != usize::from(new_threshold) {
        return Err(KeygenError::Messages(format!(
            "{who}'s commitment has {} coefficients, the new threshold is {new_threshold}",
            coefficients.len()
        )));
    }
    let constant = coefficients
        .first()
        .ok_or_else(|| KeygenError::Messages(format!("{who}'s commitment is empty")))?;
    let verifying = group
        .verifying_share(dealer)
        .ok_or_else(|| KeygenError::Messages(format!("{who} is not a member of the group")))?;
    let y = element_of::<C>(
        &verifying
            .serialize()
            .map_err(|e| KeygenError::Frost(crate::error::Cause::new(e)))?,
    )?;
    let expected = y * lagrange::<C>(dealer, dealers)?;
    if element_bytes::<C>(&expected)? != *constant {
        return Err(KeygenError::Messages(format!(
            "{who}'s deal is not its part of the group key (its commitment does not start at its verifying share): refused"
        )));
    }
    Ok(())
}

/// The group after the reshare, from the dealers' commitments (checked
/// with [`check_commitment`]): members `labels`, threshold `new_threshold`,
/// the same group key.
///
/// # Errors
/// [`KeygenError`] for a commitment that does not fit, a set of dealers
/// that is not the one given, or a key that is not the group's.
pub fn reshared_group<C: KuraSuite>(
    group: &PublicGroup<C>,
    dealers: &BTreeSet<Identifier<C>>,
    commitments: &BTreeMap<Identifier<C>, VerifiableSecretSharingCommitment<C>>,
    labels: BTreeMap<Identifier<C>, Label>,
    new_threshold: u16,
) -> Result<PublicGroup<C>, KeygenError> {
    let new_members: BTreeSet<_> = labels.keys().copied().collect();
    check_sets(group, dealers, &new_members, new_threshold)?;
    if commitments.keys().copied().collect::<BTreeSet<_>>() != *dealers {
        return Err(KeygenError::Messages(
            "the deals are not one from each dealer the reshare names".into(),
        ));
    }
    let mut sum: Vec<Option<frost_core::Element<C>>> = vec![None; usize::from(new_threshold)];
    for (dealer, c) in commitments {
        check_commitment(group, dealers, dealer, c, new_threshold)?;
        let coefficients = c
            .serialize()
            .map_err(|e| KeygenError::Frost(crate::error::Cause::new(e)))?;
        for (slot, bytes) in sum.iter_mut().zip(&coefficients) {
            let e = element_of::<C>(bytes)?;
            *slot = Some(match slot.take() {
                Some(acc) => acc + e,
                None => e,
            });
        }
    }
    let summed = sum
        .iter()
        .map(|e| e.as_ref().map(element_bytes::<C>).transpose())
        .collect::<Result<Option<Vec<_>>, _>>()?
        .ok_or_else(|| KeygenError::Messages("no deals".into()))?;
    let commitment = VerifiableSecretSharingCommitment::<C>::deserialize(summed)
        .map_err(|e| KeygenError::Frost(crate::error::Cause::new(e)))?;
    let package = PublicKeyPackage::from_commitment(&new_members, &commitment)
        .map_err(|e| KeygenError::Frost(crate::error::Cause::new(e)))?;
    if package.verifying_key() != group.verifying_key() {
        return Err(KeygenError::Messages(
            "the reshared key is not the group's key: refused".into(),
        ));
    }
    Ok(PublicGroup::new(package, labels)?)
}

/// A new member's share: the sum of what each dealer sent it, each checked
/// against that dealer's commitment (the one in `new_group`'s making,
/// [`reshared_group`]).
///
/// # Errors
/// [`KeygenError::InvalidShare`] naming the dealer of a share that does not
/// verify; [`KeygenError::Messages`] for a share missing, for someone else,
/// or under another commitment.
pub fn combine<C: KuraSuite>(
    group: &PublicGroup<C>,
    new_group: &PublicGroup<C>,
    me: &Identifier<C>,
    commitments: &BTreeMap<Identifier<C>, VerifiableSecretSharingCommitment<C>>,
    received: &BTreeMap<Identifier<C>, SecretShare<C>>,
) -> Result<KeyShare<C>, KeygenError> {
    let label = new_group
        .label(me)
        .cloned()
        .ok_or_else(|| KeygenError::Messages("this member is not in the new group".into()))?;
    let mut total: Option<Scalar<C>> = None;
    for (dealer, commitment) in commitments {
        let who = group
            .label(dealer)
            .map_or_else(|| crate::group::identifier_hex(dealer), Label::to_string);
        let share = received
            .get(dealer)
            .ok_or_else(|| KeygenError::Messages(format!("no share from {who}")))?;
        if share.identifier() != me || share.commitment() != commitment {
            return Err(KeygenError::Messages(format!(
                "{who}'s share is for someone else or under another commitment"
            )));
        }
        share.verify().map_err(|_| KeygenError::InvalidShare {
            participant: crate::group::identifier_hex(me),
            culprit: Some(who.clone()),
        })?;
        let mut bytes = share.signing_share().serialize();
        let s = scalar_of::<C>(&bytes);
        bytes.zeroize();
        let s = s?;
        total = Some(match total {
            Some(t) => t + s,
            None => s,
        });
    }
    let total = total.ok_or_else(|| KeygenError::Messages("no deals".into()))?;
    let mut out = <<C::Group as Group>::Field as Field>::serialize(&total);
    let signing = SigningShare::<C>::deserialize(out.as_ref())
        .map_err(|e| KeygenError::Frost(crate::error::Cause::new(e)));
    out.as_mut().zeroize();
    let signing = signing?;
    let verifying = VerifyingShare::<C>::from(signing);
    if new_group.verifying_share(me) != Some(&verifying) {
        return Err(KeygenError::Messages(
            "the combined share does not match this member's new verifying share".into(),
        ));
    }
    let package = KeyPackage::new(
        *me,
        signing,
        verifying,
        *new_group.verifying_key(),
        new_group.min_signers(),
    );
    Ok(KeyShare::new(package, label)?)
}
