//! A dishonest coordinator over the network: the honest server's routes
//! behind a layer that rewrites what it serves the signers, replaying the
//! red team's attacks of the file flow. Every one must be refused by the
//! signers with nothing released.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::middleware::{self, Next};
use axum::response::Response;
use common::*;
use kura_service::daemon::DaemonEvent;
use kura_service::server::{self, AppState};
use kura_service::{Coordinator, SqliteStore};
use kura_testkit::World;
use serde_json::Value;

/// What the dishonest coordinator does to the documents it serves.
#[derive(Clone, Debug, PartialEq)]
enum Attack {
    Honest,
    /// The request's PSBT replaced by one paying the attacker.
    SwapDestination(String),
    /// Two members' commitments exchanged in the first input's package.
    SubstituteCommitments,
    /// The two inputs' messages exchanged.
    SwapInputMessages,
    /// Another withdrawal's packages served as this one's.
    ReplayPackages(Value),
    /// Every session shown as unanswered (so that a daemon signs again).
    ForgetAnswers,
}

fn tamper(attack: &Attack, mut documents: Value) -> Value {
    match attack {
        Attack::Honest => {}
        Attack::SwapDestination(psbt) => {
            documents["request"]["body"]["body"]["psbt"] = Value::String(psbt.clone());
        }
        Attack::SubstituteCommitments => {
            if let Some(s) = documents["sessions"].get_mut(0) {
                let c = &mut s["packages"]["body"]["packages"][0]["commitments"];
                let a = c[0]["commitments"].clone();
                c[0]["commitments"] = c[1]["commitments"].clone();
                c[1]["commitments"] = a;
            }
        }
        Attack::SwapInputMessages => {
            if let Some(s) = documents["sessions"].get_mut(0) {
                let p = &mut s["packages"]["body"]["packages"];
                let m0 = p[0]["message"].clone();
                p[0]["message"] = p[1]["message"].clone();
                p[1]["message"] = m0;
            }
        }
        Attack::ForgetAnswers => {
            if let Some(sessions) = documents["status"]["sessions"].as_array_mut() {
                for s in sessions {
                    s["answered"] = Value::Array(Vec::new());
                }
            }
        }
        Attack::ReplayPackages(other) => {
            if let Some(s) = documents["sessions"].get_mut(0) {
                s["packages"] = other.clone();
            }
        }
    }
    documents
}

type Shared = Arc<Mutex<Attack>>;
type Seen = Arc<Mutex<Vec<Value>>>;

async fn dishonest(attack: Shared, seen: Seen, request: Request, next: Next) -> Response {
    let documents = request.uri().path().ends_with("/documents");
    let response = next.run(request).await;
    if !documents || !response.status().is_success() {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    let value: Value = serde_json::from_slice(&bytes).unwrap();
    seen.lock().unwrap().push(value.clone());
    let attack = attack.lock().unwrap().clone();
    let out = serde_json::to_vec(&tamper(&attack, value)).unwrap();
    parts.headers.remove(axum::http::header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(out))
}

/// Starts `coordinator` as the honest server behind the dishonest layer,
/// honest until told otherwise; returns the attack to set and what it served.
async fn start_dishonest(coordinator: &mut CoordinatorSide) -> (Shared, Seen) {
    let attack: Shared = Arc::new(Mutex::new(Attack::Honest));
    let seen: Seen = Arc::default();
    let store = SqliteStore::open(coordinator.db()).unwrap();
    let state = AppState::new(Coordinator::new(coordinator.config.clone(), store));
    let router = {
        let (attack, seen) = (attack.clone(), seen.clone());
        server::router(state.clone()).layer(middleware::from_fn(move |req, next| {
            dishonest(attack.clone(), seen.clone(), req, next)
        }))
    };
    coordinator.start_with(state, Some(router)).await;
    (attack, seen)
}

fn releases(world: &World) -> usize {
    (0..world.homes.len())
        .map(|i| {
            audit_events(world, i)
                .iter()
                .filter(|e| *e == "share-released")
                .count()
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dishonest_coordinator_gets_nothing_signed() {
    let mut world = World::builder(51, policy(true)).build();
    let mut coordinator = CoordinatorSide::new(&world);
    let (attack, seen) = start_dishonest(&mut coordinator).await;
    let events = Events::default();
    let daemons = start_daemons(&mut world, &coordinator, &events);
    let requester = requester(&world, &coordinator);

    // An honest withdrawal first, whose packages the replay reuses.
    let honest = requester
        .submit(request_document(&world, "wd-honest", &world.psbt()))
        .await
        .unwrap()
        .id;
    check_final(
        &wait_final(&requester, &honest, Duration::from_secs(60)).await,
        &world,
    );
    let old_packages = seen
        .lock()
        .unwrap()
        .iter()
        .rev()
        .find_map(|d| d["sessions"].get(0).map(|s| s["packages"].clone()))
        .unwrap();
    let released_before = releases(&world);

    let thief = kura_testkit::psbt(
        &world.coins,
        kura_testkit::withdrawal_outputs(
            700_000,
            &kura_testkit::outside_address(9).script_pubkey(),
            250_000,
            &world.group.taproot().script_pubkey(),
            2_000,
        ),
    )
    .to_string();
    let attacks = [
        ("swap-destination", Attack::SwapDestination(thief)),
        ("substitute-commitments", Attack::SubstituteCommitments),
        ("swap-input-messages", Attack::SwapInputMessages),
        ("replay-packages", Attack::ReplayPackages(old_packages)),
    ];
    for (n, (name, a)) in attacks.into_iter().enumerate() {
        *attack.lock().unwrap() = a;
        let id = requester
            .submit(request_document(
                &world,
                &format!("wd-attack-{n}"),
                &world.psbt(),
            ))
            .await
            .unwrap()
            .id;
        // Every signer that was shown the tampered documents refuses.
        let expected = if name == "swap-destination" { 3 } else { 2 };
        wait_events(&events, |e| {
            e.iter()
                .filter(|(_, ev)| matches!(ev, DaemonEvent::Refused { id: r, .. } if *r == id))
                .count()
                >= expected
        })
        .await;
        let status = requester.status(&id).await.unwrap();
        assert!(
            !status.state.is_final() || status.psbt.is_none(),
            "{name}: {status:?}"
        );
        assert_eq!(
            releases(&world),
            released_before,
            "{name}: a share was released"
        );
        let refusals: Vec<String> = events
            .lock()
            .unwrap()
            .iter()
            .filter_map(|(_, ev)| match ev {
                DaemonEvent::Refused { id: r, kind, .. } if *r == id => Some(kind.clone()),
                _ => None,
            })
            .collect();
        let want = if name == "swap-destination" {
            "wrong-request"
        } else {
            "signing-package"
        };
        assert!(refusals.iter().all(|k| k == want), "{name}: {refusals:?}");
    }
    for d in daemons {
        d.stop();
    }
}

/// A coordinator that keeps showing a session as unanswered and sends its
/// packages again and again: the daemon posts the answer it gave, and the
/// signer makes no new approval (nonces, audit entries) for each replay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_packages_get_the_same_answer_not_new_approvals() {
    use kura_service::api::{EventName, WorkEntry};
    let mut world = World::builder(52, policy(true)).threshold(3, 3).build();
    let mut coordinator = CoordinatorSide::new(&world);
    let (attack, _) = start_dishonest(&mut coordinator).await;
    let events = Events::default();
    let mut signers = world.take_signers();
    // Member 2 approves and then never answers: the withdrawal stays open.
    let silent = signers.pop().unwrap();
    let (url, pin) = (coordinator.url(), coordinator.fingerprint());
    let faulty = tokio::spawn(async move {
        common::faults::faulty_member(
            url,
            pin,
            silent,
            common::faults::Fault::Silent,
            Duration::ZERO,
        )
        .await
    });
    let daemons: Vec<_> = signers
        .into_iter()
        .enumerate()
        .map(|(i, s)| start_daemon(&coordinator, i, s, &world.homes[i], &events))
        .collect();
    let requester = requester(&world, &coordinator);
    let id = requester
        .submit(request_document(&world, "wd-churn", &world.psbt()))
        .await
        .unwrap()
        .id;
    wait_events(&events, |e| {
        e.iter()
            .filter(|(_, ev)| matches!(ev, DaemonEvent::Signed { id: r, .. } if *r == id))
            .count()
            == 2
    })
    .await;
    *attack.lock().unwrap() = Attack::ForgetAnswers;
    let approved = |world: &World| {
        audit_events(world, 0)
            .iter()
            .filter(|e| *e == "approved")
            .count()
    };
    let before = approved(&world);
    for seq in 0..5 {
        daemons[0]
            .daemon
            .clone()
            .handle(WorkEntry {
                seq: 1_000 + seq,
                withdrawal: id,
                kind: EventName::Packages,
            })
            .await
            .unwrap();
    }
    assert_eq!(approved(&world), before, "no new approval per replay");
    assert_eq!(
        audit_events(&world, 0)
            .iter()
            .filter(|e| *e == "share-released")
            .count(),
        1
    );
    faulty.abort();
    for d in daemons {
        d.stop();
    }
}
