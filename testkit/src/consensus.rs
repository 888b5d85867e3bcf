//! Bitcoin Core's own script check, through `libbitcoinconsensus`.

use bitcoin::{Transaction, TxOut};

/// An input Bitcoin Core's consensus code rejects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsensusFailure {
    /// The rejected input.
    pub input: usize,
    /// libbitcoinconsensus's reason.
    pub error: bitcoinconsensus::Error,
}

impl std::fmt::Display for ConsensusFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "input {}: {:?}", self.input, self.error)
    }
}

impl std::error::Error for ConsensusFailure {}

/// Checks every input of `tx` with Bitcoin Core's consensus code under the
/// Taproot rules (`VERIFY_ALL_PRE_TAPROOT | VERIFY_TAPROOT`), given `spent`,
/// the outputs its inputs spend, in input order. All of them are passed:
/// without them libbitcoinconsensus skips the Taproot checks (BIP341
/// signatures commit to every spent amount and script).
///
/// # Errors
/// The first input Core rejects, with its reason.
///
/// # Panics
/// If `spent` has fewer outputs than `tx` has inputs.
pub fn consensus_verify(tx: &Transaction, spent: &[TxOut]) -> Result<(), ConsensusFailure> {
    assert!(
        spent.len() >= tx.input.len(),
        "{} inputs, {} spent outputs",
        tx.input.len(),
        spent.len()
    );
    let bytes = bitcoin::consensus::serialize(tx);
    let scripts: Vec<Vec<u8>> = spent.iter().map(|o| o.script_pubkey.to_bytes()).collect();
    let utxos: Vec<bitcoinconsensus::Utxo> = spent
        .iter()
        .zip(&scripts)
        .map(|(o, s)| bitcoinconsensus::Utxo {
            script_pubkey: s.as_ptr(),
            script_pubkey_len: u32::try_from(s.len()).unwrap(),
            value: i64::try_from(o.value.to_sat()).unwrap(),
        })
        .collect();
    let flags = bitcoinconsensus::VERIFY_ALL_PRE_TAPROOT | bitcoinconsensus::VERIFY_TAPROOT;
    for (input, (o, script)) in spent.iter().zip(&scripts).enumerate() {
        bitcoinconsensus::verify_with_flags(
            script,
            o.value.to_sat(),
            &bytes,
            Some(&utxos),
            input,
            flags,
        )
        .map_err(|error| ConsensusFailure { input, error })?;
    }
    Ok(())
}
