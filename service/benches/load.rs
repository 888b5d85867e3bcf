//! Withdrawals per second and their latency through the whole service, on
//! this machine: the coordinator over HTTPS on loopback with its SQLite
//! file, `n` signer daemons approving under `[auto_approve]`, one
//! requester submitting `--concurrency` withdrawals at a time. Every
//! party in this one process (and so on the same two cores); the
//! keystores are `--keystore memory|software|softhsm`.
//!
//! ```sh
//! cargo bench -p kura-service --bench load -- --withdrawals 300 --concurrency 16 --keystore software
//! cargo bench -p kura-service --bench load -- --bench --store postgres --silent 2
//! cargo bench -p kura-service --bench load -- --bench --store postgres --failover
//! ```
//!
//! `--store sqlite|postgres` picks the coordinator's store (PostgreSQL: the
//! tests' server, see `tests/common/pg.rs`); `--silent K` makes `K`
//! members approve and then never answer a session, `--cheats K` makes `K`
//! members answer with shares that do not verify (ROAST sets both aside);
//! `--failover` runs two coordinators on one PostgreSQL database and kills
//! the first when half the withdrawals are submitted.
//!
//! Latency is from the requester's submit to the requester learning the
//! withdrawal is finalized (its long poll wakes); each finalized
//! transaction is checked by Bitcoin Core's consensus code after the run.
//! Under `cargo test` (no `--bench`) it runs three withdrawals as a smoke
//! test.
#![allow(clippy::print_stdout)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::faults;
use common::*;
use kura_service::api::{EventName, StateName};
use kura_testkit::World;
use wallet_core::keystore::{SoftwareKeystore, WorkFactor};
use wallet_core::{Keystore, MemoryKeystore};

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Memory,
    Software,
    SoftHsm,
}

struct Args {
    withdrawals: usize,
    concurrency: usize,
    t: u16,
    n: u16,
    keystore: Kind,
    postgres: bool,
    silent: usize,
    cheats: usize,
    failover: bool,
}

fn args() -> Args {
    let argv: Vec<String> = std::env::args().collect();
    let measuring = argv.iter().any(|a| a == "--bench");
    let value = |name: &str| {
        argv.iter()
            .position(|a| a == name)
            .and_then(|i| argv.get(i + 1))
            .cloned()
    };
    let number =
        |name: &str, default: usize| value(name).and_then(|v| v.parse().ok()).unwrap_or(default);
    Args {
        withdrawals: number("--withdrawals", if measuring { 200 } else { 3 }),
        concurrency: number("--concurrency", if measuring { 16 } else { 2 }),
        t: number("--t", 3) as u16,
        n: number("--n", 5) as u16,
        keystore: match value("--keystore").as_deref() {
            Some("software") => Kind::Software,
            Some("softhsm") => Kind::SoftHsm,
            _ => Kind::Memory,
        },
        postgres: value("--store").as_deref() == Some("postgres")
            || argv.iter().any(|a| a == "--failover"),
        silent: number("--silent", 0),
        cheats: number("--cheats", 0),
        failover: argv.iter().any(|a| a == "--failover"),
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// The world's signers moved onto keystores of `kind` (shares, identity
/// keys and pinned policy as the world's).
fn rekey(
    world: &mut World,
    kind: Kind,
    hsm: &Option<hsm_fixture::Tokens>,
) -> Vec<wallet_core::Signer> {
    use wallet_core::audit::AuditLog;
    let mut signers = Vec::new();
    let mut roster = world.identities.clone();
    let mut stores: Vec<Arc<dyn Keystore>> = Vec::new();
    for i in 0..world.shares.len() {
        let home = &world.homes[i];
        let ks: Arc<dyn Keystore> = match kind {
            Kind::Memory => Arc::new(MemoryKeystore::new()),
            Kind::Software => Arc::new(
                SoftwareKeystore::create(
                    &home.join("ks2"),
                    &kura_testkit::passphrase(),
                    WorkFactor::LogN(2),
                )
                .unwrap(),
            ),
            Kind::SoftHsm => hsm.as_ref().unwrap().keystore(i, &home.join("nonces")),
        };
        wallet_core::keystore::put_share(ks.as_ref(), &world.shares[i]).unwrap();
        wallet_core::keystore::pin_policy(ks.as_ref(), world.policy.digest()).unwrap();
        roster.insert(
            *world.shares[i].identifier(),
            ks.identity_public_key().unwrap(),
        );
        stores.push(ks);
    }
    world.identities = roster.clone();
    for (i, ks) in stores.into_iter().enumerate() {
        let audit = AuditLog::open(
            &world.homes[i].join("audit2.jsonl"),
            &ks.identity_public_key().unwrap(),
        )
        .unwrap();
        signers.push(
            wallet_core::Signer::new(
                world.group.clone(),
                roster.clone(),
                world.shares[i].clone(),
                ks,
                world.policy.clone(),
                audit,
            )
            .unwrap(),
        );
    }
    signers
}

mod hsm_fixture {
    use std::path::Path;
    use std::sync::Arc;

    use wallet_core::Keystore;

    /// One SoftHSM2 token per signer under a temporary directory.
    pub struct Tokens {
        _dir: tempfile::TempDir,
        module: std::path::PathBuf,
    }

    impl Tokens {
        pub fn new(n: usize) -> Option<Tokens> {
            let module = hsm_bridge::softhsm::module()?;
            let dir = tempfile::tempdir().unwrap();
            let softhsm = hsm_bridge::softhsm::SoftHsm::create_in(dir.path()).unwrap();
            softhsm.activate();
            let ctx = hsm_bridge::context::context(&module).unwrap();
            for i in 0..n {
                hsm_bridge::softhsm::SoftHsm::init_token(
                    &ctx,
                    &format!("load-{i}"),
                    &secrecy::SecretString::from("so-pin-1234".to_owned()),
                    &secrecy::SecretString::from("pin-1234".to_owned()),
                )
                .unwrap();
            }
            Some(Tokens { _dir: dir, module })
        }

        pub fn keystore(&self, i: usize, nonces: &Path) -> Arc<dyn Keystore> {
            let uri = hsm_bridge::Pkcs11Uri::parse(&format!(
                "pkcs11:token=load-{i}?module-path={}",
                self.module.display()
            ))
            .unwrap();
            Arc::new(
                hsm_bridge::HsmKeystore::provision(
                    &uri,
                    &secrecy::SecretString::from("pin-1234".to_owned()),
                    nonces,
                )
                .unwrap(),
            )
        }
    }
}

fn main() {
    let a = args();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run(a));
}

async fn run(a: Args) {
    let mut world = World::builder(77, policy(true)).threshold(a.t, a.n).build();
    let hsm = if a.keystore == Kind::SoftHsm {
        let tokens = hsm_fixture::Tokens::new(usize::from(a.n));
        if tokens.is_none() {
            println!("load: SoftHSM2 is not installed; nothing measured");
            return;
        }
        tokens
    } else {
        None
    };
    let signers = rekey(&mut world, a.keystore, &hsm);
    let mut coordinator = if a.postgres {
        CoordinatorSide::on_postgres(&world)
    } else {
        CoordinatorSide::new(&world)
    };
    coordinator.config.roster = world.identities.clone();
    coordinator.start().await;
    let mut sibling = a.failover.then(|| coordinator.sibling());
    if let Some(b) = sibling.as_mut() {
        b.start().await;
    }
    let events = Events::default();
    let mut daemons = Vec::new();
    let mut faulty = Vec::new();
    for (i, s) in signers.into_iter().enumerate() {
        let fault = if i < a.silent {
            Some(faults::Fault::Silent)
        } else if i < a.silent + a.cheats {
            Some(faults::Fault::Cheats)
        } else {
            None
        };
        match fault {
            Some(fault) => {
                let (url, pin) = (coordinator.url(), coordinator.fingerprint());
                faulty.push(tokio::spawn(async move {
                    faults::faulty_member(url, pin, s, fault, Duration::ZERO).await
                }));
            }
            None => {
                let sides: Vec<&CoordinatorSide> = std::iter::once(&coordinator)
                    .chain(sibling.as_ref())
                    .collect();
                daemons.push(start_daemon_on(&sides, i, s, &world.homes[i], &events));
            }
        }
    }
    let requester = Arc::new(match &sibling {
        None => requester(&world, &coordinator),
        Some(b) => {
            let (ua, ub) = (coordinator.url(), b.url());
            kura_service::client::Client::with_failover(
                &[&ua, &ub],
                coordinator.fingerprint(),
                *world.group.id(),
                kura_service::api::RoleName::Requester,
                Arc::new(MemoryKeystore::with_identity(world.requester.clone())),
            )
            .unwrap()
        }
    });
    requester.login().await.unwrap();

    // One watcher long-polls the requester's mailbox and notes when each
    // withdrawal ended.
    let ended: Arc<Mutex<HashMap<wallet_core::RequestDigest, Instant>>> = Arc::default();
    let watcher = {
        let (requester, ended) = (requester.clone(), ended.clone());
        tokio::spawn(async move {
            let mut cursor = 0;
            loop {
                if let Ok(page) = requester.work(cursor, Duration::from_secs(20)).await {
                    let now = Instant::now();
                    for item in &page.items {
                        if matches!(item.kind, EventName::Finalized | EventName::Refused) {
                            ended.lock().unwrap().insert(item.withdrawal, now);
                        }
                    }
                    cursor = page.next;
                }
            }
        })
    };

    let psbt = world.psbt_paying(20_000, 2_000);
    let documents: Vec<Vec<u8>> = (0..a.withdrawals)
        .map(|i| request_document(&world, &format!("load-{i}"), &psbt))
        .collect();
    let started = Instant::now();
    let semaphore = Arc::new(tokio::sync::Semaphore::new(a.concurrency));
    let mut tasks = Vec::new();
    let mut killed_at = None;
    let half = a.withdrawals / 2;
    for (n, document) in documents.into_iter().enumerate() {
        if a.failover && n == half {
            coordinator.kill().await;
            killed_at = Some(Instant::now());
        }
        let permit = semaphore.clone().acquire_owned().await.unwrap();
        let (requester, ended) = (requester.clone(), ended.clone());
        tasks.push(tokio::spawn(async move {
            let submitted = Instant::now();
            let id = loop {
                // A coordinator killed under the submit: again, to the next.
                match requester.submit(document.clone()).await {
                    Ok(r) => break r.id,
                    Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            };
            loop {
                if let Some(at) = ended.lock().unwrap().get(&id) {
                    drop(permit);
                    return (id, submitted, *at);
                }
                tokio::time::sleep(Duration::from_micros(500)).await;
            }
        }));
    }
    let mut latencies = Vec::new();
    let mut ids = Vec::new();
    let mut spans = Vec::new();
    for t in tasks {
        let (id, submitted, ended) = t.await.unwrap();
        latencies.push(ended.saturating_duration_since(submitted));
        spans.push((submitted, ended));
        ids.push(id);
    }
    if let Some(kill) = killed_at {
        // In flight at the kill: submitted before, ended after.
        let caught: Vec<Duration> = spans
            .iter()
            .filter(|(s, e)| *s < kill && *e > kill)
            .map(|(_, e)| e.saturating_duration_since(kill))
            .collect();
        let first = spans
            .iter()
            .filter(|(_, e)| *e > kill)
            .map(|(_, e)| e.saturating_duration_since(kill))
            .min()
            .unwrap_or_default();
        println!(
            "failover: coordinator killed with {} withdrawals in flight; the first withdrawal finalized {:.0} ms after the kill, the last of those in flight {:.0} ms after",
            caught.len(),
            first.as_secs_f64() * 1e3,
            caught.iter().max().copied().unwrap_or_default().as_secs_f64() * 1e3,
        );
    }
    for f in faulty {
        f.abort();
    }
    let elapsed = started.elapsed();
    watcher.abort();
    for d in daemons {
        d.stop();
    }
    let mut finalized = 0;
    for id in &ids {
        let status = requester.status(id).await.unwrap();
        if status.state == StateName::Finalized {
            check_final(&status, &world);
            finalized += 1;
        }
    }
    latencies.sort();
    println!(
        "load: {}-of-{} {:?} keystores, {} store{}, {} silent, {} cheating, {} withdrawals, {} at a time: {} finalized (Bitcoin Core consensus) in {:.2} s = {:.1} withdrawals/s; latency p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        a.t,
        a.n,
        a.keystore,
        if a.postgres { "PostgreSQL" } else { "SQLite" },
        if a.failover { " (2 coordinators, 1 killed)" } else { "" },
        a.silent,
        a.cheats,
        a.withdrawals,
        a.concurrency,
        finalized,
        elapsed.as_secs_f64(),
        finalized as f64 / elapsed.as_secs_f64(),
        percentile(&latencies, 0.5).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3,
        latencies.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
    );
    assert_eq!(finalized, a.withdrawals, "every withdrawal finalized");
}
