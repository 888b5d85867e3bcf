//! Helpers shared by the outside-vector tests.
#![allow(dead_code)]

use std::collections::BTreeMap;

use test_vectors::outside::SignVector;
use wallet_core::frost_core::keys::{KeyPackage, PublicKeyPackage, SigningShare, VerifyingShare};
use wallet_core::frost_core::{Identifier, Signature, SigningKey, VerifyingKey};
use wallet_core::{KeyShare, KuraSuite, Label, PublicGroup};

/// A FROST identifier from the integer used in the vector files.
pub fn id<C: KuraSuite>(i: u16) -> Identifier<C> {
    Identifier::try_from(i).unwrap()
}

/// The label Kura gives participant `i` in these tests.
pub fn label(i: u16) -> Label {
    Label::new(format!("participant-{i}")).unwrap()
}

/// Labels for participants 1..=n.
pub fn labels(n: u16) -> Vec<Label> {
    (1..=n).map(label).collect()
}

/// Flips the lowest bit of the last byte.
pub fn flip_last_bit(bytes: &[u8]) -> Vec<u8> {
    let mut v = bytes.to_vec();
    *v.last_mut().unwrap() ^= 1;
    v
}

/// The group and every participant's key share of a dealer signing vector.
pub struct VectorGroup<C: KuraSuite> {
    pub group: PublicGroup<C>,
    pub shares: BTreeMap<Identifier<C>, KeyShare<C>>,
}

/// Builds the vector's group through wallet-core's public constructors:
/// a `KeyShare` per listed share and a `PublicGroup` over all of them.
///
/// Checks on the way that the group key is `group_secret_key·G` and that the
/// shares are the evaluations of the vector's dealer polynomial (their
/// verifying shares equal those derived from the polynomial's commitment).
pub fn group_from_sign_vector<C: KuraSuite>(v: &SignVector) -> VectorGroup<C> {
    let vk = VerifyingKey::<C>::deserialize(v.group_public_key.bytes()).unwrap();
    let group_secret = SigningKey::<C>::deserialize(v.group_secret_key.bytes()).unwrap();
    assert_eq!(
        VerifyingKey::<C>::from(&group_secret),
        vk,
        "group_public_key must be group_secret_key·G"
    );
    assert_eq!(
        v.shares.len(),
        usize::from(v.max_signers),
        "one share per participant"
    );
    assert_eq!(v.signers.len(), usize::from(v.num_signers));

    let mut verifying_shares = BTreeMap::new();
    let mut labels = BTreeMap::new();
    let mut shares = BTreeMap::new();
    for s in &v.shares {
        let id = id::<C>(s.identifier);
        let signing_share = SigningShare::<C>::deserialize(s.signing_share.bytes()).unwrap();
        let verifying_share = VerifyingShare::<C>::from(signing_share);
        let kp = KeyPackage::new(id, signing_share, verifying_share, vk, v.min_signers);
        shares.insert(id, KeyShare::new(kp, label(s.identifier)).unwrap());
        verifying_shares.insert(id, verifying_share);
        labels.insert(id, label(s.identifier));
    }
    let pkp = PublicKeyPackage::new(verifying_shares, vk, Some(v.min_signers));

    // The dealer polynomial's commitment [secret·G, a_1·G, ...] determines
    // every verifying share; the listed shares must match it.
    let mut coefficient_commitments = vec![vk.serialize().unwrap()];
    for c in &v.share_polynomial_coefficients {
        let c = SigningKey::<C>::deserialize(c.bytes()).unwrap();
        coefficient_commitments.push(VerifyingKey::<C>::from(&c).serialize().unwrap());
    }
    let vss = wallet_core::frost_core::keys::VerifiableSecretSharingCommitment::<C>::deserialize(
        coefficient_commitments,
    )
    .unwrap();
    let from_polynomial =
        PublicKeyPackage::from_commitment(&pkp.verifying_shares().keys().copied().collect(), &vss)
            .unwrap();
    assert_eq!(
        from_polynomial.verifying_shares(),
        pkp.verifying_shares(),
        "shares are not the dealer polynomial's values"
    );
    assert_eq!(from_polynomial.verifying_key(), &vk);

    let group = PublicGroup::new(pkp, labels).unwrap();
    assert_eq!(group.min_signers(), v.min_signers);
    assert_eq!(group.max_signers(), v.max_signers);
    for share in shares.values() {
        share.check_member_of(&group).unwrap();
    }
    VectorGroup { group, shares }
}

/// Signature bytes as frost serializes them.
pub fn sig_bytes<C: KuraSuite>(sig: &Signature<C>) -> Vec<u8> {
    sig.serialize().unwrap()
}
