//! Signing rounds for both suites: honest runs and every refusal the signer owes.

use std::collections::BTreeMap;

use kura_testkit::*;
use wallet_core::frost_core::round1::SigningCommitments;
use wallet_core::frost_core::{Identifier, SigningPackage};
use wallet_core::signing::{self, AggregateError, SignError};
use wallet_core::{KuraSuite, Secp256k1, Secp256k1Tr};

const MSG: &[u8; 32] = b"kura test message, 32 bytes long";

fn check_honest_2_of_3<C: KuraSuite>() {
    let d = deal::<C>(2, 3, 1);
    for pair in [[0, 1], [0, 2], [1, 2]] {
        let signers: Vec<_> = pair.iter().map(|&i| &d.shares[i]).collect();
        let sig = sign_with(&d.group, &signers, MSG, 7).unwrap();
        signing::verify(&d.group, MSG, &sig).unwrap();
        assert!(signing::verify(&d.group, b"another message", &sig).is_err());
    }
}

#[test]
fn honest_2_of_3_both_suites() {
    check_honest_2_of_3::<Secp256k1>();
    check_honest_2_of_3::<Secp256k1Tr>();
}

#[test]
fn tr_signature_is_bip340_under_output_key() {
    let d = deal::<Secp256k1Tr>(2, 3, 2);
    let sig = sign_with(&d.group, &[&d.shares[0], &d.shares[2]], MSG, 3).unwrap();
    assert_eq!(sig.serialize().unwrap().len(), 64);
    assert!(libsecp_verify_tr(&d.group, MSG, &sig));
    // The signature is for the tweaked output key, never the internal key.
    assert_ne!(d.group.output_key(), d.group.verifying_key());
}

#[test]
fn rfc9591_signature_is_65_bytes() {
    let d = deal::<Secp256k1>(2, 3, 2);
    let sig = sign_with(&d.group, &[&d.shares[0], &d.shares[1]], MSG, 3).unwrap();
    assert_eq!(sig.serialize().unwrap().len(), 65);
    assert_eq!(d.group.output_key(), d.group.verifying_key());
}

type Round1<C> = (
    Vec<signing::Round1State<C>>,
    BTreeMap<Identifier<C>, SigningCommitments<C>>,
);

/// Round-1 states and commitments of the signers at `idx`.
fn round1<C: KuraSuite>(d: &wallet_core::keygen::Dealt<C>, idx: &[usize]) -> Round1<C> {
    let mut r = rng(11);
    let mut states = Vec::new();
    let mut map = BTreeMap::new();
    for &i in idx {
        let (s, c) = signing::commit(&d.shares[i], &mut r);
        map.insert(*d.shares[i].identifier(), c);
        states.push(s);
    }
    (states, map)
}

fn check_refusals<C: KuraSuite>() {
    let d = deal::<C>(2, 3, 5);
    let other = deal::<C>(2, 3, 6);

    // Changed message: the signer compares with what it computed itself.
    let (mut st, map) = round1(&d, &[0, 1]);
    let pkg = SigningPackage::new(map.clone(), b"coordinator's message");
    let err = signing::sign(&d.shares[0], &d.group, &pkg, MSG, st.remove(0)).unwrap_err();
    assert!(matches!(err, SignError::MessageMismatch { .. }), "{err}");

    // Dropped own commitment (package of the other two).
    let (mut st, _) = round1(&d, &[0]);
    let (_, map12) = round1(&d, &[1, 2]);
    let pkg = SigningPackage::new(map12, MSG);
    let err = signing::sign(&d.shares[0], &d.group, &pkg, MSG, st.remove(0)).unwrap_err();
    assert!(matches!(err, SignError::MissingOwnCommitment), "{err}");

    // Substituted own commitment.
    let (mut st, mut map) = round1(&d, &[0, 1]);
    let (_, fresh) = signing::commit(&d.shares[0], &mut rng(99));
    map.insert(*d.shares[0].identifier(), fresh);
    let pkg = SigningPackage::new(map, MSG);
    let err = signing::sign(&d.shares[0], &d.group, &pkg, MSG, st.remove(0)).unwrap_err();
    assert!(matches!(err, SignError::CommitmentChanged), "{err}");

    // Too few commitments (t - 1 = 1).
    let (mut st, map) = round1(&d, &[0]);
    let pkg = SigningPackage::new(map.clone(), MSG);
    let err = signing::sign(&d.shares[0], &d.group, &pkg, MSG, st.remove(0)).unwrap_err();
    assert!(
        matches!(err, SignError::TooFewSigners { have: 1, need: 2 }),
        "{err}"
    );
    assert!(matches!(
        signing::build_package(&d.group, map, MSG),
        Err(SignError::TooFewSigners { .. })
    ));

    // A non-member's commitment (a share of another group, same identifier 3).
    let (mut st, mut map) = round1(&d, &[0]);
    let stranger = Identifier::<C>::try_from(9u16).unwrap();
    let (_, c) = signing::commit(&other.shares[2], &mut rng(3));
    map.insert(stranger, c);
    let pkg = SigningPackage::new(map, MSG);
    let err = signing::sign(&d.shares[0], &d.group, &pkg, MSG, st.remove(0)).unwrap_err();
    assert!(matches!(err, SignError::UnknownSigner(_)), "{err}");

    // A share of another group.
    let (mut st, map) = round1(&other, &[0, 1]);
    let pkg = SigningPackage::new(map, MSG);
    let err = signing::sign(&other.shares[0], &d.group, &pkg, MSG, st.remove(0)).unwrap_err();
    assert!(matches!(err, SignError::Group(_)), "{err}");

    // A round-1 state of another participant.
    let (mut st, map) = round1(&d, &[0, 1]);
    let pkg = SigningPackage::new(map, MSG);
    let err = signing::sign(&d.shares[0], &d.group, &pkg, MSG, st.remove(1)).unwrap_err();
    assert!(matches!(err, SignError::WrongState(_)), "{err}");
}

#[test]
fn signer_refusals_both_suites() {
    check_refusals::<Secp256k1>();
    check_refusals::<Secp256k1Tr>();
}

fn check_culprits<C: KuraSuite>() {
    let d = deal::<C>(3, 5, 8);
    let idx = [0, 2, 4];
    let (states, map) = round1(&d, &idx);
    let pkg = signing::build_package(&d.group, map, MSG).unwrap();
    let mut shares = BTreeMap::new();
    for (&i, st) in idx.iter().zip(states) {
        shares.insert(
            *d.shares[i].identifier(),
            signing::sign(&d.shares[i], &d.group, &pkg, MSG, st).unwrap(),
        );
    }
    // Two malicious signers send a share for a different message's package.
    let mut bad = shares.clone();
    for &i in &[2usize, 4] {
        let (st2, map2) = round1(&d, &idx);
        let other_pkg = SigningPackage::new(map2, b"something else");
        let pos = idx.iter().position(|&x| x == i).unwrap();
        let st = st2.into_iter().nth(pos).unwrap();
        let s = signing::sign(&d.shares[i], &d.group, &other_pkg, b"something else", st).unwrap();
        bad.insert(*d.shares[i].identifier(), s);
    }
    match signing::aggregate(&d.group, &pkg, &bad) {
        Err(AggregateError::InvalidShares { culprits }) => {
            let names: Vec<_> = culprits
                .iter()
                .map(|c| c.label.as_ref().unwrap().as_str())
                .collect();
            assert_eq!(names, ["signer-3", "signer-5"]);
        }
        other => panic!("expected culprits, got {other:?}"),
    }
    // A missing share is refused, not blamed.
    let mut short = shares.clone();
    short.pop_first();
    assert!(matches!(
        signing::aggregate(&d.group, &pkg, &short),
        Err(AggregateError::SignerMismatch(_))
    ));
    // The honest set aggregates.
    let sig = signing::aggregate(&d.group, &pkg, &shares).unwrap();
    signing::verify(&d.group, MSG, &sig).unwrap();
}

#[test]
fn invalid_shares_name_every_culprit_and_only_them() {
    check_culprits::<Secp256k1>();
    check_culprits::<Secp256k1Tr>();
}

#[test]
fn debug_output_redacts_secrets() {
    let d = deal::<Secp256k1Tr>(2, 3, 4);
    let share_hex = hex::encode(d.shares[0].key_package().signing_share().serialize());
    let dbg = format!("{:?}", d.shares[0]);
    assert!(!dbg.contains(&share_hex), "{dbg}");
    assert!(dbg.contains("redacted"));
    let (st, _) = signing::commit(&d.shares[0], &mut rng(1));
    let dbg = format!("{st:?}");
    assert!(dbg.contains("redacted"), "{dbg}");
}
