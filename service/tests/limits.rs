//! Malformed, oversized and slow requests: refused with a 4xx or cut off
//! by a timeout, and the coordinator goes on serving.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use kura_testkit::World;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn token(world: &World, coordinator: &CoordinatorSide) -> String {
    // Log in through the client, then read the token back by logging in
    // by hand: the client keeps its token private.
    let http = raw(coordinator);
    let key = world.requester.public_key();
    let c: serde_json::Value = http
        .post(format!("{}/v1/auth/challenge", coordinator.url()))
        .json(&serde_json::json!({ "key": key }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ks = wallet_core::MemoryKeystore::with_identity(world.requester.clone());
    let login = kura_service::api::ServiceLogin {
        challenge: c["challenge"].as_str().unwrap().to_owned(),
        coordinator: coordinator.fingerprint(),
        role: kura_service::api::RoleName::Requester,
    };
    let doc = wallet_core::format::encode(
        world.group.id(),
        &wallet_core::Signed::sign(world.group.id(), login, &ks).unwrap(),
    )
    .unwrap();
    let t: serde_json::Value = http
        .post(format!("{}/v1/auth/login", coordinator.url()))
        .body(doc)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    t["token"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_oversized_requests_get_4xx() {
    let world = World::builder(61, policy(true)).build();
    let mut coordinator = CoordinatorSide::new(&world);
    coordinator.start().await;
    let http = raw(&coordinator);
    let url = coordinator.url();
    let token = token(&world, &coordinator).await;
    let post = |path: &str, body: Vec<u8>| {
        http.post(format!("{url}{path}"))
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        (
            "/v1/withdrawals",
            vec![b' '; wallet_core::format::MAX_DOCUMENT_BYTES + 1],
            413,
        ),
        ("/v1/withdrawals", b"not json".to_vec(), 400),
        (
            "/v1/withdrawals",
            b"{\"format\":\"kura\",\"version\":1}".to_vec(),
            400,
        ),
        ("/v1/withdrawals", vec![0xff, 0xfe, 0x00], 400),
        ("/v1/auth/challenge", b"{\"key\":\"zz\"}".to_vec(), 400),
        // Anyone may call the login routes: their bodies are kept small.
        ("/v1/auth/challenge", vec![b' '; 5 * 1024], 413),
        ("/v1/auth/login", vec![b' '; 5 * 1024], 413),
        ("/v1/auth/login", b"[]".to_vec(), 400),
        ("/v1/withdrawals/not-an-id/approvals", b"{}".to_vec(), 400),
        ("/v1/nowhere", Vec::new(), 404),
    ];
    for (path, body, want) in cases {
        let r = post(path, body).await.unwrap();
        let status = r.status().as_u16();
        let answer: serde_json::Value = r.json().await.unwrap_or_default();
        assert_eq!(status, want, "{path}: {answer}");
        if status != 404 {
            assert!(
                answer["error"].is_string(),
                "{path}: a typed error body: {answer}"
            );
        }
    }
    // A request living longer than any signer accepts is not kept open.
    let psbt = world.psbt();
    let body = wallet_core::WithdrawalRequest::new(
        wallet_core::RequestId::new("wd-forever").unwrap(),
        world.requester.public_key(),
        &psbt,
        now(),
        30 * 24 * 3600,
        "",
    )
    .unwrap();
    let ks = wallet_core::MemoryKeystore::with_identity(world.requester.clone());
    let forever = wallet_core::format::encode(
        world.group.id(),
        &wallet_core::Signed::sign(world.group.id(), body, &ks).unwrap(),
    )
    .unwrap();
    assert_eq!(
        post("/v1/withdrawals", forever).await.unwrap().status(),
        403
    );
    let r = http
        .get(format!("{url}/v1/work?after=x"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // Still serving.
    let r = http
        .get(format!("{url}/v1/work"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_cut_off() {
    let world = World::builder(62, policy(true)).build();
    let mut coordinator = CoordinatorSide::new(&world);
    coordinator.start().await;
    let addr = coordinator.addr;

    // A TCP connection that never starts TLS is closed by the handshake
    // timeout.
    let started = Instant::now();
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(15), tcp.read(&mut buf))
        .await
        .expect("closed by the server");
    assert!(matches!(n, Ok(0) | Err(_)));
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(4) && waited < Duration::from_secs(12),
        "{waited:?}"
    );

    // A TLS connection that sends its request head one byte every 300 ms is
    // closed by the header timeout.
    let config = kura_service::tls::client_config(coordinator.fingerprint()).unwrap();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls_name();
    let mut tls = connector.connect(name, tcp).await.unwrap();
    let started = Instant::now();
    let head = b"GET /v1/work HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let mut closed = false;
    for byte in head.iter() {
        if tls.write_all(&[*byte]).await.is_err() || tls.flush().await.is_err() {
            closed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        if started.elapsed() > Duration::from_secs(15) {
            break;
        }
    }
    if !closed {
        let mut buf = [0u8; 256];
        let read = tokio::time::timeout(Duration::from_secs(5), tls.read(&mut buf)).await;
        closed = matches!(read, Ok(Ok(_)) | Ok(Err(_)));
    }
    assert!(closed, "the slow connection was not cut off");
    let waited = started.elapsed();
    assert!(waited < Duration::from_secs(12), "{waited:?}");

    // And the coordinator still answers.
    let requester = requester(&world, &coordinator);
    requester.login().await.unwrap();
}

fn rustls_name() -> rustls::pki_types::ServerName<'static> {
    rustls::pki_types::ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_limit_are_closed_until_others_end() {
    let world = World::builder(63, policy(true)).build();
    let coordinator = CoordinatorSide::new(&world);
    let store = kura_service::SqliteStore::open(coordinator.db()).unwrap();
    let state = kura_service::server::AppState::new(kura_service::Coordinator::new(
        coordinator.config.clone(),
        store,
    ));
    let listener = std::net::TcpListener::bind(coordinator.addr).unwrap();
    let tls = coordinator.tls.clone();
    let router = kura_service::server::router(state);
    let limits = kura_service::server::ServerLimits { max_connections: 4 };
    tokio::spawn(async move {
        kura_service::server::serve_router_with(
            router,
            &tls,
            listener,
            std::future::pending(),
            limits,
        )
        .await
        .unwrap();
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Four idle connections hold every permit; a fifth is closed at once
    // (well before the 5 s handshake timeout).
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(
            tokio::net::TcpStream::connect(coordinator.addr)
                .await
                .unwrap(),
        );
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    let mut fifth = tokio::net::TcpStream::connect(coordinator.addr)
        .await
        .unwrap();
    let mut buf = [0u8; 8];
    let read = tokio::time::timeout(Duration::from_secs(3), fifth.read(&mut buf)).await;
    assert!(
        matches!(read, Ok(Ok(0)) | Ok(Err(_))),
        "the fifth was not closed: {read:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    // When they end, a client is served again.
    drop(held);
    tokio::time::sleep(Duration::from_millis(200)).await;
    requester(&world, &coordinator).login().await.unwrap();
}
