//! The canonical form of a parsed policy and its digest (see "Digest" in the
//! module docs of [`crate::policy`]): canonical JSON of what the policy
//! allows, whatever the file's layout, hashed under a tag.
//!
//! The bytes are a contract: installed keystores pin the digest, and the
//! known-answer vectors in `test-vectors/known-answer/policy/` fail on any
//! changed byte.

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::limits::LimitsTable;
use super::{
    AllowedDestination, AutoApproval, Limits, PolicyError, Requester, TransactionRules,
    POLICY_VERSION,
};
use crate::format::write_canonical_json;

/// The domain-separation tag of [`Policy::digest`](super::Policy::digest).
const DIGEST_TAG: &[u8] = b"kura/v1/policy\0";

#[derive(Serialize)]
struct CanonicalPolicy<'a> {
    version: u64,
    network: &'a str,
    requesters: Vec<CanonicalRequester<'a>>,
    destinations: Vec<CanonicalDestination<'a>>,
    limits: &'a LimitsTable,
    change: CanonicalChange,
    transaction: CanonicalTransaction<'a>,
    request: CanonicalRequest,
    #[serde(skip_serializing_if = "Option::is_none")]
    auto_approve: Option<CanonicalAutoApprove>,
}

#[derive(Serialize)]
struct CanonicalAutoApprove {
    destinations: Vec<String>,
    max_amount_sat: u64,
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
struct CanonicalChange {
    require_own_address: bool,
}

/// The policy as canonical JSON (sorted keys; see the module docs): what
/// [`Policy::digest`](super::Policy::digest) hashes after its tag.
pub(super) fn canonical_json(
    network_name: &str,
    requesters: &[Requester],
    destinations: &[AllowedDestination],
    limits: &Limits,
    transaction: &TransactionRules,
    max_request_lifetime_hours: u64,
    auto_approve: Option<&AutoApproval>,
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
        limits: limits.table(),
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
        auto_approve: auto_approve.map(|a| {
            let mut destinations: Vec<String> =
                a.destinations.iter().map(|d| d.to_string()).collect();
            destinations.sort();
            CanonicalAutoApprove {
                destinations,
                max_amount_sat: a.max_amount_sat,
            }
        }),
    };
    let mut bytes = Vec::new();
    write_canonical_json(&mut bytes, &canonical)
        .map_err(|e| PolicyError::Encoding(e.to_string()))?;
    Ok(bytes)
}

/// SHA-256 of [`DIGEST_TAG`] and the canonical JSON.
pub(super) fn digest(canonical: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(DIGEST_TAG);
    h.update(canonical);
    h.finalize().into()
}
