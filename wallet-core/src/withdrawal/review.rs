//! A signer's own reading of a withdrawal PSBT (BIP174 v0 with BIP371
//! Taproot fields): which coins it spends, where the money goes, the fee, and
//! the exact BIP341 key-path sighash of every input — computed here, from the
//! transaction, never taken from anyone.

use std::collections::BTreeSet;
use std::fmt;

use bitcoin::psbt::Psbt;
use bitcoin::sighash::{Prevouts, SighashCache, TapSighashType};
use bitcoin::TapSighash;

use crate::digest::SigningDigest;
use bitcoin::{
    absolute, Address, Amount, Network, OutPoint, ScriptBuf, Sequence, TxOut, Txid, Witness,
};

use crate::hd::{Chain, ChildKeys, ChildPath, GroupXpub};

/// Why a PSBT is not something this signer will sign.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReviewError {
    /// Not a PSBT.
    #[error("{0}")]
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
    /// A `non_witness_utxo` that is not the transaction the input spends
    /// from, or whose output disagrees with `witness_utxo`.
    #[error("input {input}: non_witness_utxo {reason}; the input is refused (a wallet that sets both must set them consistently)")]
    NonWitnessUtxo {
        /// Input index.
        input: usize,
        /// What disagrees.
        reason: String,
    },
    /// An amount above the 21 million bitcoin that can exist.
    #[error("{what} is {amount}, more than the 21,000,000 BTC that can exist (MAX_MONEY)")]
    AboveMaxMoney {
        /// Which amount (`input 0`, `output 1`, `the inputs' total`).
        what: String,
        /// The amount.
        amount: Amount,
    },
    /// An input whose declared derivation (BIP371 `tap_key_origins` with
    /// this group's fingerprint) is not one this signer derives, or does not
    /// give the script it spends.
    #[error("input {input}: {reason}; the input is refused (the signer derives every key itself)")]
    Derivation {
        /// Input index.
        input: usize,
        /// What is wrong, in the signer's words.
        reason: String,
    },
    /// An output declared as this group's (a `tap_key_origins` with its
    /// fingerprint) whose script is not the one its path derives.
    #[error("output {output}: {reason}; the transaction is refused (a change address the signer cannot derive is a lie)")]
    OutputDerivation {
        /// Output index.
        output: usize,
        /// What is wrong.
        reason: String,
    },
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
    Address(Address),
    /// A script with no address form (shown as hex).
    NonStandard {
        /// The script.
        script: ScriptBuf,
    },
}

impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Destination::Address(a) => write!(f, "{a}"),
            Destination::NonStandard { script } => {
                write!(f, "non-standard script {}", script.to_hex_string())
            }
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
    /// Whether it is change: it pays the group key itself, or a change-chain
    /// child (`m/1/i`) whose script this signer derived from the declared
    /// path. Everything else leaves the wallet and meets the policy.
    pub is_change: bool,
    /// The declared path of an output this signer derived as the group's
    /// (`None` for an output not declared as the group's, and for the
    /// group key itself).
    pub path: Option<ChildPath>,
    /// The script it pays (for the dust threshold).
    pub script_pubkey: ScriptBuf,
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
    pub sighash: TapSighash,
    /// Its nSequence (RBF signalling, BIP68 relative lock).
    pub sequence: Sequence,
    /// The group's key this input spends, derived here from its declared
    /// path (the group key itself, path `m`, when it declares none).
    pub key: ChildKeys,
}

/// What an input's nSequence means for a transaction of `version`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RelativeLock {
    /// No BIP68 relative lock (disabled, a version below 2, or zero).
    None,
    /// The coin must have this many confirmations.
    Blocks(u16),
    /// The coin must be this many 512-second intervals old.
    Intervals(u16),
}

impl InputSummary {
    /// The BIP68 relative lock this input's nSequence imposes in a
    /// transaction of `version` (BIP68 applies from version 2 on).
    pub fn relative_lock(&self, version: i32) -> RelativeLock {
        if version < 2 {
            return RelativeLock::None;
        }
        match self.sequence.to_relative_lock_time() {
            Some(bitcoin::relative::LockTime::Blocks(h)) if h.value() > 0 => {
                RelativeLock::Blocks(h.value())
            }
            Some(bitcoin::relative::LockTime::Time(t)) if t.value() > 0 => {
                RelativeLock::Intervals(t.value())
            }
            _ => RelativeLock::None,
        }
    }

    fn describe_sequence(&self, version: i32) -> String {
        let n = self.sequence.0;
        let mut text = format!("nSequence 0x{n:08x}: ");
        text.push_str(if self.sequence == Sequence::MAX {
            "final"
        } else if self.sequence.is_rbf() {
            "replaceable (BIP125 RBF)"
        } else {
            "not replaceable"
        });
        match self.relative_lock(version) {
            RelativeLock::None => text.push_str(", no relative lock"),
            RelativeLock::Blocks(b) => text.push_str(&format!(
                ", RELATIVE LOCK: valid only once the coin has {b} confirmations"
            )),
            RelativeLock::Intervals(i) => text.push_str(&format!(
                ", RELATIVE LOCK: valid only once the coin is {} s (about {} h) old",
                u64::from(i) * 512,
                u64::from(i) * 512 / 3600
            )),
        }
        text
    }
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
    /// The transaction's version (BIP68 relative locks need 2 or more).
    pub version: i32,
    /// Its nLockTime (block height below 500,000,000, else Unix time).
    pub lock_time: absolute::LockTime,
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

    /// Everything this transaction takes out of the wallet: the outputs that
    /// are not change plus the fee (what limits count).
    pub fn amount_leaving(&self) -> Amount {
        self.amount_paid()
            .checked_add(self.fee)
            .unwrap_or(Amount::MAX)
    }

    /// Sum of the outputs that pay outside the wallet (not change), fee
    /// excluded.
    pub fn amount_paid(&self) -> Amount {
        self.outputs
            .iter()
            .filter(|o| !o.is_change)
            .fold(Amount::ZERO, |acc, o| {
                acc.checked_add(o.amount).unwrap_or(Amount::MAX)
            })
    }

    /// Whether nLockTime is enforced: it is unless every input's nSequence
    /// is final (0xffffffff).
    pub fn lock_time_enforced(&self) -> bool {
        self.inputs.iter().any(|i| i.sequence != Sequence::MAX)
    }

    /// The nLockTime as a person reads it.
    pub fn describe_lock_time(&self) -> String {
        let base = match self.lock_time {
            absolute::LockTime::Blocks(h) if h.to_consensus_u32() == 0 => {
                return "nLockTime 0: none".to_owned()
            }
            absolute::LockTime::Blocks(h) => format!(
                "nLockTime {0}: LOCKED until block height {0} (valid from block {1})",
                h.to_consensus_u32(),
                u64::from(h.to_consensus_u32()) + 1
            ),
            absolute::LockTime::Seconds(t) => format!(
                "nLockTime {}: LOCKED until {} (median time past)",
                t.to_consensus_u32(),
                crate::display::utc_time(u64::from(t.to_consensus_u32()))
            ),
        };
        if self.lock_time_enforced() {
            base
        } else {
            format!("{base} — not enforced, every input's nSequence is final")
        }
    }

    /// What each input's FROST session signs (its sighash), input by input.
    pub fn sighashes(&self) -> Vec<SigningDigest> {
        self.inputs.iter().map(|i| i.sighash.into()).collect()
    }
}

impl fmt::Display for WithdrawalSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "transaction {}", self.txid)?;
        writeln!(
            f,
            "  version {}{}",
            self.version,
            if self.version == 2 {
                ""
            } else {
                " (UNUSUAL: wallets write version 2)"
            }
        )?;
        writeln!(f, "  {}", self.describe_lock_time())?;
        for (i, input) in self.inputs.iter().enumerate() {
            writeln!(
                f,
                "  input {i}: {} ({}) from {}, {}",
                input.outpoint,
                input.amount,
                describe_path(input.key.path()),
                input.describe_sequence(self.version)
            )?;
        }
        for o in &self.outputs {
            let change = match (&o.path, o.is_change) {
                (Some(p), true) => format!("  (change back to this wallet, {p})"),
                (None, true) => "  (change back to this wallet, the group key)".to_owned(),
                (Some(p), false) => format!(
                    "  (this wallet's address {p}, not change — a deposit address, or a change index past {}: counted as leaving)",
                    crate::hd::MAX_LOOKAHEAD
                ),
                (None, false) => String::new(),
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
        writeln!(
            f,
            "  fee {} ({:.2} sat/vB over {} vB)",
            self.fee,
            self.fee_rate_sat_per_vb(),
            self.vsize
        )?;
        writeln!(
            f,
            "  leaving the wallet: {} (paid out {} + fee {})",
            self.amount_leaving(),
            self.amount_paid(),
            self.fee
        )?;
        write!(
            f,
            "  input amounts are the requester's claim (witness_utxo); the signature commits to them (BIP341), \
             so a false amount makes the transaction invalid rather than spending more"
        )
    }
}

/// Parses the base64 PSBT a withdrawal request carries (whitespace
/// tolerated; see [`crate::psbt::decode`] for every form a file may take).
///
/// # Errors
/// [`ReviewError::Malformed`] with the [`crate::psbt::PsbtError`]'s message:
/// empty, too large, truncated, version 2, or not a PSBT.
pub fn parse_psbt(base64: &str) -> Result<Psbt, ReviewError> {
    crate::psbt::decode_base64(base64.as_bytes()).map_err(|e| ReviewError::Malformed(e.to_string()))
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

/// Reviews a PSBT as a signer of the group with extended key `xpub` on
/// `network`: every input must spend a key of the group — the child its
/// BIP371 `tap_key_origins` declares (non-hardened, derived here, its BIP86
/// script equal to the spent one) or the group key itself — with its
/// `witness_utxo` present; only SIGHASH_DEFAULT/ALL are accepted, and every
/// input's key-path sighash is computed here with `Prevouts::All`. An output
/// is change only when its script is the group key's, or the change-chain
/// child its declared path derives to at an index below
/// [`crate::hd::MAX_LOOKAHEAD`].
///
/// # Errors
/// The [`ReviewError`] naming the first problem.
pub fn review(
    psbt: &Psbt,
    xpub: &GroupXpub,
    network: Network,
) -> Result<WithdrawalSummary, ReviewError> {
    let tx = &psbt.unsigned_tx;
    if tx.input.is_empty() {
        return Err(ReviewError::NoInputs);
    }
    if tx.output.is_empty() {
        return Err(ReviewError::NoOutputs);
    }
    let own_script = xpub.root().script_pubkey();
    let mut keys = Vec::with_capacity(tx.input.len());
    let mut prevouts: Vec<TxOut> = Vec::with_capacity(tx.input.len());
    let mut types = Vec::with_capacity(tx.input.len());
    let mut seen = BTreeSet::new();
    for (i, (txin, input)) in tx.input.iter().zip(&psbt.inputs).enumerate() {
        let utxo = input
            .witness_utxo
            .as_ref()
            .ok_or(ReviewError::MissingWitnessUtxo { input: i })?;
        keys.push(input_key(i, input, utxo, xpub)?);
        if !seen.insert(txin.previous_output) {
            return Err(ReviewError::DuplicateInput {
                input: i,
                outpoint: txin.previous_output.to_string(),
            });
        }
        check_non_witness_utxo(i, txin.previous_output, input, utxo)?;
        if utxo.value > Amount::MAX_MONEY {
            return Err(ReviewError::AboveMaxMoney {
                what: format!("input {i}"),
                amount: utxo.value,
            });
        }
        types.push(sighash_type(input.sighash_type, i)?);
        prevouts.push(utxo.clone());
    }
    let mut cache = SighashCache::new(tx);
    let mut inputs = Vec::with_capacity(tx.input.len());
    let mut total_in = Amount::ZERO;
    for (i, (((txin, utxo), ty), key)) in tx
        .input
        .iter()
        .zip(&prevouts)
        .zip(&types)
        .zip(keys)
        .enumerate()
    {
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
            sighash,
            sequence: txin.sequence,
            key,
        });
    }
    let mut outputs = Vec::with_capacity(tx.output.len());
    let mut total_out = Amount::ZERO;
    for (index, (out, declared)) in tx.output.iter().zip(&psbt.outputs).enumerate() {
        let path = output_path(index, declared, &out.script_pubkey, xpub)?;
        if out.value > Amount::MAX_MONEY {
            return Err(ReviewError::AboveMaxMoney {
                what: format!("output {index}"),
                amount: out.value,
            });
        }
        total_out = total_out
            .checked_add(out.value)
            .ok_or(ReviewError::AmountOverflow)?;
        outputs.push(OutputSummary {
            index,
            destination: destination(&out.script_pubkey, network),
            amount: out.value,
            // A change index beyond what any wallet looks ahead to is an
            // address nobody would find again: counted as leaving.
            is_change: out.script_pubkey == own_script
                || path.as_ref().is_some_and(|p| {
                    p.index_on(Chain::Change)
                        .is_some_and(|i| i < crate::hd::MAX_LOOKAHEAD)
                }),
            path,
            script_pubkey: out.script_pubkey.clone(),
        });
    }
    for (what, amount) in [
        ("the inputs' total", total_in),
        ("the outputs' total", total_out),
    ] {
        if amount > Amount::MAX_MONEY {
            return Err(ReviewError::AboveMaxMoney {
                what: what.to_owned(),
                amount,
            });
        }
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
        version: tx.version.0,
        lock_time: tx.lock_time,
    })
}

fn describe_path(path: &ChildPath) -> String {
    if path.is_root() {
        "the group key".to_owned()
    } else {
        format!("key {path}")
    }
}

/// The entries of `origins` under this group's fingerprint.
fn own_origins<'a>(
    origins: &'a std::collections::BTreeMap<
        bitcoin::XOnlyPublicKey,
        (Vec<bitcoin::TapLeafHash>, bitcoin::bip32::KeySource),
    >,
    xpub: &GroupXpub,
) -> Vec<(
    &'a bitcoin::XOnlyPublicKey,
    &'a [bitcoin::TapLeafHash],
    &'a bitcoin::bip32::DerivationPath,
)> {
    let fingerprint = xpub.fingerprint();
    origins
        .iter()
        .filter(|(_, (_, (fp, _)))| *fp == fingerprint)
        .map(|(key, (leaves, (_, path)))| (key, leaves.as_slice(), path))
        .collect()
}

/// The group key an input spends: the child its declared path derives to
/// (checked against the declared key, internal key and spent script), or
/// the group key itself when it declares none.
fn input_key(
    input: usize,
    psbt_input: &bitcoin::psbt::Input,
    utxo: &TxOut,
    xpub: &GroupXpub,
) -> Result<ChildKeys, ReviewError> {
    let bad = |reason: String| ReviewError::Derivation { input, reason };
    let key = match own_origins(&psbt_input.tap_key_origins, xpub).as_slice() {
        [] => xpub
            .derive(&ChildPath::root())
            .map_err(|e| bad(e.to_string()))?,
        [(declared, leaves, path)] => {
            if !leaves.is_empty() {
                return Err(bad(
                    "its derivation names script leaves; Kura signs key-path spends only".into(),
                ));
            }
            let path = ChildPath::from_bip32(path).map_err(|e| bad(e.to_string()))?;
            let key = xpub.derive(&path).map_err(|e| bad(e.to_string()))?;
            if key.taproot().internal_key() != **declared {
                return Err(bad(format!(
                    "it declares key {declared} at {path}, but {path} derives {}",
                    key.taproot().internal_key()
                )));
            }
            key
        }
        _ => {
            return Err(bad(
                "it declares more than one path under this group's fingerprint".into(),
            ))
        }
    };
    if let Some(internal) = psbt_input.tap_internal_key {
        if internal != key.taproot().internal_key() {
            return Err(bad(format!(
                "its tap_internal_key {internal} is not the key of {}",
                key.path()
            )));
        }
    }
    if utxo.script_pubkey != key.taproot().script_pubkey() {
        if key.path().is_root() {
            return Err(ReviewError::ForeignInput {
                input,
                script: utxo.script_pubkey.to_hex_string(),
            });
        }
        return Err(bad(format!(
            "it spends script {}, but the path it declares, {}, derives script {}",
            utxo.script_pubkey.to_hex_string(),
            key.path(),
            key.taproot().script_pubkey().to_hex_string()
        )));
    }
    Ok(key)
}

/// The declared path of an output that claims to be the group's, once
/// checked: its script must be the one the path derives.
fn output_path(
    output: usize,
    declared: &bitcoin::psbt::Output,
    script: &ScriptBuf,
    xpub: &GroupXpub,
) -> Result<Option<ChildPath>, ReviewError> {
    let bad = |reason: String| ReviewError::OutputDerivation { output, reason };
    match own_origins(&declared.tap_key_origins, xpub).as_slice() {
        [] => Ok(None),
        [(key, leaves, path)] => {
            if !leaves.is_empty() {
                return Err(bad("its derivation names script leaves".into()));
            }
            let path = ChildPath::from_bip32(path).map_err(|e| bad(e.to_string()))?;
            let child = xpub.derive(&path).map_err(|e| bad(e.to_string()))?;
            if child.taproot().internal_key() != **key {
                return Err(bad(format!(
                    "it declares key {key} at {path}, but {path} derives {}",
                    child.taproot().internal_key()
                )));
            }
            if declared
                .tap_internal_key
                .is_some_and(|k| k != child.taproot().internal_key())
            {
                return Err(bad(format!(
                    "its tap_internal_key is not the key of {path}"
                )));
            }
            if *script != child.taproot().script_pubkey() {
                return Err(bad(format!(
                    "it pays script {}, but the path it declares, {path}, derives script {}",
                    script.to_hex_string(),
                    child.taproot().script_pubkey().to_hex_string()
                )));
            }
            Ok((!path.is_root()).then_some(path))
        }
        _ => Err(bad(
            "it declares more than one path under this group's fingerprint".into(),
        )),
    }
}

/// A `non_witness_utxo`, when present, must be the transaction `outpoint`
/// spends from (it hashes to its txid) and its output must be `witness_utxo`.
fn check_non_witness_utxo(
    input: usize,
    outpoint: OutPoint,
    psbt_input: &bitcoin::psbt::Input,
    witness_utxo: &TxOut,
) -> Result<(), ReviewError> {
    let Some(prev) = &psbt_input.non_witness_utxo else {
        return Ok(());
    };
    let bad = |reason: String| ReviewError::NonWitnessUtxo { input, reason };
    let txid = prev.compute_txid();
    if txid != outpoint.txid {
        return Err(bad(format!(
            "is transaction {txid}, but the input spends from {}",
            outpoint.txid
        )));
    }
    let out = usize::try_from(outpoint.vout)
        .ok()
        .and_then(|v| prev.output.get(v))
        .ok_or_else(|| {
            bad(format!(
                "has {} outputs, the input spends output {}",
                prev.output.len(),
                outpoint.vout
            ))
        })?;
    if out.value != witness_utxo.value {
        return Err(bad(format!(
            "says the coin is {}, witness_utxo says {}",
            out.value, witness_utxo.value
        )));
    }
    if out.script_pubkey != witness_utxo.script_pubkey {
        return Err(bad(format!(
            "says the coin pays script {}, witness_utxo says {}",
            out.script_pubkey.to_hex_string(),
            witness_utxo.script_pubkey.to_hex_string()
        )));
    }
    Ok(())
}

fn destination(script: &ScriptBuf, network: Network) -> Destination {
    match Address::from_script(script, network) {
        Ok(a) => Destination::Address(a),
        Err(_) => Destination::NonStandard {
            script: script.clone(),
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
