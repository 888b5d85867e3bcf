//! The fault campaign: 3-of-5 withdrawals through two coordinator
//! processes sharing one PostgreSQL server and five signer-daemon
//! processes (software keystores), while a chaos loop SIGKILLs daemons (at
//! most two down at once) and the first coordinator at random moments and
//! restarts them, and restarts PostgreSQL once. Loopback only, bounded in
//! count and time. Afterwards the invariants are checked from the outside:
//!
//! - every withdrawal accepted is in the store and ended: finalized, with a
//!   transaction Bitcoin Core's consensus code accepts, or refused with a
//!   reason;
//! - no request has two results, no signer released two share sets with
//!   one approval's nonces, and no nonce commitment is in two signing
//!   packages;
//! - every signer's audit log verifies.
//!
//! ```sh
//! cargo bench -p kura-service --bench fault_campaign -- --bench --withdrawals 500
//! ```
//!
//! Under `cargo test` (no `--bench`) it runs a small round (12 withdrawals,
//! the same kinds of faults) so that it cannot rot. The binary is also its
//! own child processes (`--role-coordinator`, `--role-daemon`).
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kura_service::api::{RoleName, StateName};
use kura_service::client::Client;
use kura_service::daemon::SignerDaemon;
use kura_service::server::{self, AppState};
use kura_service::{Coordinator, CoordinatorConfig, PostgresStore, Store, TlsIdentity};
use kura_testkit::World;
use wallet_core::audit::{AuditEvent, AuditLog};
use wallet_core::bitcoin;
use wallet_core::format;
use wallet_core::frost_core::Identifier;
use wallet_core::keystore::SoftwareKeystore;
use wallet_core::{
    IdentityPublicKey, Keystore, MemoryKeystore, Policy, PublicGroup, RequestDigest, RequestId,
    Secp256k1Tr, Signed, Signer, WithdrawalPackages, WithdrawalRequest,
};

const TLS_PASSPHRASE: &str = "fault campaign throwaway";

fn policy_text(requester: &IdentityPublicKey, allowed: &bitcoin::Address) -> String {
    format!(
        "version = 1\nnetwork = \"regtest\"\n\
         [[requester]]\nlabel = \"ops\"\nkey = \"{requester}\"\n\
         [[destination]]\nlabel = \"exchange\"\naddress = \"{allowed}\"\n\
         [limits]\nper_transaction_sat = 500_000\nrolling_window_hours = 24\n\
         rolling_window_sat = 100_000_000_000\nmax_fee_sat = 20_000\nmax_fee_rate_sat_per_vb = 100\n\
         [auto_approve]\ndestinations = [\"exchange\"]\nmax_amount_sat = 300_000\n"
    )
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("--role-coordinator") => coordinator_main(&args[2..]),
        Some("--role-daemon") => daemon_main(&args[2..]),
        _ => std::process::exit(driver_main(&args)),
    }
}

fn value(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
}

fn read_roster(dir: &Path) -> BTreeMap<Identifier<Secp256k1Tr>, IdentityPublicKey> {
    let pairs: Vec<(Identifier<Secp256k1Tr>, IdentityPublicKey)> =
        serde_json::from_slice(&std::fs::read(dir.join("roster.json")).unwrap()).unwrap();
    pairs.into_iter().collect()
}

fn read_group(dir: &Path) -> PublicGroup<Secp256k1Tr> {
    PublicGroup::from_document(&std::fs::read(dir.join("group.json")).unwrap()).unwrap()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// A coordinator process: `--dir CAMPAIGN --listen ADDR`.
fn coordinator_main(args: &[String]) {
    let dir = PathBuf::from(value(args, "--dir").unwrap());
    let listen: SocketAddr = value(args, "--listen").unwrap().parse().unwrap();
    let group = read_group(&dir);
    let roster = read_roster(&dir);
    let requester: IdentityPublicKey =
        serde_json::from_slice(&std::fs::read(dir.join("requester.json")).unwrap()).unwrap();
    let tls = TlsIdentity::unseal(
        std::fs::read(dir.join("tls.der")).unwrap(),
        &std::fs::read(dir.join("tls.key.age")).unwrap(),
        &age::secrecy::SecretString::from(TLS_PASSPHRASE.to_owned()),
    )
    .unwrap();
    let url = std::fs::read_to_string(dir.join("pg.url")).unwrap();
    let store = PostgresStore::connect(url.trim()).unwrap();
    let config = CoordinatorConfig {
        group,
        roster,
        requesters: vec![requester],
        network: bitcoin::Network::Regtest,
        fingerprint: tls.fingerprint(),
    };
    let state = AppState::new(Coordinator::new(config, store));
    let listener = std::net::TcpListener::bind(listen).unwrap();
    println!("serving {listen}");
    runtime()
        .block_on(server::serve(
            state,
            &tls,
            listener,
            std::future::pending::<()>(),
        ))
        .unwrap();
}

/// A signer daemon process: `--dir CAMPAIGN --home HOME --urls A,B`.
fn daemon_main(args: &[String]) {
    let dir = PathBuf::from(value(args, "--dir").unwrap());
    let home = PathBuf::from(value(args, "--home").unwrap());
    let urls = value(args, "--urls").unwrap();
    let urls: Vec<&str> = urls.split(',').collect();
    let group = read_group(&dir);
    let roster = read_roster(&dir);
    let ks: Arc<dyn Keystore> = Arc::new(
        SoftwareKeystore::open(&home.join("keystore"), &kura_testkit::passphrase()).unwrap(),
    );
    let me = ks.identity_public_key().unwrap();
    let id = *roster.iter().find(|(_, k)| **k == me).unwrap().0;
    let share = wallet_core::keystore::load_share::<Secp256k1Tr>(ks.as_ref(), &group, &id).unwrap();
    let policy =
        Policy::from_toml(&std::fs::read_to_string(dir.join("policy.toml")).unwrap()).unwrap();
    let audit = AuditLog::open(&home.join("audit.jsonl"), &me).unwrap();
    let pin: kura_service::CertFingerprint = std::fs::read_to_string(dir.join("pin.txt"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let client =
        Client::with_failover(&urls, pin, *group.id(), RoleName::Signer, ks.clone()).unwrap();
    let signer = Signer::new(group, roster, share, ks, policy, audit).unwrap();
    let daemon = SignerDaemon::new(signer, client, &home.join("run"), |e| {
        println!("{e:?}");
    })
    .unwrap();
    runtime().block_on(daemon.run());
}

struct Proc {
    child: Option<Child>,
    args: Vec<String>,
    log: PathBuf,
}

impl Proc {
    fn spawn(args: Vec<String>, log: PathBuf) -> Proc {
        let mut p = Proc {
            child: None,
            args,
            log,
        };
        p.start();
        p
    }

    fn start(&mut self) {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let err = out.try_clone().unwrap();
        self.child = Some(
            Command::new(std::env::current_exe().unwrap())
                .args(&self.args)
                .stdin(Stdio::null())
                .stdout(out)
                .stderr(err)
                .spawn()
                .unwrap(),
        );
    }

    /// SIGKILL.
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn running(&self) -> bool {
        self.child.is_some()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

fn pg_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/pg-cluster")
}

/// A small deterministic generator for the chaos loop's choices.
struct Chaos(u64);

impl Chaos {
    fn next(&mut self, below: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % below.max(1)
    }
}

#[derive(Default)]
struct Kills {
    daemons: AtomicUsize,
    coordinator: AtomicUsize,
    postgres: AtomicUsize,
}

fn driver_main(args: &[String]) -> i32 {
    let measuring = args.iter().any(|a| a == "--bench");
    let number = |name: &str, default: u64| {
        value(args, name)
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let total = number("--withdrawals", if measuring { 500 } else { 12 }) as usize;
    let concurrency = number("--concurrency", 8) as usize;
    let seed = number("--seed", 7);
    let limit = Duration::from_secs(number("--limit-secs", if measuring { 900 } else { 180 }));
    let started = Instant::now();

    // PostgreSQL: a cluster of our own (it is restarted once).
    let tmp = tempfile::tempdir().unwrap();
    let pg_dir = tmp.path().join("pg");
    let out = Command::new(pg_script())
        .arg("start")
        .arg(&pg_dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let base = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    struct StopPg(PathBuf);
    impl Drop for StopPg {
        fn drop(&mut self) {
            let _ = Command::new(pg_script()).arg("stop").arg(&self.0).status();
        }
    }
    let _stop_pg = StopPg(pg_dir.clone());
    postgres::Client::connect(&format!("{base} dbname=postgres"), postgres::NoTls)
        .unwrap()
        .batch_execute("CREATE DATABASE kura_campaign")
        .unwrap();
    let url = format!("{base} dbname=kura_campaign");

    // The group: five software keystores on disk, shares and policy in them.
    let mut world = World::builder(seed, policy_text)
        .threshold(3, 5)
        .keystores::<SoftwareKeystore>()
        .build();
    drop(world.take_signers());
    let dir = tmp.path().join("campaign");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("group.json"), world.group.to_document().unwrap()).unwrap();
    let roster: Vec<_> = world.identities.iter().map(|(i, k)| (*i, *k)).collect();
    std::fs::write(
        dir.join("roster.json"),
        serde_json::to_vec(&roster).unwrap(),
    )
    .unwrap();
    std::fs::write(
        dir.join("requester.json"),
        serde_json::to_vec(&world.requester.public_key()).unwrap(),
    )
    .unwrap();
    std::fs::write(
        dir.join("policy.toml"),
        policy_text(&world.requester.public_key(), &world.allowed),
    )
    .unwrap();
    std::fs::write(dir.join("pg.url"), &url).unwrap();
    let tls = TlsIdentity::generate(&["127.0.0.1".into()], "kura campaign").unwrap();
    std::fs::write(dir.join("tls.der"), tls.certificate()).unwrap();
    std::fs::write(dir.join("pin.txt"), tls.fingerprint().to_string()).unwrap();
    std::fs::write(
        dir.join("tls.key.age"),
        tls.seal(&age::secrecy::SecretString::from(TLS_PASSPHRASE.to_owned()))
            .unwrap(),
    )
    .unwrap();

    // Two coordinators, five daemons.
    let addrs = [free_addr(), free_addr()];
    let urls: Vec<String> = addrs.iter().map(|a| format!("https://{a}")).collect();
    let coordinator = |i: usize| {
        Proc::spawn(
            vec![
                "--role-coordinator".into(),
                "--dir".into(),
                dir.display().to_string(),
                "--listen".into(),
                addrs[i].to_string(),
            ],
            tmp.path().join(format!("coordinator-{i}.log")),
        )
    };
    let coordinators = Arc::new(Mutex::new(vec![coordinator(0), coordinator(1)]));
    let daemons = Arc::new(Mutex::new(
        (0..5)
            .map(|i| {
                // Half prefer the first coordinator, half the second.
                let order = if i % 2 == 0 {
                    format!("{},{}", urls[0], urls[1])
                } else {
                    format!("{},{}", urls[1], urls[0])
                };
                Proc::spawn(
                    vec![
                        "--role-daemon".into(),
                        "--dir".into(),
                        dir.display().to_string(),
                        "--home".into(),
                        world.homes[i].display().to_string(),
                        "--urls".into(),
                        order,
                    ],
                    tmp.path().join(format!("daemon-{i}.log")),
                )
            })
            .collect::<Vec<_>>(),
    ));

    // Chaos until the withdrawals are done.
    let done = Arc::new(AtomicBool::new(false));
    let finished = Arc::new(AtomicUsize::new(0));
    let kills = Arc::new(Kills::default());
    let chaos = {
        let (done, finished, kills) = (done.clone(), finished.clone(), kills.clone());
        let (daemons, coordinators) = (daemons.clone(), coordinators.clone());
        let pg_dir = pg_dir.clone();
        std::thread::spawn(move || {
            let mut rng = Chaos(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
            let mut pg_restarted = false;
            let mut down: Vec<(usize, Instant)> = Vec::new();
            let mut coordinator_down: Option<Instant> = None;
            while !done.load(Ordering::SeqCst) {
                // A fault every 0.5–2.5 s: each a real crash, from which a
                // process takes a moment to come back.
                std::thread::sleep(Duration::from_millis(500 + rng.next(2000)));
                let now = Instant::now();
                // Bring back what is due.
                down.retain(|&(i, back)| {
                    if now >= back {
                        daemons.lock().unwrap()[i].start();
                        false
                    } else {
                        true
                    }
                });
                if coordinator_down.is_some_and(|back| now >= back) {
                    coordinators.lock().unwrap()[0].start();
                    coordinator_down = None;
                }
                if !pg_restarted && finished.load(Ordering::SeqCst) * 2 >= total {
                    pg_restarted = true;
                    let ok = Command::new(pg_script())
                        .arg("restart")
                        .arg(&pg_dir)
                        .status()
                        .is_ok_and(|s| s.success());
                    assert!(ok, "PostgreSQL restarts");
                    kills.postgres.fetch_add(1, Ordering::SeqCst);
                    continue;
                }
                match rng.next(4) {
                    0..=2 if down.len() < 2 => {
                        let i = rng.next(5) as usize;
                        let mut d = daemons.lock().unwrap();
                        if d[i].running() {
                            d[i].kill();
                            kills.daemons.fetch_add(1, Ordering::SeqCst);
                            down.push((i, now + Duration::from_millis(200 + rng.next(1500))));
                        }
                    }
                    3 if coordinator_down.is_none() => {
                        coordinators.lock().unwrap()[0].kill();
                        kills.coordinator.fetch_add(1, Ordering::SeqCst);
                        coordinator_down = Some(now + Duration::from_millis(300 + rng.next(2000)));
                    }
                    _ => {}
                }
            }
            for (i, _) in down {
                daemons.lock().unwrap()[i].start();
            }
            if coordinator_down.is_some() {
                coordinators.lock().unwrap()[0].start();
            }
        })
    };

    // The requester: `concurrency` withdrawals in flight.
    let requester = Arc::new(
        Client::with_failover(
            &[&urls[0], &urls[1]],
            tls.fingerprint(),
            *world.group.id(),
            RoleName::Requester,
            Arc::new(MemoryKeystore::with_identity(world.requester.clone())),
        )
        .unwrap(),
    );
    let rt = runtime();
    let world = Arc::new(world);
    let results: Vec<(String, RequestDigest, kura_service::api::WithdrawalStatus)> =
        rt.block_on(async {
            let next = Arc::new(AtomicUsize::new(0));
            let mut tasks = Vec::new();
            for _ in 0..concurrency {
                let (requester, world, next, finished) = (
                    requester.clone(),
                    world.clone(),
                    next.clone(),
                    finished.clone(),
                );
                tasks.push(tokio::spawn(async move {
                    let mut mine = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::SeqCst);
                        if i >= total || started.elapsed() > limit {
                            return mine;
                        }
                        let name = format!("campaign-{seed}-{i}");
                        let document = request_document(&world, &name);
                        // Submitted until accepted (a coordinator may be down):
                        // the same document again is the same withdrawal.
                        let id = loop {
                            match requester.submit(document.clone()).await {
                                Ok(r) => break r.id,
                                Err(_) if started.elapsed() < limit => {
                                    tokio::time::sleep(Duration::from_millis(100)).await
                                }
                                Err(e) => panic!("{name} never accepted: {e}"),
                            }
                        };
                        loop {
                            if let Ok(status) = requester.status(&id).await {
                                if status.state.is_final() {
                                    finished.fetch_add(1, Ordering::SeqCst);
                                    mine.push((name, id, status));
                                    break;
                                }
                            }
                            if started.elapsed() > limit {
                                return mine;
                            }
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    }
                }));
            }
            let mut all = Vec::new();
            for t in tasks {
                all.extend(t.await.unwrap());
            }
            all
        });
    done.store(true, Ordering::SeqCst);
    chaos.join().unwrap();
    let elapsed = started.elapsed();
    // Everything at rest before the checks.
    for c in coordinators.lock().unwrap().iter_mut() {
        c.kill();
    }
    for d in daemons.lock().unwrap().iter_mut() {
        d.kill();
    }

    let mut violations = Vec::new();
    if results.len() != total {
        violations.push(format!(
            "{} of {total} withdrawals ended within {limit:?}",
            results.len()
        ));
    }
    let store = PostgresStore::connect(&url).unwrap();
    let (mut finalized, mut refused) = (0, 0);
    let mut sessions_histogram: BTreeMap<usize, usize> = BTreeMap::new();
    let mut set_aside = 0;
    let mut seen_ids = HashSet::new();
    let mut commitments: HashMap<String, (RequestDigest, u32)> = HashMap::new();
    for (name, id, status) in &results {
        if !seen_ids.insert(*id) {
            violations.push(format!("{name}: withdrawal {id} reported twice"));
        }
        match store.withdrawal(id) {
            Ok(record) if record.state.is_final() => {}
            other => violations.push(format!("{name}: not final in the store: {other:?}")),
        }
        *sessions_histogram.entry(status.sessions.len()).or_default() += 1;
        set_aside += status.set_aside.len();
        match status.state {
            StateName::Finalized => {
                finalized += 1;
                let tx: Option<bitcoin::Transaction> = status
                    .tx
                    .as_ref()
                    .and_then(|t| hex::decode(t).ok())
                    .and_then(|b| bitcoin::consensus::deserialize(&b).ok());
                match tx {
                    Some(tx) => {
                        if let Err(e) = kura_testkit::consensus_verify(&tx, &world.spent()) {
                            violations.push(format!("{name}: consensus refuses it: {e:?}"));
                        }
                    }
                    None => violations.push(format!("{name}: finalized without a transaction")),
                }
            }
            StateName::Refused => {
                refused += 1;
                if status.reason.as_deref().unwrap_or("").is_empty() {
                    violations.push(format!("{name}: refused without a reason"));
                }
            }
            other => violations.push(format!("{name}: ended {other:?}")),
        }
        // No nonce commitment in two signing packages.
        for p in store.packages(id).unwrap() {
            let packages: WithdrawalPackages =
                format::decode_for_group(&p.document, world.group.id()).unwrap();
            for a in &packages.approvals {
                let key = serde_json::to_string(&a.body.commitments).unwrap();
                if let Some(first) = commitments.insert(key, (*id, p.session)) {
                    violations.push(format!(
                        "{name}: a commitment of {} in session {} was already in {:?}",
                        a.signer, p.session, first
                    ));
                }
            }
        }
    }
    // Every audit log verifies; no approval's nonces signed twice.
    let mut releases = 0;
    for (i, home) in world.homes.iter().enumerate() {
        let owner = world.stores[i].identity_public_key().unwrap();
        let Ok(log) = AuditLog::open(&home.join("audit.jsonl"), &owner) else {
            violations.push(format!("signer {i}: its audit log does not verify"));
            continue;
        };
        let mut used = HashSet::new();
        for e in log.entries() {
            if matches!(e.record.event, AuditEvent::ShareReleased) {
                releases += 1;
                if !used.insert((e.record.request_digest, e.record.session)) {
                    violations.push(format!(
                        "signer {i}: two releases with one approval ({:?})",
                        e.record.session
                    ));
                }
            }
        }
    }
    println!(
        "fault campaign: {} withdrawals (3-of-5, 2 coordinators on PostgreSQL, 5 daemon processes) in {:.1} s",
        results.len(),
        elapsed.as_secs_f64()
    );
    println!(
        "  finalized {finalized}, refused {refused}; sessions per withdrawal {sessions_histogram:?}; members set aside {set_aside}"
    );
    println!(
        "  SIGKILLed: daemons {}, coordinator {}; PostgreSQL restarted {}",
        kills.daemons.load(Ordering::SeqCst),
        kills.coordinator.load(Ordering::SeqCst),
        kills.postgres.load(Ordering::SeqCst)
    );
    println!(
        "  share releases {releases}, distinct commitments in packages {}",
        commitments.len()
    );
    if violations.is_empty() {
        println!("  invariants: all hold");
        0
    } else {
        println!("  VIOLATIONS ({}):", violations.len());
        for v in violations.iter().take(50) {
            println!("    {v}");
        }
        println!("  logs in {}", tmp.keep().display());
        1
    }
}

fn request_document(world: &World<SoftwareKeystore>, name: &str) -> Vec<u8> {
    let now = kura_service::coordinator::system_clock();
    let body = WithdrawalRequest::new(
        RequestId::new(name).unwrap(),
        world.requester.public_key(),
        &world.psbt(),
        now,
        3600,
        "fault campaign",
    )
    .unwrap();
    let ks = MemoryKeystore::with_identity(world.requester.clone());
    let signed = Signed::sign(world.group.id(), body, &ks).unwrap();
    format::encode(world.group.id(), &signed).unwrap()
}
