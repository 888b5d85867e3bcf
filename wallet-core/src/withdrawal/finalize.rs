//! The coordinator's last step: put each input's aggregated signature into
//! the PSBT, check it against the output key and the sighash computed here,
//! finalize the key-path spends and extract the transaction.
//!
//! The finalized PSBT holds exactly what was reviewed and signed. Per BIP174's
//! finalizer, every input keeps only its UTXO fields (`witness_utxo`,
//! `non_witness_utxo`) and its new `final_script_witness`; everything else —
//! a `final_script_sig` or `final_script_witness` set by whoever built the
//! PSBT, partial signatures, leaf scripts and their signatures, key origins,
//! preimages, proprietary and unknown fields — is dropped (Kura keeps no
//! unknown input fields: it signs key-path spends only, and passes on nothing
//! it did not read). Proprietary and unknown fields of the outputs and of the
//! global map go too. The extracted transaction's txid must equal the
//! reviewed one.

use bitcoin::psbt::Psbt;
use bitcoin::secp256k1::{schnorr, Message, Secp256k1};
use bitcoin::{taproot, Network, Transaction, Witness};
use frost_core::Signature;

use super::review::{review, ReviewError};
use crate::hd::GroupXpub;
use crate::suite::Secp256k1Tr;

/// Why a PSBT could not be finalized.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FinalizeError {
    /// The PSBT does not pass the same review a signer applies.
    #[error(transparent)]
    Review(#[from] ReviewError),
    /// One signature per input is needed.
    #[error("{signatures} signatures for {inputs} inputs")]
    SignatureCount {
        /// Signatures given.
        signatures: usize,
        /// Inputs in the PSBT.
        inputs: usize,
    },
    /// A signature that does not verify for its input.
    #[error("the signature for input {input} does not verify under the group's output key for that input's sighash")]
    InvalidSignature {
        /// Input index.
        input: usize,
    },
    /// The PSBT could not be extracted.
    #[error("cannot extract the transaction: {0}")]
    Extract(String),
    /// The extracted transaction is not the one reviewed (not expected once
    /// the inputs are cleaned; checked so that it can never go unnoticed).
    #[error("the finalized transaction {found} is not the reviewed transaction {reviewed}")]
    TxidMismatch {
        /// The reviewed (unsigned) txid.
        reviewed: bitcoin::Txid,
        /// The extracted transaction's txid.
        found: bitcoin::Txid,
    },
}

/// Finalizes `psbt` with one group signature per input (in input order) and
/// returns the signed transaction. Every signature is verified with
/// libsecp256k1 against the output key of the key that input spends (its
/// declared child of `xpub`, derived again here) and the input's sighash before
/// anything is written into the PSBT.
///
/// # Errors
/// [`FinalizeError`] naming the failing input.
pub fn finalize(
    psbt: &mut Psbt,
    signatures: &[Signature<Secp256k1Tr>],
    xpub: &GroupXpub,
    network: Network,
) -> Result<Transaction, FinalizeError> {
    let summary = review(psbt, xpub, network)?;
    if signatures.len() != summary.inputs.len() {
        return Err(FinalizeError::SignatureCount {
            signatures: signatures.len(),
            inputs: summary.inputs.len(),
        });
    }
    let secp = Secp256k1::verification_only();
    let mut checked = Vec::with_capacity(signatures.len());
    for (i, (sig, input)) in signatures.iter().zip(&summary.inputs).enumerate() {
        let bytes = sig
            .serialize()
            .map_err(|_| FinalizeError::InvalidSignature { input: i })?;
        let sig = schnorr::Signature::from_slice(&bytes)
            .map_err(|_| FinalizeError::InvalidSignature { input: i })?;
        let output_key = input.key.taproot().output_key().to_x_only_public_key();
        secp.verify_schnorr(&sig, &Message::from(input.sighash), &output_key)
            .map_err(|_| FinalizeError::InvalidSignature { input: i })?;
        checked.push(taproot::Signature {
            signature: sig,
            sighash_type: input.sighash_type,
        });
    }
    for (input, sig) in psbt.inputs.iter_mut().zip(checked) {
        // BIP174 finalizer: only the UTXO fields and the final witness stay.
        *input = bitcoin::psbt::Input {
            witness_utxo: input.witness_utxo.take(),
            non_witness_utxo: input.non_witness_utxo.take(),
            final_script_witness: Some(Witness::p2tr_key_spend(&sig)),
            ..Default::default()
        };
    }
    for output in &mut psbt.outputs {
        output.proprietary.clear();
        output.unknown.clear();
    }
    psbt.proprietary.clear();
    psbt.unknown.clear();
    let tx = psbt
        .clone()
        .extract_tx()
        .map_err(|e| FinalizeError::Extract(e.to_string()))?;
    let found = tx.compute_txid();
    if found != summary.txid {
        return Err(FinalizeError::TxidMismatch {
            reviewed: summary.txid,
            found,
        });
    }
    Ok(tx)
}
