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
//!
//! # Optional: what a signer daemon (`kura signer run`) approves without a
//! # person. Absent: every withdrawal waits for a person.
//! [auto_approve]
//! destinations = ["cold storage"]       # [[destination]] labels; every non-change output must pay one
//! max_amount_sat = 1_000_000            # their sum, per withdrawal
//! ```
//!
//! `[auto_approve]` narrows, never widens: a withdrawal is approved alone
//! only if it passes every rule below **and**
//! [`Policy::auto_approves`] it. Without the table nothing is approved
//! without a person, and its absence leaves the digest of every policy
//! written before it unchanged.
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
//!
//! # Where things are
//!
//! - `mod.rs`: [`Policy`], [`Policy::from_toml`] (the parsing pipeline, table
//!   by table) and the accessors.
//! - `schema.rs`: the file as written (serde structs, `deny_unknown_fields`)
//!   and its validation into [`Requester`], [`AllowedDestination`] and
//!   [`TransactionRules`].
//! - `limits.rs`: the `[limits]` table, one struct whose fields are read
//!   from the file, written into the canonical JSON and checked (rules 4–8)
//!   — [`Limits`].
//! - `digest.rs`: the canonical JSON and the tagged digest.
//! - `rules.rs`: [`Rule`], [`PolicyRefusal`], [`Released`],
//!   [`Policy::evaluate`] and the other checks, [`check_any_policy`].
//! - `error.rs`: [`PolicyError`].
//!
//! # Adding a rule
//!
//! 1. **Declare the setting** where it belongs:
//!    - a limit (an amount, a fee, the window): one field of `LimitsTable` in
//!      `limits.rs`, whose serde attributes say how `[limits]` spells it and
//!      how the canonical JSON does; plus its accessor on [`Limits`];
//!    - a `[transaction]` setting: a field of `TransactionFile` (as written)
//!      and of [`TransactionRules`] (parsed, with an accessor) in
//!      `schema.rs`, and of `CanonicalTransaction` in `digest.rs`;
//!    - a new table: its `…File` struct and a field of `PolicyFile`, a
//!      `parse_…` function called from [`Policy::from_toml`], a field of
//!      [`Policy`] with an accessor, and a `Canonical…` struct in `digest.rs`.
//! 2. **Parse and validate it**: serde checks the type and refuses unknown
//!    fields; a value that cannot work (out of range, a zero that limits
//!    nothing) is a [`PolicyError::InvalidLimit`] naming the field, from
//!    `Limits::new` or the table's `parse_…`, never a silent default.
//! 3. **Keep the digest of existing policies (digest-stability rule).** A new
//!    setting is optional (a required one would refuse every installed
//!    file), and when it is absent the canonical JSON, hence the digest, of
//!    every existing policy stays byte-identical: make it an `Option` with
//!    `#[serde(default, skip_serializing_if = "Option::is_none")]`, never
//!    written as `null` or as a default. Where a value means what absence
//!    means, read it as `None`, so that writing it out does not change the
//!    digest either. Keystores pin the digest of their installed policy and
//!    approvals and audit entries record it: a byte that changes under an
//!    upgrade makes every installed policy a different one. Changing an
//!    existing policy's bytes is a deliberate [`POLICY_VERSION`] decision,
//!    never a side effect. (`rolling_window_fee_sat`, written as `null`
//!    when absent, and the `[transaction]` and `[request]` tables, written
//!    with their defaults, predate this rule and stay as they are.)
//! 4. **Evaluate it** at its place in the order listed under "Rules": a
//!    limit in `Limits::check`, a `[transaction]` setting in
//!    `Policy::check_transaction`, anything else in [`Policy::evaluate`]
//!    (all in `rules.rs` but the limits), so that the first broken rule is
//!    the one reported. Only the reviewed [`WithdrawalSummary`] counts.
//! 5. **Name it**: a [`Rule`] variant with a doc line and its kebab-case
//!    name in [`Rule::as_str`] (the same as serde's). The name is stored in
//!    audit entries and printed: never rename one. The refusal message names
//!    the offending values and the setting that would allow them.
//! 6. **Document it**: the file-format example at the top of this page
//!    (a test parses it) and its entry under "Rules"; and, if operators
//!    should see it, `kura policy check` (`cli/src/cmd/misc.rs`) — `kura
//!    policy diff` reads the canonical JSON and shows it already.
//! 7. **Test it** in `wallet-core/tests/policy.rs`: passes at the bound and
//!    is refused one past it with its rule; its place in
//!    `rules_apply_in_the_documented_order`; its name in
//!    `rules_display_and_serialize_in_kebab_case`; a misspelling in
//!    `unknown_fields_are_refused_everywhere`; setting it changes the digest
//!    in `the_digest_ignores_layout_and_follows_meaning`. The known-answer
//!    policies (`test-vectors/known-answer/policy/`) must pass **without
//!    being regenerated**: that is the proof of step 3. To pin the new
//!    setting's bytes, add a policy to `POLICIES` in
//!    `test-vectors/src/known_answer.rs` (never edit the existing ones) and
//!    run `cargo run -p test-vectors --bin regenerate`: the diff must only
//!    add files.
//!
//! [`WithdrawalSummary`]: crate::withdrawal::review::WithdrawalSummary
//! [`WithdrawalSummary::amount_leaving`]: crate::withdrawal::review::WithdrawalSummary::amount_leaving
//! [`WithdrawalSummary::fee_rate_msat_per_vb`]: crate::withdrawal::review::WithdrawalSummary::fee_rate_msat_per_vb

mod digest;
mod error;
mod limits;
mod rules;
mod schema;

use std::str::FromStr;

use bitcoin::address::NetworkUnchecked;
use bitcoin::{Address, Network};

use crate::identity::IdentityPublicKey;

pub use error::PolicyError;
pub use limits::Limits;
pub use rules::{check_any_policy, PolicyRefusal, Released, Rule};
pub use schema::{AllowedDestination, AutoApproval, Requester, TransactionRules};

/// The policy file version this build reads.
pub const POLICY_VERSION: u64 = 1;

/// The largest policy file read, in bytes.
pub const MAX_POLICY_BYTES: usize = 1024 * 1024;

/// The longest `[request] max_lifetime_hours` a policy may set (7 days).
pub const MAX_REQUEST_LIFETIME_HOURS: u64 = 168;

/// The default `[request] max_lifetime_hours`.
pub const DEFAULT_REQUEST_LIFETIME_HOURS: u64 = 24;

/// A signer's parsed and validated policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    network: Network,
    network_name: &'static str,
    requesters: Vec<Requester>,
    destinations: Vec<AllowedDestination>,
    limits: Limits,
    transaction: TransactionRules,
    max_request_lifetime_hours: u64,
    auto_approve: Option<AutoApproval>,
    digest: [u8; 32],
    canonical: Vec<u8>,
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
        let file = schema::read(text)?;
        let (network, network_name) = schema::parse_network(&file.network)?;
        let requesters = schema::parse_requesters(file.requester)?;
        let destinations = schema::parse_destinations(file.destination, network, network_name)?;
        let limits = Limits::new(file.limits)?;
        schema::parse_change(file.change)?;
        let transaction = schema::parse_transaction(file.transaction)?;
        let max_request_lifetime_hours = schema::parse_request(file.request)?;
        let auto_approve = schema::parse_auto_approve(file.auto_approve, &destinations)?;
        let canonical = digest::canonical_json(
            network_name,
            &requesters,
            &destinations,
            &limits,
            &transaction,
            max_request_lifetime_hours,
            auto_approve.as_ref(),
        )?;
        Ok(Policy {
            network,
            network_name,
            requesters,
            destinations,
            limits,
            transaction,
            max_request_lifetime_hours,
            auto_approve,
            digest: digest::digest(&canonical),
            canonical,
        })
    }

    /// SHA-256 of the canonical encoding of the parsed policy (see the module
    /// docs): unchanged by comments and layout, changed by any change in what
    /// the policy allows.
    pub fn digest(&self) -> crate::digest::PolicyDigest {
        crate::digest::PolicyDigest::from_bytes(self.digest)
    }

    /// The `[auto_approve]` table, if any: what a signer daemon approves
    /// without a person.
    pub fn auto_approval(&self) -> Option<&AutoApproval> {
        self.auto_approve.as_ref()
    }

    /// Whether a withdrawal this policy allows (the caller has checked
    /// that, e.g. with `Signer::review`) may also be approved without a
    /// person: there is an `[auto_approve]` table, every output that is not
    /// change pays one of its destinations, and together they send at most
    /// its `max_amount_sat`.
    pub fn auto_approves(&self, summary: &crate::withdrawal::WithdrawalSummary) -> bool {
        let Some(auto) = &self.auto_approve else {
            return false;
        };
        let mut sent: u64 = 0;
        for output in summary.outputs.iter().filter(|o| !o.is_change) {
            let covered = match &output.destination {
                crate::withdrawal::review::Destination::Address(a) => auto.destinations.contains(a),
                crate::withdrawal::review::Destination::NonStandard { .. } => false,
            };
            if !covered {
                return false;
            }
            sent = match sent.checked_add(output.amount.to_sat()) {
                Some(s) => s,
                None => return false,
            };
        }
        sent <= auto.max_amount_sat
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
        self.limits.rolling_window_secs()
    }

    /// What the policy allows of the transaction itself.
    pub fn transaction(&self) -> &TransactionRules {
        &self.transaction
    }

    /// The longest a request may be valid, in seconds.
    pub fn max_request_lifetime_secs(&self) -> u64 {
        self.max_request_lifetime_hours.saturating_mul(3600)
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
}
