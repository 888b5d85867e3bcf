//! [`StoreError`], the one error of every store operation.

use std::path::PathBuf;

use wallet_core::format::FormatError;
use wallet_core::RequestDigest;

use crate::store::WithdrawalState;

/// Why a store operation failed. The lower layer's error is kept as the
/// source.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// Something different is already recorded where this would go: another
    /// request with the same requester and `request_id`, another approval by
    /// the same member, other packages for the same session, other shares by
    /// the same member in the same session, an existing challenge or token.
    #[error("a different {what} is already recorded{}", withdrawal_suffix(.withdrawal))]
    Conflict {
        /// What was already there.
        what: &'static str,
        /// The withdrawal it belongs to, where it belongs to one (for a
        /// request, the id of the request already recorded).
        withdrawal: Option<RequestDigest>,
    },
    /// No such withdrawal (or signing session).
    #[error("no {what} {key}")]
    NotFound {
        /// What was looked for.
        what: &'static str,
        /// By which key, as text.
        key: String,
    },
    /// The operation would move a withdrawal where its state does not allow.
    #[error("withdrawal {id}: not allowed from state {from} to {to}")]
    IllegalTransition {
        /// The withdrawal.
        id: RequestDigest,
        /// Its state.
        from: WithdrawalState,
        /// The state the operation needs to reach.
        to: WithdrawalState,
    },
    /// A document that names another withdrawal than the one it was added to.
    #[error("the {kind} document names request {found}, not withdrawal {id}")]
    Mismatch {
        /// The document's kind.
        kind: &'static str,
        /// The withdrawal it was added to.
        id: RequestDigest,
        /// The request digest inside the document.
        found: RequestDigest,
    },
    /// Another coordinator has this database open (its lock file is held).
    #[error("the database is in use by another coordinator (lock {} is held)", .lock.display())]
    InUse {
        /// The lock file.
        lock: PathBuf,
    },
    /// The database was migrated by a newer Kura than this one.
    #[error(
        "the database has schema version {found}; this build knows up to {supported}: upgrade Kura"
    )]
    TooNew {
        /// The database's `user_version`.
        found: i64,
        /// The newest this build knows.
        supported: i64,
    },
    /// A database file of another application.
    #[error("not a Kura coordinator database (application id {found:#x})")]
    NotKura {
        /// The file's `application_id`.
        found: i64,
    },
    /// SQLite would not switch to write-ahead logging (e.g. an in-memory
    /// database or a file system without shared memory).
    #[error("the database refused journal_mode=WAL (it is {found})")]
    NotWal {
        /// The journal mode in force.
        found: String,
    },
    /// A stored value this build cannot read back: the file was altered.
    #[error("stored {what} is unreadable: {value}")]
    Corrupt {
        /// The column.
        what: &'static str,
        /// The value, shortened.
        value: String,
    },
    /// A number out of the range SQLite stores (above `i64::MAX`).
    #[error("{what} {value} is out of range")]
    OutOfRange {
        /// Which number.
        what: &'static str,
        /// Its value.
        value: u64,
    },
    /// wallet-core could not compute a document's digest.
    #[error("cannot compute the document's digest")]
    Digest(#[source] FormatError),
    /// The lock file could not be created or locked.
    #[error("cannot use lock file {}", .path.display())]
    Lock {
        /// The lock file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// SQLite failed.
    #[error("sqlite")]
    Sqlite(#[from] rusqlite::Error),
    /// PostgreSQL failed (or could not be reached).
    #[error("postgresql")]
    Postgres(#[from] postgres::Error),
    /// A PostgreSQL database that is not a Kura coordinator's: tables
    /// without Kura's schema marker.
    #[error("the PostgreSQL database is not a Kura coordinator's ({0})")]
    NotKuraPostgres(String),
    /// A thread panicked while it held the connection; the store refuses to
    /// go on with it.
    #[error("the store's connection was poisoned by a panic")]
    Poisoned,
}

fn withdrawal_suffix(id: &Option<RequestDigest>) -> String {
    match id {
        Some(id) => format!(" (withdrawal {id})"),
        None => String::new(),
    }
}

impl StoreError {
    pub(crate) fn corrupt(what: &'static str, value: &str) -> Self {
        StoreError::Corrupt {
            what,
            value: value.chars().take(80).collect(),
        }
    }

    pub(crate) fn not_found(what: &'static str, key: impl ToString) -> Self {
        StoreError::NotFound {
            what,
            key: key.to_string(),
        }
    }
}

/// Why the coordinator's TLS identity or a client's pin could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// Not `sha256:` and 64 lowercase hex digits.
    #[error("a certificate fingerprint is `sha256:` and 64 lowercase hex digits")]
    BadFingerprint,
    /// The certificate could not be made.
    #[error("cannot make the certificate")]
    Generate(#[source] rcgen::Error),
    /// The key could not be sealed or unsealed.
    #[error("cannot seal or open the TLS key: {0}")]
    Seal(String),
    /// The passphrase does not open the sealed key.
    #[error("the passphrase does not open the coordinator's TLS key")]
    WrongPassphrase,
    /// rustls refused the configuration.
    #[error("TLS configuration")]
    Config(#[source] rustls::Error),
}

/// What a client of the service gets back when a call fails.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The coordinator could not be reached, or the connection broke
    /// (including a certificate that does not match the pin).
    #[error("cannot reach the coordinator at {url}")]
    Connect {
        /// The coordinator's URL.
        url: String,
        /// Why.
        #[source]
        source: reqwest::Error,
    },
    /// The coordinator answered with an error.
    #[error("the coordinator refused: {status} {kind}: {message}")]
    Refused {
        /// The HTTP status.
        status: u16,
        /// The error's kind (see [`crate::api::ErrorBody`]).
        kind: String,
        /// Its message, made inert for a terminal.
        message: String,
    },
    /// The coordinator's answer is not what the API defines.
    #[error("the coordinator's answer is malformed: {0}")]
    Malformed(String),
    /// Signing the login with the keystore failed.
    #[error("cannot sign the login")]
    Keystore(#[from] wallet_core::KeystoreError),
    /// TLS setup.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// What was to be sent could not be put into the API's JSON.
    #[error("cannot encode the request: {0}")]
    Encode(String),
}

impl ClientError {
    /// The HTTP status of a refusal.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Refused { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// Why a ceremony run over the mailbox ([`crate::ceremony`]) stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MailboxError {
    /// The mailbox could not be reached, or refused.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The ceremony's own checks refused what arrived (a forged or altered
    /// message: not authentic), or this participant's step failed.
    #[error(transparent)]
    Ceremony(#[from] wallet_core::ceremony::CeremonyError),
    /// A document of this participant's could not be encoded.
    #[error("cannot encode a ceremony document")]
    Format(#[from] FormatError),
    /// Not every message arrived in time: the mailbox withheld them, or
    /// their authors have not sent them.
    #[error("after {}s, no {what} message from {}: they have not sent it, or the mailbox withheld it", waited.as_secs(), missing.join(", "))]
    Incomplete {
        /// The kind of message awaited.
        what: &'static str,
        /// Whose are missing (labels).
        missing: Vec<String>,
        /// How long it waited.
        waited: std::time::Duration,
    },
}

/// Why the coordinator refused or failed a call. Each maps to one HTTP
/// status and one stable kind ([`ServiceError::kind`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServiceError {
    /// No valid login.
    #[error("not authenticated: {0}")]
    Unauthenticated(String),
    /// Logged in, but not allowed this.
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// No such withdrawal or session (or not the caller's to see).
    #[error("not found: {0}")]
    NotFound(String),
    /// Not a Kura document of the expected kind and group.
    #[error("not an acceptable document")]
    BadDocument(#[source] FormatError),
    /// Well-formed but wrong for this call.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// A body over the limit.
    #[error("the body is larger than {limit} bytes")]
    TooLarge {
        /// The limit.
        limit: usize,
    },
    /// A bounded queue or mailbox is full.
    #[error("full: {0}")]
    Full(String),
    /// The store refused or failed.
    #[error(transparent)]
    Store(StoreError),
    /// Something on the coordinator's side broke.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ServiceError {
    /// The HTTP status it is answered with.
    pub fn status(&self) -> u16 {
        match self {
            ServiceError::Unauthenticated(_) => 401,
            ServiceError::Forbidden(_) => 403,
            ServiceError::NotFound(_) => 404,
            ServiceError::Full(_) => 429,
            ServiceError::BadDocument(FormatError::TooLarge { .. })
            | ServiceError::TooLarge { .. } => 413,
            ServiceError::BadDocument(_) | ServiceError::BadRequest(_) => 400,
            ServiceError::Store(StoreError::NotFound { .. }) => 404,
            ServiceError::Store(StoreError::Conflict { .. })
            | ServiceError::Store(StoreError::IllegalTransition { .. }) => 409,
            ServiceError::Store(StoreError::Mismatch { .. }) => 400,
            ServiceError::Store(_) | ServiceError::Internal(_) => 500,
        }
    }

    /// The stable kind named in the answer's [`crate::api::ErrorBody`].
    pub fn kind(&self) -> &'static str {
        match self.status() {
            401 => "unauthenticated",
            403 => "forbidden",
            404 => "not-found",
            409 => "conflict",
            413 => "too-large",
            429 => "full",
            400 if matches!(self, ServiceError::BadDocument(_)) => "bad-document",
            400 => "bad-request",
            _ => "internal",
        }
    }
}

/// An error and its causes as one line for a person, inert and at most
/// `limit` characters.
pub(crate) fn chain_text(e: &dyn std::error::Error, limit: usize) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    wallet_core::display::inert_bounded(&text, limit)
}
