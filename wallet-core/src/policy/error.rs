//! Why a policy file was not accepted.

use super::POLICY_VERSION;

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
    pub(super) fn parse(e: &toml::de::Error) -> Self {
        PolicyError::Parse(crate::display::inert_bounded(
            e.to_string().trim_end(),
            2048,
        ))
    }
}
