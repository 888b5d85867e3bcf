//! Ceremonies through the coordinator's mailbox over real HTTPS on
//! loopback: an honest DKG, and a mailbox that forges, alters, withholds,
//! forgets (restarts) or is used by someone outside the ceremony.

mod common;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body as AxumBody;
use axum::http::Request;
use axum::middleware::{self, Next};
use axum::response::Response;
use kura_service::api::{MailboxPage, RoleName};
use kura_service::ceremony::{self as over, MailboxClient};
use kura_service::client::Client;
use kura_service::relay::{Relay, RelayLimits, Scope};
use kura_service::server;
use kura_service::{MailboxError, TlsIdentity};
use kura_testkit::World;
use serde_json::Value;
use wallet_core::ceremony::dkg::{self, Ceremony, Finished};
use wallet_core::ceremony::{CeremonyError, IdentityCard, Role};
use wallet_core::keystore::{Keystore, MemoryKeystore};
use wallet_core::{format, Label, Secp256k1Tr};

type C = Secp256k1Tr;

struct Party {
    label: Label,
    ks: Arc<MemoryKeystore>,
}

fn parties(n: usize) -> Vec<Party> {
    (0..n)
        .map(|i| Party {
            label: Label::new(format!("member-{i}")).unwrap(),
            ks: Arc::new(MemoryKeystore::new()),
        })
        .collect()
}

fn ceremony_of(t: u16, ps: &[Party]) -> Ceremony<C> {
    let cards = ps
        .iter()
        .map(|p| {
            IdentityCard::new(
                p.label.clone(),
                Role::Signer,
                p.ks.identity_public_key().unwrap(),
            )
        })
        .collect();
    Ceremony::new(t, cards, [9u8; 32]).unwrap()
}

/// A relay server on loopback: its URL, TLS identity, and a handle that
/// stops it.
struct RelaySide {
    url: String,
    tls: TlsIdentity,
    addr: std::net::SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl RelaySide {
    async fn start(relay: Arc<Relay>, tls: TlsIdentity, tamper: Option<Tamper>) -> RelaySide {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        Self::start_on(relay, tls, tamper, listener, addr)
    }

    fn start_on(
        relay: Arc<Relay>,
        tls: TlsIdentity,
        tamper: Option<Tamper>,
        listener: std::net::TcpListener,
        addr: std::net::SocketAddr,
    ) -> RelaySide {
        let mut router = server::relay_router(relay);
        if let Some(t) = tamper {
            let t = Arc::new(t);
            router = router.layer(middleware::from_fn(
                move |req: Request<AxumBody>, next: Next| {
                    let t = t.clone();
                    async move { rewrite(req, next, &t).await }
                },
            ));
        }
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let tls2 = tls.clone();
        let task = tokio::spawn(async move {
            server::serve_router(router, &tls2, listener, async move {
                let _ = rx.await;
            })
            .await
            .unwrap();
        });
        RelaySide {
            url: format!("https://{addr}"),
            tls,
            addr,
            stop: Some(tx),
            task: Some(task),
        }
    }

    async fn stop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    fn mailbox(&self, c: &Ceremony<C>, p: &Party) -> MailboxClient {
        MailboxClient::new(&[&self.url], self.tls.fingerprint(), *c.id(), p.ks.clone()).unwrap()
    }
}

fn tls() -> TlsIdentity {
    TlsIdentity::generate(&["127.0.0.1".into()], "kura relay test").unwrap()
}

/// What a dishonest mailbox does to the pages it hands out.
type Tamper = Box<dyn Fn(&mut Value) + Send + Sync>;

async fn rewrite(req: Request<AxumBody>, next: Next, tamper: &Tamper) -> Response {
    let reading = req.method() == axum::http::Method::GET;
    let response = next.run(req).await;
    if !reading || !response.status().is_success() {
        return response;
    }
    let (parts, body) = response.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    let mut page: Value = serde_json::from_slice(&bytes).unwrap();
    for m in page["messages"].as_array_mut().unwrap() {
        tamper(m);
    }
    let mut parts = parts;
    parts.headers.remove(axum::http::header::CONTENT_LENGTH);
    Response::from_parts(parts, AxumBody::from(serde_json::to_vec(&page).unwrap()))
}

/// Runs the DKG for every party at once; each party's result.
async fn dkg_all(
    side: &RelaySide,
    c: &Ceremony<C>,
    ps: &[Party],
    timeout: Duration,
) -> Vec<Result<Finished<C>, MailboxError>> {
    let fp = c.fingerprint().to_string();
    let mut tasks = Vec::new();
    for p in ps {
        let mailbox = side.mailbox(c, p);
        let confirmed = c.clone().confirm(&fp).unwrap();
        let ks = p.ks.clone();
        tasks.push(tokio::spawn(async move {
            over::run_dkg(&mailbox, &confirmed, &*ks, timeout).await
        }));
    }
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

fn relay_for(c: &Ceremony<C>, tls: &TlsIdentity) -> Arc<Relay> {
    Arc::new(Relay::new(tls.fingerprint(), vec![Scope::of_ceremony(c)]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dkg_of_3_of_5_runs_through_the_mailbox_and_everyone_holds_one_group() {
    let ps = parties(5);
    let c = ceremony_of(3, &ps);
    let tls = tls();
    let mut side = RelaySide::start(relay_for(&c, &tls), tls, None).await;
    let done: Vec<Finished<C>> = dkg_all(&side, &c, &ps, Duration::from_secs(30))
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let first = &done[0];
    assert_eq!(first.group.min_signers(), 3);
    assert_eq!(first.group.participants().len(), 5);
    for d in &done {
        assert_eq!(d.group.id(), first.group.id());
        assert_eq!(d.group.verifying_key(), first.group.verifying_key());
        assert_eq!(d.fingerprint, first.fingerprint);
    }
    // Every share is one of the group's: the verifying shares agree.
    for (d, p) in done.iter().zip(&ps) {
        let id = wallet_core::ceremony::identifier_for::<C>(&p.label).unwrap();
        assert_eq!(d.share.identifier(), &id);
    }
    side.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_sees_the_broadcasts_and_its_own_messages_never_anothers() {
    let ps = parties(3);
    let c = ceremony_of(2, &ps);
    let tls = tls();
    let mut side = RelaySide::start(relay_for(&c, &tls), tls, None).await;
    dkg_all(&side, &c, &ps, Duration::from_secs(30))
        .await
        .into_iter()
        .for_each(|r| {
            r.unwrap();
        });
    // What member 0 can read: three broadcasts, its two round-2 messages,
    // the two sealed to it; never the one from 1 to 2 or from 2 to 1.
    let me = ps[0].ks.identity_public_key().unwrap();
    let raw = reqwest_page(&side, &c, &ps[0]).await;
    assert_eq!(raw.messages.len(), 3 + 2 + 2);
    for m in &raw.messages {
        assert!(m.to.is_none() || m.to == Some(me) || m.from == me, "{m:?}");
    }
    side.stop().await;
}

/// Member `p`'s whole view of the mailbox, through a login of its own.
async fn reqwest_page(side: &RelaySide, c: &Ceremony<C>, p: &Party) -> MailboxPage {
    let token = login_token(side, c, p).await;
    let http = common::raw_to(side.tls.fingerprint());
    let url = format!("{}/v1/ceremonies/{}/messages?after=0", side.url, c.id());
    http.get(url)
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn login_token(side: &RelaySide, c: &Ceremony<C>, p: &Party) -> String {
    let http = common::raw_to(side.tls.fingerprint());
    let key = p.ks.identity_public_key().unwrap();
    let base = format!("{}/v1/ceremonies/{}", side.url, c.id());
    let challenge: kura_service::api::ChallengeResponse = http
        .post(format!("{base}/auth/challenge"))
        .json(&serde_json::json!({ "key": key }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let login = kura_service::api::ServiceLogin {
        challenge: challenge.challenge,
        coordinator: side.tls.fingerprint(),
        role: RoleName::Participant,
    };
    let signed = wallet_core::Signed::sign(c.id(), login, &*p.ks).unwrap();
    let doc = format::encode(c.id(), &signed).unwrap();
    let answer = http
        .post(format!("{base}/auth/login"))
        .body(doc.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let token: kura_service::api::LoginResponse = answer.json().await.unwrap();
    // The same login again: its challenge is used.
    let again = http
        .post(format!("{base}/auth/login"))
        .body(doc)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 401);
    token.token
}

fn label_of(m: &Value) -> Option<String> {
    m["document"]["body"]["body"]["label"]
        .as_str()
        .map(str::to_owned)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mailbox_that_forges_a_round1_broadcast_is_refused_naming_the_claimed_sender() {
    let ps = parties(3);
    let c = ceremony_of(2, &ps);
    let tls = tls();
    // The mailbox hands on member-1's broadcast with its signature changed
    // (what a forger without member-1's key can do at best).
    let tamper: Tamper = Box::new(move |m| {
        if m["kind"] == "dkg-round1" && label_of(m).as_deref() == Some("member-1") {
            let sig = &mut m["document"]["body"]["signature"];
            let mut text = sig.as_str().unwrap().to_owned();
            let flipped = if &text[10..11] == "0" { "1" } else { "0" };
            text.replace_range(10..11, flipped);
            *sig = Value::String(text);
        }
    });
    let mut side = RelaySide::start(relay_for(&c, &tls), tls, Some(tamper)).await;
    for r in dkg_all(&side, &c, &ps, Duration::from_secs(10)).await {
        match r {
            Err(MailboxError::Ceremony(CeremonyError::NotAuthentic { claimed, .. })) => {
                assert_eq!(claimed, "member-1");
            }
            other => panic!("a forged broadcast was accepted: {other:?}"),
        }
    }
    side.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mailbox_that_alters_a_sealed_share_is_refused_and_nobody_gets_a_group() {
    let ps = parties(3);
    let c = ceremony_of(2, &ps);
    let tls = tls();
    // One bit of every sealed round-2 share flipped on the way.
    let tamper: Tamper = Box::new(|m| {
        if m["kind"] != "dkg-round2" {
            return;
        }
        let ct = &mut m["document"]["body"]["part"]["sealed"]["ciphertext"];
        let mut text = ct.as_str().unwrap().to_owned();
        let last = text.pop().unwrap();
        text.push(if last == '0' { '1' } else { '0' });
        *ct = Value::String(text);
    });
    let mut side = RelaySide::start(relay_for(&c, &tls), tls, Some(tamper)).await;
    for r in dkg_all(&side, &c, &ps, Duration::from_secs(10)).await {
        match r {
            Err(MailboxError::Ceremony(CeremonyError::SealOpen { .. })) => {}
            other => panic!("an altered share was accepted: {other:?}"),
        }
    }
    side.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mailbox_that_withholds_a_broadcast_stops_the_ceremony_naming_whose_is_missing() {
    let ps = parties(3);
    let c = ceremony_of(2, &ps);
    let tls = tls();
    let tamper: Tamper = Box::new(|m| {
        if m["kind"] == "dkg-round1" && label_of(m).as_deref() == Some("member-0") {
            // Handed on as another ceremony's: the message is gone.
            m["document"]["group"] = Value::String("00".repeat(32));
        }
    });
    let mut side = RelaySide::start(relay_for(&c, &tls), tls, Some(tamper)).await;
    let results = dkg_all(&side, &c, &ps, Duration::from_secs(2)).await;
    // Member 0 too: it reads its own broadcast from the mailbox.
    for r in results {
        match r {
            Err(MailboxError::Incomplete { what, missing, .. }) => {
                assert_eq!(what, "dkg-round1");
                assert_eq!(missing, vec!["member-0".to_owned()]);
            }
            other => panic!("the ceremony went on without a broadcast: {other:?}"),
        }
    }
    side.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_mailbox_is_filled_again_by_its_participants() {
    let ps = parties(3);
    let c = ceremony_of(2, &ps);
    let tls = tls();
    let mut side = RelaySide::start(relay_for(&c, &tls), tls.clone(), None).await;
    // Members 0 and 1 post their broadcasts, then the mailbox restarts
    // (and forgets); member 2 starts only after.
    let fp = c.fingerprint().to_string();
    let mut early = Vec::new();
    for p in &ps[..2] {
        let mailbox = side.mailbox(&c, p);
        let confirmed = c.clone().confirm(&fp).unwrap();
        let ks = p.ks.clone();
        early.push(tokio::spawn(async move {
            over::run_dkg(&mailbox, &confirmed, &*ks, Duration::from_secs(30)).await
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    side.stop().await;
    let listener = bind_retrying(side.addr).await;
    let mut side = RelaySide::start_on(relay_for(&c, &tls), tls, None, listener, side.addr);
    let mut late = dkg_all(&side, &c, &ps[2..], Duration::from_secs(30)).await;
    let last = late.pop().unwrap().unwrap();
    for t in early {
        let d = t.await.unwrap().unwrap();
        assert_eq!(d.fingerprint, last.fingerprint);
    }
    side.stop().await;
}

async fn bind_retrying(addr: std::net::SocketAddr) -> std::net::TcpListener {
    for _ in 0..100 {
        if let Ok(l) = std::net::TcpListener::bind(addr) {
            return l;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("cannot bind {addr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_participants_use_the_mailbox_and_only_for_ceremony_documents() {
    let ps = parties(3);
    let c = ceremony_of(2, &ps);
    let tls = tls();
    let relay = relay_for(&c, &tls);
    let mut side = RelaySide::start(relay.clone(), tls, None).await;
    let http = common::raw_to(side.tls.fingerprint());
    let base = format!("{}/v1/ceremonies/{}", side.url, c.id());

    // An outsider gets no challenge.
    let outsider = Party {
        label: Label::new("outsider").unwrap(),
        ks: Arc::new(MemoryKeystore::new()),
    };
    let key = outsider.ks.identity_public_key().unwrap();
    let r = http
        .post(format!("{base}/auth/challenge"))
        .json(&serde_json::json!({ "key": key }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let err = side
        .mailbox(&c, &outsider)
        .post(None, b"{}".to_vec())
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(403), "{err}");
    // A scope the mailbox does not serve.
    let other = format!(
        "{}/v1/ceremonies/{}/auth/challenge",
        side.url,
        "ab".repeat(32)
    );
    let r = http
        .post(other)
        .json(&serde_json::json!({ "key": ps[0].ks.identity_public_key().unwrap() }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    // No token, a made-up token.
    let r = http.get(format!("{base}/messages")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = http
        .get(format!("{base}/messages"))
        .bearer_auth("00".repeat(32))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    // A participant posting what is not a ceremony document.
    let mailbox = side.mailbox(&c, &ps[0]);
    let cases: Vec<(Vec<u8>, u16)> = vec![
        (b"{\"not\": \"kura\"}".to_vec(), 400),
        (
            format::encode(
                c.id(),
                &kura_service::api::ServiceLogin {
                    challenge: "00".into(),
                    coordinator: side.tls.fingerprint(),
                    role: RoleName::Participant,
                },
            )
            .unwrap(),
            400,
        ),
    ];
    for (doc, status) in cases {
        let err = mailbox.post(None, doc).await.unwrap_err();
        assert_eq!(err.status(), Some(status), "{err}");
    }
    // A real ceremony document, for a reader outside the ceremony or for
    // its own author.
    let confirmed = c.clone().confirm(&c.fingerprint().to_string()).unwrap();
    let r1 = dkg::round1(&confirmed, &*ps[0].ks, &mut rand_core::OsRng).unwrap();
    let doc = format::encode(c.id(), &r1).unwrap();
    for to in [key, ps[0].ks.identity_public_key().unwrap()] {
        let err = mailbox.post(Some(&to), doc.clone()).await.unwrap_err();
        assert_eq!(err.status(), Some(400), "{err}");
    }
    // The same document twice is one message.
    let first = mailbox.post(None, doc.clone()).await.unwrap();
    let again = mailbox.post(None, doc.clone()).await.unwrap();
    assert!(!first.duplicate && again.duplicate);
    assert_eq!(first.seq, again.seq);

    // Past the limits: too large, too many.
    relay
        .set_limits(
            c.id(),
            RelayLimits {
                messages_per_participant: 2,
                bytes_per_participant: 1 << 20,
                max_message_bytes: doc.len() + 64,
            },
        )
        .unwrap();
    let mut padded = doc.clone();
    padded.truncate(padded.len() - 2);
    padded.extend_from_slice(&[b' '; 200]);
    padded.extend_from_slice(b"}\n");
    let err = mailbox.post(None, padded).await.unwrap_err();
    assert_eq!(err.status(), Some(413), "{err}");
    let mut spaced = doc.clone();
    spaced.insert(1, b' ');
    mailbox.post(None, spaced.clone()).await.unwrap();
    // Past the count, the participant's own oldest message makes room
    // (a group's mailbox runs for months), and nobody else's.
    let other = side.mailbox(&c, &ps[1]);
    let theirs = dkg::round1(&confirmed, &*ps[1].ks, &mut rand_core::OsRng).unwrap();
    other
        .post(None, format::encode(c.id(), &theirs).unwrap())
        .await
        .unwrap();
    let mut spaced2 = doc.clone();
    spaced2.insert(1, b'\n');
    let third = mailbox.post(None, spaced2.clone()).await.unwrap();
    assert!(!third.duplicate && third.seq > first.seq);
    let reader = side.mailbox(&c, &ps[2]);
    reader.fetch(Duration::ZERO).await.unwrap();
    let held: Vec<Vec<u8>> = reader
        .inbox()
        .await
        .into_iter()
        .map(|d| d.document)
        .collect();
    // (The mailbox hands on the JSON value, without the final newline.)
    let sent = |d: &[u8]| d.trim_ascii_end().to_vec();
    assert_eq!(
        held.len(),
        3,
        "two of the first participant's, one of the other's"
    );
    assert!(!held.contains(&sent(&doc)), "the oldest was dropped");
    assert!(held.contains(&sent(&spaced)) && held.contains(&sent(&spaced2)));
    side.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_coordinator_relays_its_groups_maintenance_messages_to_members_only() {
    let world = World::builder(41, common::policy(true)).build();
    let mut side = common::CoordinatorSide::new(&world);
    side.start().await;
    let group = *world.group.id();
    let mailbox = |i: usize| {
        MailboxClient::new(
            &[&side.url()],
            side.fingerprint(),
            group,
            world.stores[i].clone(),
        )
        .unwrap()
    };
    // A member posts a ceremony document for everyone; another gathers
    // it. (The mailbox carries any ceremony's documents: the scope says
    // who may use it, each document's envelope which ceremony it is of.)
    let ps = parties(2);
    let c = ceremony_of(2, &ps);
    let confirmed = c.clone().confirm(&c.fingerprint().to_string()).unwrap();
    let r1 = dkg::round1(&confirmed, &*ps[0].ks, &mut rand_core::OsRng).unwrap();
    let doc = format::encode(c.id(), &r1).unwrap();
    mailbox(0).post(None, doc.clone()).await.unwrap();
    let got = mailbox(1)
        .gather::<dkg::Round1Document<C>>(
            c.id(),
            |_, _| true,
            |d| {
                if d.is_empty() {
                    vec!["member-0".into()]
                } else {
                    Vec::new()
                }
            },
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    assert_eq!(got, vec![r1]);
    // The requester is no participant of the group's mailbox; a member's
    // mailbox login is no coordinator login.
    let requester = Arc::new(MemoryKeystore::with_identity(world.requester.clone()));
    let err = MailboxClient::new(&[&side.url()], side.fingerprint(), group, requester)
        .unwrap()
        .post(None, doc)
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(403), "{err}");
    let as_participant = Client::new(
        &side.url(),
        side.fingerprint(),
        group,
        RoleName::Participant,
        world.stores[0].clone(),
    )
    .unwrap();
    let err = as_participant.login().await.unwrap_err();
    assert_eq!(err.status(), Some(403), "{err}");
    side.kill().await;
}

/// A ceremony document padded with spaces to about `len` bytes (still the
/// same JSON, a different byte string).
fn padded(doc: &[u8], len: usize, tag: usize) -> Vec<u8> {
    let mut out = doc.to_vec();
    let close = out.iter().rposition(|b| *b == b'}').unwrap();
    let tail = out.split_off(close);
    let target = len.saturating_sub(tail.len() + tag);
    out.resize(target.max(out.len()), b' ');
    out.extend_from_slice(&tail);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_stays_under_what_a_client_reads_and_one_participant_cannot_lock_out_another() {
    let ps = parties(3);
    let c = ceremony_of(2, &ps);
    let tls = tls();
    let relay = relay_for(&c, &tls);
    let confirmed = c.clone().confirm(&c.fingerprint().to_string()).unwrap();
    let r1 = dkg::round1(&confirmed, &*ps[0].ks, &mut rand_core::OsRng).unwrap();
    let doc = format::encode(c.id(), &r1).unwrap();
    let me = ps[0].ks.identity_public_key().unwrap();

    // Seven messages of almost 1 MiB each: more than a client reads in one
    // answer if a page held them all.
    let big = 1024 * 1024 - 64;
    for i in 0..7 {
        let bytes = padded(&doc, big, i);
        let document =
            serde_json::value::RawValue::from_string(String::from_utf8(bytes).unwrap()).unwrap();
        relay
            .post(
                c.id(),
                &me,
                kura_service::api::MailboxPost { to: None, document },
            )
            .unwrap();
    }
    let reader = ps[1].ks.identity_public_key().unwrap();
    let mut after = 0;
    let mut pages = Vec::new();
    loop {
        let page = relay
            .messages(
                c.id(),
                &reader,
                after,
                kura_service::relay::MAX_PAGE_MESSAGES,
            )
            .unwrap();
        if page.messages.is_empty() {
            break;
        }
        let bytes: usize = page.messages.iter().map(|m| m.document.get().len()).sum();
        assert!(bytes <= kura_service::relay::MAX_PAGE_BYTES, "{bytes}");
        pages.push(page.messages.len());
        after = page.next;
    }
    assert_eq!(pages.iter().sum::<usize>(), 7, "{pages:?}");
    assert!(pages.len() >= 2, "{pages:?}");
    // And over HTTPS the client reads every page.
    let mut side = RelaySide::start(relay.clone(), tls, None).await;
    let client = side.mailbox(&c, &ps[1]);
    for _ in 0..pages.len() {
        client.fetch(Duration::ZERO).await.unwrap();
    }
    assert_eq!(client.inbox().await.len(), 7);

    // One participant asking for challenge after challenge is stopped at
    // its own cap; another still logs in.
    let http = common::raw_to(side.tls.fingerprint());
    let challenge = format!("{}/v1/ceremonies/{}/auth/challenge", side.url, c.id());
    let mut refused = None;
    for i in 0..64 {
        let r = http
            .post(&challenge)
            .json(&serde_json::json!({ "key": ps[2].ks.identity_public_key().unwrap() }))
            .send()
            .await
            .unwrap();
        if r.status() != 200 {
            refused = Some((i, r.status().as_u16()));
            break;
        }
    }
    let (count, status) = refused.expect("a participant's open challenges are capped");
    assert_eq!(status, 429);
    assert!(count <= 32, "{count}");
    let posted = side
        .mailbox(&c, &ps[1])
        .post(None, doc.clone())
        .await
        .unwrap();
    assert!(posted.seq > 0);
    side.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_participant_cannot_supply_anothers_broadcast() {
    // Member 1 posts member 0's round-1 broadcast as its own (a copy it
    // read): it does not count as member 0's, nor as member 1's.
    let ps = parties(3);
    let c = ceremony_of(2, &ps);
    let tls = tls();
    let relay = relay_for(&c, &tls);
    let mut side = RelaySide::start(relay, tls, None).await;
    let confirmed = c.clone().confirm(&c.fingerprint().to_string()).unwrap();
    let r1 = dkg::round1(&confirmed, &*ps[0].ks, &mut rand_core::OsRng).unwrap();
    let doc = format::encode(c.id(), &r1).unwrap();
    side.mailbox(&c, &ps[1]).post(None, doc).await.unwrap();
    let err = over::round1_set(&side.mailbox(&c, &ps[2]), &c, Duration::from_millis(600))
        .await
        .unwrap_err();
    match err {
        MailboxError::Incomplete { missing, .. } => {
            assert!(missing.contains(&"member-0".to_owned()), "{missing:?}");
            assert!(missing.contains(&"member-1".to_owned()), "{missing:?}");
        }
        other => panic!("{other}"),
    }
    side.stop().await;
}
