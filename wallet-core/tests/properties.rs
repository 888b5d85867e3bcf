//! Property tests over random (t, n) with 1 < t <= n <= 10.
//!
//! Seeds come from proptest; failing cases are recorded under
//! `proptest-regressions/` and replayed first on every run.

use std::collections::BTreeMap;

use kura_testkit::*;
use proptest::prelude::*;
use wallet_core::frost_core::SigningPackage;
use wallet_core::signing::{self, SignError};
use wallet_core::{KuraSuite, Secp256k1, Secp256k1Tr};

/// (t, n, a t-subset of 0..n as a bitmask seed, rng seed)
fn params() -> impl Strategy<Value = (u16, u16, Vec<usize>, u64)> {
    (2u16..=10)
        .prop_flat_map(|n| (2u16..=n, Just(n)))
        .prop_flat_map(|(t, n)| {
            let subset =
                proptest::sample::subsequence((0..n as usize).collect::<Vec<_>>(), t as usize);
            (Just(t), Just(n), subset, any::<u64>())
        })
}

fn any_t_subset_signs<C: KuraSuite>(
    t: u16,
    n: u16,
    subset: &[usize],
    seed: u64,
) -> Option<[u8; 32]> {
    let d = deal::<C>(t, n, seed);
    let msg: [u8; 32] = seed.to_le_bytes().repeat(4).try_into().unwrap();
    let signers: Vec<_> = subset.iter().map(|&i| &d.shares[i]).collect();
    let sig = sign_with(&d.group, &signers, &msg, seed ^ 1).unwrap();
    signing::verify(&d.group, &msg, &sig).unwrap();
    Some(msg)
}

fn t_minus_one_cannot<C: KuraSuite>(t: u16, n: u16, subset: &[usize], seed: u64) {
    let d = deal::<C>(t, n, seed);
    let mut r = rng(seed);
    let few = &subset[..subset.len() - 1];
    let mut states = Vec::new();
    let mut map = BTreeMap::new();
    for &i in few {
        let (s, c) = signing::commit(&d.shares[i], &mut r);
        map.insert(*d.shares[i].identifier(), c);
        states.push(s);
    }
    let msg = b"t-1 signers";
    assert!(matches!(
        signing::build_package(&d.group, map.clone(), msg),
        Err(SignError::TooFewSigners { .. })
    ));
    let package = SigningPackage::new(map, msg);
    for (&i, s) in few.iter().zip(states) {
        let e = signing::sign(&d.shares[i], &d.group, &package, msg, s).unwrap_err();
        assert!(matches!(e, SignError::TooFewSigners { .. }), "{e}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn tr_any_t_subset_signs_and_libsecp_agrees((t, n, subset, seed) in params()) {
        let d = deal::<Secp256k1Tr>(t, n, seed);
        let msg: [u8; 32] = seed.to_be_bytes().repeat(4).try_into().unwrap();
        let signers: Vec<_> = subset.iter().map(|&i| &d.shares[i]).collect();
        let sig = sign_with(&d.group, &signers, &msg, seed ^ 2).unwrap();
        prop_assert!(signing::verify(&d.group, &msg, &sig).is_ok());
        prop_assert!(libsecp_verify_tr(&d.group, &msg, &sig));
        let mut other = msg;
        other[0] ^= 1;
        prop_assert!(!libsecp_verify_tr(&d.group, &other, &sig));
    }

    #[test]
    fn rfc9591_any_t_subset_signs((t, n, subset, seed) in params()) {
        prop_assert!(any_t_subset_signs::<Secp256k1>(t, n, &subset, seed).is_some());
    }

    #[test]
    fn t_minus_one_signers_are_refused((t, n, subset, seed) in params()) {
        t_minus_one_cannot::<Secp256k1Tr>(t, n, &subset, seed);
        t_minus_one_cannot::<Secp256k1>(t, n, &subset, seed);
    }
}
