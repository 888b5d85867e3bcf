//! What one durable write and the reads a server makes cost on this disk:
//! `submit` (a withdrawal and three mailbox events, one IMMEDIATE
//! transaction, `synchronous=FULL`), `withdrawal(id)`, and `work_for` of a
//! member's first 50 items.

use criterion::{criterion_group, criterion_main, Criterion};
use kura_service::{Received, SqliteStore, Store};
use kura_testkit::World;
use wallet_core::bitcoin;
use wallet_core::format;
use wallet_core::IdentityPublicKey;

fn policy(requester: &IdentityPublicKey, allowed: &bitcoin::Address) -> String {
    format!(
        "version = 1\nnetwork = \"regtest\"\n\
         [[requester]]\nlabel = \"ops\"\nkey = \"{requester}\"\n\
         [[destination]]\nlabel = \"exchange\"\naddress = \"{allowed}\"\n\
         [limits]\nper_transaction_sat = 500_000\nrolling_window_hours = 24\n\
         rolling_window_sat = 2_000_000\nmax_fee_sat = 20_000\nmax_fee_rate_sat_per_vb = 100\n"
    )
}

fn bench(c: &mut Criterion) {
    let w = World::builder(9, policy).build();
    let roster: Vec<IdentityPublicKey> = w.identities.values().copied().collect();
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("coordinator.db")).unwrap();
    let mut n = 0u64;
    let mut g = c.benchmark_group("sqlite-store");
    g.sample_size(20);
    let mut last = None;
    g.bench_function("submit-durable", |b| {
        b.iter_batched(
            || {
                n += 1;
                let req = w.request(&format!("l-{n}"), &w.psbt());
                Received::decode(format::encode(w.group.id(), &req).unwrap()).unwrap()
            },
            |doc| last = Some(store.submit(&doc, &roster).unwrap().id()),
            criterion::BatchSize::SmallInput,
        )
    });
    let id = last.unwrap();
    g.bench_function("withdrawal-by-id", |b| {
        b.iter(|| store.withdrawal(&id).unwrap())
    });
    g.bench_function("work-for-50", |b| {
        b.iter(|| store.work_for(&roster[0], 0, 50).unwrap())
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
