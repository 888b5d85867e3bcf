//! Synthetic regtest coins and the PSBTs that spend them.

use bitcoin::psbt::Psbt;
use bitcoin::{
    absolute, transaction, Address, Amount, OutPoint, ScriptBuf, Sequence, Transaction, TxIn,
    TxOut, Witness,
};

/// A synthetic funding transaction: one input from the made-up txid
/// `[tag; 32]`, one output paying `value` sats to `script`.
pub fn funding_tx(script: &ScriptBuf, value: u64, tag: u8) -> Transaction {
    Transaction {
        version: transaction::Version::TWO,
        lock_time: absolute::LockTime::ZERO,
        input: vec![TxIn {
            previous_output: OutPoint {
                txid: bitcoin::hashes::Hash::from_byte_array([tag; 32]),
                vout: 0,
            },
            script_sig: ScriptBuf::new(),
            sequence: Sequence::MAX,
            witness: Witness::new(),
        }],
        output: vec![TxOut {
            value: Amount::from_sat(value),
            script_pubkey: script.clone(),
        }],
    }
}

/// A regtest coin paying `value` sats to `script`: output 0 of
/// [`funding_tx`]`(script, value, tag)`, so its outpoint depends on all three.
/// For the group's coin, `script` is `group.taproot().script_pubkey()`.
pub fn coin(script: &ScriptBuf, value: u64, tag: u8) -> (OutPoint, TxOut) {
    let funding = funding_tx(script, value, tag);
    (
        OutPoint {
            txid: funding.compute_txid(),
            vout: 0,
        },
        funding.output[0].clone(),
    )
}

/// A version 2 PSBT spending `coins` (each input with its `witness_utxo`,
/// nSequence `0xfffffffd`: RBF, no relative lock; nLockTime 0) to `outputs`.
pub fn psbt(coins: &[(OutPoint, TxOut)], outputs: Vec<TxOut>) -> Psbt {
    let tx = Transaction {
        version: transaction::Version::TWO,
        lock_time: absolute::LockTime::ZERO,
        input: coins
            .iter()
            .map(|(op, _)| TxIn {
                previous_output: *op,
                script_sig: ScriptBuf::new(),
                sequence: Sequence::ENABLE_RBF_NO_LOCKTIME,
                witness: Witness::new(),
            })
            .collect(),
        output: outputs,
    };
    let mut psbt = Psbt::from_unsigned_tx(tx).unwrap();
    for (input, (_, txout)) in psbt.inputs.iter_mut().zip(coins) {
        input.witness_utxo = Some(txout.clone());
    }
    psbt
}

/// `p` with `edit` applied to its unsigned transaction (lock time, version,
/// sequences; not the number of inputs or outputs).
pub fn with_tx(mut p: Psbt, edit: impl FnOnce(&mut Transaction)) -> Psbt {
    edit(&mut p.unsigned_tx);
    p
}

/// A withdrawal from coins worth `total` sats: `amount` to `destination`,
/// then the rest less `fee` back to `change`.
pub fn withdrawal_outputs(
    total: u64,
    destination: &ScriptBuf,
    amount: u64,
    change: &ScriptBuf,
    fee: u64,
) -> Vec<TxOut> {
    vec![
        TxOut {
            value: Amount::from_sat(amount),
            script_pubkey: destination.clone(),
        },
        TxOut {
            value: Amount::from_sat(total - amount - fee),
            script_pubkey: change.clone(),
        },
    ]
}

/// A regtest P2TR address that is not a group's: the key path of the fixed
/// secret key `[tag; 32]` (`tag` not 0).
pub fn outside_address(tag: u8) -> Address {
    use bitcoin::secp256k1::{Keypair, Secp256k1, SecretKey};
    let secp = Secp256k1::new();
    let kp = Keypair::from_secret_key(&secp, &SecretKey::from_slice(&[tag; 32]).unwrap());
    Address::p2tr(
        &secp,
        kp.x_only_public_key().0,
        None,
        bitcoin::Network::Regtest,
    )
}
