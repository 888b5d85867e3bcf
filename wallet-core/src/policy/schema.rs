//! The policy file as written (the TOML tables, read with serde, every one
//! refusing unknown fields) and its validation into the parsed types:
//! requesters, destinations, `[change]`, `[transaction]` and `[request]`.
//! The `[limits]` table is read and validated in [`super::limits`].

use std::str::FromStr;

use bitcoin::address::NetworkUnchecked;
use bitcoin::{Address, Network};
use serde::de::IgnoredAny;
use serde::Deserialize;

use super::limits::LimitsTable;
use super::{
    PolicyError, DEFAULT_REQUEST_LIFETIME_HOURS, MAX_POLICY_BYTES, MAX_REQUEST_LIFETIME_HOURS,
    POLICY_VERSION,
};
use crate::identity::IdentityPublicKey;

/// Someone who may ask this signer for signatures.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Requester {
    pub(super) label: String,
    pub(super) key: IdentityPublicKey,
    pub(super) raw_messages: bool,
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
    pub(super) label: String,
    pub(super) address: Address,
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

/// What the policy allows of the transaction itself (the `[transaction]`
/// table; see the module docs for the defaults).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransactionRules {
    pub(super) versions: Vec<i32>,
    pub(super) max_lock_height: u32,
    pub(super) max_lock_ahead_hours: u64,
    pub(super) relative_locks: bool,
    pub(super) allow_dust: bool,
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

// ---- The file as written -------------------------------------------------

/// Only the version, read first (see [`read`]).
#[derive(Deserialize)]
struct VersionProbe {
    version: Option<toml::Value>,
}

/// The whole file, one field per table (`[limits]` is defined in
/// [`super::limits`]).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PolicyFile {
    #[serde(rename = "version")]
    _version: IgnoredAny,
    pub(super) network: String,
    #[serde(default)]
    pub(super) requester: Vec<RequesterFile>,
    #[serde(default)]
    pub(super) destination: Vec<DestinationFile>,
    pub(super) limits: Option<LimitsTable>,
    pub(super) change: Option<ChangeFile>,
    pub(super) transaction: Option<TransactionFile>,
    pub(super) request: Option<RequestFile>,
    pub(super) auto_approve: Option<AutoApproveFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AutoApproveFile {
    destinations: Vec<String>,
    max_amount_sat: u64,
}

/// What a signer daemon may approve without a person (the `[auto_approve]`
/// table): withdrawals whose every output that is not change pays one of
/// the named allowlisted destinations, for at most `max_amount_sat` in all.
/// Everything else the policy allows still waits for a person.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AutoApproval {
    pub(super) destinations: Vec<Address>,
    pub(super) max_amount_sat: u64,
}

impl AutoApproval {
    /// The destinations (allowlisted addresses) it covers.
    pub fn destinations(&self) -> &[Address] {
        &self.destinations
    }

    /// The most it sends in one withdrawal, change not counted.
    pub fn max_amount_sat(&self) -> u64 {
        self.max_amount_sat
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TransactionFile {
    versions: Option<Vec<i64>>,
    max_lock_height: Option<u32>,
    max_lock_ahead_hours: Option<u64>,
    relative_locks: Option<bool>,
    allow_dust: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RequestFile {
    max_lifetime_hours: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RequesterFile {
    label: String,
    key: String,
    #[serde(default)]
    raw_messages: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DestinationFile {
    label: String,
    address: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ChangeFile {
    #[serde(default = "yes")]
    require_own_address: bool,
}

fn yes() -> bool {
    true
}

// ---- Parsing and validation ------------------------------------------------

/// Reads the file: its size, then its version alone (so that a file of
/// another version gets a version error rather than complaints about fields
/// it may legitimately have), then every table.
pub(super) fn read(text: &str) -> Result<PolicyFile, PolicyError> {
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
    toml::from_str(text).map_err(|e| PolicyError::parse(&e))
}

pub(super) fn parse_network(name: &str) -> Result<(Network, &'static str), PolicyError> {
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

pub(super) fn parse_requesters(entries: Vec<RequesterFile>) -> Result<Vec<Requester>, PolicyError> {
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

pub(super) fn parse_destinations(
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

/// `[change]`: `require_own_address` may only be `true` (see the module docs).
pub(super) fn parse_change(file: Option<ChangeFile>) -> Result<(), PolicyError> {
    match file {
        Some(ChangeFile {
            require_own_address: false,
        }) => Err(PolicyError::ChangeMustBeOwn),
        _ => Ok(()),
    }
}

pub(super) fn parse_transaction(
    file: Option<TransactionFile>,
) -> Result<TransactionRules, PolicyError> {
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

pub(super) fn parse_auto_approve(
    file: Option<AutoApproveFile>,
    destinations: &[AllowedDestination],
) -> Result<Option<AutoApproval>, PolicyError> {
    let Some(file) = file else {
        return Ok(None);
    };
    let invalid = |reason: String| PolicyError::InvalidLimit {
        field: "auto_approve",
        reason,
    };
    if file.destinations.is_empty() {
        return Err(invalid(
            "name at least one [[destination]] label, or remove the table".into(),
        ));
    }
    if file.max_amount_sat == 0 {
        return Err(invalid(
            "max_amount_sat = 0 approves nothing; remove the table instead".into(),
        ));
    }
    let mut addresses: Vec<Address> = Vec::with_capacity(file.destinations.len());
    for label in &file.destinations {
        let found = destinations
            .iter()
            .find(|d| &d.label == label)
            .ok_or_else(|| {
                invalid(format!(
                    "`{}` is not the label of a [[destination]]",
                    crate::display::inert_bounded(label, crate::display::MAX_LABEL_CHARS)
                ))
            })?;
        if !addresses.contains(&found.address) {
            addresses.push(found.address.clone());
        }
    }
    Ok(Some(AutoApproval {
        destinations: addresses,
        max_amount_sat: file.max_amount_sat,
    }))
}

pub(super) fn parse_request(file: Option<RequestFile>) -> Result<u64, PolicyError> {
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
