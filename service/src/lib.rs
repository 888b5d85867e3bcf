//! Kura as a service: the coordinator server, its stores, the signer
//! daemon, the clients, and the ceremony mailbox.
//!
//! | module | what it is |
//! |---|---|
//! | [`server`] | the coordinator's HTTPS server ([`server::serve`]) and a ceremony mailbox alone ([`server::relay_router`]) |
//! | [`coordinator`] | what the server does: logins, withdrawals, ROAST signing sessions |
//! | [`api`] | the routes and the JSON they carry (version 1) |
//! | [`store`], [`sqlite`], [`pg`] | where the coordinator keeps everything: [`SqliteStore`], [`PostgresStore`] |
//! | [`daemon`] | a custodian's signer daemon |
//! | [`client`] | an HTTPS client of the coordinator (requesters, daemons) |
//! | [`relay`], [`ceremony`] | the ceremony mailbox (DKG, refresh, repair): server side, participant side ([`ceremony::run_dkg`]) |
//! | [`tls`] | certificates and pinning |
//!
//! # The store
//!
//! The coordinator server (issue 12) keeps everything it is told and
//! everything it decides here, so that a restarted coordinator continues
//! every withdrawal in flight: the [`Store`] trait speaks the domain
//! (withdrawals, their documents and state, members' mailboxes, login
//! challenges and tokens), [`SqliteStore`] implements it in one SQLite file
//! and [`PostgresStore`] in a PostgreSQL database several coordinators share.
//!
//! ```
//! use kura_service::{SqliteStore, Store};
//!
//! let dir = tempfile::tempdir()?;
//! let store = SqliteStore::open(dir.path().join("coordinator.db"))?;
//! assert!(store.list_open()?.is_empty());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # What the store guarantees
//!
//! - **Durable before it returns.** A method that changed something
//!   returns `Ok` only after its transaction committed; SQLite runs in WAL
//!   mode with `synchronous=FULL`, so the commit is fsynced and survives a
//!   crash or a power cut. The coordinator may then answer or send on.
//! - **One transaction per operation.** Every change (a submit, an approval,
//!   a transition…) and the mailbox events it causes are one `BEGIN
//!   IMMEDIATE` transaction: all of it or nothing. Reads run in one read
//!   transaction and see one snapshot.
//! - **Legal transitions only.** [`WithdrawalState`] lists the states; the
//!   store refuses any other move ([`StoreError::IllegalTransition`]):
//!   nothing is finalized twice, nothing is approved once final.
//! - **Idempotent, not overwritable.** Re-posting a document already
//!   recorded is a no-op ([`Submitted::Duplicate`], [`Added::Duplicate`]);
//!   a *different* document where one is recorded is a
//!   [`StoreError::Conflict`]. Documents are kept as the exact bytes
//!   received and never re-serialized; their digests are wallet-core's
//!   ([`DocumentDigest`]).
//! - **One writer.** One coordinator per file: opening takes an exclusive
//!   lock on `<file>.lock` ([`StoreError::InUse`] for a second opener), and
//!   within the process the connection sits behind a mutex.
//! - **Versioned schema.** [`sqlite::MIGRATIONS`] are applied by hand on
//!   `PRAGMA user_version`, all in one transaction; a database from a newer
//!   Kura is refused ([`StoreError::TooNew`]) and a file of another
//!   application too ([`StoreError::NotKura`], by `PRAGMA application_id`).
//!   `service/tests/schema.sql` pins the schema, so changing it takes a new
//!   migration and a deliberate update of that file.
//! - **Mailbox cursors never skip.** Each member has a counter, bumped in
//!   the transaction that causes the event: a member's events are numbered
//!   1, 2, 3… in commit order, so a reader at cursor `n` can never later
//!   find a new event `≤ n` ([`Store::work_for`]).
//!
//! The store checks what it can see without keys: a document's envelope
//! and shape ([`Received::decode`]) and that it names the withdrawal it is
//! added to. Signatures, roster membership and policy are the coordinator's
//! checks, made before it calls the store (and the signers check everything
//! again: the coordinator and its store are untrusted).
//!
//! **Cost.** A durable write is one fsync of the WAL: measured here (ext4,
//! `cargo bench -p kura-service`, see BENCHMARKS.md) a submit with three
//! mailbox events takes 3–4 ms and a read about 20 µs. At the issue's goal
//! of ≥ 100 withdrawals/s, with ten or more writes each, one fsync per
//! operation is too slow: the server will give the connection to one
//! writer thread that commits what is queued as one transaction (group
//! commit, each operation in its own savepoint so that one refused
//! operation does not undo the others), answering each caller only after
//! that commit.
//!
//! # Schema (version 1)
//!
//! Keys are text: ids are request digests and members identity keys
//! (compressed SEC1), both in lowercase hex. Times are Unix seconds from the
//! store's [`Clock`](sqlite::Clock). Tables are `STRICT`.
//!
//! | table | key | columns | holds |
//! |---|---|---|---|
//! | `withdrawals` | `id` | `requester`, `request_id` (unique together), `document`, `state`, `created_at`, `updated_at` | each signed request and where it is; partial index `withdrawals_open` on the open ones |
//! | `approvals` | `withdrawal`, `member` | `digest`, `document`, `received_at` | one approval per member |
//! | `packages` | `withdrawal`, `session` | `digest`, `document`, `created_at` | the signing packages of each session |
//! | `shares` | `withdrawal`, `session`, `member` | `digest`, `document`, `received_at`; `(withdrawal, session)` references `packages` | one shares document per member and session |
//! | `results` | `withdrawal` | `psbt` + `tx`, or `reason`; `decided_at` | how it ended |
//! | `mailboxes` | `member` | `seq` | each member's event counter |
//! | `events` | `member`, `seq` | `withdrawal`, `kind`, `created_at` | each member's mailbox |
//! | `challenges` | `challenge` (32 bytes) | `member`, `expires_at` | login challenges, single use |
//! | `tokens` | `hash` (SHA-256 of the token) | `member`, `role`, `expires_at` | login tokens (never the token) |
//!
//! Schema version 2 (ROAST) keys `approvals` by `(withdrawal, digest)`:
//! a member has one approval per session it answered, each with its use
//! (`used_in`: the session that used it, 0 when replaced unused, NULL while
//! unused), and adds `set_aside` (members set aside in a session: invalid
//! shares, kept as evidence, or a missed deadline).
//!
//! # PostgreSQL
//!
//! [`PostgresStore`] implements the same trait in a database several
//! coordinators share (same tables, `kura_schema` for the version). It
//! does not use leases with fencing epochs, as planned here before: every
//! write locks its withdrawal's row (`SELECT … FOR UPDATE`) and the store's
//! checks refuse whatever a second coordinator would duplicate (a second
//! packages document for a session, an approval in two sessions, a second
//! result), so safety needs no owner; [`Store::drive`] adds a session-level
//! advisory lock per withdrawal so that only one coordinator works on it at
//! a time, released by PostgreSQL the moment its holder's connection dies —
//! failover without a lease to expire. Mailbox counters are rows bumped in
//! the event's transaction (gapless in commit order, as in SQLite), and a
//! `NOTIFY` there wakes every coordinator's long polls ([`Store::watch`]).
#![forbid(unsafe_code)]
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
#![cfg_attr(
    test,
    allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]
#![warn(missing_docs)]

pub mod api;
pub mod ceremony;
pub mod client;
pub mod coordinator;
pub mod daemon;
pub mod error;
pub mod pg;
pub mod relay;
pub mod server;
pub mod sqlite;
pub mod store;
pub mod tls;

pub use coordinator::{Coordinator, CoordinatorConfig};
pub use error::{ClientError, MailboxError, ServiceError, StoreError, TlsError};
pub use pg::PostgresStore;
pub use sqlite::SqliteStore;
pub use store::{
    Added, ApprovalDocument, ApprovalUse, DocumentDigest, DriveGuard, EventKind, MemberDocument,
    Outcome, PackagesDocument, Received, RequestDocument, Role, SessionPackages, SessionShares,
    SetAside, SetAsideReason, SharesDocument, Store, Submitted, Token, WithdrawalRecord,
    WithdrawalState, Work, WorkItem,
};
pub use tls::{CertFingerprint, TlsIdentity};
