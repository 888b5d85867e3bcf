//! Each signer's own withdrawal policy: a TOML file the signer's operator
//! writes, evaluated on the transaction the signer parsed itself
//! ([`WithdrawalSummary`], from [`crate::withdrawal::review::review`]) and
//! never on what a coordinator or requester *says* the transaction does.
//!
//! # File format
//!
//! ```toml
//! version = 1
//! network = "regtest"            # bitcoin | testnet | testnet4 | signet | regtest
//!
//! # Who may ask this signer for signatures (identity keys, hex SEC1 P-256).
//! [[requester]]
//! label = "treasury-ops"
//! key = "031e18532fd4754c02f3041d9c75ceb33b83ffd81ac7ce4fe882ccb1c98bc5896e"
//! raw_messages = false           # may it get non-Bitcoin messages signed (domain-separated, see below)? default false
//!
//! # Where money may go. Every address must belong to `network`.
//! [[destination]]
//! label = "cold storage"
//! address = "bcrt1pj86axd9ctu0sgv8yh6ph8vhlg6f0g8a8837em9qnsx4fzug6xtxs58v992"
//!
//! [limits]
//! per_transaction_sat = 100_000_000     # max leaving the wallet in one transaction (fee included, change excluded)
//! rolling_window_hours = 24
//! rolling_window_sat = 500_000_000      # max leaving within the window, this transaction included
//! max_fee_sat = 50_000
//! max_fee_rate_sat_per_vb = 200         # an integer or a decimal with up to 3 places, e.g. 12.5
//! rolling_window_fee_sat = 100_000      # optional: most fee paid within the window, this one included
//!
//! [change]
//! require_own_address = true            # optional; must stay true (see below)
//!
//! # Optional; the values shown are the defaults.
//! [transaction]
//! versions = [2]                # transaction versions signed (each 1, 2 or 3)
//! max_lock_height = 0           # highest block-height nLockTime (0: no height lock)
//! max_lock_ahead_hours = 0      # a time nLockTime at most this far past the signer's clock
//! relative_locks = false        # BIP68 relative locks (nSequence) on inputs
//! allow_dust = false            # outputs below their dust threshold (P2TR: 330 sat)
//!
//! # Optional; the value shown is the default.
//! [request]
//! max_lifetime_hours = 24       # expires_at - created_at, at most 168
//! ```
//!
//! Every table refuses fields it does not know, so a misspelt setting is an
//! error rather than a silently ignored line. `version`, `network`, at least
//! one `[[requester]]` and the whole `[limits]` table are required;
//! `[[destination]]` may be absent (then only consolidations to the group's
//! own address pass), and so may `[change]`.
//!
//! A policy that does not parse refuses everything: there is no default
//! policy, and [`Policy::from_toml`] reports every problem as a
//! [`PolicyError`].
//!
//! # Rules
//!
//! [`Policy::evaluate`] checks, in this order, and stops at the first
//! [`PolicyRefusal`]:
//!
//! 1. [`Rule::Requester`]: the requester's identity key is listed.
//! 2. [`Rule::DestinationAllowlist`]: every output that is not change pays a
//!    listed address. Scripts without an address form are never allowed.
//! 3. [`Rule::Change`]: outputs marked as change (the summary's `is_change`,
//!    which [`review`](crate::withdrawal::review::review) sets only for the
//!    group's own script) pay one and the same Taproot address on the
//!    policy's network — a consistency check on the summary.
//! 4. [`Rule::PerTransactionLimit`]: the amount leaving the wallet
//!    ([`WithdrawalSummary::amount_leaving`]: every output that is not
//!    change, plus the fee) is at most `per_transaction_sat`.
//! 5. [`Rule::RollingWindowLimit`]: what this signer already released within
//!    the last `rolling_window_hours` (fees included), plus this
//!    transaction, is at most `rolling_window_sat`.
//! 6. [`Rule::FeeCap`]: the fee is at most `max_fee_sat`.
//! 7. [`Rule::FeeRateCap`]: the fee rate, in whole millisatoshi per vB
//!    ([`WithdrawalSummary::fee_rate_msat_per_vb`]), is at most
//!    `max_fee_rate_sat_per_vb × 1000`.
//! 8. [`Rule::RollingWindowFee`]: when `rolling_window_fee_sat` is set, the
//!    fees already released within the window plus this fee are at most it.
//! 9. [`Rule::TxVersion`]: the transaction's version is in `versions`
//!    (default `[2]`: what Bitcoin Core, BDK and Sparrow write; version 1
//!    turns BIP68 off, 3 is TRUC with its own relay rules, anything else is
//!    non-standard — none passes unless listed).
//! 10. [`Rule::LockTime`]: an enforced nLockTime (some input's nSequence is
//!     not final) is a height of at most `max_lock_height`, or a time at most
//!     `max_lock_ahead_hours` past the signer's clock. The default refuses
//!     every height lock: a transaction signed today must not become valid
//!     only at some far block. A signer that accepts Bitcoin Core's
//!     anti-fee-sniping locktime (the current height) raises the bound.
//! 11. [`Rule::RelativeLock`]: no input carries a BIP68 relative lock, unless
//!     `relative_locks = true`.
//! 12. [`Rule::Dust`]: no output is below its script's dust threshold
//!     (Bitcoin Core's 3 sat/vB rule: 330 sat for P2TR, 294 for P2WPKH),
//!     unless `allow_dust = true`.
//!
//! [`Policy::check_request_lifetime`] applies [`Rule::RequestLifetime`]: a
//! request may be valid for at most `[request] max_lifetime_hours` (default
//! 24, at most [`MAX_REQUEST_LIFETIME_HOURS`]).
//!
//! [`Policy::check_raw_message`] applies [`Rule::Requester`], then
//! [`Rule::RawMessages`] to requests to sign bytes that are not a Bitcoin
//! transaction the signer can read.
//!
//! What `raw_messages = true` grants, exactly: the group's BIP340 signature,
//! under its Taproot output key, on
//! [`raw_message_digest`](crate::withdrawal::request::raw_message_digest)
//! of the requester's bytes — a tagged hash under `kura/raw-message`. Never
//! on the bytes themselves, so never a signature valid for any transaction
//! (a BIP341 sighash is a hash under another tag); no limit, allowlist or
//! window applies to it, and nothing about it moves coins. A verifier must
//! compute the same digest to check such a signature.
//!
//! `[change] require_own_address` is reserved: it defaults to `true`, and
//! `false` is refused when the policy is read, because an output that is
//! neither an allowlisted destination nor change to the group's own address
//! is always refused — a setting that claimed otherwise would mislead.
//!
//! # Digest
//!
//! [`Policy::digest`] is SHA-256 of the tag `kura/v1/policy\0` and the parsed
//! policy as canonical JSON (sorted keys, requesters sorted by key,
//! destinations by address, addresses in their canonical form, the fee rate in
//! msat/vB). Comments, layout, the order of entries and the spelling of
//! numbers (`100_000` or `100000`, `20` or `20.0`) do not change it; any
//! change to what the policy allows does. Signers record it in their
//! approvals and audit entries.

use std::fmt;
use std::str::FromStr;

use bitcoin::address::{AddressType, NetworkUnchecked};
use bitcoin::{Address, Network, ScriptBuf};
use serde::de::{self, IgnoredAny, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use sha2::{Digest, Sha256};

use crate::format::write_canonical_json;
use crate::identity::IdentityPublicKey;
use crate::withdrawal::review::{Destination, OutputSummary, RelativeLock, WithdrawalSummary};

/// The policy file version this build reads.
pub const POLICY_VERSION: u64 = 1;

/// The domain-separation tag of [`Policy::digest`].
const DIGEST_TAG: &[u8] = b"kura/v1/policy\0";

/// How many hex digits of a requester key messages show.
const KEY_PREFIX_HEX: usize = 16;

/// Why a policy file was not accepted. A signer without a valid policy signs
/// nothing.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PolicyError {
    /// Not TOML, or TOML that does not fit the policy format (an unknown or
    /// misspelt field, a missing one, a value of the wrong type).
    #[error("policy file is not valid: {0}")]
    Parse(String),
    /// No `version` line.
    #[error("policy file has no `version`; start it with `version = {POLICY_VERSION}`")]
    MissingVersion,
    /// A version this build does not read.
    #[error("unsupported policy version {found}: this build reads version {POLICY_VERSION}; rewrite the policy in the version {POLICY_VERSION} format or upgrade Kura")]
    UnsupportedVersion {
        /// The `version` value in the file.
        found: String,
    },
    /// A `network` other than the ones Kura knows.
    #[error("unknown network `{0}`; use bitcoin, testnet, testnet4, signet or regtest")]
    UnknownNetwork(String),
    /// A requester or destination with an empty label.
    #[error("{entry} has an empty label; give every requester and destination a name people will recognise")]
    EmptyLabel {
        /// Which entry, e.g. `requester 2` (counted from 1).
        entry: String,
    },
    /// A label that would not display as itself (control, bidi or
    /// zero-width characters) or is too long.
    #[error("{entry}: {source}")]
    UnsafeLabel {
        /// Which entry, e.g. `requester 2` (counted from 1).
        entry: String,
        /// What is wrong with it.
        source: crate::display::TextError,
    },
    /// A policy that names nobody who may ask for signatures.
    #[error("policy has no [[requester]]; add at least one requester's identity key (a policy that names nobody would refuse everything)")]
    NoRequesters,
    /// A requester key that is not a hex SEC1 P-256 public key.
    #[error("requester `{label}`: key is not a hex SEC1 P-256 public key ({reason}); copy the key from the requester's identity file")]
    InvalidRequesterKey {
        /// The requester's label.
        label: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The same requester key listed twice.
    #[error(
        "requester key {key} is listed twice (as `{first}` and as `{second}`); keep one entry"
    )]
    DuplicateRequester {
        /// The key (hex, compressed).
        key: String,
        /// Label of the first entry.
        first: String,
        /// Label of the second entry.
        second: String,
    },
    /// A destination address that does not parse.
    #[error("destination `{label}`: `{address}` is not a Bitcoin address ({reason})")]
    InvalidAddress {
        /// The destination's label.
        label: String,
        /// The address as written.
        address: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A destination address of another network.
    #[error("destination `{label}`: {address} is not a {network} address; this policy is for {network}, so list only {network} addresses")]
    WrongNetwork {
        /// The destination's label.
        label: String,
        /// The address as written.
        address: String,
        /// The policy's network.
        network: &'static str,
    },
    /// The same destination listed twice.
    #[error(
        "destination {address} is listed twice (as `{first}` and as `{second}`); keep one entry"
    )]
    DuplicateDestination {
        /// The address (canonical form).
        address: String,
        /// Label of the first entry.
        first: String,
        /// Label of the second entry.
        second: String,
    },
    /// No `[limits]` table.
    #[error("policy has no [limits] table; add per_transaction_sat, rolling_window_hours, rolling_window_sat, max_fee_sat and max_fee_rate_sat_per_vb")]
    MissingLimits,
    /// A limit with a value that cannot work.
    #[error("invalid limit `{field}`: {reason}")]
    InvalidLimit {
        /// Which limit.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// `[change] require_own_address = false`.
    #[error("[change] require_own_address = false is not supported: every output must be an allowlisted destination or change to the group's own address; set it to true or remove the line")]
    ChangeMustBeOwn,
    /// The parsed policy could not be encoded for its digest (not expected).
    #[error("policy could not be encoded for its digest: {0}")]
    Encoding(String),
}

impl PolicyError {
    fn parse(e: &toml::de::Error) -> Self {
        PolicyError::Parse(crate::display::inert_bounded(
            e.to_string().trim_end(),
            2048,
        ))
    }
}

/// The rule a [`PolicyRefusal`] comes from. Displays in kebab-case
/// (`destination-allowlist`), the same form it serializes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Rule {
    /// The requester is not in the policy.
    Requester,
    /// An output pays somewhere not on the allowlist.
    DestinationAllowlist,
    /// Outputs marked as change do not all pay the group's own address.
    Change,
    /// More leaves the wallet than one transaction may send.
    PerTransactionLimit,
    /// More would leave within the rolling window than it allows.
    RollingWindowLimit,
    /// The fee is over the cap.
    FeeCap,
    /// The fee rate is over the cap.
    FeeRateCap,
    /// Raw (non-Bitcoin) message signing is off for the requester.
    RawMessages,
    /// The fees released within the rolling window would exceed its budget.
    RollingWindowFee,
    /// A transaction version the policy does not list.
    TxVersion,
    /// An absolute lock (nLockTime) beyond the policy's bound.
    LockTime,
    /// A BIP68 relative lock on an input.
    RelativeLock,
    /// An output below its dust threshold.
    Dust,
    /// A request valid for longer than the policy allows.
    RequestLifetime,
}

impl Rule {
    /// The kebab-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Rule::Requester => "requester",
            Rule::DestinationAllowlist => "destination-allowlist",
            Rule::Change => "change",
            Rule::PerTransactionLimit => "per-transaction-limit",
            Rule::RollingWindowLimit => "rolling-window-limit",
            Rule::FeeCap => "fee-cap",
            Rule::FeeRateCap => "fee-rate-cap",
            Rule::RawMessages => "raw-messages",
            Rule::RollingWindowFee => "rolling-window-fee",
            Rule::TxVersion => "tx-version",
            Rule::LockTime => "lock-time",
            Rule::RelativeLock => "relative-lock",
            Rule::Dust => "dust",
            Rule::RequestLifetime => "request-lifetime",
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A request the policy refuses: the rule, and a message naming the values
/// that broke it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("refused by policy rule `{rule}`: {message}")]
pub struct PolicyRefusal {
    /// The rule that refused.
    pub rule: Rule,
    /// What was wrong, with the offending values.
    pub message: String,
}

fn refuse(rule: Rule, message: String) -> PolicyRefusal {
    PolicyRefusal { rule, message }
}

/// Someone who may ask this signer for signatures.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Requester {
    label: String,
    key: IdentityPublicKey,
    raw_messages: bool,
}

impl Requester {
    /// The requester's name in the policy.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The requester's identity key.
    pub fn key(&self) -> &IdentityPublicKey {
        &self.key
    }

    /// Whether it may get raw (non-Bitcoin) messages signed.
    pub fn raw_messages(&self) -> bool {
        self.raw_messages
    }
}

/// An address money may be sent to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AllowedDestination {
    label: String,
    address: Address,
}

impl AllowedDestination {
    /// The destination's name in the policy.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The address, valid for the policy's network.
    pub fn address(&self) -> &Address {
        &self.address
    }
}

/// The amounts a policy allows, in satoshi (fee rate in msat/vB).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    per_transaction_sat: u64,
    rolling_window_hours: u64,
    rolling_window_sat: u64,
    max_fee_sat: u64,
    max_fee_rate_msat_per_vb: u64,
    rolling_window_fee_sat: Option<u64>,
}

impl Limits {
    /// Most fee that may be paid within the rolling window, if bounded
    /// separately (fees always count in `rolling_window_sat` too).
    pub fn rolling_window_fee_sat(&self) -> Option<u64> {
        self.rolling_window_fee_sat
    }

    /// Most that may leave the wallet in one transaction (outputs that are not change, plus the fee).
    pub fn per_transaction_sat(&self) -> u64 {
        self.per_transaction_sat
    }

    /// Length of the rolling window in hours.
    pub fn rolling_window_hours(&self) -> u64 {
        self.rolling_window_hours
    }

    /// Most that may leave within the rolling window, fees included.
    pub fn rolling_window_sat(&self) -> u64 {
        self.rolling_window_sat
    }

    /// Highest absolute fee.
    pub fn max_fee_sat(&self) -> u64 {
        self.max_fee_sat
    }

    /// Highest fee rate, in millisatoshi per vB.
    pub fn max_fee_rate_msat_per_vb(&self) -> u64 {
        self.max_fee_rate_msat_per_vb
    }
}

/// The largest policy file read, in bytes.
pub const MAX_POLICY_BYTES: usize = 1024 * 1024;

/// The longest `[request] max_lifetime_hours` a policy may set (7 days).
pub const MAX_REQUEST_LIFETIME_HOURS: u64 = 168;

/// The default `[request] max_lifetime_hours`.
pub const DEFAULT_REQUEST_LIFETIME_HOURS: u64 = 24;

/// What the policy allows of the transaction itself (the `[transaction]`
/// table; see the module docs for the defaults).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransactionRules {
    versions: Vec<i32>,
    max_lock_height: u32,
    max_lock_ahead_hours: u64,
    relative_locks: bool,
    allow_dust: bool,
}

impl Default for TransactionRules {
    fn default() -> Self {
        TransactionRules {
            versions: vec![2],
            max_lock_height: 0,
            max_lock_ahead_hours: 0,
            relative_locks: false,
            allow_dust: false,
        }
    }
}

impl TransactionRules {
    /// Transaction versions signed.
    pub fn versions(&self) -> &[i32] {
        &self.versions
    }

    /// Highest block-height nLockTime.
    pub fn max_lock_height(&self) -> u32 {
        self.max_lock_height
    }

    /// How far past the signer's clock a time nLockTime may be, in hours.
    pub fn max_lock_ahead_hours(&self) -> u64 {
        self.max_lock_ahead_hours
    }

    /// Whether BIP68 relative locks are allowed.
    pub fn relative_locks(&self) -> bool {
        self.relative_locks
    }

    /// Whether outputs below the dust threshold are allowed.
    pub fn allow_dust(&self) -> bool {
        self.allow_dust
    }
}

/// What this signer already released within the rolling window (from its
/// audit log), for [`Policy::evaluate`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Released {
    /// Satoshis that left the wallet, fees included.
    pub amount_sat: u64,
    /// Of which fees.
    pub fee_sat: u64,
}

impl Released {
    /// `amount_sat` released, no fee recorded separately.
    pub fn amount(amount_sat: u64) -> Self {
        Released {
            amount_sat,
            fee_sat: 0,
        }
    }
}

/// A signer's parsed and validated policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    network: Network,
    network_name: &'static str,
    requesters: Vec<Requester>,
    destinations: Vec<AllowedDestination>,
    limits: Limits,
    rolling_window_secs: u64,
    transaction: TransactionRules,
    max_request_lifetime_hours: u64,
    digest: [u8; 32],
    canonical: Vec<u8>,
}

// ---- The file as written -------------------------------------------------

/// First pass: only the version, so that a file of another version gets a
/// version error rather than complaints about fields it may legitimately have.
#[derive(Deserialize)]
struct VersionProbe {
    version: Option<toml::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    #[serde(rename = "version")]
    _version: IgnoredAny,
    network: String,
    #[serde(default)]
    requester: Vec<RequesterFile>,
    #[serde(default)]
    destination: Vec<DestinationFile>,
    limits: Option<LimitsFile>,
    change: Option<ChangeFile>,
    transaction: Option<TransactionFile>,
    request: Option<RequestFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TransactionFile {
    versions: Option<Vec<i64>>,
    max_lock_height: Option<u32>,
    max_lock_ahead_hours: Option<u64>,
    relative_locks: Option<bool>,
    allow_dust: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RequestFile {
    max_lifetime_hours: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RequesterFile {
    label: String,
    key: String,
    #[serde(default)]
    raw_messages: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DestinationFile {
    label: String,
    address: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitsFile {
    per_transaction_sat: u64,
    rolling_window_hours: u64,
    rolling_window_sat: u64,
    max_fee_sat: u64,
    #[serde(deserialize_with = "fee_rate_msat")]
    max_fee_rate_sat_per_vb: u64,
    #[serde(default)]
    rolling_window_fee_sat: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChangeFile {
    #[serde(default = "yes")]
    require_own_address: bool,
}

fn yes() -> bool {
    true
}

/// Largest msat value an `f64` holds exactly (2^53).
const MAX_EXACT_MSAT: f64 = 9_007_199_254_740_992.0;

/// Reads a fee rate in sat/vB (integer, or decimal with up to three places)
/// as an exact integer number of msat/vB.
fn fee_rate_msat<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    struct FeeRate;

    impl Visitor<'_> for FeeRate {
        type Value = u64;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(
                "a non-negative fee rate in sat/vB with at most three decimals, such as 20 or 12.5",
            )
        }

        fn visit_u64<E: de::Error>(self, v: u64) -> Result<u64, E> {
            v.checked_mul(1000)
                .ok_or_else(|| E::custom(format!("fee rate {v} sat/vB is too large")))
        }

        fn visit_i64<E: de::Error>(self, v: i64) -> Result<u64, E> {
            let v = u64::try_from(v).map_err(|_| {
                E::custom(format!(
                    "fee rate {v} sat/vB is negative; give the highest rate this signer accepts"
                ))
            })?;
            self.visit_u64(v)
        }

        fn visit_f64<E: de::Error>(self, v: f64) -> Result<u64, E> {
            if !v.is_finite() || v < 0.0 {
                return Err(E::custom(format!(
                    "fee rate {v} sat/vB is not a non-negative number"
                )));
            }
            let scaled = v * 1000.0;
            let rounded = scaled.round();
            if rounded >= MAX_EXACT_MSAT {
                return Err(E::custom(format!("fee rate {v} sat/vB is too large")));
            }
            // Decimal fractions are not exact in binary: allow the rounding
            // error of the multiplication, nothing more.
            if (scaled - rounded).abs() > rounded.max(1.0) * 1e-12 {
                return Err(E::custom(format!(
                    "fee rate {v} sat/vB has more than three decimals; round it to a thousandth of a sat/vB"
                )));
            }
            // In range and integral (checked above), so the cast is exact.
            Ok(rounded as u64)
        }
    }

    d.deserialize_any(FeeRate)
}

// ---- Canonical form, for the digest ---------------------------------------

#[derive(Serialize)]
struct CanonicalPolicy<'a> {
    version: u64,
    network: &'a str,
    requesters: Vec<CanonicalRequester<'a>>,
    destinations: Vec<CanonicalDestination<'a>>,
    limits: CanonicalLimits,
    change: CanonicalChange,
    transaction: CanonicalTransaction<'a>,
    request: CanonicalRequest,
}

#[derive(Serialize)]
struct CanonicalTransaction<'a> {
    allow_dust: bool,
    max_lock_ahead_hours: u64,
    max_lock_height: u32,
    relative_locks: bool,
    versions: &'a [i32],
}

#[derive(Serialize)]
struct CanonicalRequest {
    max_lifetime_hours: u64,
}

#[derive(Serialize)]
struct CanonicalRequester<'a> {
    key: String,
    label: &'a str,
    raw_messages: bool,
}

#[derive(Serialize)]
struct CanonicalDestination<'a> {
    address: String,
    label: &'a str,
}

#[derive(Serialize)]
struct CanonicalLimits {
    per_transaction_sat: u64,
    rolling_window_hours: u64,
    rolling_window_sat: u64,
    max_fee_sat: u64,
    max_fee_rate_msat_per_vb: u64,
    rolling_window_fee_sat: Option<u64>,
}

#[derive(Serialize)]
struct CanonicalChange {
    require_own_address: bool,
}

/// The policy as canonical JSON (sorted keys; see the module docs): what
/// [`Policy::digest`] hashes after its tag.
fn canonical_json(
    network_name: &str,
    requesters: &[Requester],
    destinations: &[AllowedDestination],
    limits: &Limits,
    transaction: &TransactionRules,
    max_request_lifetime_hours: u64,
) -> Result<Vec<u8>, PolicyError> {
    let mut reqs: Vec<CanonicalRequester<'_>> = requesters
        .iter()
        .map(|r| CanonicalRequester {
            key: r.key.to_string(),
            label: &r.label,
            raw_messages: r.raw_messages,
        })
        .collect();
    reqs.sort_by(|a, b| a.key.cmp(&b.key));
    let mut dests: Vec<CanonicalDestination<'_>> = destinations
        .iter()
        .map(|d| CanonicalDestination {
            address: d.address.to_string(),
            label: &d.label,
        })
        .collect();
    dests.sort_by(|a, b| a.address.cmp(&b.address));
    let canonical = CanonicalPolicy {
        version: POLICY_VERSION,
        network: network_name,
        requesters: reqs,
        destinations: dests,
        limits: CanonicalLimits {
            per_transaction_sat: limits.per_transaction_sat,
            rolling_window_hours: limits.rolling_window_hours,
            rolling_window_sat: limits.rolling_window_sat,
            max_fee_sat: limits.max_fee_sat,
            max_fee_rate_msat_per_vb: limits.max_fee_rate_msat_per_vb,
            rolling_window_fee_sat: limits.rolling_window_fee_sat,
        },
        change: CanonicalChange {
            require_own_address: true,
        },
        transaction: CanonicalTransaction {
            allow_dust: transaction.allow_dust,
            max_lock_ahead_hours: transaction.max_lock_ahead_hours,
            max_lock_height: transaction.max_lock_height,
            relative_locks: transaction.relative_locks,
            versions: &transaction.versions,
        },
        request: CanonicalRequest {
            max_lifetime_hours: max_request_lifetime_hours,
        },
    };
    let mut bytes = Vec::new();
    write_canonical_json(&mut bytes, &canonical)
        .map_err(|e| PolicyError::Encoding(e.to_string()))?;
    Ok(bytes)
}

// ---- Parsing and validation ------------------------------------------------

fn parse_network(name: &str) -> Result<(Network, &'static str), PolicyError> {
    match name {
        "bitcoin" => Ok((Network::Bitcoin, "bitcoin")),
        "testnet" => Ok((Network::Testnet, "testnet")),
        "testnet4" => Ok((Network::Testnet4, "testnet4")),
        "signet" => Ok((Network::Signet, "signet")),
        "regtest" => Ok((Network::Regtest, "regtest")),
        other => Err(PolicyError::UnknownNetwork(other.to_owned())),
    }
}

fn checked_label(label: String, kind: &str, index: usize) -> Result<String, PolicyError> {
    if label.trim().is_empty() {
        return Err(PolicyError::EmptyLabel {
            entry: format!("{kind} {}", index.saturating_add(1)),
        });
    }
    crate::display::check_label(&label).map_err(|e| PolicyError::UnsafeLabel {
        entry: format!("{kind} {}", index.saturating_add(1)),
        source: e,
    })?;
    Ok(label)
}

fn version_text(value: &toml::Value) -> String {
    match value {
        toml::Value::Integer(i) => i.to_string(),
        toml::Value::Float(f) => f.to_string(),
        toml::Value::String(s) => format!("{s:?}"),
        toml::Value::Boolean(b) => b.to_string(),
        other => format!("(a {})", other.type_str()),
    }
}

fn parse_requesters(entries: Vec<RequesterFile>) -> Result<Vec<Requester>, PolicyError> {
    if entries.is_empty() {
        return Err(PolicyError::NoRequesters);
    }
    let mut requesters: Vec<Requester> = Vec::with_capacity(entries.len());
    for (i, entry) in entries.into_iter().enumerate() {
        let label = checked_label(entry.label, "requester", i)?;
        let bytes = hex::decode(&entry.key).map_err(|e| PolicyError::InvalidRequesterKey {
            label: label.clone(),
            reason: format!("not hex: {e}"),
        })?;
        let key =
            IdentityPublicKey::from_sec1(&bytes).map_err(|e| PolicyError::InvalidRequesterKey {
                label: label.clone(),
                reason: e.to_string(),
            })?;
        if let Some(first) = requesters.iter().find(|r| r.key == key) {
            return Err(PolicyError::DuplicateRequester {
                key: key.to_string(),
                first: first.label.clone(),
                second: label,
            });
        }
        requesters.push(Requester {
            label,
            key,
            raw_messages: entry.raw_messages,
        });
    }
    Ok(requesters)
}

fn parse_destinations(
    entries: Vec<DestinationFile>,
    network: Network,
    network_name: &'static str,
) -> Result<Vec<AllowedDestination>, PolicyError> {
    let mut destinations: Vec<AllowedDestination> = Vec::with_capacity(entries.len());
    for (i, entry) in entries.into_iter().enumerate() {
        let label = checked_label(entry.label, "destination", i)?;
        let unchecked = Address::<NetworkUnchecked>::from_str(&entry.address).map_err(|e| {
            PolicyError::InvalidAddress {
                label: label.clone(),
                address: entry.address.clone(),
                reason: e.to_string(),
            }
        })?;
        let address =
            unchecked
                .require_network(network)
                .map_err(|_| PolicyError::WrongNetwork {
                    label: label.clone(),
                    address: entry.address.clone(),
                    network: network_name,
                })?;
        if let Some(first) = destinations
            .iter()
            .find(|d| d.address.script_pubkey() == address.script_pubkey())
        {
            return Err(PolicyError::DuplicateDestination {
                address: address.to_string(),
                first: first.label.clone(),
                second: label,
            });
        }
        destinations.push(AllowedDestination { label, address });
    }
    Ok(destinations)
}

fn parse_limits(file: Option<LimitsFile>) -> Result<(Limits, u64), PolicyError> {
    let l = file.ok_or(PolicyError::MissingLimits)?;
    if l.rolling_window_hours == 0 {
        return Err(PolicyError::InvalidLimit {
            field: "rolling_window_hours",
            reason: "a window of 0 hours limits nothing; give its length in hours, e.g. 24"
                .to_owned(),
        });
    }
    let secs =
        l.rolling_window_hours
            .checked_mul(3600)
            .ok_or_else(|| PolicyError::InvalidLimit {
                field: "rolling_window_hours",
                reason: format!("{} hours is too long", l.rolling_window_hours),
            })?;
    Ok((
        Limits {
            per_transaction_sat: l.per_transaction_sat,
            rolling_window_hours: l.rolling_window_hours,
            rolling_window_sat: l.rolling_window_sat,
            max_fee_sat: l.max_fee_sat,
            max_fee_rate_msat_per_vb: l.max_fee_rate_sat_per_vb,
            rolling_window_fee_sat: l.rolling_window_fee_sat,
        },
        secs,
    ))
}

fn parse_transaction(file: Option<TransactionFile>) -> Result<TransactionRules, PolicyError> {
    let defaults = TransactionRules::default();
    let Some(t) = file else {
        return Ok(defaults);
    };
    let versions = match t.versions {
        None => defaults.versions,
        Some(list) => {
            if list.is_empty() {
                return Err(PolicyError::InvalidLimit {
                    field: "versions",
                    reason: "an empty list signs nothing; write versions = [2]".to_owned(),
                });
            }
            let mut versions = Vec::with_capacity(list.len());
            for v in list {
                match i32::try_from(v) {
                    Ok(v @ 1..=3) if !versions.contains(&v) => versions.push(v),
                    Ok(v @ 1..=3) => {
                        return Err(PolicyError::InvalidLimit {
                            field: "versions",
                            reason: format!("version {v} is listed twice"),
                        })
                    }
                    _ => {
                        return Err(PolicyError::InvalidLimit {
                            field: "versions",
                            reason: format!(
                                "version {v} is not 1, 2 or 3 (other versions are non-standard)"
                            ),
                        })
                    }
                }
            }
            versions.sort_unstable();
            versions
        }
    };
    let max_lock_height = t.max_lock_height.unwrap_or(defaults.max_lock_height);
    if max_lock_height >= bitcoin::absolute::LOCK_TIME_THRESHOLD {
        return Err(PolicyError::InvalidLimit {
            field: "max_lock_height",
            reason: format!(
                "{max_lock_height} is not a block height (heights are below {})",
                bitcoin::absolute::LOCK_TIME_THRESHOLD
            ),
        });
    }
    let max_lock_ahead_hours = t
        .max_lock_ahead_hours
        .unwrap_or(defaults.max_lock_ahead_hours);
    if max_lock_ahead_hours.checked_mul(3600).is_none() {
        return Err(PolicyError::InvalidLimit {
            field: "max_lock_ahead_hours",
            reason: format!("{max_lock_ahead_hours} hours is too long"),
        });
    }
    Ok(TransactionRules {
        versions,
        max_lock_height,
        max_lock_ahead_hours,
        relative_locks: t.relative_locks.unwrap_or(defaults.relative_locks),
        allow_dust: t.allow_dust.unwrap_or(defaults.allow_dust),
    })
}

fn parse_request(file: Option<RequestFile>) -> Result<u64, PolicyError> {
    let hours = file
        .and_then(|r| r.max_lifetime_hours)
        .unwrap_or(DEFAULT_REQUEST_LIFETIME_HOURS);
    if hours == 0 || hours > MAX_REQUEST_LIFETIME_HOURS {
        return Err(PolicyError::InvalidLimit {
            field: "max_lifetime_hours",
            reason: format!(
                "{hours} hours: a request may live 1 to {MAX_REQUEST_LIFETIME_HOURS} hours"
            ),
        });
    }
    Ok(hours)
}

/// What no policy can allow, whatever its settings: a transaction version
/// outside 1–3 ([`Rule::TxVersion`] accepts only those) and an output that
/// is not change and pays a script without an address form
/// ([`Rule::DestinationAllowlist`] never lists one). A requester's tool
/// checks this before asking anyone to sign.
///
/// # Errors
/// The [`PolicyRefusal`] every signer would return.
pub fn check_any_policy(summary: &WithdrawalSummary) -> Result<(), PolicyRefusal> {
    if !(1..=3).contains(&summary.version) {
        return Err(refuse(
            Rule::TxVersion,
            format!(
                "the transaction is version {}; no policy can allow a version other than 1, 2 or 3",
                summary.version
            ),
        ));
    }
    for output in summary.outputs.iter().filter(|o| !o.is_change) {
        if let Destination::NonStandard { script } = &output.destination {
            return Err(refuse(
                Rule::DestinationAllowlist,
                format!(
                    "output {} pays a non-standard script {}, which no policy allows",
                    output.index,
                    script.to_hex_string()
                ),
            ));
        }
    }
    Ok(())
}

/// `12500` msat → `12.5`.
fn sat_per_vb(msat: u64) -> String {
    let whole = msat / 1000;
    let frac = msat % 1000;
    if frac == 0 {
        whole.to_string()
    } else {
        let digits = format!("{frac:03}");
        format!("{whole}.{}", digits.trim_end_matches('0'))
    }
}

fn key_prefix(key: &IdentityPublicKey) -> String {
    let hex = key.to_string();
    match hex.get(..KEY_PREFIX_HEX) {
        Some(prefix) => format!("{prefix}…"),
        None => hex,
    }
}

impl Policy {
    /// Parses and validates a policy file.
    ///
    /// # Errors
    /// The [`PolicyError`] naming the first problem found: TOML syntax, an
    /// unknown or missing field, a version other than 1, an unknown network,
    /// an empty label, no requester, a requester key that does not parse, a
    /// destination that does not parse or belongs to another network,
    /// duplicate requesters or destinations, missing or unusable limits, or
    /// `require_own_address = false`.
    pub fn from_toml(text: &str) -> Result<Policy, PolicyError> {
        if text.len() > MAX_POLICY_BYTES {
            return Err(PolicyError::Parse(format!(
                "the policy is {} bytes, over the {MAX_POLICY_BYTES}-byte limit",
                text.len()
            )));
        }
        let probe: VersionProbe = toml::from_str(text).map_err(|e| PolicyError::parse(&e))?;
        match probe.version {
            None => return Err(PolicyError::MissingVersion),
            Some(toml::Value::Integer(v)) if u64::try_from(v) == Ok(POLICY_VERSION) => {}
            Some(other) => {
                return Err(PolicyError::UnsupportedVersion {
                    found: version_text(&other),
                })
            }
        }
        let file: PolicyFile = toml::from_str(text).map_err(|e| PolicyError::parse(&e))?;
        let (network, network_name) = parse_network(&file.network)?;
        let requesters = parse_requesters(file.requester)?;
        let destinations = parse_destinations(file.destination, network, network_name)?;
        let (limits, rolling_window_secs) = parse_limits(file.limits)?;
        if let Some(ChangeFile {
            require_own_address: false,
        }) = file.change
        {
            return Err(PolicyError::ChangeMustBeOwn);
        }
        let transaction = parse_transaction(file.transaction)?;
        let max_request_lifetime_hours = parse_request(file.request)?;
        let canonical = canonical_json(
            network_name,
            &requesters,
            &destinations,
            &limits,
            &transaction,
            max_request_lifetime_hours,
        )?;
        let mut h = Sha256::new();
        h.update(DIGEST_TAG);
        h.update(&canonical);
        let digest = h.finalize().into();
        Ok(Policy {
            network,
            network_name,
            requesters,
            destinations,
            limits,
            rolling_window_secs,
            transaction,
            max_request_lifetime_hours,
            digest,
            canonical,
        })
    }

    /// SHA-256 of the canonical encoding of the parsed policy (see the module
    /// docs): unchanged by comments and layout, changed by any change in what
    /// the policy allows.
    pub fn digest(&self) -> [u8; 32] {
        self.digest
    }

    /// The policy as the canonical JSON its digest covers: every setting,
    /// in one form whatever the file's layout. Compare two policies' forms
    /// to see everything that differs.
    pub fn canonical_json(&self) -> &[u8] {
        &self.canonical
    }

    /// The network whose addresses the policy lists.
    pub fn network(&self) -> Network {
        self.network
    }

    /// The requesters, in file order.
    pub fn requesters(&self) -> &[Requester] {
        &self.requesters
    }

    /// The allowlisted destinations, in file order.
    pub fn destinations(&self) -> &[AllowedDestination] {
        &self.destinations
    }

    /// The limits.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The rolling window's length in seconds.
    pub fn rolling_window_secs(&self) -> u64 {
        self.rolling_window_secs
    }

    /// What the policy allows of the transaction itself.
    pub fn transaction(&self) -> &TransactionRules {
        &self.transaction
    }

    /// The longest a request may be valid, in seconds.
    pub fn max_request_lifetime_secs(&self) -> u64 {
        self.max_request_lifetime_hours.saturating_mul(3600)
    }

    /// Checks a request's validity period: `expires_at - created_at` is at
    /// most `[request] max_lifetime_hours`.
    ///
    /// # Errors
    /// [`Rule::RequestLifetime`].
    pub fn check_request_lifetime(
        &self,
        created_at: u64,
        expires_at: u64,
    ) -> Result<(), PolicyRefusal> {
        let lifetime = expires_at.saturating_sub(created_at);
        if lifetime > self.max_request_lifetime_secs() {
            return Err(refuse(
                Rule::RequestLifetime,
                format!(
                    "the request is valid for {lifetime} s (until {}), longer than this signer's maximum of {} h; \
                     ask for a request with a shorter expiry",
                    crate::display::utc_time(expires_at),
                    self.max_request_lifetime_hours
                ),
            ));
        }
        Ok(())
    }

    /// The requester with identity key `key`, if the policy lists it.
    pub fn requester(&self, key: &IdentityPublicKey) -> Option<&Requester> {
        self.requesters.iter().find(|r| r.key == *key)
    }

    /// Whether `key` is a listed requester with `raw_messages = true`.
    pub fn allows_raw_messages(&self, key: &IdentityPublicKey) -> bool {
        self.requester(key).is_some_and(|r| r.raw_messages)
    }

    /// The allowlisted destination whose address is `address` (any case), if
    /// any. An address of another network is never allowlisted.
    pub fn destination(&self, address: &str) -> Option<&AllowedDestination> {
        let script = Address::<NetworkUnchecked>::from_str(address)
            .ok()?
            .require_network(self.network)
            .ok()?
            .script_pubkey();
        self.destinations
            .iter()
            .find(|d| d.address.script_pubkey() == script)
    }

    /// Checks that `requester` may get raw (non-Bitcoin) messages signed.
    ///
    /// # Errors
    /// [`Rule::Requester`] when the requester is not listed,
    /// [`Rule::RawMessages`] when it is listed without `raw_messages = true`.
    pub fn check_raw_message(&self, requester: &IdentityPublicKey) -> Result<(), PolicyRefusal> {
        let r = self.authorised(requester)?;
        if r.raw_messages {
            return Ok(());
        }
        Err(refuse(
            Rule::RawMessages,
            format!(
                "raw message signing is off for requester `{}` ({}): blind signing is how Bybit was robbed; \
                 send a withdrawal PSBT the signer can read, or set raw_messages = true for this requester \
                 only if it really must sign opaque bytes",
                r.label,
                key_prefix(requester)
            ),
        ))
    }

    /// Evaluates a withdrawal this signer reviewed itself, asked for by
    /// `requester`, given that this signer already released
    /// `released_in_window_sat` within the rolling window (from its audit
    /// log). Only the parsed transaction counts, never request metadata.
    ///
    /// # Errors
    /// The [`PolicyRefusal`] of the first rule broken, in the order of the
    /// module docs.
    pub fn evaluate(
        &self,
        summary: &WithdrawalSummary,
        requester: &IdentityPublicKey,
        released: Released,
        now: u64,
    ) -> Result<(), PolicyRefusal> {
        let released_in_window_sat = released.amount_sat;
        self.authorised(requester)?;
        for output in summary.outputs.iter().filter(|o| !o.is_change) {
            self.check_destination(output)?;
        }
        self.check_change(&summary.outputs)?;

        let limits = &self.limits;
        let leaving = summary.amount_leaving().to_sat();
        if leaving > limits.per_transaction_sat {
            return Err(refuse(
                Rule::PerTransactionLimit,
                format!(
                    "this transaction sends {leaving} sat out of the wallet, over the per-transaction limit of {} sat",
                    limits.per_transaction_sat
                ),
            ));
        }
        let total = released_in_window_sat.saturating_add(leaving);
        if total > limits.rolling_window_sat {
            return Err(refuse(
                Rule::RollingWindowLimit,
                format!(
                    "this transaction sends {leaving} sat and {released_in_window_sat} sat were already released \
                     in the last {} h: {total} sat in all, over the rolling limit of {} sat",
                    limits.rolling_window_hours, limits.rolling_window_sat
                ),
            ));
        }
        let fee = summary.fee.to_sat();
        if fee > limits.max_fee_sat {
            return Err(refuse(
                Rule::FeeCap,
                format!(
                    "fee {fee} sat is over this signer's cap of {} sat",
                    limits.max_fee_sat
                ),
            ));
        }
        let rate = summary.fee_rate_msat_per_vb();
        if rate > limits.max_fee_rate_msat_per_vb {
            return Err(refuse(
                Rule::FeeRateCap,
                format!(
                    "fee rate {} sat/vB ({fee} sat over {} vB) is over this signer's cap of {} sat/vB",
                    sat_per_vb(rate),
                    summary.vsize,
                    sat_per_vb(limits.max_fee_rate_msat_per_vb)
                ),
            ));
        }
        if let Some(budget) = limits.rolling_window_fee_sat {
            let fees = released.fee_sat.saturating_add(fee);
            if fees > budget {
                return Err(refuse(
                    Rule::RollingWindowFee,
                    format!(
                        "this transaction pays {fee} sat in fees and {} sat of fees were already released \
                         in the last {} h: {fees} sat in all, over the fee budget of {budget} sat",
                        released.fee_sat, limits.rolling_window_hours
                    ),
                ));
            }
        }
        self.check_transaction(summary, now)
    }

    /// Version, nLockTime, nSequence and dust (rules 9–12).
    fn check_transaction(
        &self,
        summary: &WithdrawalSummary,
        now: u64,
    ) -> Result<(), PolicyRefusal> {
        let rules = &self.transaction;
        if !rules.versions.contains(&summary.version) {
            return Err(refuse(
                Rule::TxVersion,
                format!(
                    "the transaction is version {}; this signer signs only version(s) {:?} \
                     (list it under [transaction] versions if it must)",
                    summary.version, rules.versions
                ),
            ));
        }
        if summary.lock_time_enforced() {
            match summary.lock_time {
                bitcoin::absolute::LockTime::Blocks(h)
                    if h.to_consensus_u32() > rules.max_lock_height =>
                {
                    return Err(refuse(
                        Rule::LockTime,
                        format!(
                            "nLockTime {} makes the transaction invalid before block {}; this signer allows \
                             height locks up to {} ([transaction] max_lock_height)",
                            h.to_consensus_u32(),
                            u64::from(h.to_consensus_u32()) + 1,
                            rules.max_lock_height
                        ),
                    ))
                }
                bitcoin::absolute::LockTime::Seconds(t) => {
                    let t = u64::from(t.to_consensus_u32());
                    let bound = now.saturating_add(rules.max_lock_ahead_hours.saturating_mul(3600));
                    if t > bound {
                        return Err(refuse(
                            Rule::LockTime,
                            format!(
                                "nLockTime {t} makes the transaction invalid before {}; this signer allows \
                                 time locks at most {} h past its clock ([transaction] max_lock_ahead_hours)",
                                crate::display::utc_time(t),
                                rules.max_lock_ahead_hours
                            ),
                        ));
                    }
                }
                bitcoin::absolute::LockTime::Blocks(_) => {}
            }
        }
        if !rules.relative_locks {
            for (i, input) in summary.inputs.iter().enumerate() {
                let lock = input.relative_lock(summary.version);
                if lock != RelativeLock::None {
                    return Err(refuse(
                        Rule::RelativeLock,
                        format!(
                            "input {i} has nSequence 0x{:08x}, a BIP68 relative lock ({}); this signer refuses \
                             relative locks (set [transaction] relative_locks = true to allow them)",
                            input.sequence.0,
                            match lock {
                                RelativeLock::Blocks(b) => format!("{b} blocks"),
                                RelativeLock::Intervals(n) => format!("{} s", u64::from(n) * 512),
                                RelativeLock::None => String::new(),
                            }
                        ),
                    ));
                }
            }
        }
        if !rules.allow_dust {
            for o in &summary.outputs {
                let threshold = o.script_pubkey.minimal_non_dust();
                if o.amount < threshold {
                    return Err(refuse(
                        Rule::Dust,
                        format!(
                            "output {} pays {} sat, below its dust threshold of {} sat; nodes do not relay it",
                            o.index,
                            o.amount.to_sat(),
                            threshold.to_sat()
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    fn authorised(&self, key: &IdentityPublicKey) -> Result<&Requester, PolicyRefusal> {
        self.requester(key).ok_or_else(|| {
            refuse(
                Rule::Requester,
                format!(
                    "requester {} is not in this signer's policy; add it as a [[requester]] if it may ask for signatures",
                    key_prefix(key)
                ),
            )
        })
    }

    fn check_destination(&self, output: &OutputSummary) -> Result<(), PolicyRefusal> {
        match &output.destination {
            Destination::NonStandard { script } => Err(refuse(
                Rule::DestinationAllowlist,
                format!(
                    "output {} pays a non-standard script {}, which no policy allows",
                    output.index,
                    script.to_hex_string()
                ),
            )),
            Destination::Address(address) => match self.destination(&address.to_string()) {
                Some(_) => Ok(()),
                None => Err(refuse(
                    Rule::DestinationAllowlist,
                    format!(
                        "destination {address} (output {}, {} sat) is not on the allowlist; \
                         add it as a [[destination]] to this signer's policy if money may go there",
                        output.index,
                        output.amount.to_sat()
                    ),
                )),
            },
        }
    }

    /// Outputs marked as change must all pay one Taproot address of this
    /// network (the group's own). `review` only marks the group's own script,
    /// so this refuses only summaries that were altered or built by hand.
    fn check_change(&self, outputs: &[OutputSummary]) -> Result<(), PolicyRefusal> {
        let mut first: Option<(usize, ScriptBuf, String)> = None;
        for output in outputs.iter().filter(|o| o.is_change) {
            let address = match &output.destination {
                Destination::NonStandard { script } => {
                    return Err(refuse(
                        Rule::Change,
                        format!(
                            "output {} is marked as change but pays a non-standard script {}; \
                             change goes only to the group's own Taproot address",
                            output.index,
                            script.to_hex_string()
                        ),
                    ))
                }
                Destination::Address(a) => a.to_string(),
            };
            let script = Address::<NetworkUnchecked>::from_str(&address)
                .ok()
                .and_then(|a| a.require_network(self.network).ok())
                .filter(|a| a.address_type() == Some(AddressType::P2tr))
                .map(|a| a.script_pubkey())
                .ok_or_else(|| {
                    refuse(
                        Rule::Change,
                        format!(
                            "output {} is marked as change but pays {address}, which is not a {} Taproot address \
                             like the group's own",
                            output.index, self.network_name
                        ),
                    )
                })?;
            match &first {
                None => first = Some((output.index, script, address)),
                Some((index, first_script, first_address)) if *first_script != script => {
                    return Err(refuse(
                        Rule::Change,
                        format!(
                            "outputs {index} and {} are both marked as change but pay different addresses \
                             ({first_address} and {address}); change goes only to the group's own address",
                            output.index
                        ),
                    ))
                }
                Some(_) => {}
            }
        }
        Ok(())
    }
}
