//! A coordinator over HTTPS on loopback with a real SQLite file, signer
//! daemons on the world's signers, and a requester: the harness of the
//! service's end-to-end tests.
#![allow(dead_code)]

pub mod faults;
pub mod pg;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kura_service::api::{RoleName, StateName, WithdrawalStatus};
use kura_service::client::Client;
use kura_service::daemon::{DaemonEvent, SignerDaemon};
use kura_service::server::{self, AppState};
use kura_service::{
    CertFingerprint, Coordinator, CoordinatorConfig, PostgresStore, SqliteStore, Store, TlsIdentity,
};
use kura_testkit::World;
use wallet_core::bitcoin::{self, psbt::Psbt};
use wallet_core::format;
use wallet_core::{
    IdentityPublicKey, MemoryKeystore, RequestDigest, RequestId, Signed, Signer, WithdrawalRequest,
};

/// A policy allowing the world's requester to pay the allowlisted address,
/// with `[auto_approve]` for it when `auto`.
pub fn policy(auto: bool) -> impl Fn(&IdentityPublicKey, &bitcoin::Address) -> String + 'static {
    move |requester, allowed| {
        let mut text = format!(
            "version = 1\nnetwork = \"regtest\"\n\
             [[requester]]\nlabel = \"ops\"\nkey = \"{requester}\"\n\
             [[destination]]\nlabel = \"exchange\"\naddress = \"{allowed}\"\n\
             [limits]\nper_transaction_sat = 500_000\nrolling_window_hours = 24\n\
             rolling_window_sat = 100_000_000_000\nmax_fee_sat = 20_000\nmax_fee_rate_sat_per_vb = 100\n"
        );
        if auto {
            text.push_str(
                "[auto_approve]\ndestinations = [\"exchange\"]\nmax_amount_sat = 300_000\n",
            );
        }
        text
    }
}

/// Unix seconds now.
pub fn now() -> u64 {
    kura_service::coordinator::system_clock()
}

/// The coordinator's side: its state directory, TLS identity, address.
pub struct CoordinatorSide {
    pub dir: tempfile::TempDir,
    pub tls: TlsIdentity,
    pub addr: SocketAddr,
    pub config: CoordinatorConfig,
    running: Option<(
        tokio::sync::oneshot::Sender<()>,
        tokio::task::JoinHandle<()>,
    )>,
    pub state: Option<Arc<AppState<SqliteStore>>>,
    /// Where it keeps its state: its SQLite file, or this PostgreSQL
    /// database.
    pub postgres: Option<String>,
    /// How long its sessions wait for shares.
    pub session_deadline: Duration,
}

impl CoordinatorSide {
    pub fn new(world: &World) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let tls =
            TlsIdentity::generate(&["127.0.0.1".into(), "localhost".into()], "kura test").unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let config = CoordinatorConfig {
            group: world.group.clone(),
            roster: world.identities.clone(),
            requesters: vec![world.requester.public_key()],
            network: bitcoin::Network::Regtest,
            fingerprint: tls.fingerprint(),
        };
        CoordinatorSide {
            dir,
            tls,
            addr,
            config,
            running: None,
            state: None,
            postgres: None,
            session_deadline: kura_service::coordinator::DEFAULT_SESSION_DEADLINE,
        }
    }

    /// The same coordinator keeping its state in a new PostgreSQL database.
    pub fn on_postgres(world: &World) -> Self {
        let mut side = Self::new(world);
        side.postgres = Some(pg::server().fresh_database());
        side
    }

    /// A second coordinator process beside this one: its own address, the
    /// same certificate, configuration and PostgreSQL database.
    pub fn sibling(&self) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        CoordinatorSide {
            dir: tempfile::tempdir().unwrap(),
            tls: self.tls.clone(),
            addr,
            config: self.config.clone(),
            running: None,
            state: None,
            postgres: self.postgres.clone(),
            session_deadline: self.session_deadline,
        }
    }

    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    pub fn fingerprint(&self) -> CertFingerprint {
        self.tls.fingerprint()
    }

    pub fn db(&self) -> PathBuf {
        self.dir.path().join("coordinator.db")
    }

    /// Starts (or restarts) the honest coordinator on its address.
    pub async fn start(&mut self) {
        if let Some(url) = self.postgres.clone() {
            let store = pg::blocking(|| PostgresStore::connect(&url)).unwrap();
            let state = AppState::new(
                Coordinator::new(self.config.clone(), store)
                    .with_session_deadline(self.session_deadline),
            );
            self.start_with(state, None).await;
            return;
        }
        let store = SqliteStore::open(self.db()).unwrap();
        let state = AppState::new(
            Coordinator::new(self.config.clone(), store)
                .with_session_deadline(self.session_deadline),
        );
        self.start_with(state.clone(), None).await;
        self.state = Some(state);
    }

    /// Starts `state` behind `router` (the honest one when `None`).
    pub async fn start_with<S: Store + Send + Sync + 'static>(
        &mut self,
        state: Arc<AppState<S>>,
        router: Option<axum::Router>,
    ) {
        let listener = bind_retrying(self.addr).await;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let tls = self.tls.clone();
        let task = tokio::spawn(async move {
            let shutdown = async move {
                let _ = rx.await;
            };
            let result = match router {
                None => server::serve(state, &tls, listener, shutdown).await,
                Some(r) => server::serve_router(r, &tls, listener, shutdown).await,
            };
            result.unwrap();
        });
        self.running = Some((tx, task));
    }

    /// Stops it as abruptly as the runtime allows (the task is aborted,
    /// the store dropped: its SQLite file and lock are what a killed
    /// process leaves).
    pub async fn kill(&mut self) {
        if self.postgres.is_some() {
            // Aborted mid-flight: its connections close as its store drops
            // (what the database sees of a killed process).
            if let Some((_, task)) = self.running.take() {
                task.abort();
                let _ = task.await;
            }
            return;
        }
        if let Some((tx, task)) = self.running.take() {
            let _ = tx.send(());
            let _ = task.await;
        }
        self.state = None;
        // Let in-flight blocking store calls finish and drop their handles.
        for _ in 0..50 {
            if SqliteStore::open(self.db()).is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("the store stayed locked after the coordinator stopped");
    }
}

async fn bind_retrying(addr: SocketAddr) -> std::net::TcpListener {
    for _ in 0..100 {
        if let Ok(l) = std::net::TcpListener::bind(addr) {
            return l;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("cannot bind {addr}");
}

/// What the daemons reported, by signer index.
pub type Events = Arc<Mutex<Vec<(usize, DaemonEvent)>>>;

/// A running daemon.
pub struct DaemonSide {
    pub daemon: Arc<SignerDaemon>,
    pub run_dir: PathBuf,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl DaemonSide {
    pub fn stop(self) {
        for t in self.tasks {
            t.abort();
        }
    }
}

/// Starts a daemon for `signer` (index `i`) with its run directory under
/// `home`.
pub fn start_daemon(
    coordinator: &CoordinatorSide,
    i: usize,
    signer: Signer,
    home: &Path,
    events: &Events,
) -> DaemonSide {
    start_daemon_on(&[coordinator], i, signer, home, events)
}

/// Starts a daemon for `signer` talking to any of `coordinators` (which
/// share a database and a certificate).
pub fn start_daemon_on(
    coordinators: &[&CoordinatorSide],
    i: usize,
    signer: Signer,
    home: &Path,
    events: &Events,
) -> DaemonSide {
    let urls: Vec<String> = coordinators.iter().map(|c| c.url()).collect();
    let urls: Vec<&str> = urls.iter().map(String::as_str).collect();
    let client = Client::with_failover(
        &urls,
        coordinators[0].fingerprint(),
        *signer.group().id(),
        RoleName::Signer,
        signer.keystore().clone(),
    )
    .unwrap();
    let events = events.clone();
    let run_dir = home.join("run");
    let daemon = SignerDaemon::new(signer, client, &run_dir, move |e| {
        events.lock().unwrap().push((i, e.clone()));
    })
    .unwrap();
    let tasks = vec![
        tokio::spawn(daemon.clone().run()),
        tokio::spawn({
            let d = daemon.clone();
            async move {
                d.serve_control().await.unwrap();
            }
        }),
    ];
    DaemonSide {
        daemon,
        run_dir,
        tasks,
    }
}

/// The world's requester as a client.
pub fn requester(world: &World, coordinator: &CoordinatorSide) -> Client {
    Client::new(
        &coordinator.url(),
        coordinator.fingerprint(),
        *world.group.id(),
        RoleName::Requester,
        Arc::new(MemoryKeystore::with_identity(world.requester.clone())),
    )
    .unwrap()
}

/// The world's requester's signed request `id` for `psbt`, made now, as a
/// document.
pub fn request_document(world: &World, id: &str, psbt: &Psbt) -> Vec<u8> {
    let body = WithdrawalRequest::new(
        RequestId::new(id).unwrap(),
        world.requester.public_key(),
        psbt,
        now(),
        3600,
        "payout batch",
    )
    .unwrap();
    let ks = MemoryKeystore::with_identity(world.requester.clone());
    let signed = Signed::sign(world.group.id(), body, &ks).unwrap();
    format::encode(world.group.id(), &signed).unwrap()
}

/// Waits (long-polling the requester's mailbox) until `id` is final, at
/// most `limit`.
pub async fn wait_final(client: &Client, id: &RequestDigest, limit: Duration) -> WithdrawalStatus {
    let deadline = tokio::time::Instant::now() + limit;
    let mut cursor = 0;
    loop {
        let status = client.status(id).await.unwrap();
        if status.state.is_final() {
            return status;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "withdrawal {id} still {:?} after {limit:?}: {status:?}",
            status.state
        );
        if let Ok(page) = client.work(cursor, Duration::from_millis(500)).await {
            cursor = page.next;
        }
    }
}

/// The final transaction of a finalized status, checked by Bitcoin Core's
/// consensus code against the coins it spends.
pub fn check_final(status: &WithdrawalStatus, world: &World) -> bitcoin::Transaction {
    assert_eq!(status.state, StateName::Finalized, "{status:?}");
    let tx: bitcoin::Transaction =
        bitcoin::consensus::deserialize(&hex::decode(status.tx.as_ref().unwrap()).unwrap())
            .unwrap();
    kura_testkit::consensus_verify(&tx, &world.spent()).unwrap();
    tx
}

/// The audit events signer `i` recorded, by name.
pub fn audit_events(world: &World, i: usize) -> Vec<String> {
    let text = std::fs::read_to_string(world.homes[i].join("audit.jsonl")).unwrap();
    text.lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["record"]["event"]["type"].as_str().unwrap().to_owned()
        })
        .collect()
}

/// Starts a daemon for every signer of `world` (moving them out of it).
pub fn start_daemons(
    world: &mut World,
    coordinator: &CoordinatorSide,
    events: &Events,
) -> Vec<DaemonSide> {
    world
        .take_signers()
        .into_iter()
        .enumerate()
        .map(|(i, s)| start_daemon(coordinator, i, s, &world.homes[i], events))
        .collect()
}

/// Waits (at most 30 s) until the daemons' reports satisfy `what`.
pub async fn wait_events(events: &Events, what: impl Fn(&[(usize, DaemonEvent)]) -> bool) {
    for _ in 0..600 {
        if what(&events.lock().unwrap()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("daemons never reported it: {:?}", events.lock().unwrap());
}

/// A raw HTTPS client pinned to the coordinator (no login).
pub fn raw(coordinator: &CoordinatorSide) -> reqwest::Client {
    raw_to(coordinator.fingerprint())
}

/// A raw HTTPS client pinned to `pin` (no login).
pub fn raw_to(pin: CertFingerprint) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_backend_preconfigured(kura_service::tls::client_config(pin).unwrap())
        .http1_only()
        .build()
        .unwrap()
}
