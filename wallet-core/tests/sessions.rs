//! A signer answering a coordinator that retries signing sessions (ROAST):
//! each answer carries the signer's next approval, a later session may use
//! it, and nothing is ever signed twice with one approval's nonces.

use bitcoin::Network;
use kura_testkit::*;
use wallet_core::withdrawal::coordinator::check_shares;
use wallet_core::withdrawal::signer::{Refusal, RefusalKind};
use wallet_core::{finalize_withdrawal, IdentityPublicKey, Signed, WithdrawalShares};

fn policy_toml(requester: &IdentityPublicKey, allowed: &bitcoin::Address) -> String {
    format!(
        r#"version = 1
network = "regtest"
[[requester]]
label = "treasury-ops"
key = "{requester}"
[[destination]]
label = "exchange deposit"
address = "{allowed}"
[limits]
per_transaction_sat = 500_000
rolling_window_hours = 24
rolling_window_sat = 300_000
max_fee_sat = 20_000
max_fee_rate_sat_per_vb = 100
"#
    )
}

/// A 3-of-5 group with in-memory keystores.
fn world(seed: u64) -> World {
    World::builder(seed, policy_toml).threshold(3, 5).build()
}

fn replayed(r: Result<impl std::fmt::Debug, Refusal>) {
    match r {
        Err(e) => assert_eq!(e.kind(), RefusalKind::Replay, "{e}"),
        Ok(v) => panic!("signed again: {v:?}"),
    }
}

#[test]
fn a_second_session_signs_with_the_next_approvals_and_finalizes() {
    let mut w = world(61);
    let req = w.request("roast-1", &w.psbt());
    let first = w.approve(&req, &[0, 1, 2, 3]);
    // Session 1: signers 0, 1 and 2; signer 2 never answers (crashed).
    let s1 = w.packages(&req, &first[..3]);
    let r0 = w.signer(0).sign_session(&req, &s1, NOW).unwrap();
    let r1 = w.signer(1).sign_session(&req, &s1, NOW).unwrap();
    for r in [&r0, &r1] {
        check_shares(
            &w.group,
            &inputs_of(&w, &req),
            &w.identities,
            &s1,
            &r.shares,
        )
        .unwrap();
        assert_eq!(r.next.body.request_digest, s1.request_digest);
        assert_ne!(r.next.body.commitments, first[0].body.commitments);
    }
    // Session 2: the next approvals of 0 and 1, and 3's first one.
    let second = vec![(*r0.next).clone(), (*r1.next).clone(), first[3].clone()];
    let s2 = w.packages(&req, &second);
    let shares: Vec<Signed<WithdrawalShares>> = [0, 1, 3]
        .iter()
        .map(|&i| w.signer(i).sign_session(&req, &s2, NOW).unwrap().shares)
        .collect();
    let (_, tx) = finalize_withdrawal(
        &w.group,
        &w.identities,
        &req,
        &s2,
        &shares,
        Network::Regtest,
    )
    .unwrap();
    consensus_verify(&tx, &w.spent()).unwrap();

    // Nothing signs twice with one approval: session 1's packages again are
    // only redelivered (the same shares), an approval used once is refused
    // in any other session, and the late signer 2 still answers session 1.
    let again = w.signer(0).sign_session(&req, &s1, NOW).unwrap();
    assert_eq!(again.shares.body.shares, r0.shares.body.shares);
    let reuse = w.packages(
        &req,
        &[first[0].clone(), first[1].clone(), first[3].clone()],
    );
    replayed(w.signer(0).sign_session(&req, &reuse, NOW));
    replayed(w.signer(3).sign_session(&req, &reuse, NOW));
    let late = w.signer(2).sign_session(&req, &s1, NOW).unwrap();
    check_shares(
        &w.group,
        &inputs_of(&w, &req),
        &w.identities,
        &s1,
        &late.shares,
    )
    .unwrap();
}

#[test]
fn a_superseded_next_approval_cannot_sign() {
    let mut w = world(62);
    let req = w.request("roast-2", &w.psbt());
    let first = w.approve(&req, &[0, 1, 2, 3]);
    let s1 = w.packages(&req, &first[..3]);
    let r0 = w.signer(0).sign_session(&req, &s1, NOW).unwrap();
    // The answer is lost; the same packages again redeliver the shares and
    // make a new next approval, which withdraws the first next one.
    let r0b = w.signer(0).sign_session(&req, &s1, NOW).unwrap();
    assert_eq!(r0b.shares.body.shares, r0.shares.body.shares);
    assert_ne!(r0b.next.body.session, r0.next.body.session);
    let r1 = w.signer(1).sign_session(&req, &s1, NOW).unwrap();
    let stale = w.packages(
        &req,
        &[(*r0.next).clone(), (*r1.next).clone(), first[3].clone()],
    );
    replayed(w.signer(0).sign_session(&req, &stale, NOW));
    let fresh = w.packages(
        &req,
        &[(*r0b.next).clone(), (*r1.next).clone(), first[3].clone()],
    );
    w.signer(0).sign_session(&req, &fresh, NOW).unwrap();
}

#[test]
fn closing_a_withdrawal_destroys_its_open_approval() {
    let mut w = world(63);
    let req = w.request("roast-3", &w.psbt());
    let first = w.approve(&req, &[0, 1, 2]);
    let s1 = w.packages(&req, &first);
    let r0 = w.signer(0).sign_session(&req, &s1, NOW).unwrap();
    let r1 = w.signer(1).sign_session(&req, &s1, NOW).unwrap();
    let r2 = w.signer(2).sign_session(&req, &s1, NOW).unwrap();
    assert_eq!(w.signer(0).close(&req, NOW).unwrap(), 1);
    assert_eq!(w.signer(0).close(&req, NOW).unwrap(), 0);
    let after = w.packages(
        &req,
        &[(*r0.next).clone(), (*r1.next).clone(), (*r2.next).clone()],
    );
    replayed(w.signer(0).sign_session(&req, &after, NOW));
}

#[test]
fn every_session_of_a_request_counts_once_against_the_rolling_window() {
    // The window allows 300,000 sats; the request moves 252,000 (250,000
    // paid and the 2,000 fee). Two sessions of it must not count 504,000.
    let mut w = world(64);
    let req = w.request("roast-4", &w.psbt());
    let first = w.approve(&req, &[0, 1, 2, 3]);
    let s1 = w.packages(&req, &first[..3]);
    let r0 = w.signer(0).sign_session(&req, &s1, NOW).unwrap();
    let r1 = w.signer(1).sign_session(&req, &s1, NOW).unwrap();
    let s2 = w.packages(
        &req,
        &[(*r0.next).clone(), (*r1.next).clone(), first[3].clone()],
    );
    w.signer(0).sign_session(&req, &s2, NOW).unwrap();
    let released = w.signer(0).audit().history().amount_released_since(0);
    assert_eq!(released, 252_000);
    // A second request moving 42,000 still fits the window (294,000 in
    // all), which it would not had the first counted twice.
    let small = w.request("roast-5", &w.psbt_paying(40_000, 2_000));
    w.signer(0).approve(&small, NOW).unwrap();
}

#[test]
fn a_forged_share_is_named_on_arrival() {
    let mut w = world(65);
    let req = w.request("roast-6", &w.psbt());
    let first = w.approve(&req, &[0, 1, 2]);
    let s1 = w.packages(&req, &first);
    let honest = w.signer(0).sign_session(&req, &s1, NOW).unwrap().shares;
    let other = w.signer(1).sign_session(&req, &s1, NOW).unwrap().shares;
    // Signer 0's body with signer 1's shares, re-signed by signer 0: a valid
    // document whose shares do not verify for participant 0.
    let mut body = honest.body.clone();
    body.shares = other.body.shares.clone();
    let forged = Signed::sign(w.group.id(), body, &*w.stores[0]).unwrap();
    let e = check_shares(&w.group, &inputs_of(&w, &req), &w.identities, &s1, &forged).unwrap_err();
    assert!(e.to_string().contains("invalid"), "{e}");
    check_shares(&w.group, &inputs_of(&w, &req), &w.identities, &s1, &honest).unwrap();
}

/// The inputs of `req` as a coordinator reads them.
fn inputs_of(
    w: &World,
    req: &wallet_core::Signed<wallet_core::WithdrawalRequest>,
) -> wallet_core::withdrawal::coordinator::InputKeys {
    wallet_core::withdrawal::coordinator::InputKeys::of_request(
        &w.group,
        req,
        wallet_core::bitcoin::Network::Regtest,
    )
    .unwrap()
}
