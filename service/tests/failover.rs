//! Two coordinator processes sharing one PostgreSQL database: clients and
//! daemons use either; one is killed in the middle of a stream of
//! withdrawals and the other carries every one to its end — none lost,
//! none signed twice.

mod common;

use std::time::Duration;

use common::pg;
use common::*;
use kura_service::api::{RoleName, StateName};
use kura_service::client::Client;
use kura_service::{PostgresStore, Store};
use kura_testkit::World;
use wallet_core::MemoryKeystore;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_coordinator_is_taken_over_by_its_sibling() {
    let mut world = World::builder(91, policy(true)).threshold(3, 5).build();
    let mut a = CoordinatorSide::on_postgres(&world);
    let mut b = a.sibling();
    a.start().await;
    b.start().await;
    let events = Events::default();
    let daemons: Vec<_> = world
        .take_signers()
        .into_iter()
        .enumerate()
        .map(|(i, s)| start_daemon_on(&[&a, &b], i, s, &world.homes[i], &events))
        .collect();
    let (url_a, url_b) = (a.url(), b.url());
    let requester = Client::with_failover(
        &[&url_a, &url_b],
        a.fingerprint(),
        *world.group.id(),
        RoleName::Requester,
        std::sync::Arc::new(MemoryKeystore::with_identity(world.requester.clone())),
    )
    .unwrap();

    let mut ids = Vec::new();
    for i in 0..6 {
        let doc = request_document(&world, &format!("fo-{i}"), &world.psbt());
        ids.push(requester.submit(doc).await.unwrap().id);
    }
    // A dies with withdrawals in flight.
    a.kill().await;
    for i in 6..12 {
        let doc = request_document(&world, &format!("fo-{i}"), &world.psbt());
        ids.push(requester.submit(doc).await.unwrap().id);
    }
    // (How fast is measured by the load bench, not asserted here.)
    for id in &ids {
        let status = wait_final(&requester, id, Duration::from_secs(60)).await;
        assert_eq!(status.state, StateName::Finalized, "{status:?}");
        check_final(&status, &world);
    }
    // Nothing twice: one result per withdrawal, every approval used by one
    // session at most (the store refuses anything else), and each
    // withdrawal signed by one session.
    let url = b.postgres.clone().unwrap();
    let open = pg::blocking(|| PostgresStore::connect(&url).unwrap().list_open().unwrap());
    assert!(open.is_empty());
    for id in &ids {
        let status = requester.status(id).await.unwrap();
        assert!(status.sessions.len() <= 3, "{status:?}");
    }
    for d in daemons {
        d.stop();
    }
}
