//! The [`Store`] trait and the values it speaks: withdrawals, their
//! documents, results, the members' mailboxes and the login records.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest, Sha256};
use wallet_core::format::{self, Document, DocumentBody, FormatError};
use wallet_core::{
    Approval, GroupId, IdentityPublicKey, RequestDigest, Signed, WithdrawalPackages,
    WithdrawalRequest, WithdrawalShares,
};

use crate::error::StoreError;

/// Where a withdrawal is. The store enforces the transitions:
///
/// | from | by | to |
/// |---|---|---|
/// | — | [`Store::submit`] | `Submitted` |
/// | `Submitted`, `Approving` | [`Store::add_approval`] | `Approving` |
/// | `Signing` | [`Store::add_approval`] (a late approval, kept for a later session) | `Signing` |
/// | `Approving`, `Signing` | [`Store::put_packages`] | `Signing` |
/// | `Signing` | [`Store::add_shares`], [`Store::set_aside`] | `Signing` |
/// | `Signing` | [`Store::finalize`] | `Finalized` |
/// | `Submitted`, `Approving`, `Signing` | [`Store::refuse`] | `Refused` |
///
/// `Finalized` and `Refused` are final: every operation that would change a
/// final withdrawal is [`StoreError::IllegalTransition`] (re-posting a
/// document already recorded is still a [`Added::Duplicate`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WithdrawalState {
    /// Recorded, no approval yet.
    Submitted,
    /// At least one approval, no signing package yet.
    Approving,
    /// Signing packages sent out (one session or more).
    Signing,
    /// Signed: the final PSBT and transaction are recorded.
    Finalized,
    /// Refused, with a reason.
    Refused,
}

impl WithdrawalState {
    /// The name stored in the database (and shown).
    pub const fn as_str(self) -> &'static str {
        match self {
            WithdrawalState::Submitted => "submitted",
            WithdrawalState::Approving => "approving",
            WithdrawalState::Signing => "signing",
            WithdrawalState::Finalized => "finalized",
            WithdrawalState::Refused => "refused",
        }
    }

    /// Whether nothing can change any more.
    pub const fn is_final(self) -> bool {
        matches!(self, WithdrawalState::Finalized | WithdrawalState::Refused)
    }

    /// Whether the store allows going from `self` to `to`.
    pub const fn may_become(self, to: WithdrawalState) -> bool {
        use WithdrawalState::*;
        matches!(
            (self, to),
            (Submitted | Approving, Approving)
                | (Signing, Signing)
                | (Approving, Signing)
                | (Signing, Finalized)
                | (Submitted | Approving | Signing, Refused)
        )
    }
}

impl fmt::Display for WithdrawalState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for WithdrawalState {
    type Err = StoreError;
    fn from_str(s: &str) -> Result<Self, StoreError> {
        Ok(match s {
            "submitted" => WithdrawalState::Submitted,
            "approving" => WithdrawalState::Approving,
            "signing" => WithdrawalState::Signing,
            "finalized" => WithdrawalState::Finalized,
            "refused" => WithdrawalState::Refused,
            other => return Err(StoreError::corrupt("withdrawals.state", other)),
        })
    }
}

/// A document as it arrived: the exact bytes, and what they decode to.
///
/// The store keeps [`Received::bytes`] as they are (never re-serialized) and
/// reads ids, participants and digests from the decoded document, so the two
/// cannot disagree. Decoding checks the envelope (format, version, kind,
/// suite) and the body's shape; it does **not** check signatures, the
/// group or membership, which is the coordinator's job before it calls the
/// store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Received<T> {
    bytes: Vec<u8>,
    document: Document<T>,
}

impl<T: DocumentBody> Received<T> {
    /// Decodes `bytes` as a Kura document of kind `T::KIND` and keeps them.
    ///
    /// # Errors
    /// The [`FormatError`] of [`wallet_core::format::decode`].
    pub fn decode(bytes: Vec<u8>) -> Result<Self, FormatError> {
        let document = format::decode::<T>(&bytes)?;
        Ok(Received { bytes, document })
    }
}

impl<T> Received<T> {
    /// The bytes as received.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The group the document names.
    pub fn group(&self) -> &GroupId {
        &self.document.group
    }

    /// The decoded body.
    pub fn body(&self) -> &T {
        &self.document.body
    }
}

/// The digest by which the store recognizes a document re-posted: the
/// SHA-256 of the body's canonical bytes, the name wallet-core already gives
/// it. For a signed document that is [`Signed::digest`] (the signature is
/// not covered, so a re-signed identical body is the same document); for a
/// request it is the [`RequestDigest`]; for packages the audit log's
/// `PackagesDigest`. Whitespace or field order of the received bytes do not
/// matter.
pub trait DocumentDigest {
    /// The digest of `self` in `group`.
    ///
    /// # Errors
    /// Only wallet-core's internal serialization failure.
    fn document_digest(&self, group: &GroupId) -> Result<[u8; 32], FormatError>;
}

impl<T: DocumentBody> DocumentDigest for Signed<T> {
    fn document_digest(&self, group: &GroupId) -> Result<[u8; 32], FormatError> {
        self.digest(group)
    }
}

impl DocumentDigest for WithdrawalPackages {
    fn document_digest(&self, group: &GroupId) -> Result<[u8; 32], FormatError> {
        Ok(Sha256::digest(format::canonical_bytes(group, self)?).into())
    }
}

impl<T: DocumentDigest> Received<T> {
    /// [`DocumentDigest::document_digest`] of the body in its own group.
    ///
    /// # Errors
    /// [`StoreError::Digest`].
    pub fn digest(&self) -> Result<[u8; 32], StoreError> {
        self.document
            .body
            .document_digest(&self.document.group)
            .map_err(StoreError::Digest)
    }
}

/// A signed withdrawal request as received.
pub type RequestDocument = Received<Signed<WithdrawalRequest>>;
/// A signer's approval as received.
pub type ApprovalDocument = Received<Signed<Approval>>;
/// The coordinator's signing packages.
pub type PackagesDocument = Received<WithdrawalPackages>;
/// A signer's signature shares as received.
pub type SharesDocument = Received<Signed<WithdrawalShares>>;

/// What [`Store::submit`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Submitted {
    /// A new withdrawal, recorded.
    New(RequestDigest),
    /// This very request was already recorded; nothing changed.
    Duplicate(RequestDigest),
}

impl Submitted {
    /// The withdrawal's id either way.
    pub fn id(&self) -> RequestDigest {
        match self {
            Submitted::New(id) | Submitted::Duplicate(id) => *id,
        }
    }
}

/// What adding a document did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Added {
    /// Recorded.
    New,
    /// The same document (same digest) was already recorded; nothing changed.
    Duplicate,
}

/// One withdrawal as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WithdrawalRecord {
    /// Its id, the request digest.
    pub id: RequestDigest,
    /// The signed request, as received.
    pub request: Vec<u8>,
    /// Where it is.
    pub state: WithdrawalState,
    /// Unix seconds when submitted (the store's clock).
    pub created_at: u64,
    /// Unix seconds of the last change.
    pub updated_at: u64,
}

/// What became of an approval (its nonce commitments).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApprovalUse {
    /// Not used by any session yet: its member is available for one.
    Unused,
    /// Used by the packages of this session. An approval is used by one
    /// session at most: its nonces sign once.
    UsedIn(u32),
    /// Replaced, unused, by a later approval of the same member (the signer
    /// destroyed its nonces when it made the later one).
    Replaced,
}

/// A member's approval of a withdrawal, as received, and its use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberDocument {
    /// Who signed it.
    pub member: IdentityPublicKey,
    /// The bytes as received.
    pub document: Vec<u8>,
    /// What became of it.
    pub used: ApprovalUse,
}

/// Why a member was set aside in a signing session.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SetAsideReason {
    /// Its shares did not verify: it cheated, and takes no further part in
    /// this withdrawal.
    InvalidShares,
    /// It did not answer before the session's deadline: later sessions
    /// prefer members that did.
    MissedDeadline,
}

impl SetAsideReason {
    /// The name stored in the database (and shown).
    pub const fn as_str(self) -> &'static str {
        match self {
            SetAsideReason::InvalidShares => "invalid-shares",
            SetAsideReason::MissedDeadline => "missed-deadline",
        }
    }
}

impl FromStr for SetAsideReason {
    type Err = StoreError;
    fn from_str(s: &str) -> Result<Self, StoreError> {
        match s {
            "invalid-shares" => Ok(SetAsideReason::InvalidShares),
            "missed-deadline" => Ok(SetAsideReason::MissedDeadline),
            other => Err(StoreError::corrupt("set_aside.reason", other)),
        }
    }
}

/// A member set aside in one session of a withdrawal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SetAside {
    /// The session.
    pub session: u32,
    /// Who.
    pub member: IdentityPublicKey,
    /// Why.
    pub reason: SetAsideReason,
    /// What was wrong, in words (the coordinator's).
    pub detail: String,
    /// The evidence: the shares document as received, for invalid shares.
    pub document: Option<Vec<u8>>,
}

/// The coordinator's packages of one signing session, as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionPackages {
    /// The session number, chosen by the coordinator.
    pub session: u32,
    /// The packages document, as put.
    pub document: Vec<u8>,
}

/// A member's shares in one signing session, as received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionShares {
    /// The session whose packages they answer.
    pub session: u32,
    /// Who signed them.
    pub member: IdentityPublicKey,
    /// The bytes as received.
    pub document: Vec<u8>,
}

/// How a withdrawal ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Signed.
    Finalized {
        /// The final PSBT (binary, as given to [`Store::finalize`]).
        psbt: Vec<u8>,
        /// The raw transaction.
        tx: Vec<u8>,
    },
    /// Refused.
    Refused {
        /// Why, as given to [`Store::refuse`].
        reason: String,
    },
}

/// What an event in a member's mailbox says happened to a withdrawal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// A new withdrawal to review (from [`Store::submit`]).
    Submitted,
    /// Signing packages to sign (from [`Store::put_packages`]).
    Packages,
    /// Finalized: the result can be read.
    Finalized,
    /// Refused.
    Refused,
}

impl EventKind {
    /// The name stored in the database (kebab-case).
    pub const fn as_str(self) -> &'static str {
        match self {
            EventKind::Submitted => "submitted",
            EventKind::Packages => "packages",
            EventKind::Finalized => "finalized",
            EventKind::Refused => "refused",
        }
    }
}

impl FromStr for EventKind {
    type Err = StoreError;
    fn from_str(s: &str) -> Result<Self, StoreError> {
        Ok(match s {
            "submitted" => EventKind::Submitted,
            "packages" => EventKind::Packages,
            "finalized" => EventKind::Finalized,
            "refused" => EventKind::Refused,
            other => return Err(StoreError::corrupt("events.kind", other)),
        })
    }
}

/// One item of a member's mailbox.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WorkItem {
    /// Its place in the member's mailbox: 1, 2, 3… without gaps, in commit
    /// order.
    pub seq: u64,
    /// The withdrawal it is about.
    pub withdrawal: RequestDigest,
    /// What happened.
    pub kind: EventKind,
}

/// A page of a member's mailbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Work {
    /// The items with `seq > after`, oldest first, at most `limit`.
    pub items: Vec<WorkItem>,
    /// The cursor to ask with next: the last item's `seq`, or `after` when
    /// there is none.
    pub next: u64,
}

/// What a login token lets its holder be.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// A roster member (approves and signs).
    Signer,
    /// A configured requester (submits and reads its withdrawals).
    Requester,
}

impl Role {
    /// The name stored in the database.
    pub const fn as_str(self) -> &'static str {
        match self {
            Role::Signer => "signer",
            Role::Requester => "requester",
        }
    }
}

impl FromStr for Role {
    type Err = StoreError;
    fn from_str(s: &str) -> Result<Self, StoreError> {
        match s {
            "signer" => Ok(Role::Signer),
            "requester" => Ok(Role::Requester),
            other => Err(StoreError::corrupt("tokens.role", other)),
        }
    }
}

/// A login token's record (the store keeps only the token's hash).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Token {
    /// Whose.
    pub member: IdentityPublicKey,
    /// As what.
    pub role: Role,
    /// Unix seconds after which it is no longer valid.
    pub expires_at: u64,
}

/// The coordinator's persistent state, at the level of the domain.
///
/// **Every method that returns `Ok` after a change has made that change
/// durable** (committed, fsynced), in one transaction together with the
/// mailbox events it causes, so nothing a caller acknowledges or sends on
/// is lost by a crash. Ids are request digests; members are identity keys.
/// Documents are passed as [`Received`] and kept as the exact bytes
/// received; reads return those bytes.
///
/// `notify` arguments name the members whose mailbox gets the event (the
/// coordinator knows its roster and requesters; the store does not).
pub trait Store {
    /// Records a signed withdrawal request; its id is its request digest.
    /// Idempotent: the same request again is [`Submitted::Duplicate`].
    ///
    /// # Errors
    /// [`StoreError::Conflict`] when the requester already has a different
    /// request with the same `request_id`.
    fn submit(
        &self,
        request: &RequestDocument,
        notify: &[IdentityPublicKey],
    ) -> Result<Submitted, StoreError>;

    /// The withdrawal `id`.
    ///
    /// # Errors
    /// [`StoreError::NotFound`].
    fn withdrawal(&self, id: &RequestDigest) -> Result<WithdrawalRecord, StoreError>;

    /// Records a signer's approval (its signer is the member). Idempotent on
    /// the document's digest. A member has at most one unused approval: a
    /// new one [`ApprovalUse::Replaced`] its unused one (a signer that
    /// approves again destroys the nonces of its earlier approval). A member
    /// whose approval a session used comes back only by answering that
    /// session ([`Store::add_shares`] with its next approval), never by
    /// approving again, and keeps at most
    /// [`crate::sqlite::MAX_APPROVALS_PER_MEMBER`] approvals per withdrawal.
    ///
    /// # Errors
    /// [`StoreError::Conflict`] for a member that owes a session its shares,
    /// or has too many approvals; [`StoreError::Mismatch`] for an approval
    /// of another request; [`StoreError::IllegalTransition`] on a final
    /// withdrawal.
    fn add_approval(
        &self,
        id: &RequestDigest,
        approval: &ApprovalDocument,
    ) -> Result<Added, StoreError>;

    /// The approvals of `id`, in the order received, with their use.
    ///
    /// # Errors
    /// [`StoreError::NotFound`].
    fn approvals(&self, id: &RequestDigest) -> Result<Vec<MemberDocument>, StoreError>;

    /// Records the signing packages of session `session`, marks every
    /// approval they use as [`ApprovalUse::UsedIn`] that session, and
    /// notifies. Idempotent on the document's digest.
    ///
    /// # Errors
    /// [`StoreError::Conflict`] for different packages in the same session,
    /// or packages using an approval that is not recorded or not unused (no
    /// commitment is ever put into two sessions);
    /// [`StoreError::IllegalTransition`] without an approval, or on a final
    /// withdrawal.
    fn put_packages(
        &self,
        id: &RequestDigest,
        session: u32,
        packages: &PackagesDocument,
        notify: &[IdentityPublicKey],
    ) -> Result<Added, StoreError>;

    /// The packages of every session of `id`, by session.
    ///
    /// # Errors
    /// [`StoreError::NotFound`].
    fn packages(&self, id: &RequestDigest) -> Result<Vec<SessionPackages>, StoreError>;

    /// Records a signer's shares for session `session` (its signer is the
    /// member) and, in the same transaction, the member's `next` approval
    /// for a later session (as [`Store::add_approval`] would). Idempotent on
    /// the shares' digest (a `next` given again is added or is a duplicate).
    ///
    /// # Errors
    /// [`StoreError::NotFound`] for a session without packages;
    /// [`StoreError::Conflict`] for different shares by the same member in the
    /// same session, or a `next` of another member; [`StoreError::Mismatch`];
    /// [`StoreError::IllegalTransition`] outside `Signing`.
    fn add_shares(
        &self,
        id: &RequestDigest,
        session: u32,
        shares: &SharesDocument,
        next: Option<&ApprovalDocument>,
    ) -> Result<Added, StoreError>;

    /// Records that `aside.member` was set aside in `aside.session`.
    /// Idempotent per member and session: the first record stands, except
    /// that invalid shares from a member already recorded as late replace
    /// that record (it is a cheater, and its shares are the evidence).
    ///
    /// # Errors
    /// [`StoreError::NotFound`] for a session without packages;
    /// [`StoreError::IllegalTransition`] outside `Signing`.
    fn set_aside(&self, id: &RequestDigest, aside: &SetAside) -> Result<Added, StoreError>;

    /// The members set aside in the sessions of `id`, in the order recorded.
    ///
    /// # Errors
    /// [`StoreError::NotFound`].
    fn set_asides(&self, id: &RequestDigest) -> Result<Vec<SetAside>, StoreError>;

    /// The shares of `id`, by session then order received.
    ///
    /// # Errors
    /// [`StoreError::NotFound`].
    fn shares(&self, id: &RequestDigest) -> Result<Vec<SessionShares>, StoreError>;

    /// Records the final PSBT and transaction: `Signing` → `Finalized`.
    ///
    /// # Errors
    /// [`StoreError::IllegalTransition`] from any other state (a second
    /// finalize included).
    fn finalize(
        &self,
        id: &RequestDigest,
        psbt: &[u8],
        tx: &[u8],
        notify: &[IdentityPublicKey],
    ) -> Result<(), StoreError>;

    /// Records a refusal: any open state → `Refused`.
    ///
    /// # Errors
    /// [`StoreError::IllegalTransition`] on a final withdrawal.
    fn refuse(
        &self,
        id: &RequestDigest,
        reason: &str,
        notify: &[IdentityPublicKey],
    ) -> Result<(), StoreError>;

    /// How `id` ended, `None` while it is open.
    ///
    /// # Errors
    /// [`StoreError::NotFound`].
    fn result(&self, id: &RequestDigest) -> Result<Option<Outcome>, StoreError>;

    /// Every withdrawal not final, oldest first: what a restarted coordinator
    /// continues.
    ///
    /// # Errors
    /// Only the backend's.
    fn list_open(&self) -> Result<Vec<WithdrawalRecord>, StoreError>;

    /// Up to `limit` items of `member`'s mailbox after cursor `after`.
    /// Sequence numbers are per member, start at 1, have no gaps and only
    /// grow, and an item is visible exactly when the change that caused it
    /// is: a reader that saw `seq = n` never later finds a new item `≤ n`.
    ///
    /// # Errors
    /// Only the backend's.
    fn work_for(
        &self,
        member: &IdentityPublicKey,
        after: u64,
        limit: u32,
    ) -> Result<Work, StoreError>;

    /// Records a login challenge issued to `member`, valid until
    /// `expires_at` (expired challenges are purged here).
    ///
    /// # Errors
    /// [`StoreError::Conflict`] if this challenge exists already.
    fn put_challenge(
        &self,
        challenge: &[u8; 32],
        member: &IdentityPublicKey,
        expires_at: u64,
    ) -> Result<(), StoreError>;

    /// Takes a challenge: its member if it exists and has not expired, and
    /// removes it either way, so a challenge answers one login at most.
    ///
    /// # Errors
    /// Only the backend's.
    fn consume_challenge(
        &self,
        challenge: &[u8; 32],
    ) -> Result<Option<IdentityPublicKey>, StoreError>;

    /// Records a login token by its hash (never the token itself).
    ///
    /// # Errors
    /// [`StoreError::Conflict`] if this hash exists already.
    fn put_token(
        &self,
        hash: &[u8; 32],
        member: &IdentityPublicKey,
        role: Role,
        expires_at: u64,
    ) -> Result<(), StoreError>;

    /// The token with this hash, if it exists and has not expired.
    ///
    /// # Errors
    /// Only the backend's.
    fn token(&self, hash: &[u8; 32]) -> Result<Option<Token>, StoreError>;

    /// Makes the caller the one coordinator driving withdrawal `id` until
    /// the guard is dropped, waiting while another holds it (several
    /// coordinators may share one database). A coordinator that dies gives
    /// it up with its connection. Safety does not rest on it — every write
    /// locks the withdrawal's row and the store refuses any conflicting
    /// change — it keeps two coordinators from doing the same work.
    ///
    /// The default is for a store one coordinator owns: nothing to wait for.
    ///
    /// # Errors
    /// Only the backend's (a lock not obtained in time).
    fn drive(&self, id: &RequestDigest) -> Result<DriveGuard, StoreError> {
        let _ = id;
        Ok(DriveGuard::none())
    }

    /// Calls `wake` whenever another coordinator sharing the database may
    /// have added mailbox events (long polls here must look again). The
    /// default, for a store one coordinator owns, never calls it.
    ///
    /// # Errors
    /// Only the backend's.
    fn watch(&self, wake: Box<dyn Fn() + Send + Sync>) -> Result<(), StoreError> {
        drop(wake);
        Ok(())
    }
}

/// Held while a coordinator drives a withdrawal ([`Store::drive`]);
/// released when dropped.
pub struct DriveGuard {
    _held: Option<Box<dyn Send>>,
}

impl DriveGuard {
    /// A guard that holds nothing.
    pub fn none() -> Self {
        DriveGuard { _held: None }
    }

    /// A guard that holds `what` (whose drop releases the lock).
    pub fn holding(what: Box<dyn Send>) -> Self {
        DriveGuard { _held: Some(what) }
    }
}

impl fmt::Debug for DriveGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DriveGuard")
            .field("held", &self._held.is_some())
            .finish()
    }
}

// The codecs both stores share: how ids, keys, times and rows are written
// in a database and read back.

/// A Unix time or counter as SQL's signed 64-bit integer.
pub(crate) fn int(what: &'static str, value: u64) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| StoreError::OutOfRange { what, value })
}

/// A signed 64-bit integer read back as a Unix time or counter.
pub(crate) fn uint(what: &'static str, value: i64) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| StoreError::corrupt(what, &value.to_string()))
}

/// A member as stored: its identity key's compressed SEC1 in hex.
pub(crate) fn member_text(key: &IdentityPublicKey) -> String {
    key.to_string()
}

/// A member read back.
pub(crate) fn member_from(what: &'static str, text: &str) -> Result<IdentityPublicKey, StoreError> {
    hex::decode(text)
        .ok()
        .and_then(|bytes| IdentityPublicKey::from_sec1(&bytes).ok())
        .ok_or_else(|| StoreError::corrupt(what, text))
}

/// A withdrawal id read back.
pub(crate) fn id_from(what: &'static str, text: &str) -> Result<RequestDigest, StoreError> {
    text.parse().map_err(|_| StoreError::corrupt(what, text))
}

/// [`StoreError::IllegalTransition`] unless `from` may become `to`.
pub(crate) fn require(
    id: &RequestDigest,
    from: WithdrawalState,
    to: WithdrawalState,
) -> Result<(), StoreError> {
    if from.may_become(to) {
        Ok(())
    } else {
        Err(StoreError::IllegalTransition { id: *id, from, to })
    }
}

/// [`StoreError::Mismatch`] unless a document names withdrawal `id`.
pub(crate) fn check_names(
    kind: &'static str,
    id: &RequestDigest,
    found: &RequestDigest,
) -> Result<(), StoreError> {
    if found == id {
        Ok(())
    } else {
        Err(StoreError::Mismatch {
            kind,
            id: *id,
            found: *found,
        })
    }
}

/// A `withdrawals` row: id, document, state, created_at, updated_at.
pub(crate) type RecordRow = (String, Vec<u8>, String, i64, i64);

/// The columns of a [`RecordRow`], in order.
pub(crate) const RECORD_COLUMNS: &str = "id, document, state, created_at, updated_at";

/// A [`RecordRow`] read back.
pub(crate) fn record_from(row: RecordRow) -> Result<WithdrawalRecord, StoreError> {
    let (id, request, state, created_at, updated_at) = row;
    Ok(WithdrawalRecord {
        id: id_from("withdrawals.id", &id)?,
        request,
        state: state.parse()?,
        created_at: uint("withdrawals.created_at", created_at)?,
        updated_at: uint("withdrawals.updated_at", updated_at)?,
    })
}

/// What the stores check of a packages document before their transaction:
/// it names withdrawal `id`, and `session` is not 0 (which marks a replaced
/// approval). Returns its digest and the digests of the approvals it uses,
/// in hex.
pub(crate) fn packages_keys(
    id: &RequestDigest,
    session: u32,
    packages: &PackagesDocument,
) -> Result<(String, Vec<String>), StoreError> {
    check_names("withdrawal-packages", id, &packages.body().request_digest)?;
    if session == 0 {
        return Err(StoreError::OutOfRange {
            what: "session",
            value: 0,
        });
    }
    let approvals = packages
        .body()
        .approvals
        .iter()
        .map(|a| a.digest(packages.group()).map(hex::encode))
        .collect::<Result<Vec<_>, _>>()
        .map_err(StoreError::Digest)?;
    Ok((hex::encode(packages.digest()?), approvals))
}

/// An answer's keys: the shares' digest, the member, and the next
/// approval with its digest (hex).
pub(crate) type AnswerKeys<'a> = (String, String, Option<(&'a ApprovalDocument, String)>);

/// What the stores check of an answer before their transaction: the shares
/// and the next approval name withdrawal `id` and come from one member.
/// Returns the shares' digest, the member, and the next approval with its
/// digest, in hex.
pub(crate) fn answer_keys<'a>(
    id: &RequestDigest,
    shares: &SharesDocument,
    next: Option<&'a ApprovalDocument>,
) -> Result<AnswerKeys<'a>, StoreError> {
    let signed = shares.body();
    check_names("withdrawal-shares", id, &signed.body.request_digest)?;
    let next = match next {
        Some(a) => {
            check_names("withdrawal-approval", id, &a.body().body.request_digest)?;
            if a.body().signer != signed.signer {
                return Err(StoreError::Conflict {
                    what: "next approval of another member than the shares'",
                    withdrawal: Some(*id),
                });
            }
            Some((a, hex::encode(a.digest()?)))
        }
        None => None,
    };
    Ok((
        hex::encode(shares.digest()?),
        member_text(&signed.signer),
        next,
    ))
}

impl ApprovalUse {
    /// From the `used_in` column: NULL unused, 0 replaced, else the session.
    pub(crate) fn from_column(used_in: Option<i64>) -> Result<Self, StoreError> {
        Ok(match used_in {
            None => ApprovalUse::Unused,
            Some(0) => ApprovalUse::Replaced,
            Some(n) => ApprovalUse::UsedIn(
                u32::try_from(n)
                    .map_err(|_| StoreError::corrupt("approvals.used_in", &n.to_string()))?,
            ),
        })
    }
}
