//! BIP 86 and BIP 341 key-path vectors against wallet-core's Taproot rule:
//! the group verifying key is the BIP86 internal key, the output key is
//! `TapTweak(internal, no script tree)`, and signatures verify under it.
//!
//! - `bip86/key-path.json`: BIP 86 "Test vectors" (bitcoin/bips `bip-0086.mediawiki`).
//! - `bip341/key-path.json`: BIP 341 `bip-0341/wallet-test-vectors.json`, the
//!   key-path-only `scriptPubKey` entries and the `keyPathSpending` section.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod common;

use std::collections::{BTreeMap, BTreeSet};

use bitcoin::hashes::Hash;
use bitcoin::key::TapTweak;
use bitcoin::secp256k1::{schnorr, Message, Secp256k1, XOnlyPublicKey};
use bitcoin::sighash::{Prevouts, SighashCache, TapSighashType};
use bitcoin::taproot::TapTweakHash;
use bitcoin::{Address, Amount, Network, ScriptBuf, Transaction, TxOut};
use common::{id, label, labels, sig_bytes};
use test_vectors::outside::{load, Bip341File, Bip86File};
use test_vectors::rng::SeededRng;
use wallet_core::frost_core::keys::{PublicKeyPackage, VerifiableSecretSharingCommitment};
use wallet_core::frost_core::{SigningKey, VerifyingKey};
use wallet_core::keygen::{self, Identifiers};
use wallet_core::taproot::verify_bip340;
use wallet_core::{signing, KeyShare, PublicGroup, Secp256k1Tr};

/// x-only bytes of a frost key.
fn x_only(vk: &VerifyingKey<Secp256k1Tr>) -> [u8; 32] {
    vk.serialize().unwrap()[1..].try_into().unwrap()
}

/// A 2-of-3 public-only group whose verifying key is the point with x
/// coordinate `x` and y parity `prefix` (0x02 even, 0x03 odd).
///
/// No secret exists for it, but it is a consistent group: its verifying
/// shares are derived from the VSS commitment `[P, G]`, i.e. the polynomial
/// with constant term log(P) and slope 1, exactly as a dealer's would be.
/// `PublicGroup` has no constructor from a bare public key; this is how a
/// test gets wallet-core's Taproot keys for a key whose secret it lacks.
fn public_only_group(x: &[u8; 32], prefix: u8) -> PublicGroup<Secp256k1Tr> {
    let mut point = vec![prefix];
    point.extend_from_slice(x);
    let one = {
        let mut b = [0u8; 32];
        b[31] = 1;
        SigningKey::<Secp256k1Tr>::deserialize(&b).unwrap()
    };
    let generator = VerifyingKey::<Secp256k1Tr>::from(&one).serialize().unwrap();
    let vss =
        VerifiableSecretSharingCommitment::<Secp256k1Tr>::deserialize([point.clone(), generator])
            .unwrap();
    let ids: BTreeSet<_> = (1..=3).map(id::<Secp256k1Tr>).collect();
    let pkp = PublicKeyPackage::from_commitment(&ids, &vss).unwrap();
    assert_eq!(pkp.verifying_key().serialize().unwrap(), point);
    let labels: BTreeMap<_, _> = (1..=3).map(|i| (id::<Secp256k1Tr>(i), label(i))).collect();
    PublicGroup::new(pkp, labels).unwrap()
}

/// Asserts wallet-core's Taproot keys for internal key `internal`, for both
/// y parities of the group key, and rust-bitcoin's independent derivation.
fn check_key_path_output(
    internal: &[u8; 32],
    output: &[u8; 32],
    script_pubkey: &[u8],
    address: &str,
) {
    let secp = Secp256k1::verification_only();
    for prefix in [0x02, 0x03] {
        let group = public_only_group(internal, prefix);
        let keys = group.taproot();
        assert_eq!(keys.internal_key().serialize(), *internal);
        assert_eq!(
            keys.output_key().serialize(),
            *output,
            "output key (group key prefix {prefix:02x})"
        );
        assert_eq!(keys.script_pubkey().as_bytes(), script_pubkey);
        assert_eq!(keys.address(Network::Bitcoin).to_string(), address);
        // frost's tweaked key, which the group signs under, is the same key.
        assert_eq!(
            x_only(group.output_key()),
            *output,
            "frost output key (prefix {prefix:02x})"
        );
    }
    // rust-bitcoin alone, from the x-only internal key.
    let xonly = XOnlyPublicKey::from_slice(internal).unwrap();
    let (tweaked, _parity) = xonly.tap_tweak(&secp, None);
    assert_eq!(tweaked.serialize(), *output);
    assert_eq!(
        ScriptBuf::new_p2tr(&secp, xonly, None).as_bytes(),
        script_pubkey
    );
    assert_eq!(
        Address::p2tr(&secp, xonly, None, Network::Bitcoin).to_string(),
        address
    );
}

#[test]
fn bip86_bip341_addresses_bip86() {
    let file: Bip86File = load("bip86/key-path.json");
    assert_eq!(file.vectors.len(), 3);
    for v in &file.vectors {
        let output: [u8; 32] = v.output_key.array();
        let mut expected_spk = vec![0x51, 0x20];
        expected_spk.extend_from_slice(&output);
        assert_eq!(
            v.script_pubkey.0, expected_spk,
            "{}: script_pubkey is 5120 || output_key",
            v.path
        );
        check_key_path_output(
            &v.internal_key.array(),
            &output,
            v.script_pubkey.bytes(),
            &v.address,
        );
    }
}

#[test]
fn bip86_bip341_addresses_bip341_script_pubkeys() {
    let file: Bip341File = load("bip341/key-path.json");
    assert!(!file.script_pubkey.is_empty());
    for v in &file.script_pubkey {
        assert!(
            v.merkle_root.is_none(),
            "only key-path-only entries are transcribed"
        );
        let internal: [u8; 32] = v.internal_pubkey.array();
        let xonly = XOnlyPublicKey::from_slice(&internal).unwrap();
        assert_eq!(
            TapTweakHash::from_key_and_tweak(xonly, None).to_byte_array(),
            v.tweak.array::<32>()
        );
        check_key_path_output(
            &internal,
            &v.tweaked_pubkey.array(),
            v.script_pubkey.bytes(),
            &v.bip350_address,
        );
    }
}

/// For dealer-made groups (random keys of both y parities), wallet-core's
/// address rule (rust-bitcoin's tap_tweak of the x-only group key) and the key
/// frost signs under are one key, and a group signature verifies under the
/// address's output key with libsecp256k1.
#[test]
fn bip86_bip341_addresses_dealer_group_key_is_signing_key() {
    let secp = Secp256k1::verification_only();
    let mut parities = BTreeSet::new();
    for seed in 1..=8u64 {
        let dealt = keygen::dealer::<Secp256k1Tr, _>(
            2,
            &labels(3),
            Identifiers::Default,
            &mut SeededRng::new(seed),
        )
        .unwrap();
        let group = &dealt.group;
        parities.insert(group.verifying_key().serialize().unwrap()[0]);
        let keys = group.taproot();
        assert_eq!(
            keys.internal_key().serialize(),
            x_only(group.verifying_key())
        );
        assert_eq!(
            keys.output_key().serialize(),
            x_only(group.output_key()),
            "seed {seed}"
        );

        let msg = [seed as u8; 32];
        let sig = sign(group, &[&dealt.shares[0], &dealt.shares[2]], &msg, seed);
        let sig = schnorr::Signature::from_slice(&sig).unwrap();
        secp.verify_schnorr(
            &sig,
            &Message::from_digest(msg),
            &keys.output_key().to_x_only_public_key(),
        )
        .unwrap();
    }
    assert_eq!(parities.len(), 2, "the seeds cover even and odd group keys");
}

/// wallet-core's signing rounds (commit, build_package, sign, aggregate) with
/// `signers`; returns the 64-byte signature.
fn sign(
    group: &PublicGroup<Secp256k1Tr>,
    signers: &[&KeyShare<Secp256k1Tr>],
    msg: &[u8],
    seed: u64,
) -> Vec<u8> {
    let mut rng = SeededRng::new(seed ^ 0x5eed);
    let mut states = Vec::new();
    let mut commitments = BTreeMap::new();
    for s in signers {
        let (state, c) = signing::commit(*s, &mut rng);
        commitments.insert(*s.identifier(), c);
        states.push(state);
    }
    let package = signing::build_package(group, commitments, msg).unwrap();
    let mut shares = BTreeMap::new();
    for (s, state) in signers.iter().zip(states) {
        shares.insert(
            *s.identifier(),
            signing::sign(*s, group, &package, msg, state).unwrap(),
        );
    }
    let sig = signing::aggregate(group, &package, &shares).unwrap();
    signing::verify(group, msg, &sig).unwrap();
    sig_bytes(&sig)
}

/// BIP 341 keyPathSpending. For every signed input: rust-bitcoin's sighash and
/// signature message equal the vector's, and splitting the input's internal
/// private key into a 2-of-3 group keeps its internal key. For the inputs
/// with no script tree (the only kind Kura spends): the group's Taproot
/// output key and scriptPubKey are those of the spent output, the vector's own
/// signature verifies under that key, and the group's FROST signature over
/// the sighash verifies under it with libsecp256k1. (The signature bytes
/// differ from the vector's, which used BIP340 aux randomness with a single
/// key; FROST nonces are random.)
#[test]
fn bip86_bip341_addresses_bip341_key_path_spending() {
    let file: Bip341File = load("bip341/key-path.json");
    let secp = Secp256k1::verification_only();
    let mut key_path_only_inputs = 0;
    let mut signed_inputs = 0;

    for spending in &file.key_path_spending {
        let tx: Transaction =
            bitcoin::consensus::deserialize(spending.raw_unsigned_tx.bytes()).unwrap();
        let utxos: Vec<TxOut> = spending
            .utxos_spent
            .iter()
            .map(|u| TxOut {
                value: Amount::from_sat(u.amount_sats),
                script_pubkey: ScriptBuf::from_bytes(u.script_pubkey.0.clone()),
            })
            .collect();
        assert_eq!(utxos.len(), tx.input.len());
        let prevouts = Prevouts::All(&utxos);

        for input in &spending.inputs {
            let n = input.txin_index;
            let hash_type = TapSighashType::from_consensus_u8(input.hash_type).unwrap();
            let mut cache = SighashCache::new(&tx);
            let sighash = cache
                .taproot_key_spend_signature_hash(n, &prevouts, hash_type)
                .unwrap();
            assert_eq!(
                sighash.to_byte_array(),
                input.sig_hash.array::<32>(),
                "input {n}: sig_hash"
            );
            let mut sig_msg = Vec::new();
            cache
                .taproot_encode_signing_data_to(&mut sig_msg, n, &prevouts, None, None, hash_type)
                .unwrap();
            assert_eq!(sig_msg, input.sig_msg.0, "input {n}: sig_msg");
            signed_inputs += 1;

            // Importing the single key into a 2-of-3 group keeps the internal key.
            let key =
                SigningKey::<Secp256k1Tr>::deserialize(input.internal_privkey.bytes()).unwrap();
            let dealt = keygen::split(
                &key,
                2,
                &labels(3),
                Identifiers::Default,
                &mut SeededRng::new(n as u64),
            )
            .unwrap();
            let group = &dealt.group;
            assert_eq!(
                group.taproot().internal_key().serialize(),
                input.internal_pubkey.array::<32>()
            );

            if input.merkle_root.is_some() {
                // Outputs with a script tree are not Kura outputs: skip.
                continue;
            }
            key_path_only_inputs += 1;
            let spent = &spending.utxos_spent[n].script_pubkey;
            assert_eq!(
                spent.bytes()[..2],
                [0x51, 0x20],
                "input {n} spends a P2TR output"
            );
            let output: [u8; 32] = spent.bytes()[2..].try_into().unwrap();
            let keys = group.taproot();
            assert_eq!(
                keys.output_key().serialize(),
                output,
                "input {n}: output key of the split group"
            );
            assert_eq!(keys.script_pubkey().as_bytes(), spent.bytes());
            assert_eq!(x_only(group.output_key()), output);
            // The vector's tweaked private key is the output key's secret.
            let tweaked =
                SigningKey::<Secp256k1Tr>::deserialize(input.tweaked_privkey.bytes()).unwrap();
            assert_eq!(x_only(&VerifyingKey::from(&tweaked)), output);
            let xonly_internal = XOnlyPublicKey::from_slice(&input.internal_pubkey.0).unwrap();
            assert_eq!(
                TapTweakHash::from_key_and_tweak(xonly_internal, None).to_byte_array(),
                input.tweak.array::<32>()
            );

            // The vector's signature (64 bytes, plus the sighash byte unless DEFAULT).
            let witness_sig = &input.witness[0].0;
            let expected_len = if input.hash_type == 0 { 64 } else { 65 };
            assert_eq!(witness_sig.len(), expected_len);
            let vector_sig: [u8; 64] = witness_sig[..64].try_into().unwrap();
            verify_bip340(&output, &sighash.to_byte_array(), &vector_sig).unwrap();

            // A FROST signature by participants 1 and 3 over the sighash.
            let msg = sighash.to_byte_array();
            let ours = sign(group, &[&dealt.shares[0], &dealt.shares[2]], &msg, n as u64);
            let ours64: [u8; 64] = ours.clone().try_into().unwrap();
            assert_ne!(
                ours64, vector_sig,
                "FROST nonces are not the vector's aux randomness"
            );
            verify_bip340(&output, &msg, &ours64).unwrap();
            let libsecp_sig = schnorr::Signature::from_slice(&ours).unwrap();
            secp.verify_schnorr(
                &libsecp_sig,
                &Message::from_digest(msg),
                &XOnlyPublicKey::from_slice(&output).unwrap(),
            )
            .unwrap();
        }
    }
    assert_eq!(signed_inputs, 7);
    assert_eq!(
        key_path_only_inputs, 1,
        "BIP 341 has one signed key-path-only input (txin 0)"
    );
}
