//! A DKG through the ceremony mailbox over loopback HTTPS, against the same
//! DKG without a network (wallet-core's rounds, every message signed and
//! sealed) and raw frost-core's three parts, in one run on this machine.
//!
//! ```sh
//! cargo bench -p kura-service --bench dkg_mailbox            # 3-of-5 and 11-of-15
//! cargo bench -p kura-service --bench dkg_mailbox -- --runs 20
//! ```
//!
//! Through the mailbox, every participant runs at once (one tokio task
//! each, on the two cores) with its own login; the time is from the first
//! round 1 to the last participant holding its share. Without a network
//! the participants run one after another in one thread. Each run is a
//! fresh ceremony and fresh in-memory keystores. Under `cargo test` (no
//! `--bench`) it runs one 2-of-3 ceremony as a smoke test.
#![allow(clippy::print_stdout)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kura_service::ceremony::{run_dkg, MailboxClient};
use kura_service::relay::{Relay, Scope};
use kura_service::{server, TlsIdentity};
use rand_core::{OsRng, RngCore};
use wallet_core::ceremony::dkg::{self, Ceremony};
use wallet_core::ceremony::{IdentityCard, Role};
use wallet_core::frost_core::keys::dkg as frost_dkg;
use wallet_core::frost_core::Identifier;
use wallet_core::{Keystore, Label, MemoryKeystore, Secp256k1Tr};

type C = Secp256k1Tr;

struct Parties {
    keystores: Vec<Arc<MemoryKeystore>>,
    ceremony: Ceremony<C>,
}

fn parties(t: u16, n: u16) -> Parties {
    let keystores: Vec<Arc<MemoryKeystore>> =
        (0..n).map(|_| Arc::new(MemoryKeystore::new())).collect();
    let cards = keystores
        .iter()
        .enumerate()
        .map(|(i, ks)| {
            IdentityCard::new(
                Label::new(format!("member-{i}")).expect("label"),
                Role::Signer,
                ks.identity_public_key().expect("key"),
            )
        })
        .collect();
    let mut nonce = [0u8; 32];
    OsRng.fill_bytes(&mut nonce);
    Parties {
        keystores,
        ceremony: Ceremony::new(t, cards, nonce).expect("ceremony"),
    }
}

/// Raw frost-core: every participant's three parts, one after another.
fn raw_frost(t: u16, n: u16) -> Duration {
    let ids: Vec<Identifier<C>> = (1..=n)
        .map(|i| Identifier::try_from(i).expect("id"))
        .collect();
    let started = Instant::now();
    let mut secrets1 = BTreeMap::new();
    let mut round1 = BTreeMap::new();
    for id in &ids {
        let (s, p) = frost_dkg::part1::<C, _>(*id, n, t, OsRng).expect("part1");
        secrets1.insert(*id, s);
        round1.insert(*id, p);
    }
    let mut secrets2 = BTreeMap::new();
    let mut round2: BTreeMap<Identifier<C>, BTreeMap<Identifier<C>, _>> = BTreeMap::new();
    for (id, s) in secrets1 {
        let mut others = round1.clone();
        others.remove(&id);
        let (s2, out) = frost_dkg::part2(s, &others).expect("part2");
        secrets2.insert(id, s2);
        for (to, p) in out {
            round2.entry(to).or_default().insert(id, p);
        }
    }
    for (id, s2) in &secrets2 {
        let mut others = round1.clone();
        others.remove(id);
        let mine = round2.get(id).expect("round 2 packages");
        frost_dkg::part3(s2, &others, mine).expect("part3");
    }
    started.elapsed()
}

/// wallet-core's ceremony without a network: signed broadcasts, signed and
/// sealed shares, every check, one participant after another.
fn in_memory(t: u16, n: u16) -> Duration {
    let p = parties(t, n);
    let c = &p.ceremony;
    let fp = c.fingerprint().to_string();
    let started = Instant::now();
    let r1: Vec<_> = p
        .keystores
        .iter()
        .map(|ks| {
            let conf = c.clone().confirm(&fp).expect("confirm");
            dkg::round1(&conf, ks.as_ref(), &mut OsRng).expect("round1")
        })
        .collect();
    let mut to: BTreeMap<Label, Vec<dkg::Round2Document<C>>> = BTreeMap::new();
    for ks in &p.keystores {
        for (label, doc) in dkg::round2(c, ks.as_ref(), &r1, &mut OsRng)
            .expect("round2")
            .messages
        {
            to.entry(label).or_default().push(doc);
        }
    }
    for (i, ks) in p.keystores.iter().enumerate() {
        let label = Label::new(format!("member-{i}")).expect("label");
        let mine = to.get(&label).cloned().unwrap_or_default();
        dkg::finish(c, ks.as_ref(), &r1, &mine).expect("finish");
    }
    started.elapsed()
}

/// Through the mailbox over HTTPS: every participant at once.
async fn over_mailbox(t: u16, n: u16) -> Duration {
    let p = parties(t, n);
    let c = p.ceremony.clone();
    let tls = TlsIdentity::generate(&["127.0.0.1".into()], "bench").expect("tls");
    let relay = Arc::new(Relay::new(tls.fingerprint(), vec![Scope::of_ceremony(&c)]));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("https://{}", listener.local_addr().expect("addr"));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = {
        let tls = tls.clone();
        tokio::spawn(async move {
            server::serve_router(server::relay_router(relay), &tls, listener, async move {
                let _ = stopped.await;
            })
            .await
        })
    };
    let fp = c.fingerprint().to_string();
    let mailboxes: Vec<MailboxClient> = p
        .keystores
        .iter()
        .map(|ks| {
            MailboxClient::new(&[&url], tls.fingerprint(), *c.id(), ks.clone()).expect("client")
        })
        .collect();
    let started = Instant::now();
    let mut runs = Vec::new();
    for (mailbox, ks) in mailboxes.into_iter().zip(p.keystores.iter().cloned()) {
        let confirmed = c.clone().confirm(&fp).expect("confirm");
        runs.push(tokio::spawn(async move {
            run_dkg(&mailbox, &confirmed, ks.as_ref(), Duration::from_secs(120)).await
        }));
    }
    let mut groups = Vec::new();
    for r in runs {
        groups.push(r.await.expect("task").expect("dkg").group);
    }
    let took = started.elapsed();
    assert!(groups.windows(2).all(|w| w[0] == w[1]));
    let _ = stop.send(());
    let _ = server.await;
    took
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let bench = args.iter().any(|a| a == "--bench");
    let runs: usize = args
        .iter()
        .position(|a| a == "--runs")
        .and_then(|i| args.get(i + 1))
        .and_then(|r| r.parse().ok())
        .unwrap_or(10);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let sizes: &[(u16, u16)] = if bench {
        &[(3, 5), (11, 15)]
    } else {
        &[(2, 3)]
    };
    let runs = if bench { runs } else { 1 };
    println!("DKG: median of {runs} runs (ms)");
    println!("size      raw frost   wallet-core (no network)   mailbox over HTTPS   mailbox / raw");
    for &(t, n) in sizes {
        // One warm-up of each.
        raw_frost(t, n);
        in_memory(t, n);
        rt.block_on(over_mailbox(t, n));
        let mut raw = Vec::new();
        let mut mem = Vec::new();
        let mut net = Vec::new();
        for _ in 0..runs {
            raw.push(raw_frost(t, n));
            mem.push(in_memory(t, n));
            net.push(rt.block_on(over_mailbox(t, n)));
        }
        let (raw, mem, net) = (median(raw), median(mem), median(net));
        println!(
            "{t}-of-{n:<5} {:>9.1}   {:>24.1}   {:>18.1}   {:>12.1}x",
            ms(raw),
            ms(mem),
            ms(net),
            ms(net) / ms(raw)
        );
    }
}
