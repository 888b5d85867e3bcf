//! The custody round over real HTTPS on loopback with a real SQLite file:
//! a coordinator, signer daemons, a requester.

mod common;

use std::time::Duration;

use axum::response::IntoResponse;
use common::*;
use kura_service::api::StateName;
use kura_testkit::World;

async fn honest_round(t: u16, n: u16, seed: u64) {
    let mut world = World::builder(seed, policy(true)).threshold(t, n).build();
    let mut coordinator = CoordinatorSide::new(&world);
    coordinator.start().await;
    let events = Events::default();
    let daemons = start_daemons(&mut world, &coordinator, &events);
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coins_at_derived_deposit_addresses_are_withdrawn_over_https() {
    // The coordinator checks every share on arrival under the child key its
    // input spends: were it to check under the group key, every honest
    // signer would be set aside and the withdrawal would fail.
    use wallet_core::hd::{fill_psbt, ChildPath};
    let mut world = World::builder(17, policy(true)).threshold(3, 5).build();
    let xpub = world.group.xpub();
    world.coins = [(3u32, 400_000u64), (90, 300_000)]
        .iter()
        .enumerate()
        .map(|(k, (i, v))| {
            let keys = xpub.derive(&ChildPath::receive(*i).unwrap()).unwrap();
            kura_testkit::coin(&keys.taproot().script_pubkey(), *v, 0x60 + k as u8)
        })
        .collect();
    let mut psbt = world.psbt();
    let filled = fill_psbt(&mut psbt, &xpub, 100).unwrap();
    assert_eq!(filled.inputs.len(), 2);
    let mut coordinator = CoordinatorSide::new(&world);
    coordinator.start().await;
    let events = Events::default();
    let daemons = start_daemons(&mut world, &coordinator, &events);
    let requester = requester(&world, &coordinator);
    let submitted = requester
        .submit(request_document(&world, "hd-1", &psbt))
        .await
        .unwrap();
    let status = wait_final(&requester, &submitted.id, Duration::from_secs(60)).await;
    check_final(&status, &world);
    assert_eq!(status.sessions.len(), 1, "{status:?}");
    for d in daemons {
        d.stop();
    }
}

/// A login document for `identity`, answering `challenge`, naming `pin`.
fn login_document(
    world: &World,
    identity: &wallet_core::SoftwareIdentity,
    challenge: &str,
    pin: kura_service::CertFingerprint,
    role: kura_service::api::RoleName,
) -> Vec<u8> {
    let ks = wallet_core::MemoryKeystore::with_identity(identity.clone());
    let login = kura_service::api::ServiceLogin {
        challenge: challenge.to_owned(),
        coordinator: pin,
        role,
    };
    let signed = wallet_core::Signed::sign(world.group.id(), login, &ks).unwrap();
    wallet_core::format::encode(world.group.id(), &signed).unwrap()
}

async fn challenge_for(
    http: &reqwest::Client,
    coordinator: &CoordinatorSide,
    key: &wallet_core::IdentityPublicKey,
) -> reqwest::Response {
    http.post(format!("{}/v1/auth/challenge", coordinator.url()))
        .json(&serde_json::json!({ "key": key }))
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_and_non_member_clients_are_refused() {
    use kura_service::api::RoleName;
    let world = World::builder(21, policy(true)).build();
    let mut coordinator = CoordinatorSide::new(&world);
    coordinator.start().await;
    let http = raw(&coordinator);
    let url = coordinator.url();

    // No token, a malformed one, an unknown one.
    for auth in [
        None,
        Some("Bearer nonsense"),
        Some(&*format!("Bearer {}", "ab".repeat(32))),
    ] {
        let mut req = http.get(format!("{url}/v1/work"));
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        assert_eq!(req.send().await.unwrap().status(), 401, "{auth:?}");
    }

    // An outsider gets no challenge, and cannot log in as anything.
    let outsider = wallet_core::SoftwareIdentity::generate(&mut kura_testkit::rng(99));
    assert_eq!(
        challenge_for(&http, &coordinator, &outsider.public_key())
            .await
            .status(),
        403
    );
    let outsider_client = kura_service::client::Client::new(
        &url,
        coordinator.fingerprint(),
        *world.group.id(),
        RoleName::Requester,
        std::sync::Arc::new(wallet_core::MemoryKeystore::with_identity(outsider.clone())),
    )
    .unwrap();
    assert_eq!(
        outsider_client.login().await.unwrap_err().status(),
        Some(403)
    );

    // A login answers its challenge once, names this coordinator, and is
    // signed by the key the challenge was issued to.
    let requester_key = world.requester.public_key();
    let answer: serde_json::Value = challenge_for(&http, &coordinator, &requester_key)
        .await
        .json()
        .await
        .unwrap();
    let challenge = answer["challenge"].as_str().unwrap().to_owned();
    let post_login = |doc: Vec<u8>| {
        http.post(format!("{url}/v1/auth/login"))
            .header("content-type", "application/json")
            .body(doc)
            .send()
    };
    let other_pin: kura_service::CertFingerprint =
        format!("sha256:{}", "00".repeat(32)).parse().unwrap();
    let relayed = login_document(
        &world,
        &world.requester,
        &challenge,
        other_pin,
        RoleName::Requester,
    );
    assert_eq!(
        post_login(relayed).await.unwrap().status(),
        401,
        "another coordinator's login"
    );
    // That failed attempt did not use up the challenge, but a signature by
    // another key over it is refused.
    let answer: serde_json::Value = challenge_for(&http, &coordinator, &requester_key)
        .await
        .json()
        .await
        .unwrap();
    let challenge = answer["challenge"].as_str().unwrap().to_owned();
    let forged = login_document(
        &world,
        &outsider,
        &challenge,
        coordinator.fingerprint(),
        RoleName::Requester,
    );
    assert_eq!(
        post_login(forged).await.unwrap().status(),
        401,
        "signed by another key"
    );
    let answer: serde_json::Value = challenge_for(&http, &coordinator, &requester_key)
        .await
        .json()
        .await
        .unwrap();
    let challenge = answer["challenge"].as_str().unwrap().to_owned();
    let good = login_document(
        &world,
        &world.requester,
        &challenge,
        coordinator.fingerprint(),
        RoleName::Requester,
    );
    let ok = post_login(good.clone()).await.unwrap();
    assert_eq!(ok.status(), 200);
    let token: serde_json::Value = ok.json().await.unwrap();
    let token = token["token"].as_str().unwrap().to_owned();
    assert_eq!(
        post_login(good).await.unwrap().status(),
        401,
        "a replayed login"
    );
    // A requester's token reads its mailbox, but cannot act as a signer.
    let with_token = |r: reqwest::RequestBuilder| r.bearer_auth(&token);
    assert_eq!(
        with_token(http.get(format!("{url}/v1/work")))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let requester = requester(&world, &coordinator);
    let id = requester
        .submit(request_document(&world, "wd-auth", &world.psbt()))
        .await
        .unwrap()
        .id;
    let r = with_token(http.get(format!("{url}/v1/withdrawals/{id}/documents")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "documents are for members");
    let r = with_token(http.post(format!("{url}/v1/withdrawals/{id}/approvals")))
        .header("content-type", "application/json")
        .body(request_document(&world, "wd-x", &world.psbt()))
        .send()
        .await
        .unwrap();
    assert!(r.status() == 400 || r.status() == 403, "{}", r.status());
    // A member may not log in as a requester, nor submit.
    let member_key = world.stores[0].clone();
    let member_as_requester = kura_service::client::Client::new(
        &url,
        coordinator.fingerprint(),
        *world.group.id(),
        RoleName::Requester,
        member_key.clone(),
    )
    .unwrap();
    assert_eq!(
        member_as_requester.login().await.unwrap_err().status(),
        Some(403)
    );
    let member = kura_service::client::Client::new(
        &url,
        coordinator.fingerprint(),
        *world.group.id(),
        RoleName::Signer,
        member_key,
    )
    .unwrap();
    let e = member
        .submit(request_document(&world, "wd-by-member", &world.psbt()))
        .await
        .unwrap_err();
    assert_eq!(e.status(), Some(403), "{e}");

    // A client pinned to another certificate does not connect at all.
    let wrong_pin = kura_service::client::Client::new(
        &url,
        other_pin,
        *world.group.id(),
        RoleName::Requester,
        std::sync::Arc::new(wallet_core::MemoryKeystore::with_identity(
            world.requester.clone(),
        )),
    )
    .unwrap();
    assert!(
        matches!(
            wrong_pin.login().await,
            Err(kura_service::ClientError::Connect { .. })
        ),
        "a certificate that is not the pinned one"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_withdrawal_outside_auto_approval_waits_for_a_person() {
    use kura_service::daemon::control::{self, ControlRequest};
    use kura_service::daemon::DaemonEvent;
    let mut world = World::builder(31, policy(false)).build();
    let mut coordinator = CoordinatorSide::new(&world);
    coordinator.start().await;
    let events = Events::default();
    let daemons = start_daemons(&mut world, &coordinator, &events);
    let requester = requester(&world, &coordinator);
    let id = requester
        .submit(request_document(&world, "wd-manual", &world.psbt()))
        .await
        .unwrap()
        .id;
    wait_events(&events, |e| {
        e.iter()
            .filter(|(_, ev)| *ev == DaemonEvent::Waiting { id })
            .count()
            == 3
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let status = requester.status(&id).await.unwrap();
    assert_eq!(
        status.state,
        StateName::Submitted,
        "nothing approved without a person"
    );
    assert!(status.approved_by.is_empty());

    // The person sees the daemon's own review, then answers by the full id.
    let pending = control::call(&daemons[0].run_dir, &ControlRequest::Pending { v: 1 })
        .await
        .unwrap();
    let list = pending.pending.unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].id, id);
    assert!(
        list[0].review.contains("250000") || list[0].review.contains("0.0025"),
        "{}",
        list[0].review
    );
    let wrong = control::call(
        &daemons[0].run_dir,
        &ControlRequest::Approve {
            v: 1,
            id: "00".repeat(32).parse().unwrap(),
        },
    )
    .await
    .unwrap();
    assert!(!wrong.ok);
    let declined = control::call(
        &daemons[2].run_dir,
        &ControlRequest::Refuse {
            v: 1,
            id,
            reason: "not on today's \u{1b}[2J list".into(),
        },
    )
    .await
    .unwrap();
    assert!(declined.ok, "{declined:?}");
    assert!(audit_events(&world, 2).iter().any(|e| e == "refused"));
    for i in [0, 1] {
        let r = control::call(&daemons[i].run_dir, &ControlRequest::Approve { v: 1, id })
            .await
            .unwrap();
        assert!(r.ok, "{r:?}");
    }
    let status = wait_final(&requester, &id, Duration::from_secs(60)).await;
    check_final(&status, &world);
    // A bad line gets an answer, not a crash.
    let bad = control::call(&daemons[0].run_dir, &ControlRequest::Pending { v: 7 })
        .await
        .unwrap();
    assert!(!bad.ok);
    for d in daemons {
        d.stop();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_coordinator_restarted_mid_withdrawal_completes_it() {
    let mut world = World::builder(41, policy(true)).build();
    let mut coordinator = CoordinatorSide::new(&world);
    coordinator.start().await;
    let events = Events::default();
    let mut signers = world.take_signers().into_iter();
    let first = start_daemon(
        &coordinator,
        0,
        signers.next().unwrap(),
        &world.homes[0],
        &events,
    );
    let requester = requester(&world, &coordinator);
    let id = requester
        .submit(request_document(&world, "wd-restart", &world.psbt()))
        .await
        .unwrap()
        .id;
    wait_events(&events, |e| {
        e.iter().any(|(i, ev)| {
            *i == 0 && matches!(ev, kura_service::daemon::DaemonEvent::AutoApproved { .. })
        })
    })
    .await;
    // Killed with one approval recorded, then started again on the same file.
    coordinator.kill().await;
    coordinator.start().await;
    let second = start_daemon(
        &coordinator,
        1,
        signers.next().unwrap(),
        &world.homes[1],
        &events,
    );
    let status = wait_final(&requester, &id, Duration::from_secs(60)).await;
    check_final(&status, &world);
    assert_eq!(status.approved_by.len(), 2);
    first.stop();
    second.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_directory_that_is_a_link_is_refused() {
    let mut world = World::builder(71, policy(true)).build();
    let coordinator = CoordinatorSide::new(&world);
    let signer = world.take_signers().into_iter().next().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let home = &world.homes[0];
    std::os::unix::fs::symlink(elsewhere.path(), home.join("run")).unwrap();
    let client = kura_service::client::Client::new(
        &coordinator.url(),
        coordinator.fingerprint(),
        *world.group.id(),
        kura_service::api::RoleName::Signer,
        signer.keystore().clone(),
    )
    .unwrap();
    let made = kura_service::daemon::SignerDaemon::new(signer, client, &home.join("run"), |_| {});
    let e = made.unwrap_err();
    assert!(e.to_string().contains("not a link"), "{e}");
}

/// A person's approval whose answer is lost on the way back, approved
/// again: the coordinator has the first one, and the signer approved once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approval_retried_after_a_lost_answer_is_not_made_twice() {
    use kura_service::daemon::control::{self, ControlRequest};
    use kura_service::daemon::DaemonEvent;
    use std::sync::atomic::{AtomicBool, Ordering};
    let mut world = World::builder(72, policy(false)).build();
    let mut coordinator = CoordinatorSide::new(&world);
    let store = kura_service::SqliteStore::open(coordinator.db()).unwrap();
    let state = kura_service::server::AppState::new(kura_service::Coordinator::new(
        coordinator.config.clone(),
        store,
    ));
    // The first approval posted is recorded, then its answer is lost.
    let lose = std::sync::Arc::new(AtomicBool::new(true));
    let router = {
        let lose = lose.clone();
        kura_service::server::router(state.clone()).layer(axum::middleware::from_fn(
            move |req: axum::extract::Request, next: axum::middleware::Next| {
                let lose = lose.clone();
                async move {
                    let approval = req.uri().path().ends_with("/approvals");
                    let response = next.run(req).await;
                    if approval
                        && response.status().is_success()
                        && lose.swap(false, Ordering::SeqCst)
                    {
                        return axum::http::StatusCode::BAD_GATEWAY.into_response();
                    }
                    response
                }
            },
        ))
    };
    coordinator.start_with(state, Some(router)).await;
    let events = Events::default();
    let daemons = start_daemons(&mut world, &coordinator, &events);
    let requester = requester(&world, &coordinator);
    let id = requester
        .submit(request_document(&world, "wd-lost", &world.psbt()))
        .await
        .unwrap()
        .id;
    wait_events(&events, |e| {
        e.iter()
            .filter(|(_, ev)| *ev == DaemonEvent::Waiting { id })
            .count()
            == 3
    })
    .await;
    let first = control::call(&daemons[0].run_dir, &ControlRequest::Approve { v: 1, id })
        .await
        .unwrap();
    assert!(!first.ok, "the answer was lost: {first:?}");
    assert_eq!(
        requester.status(&id).await.unwrap().approved_by.len(),
        1,
        "but it was recorded"
    );
    let again = control::call(&daemons[0].run_dir, &ControlRequest::Approve { v: 1, id })
        .await
        .unwrap();
    assert!(again.ok, "{again:?}");
    let r = control::call(&daemons[1].run_dir, &ControlRequest::Approve { v: 1, id })
        .await
        .unwrap();
    assert!(r.ok, "{r:?}");
    check_final(
        &wait_final(&requester, &id, Duration::from_secs(60)).await,
        &world,
    );
    // Once before it signed: the approval after its release is the next
    // one its answer carried (for a later session, had this one failed).
    let log = audit_events(&world, 0);
    let released = log.iter().position(|e| e == "share-released").unwrap();
    let approvals = log[..released].iter().filter(|e| *e == "approved").count();
    assert_eq!(approvals, 1, "signer 0 approved once");
    for d in daemons {
        d.stop();
    }
}
