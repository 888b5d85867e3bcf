//! Helpers shared by wallet-core's integration tests.
#![allow(dead_code)]

use std::collections::BTreeMap;

use rand::rngs::StdRng;
use rand::SeedableRng;
use wallet_core::frost_core::{Identifier, Signature};
use wallet_core::keygen::{self, Dealt, Identifiers};
use wallet_core::signing;
use wallet_core::{KeyShare, KuraSuite, Label, PublicGroup, Secp256k1Tr};

pub fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

pub fn labels(n: u16) -> Vec<Label> {
    (1..=n)
        .map(|i| Label::new(format!("signer-{i}")).unwrap())
        .collect()
}

pub fn deal<C: KuraSuite>(t: u16, n: u16, seed: u64) -> Dealt<C> {
    keygen::dealer::<C, _>(t, &labels(n), Identifiers::Default, &mut rng(seed)).unwrap()
}

/// Runs both rounds honestly with `signers` and aggregates.
pub fn sign_with<C: KuraSuite>(
    group: &PublicGroup<C>,
    signers: &[&KeyShare<C>],
    message: &[u8],
    seed: u64,
) -> Result<Signature<C>, signing::AggregateError<C>> {
    let mut rng = rng(seed);
    let mut states = Vec::new();
    let mut commitments = BTreeMap::new();
    for s in signers {
        let (state, c) = signing::commit(*s, &mut rng);
        commitments.insert(*s.identifier(), c);
        states.push(state);
    }
    let package = signing::build_package(group, commitments, message)?;
    let mut shares: BTreeMap<Identifier<C>, _> = BTreeMap::new();
    for (s, state) in signers.iter().zip(states) {
        let share = signing::sign(*s, group, &package, message, state)?;
        shares.insert(*s.identifier(), share);
    }
    signing::aggregate(group, &package, &shares)
}

/// Checks a tr-suite signature with libsecp256k1's BIP340 verifier against
/// the group's output key (x-only), independently of frost.
pub fn libsecp_verify_tr(
    group: &PublicGroup<Secp256k1Tr>,
    msg32: &[u8; 32],
    sig: &Signature<Secp256k1Tr>,
) -> bool {
    use bitcoin::secp256k1::{schnorr, Message, Secp256k1, XOnlyPublicKey};
    let secp = Secp256k1::verification_only();
    let out = group.output_key().serialize().unwrap();
    let xonly = XOnlyPublicKey::from_slice(&out[1..]).unwrap();
    let sig = schnorr::Signature::from_slice(&sig.serialize().unwrap()).unwrap();
    secp.verify_schnorr(&sig, &Message::from_digest(*msg32), &xonly)
        .is_ok()
}

/// A regtest coin paying `value` sats to `script`, from a synthetic funding
/// transaction whose txid depends on `tag`.
pub fn coin(
    script: &bitcoin::ScriptBuf,
    value: u64,
    tag: u8,
) -> (bitcoin::OutPoint, bitcoin::TxOut) {
    use bitcoin::{
        absolute, transaction, Amount, OutPoint, Sequence, Transaction, TxIn, TxOut, Witness,
    };
    let funding = Transaction {
        version: transaction::Version::TWO,
        lock_time: absolute::LockTime::ZERO,
        input: vec![TxIn {
            previous_output: OutPoint {
                txid: bitcoin::hashes::Hash::from_byte_array([tag; 32]),
                vout: 0,
            },
            script_sig: bitcoin::ScriptBuf::new(),
            sequence: Sequence::MAX,
            witness: Witness::new(),
        }],
        output: vec![TxOut {
            value: Amount::from_sat(value),
            script_pubkey: script.clone(),
        }],
    };
    (
        OutPoint {
            txid: funding.compute_txid(),
            vout: 0,
        },
        funding.output[0].clone(),
    )
}

/// A PSBT spending `coins` (with witness_utxo) to `outputs`.
pub fn psbt(
    coins: &[(bitcoin::OutPoint, bitcoin::TxOut)],
    outputs: Vec<bitcoin::TxOut>,
) -> bitcoin::psbt::Psbt {
    use bitcoin::{absolute, transaction, Sequence, Transaction, TxIn, Witness};
    let tx = Transaction {
        version: transaction::Version::TWO,
        lock_time: absolute::LockTime::ZERO,
        input: coins
            .iter()
            .map(|(op, _)| TxIn {
                previous_output: *op,
                script_sig: bitcoin::ScriptBuf::new(),
                sequence: Sequence::ENABLE_RBF_NO_LOCKTIME,
                witness: Witness::new(),
            })
            .collect(),
        output: outputs,
    };
    let mut psbt = bitcoin::psbt::Psbt::from_unsigned_tx(tx).unwrap();
    for (input, (_, txout)) in psbt.inputs.iter_mut().zip(coins) {
        input.witness_utxo = Some(txout.clone());
    }
    psbt
}

/// An address that is not the group's (regtest P2TR of a fixed key).
pub fn outside_address(tag: u8) -> bitcoin::Address {
    use bitcoin::secp256k1::{Keypair, Secp256k1, SecretKey};
    let secp = Secp256k1::new();
    let kp = Keypair::from_secret_key(&secp, &SecretKey::from_slice(&[tag; 32]).unwrap());
    bitcoin::Address::p2tr(
        &secp,
        kp.x_only_public_key().0,
        None,
        bitcoin::Network::Regtest,
    )
}

/// Bitcoin Core's consensus check of every input of `tx` (Taproot rules, with
/// all spent outputs — without them libbitcoinconsensus skips Taproot checks).
pub fn consensus_verify(tx: &bitcoin::Transaction, spent: &[bitcoin::TxOut]) -> Result<(), String> {
    let bytes = bitcoin::consensus::serialize(tx);
    let scripts: Vec<Vec<u8>> = spent.iter().map(|o| o.script_pubkey.to_bytes()).collect();
    let utxos: Vec<bitcoinconsensus::Utxo> = spent
        .iter()
        .zip(&scripts)
        .map(|(o, s)| bitcoinconsensus::Utxo {
            script_pubkey: s.as_ptr(),
            script_pubkey_len: s.len() as u32,
            value: o.value.to_sat() as i64,
        })
        .collect();
    let flags = bitcoinconsensus::VERIFY_ALL_PRE_TAPROOT | bitcoinconsensus::VERIFY_TAPROOT;
    for (i, o) in spent.iter().enumerate() {
        bitcoinconsensus::verify_with_flags(
            &scripts[i],
            o.value.to_sat(),
            &bytes,
            Some(&utxos),
            i,
            flags,
        )
        .map_err(|e| format!("input {i}: {e:?}"))?;
    }
    Ok(())
}
