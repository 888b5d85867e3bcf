//! The stores on real files and a real PostgreSQL server, with real
//! wallet-core documents from the test kit's World (a 2-of-3 group, a
//! requester, honest signers): every behaviour test runs on SqliteStore and
//! PostgresStore alike; the rest are SQLite's own (its file, lock, pragmas
//! and schema).

#[path = "common/pg.rs"]
mod pg;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use kura_service::sqlite::{lock_path, APPLICATION_ID, MIGRATIONS};
use kura_service::{
    Added, ApprovalDocument, ApprovalUse, EventKind, Outcome, PackagesDocument, PostgresStore,
    Received, RequestDocument, Role, SetAside, SetAsideReason, SharesDocument, SqliteStore, Store,
    StoreError, Submitted, WithdrawalState,
};
use kura_testkit::{World, NOW};
use wallet_core::bitcoin::{self, consensus};
use wallet_core::format::{self, DocumentBody};
use wallet_core::{finalize_withdrawal, IdentityPublicKey, RequestDigest, Signed};

/// Where a test's store lives: a SQLite file or a PostgreSQL database of
/// its own; each `open` is a new coordinator process on it.
enum Backend {
    Sqlite(tempfile::TempDir),
    Postgres(String),
}

impl Backend {
    fn sqlite() -> Self {
        Backend::Sqlite(tempfile::tempdir().unwrap())
    }

    fn postgres() -> Self {
        Backend::Postgres(pg::server().fresh_database())
    }

    fn open(&self) -> Box<dyn Store + Send + Sync> {
        self.open_with_clock(Arc::new(kura_service::coordinator::system_clock))
    }

    fn open_with_clock(&self, clock: kura_service::sqlite::Clock) -> Box<dyn Store + Send + Sync> {
        match self {
            Backend::Sqlite(dir) => Box::new(SqliteStore::open_with_clock(db(dir), clock).unwrap()),
            Backend::Postgres(url) => {
                Box::new(PostgresStore::connect_with_clock(url, clock).unwrap())
            }
        }
    }
}

/// Runs the behaviour test `$name` on both stores.
macro_rules! both {
    ($name:ident) => {
        mod $name {
            #[test]
            fn sqlite() {
                super::$name(&super::Backend::sqlite())
            }
            #[test]
            fn postgres() {
                super::$name(&super::Backend::postgres())
            }
        }
    };
}

fn policy(requester: &IdentityPublicKey, allowed: &bitcoin::Address) -> String {
    format!(
        "version = 1\nnetwork = \"regtest\"\n\
         [[requester]]\nlabel = \"ops\"\nkey = \"{requester}\"\n\
         [[destination]]\nlabel = \"exchange\"\naddress = \"{allowed}\"\n\
         [limits]\nper_transaction_sat = 500_000\nrolling_window_hours = 24\n\
         rolling_window_sat = 2_000_000\nmax_fee_sat = 20_000\nmax_fee_rate_sat_per_vb = 100\n"
    )
}

fn world(seed: u64) -> World {
    World::builder(seed, policy).build()
}

/// `body` as a received document: encoded by wallet-core, then decoded.
fn received<T: DocumentBody>(w: &World, body: &T) -> Received<T> {
    Received::decode(format::encode(w.group.id(), body).unwrap()).unwrap()
}

/// The same document in other bytes (compact JSON instead of pretty).
fn recompacted<T: DocumentBody>(doc: &Received<T>) -> Received<T> {
    let value: serde_json::Value = serde_json::from_slice(doc.bytes()).unwrap();
    let bytes = serde_json::to_vec(&value).unwrap();
    assert_ne!(bytes, doc.bytes());
    Received::decode(bytes).unwrap()
}

fn members(w: &World) -> Vec<IdentityPublicKey> {
    w.identities.values().copied().collect()
}

/// Every document of one honest withdrawal by signers 0 and 2.
struct Flow {
    request: RequestDocument,
    approvals: Vec<ApprovalDocument>,
    packages: PackagesDocument,
    shares: Vec<SharesDocument>,
    /// The next approval each answer carried (for a second session).
    nexts: Vec<ApprovalDocument>,
    psbt: Vec<u8>,
    tx: Vec<u8>,
}

fn flow(w: &mut World, id: &str) -> Flow {
    let req = w.request(id, &w.psbt());
    let approvals = w.approve(&req, &[0, 2]);
    let packages = w.packages(&req, &approvals);
    let answers: Vec<_> = [0, 2]
        .iter()
        .map(|&i| w.signer(i).sign_session(&req, &packages, NOW).unwrap())
        .collect();
    let shares: Vec<_> = answers.iter().map(|a| a.shares.clone()).collect();
    let nexts = answers.iter().map(|a| received(w, &*a.next)).collect();
    let (psbt, tx) = finalize_withdrawal(
        &w.group,
        &w.identities,
        &req,
        &packages,
        &shares,
        bitcoin::Network::Regtest,
    )
    .unwrap();
    Flow {
        request: received(w, &req),
        approvals: approvals.iter().map(|a| received(w, a)).collect(),
        packages: received(w, &packages),
        shares: shares.iter().map(|s| received(w, s)).collect(),
        nexts,
        psbt: psbt.serialize(),
        tx: consensus::encode::serialize(&tx),
    }
}

fn db(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("coordinator.db")
}

fn id_of(doc: &RequestDocument) -> RequestDigest {
    doc.body().request_digest(doc.group()).unwrap()
}

fn happy_path_submit_to_result(backend: &Backend) {
    let mut w = world(1);
    let f = flow(&mut w, "w-1");
    let store = backend.open();
    let roster = members(&w);

    let id = store.submit(&f.request, &roster).unwrap();
    assert_eq!(id, Submitted::New(id_of(&f.request)));
    let id = id.id();
    let rec = store.withdrawal(&id).unwrap();
    assert_eq!(rec.state, WithdrawalState::Submitted);
    assert_eq!(rec.request, f.request.bytes(), "kept as received");
    assert!(rec.created_at > 1_700_000_000 && rec.updated_at == rec.created_at);

    for a in &f.approvals {
        assert_eq!(store.add_approval(&id, a).unwrap(), Added::New);
    }
    assert_eq!(
        store.withdrawal(&id).unwrap().state,
        WithdrawalState::Approving
    );
    let stored = store.approvals(&id).unwrap();
    assert_eq!(stored.len(), 2);
    for (s, a) in stored.iter().zip(&f.approvals) {
        assert_eq!(s.member, a.body().signer);
        assert_eq!(s.document, a.bytes());
    }

    let signers: Vec<_> = f.approvals.iter().map(|a| a.body().signer).collect();
    assert_eq!(
        store.put_packages(&id, 1, &f.packages, &signers).unwrap(),
        Added::New
    );
    assert_eq!(
        store.withdrawal(&id).unwrap().state,
        WithdrawalState::Signing
    );
    let packages = store.packages(&id).unwrap();
    assert_eq!(packages.len(), 1);
    assert_eq!(
        (packages[0].session, &packages[0].document[..]),
        (1, f.packages.bytes())
    );

    for s in &f.shares {
        assert_eq!(store.add_shares(&id, 1, s, None).unwrap(), Added::New);
    }
    let shares = store.shares(&id).unwrap();
    assert_eq!(shares.len(), 2);
    assert!(shares
        .iter()
        .zip(&f.shares)
        .all(|(s, d)| s.session == 1 && s.member == d.body().signer && s.document == d.bytes()));
    assert_eq!(store.result(&id).unwrap(), None);

    let mut everyone = roster.clone();
    everyone.push(w.requester.public_key());
    store.finalize(&id, &f.psbt, &f.tx, &everyone).unwrap();
    assert_eq!(
        store.withdrawal(&id).unwrap().state,
        WithdrawalState::Finalized
    );
    assert_eq!(
        store.result(&id).unwrap(),
        Some(Outcome::Finalized {
            psbt: f.psbt.clone(),
            tx: f.tx.clone()
        })
    );
    assert!(store.list_open().unwrap().is_empty());

    // Each signer saw: submitted, then (0 and 2 only) packages, then finalized.
    for (i, m) in roster.iter().enumerate() {
        let kinds: Vec<_> = store
            .work_for(m, 0, 100)
            .unwrap()
            .items
            .iter()
            .map(|it| (it.withdrawal, it.kind))
            .collect();
        let mut want = vec![(id, EventKind::Submitted)];
        if i != 1 {
            want.push((id, EventKind::Packages));
        }
        want.push((id, EventKind::Finalized));
        assert_eq!(kinds, want, "member {i}");
    }
    let requester = store.work_for(&w.requester.public_key(), 0, 100).unwrap();
    assert_eq!(requester.items.len(), 1);
    assert_eq!(requester.items[0].kind, EventKind::Finalized);
}
both!(happy_path_submit_to_result);

fn idempotent_on_digest_and_conflicts_refused(backend: &Backend) {
    let mut w = world(2);
    let f = flow(&mut w, "w-1");
    let store = backend.open();
    let roster = members(&w);
    let id = store.submit(&f.request, &roster).unwrap().id();

    // The same request, even in other bytes: a duplicate; the first bytes stay.
    assert_eq!(
        store.submit(&recompacted(&f.request), &roster).unwrap(),
        Submitted::Duplicate(id)
    );
    assert_eq!(store.withdrawal(&id).unwrap().request, f.request.bytes());
    // A different request under the same requester and request id: a conflict.
    let other = received(&w, &w.request("w-1", &w.psbt_paying(100_000, 1_000)));
    assert_ne!(id_of(&other), id);
    match store.submit(&other, &roster) {
        Err(StoreError::Conflict { withdrawal, .. }) => assert_eq!(withdrawal, Some(id)),
        e => panic!("{e:?}"),
    }
    // No event for the duplicate nor for the conflict.
    assert_eq!(store.work_for(&roster[0], 0, 100).unwrap().items.len(), 1);

    // Approvals: idempotent on the digest; a member's new approval replaces
    // its unused one (a signer approving again destroyed the first's nonces).
    store.add_approval(&id, &f.approvals[0]).unwrap();
    assert_eq!(
        store
            .add_approval(&id, &recompacted(&f.approvals[0]))
            .unwrap(),
        Added::Duplicate
    );
    let req = f.request.body().clone();
    let first = w.signer(1).approve(&req, NOW).unwrap();
    let first = received(&w, &first);
    let again = w.signer(1).approve(&req, NOW).unwrap();
    let again = received(&w, &again);
    assert_eq!(store.add_approval(&id, &first).unwrap(), Added::New);
    assert_eq!(store.add_approval(&id, &again).unwrap(), Added::New);
    let used: Vec<ApprovalUse> = store
        .approvals(&id)
        .unwrap()
        .iter()
        .map(|a| a.used)
        .collect();
    assert_eq!(
        used,
        [
            ApprovalUse::Unused,
            ApprovalUse::Replaced,
            ApprovalUse::Unused
        ]
    );
    store.add_approval(&id, &f.approvals[1]).unwrap();

    // An approval of another request is not this withdrawal's.
    let other_req = received(&w, &w.request("w-2", &w.psbt()));
    let other_id = store.submit(&other_req, &roster).unwrap().id();
    assert!(matches!(
        store.add_approval(&other_id, &f.approvals[0]),
        Err(StoreError::Mismatch { found, .. }) if found == id
    ));

    // Packages: idempotent per session, a different document is a conflict.
    store.put_packages(&id, 1, &f.packages, &[]).unwrap();
    assert_eq!(
        store
            .put_packages(&id, 1, &recompacted(&f.packages), &[])
            .unwrap(),
        Added::Duplicate
    );
    let mut fewer = f.packages.body().clone();
    fewer.approvals.pop();
    assert!(matches!(
        store.put_packages(&id, 1, &received(&w, &fewer), &[]),
        Err(StoreError::Conflict { .. })
    ));
    // The approvals session 1 used are used: no commitment goes into a
    // second session, nor does a replaced approval's.
    assert!(matches!(
        store.put_packages(&id, 2, &received(&w, &fewer), &[]),
        Err(StoreError::Conflict { .. })
    ));
    let used: Vec<ApprovalUse> = store
        .approvals(&id)
        .unwrap()
        .iter()
        .map(|a| a.used)
        .collect();
    assert_eq!(
        used,
        [
            ApprovalUse::UsedIn(1),
            ApprovalUse::Replaced,
            ApprovalUse::Unused,
            ApprovalUse::UsedIn(1)
        ]
    );

    // Shares: idempotent, one per member and session, only for a session that exists.
    store.add_shares(&id, 1, &f.shares[0], None).unwrap();
    assert_eq!(
        store
            .add_shares(&id, 1, &recompacted(&f.shares[0]), None)
            .unwrap(),
        Added::Duplicate
    );
    let mut bad = f.shares[0].body().body.clone();
    bad.shares.reverse();
    let bad = received(&w, &Signed::sign(w.group.id(), bad, &*w.stores[0]).unwrap());
    assert!(matches!(
        store.add_shares(&id, 1, &bad, None),
        Err(StoreError::Conflict { .. })
    ));
    assert!(matches!(
        store.add_shares(&id, 7, &f.shares[1], None),
        Err(StoreError::NotFound { .. })
    ));
    assert_eq!(store.shares(&id).unwrap().len(), 1);

    // An answer's next approval is recorded with its shares, in one
    // transaction; a next of another member is refused and nothing of the
    // answer is kept; a second session may then use the nexts.
    assert!(matches!(
        store.add_shares(&id, 1, &f.shares[1], Some(&f.nexts[0])),
        Err(StoreError::Conflict { .. })
    ));
    assert_eq!(store.shares(&id).unwrap().len(), 1);
    store
        .add_shares(&id, 1, &f.shares[1], Some(&f.nexts[1]))
        .unwrap();
    store
        .add_shares(&id, 1, &f.shares[0], Some(&f.nexts[0]))
        .unwrap();
    let replaced = w.packages(&req, &[first.body().clone(), f.nexts[0].body().clone()]);
    assert!(matches!(
        store.put_packages(&id, 2, &received(&w, &replaced), &[]),
        Err(StoreError::Conflict { .. })
    ));
    let second = w.packages(
        &req,
        &[f.nexts[0].body().clone(), f.nexts[1].body().clone()],
    );
    assert_eq!(
        store
            .put_packages(&id, 2, &received(&w, &second), &[])
            .unwrap(),
        Added::New
    );
}
both!(idempotent_on_digest_and_conflicts_refused);

fn illegal_transitions_are_refused(backend: &Backend) {
    let mut w = world(3);
    let f = flow(&mut w, "w-1");
    let store = backend.open();
    let id = store.submit(&f.request, &[]).unwrap().id();
    let illegal = |r: Result<_, StoreError>, from, to| match r {
        Err(StoreError::IllegalTransition { from: f, to: t, .. }) => {
            assert_eq!((f, t), (from, to))
        }
        e => panic!("{e:?}"),
    };
    use WithdrawalState::*;

    illegal(
        store.finalize(&id, &f.psbt, &f.tx, &[]),
        Submitted,
        Finalized,
    );
    illegal(
        store.put_packages(&id, 1, &f.packages, &[]).map(|_| ()),
        Submitted,
        Signing,
    );
    assert!(matches!(
        store.add_shares(&id, 1, &f.shares[0], None),
        Err(StoreError::NotFound { .. })
    ));
    store.add_approval(&id, &f.approvals[0]).unwrap();
    illegal(
        store.finalize(&id, &f.psbt, &f.tx, &[]),
        Approving,
        Finalized,
    );
    // Packages use only recorded approvals.
    assert!(matches!(
        store.put_packages(&id, 1, &f.packages, &[]),
        Err(StoreError::Conflict { .. })
    ));
    store.add_approval(&id, &f.approvals[1]).unwrap();
    store.put_packages(&id, 1, &f.packages, &[]).unwrap();
    store.add_shares(&id, 1, &f.shares[0], None).unwrap();
    store.finalize(&id, &f.psbt, &f.tx, &[]).unwrap();

    illegal(
        store.finalize(&id, &f.psbt, &f.tx, &[]),
        Finalized,
        Finalized,
    );
    illegal(store.refuse(&id, "late", &[]), Finalized, Refused);
    assert_eq!(
        store.add_approval(&id, &f.approvals[1]).unwrap(),
        Added::Duplicate,
        "what is recorded is still a duplicate"
    );
    illegal(
        store.add_approval(&id, &f.nexts[0]).map(|_| ()),
        Finalized,
        Approving,
    );
    illegal(
        store.add_shares(&id, 1, &f.shares[1], None).map(|_| ()),
        Finalized,
        Signing,
    );
    illegal(
        store.put_packages(&id, 2, &f.packages, &[]).map(|_| ()),
        Finalized,
        Signing,
    );
    // Re-posting what is recorded stays a harmless duplicate.
    assert_eq!(
        store.add_approval(&id, &f.approvals[0]).unwrap(),
        Added::Duplicate
    );
    assert_eq!(
        store.add_shares(&id, 1, &f.shares[0], None).unwrap(),
        Added::Duplicate
    );

    // Refused is final too; the reason is the result.
    let id2 = store
        .submit(&received(&w, &w.request("w-2", &w.psbt())), &[])
        .unwrap()
        .id();
    store
        .refuse(&id2, "expired before enough approvals", &[])
        .unwrap();
    assert_eq!(
        store.result(&id2).unwrap(),
        Some(Outcome::Refused {
            reason: "expired before enough approvals".into()
        })
    );
    illegal(store.refuse(&id2, "again", &[]), Refused, Refused);
    illegal(
        store.finalize(&id2, &f.psbt, &f.tx, &[]),
        Refused,
        Finalized,
    );

    // Unknown ids are NotFound everywhere.
    let unknown = RequestDigest::from_bytes([9; 32]);
    assert!(matches!(
        store.withdrawal(&unknown),
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        store.result(&unknown),
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        store.approvals(&unknown),
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        store.refuse(&unknown, "x", &[]),
        Err(StoreError::NotFound { .. })
    ));
}
both!(illegal_transitions_are_refused);

fn a_restarted_coordinator_sees_every_open_withdrawal_and_continues(backend: &Backend) {
    let mut w = world(4);
    let f = flow(&mut w, "w-1");
    let roster = members(&w);
    let later = received(&w, &w.request("w-2", &w.psbt()));
    let done = received(&w, &w.request("w-3", &w.psbt()));
    let (id, later_id) = {
        let store = backend.open();
        let id = store.submit(&f.request, &roster).unwrap().id();
        let later_id = store.submit(&later, &roster).unwrap().id();
        let done_id = store.submit(&done, &roster).unwrap().id();
        store
            .refuse(&done_id, "requester cancelled", &roster)
            .unwrap();
        for a in &f.approvals {
            store.add_approval(&id, a).unwrap();
        }
        store.put_packages(&id, 1, &f.packages, &roster).unwrap();
        store.add_shares(&id, 1, &f.shares[0], None).unwrap();
        (id, later_id)
        // Dropped here: the process is gone.
    };

    let store = backend.open();
    let open = store.list_open().unwrap();
    let open: Vec<_> = open
        .iter()
        .map(|r| (r.id, r.state, r.request.clone()))
        .collect();
    assert_eq!(
        open,
        vec![
            (id, WithdrawalState::Signing, f.request.bytes().to_vec()),
            (later_id, WithdrawalState::Submitted, later.bytes().to_vec()),
        ]
    );
    // Everything needed to continue is there, byte for byte...
    assert_eq!(store.approvals(&id).unwrap().len(), 2);
    assert_eq!(store.packages(&id).unwrap()[0].document, f.packages.bytes());
    assert_eq!(store.shares(&id).unwrap()[0].document, f.shares[0].bytes());
    let request = RequestDocument::decode(open[0].2.clone()).unwrap();
    assert_eq!(id_of(&request), id);
    // ...and the withdrawal completes.
    assert_eq!(
        store.add_shares(&id, 1, &f.shares[0], None).unwrap(),
        Added::Duplicate
    );
    store.add_shares(&id, 1, &f.shares[1], None).unwrap();
    store.finalize(&id, &f.psbt, &f.tx, &roster).unwrap();
    assert!(matches!(
        store.result(&id).unwrap(),
        Some(Outcome::Finalized { .. })
    ));
    assert_eq!(store.list_open().unwrap().len(), 1);
}
both!(a_restarted_coordinator_sees_every_open_withdrawal_and_continues);

fn mailbox_cursors_per_member_monotonic_and_durable(backend: &Backend) {
    let w = world(5);
    let roster = members(&w);
    let (a, b) = (roster[0], roster[1]);
    let reqs: Vec<_> = (0..4)
        .map(|i| received(&w, &w.request(&format!("w-{i}"), &w.psbt())))
        .collect();
    let ids: Vec<_> = {
        let store = backend.open();
        // Nothing yet: an empty page keeps the cursor.
        let empty = store.work_for(&a, 0, 10).unwrap();
        assert!(empty.items.is_empty() && empty.next == 0);
        let i0 = store.submit(&reqs[0], &[a, b, a]).unwrap().id(); // a listed twice: one event
        let i1 = store.submit(&reqs[1], &[a]).unwrap().id();
        let i2 = store.submit(&reqs[2], &[b]).unwrap().id();
        store.submit(&reqs[0], &[a, b]).unwrap(); // duplicate: no event
        let page = store.work_for(&a, 0, 10).unwrap();
        let seqs: Vec<_> = page
            .items
            .iter()
            .map(|it| (it.seq, it.withdrawal))
            .collect();
        assert_eq!(seqs, vec![(1, i0), (2, i1)]);
        assert_eq!(page.next, 2);
        let page = store.work_for(&b, 0, 10).unwrap();
        let seqs: Vec<_> = page
            .items
            .iter()
            .map(|it| (it.seq, it.withdrawal))
            .collect();
        assert_eq!(seqs, vec![(1, i0), (2, i2)], "b has its own counter");
        // Paging: limit and cursor.
        let first = store.work_for(&a, 0, 1).unwrap();
        assert_eq!((first.items.len(), first.next), (1, 1));
        let rest = store.work_for(&a, first.next, 10).unwrap();
        assert_eq!((rest.items.len(), rest.items[0].seq, rest.next), (1, 2, 2));
        let none = store.work_for(&a, rest.next, 10).unwrap();
        assert!(none.items.is_empty() && none.next == 2);
        vec![i0, i1, i2]
    };

    // After a restart nothing is lost and numbering goes on from where it was.
    let store = backend.open();
    let all = store.work_for(&a, 0, 10).unwrap();
    assert_eq!(all.items.len(), 2);
    let i3 = store.submit(&reqs[3], &[a, b]).unwrap().id();
    store.refuse(&ids[1], "cancelled", &[a]).unwrap();
    let new = store.work_for(&a, all.next, 10).unwrap();
    let got: Vec<_> = new
        .items
        .iter()
        .map(|it| (it.seq, it.withdrawal, it.kind))
        .collect();
    assert_eq!(
        got,
        vec![
            (3, i3, EventKind::Submitted),
            (4, ids[1], EventKind::Refused)
        ]
    );
    assert_eq!(store.work_for(&b, 2, 10).unwrap().items[0].seq, 3);
    // Sequence numbers have no gaps.
    let seqs: Vec<_> = store
        .work_for(&a, 0, 100)
        .unwrap()
        .items
        .iter()
        .map(|it| it.seq)
        .collect();
    assert_eq!(seqs, vec![1, 2, 3, 4]);
}
both!(mailbox_cursors_per_member_monotonic_and_durable);

fn clock_at(t: &Arc<AtomicU64>) -> kura_service::sqlite::Clock {
    let t = t.clone();
    Arc::new(move || t.load(Ordering::SeqCst))
}

fn challenges_are_single_use_and_expire_tokens_too(backend: &Backend) {
    let w = world(6);
    let m = members(&w)[0];
    let now = Arc::new(AtomicU64::new(NOW));
    let store = backend.open_with_clock(clock_at(&now));

    store.put_challenge(&[1; 32], &m, NOW + 30).unwrap();
    assert!(matches!(
        store.put_challenge(&[1; 32], &m, NOW + 30),
        Err(StoreError::Conflict { .. })
    ));
    assert_eq!(store.consume_challenge(&[1; 32]).unwrap(), Some(m));
    assert_eq!(
        store.consume_challenge(&[1; 32]).unwrap(),
        None,
        "single use"
    );
    assert_eq!(store.consume_challenge(&[2; 32]).unwrap(), None, "unknown");
    store.put_challenge(&[3; 32], &m, NOW + 30).unwrap();
    now.store(NOW + 30, Ordering::SeqCst);
    assert_eq!(store.consume_challenge(&[3; 32]).unwrap(), None, "expired");

    store
        .put_token(&[7; 32], &m, Role::Signer, NOW + 3600)
        .unwrap();
    assert!(matches!(
        store.put_token(&[7; 32], &m, Role::Requester, NOW + 3600),
        Err(StoreError::Conflict { .. })
    ));
    let token = store.token(&[7; 32]).unwrap().unwrap();
    assert_eq!(
        (token.member, token.role, token.expires_at),
        (m, Role::Signer, NOW + 3600)
    );
    assert_eq!(store.token(&[8; 32]).unwrap(), None);
    drop(store);
    // Tokens survive a restart, and expire.
    let store = backend.open_with_clock(clock_at(&now));
    assert!(store.token(&[7; 32]).unwrap().is_some());
    now.store(NOW + 3600, Ordering::SeqCst);
    assert_eq!(store.token(&[7; 32]).unwrap(), None);
}
both!(challenges_are_single_use_and_expire_tokens_too);

#[test]
fn a_second_opener_is_refused_until_the_first_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(db(&dir)).unwrap();
    match SqliteStore::open(db(&dir)) {
        Err(StoreError::InUse { lock }) => assert_eq!(lock, lock_path(&db(&dir))),
        e => panic!("{e:?}"),
    }
    drop(store);
    SqliteStore::open(db(&dir)).unwrap();
}

fn raw(path: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open(path).unwrap()
}

#[test]
fn opened_in_wal_with_current_schema() {
    let dir = tempfile::tempdir().unwrap();
    drop(SqliteStore::open(db(&dir)).unwrap());
    let c = raw(&db(&dir));
    let mode: String = c
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    let version: i64 = c
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    let app: i64 = c
        .query_row("PRAGMA application_id", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    assert_eq!(version, MIGRATIONS.len() as i64);
    assert_eq!(app, APPLICATION_ID);
}

#[test]
fn a_newer_or_foreign_database_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    drop(SqliteStore::open(db(&dir)).unwrap());
    raw(&db(&dir))
        .execute_batch("PRAGMA user_version = 99")
        .unwrap();
    match SqliteStore::open(db(&dir)) {
        Err(StoreError::TooNew { found, supported }) => {
            assert_eq!((found, supported), (99, MIGRATIONS.len() as i64))
        }
        e => panic!("{e:?}"),
    }
    // Untouched by the refusal.
    let v: i64 = raw(&db(&dir))
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(v, 99);

    let other = dir.path().join("other.db");
    raw(&other)
        .execute_batch("CREATE TABLE photos (id INTEGER PRIMARY KEY)")
        .unwrap();
    assert!(matches!(
        SqliteStore::open(&other),
        Err(StoreError::NotKura { found: 0 })
    ));
}

/// Migrating an empty database gives exactly `tests/schema.sql`: changing
/// the schema takes a new migration and a deliberate update of that file
/// (`KURA_BLESS_SCHEMA=1 cargo test -p kura-service --test store`).
#[test]
fn schema_known_answer() {
    let dir = tempfile::tempdir().unwrap();
    drop(SqliteStore::open(db(&dir)).unwrap());
    let c = raw(&db(&dir));
    let version: i64 = c
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    let mut dump = format!(
        "-- kura-service coordinator schema: user_version = {version}, application_id = {APPLICATION_ID:#x}\n\
         -- sqlite_master after migrating an empty database (automatic indexes omitted).\n"
    );
    let mut stmt = c
        .prepare("SELECT sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY rowid")
        .unwrap();
    for sql in stmt.query_map([], |r| r.get::<_, String>(0)).unwrap() {
        dump.push('\n');
        dump.push_str(&sql.unwrap());
        dump.push_str(";\n");
    }
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/schema.sql");
    if std::env::var_os("KURA_BLESS_SCHEMA").is_some() {
        std::fs::write(&path, &dump).unwrap();
    }
    let pinned = std::fs::read_to_string(&path).unwrap();
    assert_eq!(
        dump, pinned,
        "the schema changed: add a migration, then bless"
    );
}

#[test]
fn decode_refuses_the_wrong_kind() {
    let w = world(7);
    let req = format::encode(w.group.id(), &w.request("w-1", &w.psbt())).unwrap();
    assert!(ApprovalDocument::decode(req).is_err());
}

fn concurrent_writers_are_serialized_and_cursors_stay_gapless(backend: &Backend) {
    let w = world(8);
    let roster = members(&w);
    let (a, b) = (roster[0], roster[1]);
    let reqs: Vec<_> = (0..20)
        .map(|i| received(&w, &w.request(&format!("c-{i}"), &w.psbt())))
        .collect();
    let store = backend.open();
    std::thread::scope(|s| {
        for chunk in reqs.chunks(5) {
            let store = &store;
            s.spawn(move || {
                for r in chunk {
                    store.submit(r, &[a, b]).unwrap();
                }
            });
        }
    });
    let of = |m| store.work_for(m, 0, 100).unwrap().items;
    let (ea, eb) = (of(&a), of(&b));
    assert_eq!(
        ea.iter().map(|i| i.seq).collect::<Vec<_>>(),
        (1..=20).collect::<Vec<_>>()
    );
    // One transaction bumped both counters: the same order for both members.
    assert!(ea
        .iter()
        .zip(&eb)
        .all(|(x, y)| x.seq == y.seq && x.withdrawal == y.withdrawal));
    assert_eq!(store.list_open().unwrap().len(), 20);
}
both!(concurrent_writers_are_serialized_and_cursors_stay_gapless);

#[test]
fn a_foreign_or_newer_postgres_database_is_refused() {
    let url = pg::server().fresh_database();
    let mut c = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    c.batch_execute("CREATE TABLE something_else (x INTEGER)")
        .unwrap();
    assert!(matches!(
        PostgresStore::connect(&url),
        Err(StoreError::NotKuraPostgres(_))
    ));
    let url = pg::server().fresh_database();
    drop(PostgresStore::connect(&url).unwrap());
    let mut c = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    c.batch_execute("UPDATE kura_schema SET version = version + 1")
        .unwrap();
    match PostgresStore::connect(&url) {
        Err(StoreError::TooNew { found, supported }) => {
            assert_eq!(
                (found, supported),
                (supported + 1, PostgresStore::schema_version())
            )
        }
        e => panic!("{e:?}"),
    }
}

/// Two coordinators on one PostgreSQL database: their writes interleave
/// without a gap or a duplicate in any mailbox, and one driver at a time
/// holds a withdrawal (the second waits until the first lets go, or its
/// connection dies).
#[test]
fn two_coordinators_share_one_postgres_database() {
    let w = world(9);
    let roster = members(&w);
    let (a, b) = (roster[0], roster[1]);
    let reqs: Vec<_> = (0..20)
        .map(|i| received(&w, &w.request(&format!("p-{i}"), &w.psbt())))
        .collect();
    let url = pg::server().fresh_database();
    let one = PostgresStore::connect(&url).unwrap();
    let two = PostgresStore::connect(&url).unwrap();
    std::thread::scope(|s| {
        for (i, chunk) in reqs.chunks(5).enumerate() {
            let store = if i % 2 == 0 { &one } else { &two };
            s.spawn(move || {
                for r in chunk {
                    store.submit(r, &[a, b]).unwrap();
                    // The same request through the other coordinator.
                    assert!(matches!(
                        store.submit(r, &[a, b]).unwrap(),
                        Submitted::Duplicate(_)
                    ));
                }
            });
        }
    });
    for store in [&one, &two] {
        let seqs: Vec<u64> = store
            .work_for(&a, 0, 100)
            .unwrap()
            .items
            .iter()
            .map(|i| i.seq)
            .collect();
        assert_eq!(seqs, (1..=20).collect::<Vec<_>>());
    }
    let id = id_of(&reqs[0]);
    let held = one.drive(&id).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::scope(|s| {
        s.spawn(|| {
            let _second = two.drive(&id).unwrap();
            tx.send(std::time::Instant::now()).unwrap();
        });
        std::thread::sleep(std::time::Duration::from_millis(300));
        let released = std::time::Instant::now();
        drop(held);
        let got = rx.recv().unwrap();
        assert!(got >= released, "the second driver waited for the first");
    });
    // A driver whose coordinator is gone (its connections closed) holds
    // nothing: the other takes the withdrawal at once.
    let held = one.drive(&id).unwrap();
    std::mem::forget(held);
    drop(one);
    let start = std::time::Instant::now();
    let mut c = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    c.batch_execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid() \
         AND query LIKE '%pg_advisory_lock%'",
    )
    .unwrap();
    drop(two.drive(&id).unwrap());
    assert!(start.elapsed() < std::time::Duration::from_secs(5));
}

/// A member whose approval a session used comes back only by answering it:
/// a stand-alone approval meanwhile is refused (a silent member must not
/// jump the queue), approvals per member are capped, and a member recorded
/// as late that then sends invalid shares is recorded as a cheater.
fn a_member_owing_a_session_cannot_approve_again(backend: &Backend) {
    let mut w = world(10);
    let f = flow(&mut w, "w-1");
    let store = backend.open();
    let id = store.submit(&f.request, &[]).unwrap().id();
    for a in &f.approvals {
        store.add_approval(&id, a).unwrap();
    }
    store.put_packages(&id, 1, &f.packages, &[]).unwrap();
    // Signer 0 is in session 1 and has not answered: its next approval,
    // posted alone, is refused.
    let req = f.request.body().clone();
    assert!(matches!(
        store.add_approval(&id, &f.nexts[0]),
        Err(StoreError::Conflict { .. })
    ));
    // Answering brings its next approval in.
    store
        .add_shares(&id, 1, &f.shares[0], Some(&f.nexts[0]))
        .unwrap();
    let unused = |store: &dyn Store| {
        store
            .approvals(&id)
            .unwrap()
            .iter()
            .filter(|a| a.used == ApprovalUse::Unused)
            .count()
    };
    assert_eq!(unused(&*store), 1);
    // Signer 1 (in no session) may replace its approval, up to the cap.
    let mut refused = false;
    for _ in 0..kura_service::sqlite::MAX_APPROVALS_PER_MEMBER + 1 {
        let a = w.signer(1).approve(&req, NOW).unwrap();
        match store.add_approval(&id, &received(&w, &a)) {
            Ok(Added::New) => {}
            Err(StoreError::Conflict { .. }) => {
                refused = true;
                break;
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(refused, "approvals per member are capped");
    // Late, then cheating: recorded as a cheater.
    let member = f.shares[1].body().signer;
    let late = SetAside {
        session: 1,
        member,
        reason: SetAsideReason::MissedDeadline,
        detail: "late".into(),
        document: None,
    };
    assert_eq!(store.set_aside(&id, &late).unwrap(), Added::New);
    assert_eq!(store.set_aside(&id, &late).unwrap(), Added::Duplicate);
    let cheat = SetAside {
        reason: SetAsideReason::InvalidShares,
        detail: "forged".into(),
        document: Some(b"evidence".to_vec()),
        ..late.clone()
    };
    assert_eq!(store.set_aside(&id, &cheat).unwrap(), Added::New);
    assert_eq!(store.set_aside(&id, &late).unwrap(), Added::Duplicate);
    assert_eq!(store.set_asides(&id).unwrap(), vec![cheat]);
}
both!(a_member_owing_a_session_cannot_approve_again);
