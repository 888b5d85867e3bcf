//! [`SqliteStore`]: the [`Store`] in one SQLite file.

use std::collections::BTreeSet;
use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection, OptionalExtension, Transaction, TransactionBehavior};
use wallet_core::{IdentityPublicKey, RequestDigest};

use crate::error::StoreError;
use crate::store::{
    answer_keys, check_names, id_from, int, member_from, member_text, packages_keys, record_from,
    require, uint, RecordRow, RECORD_COLUMNS,
};
use crate::store::{
    Added, ApprovalDocument, ApprovalUse, EventKind, MemberDocument, Outcome, PackagesDocument,
    RequestDocument, Role, SessionPackages, SessionShares, SetAside, SharesDocument, Store,
    Submitted, Token, WithdrawalRecord, WithdrawalState, Work, WorkItem,
};

/// The schema's migrations, in order: step `i` takes a database from
/// `user_version = i` to `i + 1`. Never edit a released step; append one.
/// `service/tests/schema.sql` pins what they produce.
pub const MIGRATIONS: &[&str] = &[
    // 1: the first schema.
    r#"
CREATE TABLE withdrawals (
    id          TEXT PRIMARY KEY,
    requester   TEXT NOT NULL,
    request_id  TEXT NOT NULL,
    document    BLOB NOT NULL,
    state       TEXT NOT NULL CHECK (state IN ('submitted', 'approving', 'signing', 'finalized', 'refused')),
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    UNIQUE (requester, request_id)
) STRICT;

CREATE INDEX withdrawals_open ON withdrawals (created_at)
    WHERE state NOT IN ('finalized', 'refused');

CREATE TABLE approvals (
    withdrawal  TEXT NOT NULL REFERENCES withdrawals (id),
    member      TEXT NOT NULL,
    digest      TEXT NOT NULL,
    document    BLOB NOT NULL,
    received_at INTEGER NOT NULL,
    PRIMARY KEY (withdrawal, member)
) STRICT;

CREATE TABLE packages (
    withdrawal  TEXT NOT NULL REFERENCES withdrawals (id),
    session     INTEGER NOT NULL CHECK (session >= 0),
    digest      TEXT NOT NULL,
    document    BLOB NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (withdrawal, session)
) STRICT;

CREATE TABLE shares (
    withdrawal  TEXT NOT NULL,
    session     INTEGER NOT NULL,
    member      TEXT NOT NULL,
    digest      TEXT NOT NULL,
    document    BLOB NOT NULL,
    received_at INTEGER NOT NULL,
    PRIMARY KEY (withdrawal, session, member),
    FOREIGN KEY (withdrawal, session) REFERENCES packages (withdrawal, session)
) STRICT;

CREATE TABLE results (
    withdrawal  TEXT PRIMARY KEY REFERENCES withdrawals (id),
    psbt        BLOB,
    tx          BLOB,
    reason      TEXT,
    decided_at  INTEGER NOT NULL,
    CHECK ((psbt IS NOT NULL AND tx IS NOT NULL AND reason IS NULL)
        OR (psbt IS NULL AND tx IS NULL AND reason IS NOT NULL))
) STRICT;

CREATE TABLE mailboxes (
    member      TEXT PRIMARY KEY,
    seq         INTEGER NOT NULL CHECK (seq > 0)
) STRICT;

CREATE TABLE events (
    member      TEXT NOT NULL REFERENCES mailboxes (member),
    seq         INTEGER NOT NULL,
    withdrawal  TEXT NOT NULL REFERENCES withdrawals (id),
    kind        TEXT NOT NULL CHECK (kind IN ('submitted', 'packages', 'finalized', 'refused')),
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (member, seq)
) STRICT, WITHOUT ROWID;

CREATE TABLE challenges (
    challenge   BLOB PRIMARY KEY CHECK (length(challenge) = 32),
    member      TEXT NOT NULL,
    expires_at  INTEGER NOT NULL
) STRICT;

CREATE TABLE tokens (
    hash        BLOB PRIMARY KEY CHECK (length(hash) = 32),
    member      TEXT NOT NULL,
    role        TEXT NOT NULL CHECK (role IN ('signer', 'requester')),
    expires_at  INTEGER NOT NULL
) STRICT;
"#,
    // 2: retried signing sessions (ROAST). A member may have several
    // approvals of a withdrawal (each session's answer carries the next), so
    // approvals are keyed by digest and record their use: `used_in` is the
    // session whose packages used it, 0 when a later approval replaced it
    // unused, NULL while unused. Approvals of withdrawals that already had
    // packages are marked used by their first session: nothing recorded
    // says which were, and an approval wrongly offered again would only be
    // refused by its signer, while one wrongly kept back costs nothing.
    // `set_aside` records members set aside in a session.
    r#"
CREATE TABLE approvals_v2 (
    withdrawal  TEXT NOT NULL REFERENCES withdrawals (id),
    member      TEXT NOT NULL,
    digest      TEXT NOT NULL,
    document    BLOB NOT NULL,
    received_at INTEGER NOT NULL,
    used_in     INTEGER CHECK (used_in >= 0),
    PRIMARY KEY (withdrawal, digest)
) STRICT;

INSERT INTO approvals_v2 (withdrawal, member, digest, document, received_at, used_in)
    SELECT a.withdrawal, a.member, a.digest, a.document, a.received_at,
           (SELECT min(p.session) FROM packages p WHERE p.withdrawal = a.withdrawal)
    FROM approvals a ORDER BY a.rowid;

DROP TABLE approvals;
ALTER TABLE approvals_v2 RENAME TO approvals;

CREATE TABLE set_aside (
    withdrawal  TEXT NOT NULL,
    session     INTEGER NOT NULL,
    member      TEXT NOT NULL,
    reason      TEXT NOT NULL CHECK (reason IN ('invalid-shares', 'missed-deadline')),
    detail      TEXT NOT NULL,
    document    BLOB,
    decided_at  INTEGER NOT NULL,
    PRIMARY KEY (withdrawal, session, member),
    FOREIGN KEY (withdrawal, session) REFERENCES packages (withdrawal, session)
) STRICT;
"#,
];

/// Approvals one member may have recorded for one withdrawal (its first,
/// and one per session it answered, with room for a signer that
/// re-approved after losing its state): a member cannot fill the store.
pub const MAX_APPROVALS_PER_MEMBER: i64 = 32;

/// `PRAGMA application_id` of a Kura coordinator database: "Kura" in ASCII.
pub const APPLICATION_ID: i64 = 0x4b75_7261;

/// How long a connection waits for a lock held by a reader or a checkpoint
/// before failing with `SQLITE_BUSY`.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The store's clock: Unix seconds. Timestamps and the expiry of
/// challenges and tokens all read it.
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

fn system_clock() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The [`Store`] in one SQLite file, opened by one coordinator at a time.
///
/// Opening takes an exclusive lock on `<file>.lock` (held until the store is
/// dropped), switches the file to write-ahead logging, sets
/// `synchronous=FULL`, `foreign_keys=ON` and a busy timeout, and brings the
/// schema up to date. Every change runs in one `BEGIN IMMEDIATE`
/// transaction, committed (the WAL fsynced) before the method returns.
/// The connection sits behind a mutex: calls from several threads are
/// serialized.
pub struct SqliteStore {
    // Dropped in this order: the connection is closed before the lock goes.
    conn: Mutex<Connection>,
    clock: Clock,
    path: PathBuf,
    lock_path: PathBuf,
    _lock: File,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .field("lock_path", &self.lock_path)
            .finish_non_exhaustive()
    }
}

/// The lock file of database `path`: the same name with `.lock` appended.
pub fn lock_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` with the system
    /// clock.
    ///
    /// # Errors
    /// [`StoreError::InUse`] if another store holds the file;
    /// [`StoreError::TooNew`] for a schema newer than this build;
    /// [`StoreError::NotKura`] for another application's database;
    /// [`StoreError::NotWal`]; [`StoreError::Lock`]; [`StoreError::Sqlite`].
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::open_with_clock(path, Arc::new(system_clock))
    }

    /// As [`SqliteStore::open`], with `clock` for every timestamp and expiry.
    ///
    /// # Errors
    /// As [`SqliteStore::open`].
    pub fn open_with_clock(path: impl AsRef<Path>, clock: Clock) -> Result<Self, StoreError> {
        let path = path.as_ref().to_path_buf();
        let lock_path = lock_path(&path);
        let lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(|source| StoreError::Lock {
                path: lock_path.clone(),
                source,
            })?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => return Err(StoreError::InUse { lock: lock_path }),
            Err(TryLockError::Error(source)) => {
                return Err(StoreError::Lock {
                    path: lock_path,
                    source,
                })
            }
        }
        let mut conn = Connection::open(&path)?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        // Refuse a foreign or newer file before changing anything in it.
        check_identity(&conn)?;
        let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::NotWal { found: mode });
        }
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        // Every statement the store runs stays prepared (about 40).
        conn.set_prepared_statement_cache_capacity(64);
        let synchronous: i64 = conn.query_row("PRAGMA synchronous", [], |r| r.get(0))?;
        let foreign_keys: i64 = conn.query_row("PRAGMA foreign_keys", [], |r| r.get(0))?;
        if synchronous != 2 || foreign_keys != 1 {
            return Err(StoreError::corrupt(
                "pragmas (synchronous, foreign_keys)",
                &format!("{synchronous}, {foreign_keys}"),
            ));
        }
        migrate(&mut conn)?;
        Ok(SqliteStore {
            conn: Mutex::new(conn),
            clock,
            path,
            lock_path,
            _lock: lock,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The schema version this build migrates to (`MIGRATIONS.len()`).
    pub fn schema_version() -> i64 {
        i64::try_from(MIGRATIONS.len()).unwrap_or(i64::MAX)
    }

    fn connection(&self) -> Result<MutexGuard<'_, Connection>, StoreError> {
        self.conn.lock().map_err(|_| StoreError::Poisoned)
    }

    fn now(&self) -> Result<i64, StoreError> {
        int("the clock", (self.clock)())
    }

    /// Runs `f` in one IMMEDIATE transaction, committed if `f` succeeds and
    /// rolled back otherwise.
    fn write<R>(
        &self,
        f: impl FnOnce(&Transaction<'_>, i64) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        let now = self.now()?;
        let mut conn = self.connection()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let out = f(&tx, now)?;
        tx.commit()?;
        Ok(out)
    }

    /// Runs `f` in one read transaction: all its queries see one snapshot.
    fn read<R>(
        &self,
        f: impl FnOnce(&Transaction<'_>, i64) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        let now = self.now()?;
        let mut conn = self.connection()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Deferred)?;
        let out = f(&tx, now)?;
        tx.finish()?;
        Ok(out)
    }
}

fn check_identity(conn: &Connection) -> Result<(), StoreError> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let application: i64 = conn.query_row("PRAGMA application_id", [], |r| r.get(0))?;
    let objects: i64 = conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))?;
    let fresh = version == 0 && application == 0 && objects == 0;
    if !fresh && application != APPLICATION_ID {
        return Err(StoreError::NotKura { found: application });
    }
    let supported = SqliteStore::schema_version();
    if version > supported {
        return Err(StoreError::TooNew {
            found: version,
            supported,
        });
    }
    Ok(())
}

/// Brings the schema to [`MIGRATIONS`]`.len()` in one IMMEDIATE transaction
/// (`user_version` lives in the file header, so it commits with the steps).
fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let found: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let supported = SqliteStore::schema_version();
    if found > supported {
        return Err(StoreError::TooNew { found, supported });
    }
    let done = usize::try_from(found)
        .map_err(|_| StoreError::corrupt("user_version", &found.to_string()))?;
    if found == 0 {
        // A new database: mark it as Kura's (checked by every later open).
        tx.execute_batch(&format!("PRAGMA application_id = {APPLICATION_ID}"))?;
    }
    for step in MIGRATIONS.iter().skip(done) {
        tx.execute_batch(step)?;
    }
    if found < supported {
        tx.execute_batch(&format!("PRAGMA user_version = {supported}"))?;
    }
    tx.commit()?;
    Ok(())
}

fn state_of(tx: &Transaction<'_>, id: &RequestDigest) -> Result<WithdrawalState, StoreError> {
    let state: Option<String> = tx
        .row(
            "SELECT state FROM withdrawals WHERE id = ?1",
            [id.to_string()],
            |r| r.get(0),
        )
        .optional()?;
    match state {
        Some(s) => s.parse(),
        None => Err(StoreError::not_found("withdrawal", id)),
    }
}

fn set_state(
    tx: &Transaction<'_>,
    id: &RequestDigest,
    state: WithdrawalState,
    now: i64,
) -> Result<(), StoreError> {
    tx.exec(
        "UPDATE withdrawals SET state = ?1, updated_at = ?2 WHERE id = ?3",
        params![state.as_str(), now, id.to_string()],
    )?;
    Ok(())
}

/// Appends an event to each member's mailbox, bumping the member's counter
/// in the caller's transaction.
fn notify(
    tx: &Transaction<'_>,
    members: &[IdentityPublicKey],
    id: &RequestDigest,
    kind: EventKind,
    now: i64,
) -> Result<(), StoreError> {
    let members: BTreeSet<String> = members.iter().map(member_text).collect();
    let mut bump = tx.prepare_cached(
        "INSERT INTO mailboxes (member, seq) VALUES (?1, 1) \
         ON CONFLICT (member) DO UPDATE SET seq = seq + 1 RETURNING seq",
    )?;
    let mut insert = tx.prepare_cached(
        "INSERT INTO events (member, seq, withdrawal, kind, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?;
    for member in &members {
        let seq: i64 = bump.query_row([member], |r| r.get(0))?;
        insert.execute(params![member, seq, id.to_string(), kind.as_str(), now])?;
    }
    Ok(())
}

/// Whether a document with `digest` is already at the place selected by
/// `sql` (parameters `keys`): `Some(true)` the same one, `Some(false)` a
/// different one, `None` nothing.
fn existing(
    tx: &Transaction<'_>,
    sql: &str,
    keys: impl rusqlite::Params,
    digest: &str,
) -> Result<Option<bool>, StoreError> {
    let found: Option<String> = tx.row(sql, keys, |r| r.get(0)).optional()?;
    Ok(found.map(|d| d == digest))
}

/// Records `approval` (digest `digest`) in the caller's transaction: a
/// duplicate is nothing, a new one replaces its member's unused one.
fn insert_approval(
    tx: &Transaction<'_>,
    id: &RequestDigest,
    approval: &ApprovalDocument,
    digest: &str,
    standalone: bool,
    now: i64,
) -> Result<Added, StoreError> {
    let state = state_of(tx, id)?;
    let member = member_text(&approval.body().signer);
    let known: Option<i64> = tx
        .row(
            "SELECT 1 FROM approvals WHERE withdrawal = ?1 AND digest = ?2",
            params![id.to_string(), digest],
            |r| r.get(0),
        )
        .optional()?;
    if known.is_some() {
        return Ok(Added::Duplicate);
    }
    let kept: i64 = tx.row(
        "SELECT count(*) FROM approvals WHERE withdrawal = ?1 AND member = ?2",
        params![id.to_string(), member],
        |r| r.get(0),
    )?;
    if kept >= MAX_APPROVALS_PER_MEMBER {
        return Err(StoreError::Conflict {
            what: "approval beyond what one member may keep per withdrawal",
            withdrawal: Some(*id),
        });
    }
    if standalone {
        let owes: Option<i64> = tx
            .row(
                "SELECT 1 FROM approvals a WHERE a.withdrawal = ?1 AND a.member = ?2 AND a.used_in > 0 \
                 AND NOT EXISTS (SELECT 1 FROM shares s WHERE s.withdrawal = a.withdrawal \
                 AND s.session = a.used_in AND s.member = a.member)",
                params![id.to_string(), member],
                |r| r.get(0),
            )
            .optional()?;
        if owes.is_some() {
            return Err(StoreError::Conflict {
                what: "approval by a member that owes a session its shares",
                withdrawal: Some(*id),
            });
        }
    }
    let to = if state == WithdrawalState::Signing {
        WithdrawalState::Signing
    } else {
        WithdrawalState::Approving
    };
    require(id, state, to)?;
    tx.exec(
        "UPDATE approvals SET used_in = 0 \
         WHERE withdrawal = ?1 AND member = ?2 AND used_in IS NULL",
        params![id.to_string(), member],
    )?;
    tx.exec(
        "INSERT INTO approvals (withdrawal, member, digest, document, received_at) \
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![id.to_string(), member, digest, approval.bytes(), now],
    )?;
    set_state(tx, id, to, now)?;
    Ok(Added::New)
}

/// Records one member's shares in the caller's transaction.
fn insert_shares(
    tx: &Transaction<'_>,
    id: &RequestDigest,
    session: u32,
    shares: &SharesDocument,
    member: &str,
    digest: &str,
    now: i64,
) -> Result<Added, StoreError> {
    let state = state_of(tx, id)?;
    let has_session: Option<i64> = tx
        .row(
            "SELECT 1 FROM packages WHERE withdrawal = ?1 AND session = ?2",
            params![id.to_string(), session],
            |r| r.get(0),
        )
        .optional()?;
    if has_session.is_none() {
        return Err(StoreError::not_found(
            "signing session",
            format!("{id}/{session}"),
        ));
    }
    match existing(
        tx,
        "SELECT digest FROM shares WHERE withdrawal = ?1 AND session = ?2 AND member = ?3",
        params![id.to_string(), session, member],
        digest,
    )? {
        Some(true) => return Ok(Added::Duplicate),
        Some(false) => {
            return Err(StoreError::Conflict {
                what: "shares by this member in this session",
                withdrawal: Some(*id),
            })
        }
        None => {}
    }
    require(id, state, WithdrawalState::Signing)?;
    tx.exec(
        "INSERT INTO shares (withdrawal, session, member, digest, document, received_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![id.to_string(), session, member, digest, shares.bytes(), now],
    )?;
    set_state(tx, id, WithdrawalState::Signing, now)?;
    Ok(Added::New)
}

fn record_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RecordRow> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
}

impl Store for SqliteStore {
    fn submit(
        &self,
        request: &RequestDocument,
        notify_members: &[IdentityPublicKey],
    ) -> Result<Submitted, StoreError> {
        let id = RequestDigest::from_bytes(request.digest()?);
        let body = &request.body().body;
        let requester = member_text(&body.requester);
        self.write(|tx, now| {
            let known: Option<String> = tx
                .row(
                    "SELECT id FROM withdrawals WHERE id = ?1",
                    [id.to_string()],
                    |r| r.get(0),
                )
                .optional()?;
            if known.is_some() {
                return Ok(Submitted::Duplicate(id));
            }
            let taken: Option<String> = tx
                .row(
                    "SELECT id FROM withdrawals WHERE requester = ?1 AND request_id = ?2",
                    params![requester, body.request_id.as_str()],
                    |r| r.get(0),
                )
                .optional()?;
            if let Some(other) = taken {
                return Err(StoreError::Conflict {
                    what: "request with this requester and request id",
                    withdrawal: Some(id_from("withdrawals.id", &other)?),
                });
            }
            tx.exec(
                "INSERT INTO withdrawals (id, requester, request_id, document, state, created_at, updated_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
                params![
                    id.to_string(),
                    requester,
                    body.request_id.as_str(),
                    request.bytes(),
                    WithdrawalState::Submitted.as_str(),
                    now
                ],
            )?;
            notify(tx, notify_members, &id, EventKind::Submitted, now)?;
            Ok(Submitted::New(id))
        })
    }

    fn withdrawal(&self, id: &RequestDigest) -> Result<WithdrawalRecord, StoreError> {
        let row = self.read(|tx, _| {
            Ok(tx
                .row(
                    &format!("SELECT {RECORD_COLUMNS} FROM withdrawals WHERE id = ?1"),
                    [id.to_string()],
                    record_row,
                )
                .optional()?)
        })?;
        match row {
            Some(row) => record_from(row),
            None => Err(StoreError::not_found("withdrawal", id)),
        }
    }

    fn add_approval(
        &self,
        id: &RequestDigest,
        approval: &ApprovalDocument,
    ) -> Result<Added, StoreError> {
        let signed = approval.body();
        check_names("withdrawal-approval", id, &signed.body.request_digest)?;
        let digest = hex::encode(approval.digest()?);
        self.write(|tx, now| insert_approval(tx, id, approval, &digest, true, now))
    }

    fn approvals(&self, id: &RequestDigest) -> Result<Vec<MemberDocument>, StoreError> {
        let rows = self.read(|tx, _| {
            state_of(tx, id)?;
            let mut stmt = tx.prepare_cached(
                "SELECT member, document, used_in FROM approvals WHERE withdrawal = ?1 ORDER BY rowid",
            )?;
            let rows = stmt
                .query_map([id.to_string()], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, Vec<u8>>(1)?,
                        r.get::<_, Option<i64>>(2)?,
                    ))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })?;
        rows.into_iter()
            .map(|(member, document, used_in)| {
                let used = ApprovalUse::from_column(used_in)?;
                Ok(MemberDocument {
                    member: member_from("approvals.member", &member)?,
                    document,
                    used,
                })
            })
            .collect()
    }

    fn put_packages(
        &self,
        id: &RequestDigest,
        session: u32,
        packages: &PackagesDocument,
        notify_members: &[IdentityPublicKey],
    ) -> Result<Added, StoreError> {
        let (digest, approvals) = packages_keys(id, session, packages)?;
        self.write(|tx, now| {
            let state = state_of(tx, id)?;
            match existing(
                tx,
                "SELECT digest FROM packages WHERE withdrawal = ?1 AND session = ?2",
                params![id.to_string(), session],
                &digest,
            )? {
                Some(true) => return Ok(Added::Duplicate),
                Some(false) => {
                    return Err(StoreError::Conflict {
                        what: "packages document for this session",
                        withdrawal: Some(*id),
                    })
                }
                None => {}
            }
            require(id, state, WithdrawalState::Signing)?;
            tx.exec(
                "INSERT INTO packages (withdrawal, session, digest, document, created_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![id.to_string(), session, digest, packages.bytes(), now],
            )?;
            // Each approval the packages use must be recorded and unused:
            // its nonces go into this one session only.
            let mut mark = tx.prepare_cached(
                "UPDATE approvals SET used_in = ?3 \
                 WHERE withdrawal = ?1 AND digest = ?2 AND used_in IS NULL",
            )?;
            for used in &approvals {
                if mark.execute(params![id.to_string(), used, session])? != 1 {
                    return Err(StoreError::Conflict {
                        what: "packages using an approval not recorded or already used",
                        withdrawal: Some(*id),
                    });
                }
            }
            set_state(tx, id, WithdrawalState::Signing, now)?;
            notify(tx, notify_members, id, EventKind::Packages, now)?;
            Ok(Added::New)
        })
    }

    fn packages(&self, id: &RequestDigest) -> Result<Vec<SessionPackages>, StoreError> {
        self.read(|tx, _| {
            state_of(tx, id)?;
            let mut stmt = tx.prepare_cached(
                "SELECT session, document FROM packages WHERE withdrawal = ?1 ORDER BY session",
            )?;
            let rows = stmt
                .query_map([id.to_string()], |r| {
                    Ok(SessionPackages {
                        session: r.get(0)?,
                        document: r.get(1)?,
                    })
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
    }

    fn add_shares(
        &self,
        id: &RequestDigest,
        session: u32,
        shares: &SharesDocument,
        next: Option<&ApprovalDocument>,
    ) -> Result<Added, StoreError> {
        let (digest, member, next) = answer_keys(id, shares, next)?;
        self.write(|tx, now| {
            let added = insert_shares(tx, id, session, shares, &member, &digest, now)?;
            if let Some((approval, digest)) = &next {
                insert_approval(tx, id, approval, digest, false, now)?;
            }
            Ok(added)
        })
    }

    fn set_aside(&self, id: &RequestDigest, aside: &SetAside) -> Result<Added, StoreError> {
        let member = member_text(&aside.member);
        self.write(|tx, now| {
            let state = state_of(tx, id)?;
            require(id, state, WithdrawalState::Signing)?;
            let has_session: Option<i64> = tx
                .row(
                    "SELECT 1 FROM packages WHERE withdrawal = ?1 AND session = ?2",
                    params![id.to_string(), aside.session],
                    |r| r.get(0),
                )
                .optional()?;
            if has_session.is_none() {
                return Err(StoreError::not_found(
                    "signing session",
                    format!("{id}/{}", aside.session),
                ));
            }
            let inserted = tx.exec(
                "INSERT INTO set_aside (withdrawal, session, member, reason, detail, document, decided_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) \
                 ON CONFLICT (withdrawal, session, member) DO UPDATE SET reason = excluded.reason, \
                 detail = excluded.detail, document = excluded.document, decided_at = excluded.decided_at \
                 WHERE set_aside.reason = 'missed-deadline' AND excluded.reason = 'invalid-shares'",
                params![
                    id.to_string(),
                    aside.session,
                    member,
                    aside.reason.as_str(),
                    aside.detail,
                    aside.document,
                    now
                ],
            )?;
            Ok(if inserted == 1 {
                Added::New
            } else {
                Added::Duplicate
            })
        })
    }

    fn set_asides(&self, id: &RequestDigest) -> Result<Vec<SetAside>, StoreError> {
        type Row = (u32, String, String, String, Option<Vec<u8>>);
        let rows: Vec<Row> = self.read(|tx, _| {
            state_of(tx, id)?;
            let mut stmt = tx.prepare_cached(
                "SELECT session, member, reason, detail, document FROM set_aside \
                 WHERE withdrawal = ?1 ORDER BY rowid",
            )?;
            let rows = stmt
                .query_map([id.to_string()], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })?;
        rows.into_iter()
            .map(|(session, member, reason, detail, document)| {
                Ok(SetAside {
                    session,
                    member: member_from("set_aside.member", &member)?,
                    reason: reason.parse()?,
                    detail,
                    document,
                })
            })
            .collect()
    }

    fn shares(&self, id: &RequestDigest) -> Result<Vec<SessionShares>, StoreError> {
        let rows = self.read(|tx, _| {
            state_of(tx, id)?;
            let mut stmt = tx.prepare_cached(
                "SELECT session, member, document FROM shares WHERE withdrawal = ?1 \
                 ORDER BY session, rowid",
            )?;
            let rows = stmt
                .query_map([id.to_string()], |r| {
                    Ok((
                        r.get::<_, u32>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, Vec<u8>>(2)?,
                    ))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })?;
        rows.into_iter()
            .map(|(session, member, document)| {
                Ok(SessionShares {
                    session,
                    member: member_from("shares.member", &member)?,
                    document,
                })
            })
            .collect()
    }

    fn finalize(
        &self,
        id: &RequestDigest,
        psbt: &[u8],
        tx_bytes: &[u8],
        notify_members: &[IdentityPublicKey],
    ) -> Result<(), StoreError> {
        self.write(|tx, now| {
            let state = state_of(tx, id)?;
            require(id, state, WithdrawalState::Finalized)?;
            tx.exec(
                "INSERT INTO results (withdrawal, psbt, tx, decided_at) VALUES (?1, ?2, ?3, ?4)",
                params![id.to_string(), psbt, tx_bytes, now],
            )?;
            set_state(tx, id, WithdrawalState::Finalized, now)?;
            notify(tx, notify_members, id, EventKind::Finalized, now)
        })
    }

    fn refuse(
        &self,
        id: &RequestDigest,
        reason: &str,
        notify_members: &[IdentityPublicKey],
    ) -> Result<(), StoreError> {
        self.write(|tx, now| {
            let state = state_of(tx, id)?;
            require(id, state, WithdrawalState::Refused)?;
            tx.exec(
                "INSERT INTO results (withdrawal, reason, decided_at) VALUES (?1, ?2, ?3)",
                params![id.to_string(), reason, now],
            )?;
            set_state(tx, id, WithdrawalState::Refused, now)?;
            notify(tx, notify_members, id, EventKind::Refused, now)
        })
    }

    fn result(&self, id: &RequestDigest) -> Result<Option<Outcome>, StoreError> {
        type ResultRow = (Option<Vec<u8>>, Option<Vec<u8>>, Option<String>);
        let row: Option<ResultRow> = self.read(|tx, _| {
            state_of(tx, id)?;
            Ok(tx
                .row(
                    "SELECT psbt, tx, reason FROM results WHERE withdrawal = ?1",
                    [id.to_string()],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .optional()?)
        })?;
        match row {
            None => Ok(None),
            Some((Some(psbt), Some(tx), None)) => Ok(Some(Outcome::Finalized { psbt, tx })),
            Some((None, None, Some(reason))) => Ok(Some(Outcome::Refused { reason })),
            Some(_) => Err(StoreError::corrupt("results", &id.to_string())),
        }
    }

    fn list_open(&self) -> Result<Vec<WithdrawalRecord>, StoreError> {
        let rows = self.read(|tx, _| {
            let mut stmt = tx.prepare_cached(&format!(
                "SELECT {RECORD_COLUMNS} FROM withdrawals \
                 WHERE state NOT IN ('finalized', 'refused') ORDER BY created_at, rowid"
            ))?;
            let rows = stmt
                .query_map([], record_row)?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })?;
        rows.into_iter().map(record_from).collect()
    }

    fn work_for(
        &self,
        member: &IdentityPublicKey,
        after: u64,
        limit: u32,
    ) -> Result<Work, StoreError> {
        let after_sql = int("cursor", after)?;
        let rows = self.read(|tx, _| {
            let mut stmt = tx.prepare_cached(
                "SELECT seq, withdrawal, kind FROM events WHERE member = ?1 AND seq > ?2 \
                 ORDER BY seq LIMIT ?3",
            )?;
            let rows = stmt
                .query_map(params![member_text(member), after_sql, limit], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                    ))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })?;
        let items = rows
            .into_iter()
            .map(|(seq, withdrawal, kind)| {
                Ok(WorkItem {
                    seq: uint("events.seq", seq)?,
                    withdrawal: id_from("events.withdrawal", &withdrawal)?,
                    kind: kind.parse()?,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let next = items.last().map_or(after, |item| item.seq);
        Ok(Work { items, next })
    }

    fn put_challenge(
        &self,
        challenge: &[u8; 32],
        member: &IdentityPublicKey,
        expires_at: u64,
    ) -> Result<(), StoreError> {
        let expires_at = int("expires_at", expires_at)?;
        self.write(|tx, now| {
            tx.exec("DELETE FROM challenges WHERE expires_at <= ?1", [now])?;
            let known: Option<i64> = tx
                .row(
                    "SELECT 1 FROM challenges WHERE challenge = ?1",
                    [&challenge[..]],
                    |r| r.get(0),
                )
                .optional()?;
            if known.is_some() {
                return Err(StoreError::Conflict {
                    what: "challenge",
                    withdrawal: None,
                });
            }
            tx.exec(
                "INSERT INTO challenges (challenge, member, expires_at) VALUES (?1, ?2, ?3)",
                params![&challenge[..], member_text(member), expires_at],
            )?;
            Ok(())
        })
    }

    fn consume_challenge(
        &self,
        challenge: &[u8; 32],
    ) -> Result<Option<IdentityPublicKey>, StoreError> {
        let (row, now): (Option<(String, i64)>, i64) = self.write(|tx, now| {
            let row = tx
                .row(
                    "DELETE FROM challenges WHERE challenge = ?1 RETURNING member, expires_at",
                    [&challenge[..]],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            Ok((row, now))
        })?;
        match row {
            Some((member, expires_at)) if now < expires_at => {
                Ok(Some(member_from("challenges.member", &member)?))
            }
            _ => Ok(None),
        }
    }

    fn put_token(
        &self,
        hash: &[u8; 32],
        member: &IdentityPublicKey,
        role: Role,
        expires_at: u64,
    ) -> Result<(), StoreError> {
        let expires_at = int("expires_at", expires_at)?;
        self.write(|tx, now| {
            tx.exec("DELETE FROM tokens WHERE expires_at <= ?1", [now])?;
            let known: Option<i64> = tx
                .row("SELECT 1 FROM tokens WHERE hash = ?1", [&hash[..]], |r| {
                    r.get(0)
                })
                .optional()?;
            if known.is_some() {
                return Err(StoreError::Conflict {
                    what: "token",
                    withdrawal: None,
                });
            }
            tx.exec(
                "INSERT INTO tokens (hash, member, role, expires_at) VALUES (?1, ?2, ?3, ?4)",
                params![&hash[..], member_text(member), role.as_str(), expires_at],
            )?;
            Ok(())
        })
    }

    fn token(&self, hash: &[u8; 32]) -> Result<Option<Token>, StoreError> {
        let row: Option<(String, String, i64)> = self.read(|tx, now| {
            Ok(tx
                .row(
                    "SELECT member, role, expires_at FROM tokens WHERE hash = ?1 AND expires_at > ?2",
                    params![&hash[..], now],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .optional()?)
        })?;
        row.map(|(member, role, expires_at)| {
            Ok(Token {
                member: member_from("tokens.member", &member)?,
                role: role.parse()?,
                expires_at: uint("tokens.expires_at", expires_at)?,
            })
        })
        .transpose()
    }
}

/// `execute` and `query_row` through the connection's statement cache: the
/// store runs the same few statements over and over, and parsing each
/// one again cost a tenth of a withdrawal's store time.
trait Cached {
    fn exec<P: rusqlite::Params>(&self, sql: &str, params: P) -> rusqlite::Result<usize>;
    fn row<T, P, F>(&self, sql: &str, params: P, f: F) -> rusqlite::Result<T>
    where
        P: rusqlite::Params,
        F: FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>;
}

impl Cached for Connection {
    fn exec<P: rusqlite::Params>(&self, sql: &str, params: P) -> rusqlite::Result<usize> {
        self.prepare_cached(sql)?.execute(params)
    }

    fn row<T, P, F>(&self, sql: &str, params: P, f: F) -> rusqlite::Result<T>
    where
        P: rusqlite::Params,
        F: FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    {
        self.prepare_cached(sql)?.query_row(params, f)
    }
}
