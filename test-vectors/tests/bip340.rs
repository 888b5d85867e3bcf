//! BIP 340 test vectors (`bip340/vectors.json`, from bitcoin/bips
//! `bip-0340/test-vectors.csv`) through wallet-core's BIP340 verifier, with
//! libsecp256k1 (via rust-bitcoin) as an independent second opinion.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use bitcoin::secp256k1::{schnorr, Message, Secp256k1, XOnlyPublicKey};
use test_vectors::outside::{load, Bip340File};
use wallet_core::frost_core::{SigningKey, VerifyingKey};
use wallet_core::taproot::verify_bip340;
use wallet_core::Secp256k1Tr;

#[test]
fn bip340_vectors() {
    let file: Bip340File = load("bip340/vectors.json");
    let secp = Secp256k1::verification_only();
    let mut checked = 0;
    let mut libsecp_checked = 0;
    let mut expected_valid = 0;

    for (n, v) in file.vectors.iter().enumerate() {
        assert_eq!(v.index as usize, n, "vectors are in index order");
        let what = format!("vector {} ({})", v.index, v.comment);
        let public_key: [u8; 32] = v.public_key.array();
        let signature: [u8; 64] = v.signature.array();

        let ours = verify_bip340(&public_key, v.message.bytes(), &signature).is_ok();
        assert_eq!(ours, v.result, "wallet-core: {what}");
        checked += 1;
        expected_valid += usize::from(v.result);

        // libsecp256k1 0.29 verifies 32-byte messages only.
        if let Ok(msg32) = <[u8; 32]>::try_from(v.message.bytes()) {
            let libsecp = match XOnlyPublicKey::from_slice(&public_key) {
                Ok(pk) => {
                    let sig = schnorr::Signature::from_slice(&signature).unwrap();
                    secp.verify_schnorr(&sig, &Message::from_digest(msg32), &pk)
                        .is_ok()
                }
                Err(_) => false,
            };
            assert_eq!(libsecp, v.result, "libsecp256k1: {what}");
            libsecp_checked += 1;
        }

        // Signing vectors: the listed public key is x(secret·G).
        if let Some(sk) = &v.secret_key {
            let vk = VerifyingKey::<Secp256k1Tr>::from(
                &SigningKey::<Secp256k1Tr>::deserialize(sk.bytes()).unwrap(),
            );
            assert_eq!(
                &vk.serialize().unwrap()[1..],
                &public_key[..],
                "{what}: public key of secret key"
            );
            assert!(v.result, "{what}: signing vectors are valid");
        }
    }
    assert_eq!(checked, 19, "all 19 BIP 340 vectors run");
    assert_eq!(expected_valid, 9, "9 valid, 10 invalid");
    assert_eq!(libsecp_checked, 15, "15 vectors have 32-byte messages");
}
