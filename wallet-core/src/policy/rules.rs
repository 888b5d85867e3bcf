//! Evaluating requests against a parsed policy: the [`Rule`]s, in the order
//! of the module docs of [`crate::policy`], and the [`PolicyRefusal`] of the
//! first one broken. The limits (rules 4–8) are checked in
//! [`super::limits`], next to their definition.

use std::fmt;
use std::str::FromStr;

use bitcoin::address::{AddressType, NetworkUnchecked};
use bitcoin::{Address, ScriptBuf};
use serde::{Deserialize, Serialize};

use super::{Policy, Requester};
use crate::identity::IdentityPublicKey;
use crate::withdrawal::review::{Destination, OutputSummary, RelativeLock, WithdrawalSummary};

/// How many hex digits of a requester key messages show.
const KEY_PREFIX_HEX: usize = 16;

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

pub(super) fn refuse(rule: Rule, message: String) -> PolicyRefusal {
    PolicyRefusal { rule, message }
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
pub(super) fn sat_per_vb(msat: u64) -> String {
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
    /// `requester`, given what this signer already released within the
    /// rolling window (`released`, from its audit log) and its clock `now`.
    /// Only the parsed transaction counts, never request metadata.
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
        self.authorised(requester)?;
        for output in summary.outputs.iter().filter(|o| !o.is_change) {
            self.check_destination(output)?;
        }
        self.check_change(&summary.outputs)?;
        self.limits.check(summary, released)?;
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
