//! The coordinator's HTTP API, version 1: routes and the JSON they carry.
//!
//! Everything a party *says* is one of wallet-core's identity-signed Kura
//! documents, posted as the request body exactly as it was signed and
//! stored as those bytes; the JSON types here only carry what the
//! coordinator reports (ids, states, cursors) and documents it hands on
//! (as embedded raw JSON, byte for byte).
//!
//! | method | path | who | body → answer |
//! |---|---|---|---|
//! | POST | `/v1/auth/challenge` | anyone | [`ChallengeRequest`] → [`ChallengeResponse`] |
//! | POST | `/v1/auth/login` | anyone | a `service-login` document ([`ServiceLogin`]) → [`LoginResponse`] |
//! | POST | `/v1/withdrawals` | requester | a `withdrawal-request` document → [`SubmitResponse`] |
//! | GET | `/v1/withdrawals/{id}` | its requester, members | → [`WithdrawalStatus`] |
//! | GET | `/v1/withdrawals/{id}/documents` | members | → [`WithdrawalDocuments`] |
//! | POST | `/v1/withdrawals/{id}/approvals` | members | an `approval` document → [`Accepted`] |
//! | POST | `/v1/withdrawals/{id}/sessions/{n}/shares` | the session's members | a [`SessionAnswer`] (`withdrawal-shares` and the next `withdrawal-approval`) → [`Accepted`] |
//! | GET | `/v1/work?after=N&wait_ms=M` | members, requesters | → [`WorkPage`], waiting up to `M` ms ([`MAX_WAIT_MS`]) for news |
//!
//! The ceremony mailbox ([`crate::relay`]), one per *scope* (a ceremony id,
//! or the group's id for its maintenance ceremonies), for that scope's
//! participants only:
//!
//! | method | path | who | body → answer |
//! |---|---|---|---|
//! | POST | `/v1/ceremonies/{scope}/auth/challenge` | anyone | [`ChallengeRequest`] → [`ChallengeResponse`] |
//! | POST | `/v1/ceremonies/{scope}/auth/login` | anyone | a `service-login` document of the scope, role `participant` → [`LoginResponse`] |
//! | POST | `/v1/ceremonies/{scope}/messages` | participants | a [`MailboxPost`] → [`Posted`] |
//! | GET | `/v1/ceremonies/{scope}/messages?after=N&wait_ms=M` | participants | → [`MailboxPage`]: the broadcasts, the messages addressed to the caller and its own |
//!
//! Every route but the `auth` ones needs `Authorization: Bearer
//! <token>`. Errors are [`ErrorBody`] with a 4xx/5xx status.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use wallet_core::format::{DocumentBody, GroupId};
use wallet_core::SuiteId;
use wallet_core::{IdentityPublicKey, RequestDigest};

use crate::store::{EventKind, Role, SetAsideReason, WithdrawalState};
use crate::tls::CertFingerprint;

/// The longest a `GET /v1/work` waits for news (25 s).
pub const MAX_WAIT_MS: u64 = 25_000;
/// The most items one `GET /v1/work` returns.
pub const MAX_WORK_ITEMS: u32 = 256;
/// How long a login challenge may be answered (30 s).
pub const CHALLENGE_LIFETIME_SECS: u64 = 30;
/// How long a login token lasts (one hour); clients log in again after.
pub const TOKEN_LIFETIME_SECS: u64 = 3600;
/// The largest body any route accepts: a Kura document's limit.
pub const MAX_BODY_BYTES: usize = wallet_core::format::MAX_DOCUMENT_BYTES;
/// The largest body of the two routes anyone may call (`/v1/auth/*`).
pub const MAX_AUTH_BODY_BYTES: usize = 4 * 1024;

/// `POST /v1/auth/challenge`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChallengeRequest {
    /// The identity key that will log in.
    pub key: IdentityPublicKey,
}

/// A fresh single-use challenge.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChallengeResponse {
    /// 32 random bytes, hex.
    pub challenge: String,
    /// Unix seconds after which it is no longer accepted.
    pub expires_at: u64,
}

/// What a client signs with its identity key to log in: a Kura document of
/// kind `service-login`, so the signature can never be mistaken for any
/// other document's. It names the coordinator (by its certificate) and the
/// group, so a login cannot be relayed to another coordinator or group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceLogin {
    /// The challenge, hex, as issued.
    pub challenge: String,
    /// The certificate the client pinned and connected to.
    pub coordinator: CertFingerprint,
    /// The role the client logs in as.
    pub role: RoleName,
}

impl DocumentBody for ServiceLogin {
    const KIND: &'static str = "service-login";
    fn suite() -> SuiteId {
        SuiteId::Secp256k1Tr
    }
}

/// [`Role`] as it is written in the API.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RoleName {
    /// A roster member.
    Signer,
    /// A requester.
    Requester,
    /// A participant of a ceremony, logging in to its mailbox
    /// ([`crate::relay`]); the coordinator's own routes refuse it.
    Participant,
}

impl RoleName {
    /// The coordinator's [`Role`] of this name; `None` for
    /// [`RoleName::Participant`], which only the ceremony mailbox knows.
    pub fn coordinator_role(self) -> Option<Role> {
        match self {
            RoleName::Signer => Some(Role::Signer),
            RoleName::Requester => Some(Role::Requester),
            RoleName::Participant => None,
        }
    }
}

/// A login token.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginResponse {
    /// 32 random bytes, hex: the bearer token.
    pub token: String,
    /// Unix seconds when it expires.
    pub expires_at: u64,
}

impl std::fmt::Debug for LoginResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginResponse")
            .field("token", &"<redacted>")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// `POST /v1/withdrawals`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubmitResponse {
    /// The withdrawal's id: its request digest.
    pub id: RequestDigest,
    /// Whether this very request was already recorded (nothing changed).
    pub duplicate: bool,
}

/// A posted document was recorded (or was already, byte for byte).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Accepted {
    /// Whether it was already recorded.
    pub duplicate: bool,
}

/// `GET /v1/withdrawals/{id}`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WithdrawalStatus {
    /// Its id.
    pub id: RequestDigest,
    /// The group.
    pub group: GroupId,
    /// Where it is.
    pub state: StateName,
    /// The members whose approvals are recorded, in order received.
    pub approved_by: Vec<IdentityPublicKey>,
    /// The signing sessions opened so far, each with its members and who
    /// has answered.
    pub sessions: Vec<SessionStatus>,
    /// The members set aside in its sessions (cheaters and the late), in
    /// the order recorded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub set_aside: Vec<SetAsideStatus>,
    /// The final PSBT (base64) once finalized.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub psbt: Option<String>,
    /// The raw transaction (hex) once finalized.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tx: Option<String>,
    /// Why it was refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// One signing session of a withdrawal.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionStatus {
    /// Its number.
    pub session: u32,
    /// Whose shares it needs.
    pub members: Vec<IdentityPublicKey>,
    /// Who has sent them.
    pub answered: Vec<IdentityPublicKey>,
}

/// A member set aside in a session of a withdrawal.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetAsideStatus {
    /// The session.
    pub session: u32,
    /// Who.
    pub member: IdentityPublicKey,
    /// Why.
    pub reason: SetAsideName,
    /// In the coordinator's words.
    pub detail: String,
}

/// Why a member was set aside, on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SetAsideName {
    /// Its shares did not verify: a cheater, out of this withdrawal.
    InvalidShares,
    /// It did not answer before the session's deadline.
    MissedDeadline,
}

impl From<SetAsideReason> for SetAsideName {
    fn from(r: SetAsideReason) -> SetAsideName {
        match r {
            SetAsideReason::InvalidShares => SetAsideName::InvalidShares,
            SetAsideReason::MissedDeadline => SetAsideName::MissedDeadline,
        }
    }
}

/// The body of `POST /v1/withdrawals/{id}/sessions/{n}/shares`: a member's
/// answer to a session, both parts Kura documents embedded byte for byte.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionAnswer {
    /// The member's `withdrawal-shares` document for the session.
    pub shares: Box<RawValue>,
    /// The member's next `withdrawal-approval` of the same request (fresh
    /// commitments) for a later session, if the session fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<Box<RawValue>>,
}

/// [`WithdrawalState`] as written in the API.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StateName {
    /// Recorded, no approval yet.
    Submitted,
    /// Approvals arriving.
    Approving,
    /// Signing packages sent.
    Signing,
    /// Signed.
    Finalized,
    /// Refused.
    Refused,
}

impl From<WithdrawalState> for StateName {
    fn from(s: WithdrawalState) -> StateName {
        match s {
            WithdrawalState::Submitted => StateName::Submitted,
            WithdrawalState::Approving => StateName::Approving,
            WithdrawalState::Signing => StateName::Signing,
            WithdrawalState::Finalized => StateName::Finalized,
            WithdrawalState::Refused => StateName::Refused,
        }
    }
}

impl StateName {
    /// Whether nothing can change any more.
    pub fn is_final(self) -> bool {
        matches!(self, StateName::Finalized | StateName::Refused)
    }
}

/// `GET /v1/withdrawals/{id}/documents`: the withdrawal's status, and the
/// request and every session's packages as the coordinator recorded them
/// (byte for byte) — what a signer daemon needs in one call.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WithdrawalDocuments {
    /// Where it is.
    pub status: WithdrawalStatus,
    /// The signed request.
    pub request: Box<RawValue>,
    /// The packages of each session.
    pub sessions: Vec<SessionDocument>,
}

/// One session's packages document.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionDocument {
    /// The session number.
    pub session: u32,
    /// The `withdrawal-packages` document.
    pub packages: Box<RawValue>,
}

/// `GET /v1/work`: a page of the caller's mailbox.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkPage {
    /// Items after the cursor, oldest first.
    pub items: Vec<WorkEntry>,
    /// The cursor to ask with next.
    pub next: u64,
}

/// One mailbox item.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkEntry {
    /// Its place in the caller's mailbox.
    pub seq: u64,
    /// The withdrawal.
    pub withdrawal: RequestDigest,
    /// What happened.
    pub kind: EventName,
}

/// [`EventKind`] as written in the API.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EventName {
    /// A new withdrawal to review.
    Submitted,
    /// Packages to sign.
    Packages,
    /// Finalized.
    Finalized,
    /// Refused.
    Refused,
}

impl From<EventKind> for EventName {
    fn from(k: EventKind) -> EventName {
        match k {
            EventKind::Submitted => EventName::Submitted,
            EventKind::Packages => EventName::Packages,
            EventKind::Finalized => EventName::Finalized,
            EventKind::Refused => EventName::Refused,
        }
    }
}

/// `POST /v1/ceremonies/{scope}/messages`: a ceremony document for the
/// scope's mailbox, for everyone or for one participant. The mailbox reads
/// only the document's envelope; what is inside is signed (and, where
/// secret, sealed) by its author for its readers, who check it themselves.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MailboxPost {
    /// Its one reader; `None` for a broadcast.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<IdentityPublicKey>,
    /// The Kura document, byte for byte.
    pub document: Box<RawValue>,
}

/// A mailbox message was recorded (or already was: the same author posted
/// the same bytes to the same reader).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Posted {
    /// The mailbox's epoch ([`MailboxPage::epoch`]).
    pub epoch: String,
    /// Its place in the scope's mailbox.
    pub seq: u64,
    /// Whether it was already there.
    pub duplicate: bool,
}

/// `GET /v1/ceremonies/{scope}/messages`: a page of the mailbox as the
/// caller may see it.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MailboxPage {
    /// Names this run of the mailbox (hex): when it changes, the mailbox
    /// was restarted and lost what it held, and each participant posts its
    /// messages again.
    pub epoch: String,
    /// Messages after the cursor, oldest first.
    pub messages: Vec<MailboxMessage>,
    /// The cursor to ask with next.
    pub next: u64,
}

/// One mailbox message.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MailboxMessage {
    /// Its place in the mailbox.
    pub seq: u64,
    /// Who posted it, as the mailbox says: a claim for routing only — the
    /// document's own signature says who wrote it.
    pub from: IdentityPublicKey,
    /// Its reader, or `None` for a broadcast.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<IdentityPublicKey>,
    /// The document's kind, from its envelope.
    pub kind: String,
    /// The document, byte for byte.
    pub document: Box<RawValue>,
}

/// The document kinds the ceremony mailbox carries: the setup and
/// maintenance documents of `wallet_core::ceremony`.
pub const CEREMONY_KINDS: &[&str] = &[
    "dkg-round1",
    "dkg-round2",
    "dealing",
    "refresh-proposal",
    "refresh-endorsement",
    "refresh-receipt",
    "repair-message",
    "reshare-proposal",
    "reshare-deal",
];

/// An error answer.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorBody {
    /// A stable kebab-case name: `unauthenticated`, `forbidden`,
    /// `not-found`, `bad-document`, `conflict`, `too-large`, `bad-request`,
    /// `internal`, `unavailable`.
    pub error: String,
    /// What went wrong, for a person (never raw input).
    pub message: String,
}
