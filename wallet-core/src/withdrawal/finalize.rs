//! The coordinator's last step: put each input's aggregated signature into
//! the PSBT, check it against the output key and the sighash computed here,
//! finalize the key-path spends and extract the transaction.

use bitcoin::psbt::Psbt;
use bitcoin::secp256k1::{schnorr, Message, Secp256k1};
use bitcoin::{taproot, Network, Transaction, Witness};
use frost_core::Signature;

use super::review::{review, ReviewError};
use crate::suite::Secp256k1Tr;
use crate::taproot::TaprootKeys;

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
}

/// Finalizes `psbt` with one group signature per input (in input order) and
/// returns the signed transaction. Every signature is verified with
/// libsecp256k1 against the output key and the input's sighash before
/// anything is written into the PSBT.
///
/// # Errors
/// [`FinalizeError`] naming the failing input.
pub fn finalize(
    psbt: &mut Psbt,
    signatures: &[Signature<Secp256k1Tr>],
    keys: &TaprootKeys,
    network: Network,
) -> Result<Transaction, FinalizeError> {
    let summary = review(psbt, keys, network)?;
    if signatures.len() != summary.inputs.len() {
        return Err(FinalizeError::SignatureCount {
            signatures: signatures.len(),
            inputs: summary.inputs.len(),
        });
    }
    let secp = Secp256k1::verification_only();
    let output_key = keys.output_key().to_x_only_public_key();
    let mut checked = Vec::with_capacity(signatures.len());
    for (i, (sig, input)) in signatures.iter().zip(&summary.inputs).enumerate() {
        let bytes = sig
            .serialize()
            .map_err(|_| FinalizeError::InvalidSignature { input: i })?;
        let sig = schnorr::Signature::from_slice(&bytes)
            .map_err(|_| FinalizeError::InvalidSignature { input: i })?;
        secp.verify_schnorr(&sig, &Message::from_digest(input.sighash), &output_key)
            .map_err(|_| FinalizeError::InvalidSignature { input: i })?;
        checked.push(taproot::Signature {
            signature: sig,
            sighash_type: input.sighash_type,
        });
    }
    for (input, sig) in psbt.inputs.iter_mut().zip(checked) {
        input.final_script_witness = Some(Witness::p2tr_key_spend(&sig));
        // BIP174 finalizer: everything but the UTXO and final fields goes.
        input.tap_key_sig = None;
        input.tap_internal_key = None;
        input.tap_merkle_root = None;
        input.tap_key_origins.clear();
        input.sighash_type = None;
        input.partial_sigs.clear();
        input.bip32_derivation.clear();
    }
    psbt.clone()
        .extract_tx()
        .map_err(|e| FinalizeError::Extract(e.to_string()))
}
