//! A signer's own reading of a withdrawal PSBT (BIP174 v0 with BIP371
//! Taproot fields): which coins it spends, where the money goes, the fee, and
//! the exact BIP341 key-path sighash of every input — computed here, from the
//! transaction, never taken from anyone.

use std::collections::BTreeSet;
use std::fmt;

use bitcoin::hashes::Hash;
use bitcoin::psbt::Psbt;
use bitcoin::sighash::{Prevouts, SighashCache, TapSighashType};
use bitcoin::{Address, Amount, Network, OutPoint, ScriptBuf, TxOut, Txid, Witness};

use crate::taproot::TaprootKeys;

/// Why a PSBT is not something this signer will sign.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReviewError {
    /// Not a PSBT.
    #[error("not a valid PSBT: {0}")]
    Malformed(String),
    /// The PSBT spends nothing.
    #[error("the transaction has no inputs")]
    NoInputs,
    /// The PSBT pays nothing.
    #[error("the transaction has no outputs")]
    NoOutputs,
    /// An input without the output it spends.
    #[error("input {input} carries no witness_utxo; the signer needs the spent output (amount and script) to compute the sighash")]
    MissingWitnessUtxo {
        /// Input index.
        input: usize,
    },
    /// An input that does not spend the group's coins.
    #[error("input {input} spends script {script}, not this group's output key; Kura signs only its own coins")]
    ForeignInput {
        /// Input index.
        input: usize,
        /// Hex of the spent script.
        script: String,
    },
    /// The same coin spent twice.
    #[error("input {input} spends {outpoint} a second time")]
    DuplicateInput {
        /// Input index.
        input: usize,
        /// The outpoint.
        outpoint: String,
    },
    /// A sighash type other than DEFAULT or ALL.
    #[error("input {input} asks for sighash type {sighash}; only SIGHASH_DEFAULT and SIGHASH_ALL are signed (others let the outputs change after signing)")]
    UnsupportedSighash {
        /// Input index.
        input: usize,
        /// The requested type.
        sighash: String,
    },
    /// Outputs worth more than the inputs.
    #[error("outputs ({outputs}) exceed inputs ({inputs})")]
    NegativeFee {
        /// Total in.
        inputs: Amount,
        /// Total out.
        outputs: Amount,
    },
    /// An amount sum that overflows.
    #[error("amounts overflow")]
    AmountOverflow,
    /// The sighash could not be computed.
    #[error("sighash of input {input} could not be computed: {reason}")]
    Sighash {
        /// Input index.
        input: usize,
        /// Why.
        reason: String,
    },
}

/// Where an output pays.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Destination {
    /// A standard address on the wallet's network.
    Address(String),
    /// A script with no address form (shown as hex).
    NonStandard {
        /// Hex of the script.
        script: String,
    },
}

impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Destination::Address(a) => f.write_str(a),
            Destination::NonStandard { script } => write!(f, "non-standard script {script}"),
        }
    }
}

/// One output as the signer sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutputSummary {
    /// Output index.
    pub index: usize,
    /// Where it pays.
    pub destination: Destination,
    /// How much.
    pub amount: Amount,
    /// Whether it pays back to the group's own address.
    pub is_change: bool,
}

/// One input as the signer sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InputSummary {
    /// The coin spent.
    pub outpoint: OutPoint,
    /// Its amount (from `witness_utxo`, committed to by the sighash).
    pub amount: Amount,
    /// The sighash type this input is signed with.
    pub sighash_type: TapSighashType,
    /// The BIP341 key-path sighash this signer computed.
    pub sighash: [u8; 32],
}

/// Everything a signer shows a person and checks against policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WithdrawalSummary {
    /// The transaction id (unchanged by signing: Taproot witnesses are not in it).
    pub txid: Txid,
    /// Inputs in order.
    pub inputs: Vec<InputSummary>,
    /// Outputs in order.
    pub outputs: Vec<OutputSummary>,
    /// Sum of the inputs.
    pub total_in: Amount,
    /// Sum of the outputs.
    pub total_out: Amount,
    /// `total_in - total_out`.
    pub fee: Amount,
    /// Virtual size of the transaction once signed.
    pub vsize: u64,
}

impl WithdrawalSummary {
    /// Fee rate in sat/vB, rounded up to a thousandth.
    pub fn fee_rate_sat_per_vb(&self) -> f64 {
        (self.fee.to_sat() as f64) / (self.vsize.max(1) as f64)
    }

    /// Fee rate in millisatoshi per vB (exact integer, for policy checks).
    pub fn fee_rate_msat_per_vb(&self) -> u64 {
        self.fee.to_sat().saturating_mul(1000) / self.vsize.max(1)
    }

    /// Sum of the outputs that leave the wallet (not change).
    pub fn amount_leaving(&self) -> Amount {
        self.outputs
            .iter()
            .filter(|o| !o.is_change)
            .fold(Amount::ZERO, |acc, o| {
                acc.checked_add(o.amount).unwrap_or(Amount::MAX)
            })
    }

    /// The sighashes, input by input.
    pub fn sighashes(&self) -> Vec<[u8; 32]> {
        self.inputs.iter().map(|i| i.sighash).collect()
    }
}

impl fmt::Display for WithdrawalSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "transaction {}", self.txid)?;
        for (i, input) in self.inputs.iter().enumerate() {
            writeln!(f, "  input {i}: {} ({})", input.outpoint, input.amount)?;
        }
        for o in &self.outputs {
            let change = if o.is_change {
                "  (change back to this wallet)"
            } else {
                ""
            };
            writeln!(
                f,
                "  output {}: {} to {}{change}",
                o.index, o.amount, o.destination
            )?;
        }
        writeln!(
            f,
            "  total in {}, total out {}",
            self.total_in, self.total_out
        )?;
        write!(
            f,
            "  fee {} ({:.2} sat/vB over {} vB)",
            self.fee,
            self.fee_rate_sat_per_vb(),
            self.vsize
        )
    }
}

/// Parses a base64 PSBT.
///
/// # Errors
/// [`ReviewError::Malformed`].
pub fn parse_psbt(base64: &str) -> Result<Psbt, ReviewError> {
    base64
        .trim()
        .parse::<Psbt>()
        .map_err(|e| ReviewError::Malformed(e.to_string()))
}

fn sighash_type(
    psbt_type: Option<bitcoin::psbt::PsbtSighashType>,
    input: usize,
) -> Result<TapSighashType, ReviewError> {
    let Some(t) = psbt_type else {
        return Ok(TapSighashType::Default);
    };
    match t.taproot_hash_ty() {
        Ok(ty @ (TapSighashType::Default | TapSighashType::All)) => Ok(ty),
        Ok(other) => Err(ReviewError::UnsupportedSighash {
            input,
            sighash: other.to_string(),
        }),
        Err(_) => Err(ReviewError::UnsupportedSighash {
            input,
            sighash: t.to_string(),
        }),
    }
}

/// Reviews a PSBT as a signer of the group with Taproot keys `keys` on
/// `network`: every input must spend the group's output key (with its
/// `witness_utxo` present), only SIGHASH_DEFAULT/ALL are accepted, and every
/// input's key-path sighash is computed here with `Prevouts::All`.
///
/// # Errors
/// The [`ReviewError`] naming the first problem.
pub fn review(
    psbt: &Psbt,
    keys: &TaprootKeys,
    network: Network,
) -> Result<WithdrawalSummary, ReviewError> {
    let tx = &psbt.unsigned_tx;
    if tx.input.is_empty() {
        return Err(ReviewError::NoInputs);
    }
    if tx.output.is_empty() {
        return Err(ReviewError::NoOutputs);
    }
    let own_script = keys.script_pubkey();
    let mut prevouts: Vec<TxOut> = Vec::with_capacity(tx.input.len());
    let mut types = Vec::with_capacity(tx.input.len());
    let mut seen = BTreeSet::new();
    for (i, (txin, input)) in tx.input.iter().zip(&psbt.inputs).enumerate() {
        let utxo = input
            .witness_utxo
            .as_ref()
            .ok_or(ReviewError::MissingWitnessUtxo { input: i })?;
        if utxo.script_pubkey != own_script {
            return Err(ReviewError::ForeignInput {
                input: i,
                script: utxo.script_pubkey.to_hex_string(),
            });
        }
        if !seen.insert(txin.previous_output) {
            return Err(ReviewError::DuplicateInput {
                input: i,
                outpoint: txin.previous_output.to_string(),
            });
        }
        types.push(sighash_type(input.sighash_type, i)?);
        prevouts.push(utxo.clone());
    }
    let mut cache = SighashCache::new(tx);
    let mut inputs = Vec::with_capacity(tx.input.len());
    let mut total_in = Amount::ZERO;
    for (i, ((txin, utxo), ty)) in tx.input.iter().zip(&prevouts).zip(&types).enumerate() {
        let sighash = cache
            .taproot_key_spend_signature_hash(i, &Prevouts::All(&prevouts), *ty)
            .map_err(|e| ReviewError::Sighash {
                input: i,
                reason: e.to_string(),
            })?;
        total_in = total_in
            .checked_add(utxo.value)
            .ok_or(ReviewError::AmountOverflow)?;
        inputs.push(InputSummary {
            outpoint: txin.previous_output,
            amount: utxo.value,
            sighash_type: *ty,
            sighash: sighash.to_byte_array(),
        });
    }
    let mut outputs = Vec::with_capacity(tx.output.len());
    let mut total_out = Amount::ZERO;
    for (index, out) in tx.output.iter().enumerate() {
        total_out = total_out
            .checked_add(out.value)
            .ok_or(ReviewError::AmountOverflow)?;
        outputs.push(OutputSummary {
            index,
            destination: destination(&out.script_pubkey, network),
            amount: out.value,
            is_change: out.script_pubkey == own_script,
        });
    }
    let fee = total_in
        .checked_sub(total_out)
        .ok_or(ReviewError::NegativeFee {
            inputs: total_in,
            outputs: total_out,
        })?;
    Ok(WithdrawalSummary {
        txid: tx.compute_txid(),
        inputs,
        outputs,
        total_in,
        total_out,
        fee,
        vsize: signed_vsize(psbt, &types),
    })
}

fn destination(script: &ScriptBuf, network: Network) -> Destination {
    match Address::from_script(script, network) {
        Ok(a) => Destination::Address(a.to_string()),
        Err(_) => Destination::NonStandard {
            script: script.to_hex_string(),
        },
    }
}

/// The virtual size of the transaction with a key-path signature on every
/// input (64 bytes, or 65 with an explicit SIGHASH_ALL byte).
fn signed_vsize(psbt: &Psbt, types: &[TapSighashType]) -> u64 {
    let mut tx = psbt.unsigned_tx.clone();
    for (txin, ty) in tx.input.iter_mut().zip(types) {
        let len = if *ty == TapSighashType::Default {
            64
        } else {
            65
        };
        txin.witness = Witness::from_slice(&[vec![0u8; len]]);
    }
    tx.vsize() as u64
}
