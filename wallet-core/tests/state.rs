//! Signer state that a disk writer cannot roll back (issue: take-once, audit
//! head and policy anchored in the keystore). Each test is an attack by
//! someone who can read and write a signer's files — restore old copies,
//! delete, edit — but knows no passphrase, run against real software
//! keystores on disk, with the refusal asserted.
//!
//! | attack | refused by |
//! |---|---|
//! | nonce files and audit log copied back between three `sign` runs | the audit head anchored in the keystore; the nonce key destroyed at the take |
//! | a nonce file restored on its own | its key is gone from the keystore's state |
//! | audit log deleted, cut, or an old copy restored | anchor: the log is behind it |
//! | audit log replaced by another chain | anchor: forked |
//! | policy file edited | the pinned policy digest |
//! | racing processes on one signer | the decision lock: exactly one releases |
//! | nonces lost in a crash, or tampered with | re-approval supersedes, once, with no replay |
//! | a state directory others can write | refused on open |

use std::path::Path;

use kura_testkit::*;
use wallet_core::audit::{AuditError, AuditEvent, AuditLog, AuditRecord};
use wallet_core::identity::IdentityPublicKey;
use wallet_core::keystore::{
    self, AuditHead, Keystore, KeystoreError, MemoryKeystore, SecretSlot, SoftwareKeystore,
};
use wallet_core::policy::Policy;
use wallet_core::withdrawal::request::{Signed, WithdrawalRequest};
use wallet_core::withdrawal::signer::Refusal;

fn policy_text(requester: &IdentityPublicKey, allowed: &bitcoin::Address, window: u64) -> String {
    format!(
        "version = 1\nnetwork = \"regtest\"\n[[requester]]\nlabel = \"ops\"\nkey = \"{requester}\"\n[[destination]]\nlabel = \"exchange\"\naddress = \"{allowed}\"\n[limits]\nper_transaction_sat = 500_000\nrolling_window_hours = 24\nrolling_window_sat = {window}\nmax_fee_sat = 20_000\nmax_fee_rate_sat_per_vb = 100\n"
    )
}

/// Three signers, each a directory with a software keystore and an audit
/// log, as a signer's home holds them; one coin of 1,000,000 sats.
fn world(seed: u64) -> World<SoftwareKeystore> {
    World::builder(seed, |requester, allowed| {
        policy_text(requester, allowed, 700_000)
    })
    .coins(&[1_000_000])
    .keystores::<SoftwareKeystore>()
    .build()
}

/// The requester's request `id` paying `amount` to the allowlisted
/// address, 2,000 sats fee, no memo.
fn request(w: &World<SoftwareKeystore>, id: &str, amount: u64) -> Signed<WithdrawalRequest> {
    let mut body = w.request_body(id, &w.psbt_paying(amount, 2_000));
    body.memo = String::new();
    w.sign_request(body)
}

/// How many shares signer `i` has released.
fn shares_released(w: &World<SoftwareKeystore>, i: usize) -> usize {
    w.audits[i]
        .entries()
        .iter()
        .filter(|e| matches!(e.record.event, AuditEvent::ShareReleased))
        .count()
}

/// Copies a file or directory tree (the attacker's snapshot).
fn snapshot(from: &Path, to: &Path) {
    if from.is_dir() {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            snapshot(&entry.path(), &to.join(entry.file_name()));
        }
    } else {
        std::fs::copy(from, to).unwrap();
    }
}

/// Puts a snapshot back over the live files (removing what is newer).
fn restore(snap: &Path, live: &Path) {
    if live.is_dir() {
        std::fs::remove_dir_all(live).unwrap();
    } else if live.exists() {
        std::fs::remove_file(live).unwrap();
    }
    snapshot(snap, live);
}

#[test]
fn attack_1_nonce_files_and_audit_log_copied_back_release_one_share_set() {
    let mut w = world(1);
    let req = request(&w, "w-1", 300_000);
    let approvals = w.approve(&req, &[0, 1, 2]);
    // Three packages, each with another co-signer set around signer 0.
    let sets = [
        vec![approvals[0].clone(), approvals[1].clone()],
        vec![approvals[0].clone(), approvals[2].clone()],
        approvals.clone(),
    ];
    let snap = w.homes[0].parent().unwrap().join("snapshot");
    snapshot(&w.homes[0].join("keystore/nonces"), &snap.join("nonces"));
    snapshot(&w.homes[0].join("audit.jsonl"), &snap.join("audit.jsonl"));

    let mut released = 0;
    let mut refusals = Vec::new();
    let mut log_after_release = None;
    for set in &sets {
        let packages = w.packages(&req, set);
        restore(&snap.join("nonces"), &w.homes[0].join("keystore/nonces"));
        restore(&snap.join("audit.jsonl"), &w.homes[0].join("audit.jsonl"));
        w.restart(0);
        match w.signer(0).sign(&req, &packages, NOW) {
            Ok(_) => {
                released += 1;
                log_after_release = std::fs::read(w.homes[0].join("audit.jsonl")).ok();
            }
            Err(e) => refusals.push(e),
        }
    }
    assert_eq!(released, 1, "exactly one share set for one set of nonces");
    for r in &refusals {
        assert!(
            matches!(r, Refusal::Audit(AuditError::BehindAnchor { .. })),
            "{r}"
        );
    }

    // The nonce files alone restored (the log as it was after the release):
    // the log says the share was released, and the nonces no longer decrypt.
    std::fs::write(w.homes[0].join("audit.jsonl"), log_after_release.unwrap()).unwrap();
    restore(&snap.join("nonces"), &w.homes[0].join("keystore/nonces"));
    w.restart(0);
    let packages = w.packages(&req, &sets[1]);
    assert!(matches!(
        w.signer(0).sign(&req, &packages, NOW),
        Err(Refusal::Replayed(_))
    ));
    let slot = SecretSlot::nonces(&w.shares[0], &approvals[0].body.session.for_input(0));
    assert!(matches!(
        w.stores[0].take_nonces(&slot),
        Err(KeystoreError::NoncesConsumed(_))
    ));
    assert_eq!(shares_released(&w, 0), 1);
}

#[test]
fn attack_2_a_deleted_cut_or_old_audit_log_refuses_everything() {
    let mut w = world(2);
    // 450,000 released against a 700,000 window.
    let req = request(&w, "w-1", 450_000);
    let approvals = w.approve(&req, &[0, 1]);
    let packages = w.packages(&req, &approvals);
    let first = w.signer(0).sign(&req, &packages, NOW).unwrap();
    // Handed out again (a crash lost them): the release does not count
    // against itself, though 450,000 twice would exceed the window.
    assert_eq!(
        w.signer(0).sign(&req, &packages, NOW).unwrap().body,
        first.body
    );
    let log = w.homes[0].join("audit.jsonl");
    let good = std::fs::read(&log).unwrap();
    let second = request(&w, "w-2", 450_000);

    // Deleted: the window would be empty and w-1 approvable again.
    std::fs::remove_file(&log).unwrap();
    w.restart(0);
    for r in [
        w.signer(0).approve(&second, NOW).unwrap_err(),
        w.signer(0).approve(&req, NOW).unwrap_err(),
        w.signer(0).review(&second, NOW).unwrap_err(),
    ] {
        assert!(
            matches!(r, Refusal::Audit(AuditError::BehindAnchor { .. })),
            "{r}"
        );
        assert!(r.to_string().contains("behind its anchor"), "{r}");
    }

    // Cut to its first entry.
    let first_line = good.iter().position(|b| *b == b'\n').unwrap() + 1;
    std::fs::write(&log, &good[..first_line]).unwrap();
    w.restart(0);
    assert!(matches!(
        w.signer(0).review(&second, NOW),
        Err(Refusal::Audit(AuditError::BehindAnchor { .. }))
    ));

    // Put back, the signer works, and the window still counts w-1.
    std::fs::write(&log, &good).unwrap();
    w.restart(0);
    let refusal = w.signer(0).approve(&second, NOW).unwrap_err();
    assert!(matches!(refusal, Refusal::Policy(_)), "{refusal}");
    let refusal = w.signer(0).approve(&req, NOW).unwrap_err();
    assert!(
        matches!(refusal, Refusal::Replayed(_) | Refusal::Policy(_)),
        "{refusal}"
    );
}

#[test]
fn a_log_forked_from_its_anchor_or_too_far_ahead_is_refused() {
    let mut w = world(3);
    let req = request(&w, "w-1", 100_000);
    w.approve(&req, &[0]);
    let anchor = w.stores[0].anchor().unwrap();
    assert_eq!(anchor.audit, w.audits[0].head());
    // The anchored entry is not the log's (another chain of the same length).
    let forged = anchor.with_audit(AuditHead {
        seq: anchor.audit.seq,
        hash: [0x42; 32],
    });
    w.stores[0].replace_anchor(&anchor, &forged).unwrap();
    let r = w.signer(0).review(&req, NOW).unwrap_err();
    assert!(
        matches!(r, Refusal::Audit(AuditError::Forked { .. })),
        "{r}"
    );

    // Two entries beyond the anchor: not what a crash leaves.
    w.stores[0].replace_anchor(&forged, &anchor).unwrap();
    let owner = w.stores[0].identity_public_key().unwrap();
    let mut other = AuditLog::open(&w.homes[0].join("audit.jsonl"), &owner).unwrap();
    for _ in 0..2 {
        other
            .append(
                &w.stores[0],
                NOW,
                AuditRecord::new(AuditEvent::Note { text: "x".into() }),
            )
            .unwrap();
    }
    let moved = w.stores[0].anchor().unwrap();
    w.stores[0].replace_anchor(&moved, &anchor).unwrap();
    w.restart(0);
    let r = w.signer(0).review(&req, NOW).unwrap_err();
    assert!(
        matches!(
            r,
            Refusal::Audit(AuditError::AheadOfAnchor { ahead: 2, .. })
        ),
        "{r}"
    );
}

#[test]
fn a_crash_between_an_append_and_the_anchor_is_caught_up() {
    let mut w = world(4);
    let req = request(&w, "w-1", 100_000);
    let before = w.stores[0].anchor().unwrap();
    w.approve(&req, &[0]);
    // As if the process died after writing the line, before the anchor moved.
    let after = w.stores[0].anchor().unwrap();
    w.stores[0].replace_anchor(&after, &before).unwrap();
    w.restart(0);
    w.signer(0).review(&req, NOW).unwrap();
    assert_eq!(w.stores[0].anchor().unwrap().audit, w.audits[0].head());
}

#[test]
fn attack_3_an_edited_policy_is_not_in_force() {
    let mut w = world(5);
    let req = request(&w, "w-1", 100_000);
    // The attacker adds its destination and raises the limits on disk.
    let attacker = outside_address(0x66);
    let edited = Policy::from_toml(
        &policy_text(&w.requester.public_key(), &w.allowed, 9_000_000).replace(
            "[limits]",
            &format!("[[destination]]\nlabel = \"x\"\naddress = \"{attacker}\"\n[limits]"),
        ),
    )
    .unwrap();
    let honest = std::mem::replace(&mut w.policy, edited.clone());
    let r = w.signer(0).approve(&req, NOW).unwrap_err();
    assert!(
        matches!(
            r,
            Refusal::PolicyNotInForce {
                pinned: Some(_),
                ..
            }
        ),
        "{r}"
    );
    assert!(r.to_string().contains("not the policy installed"), "{r}");
    match &w.audits[0].entries().last().unwrap().record.event {
        AuditEvent::Refused { rule, .. } => assert_eq!(rule.as_str(), "policy-pin"),
        other => panic!("{other:?}"),
    }
    // Installing it (which needs the keystore) puts it in force.
    assert_eq!(
        keystore::pin_policy(&w.stores[0], edited.digest()).unwrap(),
        Some(honest.digest())
    );
    w.signer(0).approve(&req, NOW).unwrap();

    // A keystore with no policy installed refuses everything.
    let fresh = MemoryKeystore::new();
    keystore::put_share(&fresh, &w.shares[1]).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let mut audit = AuditLog::open(
        &tmp.path().join("a.jsonl"),
        &fresh.identity_public_key().unwrap(),
    )
    .unwrap();
    let mut ids = w.identities.clone();
    ids.insert(
        *w.shares[1].identifier(),
        fresh.identity_public_key().unwrap(),
    );
    let fresh = std::sync::Arc::new(fresh);
    let mut s = signer(&w.group, &ids, &w.shares[1], fresh, &honest, &mut audit);
    assert!(matches!(
        s.review(&req, NOW),
        Err(Refusal::PolicyNotInForce { pinned: None, .. })
    ));
}

#[test]
fn attack_4_racing_processes_compute_one_share_set_per_round_and_all_get_it() {
    let mut w = world(6);
    for round in 0..4 {
        let req = request(&w, &format!("w-{round}"), 10_000);
        let approvals = w.approve(&req, &[0, 1]);
        let packages = w.packages(&req, &approvals);
        let barrier = std::sync::Barrier::new(4);
        let results: Vec<Result<Vec<String>, String>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..4)
                .map(|_| {
                    let (w, req, packages, barrier) = (&w, &req, &packages, &barrier);
                    scope.spawn(move || {
                        // Each "process" opens the signer's files itself.
                        let ks =
                            SoftwareKeystore::open(&w.homes[0].join("keystore"), &passphrase())
                                .unwrap();
                        let owner = ks.identity_public_key().unwrap();
                        let mut audit =
                            AuditLog::open(&w.homes[0].join("audit.jsonl"), &owner).unwrap();
                        let mut s = signer(
                            &w.group,
                            &w.identities,
                            &w.shares[0],
                            std::sync::Arc::new(ks),
                            &w.policy,
                            &mut audit,
                        );
                        barrier.wait();
                        s.sign(req, packages, NOW)
                            .map(|sh| {
                                sh.body
                                    .shares
                                    .iter()
                                    .map(|x| hex::encode(x.serialize()))
                                    .collect()
                            })
                            .map_err(|e| e.to_string())
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        // Every process gets shares (no participation lost) and they are one
        // and the same set: computed once, handed out again to the others.
        let shares: Vec<&Vec<String>> = results
            .iter()
            .map(|r| r.as_ref().unwrap_or_else(|e| panic!("round {round}: {e}")))
            .collect();
        assert!(shares.windows(2).all(|p| p[0] == p[1]), "round {round}");
    }
    w.restart(0);
    assert_eq!(shares_released(&w, 0), 4, "one release per round");
    let redelivered = w.audits[0]
        .entries()
        .iter()
        .filter(|e| matches!(e.record.event, AuditEvent::SharesRedelivered))
        .count();
    assert_eq!(redelivered, 12);
    wallet_core::audit::verify(
        &std::fs::read(w.homes[0].join("audit.jsonl")).unwrap(),
        &w.stores[0].identity_public_key().unwrap(),
    )
    .unwrap();
}

#[test]
fn attack_5_lost_or_tampered_nonces_are_approved_again_once() {
    let mut w = world(7);
    let req = request(&w, "w-1", 100_000);
    let first = w.approve(&req, &[0, 1]);
    // The process died after taking signer 0's nonces, before it signed.
    let slot = SecretSlot::nonces(&w.shares[0], &first[0].body.session.for_input(0));
    w.stores[0].take_nonces(&slot).unwrap();
    let packages = w.packages(&req, &first);
    let r = w.signer(0).sign(&req, &packages, NOW).unwrap_err();
    assert!(
        matches!(r, Refusal::Keystore(KeystoreError::NoncesConsumed(_))),
        "{r}"
    );
    // Approving the same request again is possible: the earlier approval is
    // superseded (recorded), with fresh nonces.
    let again = w.signer(0).approve(&req, NOW).unwrap();
    assert_ne!(again.body.session, first[0].body.session);
    assert!(w.audits[0].entries().iter().any(|e| matches!(
        e.record.event,
        AuditEvent::ApprovalSuperseded
    ) && e.record.session
        == Some(first[0].body.session)));
    let packages = w.packages(&req, &[again.clone(), first[1].clone()]);
    let released = w.signer(0).sign(&req, &packages, NOW).unwrap();
    // Once released, no new approval, and no new shares: the same packages
    // get the same shares back (they may have been lost on the way), other
    // packages nothing.
    assert!(matches!(
        w.signer(0).approve(&req, NOW),
        Err(Refusal::Replayed(_))
    ));
    let again_shares = w.signer(0).sign(&req, &packages, NOW).unwrap();
    assert_eq!(again_shares.body, released.body);
    let third = w.signer(2).approve(&req, NOW).unwrap();
    let other = w.packages(&req, &[again.clone(), first[1].clone(), third]);
    assert!(matches!(
        w.signer(0).sign(&req, &other, NOW),
        Err(Refusal::Replayed(_))
    ));

    // A tampered nonce file: refused, then approvable again.
    let req2 = request(&w, "w-2", 100_000);
    let a = w.approve(&req2, &[0, 1]);
    let file = w.homes[0].join(format!(
        "keystore/nonces/{}.bin",
        SecretSlot::nonces(&w.shares[0], &a[0].body.session.for_input(0)).name()
    ));
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[20] ^= 1;
    std::fs::write(&file, bytes).unwrap();
    let packages = w.packages(&req2, &a);
    assert!(matches!(
        w.signer(0).sign(&req2, &packages, NOW),
        Err(Refusal::Keystore(KeystoreError::Tampered(_)))
    ));
    let a0 = w.signer(0).approve(&req2, NOW).unwrap();
    // The superseded approval can never sign, even if its package returns:
    // the signer refuses it before asking the keystore (whose nonces are
    // gone anyway).
    assert!(matches!(
        w.signer(0).sign(&req2, &packages, NOW),
        Err(Refusal::Replayed(_))
    ));
    let packages = w.packages(&req2, &[a0, a[1].clone()]);
    w.signer(0).sign(&req2, &packages, NOW).unwrap();
    assert_eq!(shares_released(&w, 0), 2);

    // Another request reusing the id is still a replay.
    let other = request(&w, "w-2", 200_000);
    assert!(matches!(
        w.signer(1).approve(&other, NOW),
        Err(Refusal::Replayed(_))
    ));
}

#[test]
fn a_keystore_others_can_write_is_refused_and_state_cannot_be_deleted() {
    use std::os::unix::fs::PermissionsExt;
    let w = world(8);
    let dir = w.homes[0].join("keystore");
    for d in [&dir, &dir.join("nonces"), &dir.join("shares")] {
        let mode = std::fs::metadata(d).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "{}", d.display());
    }
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    assert!(matches!(
        SoftwareKeystore::open(&dir, &passphrase()),
        Err(KeystoreError::Insecure { .. })
    ));
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    // Removing the state file does not make the keystore new again.
    std::fs::remove_file(dir.join("state.bin")).unwrap();
    assert!(matches!(
        SoftwareKeystore::open(&dir, &passphrase()),
        Err(KeystoreError::Tampered(_))
    ));
}

#[test]
fn a_crash_between_the_nonce_file_and_its_key_can_be_rerun() {
    let w = world(9);
    let session = wallet_core::keystore::SessionId::random();
    let slot = SecretSlot::nonces(&w.shares[0], &session);
    // A ciphertext file with no key in the state: the crash's leftover.
    let file = w.homes[0].join(format!("keystore/nonces/{}.bin", slot.name()));
    std::fs::write(&file, b"left by a crash").unwrap();
    keystore::commit(&w.stores[0], &w.shares[0], &session).unwrap();
    assert!(w.stores[0].take_nonces(&slot).is_ok());
    // But nonces that exist are never overwritten.
    let again = wallet_core::keystore::SessionId::random();
    keystore::commit(&w.stores[0], &w.shares[0], &again).unwrap();
    assert!(matches!(
        keystore::commit(&w.stores[0], &w.shares[0], &again),
        Err(KeystoreError::AlreadyExists(_))
    ));
}

#[test]
fn approvals_never_followed_up_release_their_nonces_once_surely_expired() {
    let mut w = world(10);
    let req = request(&w, "w-old", 100_000);
    let old = w.approve(&req, &[0]).remove(0);
    let slot = SecretSlot::nonces(&w.shares[0], &old.body.session.for_input(0));
    // A week and a bit later (past the longest lifetime any policy allows),
    // another request is approved: the old nonces are destroyed, recorded.
    let later = NOW + (wallet_core::policy::MAX_REQUEST_LIFETIME_HOURS + 1) * 3600;
    let mut body = request(&w, "w-new", 100_000).body;
    body.created_at = later - 60;
    body.expires_at = later + 3600;
    let ks = MemoryKeystore::with_identity(w.requester.clone());
    let fresh = Signed::sign(w.group.id(), body, &ks).unwrap();
    w.signer(0).approve(&fresh, later).unwrap();
    assert!(matches!(
        w.stores[0].take_nonces(&slot),
        Err(KeystoreError::NoncesConsumed(_))
    ));
    assert!(w.audits[0]
        .entries()
        .iter()
        .any(|e| matches!(e.record.event, AuditEvent::ApprovalSuperseded)
            && e.record.session == Some(old.body.session)));
    let files = std::fs::read_dir(w.homes[0].join("keystore/nonces"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "bin")
        })
        .count();
    assert_eq!(files, 1, "only the new approval's nonces remain");
}

#[test]
fn a_planted_huge_audit_log_is_refused_without_reading_it() {
    let w = world(11);
    let log = w.homes[0].join("audit.jsonl");
    let f = std::fs::File::create(&log).unwrap();
    f.set_len(wallet_core::audit::MAX_LOG_BYTES + 1).unwrap();
    let owner = w.stores[0].identity_public_key().unwrap();
    assert!(matches!(
        AuditLog::open(&log, &owner),
        Err(AuditError::TooLarge { .. })
    ));
}
