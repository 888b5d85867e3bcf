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
