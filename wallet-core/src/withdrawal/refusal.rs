//! Why a signer refused, and what kind of refusal that is.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::request::RequestId;
use super::review::ReviewError;
use crate::audit::AuditError;
use crate::digest::{PolicyDigest, RequestDigest};
use crate::group::Culprit;
use crate::keystore::KeystoreError;
use crate::policy::{PolicyRefusal, Rule};
use crate::signing::SignError;
use crate::suite::Secp256k1Tr;

/// Requests dated this far in the future are refused (clock skew allowance).
pub const MAX_CLOCK_SKEW_SECS: u64 = 300;

/// Why a signer refused. Every refusal is also in its audit log.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// The requester's signature does not verify.
    #[error("request signature does not verify")]
    BadRequestSignature,
    /// The requester is not in this signer's policy.
    #[error(transparent)]
    Policy(#[from] PolicyRefusal),
    /// The request expired.
    #[error(
        "request {request_id} expired at {expires_at} (now {now}); ask the requester for a new one"
    )]
    Expired {
        /// The request.
        request_id: RequestId,
        /// Its expiry.
        expires_at: u64,
        /// The signer's clock.
        now: u64,
    },
    /// The request is dated in the future.
    #[error("request {request_id} is dated {created_at}, after this signer's clock ({now}) plus {MAX_CLOCK_SKEW_SECS} s")]
    NotYetValid {
        /// The request.
        request_id: RequestId,
        /// Its creation time.
        created_at: u64,
        /// The signer's clock.
        now: u64,
    },
    /// The policy file is not the one installed (pinned) in the keystore.
    #[error("{}", policy_not_in_force(.pinned, .file))]
    PolicyNotInForce {
        /// The digest pinned in the keystore, if any.
        pinned: Option<PolicyDigest>,
        /// The digest of the policy this signer was given.
        file: PolicyDigest,
    },
    /// This request id was already handled.
    #[error("request {0} was already approved or signed by this signer; a request is honoured once (replays are refused even with an identical PSBT)")]
    Replayed(RequestId),
    /// The PSBT does not pass review.
    #[error(transparent)]
    Review(#[from] ReviewError),
    /// The packages are for another request.
    #[error("the packages are for request digest {found}, not {expected}")]
    WrongRequest {
        /// This request's digest.
        expected: RequestDigest,
        /// The packages' digest.
        found: RequestDigest,
    },
    /// An approval in the packages does not hold up.
    #[error("approval from {participant} is not acceptable: {reason}")]
    BadApproval {
        /// Who it claims to come from.
        participant: Culprit<Secp256k1Tr>,
        /// Why it is refused.
        reason: String,
    },
    /// This signer's own approval is not among the packages' approvals.
    #[error("the packages do not include this signer's own approval")]
    MissingOwnApproval,
    /// Fewer approvals than the threshold.
    #[error("{have} approvals, the group needs {need}")]
    TooFewApprovals {
        /// Approvals present.
        have: usize,
        /// The threshold.
        need: u16,
    },
    /// A package disagrees with the request or the approvals.
    #[error("signing package for input {input} is not acceptable: {reason}")]
    BadPackage {
        /// Input index.
        input: usize,
        /// Why.
        reason: String,
    },
    /// A frost-level package refusal.
    #[error("signing package for input {input} refused: {source}")]
    Package {
        /// Input index.
        input: usize,
        /// The refusal.
        source: SignError,
    },
    /// Keystore failure (e.g. nonces already used).
    #[error(transparent)]
    Keystore(#[from] KeystoreError),
    /// The audit log could not record the decision, so nothing is released.
    #[error(transparent)]
    Audit(#[from] AuditError),
    /// A malformed document.
    #[error(transparent)]
    Format(#[from] crate::format::FormatError),
    /// A request id or memo that is not acceptable (checked again here for
    /// requests not parsed from a document).
    #[error(transparent)]
    Text(#[from] crate::display::TextError),
    /// The signer's operator looked at the request and said no
    /// ([`Signer::decline`](super::Signer::decline)).
    #[error("declined by this signer's operator: {reason}")]
    Declined {
        /// The operator's words (made inert when shown).
        reason: String,
    },
}

impl Refusal {
    /// The kind of refusal: what a program acts on, and the `rule` its
    /// audit entry records.
    pub fn kind(&self) -> RefusalKind {
        match self {
            Refusal::Policy(p) => RefusalKind::Policy(p.rule),
            Refusal::BadRequestSignature => RefusalKind::RequestSignature,
            Refusal::Expired { .. } | Refusal::NotYetValid { .. } => RefusalKind::RequestExpiry,
            Refusal::PolicyNotInForce { .. } => RefusalKind::PolicyPin,
            Refusal::Replayed(_) => RefusalKind::Replay,
            Refusal::Review(_) => RefusalKind::PsbtReview,
            Refusal::WrongRequest { .. }
            | Refusal::BadApproval { .. }
            | Refusal::MissingOwnApproval
            | Refusal::TooFewApprovals { .. }
            | Refusal::BadPackage { .. }
            | Refusal::Package { .. } => RefusalKind::SigningPackage,
            Refusal::Keystore(_) => RefusalKind::Keystore,
            Refusal::Audit(_) => RefusalKind::Audit,
            Refusal::Format(_) => RefusalKind::Format,
            Refusal::Text(_) => RefusalKind::RequestText,
            Refusal::Declined { .. } => RefusalKind::Declined,
        }
    }
}

/// What kind of refusal a [`Refusal`] is: the `rule` of its audit entry,
/// and what a program maps to an exit or status code.
///
/// Each kind has a stable kebab-case name ([`RefusalKind::as_str`]), the
/// form audit entries store. A policy refusal is named by its policy
/// [`Rule`] (`destination-allowlist`, `fee-cap`, …).
///
/// | kind | name | whose doing | a service might answer |
/// |---|---|---|---|
/// | [`RequestSignature`](RefusalKind::RequestSignature) | `request-signature` | requester | 401 |
/// | [`RequestExpiry`](RefusalKind::RequestExpiry) | `request-expiry` | requester or clock | 422 |
/// | [`RequestText`](RefusalKind::RequestText) | `request-text` | requester | 400 |
/// | [`Format`](RefusalKind::Format) | `format` | sender | 400 |
/// | [`Replay`](RefusalKind::Replay) | `replay` | requester or coordinator | 409 |
/// | [`Policy`](RefusalKind::Policy) | the rule's name | requester | 403 |
/// | [`PsbtReview`](RefusalKind::PsbtReview) | `psbt-review` | requester | 422 |
/// | [`SigningPackage`](RefusalKind::SigningPackage) | `signing-package` | coordinator | 422 |
/// | [`PolicyPin`](RefusalKind::PolicyPin) | `policy-pin` | this signer's operator | 503 |
/// | [`Keystore`](RefusalKind::Keystore) | `keystore` | this signer's state | 500 |
/// | [`Audit`](RefusalKind::Audit) | `audit` | this signer's state | 500 |
/// | [`Declined`](RefusalKind::Declined) | `declined` | this signer's operator | 403 |
///
/// [`RefusalKind::is_signer_failure`] separates the last two: the signer
/// could not decide, as opposed to deciding no.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum RefusalKind {
    /// The requester's signature does not verify.
    RequestSignature,
    /// The request expired, or is dated in the future.
    RequestExpiry,
    /// A request id or memo that is not acceptable.
    RequestText,
    /// A malformed document.
    Format,
    /// The request was already approved or signed.
    Replay,
    /// The signer's policy refuses it, by this rule.
    Policy(Rule),
    /// The PSBT does not pass review.
    PsbtReview,
    /// The coordinator's signing packages or the approvals in them.
    SigningPackage,
    /// The policy file is not the one pinned in the keystore.
    PolicyPin,
    /// The keystore failed.
    Keystore,
    /// The audit log failed or does not match its anchor.
    Audit,
    /// The signer's operator declined the request.
    Declined,
}

impl RefusalKind {
    /// The stable kebab-case name audit entries store.
    pub fn as_str(self) -> &'static str {
        match self {
            RefusalKind::RequestSignature => "request-signature",
            RefusalKind::RequestExpiry => "request-expiry",
            RefusalKind::RequestText => "request-text",
            RefusalKind::Format => "format",
            RefusalKind::Replay => "replay",
            RefusalKind::Policy(rule) => rule.as_str(),
            RefusalKind::PsbtReview => "psbt-review",
            RefusalKind::SigningPackage => "signing-package",
            RefusalKind::PolicyPin => "policy-pin",
            RefusalKind::Keystore => "keystore",
            RefusalKind::Audit => "audit",
            RefusalKind::Declined => "declined",
        }
    }

    /// The kind named `name`, if any.
    pub fn from_name(name: &str) -> Option<RefusalKind> {
        const OWN: [RefusalKind; 11] = [
            RefusalKind::RequestSignature,
            RefusalKind::RequestExpiry,
            RefusalKind::RequestText,
            RefusalKind::Format,
            RefusalKind::Replay,
            RefusalKind::PsbtReview,
            RefusalKind::SigningPackage,
            RefusalKind::PolicyPin,
            RefusalKind::Keystore,
            RefusalKind::Audit,
            RefusalKind::Declined,
        ];
        if let Some(kind) = OWN.into_iter().find(|k| k.as_str() == name) {
            return Some(kind);
        }
        use serde::de::IntoDeserializer;
        let name: serde::de::value::StrDeserializer<'_, serde::de::value::Error> =
            name.into_deserializer();
        Rule::deserialize(name).ok().map(RefusalKind::Policy)
    }

    /// Whether the signer could not decide (its keystore or audit log
    /// failed), as opposed to refusing what it was sent. A failure may pass
    /// once the signer's state is repaired; a refusal will not.
    pub fn is_signer_failure(self) -> bool {
        matches!(self, RefusalKind::Keystore | RefusalKind::Audit)
    }
}

impl fmt::Display for RefusalKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for RefusalKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for RefusalKind {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = <std::borrow::Cow<'de, str> as Deserialize>::deserialize(d)?;
        RefusalKind::from_name(&name).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "unknown refusal kind \"{}\"",
                crate::display::inert_bounded(&name, 64)
            ))
        })
    }
}

fn policy_not_in_force(pinned: &Option<PolicyDigest>, file: &PolicyDigest) -> String {
    match pinned {
        None => format!("no policy is installed in this signer's keystore (the policy file's digest is {file}); install it with `kura policy install` — until then this signer refuses everything"),
        Some(p) => format!("the policy file (digest {file}) is not the policy installed in this signer's keystore (digest {p}): it was changed without `kura policy install`; this signer refuses everything until the installed policy is put back or the new one installed"),
    }
}
