//! FROST signing vectors run through wallet-core's signing rounds.
//!
//! - `rfc9591/secp256k1-sign.json`: ZF frost v3.0.0 `frost-secp256k1/tests/helpers/vectors.json`
//!   (RFC 9591 §6.5 ciphersuite, RFC 9591 Appendix E layout, the crate's own nonce randomness).
//! - `rfc9591/secp256k1-sign-cfrg-draft15.json`: draft-irtf-cfrg-frost-15
//!   `poc/frost-secp256k1-sha256.json`, the values published as RFC 9591 Appendix E.5.
//! - `rfc9591/secp256k1-sign-big-identifier.json`: ZF frost `vectors-big-identifier.json`
//!   (identifiers 129, 256, 257 of 257).
//! - `frost-secp256k1-tr/secp256k1-tr-sign.json`: ZF frost v3.0.0
//!   `frost-secp256k1-tr/tests/helpers/vectors.json` (BIP340 signatures, untweaked key).

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod common;

use std::collections::BTreeMap;

use common::{flip_last_bit, group_from_sign_vector, id, label, sig_bytes, VectorGroup};
use test_vectors::outside::{load, SignVector};
use test_vectors::rng::ReplayRng;
use wallet_core::frost_core::round1::SigningCommitments;
use wallet_core::frost_core::round2::SignatureShare;
use wallet_core::frost_core::{Field, Group, Identifier, Signature, SigningPackage, VerifyingKey};
use wallet_core::signing::{self, AggregateError, Round1State};
use wallet_core::taproot::verify_bip340;
use wallet_core::{KuraSuite, Secp256k1, Secp256k1Tr};

/// Each signer's secret round-1 state.
type States<C> = BTreeMap<Identifier<C>, Round1State<C>>;
/// Each signer's round-1 commitments.
type Commitments<C> = BTreeMap<Identifier<C>, SigningCommitments<C>>;

/// Round 1 of every signer of the vector through `signing::commit`, with an
/// RNG that replays the vector's nonce randomness. Asserts the secret nonces
/// and the public commitments equal the vector's, and that commit drew
/// exactly the two recorded 32-byte strings (hiding, then binding).
fn round1<C: KuraSuite>(v: &SignVector, vg: &VectorGroup<C>) -> (States<C>, Commitments<C>) {
    assert_eq!(
        v.round1.iter().map(|r| r.identifier).collect::<Vec<_>>(),
        v.signers,
        "round1 lists the signers"
    );
    let mut states = BTreeMap::new();
    let mut commitments = BTreeMap::new();
    for r1 in &v.round1 {
        let pid = id::<C>(r1.identifier);
        let share = &vg.shares[&pid];
        let mut rng = ReplayRng::new([
            r1.hiding_nonce_randomness.bytes(),
            r1.binding_nonce_randomness.bytes(),
        ]);
        let (state, c) = signing::commit(share, &mut rng);
        let who = r1.identifier;
        assert_eq!(
            rng.remaining(),
            0,
            "signer {who}: commit must draw both 32-byte randomness strings"
        );
        assert_eq!(state.identifier(), &pid);
        assert_eq!(
            state.hazmat_nonces().hiding().serialize(),
            r1.hiding_nonce.0,
            "signer {who}: hiding nonce"
        );
        assert_eq!(
            state.hazmat_nonces().binding().serialize(),
            r1.binding_nonce.0,
            "signer {who}: binding nonce"
        );
        assert_eq!(
            c.hiding().serialize().unwrap(),
            r1.hiding_nonce_commitment.0,
            "signer {who}: hiding commitment"
        );
        assert_eq!(
            c.binding().serialize().unwrap(),
            r1.binding_nonce_commitment.0,
            "signer {who}: binding commitment"
        );
        assert_eq!(state.commitments(), &c);
        states.insert(pid, state);
        commitments.insert(pid, c);
    }
    (states, commitments)
}

/// Checks each signer's binding factor input (RFC 9591 §4.4 preimage of H1)
/// and binding factor as frost computes them for `package` under `key`.
fn check_binding_factors<C: KuraSuite>(
    v: &SignVector,
    package: &SigningPackage<C>,
    key: &VerifyingKey<C>,
) {
    let preimages = package.binding_factor_preimages(key, &[]).unwrap();
    assert_eq!(preimages.len(), v.round1.len());
    for (pid, preimage) in preimages {
        let r1 = v
            .round1
            .iter()
            .find(|r| id::<C>(r.identifier) == pid)
            .expect("binding factor for a non-signer");
        assert_eq!(
            preimage, r1.binding_factor_input.0,
            "signer {}: binding_factor_input",
            r1.identifier
        );
        let factor = C::H1(&preimage);
        assert_eq!(
            <<C::Group as Group>::Field as Field>::serialize(&factor).as_ref(),
            r1.binding_factor.bytes(),
            "signer {}: binding_factor",
            r1.identifier
        );
    }
}

/// Runs an RFC 9591 secp256k1 vector end to end through wallet-core.
fn run_rfc9591(file: &str) {
    let v: SignVector = load(file);
    assert_eq!(v.suite, "secp256k1");
    let vg = group_from_sign_vector::<Secp256k1>(&v);
    let message = v.message.0.clone();

    let (mut states, commitments) = round1(&v, &vg);
    let package = signing::build_package(&vg.group, commitments, &message).unwrap();
    check_binding_factors(&v, &package, vg.group.verifying_key());

    // Round 2: wallet-core's checked sign, one share per signer.
    assert_eq!(
        v.round2.iter().map(|r| r.identifier).collect::<Vec<_>>(),
        v.signers
    );
    let mut shares = BTreeMap::new();
    for r2 in &v.round2 {
        let pid = id::<Secp256k1>(r2.identifier);
        let state = states.remove(&pid).unwrap();
        let share = signing::sign(&vg.shares[&pid], &vg.group, &package, &message, state).unwrap();
        assert_eq!(
            share.serialize(),
            r2.signature_share.0,
            "{file}: signature share of {}",
            r2.identifier
        );
        shares.insert(pid, share);
    }

    let sig = signing::aggregate(&vg.group, &package, &shares).unwrap();
    assert_eq!(
        sig_bytes(&sig),
        v.signature.0,
        "{file}: aggregate signature"
    );
    signing::verify(&vg.group, &message, &sig).unwrap();
    assert!(signing::verify(&vg.group, b"not the message", &sig).is_err());
    let vector_sig = Signature::<Secp256k1>::deserialize(v.signature.bytes()).unwrap();
    signing::verify(&vg.group, &message, &vector_sig).unwrap();

    // One corrupted share: aggregation fails and names exactly its sender.
    let (&bad_id, bad_share) = shares.iter().next().unwrap();
    let mut tampered = shares.clone();
    tampered.insert(
        bad_id,
        SignatureShare::<Secp256k1>::deserialize(&flip_last_bit(&bad_share.serialize())).unwrap(),
    );
    match signing::aggregate(&vg.group, &package, &tampered) {
        Err(AggregateError::InvalidShares { culprits }) => {
            assert_eq!(culprits.len(), 1);
            assert_eq!(
                culprits[0].label.as_ref().map(ToString::to_string),
                Some(label(v.signers[0]).to_string())
            );
        }
        other => panic!("{file}: expected InvalidShares, got {other:?}"),
    }
}

#[test]
fn rfc9591_signing_zf_frost_vector() {
    run_rfc9591("rfc9591/secp256k1-sign.json");
}

#[test]
fn rfc9591_signing_cfrg_draft15_appendix_vector() {
    run_rfc9591("rfc9591/secp256k1-sign-cfrg-draft15.json");
}

#[test]
fn rfc9591_signing_big_identifier_vector() {
    run_rfc9591("rfc9591/secp256k1-sign-big-identifier.json");
}

/// The frost-secp256k1-tr crate vector.
///
/// Round 2 is NOT compared with the vector through wallet-core, on purpose:
/// the vector signs under the *untweaked* group key (its signature verifies
/// under x(group_public_key)), while wallet-core's `secp256k1-tr` suite always
/// treats the group key as the BIP86 internal key and signs under the tweaked
/// output key `P + hashTapTweak(x(P))·G` (see `wallet_core::suite`). The tweak
/// changes the signing share, the key in the binding factors and the BIP340
/// challenge, so wallet-core's signature shares cannot equal the vector's.
/// Instead this test checks:
/// - round 1 through `signing::commit` exactly (nonces and commitments), and
///   the binding factors frost derives for the vector's (untweaked) key;
/// - the vector's final signature with `taproot::verify_bip340`, and that any
///   flipped bit makes it fail;
/// - that frost itself, given the untweaked key package, reproduces the
///   vector's shares and signature from wallet-core's round-1 nonces (so the
///   only difference is the tweak);
/// - that wallet-core's round 2 on the same nonces gives different shares and
///   a signature that verifies under the output key and not the internal key.
#[test]
fn tr_suite_vectors() {
    let file = "frost-secp256k1-tr/secp256k1-tr-sign.json";
    let v: SignVector = load(file);
    assert_eq!(v.suite, "secp256k1-tr");
    let vg = group_from_sign_vector::<Secp256k1Tr>(&v);
    let message = v.message.0.clone();

    let (states, commitments) = round1(&v, &vg);
    let package = signing::build_package(&vg.group, commitments, &message).unwrap();
    // The vector's binding factors are over the untweaked group key.
    check_binding_factors(&v, &package, vg.group.verifying_key());

    // The vector's BIP340 signature under x(group_public_key).
    let internal_x: [u8; 32] = v.group_public_key.bytes()[1..].try_into().unwrap();
    let vector_sig: [u8; 64] = v.signature.array();
    verify_bip340(&internal_x, &message, &vector_sig).unwrap();
    for bit in [0usize, 7, 255, 256, 263, 511] {
        let mut bad = vector_sig;
        bad[bit / 8] ^= 1 << (bit % 8);
        assert!(
            verify_bip340(&internal_x, &message, &bad).is_err(),
            "signature with bit {bit} flipped must not verify"
        );
    }
    assert!(verify_bip340(&internal_x, b"not the message", &vector_sig).is_err());
    // wallet-core's group verifies under the output key, so it rejects the
    // vector's untweaked signature: this is the documented tr rule.
    let parsed = Signature::<Secp256k1Tr>::deserialize(&vector_sig).unwrap();
    assert!(signing::verify(&vg.group, &message, &parsed).is_err());

    // frost (not wallet-core) with the untweaked key package, on the very
    // nonces wallet-core's commit produced, reproduces the vector's round 2.
    let mut frost_shares = BTreeMap::new();
    for r2 in &v.round2 {
        let pid = id::<Secp256k1Tr>(r2.identifier);
        let share = wallet_core::frost_core::round2::sign(
            &package,
            states[&pid].hazmat_nonces(),
            vg.shares[&pid].key_package(),
        )
        .unwrap();
        assert_eq!(
            share.serialize(),
            r2.signature_share.0,
            "untweaked frost share of {}",
            r2.identifier
        );
        frost_shares.insert(pid, share);
    }
    let frost_sig =
        wallet_core::frost_core::aggregate(&package, &frost_shares, vg.group.public_key_package())
            .unwrap();
    assert_eq!(sig_bytes(&frost_sig), v.signature.0);

    // wallet-core's round 2 on the same nonces signs under the output key.
    let mut shares = BTreeMap::new();
    for (pid, state) in states {
        let share = signing::sign(&vg.shares[&pid], &vg.group, &package, &message, state).unwrap();
        assert_ne!(
            share, frost_shares[&pid],
            "wallet-core must sign under the tweaked key"
        );
        shares.insert(pid, share);
    }
    let sig = signing::aggregate(&vg.group, &package, &shares).unwrap();
    signing::verify(&vg.group, &message, &sig).unwrap();
    let sig64: [u8; 64] = sig_bytes(&sig).try_into().unwrap();
    let output_x: [u8; 32] = vg.group.output_key().serialize().unwrap()[1..]
        .try_into()
        .unwrap();
    assert_eq!(output_x, vg.group.taproot().output_key().serialize());
    verify_bip340(&output_x, &message, &sig64).unwrap();
    assert!(verify_bip340(&internal_x, &message, &sig64).is_err());
}
