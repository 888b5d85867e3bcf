//! [`PostgresStore`]: the [`Store`] in a PostgreSQL database that several
//! coordinators may share.
//!
//! Same behaviour as [`crate::SqliteStore`] (the same tests run on both),
//! with what sharing needs:
//!
//! - **Every write locks its withdrawal's row first** (`SELECT … FOR
//!   UPDATE`), so writes to one withdrawal from any coordinator are
//!   serialized, and each sees what the one before committed (`READ
//!   COMMITTED`: every statement reads the latest commit). The store's own
//!   checks — legal transitions, one packages document per session, an
//!   approval used by one session at most, one shares document per member
//!   and session — then refuse anything a second coordinator would
//!   duplicate.
//! - **One driver per withdrawal** ([`Store::drive`]): a session-level
//!   advisory lock on the withdrawal's id, held on its own connection while
//!   a coordinator moves the withdrawal on. A coordinator that is killed
//!   loses its connection and with it the lock; another takes over at its
//!   next look (a request for that withdrawal, or its 5 s sweep). Waiting
//!   is bounded by `lock_timeout` (5 s).
//! - **Mailbox counters stay gapless**: each member's counter row is
//!   bumped (`UPDATE … RETURNING`) in the transaction that adds the event,
//!   which holds its row lock until commit, so events are numbered in
//!   commit order; a `NOTIFY kura_work` in that transaction wakes the long
//!   polls of every coordinator ([`Store::watch`]).
//! - **Migrations** run in one transaction under an advisory lock, so two
//!   coordinators starting together never migrate at once; the schema
//!   version is in `kura_schema`, whose presence marks the database as
//!   Kura's.
//! - **Connections** come from a small pool (8); one broken (a restarted
//!   server) is dropped and replaced on the next call, so a coordinator
//!   rides out a PostgreSQL restart with errors only while it is down.
//!
//! Times are Unix seconds from the store's clock, as in SQLite; the schema
//! is [`MIGRATIONS`] (the same tables and meaning as SQLite's version 2).

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use postgres::error::SqlState;
use postgres::{Client, NoTls, Row, Statement, Transaction};
use wallet_core::{IdentityPublicKey, RequestDigest};

use crate::error::StoreError;
use crate::sqlite::Clock;
use crate::store::{
    answer_keys, check_names, id_from, int, member_from, member_text, packages_keys, record_from,
    require, uint, RecordRow,
};
use crate::store::{
    Added, ApprovalDocument, ApprovalUse, DriveGuard, EventKind, MemberDocument, Outcome,
    PackagesDocument, RequestDocument, Role, SessionPackages, SessionShares, SetAside,
    SharesDocument, Store, Submitted, Token, WithdrawalRecord, WithdrawalState, Work, WorkItem,
};

/// The schema's migrations: step `i` takes the database from version `i`
/// to `i + 1` (recorded in `kura_schema`). Never edit a released step.
pub const MIGRATIONS: &[&str] = &[
    // 1: the tables of SQLite's version 2.
    r#"
CREATE TABLE withdrawals (
    id          TEXT PRIMARY KEY,
    requester   TEXT NOT NULL,
    request_id  TEXT NOT NULL,
    document    BYTEA NOT NULL,
    state       TEXT NOT NULL CHECK (state IN ('submitted', 'approving', 'signing', 'finalized', 'refused')),
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    UNIQUE (requester, request_id)
);

CREATE INDEX withdrawals_open ON withdrawals (created_at)
    WHERE state NOT IN ('finalized', 'refused');

CREATE TABLE approvals (
    seq         BIGSERIAL NOT NULL,
    withdrawal  TEXT NOT NULL REFERENCES withdrawals (id),
    member      TEXT NOT NULL,
    digest      TEXT NOT NULL,
    document    BYTEA NOT NULL,
    received_at BIGINT NOT NULL,
    used_in     INTEGER CHECK (used_in >= 0),
    PRIMARY KEY (withdrawal, digest)
);

CREATE TABLE packages (
    withdrawal  TEXT NOT NULL REFERENCES withdrawals (id),
    session     INTEGER NOT NULL CHECK (session >= 0),
    digest      TEXT NOT NULL,
    document    BYTEA NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (withdrawal, session)
);

CREATE TABLE shares (
    seq         BIGSERIAL NOT NULL,
    withdrawal  TEXT NOT NULL,
    session     INTEGER NOT NULL,
    member      TEXT NOT NULL,
    digest      TEXT NOT NULL,
    document    BYTEA NOT NULL,
    received_at BIGINT NOT NULL,
    PRIMARY KEY (withdrawal, session, member),
    FOREIGN KEY (withdrawal, session) REFERENCES packages (withdrawal, session)
);

CREATE TABLE set_aside (
    seq         BIGSERIAL NOT NULL,
    withdrawal  TEXT NOT NULL,
    session     INTEGER NOT NULL,
    member      TEXT NOT NULL,
    reason      TEXT NOT NULL CHECK (reason IN ('invalid-shares', 'missed-deadline')),
    detail      TEXT NOT NULL,
    document    BYTEA,
    decided_at  BIGINT NOT NULL,
    PRIMARY KEY (withdrawal, session, member),
    FOREIGN KEY (withdrawal, session) REFERENCES packages (withdrawal, session)
);

CREATE TABLE results (
    withdrawal  TEXT PRIMARY KEY REFERENCES withdrawals (id),
    psbt        BYTEA,
    tx          BYTEA,
    reason      TEXT,
    decided_at  BIGINT NOT NULL,
    CHECK ((psbt IS NOT NULL AND tx IS NOT NULL AND reason IS NULL)
        OR (psbt IS NULL AND tx IS NULL AND reason IS NOT NULL))
);

CREATE TABLE mailboxes (
    member      TEXT PRIMARY KEY,
    seq         BIGINT NOT NULL CHECK (seq > 0)
);

CREATE TABLE events (
    member      TEXT NOT NULL REFERENCES mailboxes (member),
    seq         BIGINT NOT NULL,
    withdrawal  TEXT NOT NULL REFERENCES withdrawals (id),
    kind        TEXT NOT NULL CHECK (kind IN ('submitted', 'packages', 'finalized', 'refused')),
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (member, seq)
);

CREATE TABLE challenges (
    challenge   BYTEA PRIMARY KEY CHECK (octet_length(challenge) = 32),
    member      TEXT NOT NULL,
    expires_at  BIGINT NOT NULL
);

CREATE TABLE tokens (
    hash        BYTEA PRIMARY KEY CHECK (octet_length(hash) = 32),
    member      TEXT NOT NULL,
    role        TEXT NOT NULL CHECK (role IN ('signer', 'requester')),
    expires_at  BIGINT NOT NULL
);
"#,
];

/// A PostgreSQL connection configuration (parsed from a URL or a
/// `key=value` string).
pub use postgres::Config as PgConfig;

/// The advisory lock key under which migrations run ("Kura" in ASCII).
const MIGRATION_LOCK: i64 = 0x4b75_7261;
/// The channel of `NOTIFY` for new mailbox events.
const CHANNEL: &str = "kura_work";
/// Connections kept open at most.
const POOL_SIZE: usize = 8;

/// The [`Store`] in PostgreSQL, shareable by several coordinators.
pub struct PostgresStore {
    config: postgres::Config,
    pool: Arc<Pool>,
    clock: Clock,
    stop: Arc<AtomicBool>,
    /// A random name for this store (this coordinator process), carried by
    /// its notifications.
    instance: String,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("hosts", &self.config.get_hosts().len())
            .field("dbname", &self.config.get_dbname())
            .finish_non_exhaustive()
    }
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// A few open connections, handed out one caller at a time.
struct Pool {
    config: postgres::Config,
    idle: Mutex<PoolState>,
    freed: Condvar,
}

/// A connection and the statements prepared on it (by their SQL): each
/// statement is parsed and planned by the server once per connection, and
/// then runs in one round trip instead of two.
type Connection = (Client, Statements);
type Statements = HashMap<&'static str, Statement>;

struct PoolState {
    idle: Vec<Connection>,
    open: usize,
}

/// A connection taken from the pool, given back when dropped unless it
/// broke.
struct Pooled {
    client: Option<Connection>,
    pool: Arc<Pool>,
}

impl Pool {
    fn take(self: &Arc<Self>) -> Result<Pooled, StoreError> {
        let mut state = self.idle.lock().map_err(|_| StoreError::Poisoned)?;
        loop {
            while let Some(client) = state.idle.pop() {
                if client.0.is_closed() {
                    state.open = state.open.saturating_sub(1);
                    continue;
                }
                return Ok(Pooled {
                    client: Some(client),
                    pool: self.clone(),
                });
            }
            if state.open < POOL_SIZE {
                state.open += 1;
                drop(state);
                return match connect(&self.config) {
                    Ok(client) => Ok(Pooled {
                        client: Some((client, HashMap::new())),
                        pool: self.clone(),
                    }),
                    Err(e) => {
                        if let Ok(mut s) = self.idle.lock() {
                            s.open = s.open.saturating_sub(1);
                        }
                        self.freed.notify_one();
                        Err(e)
                    }
                };
            }
            state = self.freed.wait(state).map_err(|_| StoreError::Poisoned)?;
        }
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        let Some(client) = self.client.take() else {
            return;
        };
        if let Ok(mut state) = self.pool.idle.lock() {
            if client.0.is_closed() {
                state.open = state.open.saturating_sub(1);
                discard(vec![client]);
            } else {
                state.idle.push(client);
            }
        }
        self.pool.freed.notify_one();
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        if let Ok(mut state) = self.idle.lock() {
            discard(std::mem::take(&mut state.idle));
        }
    }
}

/// Closes connections on a thread of their own: closing one blocks on its
/// own runtime, which must not happen on an async runtime's thread (a
/// coordinator dropped by a server task).
fn discard(clients: Vec<Connection>) {
    if clients.is_empty() {
        return;
    }
    let dropped = std::thread::Builder::new()
        .name("kura-pg-close".into())
        .spawn(move || drop(clients));
    // Without a thread of their own they were closed here, as they must.
    drop(dropped);
}

impl Pooled {
    fn client(&mut self) -> Result<&mut Client, StoreError> {
        self.client
            .as_mut()
            .map(|(c, _)| c)
            .ok_or(StoreError::Poisoned)
    }

    fn parts(&mut self) -> Result<(&mut Client, &mut Statements), StoreError> {
        self.client
            .as_mut()
            .map(|(c, s)| (c, s))
            .ok_or(StoreError::Poisoned)
    }
}

/// A transaction whose statements come from its connection's cache.
struct Tx<'t, 'c> {
    tx: Transaction<'c>,
    statements: &'t mut Statements,
}

type Params<'p> = &'p [&'p (dyn postgres::types::ToSql + Sync)];

impl Tx<'_, '_> {
    fn statement(&mut self, sql: &'static str) -> Result<Statement, StoreError> {
        if let Some(s) = self.statements.get(sql) {
            return Ok(s.clone());
        }
        let s = self.tx.prepare(sql)?;
        self.statements.insert(sql, s.clone());
        Ok(s)
    }

    fn execute(&mut self, sql: &'static str, params: Params<'_>) -> Result<u64, StoreError> {
        let s = self.statement(sql)?;
        Ok(self.tx.execute(&s, params)?)
    }

    fn query(&mut self, sql: &'static str, params: Params<'_>) -> Result<Vec<Row>, StoreError> {
        let s = self.statement(sql)?;
        Ok(self.tx.query(&s, params)?)
    }

    fn query_opt(
        &mut self,
        sql: &'static str,
        params: Params<'_>,
    ) -> Result<Option<Row>, StoreError> {
        let s = self.statement(sql)?;
        Ok(self.tx.query_opt(&s, params)?)
    }

    fn query_one(&mut self, sql: &'static str, params: Params<'_>) -> Result<Row, StoreError> {
        let s = self.statement(sql)?;
        Ok(self.tx.query_one(&s, params)?)
    }
}

fn connect(config: &postgres::Config) -> Result<Client, StoreError> {
    let mut client = config.connect(NoTls)?;
    // A coordinator waits at most this long for another's row or driver
    // lock (one whose host hangs without closing its connection).
    // And no statement runs longer than 30 s (a hung query would hold the
    // coordinator's drive).
    client.batch_execute("SET lock_timeout = '5s'; SET statement_timeout = '30s'")?;
    Ok(client)
}

fn system_clock() -> u64 {
    crate::coordinator::system_clock()
}

impl PostgresStore {
    /// Connects to the database `url` (`postgres://…` or `host=… dbname=…`)
    /// with the system clock and brings its schema up to date.
    ///
    /// # Errors
    /// [`StoreError::Postgres`] (unreachable, refused, bad URL);
    /// [`StoreError::TooNew`]; [`StoreError::NotKuraPostgres`].
    pub fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_with_clock(url, Arc::new(system_clock))
    }

    /// As [`PostgresStore::connect`], with `clock` for every timestamp.
    ///
    /// # Errors
    /// As [`PostgresStore::connect`].
    pub fn connect_with_clock(url: &str, clock: Clock) -> Result<Self, StoreError> {
        Self::connect_config(url.parse()?, clock)
    }

    /// As [`PostgresStore::connect`], with a parsed configuration (a
    /// password set from elsewhere than the URL).
    ///
    /// # Errors
    /// As [`PostgresStore::connect`].
    pub fn connect_config(config: postgres::Config, clock: Clock) -> Result<Self, StoreError> {
        let pool = Arc::new(Pool {
            config: config.clone(),
            idle: Mutex::new(PoolState {
                idle: Vec::new(),
                open: 0,
            }),
            freed: Condvar::new(),
        });
        let mut name = [0u8; 8];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut name).map_err(
            |_| StoreError::NotKuraPostgres("no randomness for the store's name".into()),
        )?;
        let store = PostgresStore {
            config,
            pool,
            clock,
            stop: Arc::new(AtomicBool::new(false)),
            instance: hex::encode(name),
        };
        let mut conn = store.pool.take()?;
        migrate(conn.client()?)?;
        Ok(store)
    }

    /// The schema version this build migrates to.
    pub fn schema_version() -> i64 {
        i64::try_from(MIGRATIONS.len()).unwrap_or(i64::MAX)
    }

    fn now(&self) -> Result<i64, StoreError> {
        int("the clock", (self.clock)())
    }

    /// Runs `f` in one transaction, committed if it succeeds. A conflict
    /// with a concurrent transaction of another coordinator (a unique key
    /// taken between our read and our insert, a deadlock) runs `f` again,
    /// up to three times: the second run reads what the other committed.
    fn write<R>(
        &self,
        f: impl Fn(&mut Tx<'_, '_>, i64) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        let mut conn = self.pool.take()?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let now = self.now()?;
            let (client, statements) = conn.parts()?;
            let result = (|| {
                let mut tx = Tx {
                    tx: client.transaction()?,
                    statements,
                };
                let out = f(&mut tx, now)?;
                tx.tx.commit()?;
                Ok(out)
            })();
            match result {
                Err(StoreError::Postgres(e)) if attempt < 3 && retryable(&e) => continue,
                other => return other,
            }
        }
    }

    /// Runs `f` in one read-only, repeatable-read transaction: all its
    /// queries see one snapshot.
    fn read<R>(
        &self,
        f: impl FnOnce(&mut Tx<'_, '_>, i64) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        let now = self.now()?;
        let mut conn = self.pool.take()?;
        let (client, statements) = conn.parts()?;
        let mut tx = Tx {
            tx: client
                .build_transaction()
                .isolation_level(postgres::IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()?,
            statements,
        };
        let out = f(&mut tx, now)?;
        tx.tx.commit()?;
        Ok(out)
    }
}

fn retryable(e: &postgres::Error) -> bool {
    matches!(
        e.code(),
        Some(c) if *c == SqlState::UNIQUE_VIOLATION
            || *c == SqlState::T_R_SERIALIZATION_FAILURE
            || *c == SqlState::T_R_DEADLOCK_DETECTED
    )
}

/// Brings the schema to [`MIGRATIONS`]`.len()`, in one transaction under
/// an advisory lock.
fn migrate(client: &mut Client) -> Result<(), StoreError> {
    let mut tx = client.transaction()?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
    let marked: bool = tx
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_tables WHERE schemaname = current_schema() AND tablename = 'kura_schema')",
            &[],
        )?
        .get(0);
    let found: i64 = if marked {
        let row = tx.query_one("SELECT version, application FROM kura_schema", &[])?;
        let application: String = row.get(1);
        if application != "kura-coordinator" {
            return Err(StoreError::NotKuraPostgres(format!(
                "kura_schema names {application:?}"
            )));
        }
        i64::from(row.get::<_, i32>(0))
    } else {
        let tables: i64 = tx
            .query_one(
                "SELECT count(*) FROM pg_tables WHERE schemaname = current_schema()",
                &[],
            )?
            .get(0);
        if tables > 0 {
            return Err(StoreError::NotKuraPostgres(format!(
                "{tables} tables and no kura_schema"
            )));
        }
        tx.batch_execute(
            "CREATE TABLE kura_schema (version INTEGER NOT NULL, application TEXT NOT NULL);
             INSERT INTO kura_schema VALUES (0, 'kura-coordinator');",
        )?;
        0
    };
    let supported = PostgresStore::schema_version();
    if found > supported {
        return Err(StoreError::TooNew { found, supported });
    }
    let done = usize::try_from(found)
        .map_err(|_| StoreError::corrupt("kura_schema", &found.to_string()))?;
    for step in MIGRATIONS.iter().skip(done) {
        tx.batch_execute(step)?;
    }
    let version = i32::try_from(supported).unwrap_or(i32::MAX);
    tx.execute("UPDATE kura_schema SET version = $1", &[&version])?;
    tx.commit()?;
    Ok(())
}

fn session_of(what: &'static str, value: i32) -> Result<u32, StoreError> {
    u32::try_from(value).map_err(|_| StoreError::corrupt(what, &value.to_string()))
}

fn session_sql(session: u32) -> Result<i32, StoreError> {
    i32::try_from(session).map_err(|_| StoreError::OutOfRange {
        what: "session",
        value: u64::from(session),
    })
}

/// The withdrawal's state, its row locked until the transaction ends.
fn lock_state(tx: &mut Tx<'_, '_>, id: &RequestDigest) -> Result<WithdrawalState, StoreError> {
    let row = tx.query_opt(
        "SELECT state FROM withdrawals WHERE id = $1 FOR UPDATE",
        &[&id.to_string()],
    )?;
    match row {
        Some(row) => row.get::<_, String>(0).parse(),
        None => Err(StoreError::not_found("withdrawal", id)),
    }
}

/// The withdrawal's state (it must exist), read without a lock.
fn state_of(tx: &mut Tx<'_, '_>, id: &RequestDigest) -> Result<WithdrawalState, StoreError> {
    let row = tx.query_opt(
        "SELECT state FROM withdrawals WHERE id = $1",
        &[&id.to_string()],
    )?;
    match row {
        Some(row) => row.get::<_, String>(0).parse(),
        None => Err(StoreError::not_found("withdrawal", id)),
    }
}

fn set_state(
    tx: &mut Tx<'_, '_>,
    id: &RequestDigest,
    state: WithdrawalState,
    now: i64,
) -> Result<(), StoreError> {
    tx.execute(
        "UPDATE withdrawals SET state = $1, updated_at = $2 WHERE id = $3",
        &[&state.as_str(), &now, &id.to_string()],
    )?;
    Ok(())
}

/// Appends an event to each member's mailbox (its counter bumped in this
/// transaction) and notifies the other coordinators at commit.
fn notify(
    tx: &mut Tx<'_, '_>,
    instance: &str,
    members: &[IdentityPublicKey],
    id: &RequestDigest,
    kind: EventKind,
    now: i64,
) -> Result<(), StoreError> {
    let members: BTreeSet<String> = members.iter().map(member_text).collect();
    if members.is_empty() {
        return Ok(());
    }
    let id_text = id.to_string();
    for member in &members {
        let seq: i64 = tx
            .query_one(
                "INSERT INTO mailboxes (member, seq) VALUES ($1, 1) \
                 ON CONFLICT (member) DO UPDATE SET seq = mailboxes.seq + 1 RETURNING seq",
                &[member],
            )?
            .get(0);
        tx.execute(
            "INSERT INTO events (member, seq, withdrawal, kind, created_at) VALUES ($1, $2, $3, $4, $5)",
            &[member, &seq, &id_text, &kind.as_str(), &now],
        )?;
    }
    // The payload names this store, whose own long polls are woken
    // directly: only the other coordinators need the notification.
    tx.execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &instance])?;
    Ok(())
}

fn has_session(tx: &mut Tx<'_, '_>, id: &RequestDigest, session: i32) -> Result<bool, StoreError> {
    Ok(tx
        .query_opt(
            "SELECT 1 FROM packages WHERE withdrawal = $1 AND session = $2",
            &[&id.to_string(), &session],
        )?
        .is_some())
}

fn insert_approval(
    tx: &mut Tx<'_, '_>,
    id: &RequestDigest,
    approval: &ApprovalDocument,
    digest: &str,
    state: WithdrawalState,
    standalone: bool,
    now: i64,
) -> Result<Added, StoreError> {
    let member = member_text(&approval.body().signer);
    let known = tx.query_opt(
        "SELECT 1 FROM approvals WHERE withdrawal = $1 AND digest = $2",
        &[&id.to_string(), &digest],
    )?;
    if known.is_some() {
        return Ok(Added::Duplicate);
    }
    let kept: i64 = tx
        .query_one(
            "SELECT count(*) FROM approvals WHERE withdrawal = $1 AND member = $2",
            &[&id.to_string(), &member],
        )?
        .get(0);
    if kept >= crate::sqlite::MAX_APPROVALS_PER_MEMBER {
        return Err(StoreError::Conflict {
            what: "approval beyond what one member may keep per withdrawal",
            withdrawal: Some(*id),
        });
    }
    if standalone {
        let owes = tx.query_opt(
            "SELECT 1 FROM approvals a WHERE a.withdrawal = $1 AND a.member = $2 AND a.used_in > 0 \
             AND NOT EXISTS (SELECT 1 FROM shares s WHERE s.withdrawal = a.withdrawal \
             AND s.session = a.used_in AND s.member = a.member)",
            &[&id.to_string(), &member],
        )?;
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
    tx.execute(
        "UPDATE approvals SET used_in = 0 \
         WHERE withdrawal = $1 AND member = $2 AND used_in IS NULL",
        &[&id.to_string(), &member],
    )?;
    tx.execute(
        "INSERT INTO approvals (withdrawal, member, digest, document, received_at) \
         VALUES ($1, $2, $3, $4, $5)",
        &[&id.to_string(), &member, &digest, &approval.bytes(), &now],
    )?;
    set_state(tx, id, to, now)?;
    Ok(Added::New)
}

/// An advisory lock on one withdrawal, held on its own connection.
struct DriveLock {
    conn: Pooled,
    key: i32,
}

impl Drop for DriveLock {
    fn drop(&mut self) {
        let key = self.key;
        if let Ok(client) = self.conn.client() {
            // If the unlock fails the connection is broken, and the server
            // drops the lock with it.
            let _ = client.execute("SELECT pg_advisory_unlock($1, $2)", &[&DRIVE_LOCKS, &key]);
        }
    }
}

/// The first key of Kura's two-key advisory locks ("Ku"): its own space,
/// apart from the one-key locks (migrations) and other applications'.
const DRIVE_LOCKS: i32 = 0x4b75;

/// The second key of a withdrawal's advisory lock: the first 4 bytes of
/// its id (two withdrawals sharing them only wait for each other).
fn drive_key(id: &RequestDigest) -> i32 {
    let mut key = [0u8; 4];
    key.copy_from_slice(id.as_bytes().get(..4).unwrap_or(&[0; 4]));
    i32::from_be_bytes(key)
}

fn record_row(r: &postgres::Row) -> RecordRow {
    (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4))
}

impl Store for PostgresStore {
    fn submit(
        &self,
        request: &RequestDocument,
        notify_members: &[IdentityPublicKey],
    ) -> Result<Submitted, StoreError> {
        let id = RequestDigest::from_bytes(request.digest()?);
        let body = &request.body().body;
        let requester = member_text(&body.requester);
        self.write(|tx, now| {
            let known = tx.query_opt(
                "SELECT 1 FROM withdrawals WHERE id = $1",
                &[&id.to_string()],
            )?;
            if known.is_some() {
                return Ok(Submitted::Duplicate(id));
            }
            let taken = tx.query_opt(
                "SELECT id FROM withdrawals WHERE requester = $1 AND request_id = $2",
                &[&requester, &body.request_id.as_str()],
            )?;
            if let Some(other) = taken {
                return Err(StoreError::Conflict {
                    what: "request with this requester and request id",
                    withdrawal: Some(id_from("withdrawals.id", &other.get::<_, String>(0))?),
                });
            }
            tx.execute(
                "INSERT INTO withdrawals (id, requester, request_id, document, state, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $6)",
                &[
                    &id.to_string(),
                    &requester,
                    &body.request_id.as_str(),
                    &request.bytes(),
                    &WithdrawalState::Submitted.as_str(),
                    &now,
                ],
            )?;
            notify(tx, &self.instance, notify_members, &id, EventKind::Submitted, now)?;
            Ok(Submitted::New(id))
        })
    }

    fn withdrawal(&self, id: &RequestDigest) -> Result<WithdrawalRecord, StoreError> {
        let row = self.read(|tx, _| {
            Ok(tx
                .query_opt(
                    "SELECT id, document, state, created_at, updated_at FROM withdrawals WHERE id = $1",
                    &[&id.to_string()],
                )?
                .map(|r| record_row(&r)))
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
        check_names(
            "withdrawal-approval",
            id,
            &approval.body().body.request_digest,
        )?;
        let digest = hex::encode(approval.digest()?);
        self.write(|tx, now| {
            let state = lock_state(tx, id)?;
            insert_approval(tx, id, approval, &digest, state, true, now)
        })
    }

    fn approvals(&self, id: &RequestDigest) -> Result<Vec<MemberDocument>, StoreError> {
        let rows = self.read(|tx, _| {
            state_of(tx, id)?;
            tx.query(
                "SELECT member, document, used_in FROM approvals WHERE withdrawal = $1 ORDER BY seq",
                &[&id.to_string()],
            )
        })?;
        rows.iter()
            .map(|r| {
                let used = ApprovalUse::from_column(r.get::<_, Option<i32>>(2).map(i64::from))?;
                Ok(MemberDocument {
                    member: member_from("approvals.member", r.get(0))?,
                    document: r.get(1),
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
        let session = session_sql(session)?;
        self.write(|tx, now| {
            let state = lock_state(tx, id)?;
            let found = tx.query_opt(
                "SELECT digest FROM packages WHERE withdrawal = $1 AND session = $2",
                &[&id.to_string(), &session],
            )?;
            if let Some(row) = found {
                if row.get::<_, String>(0) == digest {
                    return Ok(Added::Duplicate);
                }
                return Err(StoreError::Conflict {
                    what: "packages document for this session",
                    withdrawal: Some(*id),
                });
            }
            require(id, state, WithdrawalState::Signing)?;
            tx.execute(
                "INSERT INTO packages (withdrawal, session, digest, document, created_at) \
                 VALUES ($1, $2, $3, $4, $5)",
                &[&id.to_string(), &session, &digest, &packages.bytes(), &now],
            )?;
            for used in &approvals {
                let marked = tx.execute(
                    "UPDATE approvals SET used_in = $3 \
                     WHERE withdrawal = $1 AND digest = $2 AND used_in IS NULL",
                    &[&id.to_string(), used, &session],
                )?;
                if marked != 1 {
                    return Err(StoreError::Conflict {
                        what: "packages using an approval not recorded or already used",
                        withdrawal: Some(*id),
                    });
                }
            }
            set_state(tx, id, WithdrawalState::Signing, now)?;
            notify(
                tx,
                &self.instance,
                notify_members,
                id,
                EventKind::Packages,
                now,
            )?;
            Ok(Added::New)
        })
    }

    fn packages(&self, id: &RequestDigest) -> Result<Vec<SessionPackages>, StoreError> {
        let rows = self.read(|tx, _| {
            state_of(tx, id)?;
            tx.query(
                "SELECT session, document FROM packages WHERE withdrawal = $1 ORDER BY session",
                &[&id.to_string()],
            )
        })?;
        rows.iter()
            .map(|r| {
                Ok(SessionPackages {
                    session: session_of("packages.session", r.get(0))?,
                    document: r.get(1),
                })
            })
            .collect()
    }

    fn add_shares(
        &self,
        id: &RequestDigest,
        session: u32,
        shares: &SharesDocument,
        next: Option<&ApprovalDocument>,
    ) -> Result<Added, StoreError> {
        let (digest, member, next) = answer_keys(id, shares, next)?;
        let session = session_sql(session)?;
        self.write(|tx, now| {
            let state = lock_state(tx, id)?;
            if !has_session(tx, id, session)? {
                return Err(StoreError::not_found(
                    "signing session",
                    format!("{id}/{session}"),
                ));
            }
            let found = tx.query_opt(
                "SELECT digest FROM shares WHERE withdrawal = $1 AND session = $2 AND member = $3",
                &[&id.to_string(), &session, &member],
            )?;
            let added = match found {
                Some(row) if row.get::<_, String>(0) == digest => Added::Duplicate,
                Some(_) => {
                    return Err(StoreError::Conflict {
                        what: "shares by this member in this session",
                        withdrawal: Some(*id),
                    })
                }
                None => {
                    require(id, state, WithdrawalState::Signing)?;
                    tx.execute(
                        "INSERT INTO shares (withdrawal, session, member, digest, document, received_at) \
                         VALUES ($1, $2, $3, $4, $5, $6)",
                        &[&id.to_string(), &session, &member, &digest, &shares.bytes(), &now],
                    )?;
                    set_state(tx, id, WithdrawalState::Signing, now)?;
                    Added::New
                }
            };
            if let Some((approval, digest)) = &next {
                // New shares moved it to Signing; a duplicate left it as it was.
                let state = match added {
                    Added::New => WithdrawalState::Signing,
                    Added::Duplicate => state,
                };
                insert_approval(tx, id, approval, digest, state, false, now)?;
            }
            Ok(added)
        })
    }

    fn set_aside(&self, id: &RequestDigest, aside: &SetAside) -> Result<Added, StoreError> {
        let member = member_text(&aside.member);
        let session = session_sql(aside.session)?;
        self.write(|tx, now| {
            let state = lock_state(tx, id)?;
            require(id, state, WithdrawalState::Signing)?;
            if !has_session(tx, id, session)? {
                return Err(StoreError::not_found(
                    "signing session",
                    format!("{id}/{session}"),
                ));
            }
            let inserted = tx.execute(
                "INSERT INTO set_aside (withdrawal, session, member, reason, detail, document, decided_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) \
                 ON CONFLICT (withdrawal, session, member) DO UPDATE SET reason = excluded.reason, \
                 detail = excluded.detail, document = excluded.document, decided_at = excluded.decided_at \
                 WHERE set_aside.reason = 'missed-deadline' AND excluded.reason = 'invalid-shares'",
                &[
                    &id.to_string(),
                    &session,
                    &member,
                    &aside.reason.as_str(),
                    &aside.detail,
                    &aside.document,
                    &now,
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
        let rows = self.read(|tx, _| {
            state_of(tx, id)?;
            tx.query(
                "SELECT session, member, reason, detail, document FROM set_aside \
                 WHERE withdrawal = $1 ORDER BY seq",
                &[&id.to_string()],
            )
        })?;
        rows.iter()
            .map(|r| {
                Ok(SetAside {
                    session: session_of("set_aside.session", r.get(0))?,
                    member: member_from("set_aside.member", r.get(1))?,
                    reason: r.get::<_, String>(2).parse()?,
                    detail: r.get(3),
                    document: r.get(4),
                })
            })
            .collect()
    }

    fn shares(&self, id: &RequestDigest) -> Result<Vec<SessionShares>, StoreError> {
        let rows = self.read(|tx, _| {
            state_of(tx, id)?;
            tx.query(
                "SELECT session, member, document FROM shares WHERE withdrawal = $1 \
                 ORDER BY session, seq",
                &[&id.to_string()],
            )
        })?;
        rows.iter()
            .map(|r| {
                Ok(SessionShares {
                    session: session_of("shares.session", r.get(0))?,
                    member: member_from("shares.member", r.get(1))?,
                    document: r.get(2),
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
            let state = lock_state(tx, id)?;
            require(id, state, WithdrawalState::Finalized)?;
            tx.execute(
                "INSERT INTO results (withdrawal, psbt, tx, decided_at) VALUES ($1, $2, $3, $4)",
                &[&id.to_string(), &psbt, &tx_bytes, &now],
            )?;
            set_state(tx, id, WithdrawalState::Finalized, now)?;
            notify(
                tx,
                &self.instance,
                notify_members,
                id,
                EventKind::Finalized,
                now,
            )
        })
    }

    fn refuse(
        &self,
        id: &RequestDigest,
        reason: &str,
        notify_members: &[IdentityPublicKey],
    ) -> Result<(), StoreError> {
        self.write(|tx, now| {
            let state = lock_state(tx, id)?;
            require(id, state, WithdrawalState::Refused)?;
            tx.execute(
                "INSERT INTO results (withdrawal, reason, decided_at) VALUES ($1, $2, $3)",
                &[&id.to_string(), &reason, &now],
            )?;
            set_state(tx, id, WithdrawalState::Refused, now)?;
            notify(
                tx,
                &self.instance,
                notify_members,
                id,
                EventKind::Refused,
                now,
            )
        })
    }

    fn result(&self, id: &RequestDigest) -> Result<Option<Outcome>, StoreError> {
        let row = self.read(|tx, _| {
            state_of(tx, id)?;
            tx.query_opt(
                "SELECT psbt, tx, reason FROM results WHERE withdrawal = $1",
                &[&id.to_string()],
            )
        })?;
        let Some(row) = row else {
            return Ok(None);
        };
        let (psbt, tx, reason): (Option<Vec<u8>>, Option<Vec<u8>>, Option<String>) =
            (row.get(0), row.get(1), row.get(2));
        match (psbt, tx, reason) {
            (Some(psbt), Some(tx), None) => Ok(Some(Outcome::Finalized { psbt, tx })),
            (None, None, Some(reason)) => Ok(Some(Outcome::Refused { reason })),
            _ => Err(StoreError::corrupt("results", &id.to_string())),
        }
    }

    fn list_open(&self) -> Result<Vec<WithdrawalRecord>, StoreError> {
        let rows = self.read(|tx, _| {
            tx.query(
                "SELECT id, document, state, created_at, updated_at FROM withdrawals \
                 WHERE state NOT IN ('finalized', 'refused') ORDER BY created_at, id",
                &[],
            )
        })?;
        rows.iter().map(|r| record_from(record_row(r))).collect()
    }

    fn work_for(
        &self,
        member: &IdentityPublicKey,
        after: u64,
        limit: u32,
    ) -> Result<Work, StoreError> {
        let after_sql = int("cursor", after)?;
        let limit = i64::from(limit);
        let rows = self.read(|tx, _| {
            tx.query(
                "SELECT seq, withdrawal, kind FROM events WHERE member = $1 AND seq > $2 \
                 ORDER BY seq LIMIT $3",
                &[&member_text(member), &after_sql, &limit],
            )
        })?;
        let items = rows
            .iter()
            .map(|r| {
                Ok(WorkItem {
                    seq: uint("events.seq", r.get(0))?,
                    withdrawal: id_from("events.withdrawal", r.get(1))?,
                    kind: r.get::<_, String>(2).parse()?,
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
            tx.execute("DELETE FROM challenges WHERE expires_at <= $1", &[&now])?;
            let inserted = tx.execute(
                "INSERT INTO challenges (challenge, member, expires_at) VALUES ($1, $2, $3) \
                 ON CONFLICT DO NOTHING",
                &[&&challenge[..], &member_text(member), &expires_at],
            )?;
            if inserted != 1 {
                return Err(StoreError::Conflict {
                    what: "challenge",
                    withdrawal: None,
                });
            }
            Ok(())
        })
    }

    fn consume_challenge(
        &self,
        challenge: &[u8; 32],
    ) -> Result<Option<IdentityPublicKey>, StoreError> {
        let (row, now) = self.write(|tx, now| {
            let row = tx.query_opt(
                "DELETE FROM challenges WHERE challenge = $1 RETURNING member, expires_at",
                &[&&challenge[..]],
            )?;
            Ok((
                row.map(|r| (r.get::<_, String>(0), r.get::<_, i64>(1))),
                now,
            ))
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
            tx.execute("DELETE FROM tokens WHERE expires_at <= $1", &[&now])?;
            let inserted = tx.execute(
                "INSERT INTO tokens (hash, member, role, expires_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT DO NOTHING",
                &[
                    &&hash[..],
                    &member_text(member),
                    &role.as_str(),
                    &expires_at,
                ],
            )?;
            if inserted != 1 {
                return Err(StoreError::Conflict {
                    what: "token",
                    withdrawal: None,
                });
            }
            Ok(())
        })
    }

    fn token(&self, hash: &[u8; 32]) -> Result<Option<Token>, StoreError> {
        let row = self.read(|tx, now| {
            tx.query_opt(
                "SELECT member, role, expires_at FROM tokens WHERE hash = $1 AND expires_at > $2",
                &[&&hash[..], &now],
            )
        })?;
        row.map(|r| {
            Ok(Token {
                member: member_from("tokens.member", r.get(0))?,
                role: r.get::<_, String>(1).parse()?,
                expires_at: uint("tokens.expires_at", r.get(2))?,
            })
        })
        .transpose()
    }

    fn drive(&self, id: &RequestDigest) -> Result<DriveGuard, StoreError> {
        let mut conn = self.pool.take()?;
        let key = drive_key(id);
        conn.client()?
            .execute("SELECT pg_advisory_lock($1, $2)", &[&DRIVE_LOCKS, &key])?;
        Ok(DriveGuard::holding(Box::new(DriveLock { conn, key })))
    }

    fn watch(&self, wake: Box<dyn Fn() + Send + Sync>) -> Result<(), StoreError> {
        let config = self.config.clone();
        let stop = self.stop.clone();
        let instance = self.instance.clone();
        std::thread::Builder::new()
            .name("kura-pg-listen".into())
            .spawn(move || listen(&config, &stop, &instance, &*wake))
            .map_err(|source| StoreError::Lock {
                path: "LISTEN kura_work".into(),
                source,
            })?;
        Ok(())
    }
}

/// `LISTEN`s for new events until `stop`, calling `wake` for each (and
/// after every reconnection, for what it may have missed meanwhile).
fn listen(
    config: &postgres::Config,
    stop: &AtomicBool,
    instance: &str,
    wake: &(dyn Fn() + Send + Sync),
) {
    while !stop.load(Ordering::SeqCst) {
        let Ok(mut client) = config.connect(NoTls) else {
            std::thread::sleep(Duration::from_millis(200));
            continue;
        };
        if client.batch_execute(&format!("LISTEN {CHANNEL}")).is_err() {
            std::thread::sleep(Duration::from_millis(200));
            continue;
        }
        wake();
        while !stop.load(Ordering::SeqCst) && !client.is_closed() {
            let mut notifications = client.notifications();
            let mut iter = notifications.timeout_iter(Duration::from_millis(500));
            match postgres::fallible_iterator::FallibleIterator::next(&mut iter) {
                Ok(Some(n)) if n.payload() != instance => wake(),
                Ok(Some(_)) => {}
                Ok(None) => {}
                Err(_) => break,
            }
        }
    }
}
