//! The coordinator's own checks on what it is sent, one bad input each,
//! straight through `Coordinator` on a real SQLite file: each is refused
//! with its status and nothing is recorded.

mod common;

use common::*;
use kura_service::store::{Role, Store, Token};
use kura_service::{Coordinator, SqliteStore};
use kura_testkit::World;
use wallet_core::format;
use wallet_core::{
    Keystore, MemoryKeystore, RequestId, Signed, WithdrawalRequest, WithdrawalShares,
};

fn coordinator(world: &World, dir: &tempfile::TempDir) -> Coordinator<SqliteStore> {
    let side = CoordinatorSide::new(world);
    let store = SqliteStore::open(dir.path().join("c.db")).unwrap();
    Coordinator::new(side.config.clone(), store)
}

fn token(member: wallet_core::IdentityPublicKey, role: Role) -> Token {
    Token {
        member,
        role,
        expires_at: u64::MAX,
    }
}

fn signed_request(world: &World, body: WithdrawalRequest) -> Vec<u8> {
    let ks = MemoryKeystore::with_identity(world.requester.clone());
    format::encode(
        world.group.id(),
        &Signed::sign(world.group.id(), body, &ks).unwrap(),
    )
    .unwrap()
}

fn body(world: &World, id: &str) -> WithdrawalRequest {
    WithdrawalRequest::new(
        RequestId::new(id).unwrap(),
        world.requester.public_key(),
        &world.psbt(),
        now(),
        3600,
        "",
    )
    .unwrap()
}

#[test]
fn submissions_the_coordinator_refuses() {
    let world = World::builder(81, policy(true)).build();
    let dir = tempfile::tempdir().unwrap();
    let c = coordinator(&world, &dir);
    let requester = token(world.requester.public_key(), Role::Requester);

    // Expired.
    let mut expired = body(&world, "wd-expired");
    expired.created_at = now() - 7200;
    expired.expires_at = now() - 3600;
    let e = c
        .submit(&requester, signed_request(&world, expired))
        .unwrap_err();
    assert_eq!(e.status(), 403, "{e}");
    // A PSBT that does not parse.
    let mut garbage = body(&world, "wd-garbage");
    garbage.psbt = "not a psbt".into();
    let e = c
        .submit(&requester, signed_request(&world, garbage))
        .unwrap_err();
    assert_eq!(e.status(), 400, "{e}");
    // Another group's request.
    let other = World::builder(82, policy(true)).build();
    let foreign = other.request("wd-foreign", &other.psbt());
    let doc = format::encode(other.group.id(), &foreign).unwrap();
    let e = c.submit(&requester, doc).unwrap_err();
    assert_eq!(e.status(), 403, "{e}");
    // Signed by the requester, submitted by someone else's token.
    let outsider = wallet_core::SoftwareIdentity::generate(&mut kura_testkit::rng(83));
    let e = c
        .submit(
            &token(outsider.public_key(), Role::Requester),
            signed_request(&world, body(&world, "wd-relayed")),
        )
        .unwrap_err();
    assert_eq!(e.status(), 403, "{e}");
    assert!(
        c.store().list_open().unwrap().is_empty(),
        "nothing recorded"
    );
}

#[test]
fn approvals_and_shares_the_coordinator_refuses() {
    let mut world = World::builder(84, policy(true)).build();
    let dir = tempfile::tempdir().unwrap();
    let c = coordinator(&world, &dir);
    let requester = token(world.requester.public_key(), Role::Requester);
    let member =
        |w: &World, i: usize| token(w.stores[i].identity_public_key().unwrap(), Role::Signer);
    let first = signed_request(&world, body(&world, "wd-a"));
    let second = signed_request(&world, body(&world, "wd-b"));
    let id_a = c.submit(&requester, first.clone()).unwrap().id();
    let id_b = c.submit(&requester, second).unwrap().id();
    let request_a: Signed<WithdrawalRequest> =
        format::decode_for_group(&first, world.group.id()).unwrap();
    let approval = |w: &mut World, i: usize| {
        let a = w.signer(i).approve(&request_a, now()).unwrap();
        format::encode(w.group.id(), &a).unwrap()
    };

    // An approval of withdrawal A posted under B, and one posted by another member.
    let a0 = approval(&mut world, 0);
    assert_eq!(
        c.approve(&member(&world, 0), &id_b, a0.clone())
            .unwrap_err()
            .status(),
        400
    );
    assert_eq!(
        c.approve(&member(&world, 1), &id_a, a0.clone())
            .unwrap_err()
            .status(),
        403
    );
    assert!(c.store().approvals(&id_a).unwrap().is_empty());

    // Signers 0 and 1 make the session; signer 2's shares are not wanted in it.
    c.approve(&member(&world, 0), &id_a, a0).unwrap();
    let a1 = approval(&mut world, 1);
    c.approve(&member(&world, 1), &id_a, a1).unwrap();
    let outsider_shares = WithdrawalShares {
        request_digest: id_a,
        participant: *world.shares[2].identifier(),
        shares: Vec::new(),
    };
    let doc = format::encode(
        world.group.id(),
        &Signed::sign(world.group.id(), outsider_shares, world.stores[2].as_ref()).unwrap(),
    )
    .unwrap();
    let e = c
        .add_shares(&member(&world, 2), &id_a, 1, doc, None)
        .unwrap_err();
    assert_eq!(e.status(), 403, "{e}");
    assert!(c.store().shares(&id_a).unwrap().is_empty());
}
