//! ROAST over the service: members that go silent after approving or that
//! send invalid shares cannot stop a withdrawal. With up to `n − t` of them
//! it is signed within `n − t + 1` sessions, the cheaters are named, and
//! the transaction passes Bitcoin Core's consensus code.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::faults::{faulty_member, Fault};
use common::*;
use kura_service::api::{SetAsideName, StateName, WithdrawalStatus};
use kura_service::client::Client;
use kura_testkit::World;
use wallet_core::RequestDigest;

/// Runs one withdrawal of a `t`-of-`n` group whose members `faults` (index,
/// fault, approval delay) misbehave, the others being honest daemons that
/// approve automatically; returns its final status.
async fn run(seed: u64, t: u16, n: u16, faults: &[(usize, Fault, u64)]) -> WithdrawalStatus {
    run_on(false, seed, t, n, faults).await
}

/// [`run`] with the coordinator's state in PostgreSQL when `postgres`.
async fn run_on(
    postgres: bool,
    seed: u64,
    t: u16,
    n: u16,
    faults: &[(usize, Fault, u64)],
) -> WithdrawalStatus {
    let mut world = World::builder(seed, policy(true)).threshold(t, n).build();
    let mut coordinator = if postgres {
        CoordinatorSide::on_postgres(&world)
    } else {
        CoordinatorSide::new(&world)
    };
    coordinator.start().await;
    let events = Events::default();
    let requester = requester(&world, &coordinator);
    let id = requester
        .submit(request_document(&world, "roast", &world.psbt()))
        .await
        .unwrap()
        .id;
    let signers = world.take_signers();
    let mut tasks = Vec::new();
    let mut honest = Vec::new();
    let coordinator = Arc::new(coordinator);
    let mut first = Vec::new();
    for (i, signer) in signers.into_iter().enumerate() {
        match faults.iter().find(|(f, _, _)| *f == i) {
            Some(&(_, fault, delay)) => {
                if delay == 0 {
                    first.push(signer.keystore().identity_public_key().unwrap());
                }
                let (url, pin) = (coordinator.url(), coordinator.fingerprint());
                tasks.push(tokio::spawn(async move {
                    faulty_member(url, pin, signer, fault, Duration::from_millis(delay)).await
                }));
            }
            None => honest.push((i, signer)),
        }
    }
    // The faulty without a delay approve first, so that they are in the
    // first session: the worst case for the bound.
    wait_approved(&requester, &id, &first).await;
    let mut daemons = Vec::new();
    for (i, signer) in honest {
        daemons.push(start_daemon(
            &coordinator,
            i,
            signer,
            &world.homes[i],
            &events,
        ));
    }
    let status = wait_final(&requester, &id, Duration::from_secs(60)).await;
    check_final(&status, &world);
    for d in daemons {
        d.stop();
    }
    for t in tasks {
        t.abort();
    }
    status
}

async fn wait_approved(
    client: &Client,
    id: &RequestDigest,
    who: &[wallet_core::IdentityPublicKey],
) {
    for _ in 0..400 {
        let status = client.status(id).await.unwrap();
        if who.iter().all(|k| status.approved_by.contains(k)) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the faulty members never approved");
}

fn sessions(status: &WithdrawalStatus) -> usize {
    status.sessions.len()
}

fn set_aside(status: &WithdrawalStatus, reason: SetAsideName) -> usize {
    status
        .set_aside
        .iter()
        .filter(|a| a.reason == reason)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_of_five_silent_after_approving_cost_at_most_three_sessions() {
    let status = run(81, 3, 5, &[(0, Fault::Silent, 0), (1, Fault::Silent, 400)]).await;
    assert_eq!(status.state, StateName::Finalized);
    assert!(sessions(&status) <= 3, "{status:?}");
    assert!(
        sessions(&status) >= 2,
        "the silent member was in session 1: {status:?}"
    );
    assert_eq!(
        set_aside(&status, SetAsideName::InvalidShares),
        0,
        "{status:?}"
    );
    assert!(
        set_aside(&status, SetAsideName::MissedDeadline) >= 1,
        "{status:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_of_five_cheating_are_named_and_cost_at_most_three_sessions() {
    let status = run(82, 3, 5, &[(0, Fault::Cheats, 0), (1, Fault::Cheats, 400)]).await;
    assert!(sessions(&status) <= 3, "{status:?}");
    assert!(
        set_aside(&status, SetAsideName::InvalidShares) >= 1,
        "{status:?}"
    );
    let keys: Vec<_> = status
        .set_aside
        .iter()
        .filter(|a| a.reason == SetAsideName::InvalidShares)
        .map(|a| a.member)
        .collect();
    assert!(keys.len() <= 2, "only the cheaters: {status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_of_five_faulty_in_a_two_of_five_group_cost_at_most_four_sessions() {
    let status = run(
        83,
        2,
        5,
        &[
            (0, Fault::Cheats, 0),
            (1, Fault::Silent, 0),
            (2, Fault::Cheats, 300),
        ],
    )
    .await;
    assert!(sessions(&status) <= 4, "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgres_one_silent_and_one_cheating_cost_at_most_three_sessions() {
    let status = run_on(
        true,
        84,
        3,
        5,
        &[(0, Fault::Silent, 0), (1, Fault::Cheats, 0)],
    )
    .await;
    assert!(sessions(&status) <= 3, "{status:?}");
    assert!(sessions(&status) >= 2, "{status:?}");
    assert_eq!(
        set_aside(&status, SetAsideName::InvalidShares),
        1,
        "{status:?}"
    );
}
