//! The custody round over real HTTPS on loopback with a real SQLite file:
//! a coordinator, signer daemons, a requester.

mod common;

use std::time::Duration;

use common::*;
use kura_service::api::StateName;
use kura_testkit::World;

async fn honest_round(t: u16, n: u16, seed: u64) {
    let mut world = World::builder(seed, policy(true)).threshold(t, n).build();
    let mut coordinator = CoordinatorSide::new(&world);
    coordinator.start().await;
    let events = Events::default();
    let signers = world.take_signers();
    let daemons: Vec<_> = signers
        .into_iter()
        .enumerate()
        .map(|(i, s)| start_daemon(&coordinator, i, s, &world.homes[i], &events))
        .collect();
    let requester = requester(&world, &coordinator);
    let submitted = requester
        .submit(request_document(&world, "wd-1", &world.psbt()))
        .await
        .unwrap();
    assert!(!submitted.duplicate);
    let status = wait_final(&requester, &submitted.id, Duration::from_secs(60)).await;
    check_final(&status, &world);
    assert_eq!(status.sessions.len(), 1);
    assert_eq!(status.sessions[0].members.len(), usize::from(t));
    // Each signer in the session released its shares once, after approving.
    let signed: Vec<usize> = (0..usize::from(n))
        .filter(|&i| {
            audit_events(&world, i)
                .iter()
                .any(|e| e == "share-released")
        })
        .collect();
    assert_eq!(signed.len(), usize::from(t), "{signed:?}");
    // The same request again is recorded once.
    let again = requester
        .submit(request_document(&world, "wd-1", &world.psbt()))
        .await;
    assert!(
        again.is_err() || again.as_ref().unwrap().duplicate,
        "{again:?}"
    );
    for d in daemons {
        d.stop();
    }
    let _ = events;
    assert_eq!(
        requester.status(&submitted.id).await.unwrap().state,
        StateName::Finalized
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_honest_2_of_3_withdrawal_completes_over_https() {
    honest_round(2, 3, 11).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_honest_3_of_5_withdrawal_completes_over_https() {
    honest_round(3, 5, 12).await;
}
