//! What Kura withstands. Each test runs one attack against a 2-of-3 group of
//! honest signers (own keystore, own policy, own audit log) and asserts the
//! refusal — and that no valid signature for the attacker's transaction
//! exists afterwards.
//!
//! | # | attacker | attack | refused by |
//! |---|---|---|---|
//! | 1 | coordinator | swaps a destination | requester signature; package message ≠ signer's sighash |
//! | 2 | coordinator | changes an amount | same |
//! | 3 | coordinator | adds an output | same |
//! | 4 | coordinator | lowers the change | same |
//! | 5 | requester channel | fee above the cap | policy `fee-cap` |
//! | 6 | coordinator / requester tool | alters a `witness_utxo` amount | the sighash commits to amounts: Core rejects the signature |
//! | 6b | coordinator / requester tool | alters a `witness_utxo` script | review: not the group's coin |
//! | 7 | requester channel | SIGHASH_NONE / SINGLE / ANYONECANPAY | review: sighash type |
//! | 8 | coordinator | replays an old request | replay (request id seen) |
//! | 9 | coordinator | package message differs from the sighash | package check |
//! | 10 | coordinator | swaps messages between two inputs | package check |
//! | 11 | coordinator | drops or substitutes a commitment | package check |
//! | 12 | coordinator | includes a non-member | approval check |
//! | 13 | coordinator | forges an approval | approval signature check |
//! | 14 | stolen session | requester not in the policy | policy `requester` |
//! | 15 | coordinator | expired request | expiry |
//! | 16 | requester channel | spends a coin that is not the group's | review: foreign input |
//! | 17 | malicious signer | sends an invalid share | aggregation names it (only it) |
//! | 18 | requester channel | destination not on the allowlist | policy `destination-allowlist` |
//! | 19 | requester channel | more than the per-transaction / rolling limit | policy limits |
//! | 20 | requester channel | asks for a raw (blind) message signature | policy `raw-messages`, off by default |

use bitcoin::{Amount, Network, TxOut};
use kura_testkit::*;
use wallet_core::audit::AuditEvent;
use wallet_core::frost_core::Identifier;
use wallet_core::identity::{IdentityPublicKey, SoftwareIdentity};
use wallet_core::keystore::MemoryKeystore;
use wallet_core::policy::Rule;
use wallet_core::signing::{AggregateError, SignError};
use wallet_core::withdrawal::coordinator::{build_packages, finalize_withdrawal, CoordinatorError};
use wallet_core::withdrawal::request::{
    Signed, WithdrawalPackages, WithdrawalRequest, WithdrawalShares,
};
use wallet_core::withdrawal::review::ReviewError;
use wallet_core::withdrawal::signer::Refusal;
use wallet_core::Secp256k1Tr;

/// The second authorised requester (its own key, fixed seed).
fn second_requester() -> SoftwareIdentity {
    SoftwareIdentity::generate(&mut rng(0x5ec0))
}

fn policy_toml(requester: &IdentityPublicKey, allowed: &bitcoin::Address) -> String {
    let second = second_requester().public_key();
    format!(
        r#"version = 1
network = "regtest"
[[requester]]
label = "treasury-ops"
key = "{requester}"
[[requester]]
label = "payroll-bot"
key = "{second}"
[[destination]]
label = "exchange deposit"
address = "{allowed}"
[limits]
per_transaction_sat = 500_000
rolling_window_hours = 24
rolling_window_sat = 700_000
max_fee_sat = 20_000
max_fee_rate_sat_per_vb = 100
"#
    )
}

/// Three signers with in-memory keystores, two coins (400k and 300k).
fn world(seed: u64) -> World {
    World::builder(seed, policy_toml).build()
}

fn refused_by(
    w: &mut World,
    who: &[usize],
    req: &Signed<WithdrawalRequest>,
    packages: &WithdrawalPackages,
) -> Vec<Refusal> {
    who.iter()
        .map(|&i| w.signer(i).sign(req, packages, NOW).unwrap_err())
        .collect()
}

/// The last audit entry of signer `i` is a refusal under `rule`.
fn audited_refusal(w: &World, i: usize, rule: &str) {
    match &w.audits[i].entries().last().unwrap().record.event {
        AuditEvent::Refused { rule: r, .. } => assert_eq!(r.as_str(), rule),
        other => panic!("last audit entry is {other:?}, not a refusal"),
    }
}

/// Runs the honest flow to the end (signers 0 and 2) and returns the transaction.
fn honest(w: &mut World, id: &str) -> bitcoin::Transaction {
    let req = w.request(id, &w.psbt());
    let (_, tx) = w.run(&req, &[0, 2]).unwrap();
    tx
}

#[test]
fn the_honest_withdrawal_verifies_under_bitcoin_core() {
    let mut w = world(1);
    let tx = honest(&mut w, "r-1");
    consensus_verify(&tx, &w.spent()).unwrap();
    // Each signer's audit log: request approved, share released, in order.
    let events: Vec<_> = w.audits[0]
        .entries()
        .iter()
        .map(|e| e.record.event.clone())
        .collect();
    assert_eq!(events, [AuditEvent::Approved, AuditEvent::ShareReleased]);
    // What left the wallet: 250,000 paid plus the 2,000 fee.
    assert_eq!(w.audits[0].amount_released_since(0), 252_000);
    assert_eq!(w.audits[0].fee_released_since(0), 2_000);
}

/// Attacks 1–4: the coordinator changes the transaction. Changing the PSBT
/// inside the request breaks the requester's signature; keeping the request
/// and putting the altered transaction's sighashes into the packages breaks
/// the signers' sighash check. Either way no share is released.
fn coordinator_alters(seed: u64, alter: impl Fn(&World, &mut Vec<TxOut>)) {
    let mut w = world(seed);
    let req = w.request("r-alter", &w.psbt());
    let mut outputs = w.outputs();
    alter(&w, &mut outputs);
    let altered = psbt(&w.coins, outputs);

    // (a) the request's PSBT replaced, signature kept.
    let mut forged = req.clone();
    forged.body.psbt = altered.to_string();
    for i in 0..3 {
        assert!(matches!(
            w.signer(i).approve(&forged, NOW),
            Err(Refusal::BadRequestSignature)
        ));
        audited_refusal(&w, i, "request-signature");
    }

    // (b) honest approvals, packages signing the altered transaction.
    let approvals = w.approve(&req, &[0, 1]);
    let mut packages = w.packages(&req, &approvals);
    let altered_summary =
        wallet_core::withdrawal::review::review(&altered, &w.group.xpub(), Network::Regtest)
            .unwrap();
    for (p, sighash) in packages
        .packages
        .iter_mut()
        .zip(altered_summary.sighashes())
    {
        p.message = sighash.as_bytes().to_vec();
    }
    for r in refused_by(&mut w, &[0, 1], &req, &packages) {
        assert!(
            matches!(
                r,
                Refusal::Package {
                    source: SignError::MessageMismatch { .. },
                    ..
                }
            ),
            "{r}"
        );
    }
    audited_refusal(&w, 0, "signing-package");
    // The nonces were never touched: the honest packages still sign.
    let honest_packages = w.packages(&req, &approvals);
    let shares: Vec<_> = [0, 1]
        .iter()
        .map(|&i| w.signer(i).sign(&req, &honest_packages, NOW).unwrap())
        .collect();
    let (_, tx) = finalize_withdrawal(
        &w.group,
        &w.identities,
        &req,
        &honest_packages,
        &shares,
        Network::Regtest,
    )
    .unwrap();
    assert_eq!(
        tx.output,
        w.outputs(),
        "only the requested transaction was ever signed"
    );
}

#[test]
fn attack_01_coordinator_swaps_a_destination() {
    coordinator_alters(11, |_, o| {
        o[0].script_pubkey = outside_address(66).script_pubkey()
    });
}

#[test]
fn attack_02_coordinator_changes_an_amount() {
    coordinator_alters(12, |_, o| {
        o[0].value = Amount::from_sat(448_000);
        o[1].value = Amount::from_sat(250_000);
    });
}

#[test]
fn attack_03_coordinator_adds_an_output() {
    coordinator_alters(13, |_, o| {
        o[1].value = Amount::from_sat(348_000);
        o.push(TxOut {
            value: Amount::from_sat(100_000),
            script_pubkey: outside_address(66).script_pubkey(),
        });
    });
}

#[test]
fn attack_04_coordinator_lowers_the_change() {
    coordinator_alters(14, |_, o| o[1].value = Amount::from_sat(300_000));
}

#[test]
fn attack_05_fee_above_the_cap() {
    let mut w = world(15);
    let mut outputs = w.outputs();
    outputs[1].value = Amount::from_sat(400_000); // fee 50,000 > 20,000
    let req = w.request("r-fee", &psbt(&w.coins, outputs));
    match w.signer(0).approve(&req, NOW) {
        Err(Refusal::Policy(p)) => {
            assert!(matches!(p.rule, Rule::FeeCap | Rule::FeeRateCap), "{p}");
            assert!(
                p.message.contains("50000")
                    || p.message.contains("50,000")
                    || p.message.contains("sat/vB"),
                "{p}"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn attack_06_a_lied_witness_utxo_amount_yields_no_valid_signature() {
    let mut w = world(16);
    // The requester's tooling (or a relay before it) claims coin 0 holds
    // less than it does: the fee looks smaller, policy passes, signers sign
    // — but BIP341 commits to every spent amount, so the signature is for a
    // transaction that does not exist on chain.
    let mut lied_coins = w.coins.clone();
    lied_coins[0].1.value = Amount::from_sat(399_000);
    let mut outputs = w.outputs();
    outputs[1].value = Amount::from_sat(447_000);
    let req = w.request("r-lie", &psbt(&lied_coins, outputs));
    let approvals = w.approve(&req, &[1, 2]);
    let packages = w.packages(&req, &approvals);
    let shares: Vec<_> = [1, 2]
        .iter()
        .map(|&i| w.signer(i).sign(&req, &packages, NOW).unwrap())
        .collect();
    let (_, tx) = finalize_withdrawal(
        &w.group,
        &w.identities,
        &req,
        &packages,
        &shares,
        Network::Regtest,
    )
    .unwrap();
    assert!(
        consensus_verify(&tx, &w.spent()).is_err(),
        "Core must reject signatures over a lied amount"
    );
}

#[test]
fn attack_06b_a_witness_utxo_script_that_is_not_the_groups() {
    let mut w = world(17);
    let mut coins = w.coins.clone();
    coins[1].1.script_pubkey = outside_address(67).script_pubkey();
    let req = w.request("r-script", &psbt(&coins, w.outputs()));
    assert!(matches!(
        w.signer(0).approve(&req, NOW),
        Err(Refusal::Review(ReviewError::ForeignInput { input: 1, .. }))
    ));
    audited_refusal(&w, 0, "psbt-review");
}

#[test]
fn attack_07_sighash_none_single_anyonecanpay() {
    let mut w = world(18);
    for (n, ty) in [
        bitcoin::TapSighashType::None,
        bitcoin::TapSighashType::Single,
        bitcoin::TapSighashType::AllPlusAnyoneCanPay,
    ]
    .into_iter()
    .enumerate()
    {
        let mut p = psbt(&w.coins, w.outputs());
        p.inputs[0].sighash_type = Some(ty.into());
        let req = w.request(&format!("r-sighash-{n}"), &p);
        assert!(matches!(
            w.signer(2).approve(&req, NOW),
            Err(Refusal::Review(ReviewError::UnsupportedSighash {
                input: 0,
                ..
            }))
        ));
    }
}

#[test]
fn attack_08_replayed_request() {
    let mut w = world(19);
    honest(&mut w, "r-replay");
    // The identical signed request again (same PSBT, same id): refused at
    // approval and at signing, even though everything else is valid.
    let req = w.request("r-replay", &w.psbt());
    assert!(
        matches!(w.signer(0).approve(&req, NOW), Err(Refusal::Replayed(id)) if id.as_str() == "r-replay")
    );
    audited_refusal(&w, 0, "replay");
    // Request ids are unique per requester: another authorised requester's
    // request that happens to use the same id is not a replay.
    let other = w.request_as(
        "r-replay",
        &psbt(&w.coins, w.outputs()),
        &second_requester(),
    );
    assert!(w.signer(2).approve(&other, NOW).is_ok());
    // The untouched third signer approves, but the coordinator cannot get t.
    let approvals = vec![w.signer(1).approve(&req, NOW).unwrap()];
    assert!(matches!(
        build_packages(&w.group, &w.identities, &req, &approvals, Network::Regtest),
        Err(CoordinatorError::TooFewApprovals { have: 1, need: 2 })
    ));
}

#[test]
fn attack_09_package_message_differs_from_the_signers_sighash() {
    let mut w = world(20);
    let req = w.request("r-msg", &w.psbt());
    let approvals = w.approve(&req, &[0, 1]);
    let mut packages = w.packages(&req, &approvals);
    packages.packages[1].message = [0x42; 32].to_vec();
    for r in refused_by(&mut w, &[0, 1], &req, &packages) {
        assert!(
            matches!(
                r,
                Refusal::Package {
                    input: 1,
                    source: SignError::MessageMismatch { .. }
                }
            ),
            "{r}"
        );
    }
}

#[test]
fn attack_10_messages_swapped_between_inputs() {
    let mut w = world(21);
    let req = w.request("r-swap", &w.psbt());
    let approvals = w.approve(&req, &[0, 2]);
    let mut packages = w.packages(&req, &approvals);
    let m0 = packages.packages[0].message.clone();
    packages.packages[0].message = packages.packages[1].message.clone();
    packages.packages[1].message = m0;
    for r in refused_by(&mut w, &[0, 2], &req, &packages) {
        assert!(
            matches!(
                r,
                Refusal::Package {
                    input: 0,
                    source: SignError::MessageMismatch { .. }
                }
            ),
            "{r}"
        );
    }
}

#[test]
fn attack_11_dropped_or_substituted_commitment() {
    let mut w = world(22);
    let req = w.request("r-commit", &w.psbt());
    let approvals = w.approve(&req, &[0, 1]);
    let honest_packages = w.packages(&req, &approvals);

    // Substituted: signer 1's commitment for input 0 replaced by a fresh one.
    let mut substituted = honest_packages.clone();
    let (_, fresh) = wallet_core::signing::commit(&w.shares[1], &mut rng(5));
    let id1 = *w.shares[1].identifier();
    for e in &mut substituted.packages[0].commitments {
        if e.participant == id1 {
            e.commitments = fresh;
        }
    }
    for r in refused_by(&mut w, &[0, 1], &req, &substituted) {
        assert!(
            matches!(
                r,
                Refusal::BadPackage { input: 0, .. } | Refusal::Package { input: 0, .. }
            ),
            "{r}"
        );
    }

    // Dropped: signer 1's commitment removed from input 1 (leaving one).
    let mut dropped = honest_packages.clone();
    dropped.packages[1]
        .commitments
        .retain(|e| e.participant != id1);
    let r = w.signer(0).sign(&req, &dropped, NOW).unwrap_err();
    assert!(matches!(r, Refusal::BadPackage { input: 1, .. }), "{r}");
}

#[test]
fn attack_12_a_non_member_in_the_package() {
    let mut w = world(23);
    let req = w.request("r-stranger", &w.psbt());
    let approvals = w.approve(&req, &[0, 1]);
    let mut packages = w.packages(&req, &approvals);
    // A stranger's commitment (a share of another group, identifier 9).
    let other = deal::<Secp256k1Tr>(2, 3, 99);
    let (_, c) = wallet_core::signing::commit(&other.shares[0], &mut rng(1));
    let stranger = Identifier::try_from(9u16).unwrap();
    packages.packages[0]
        .commitments
        .push(wallet_core::messages::PackageEntry {
            participant: stranger,
            commitments: c,
        });
    let r = w.signer(0).sign(&req, &packages, NOW).unwrap_err();
    assert!(
        matches!(r, Refusal::BadPackage { input: 0, ref reason } if reason.contains("without an approval")),
        "{r}"
    );
    // A stranger's approval, signed by its own key, is refused too.
    let mut approval = approvals[1].body.clone();
    approval.participant = stranger;
    let ks = MemoryKeystore::new();
    packages = w.packages(&req, &approvals);
    packages
        .approvals
        .push(Signed::sign(w.group.id(), approval, &ks).unwrap());
    let r = w.signer(0).sign(&req, &packages, NOW).unwrap_err();
    assert!(
        matches!(r, Refusal::BadApproval { ref reason, .. } if reason.contains("roster")),
        "{r}"
    );
}

#[test]
fn attack_13_forged_approval() {
    let mut w = world(24);
    let req = w.request("r-forge", &w.psbt());
    let approvals = w.approve(&req, &[0]);
    // The coordinator invents signer 2's approval: right participant, its
    // own key (not signer 2's), commitments it made up.
    let (_, c0) = wallet_core::signing::commit(&w.shares[1], &mut rng(2));
    let (_, c1) = wallet_core::signing::commit(&w.shares[1], &mut rng(3));
    let mut forged = approvals[0].body.clone();
    forged.participant = *w.shares[1].identifier();
    forged.commitments = vec![c0, c1];
    let coordinator_key = MemoryKeystore::new();
    let forged = Signed::sign(w.group.id(), forged, &coordinator_key).unwrap();
    let mut all = approvals.clone();
    all.push(forged.clone());
    assert!(build_packages(&w.group, &w.identities, &req, &all, Network::Regtest).is_err());
    // Sent to signer 0 anyway:
    let third = w.signer(2).approve(&req, NOW).unwrap();
    let mut packages = w.packages(&req, &[approvals[0].clone(), third]);
    packages.approvals[1] = forged.clone();
    let r = w.signer(0).sign(&req, &packages, NOW).unwrap_err();
    assert!(
        matches!(r, Refusal::BadApproval { ref reason, .. } if reason.contains("identity key")),
        "{r}"
    );
    // The same forged content claiming signer 2's key does not verify.
    let mut claimed = forged;
    claimed.signer = w.identities[w.shares[1].identifier()];
    packages.approvals[1] = claimed;
    let r = w.signer(0).sign(&req, &packages, NOW).unwrap_err();
    assert!(
        matches!(r, Refusal::BadApproval { ref reason, .. } if reason.contains("signature")),
        "{r}"
    );
}

#[test]
fn attack_14_requester_not_in_the_policy() {
    let mut w = world(25);
    let intruder = SoftwareIdentity::generate(&mut rng(77));
    let req = w.request_as("r-intruder", &psbt(&w.coins, w.outputs()), &intruder);
    match w.signer(0).approve(&req, NOW) {
        Err(Refusal::Policy(p)) => assert_eq!(p.rule, Rule::Requester, "{p}"),
        other => panic!("{other:?}"),
    }
    audited_refusal(&w, 0, "requester");
}

#[test]
fn attack_15_expired_request() {
    let mut w = world(26);
    let req = w.request("r-old", &w.psbt());
    let later = req.body.expires_at;
    assert!(matches!(
        w.signer(0).approve(&req, later),
        Err(Refusal::Expired { .. })
    ));
    // Also at signing time: approved in time, packages arrive too late.
    let approvals = w.approve(&req, &[1, 2]);
    let packages = w.packages(&req, &approvals);
    assert!(matches!(
        w.signer(1).sign(&req, &packages, later + 1),
        Err(Refusal::Expired { .. })
    ));
    // And one dated in the future.
    let mut future = req.body.clone();
    future.created_at = NOW + 3_600;
    future.expires_at = NOW + 7_200;
    let ks = MemoryKeystore::with_identity(w.requester.clone());
    let future = Signed::sign(w.group.id(), future, &ks).unwrap();
    assert!(matches!(
        w.signer(2).approve(&future, NOW),
        Err(Refusal::NotYetValid { .. })
    ));
}

#[test]
fn attack_16_a_coin_that_is_not_the_groups() {
    let mut w = world(27);
    let foreign = coin(&outside_address(80).script_pubkey(), 100_000, 80);
    let mut coins = w.coins.clone();
    coins.push(foreign);
    let mut outputs = w.outputs();
    outputs[1].value = Amount::from_sat(548_000);
    let req = w.request("r-foreign", &psbt(&coins, outputs));
    assert!(matches!(
        w.signer(1).approve(&req, NOW),
        Err(Refusal::Review(ReviewError::ForeignInput { input: 2, .. }))
    ));
}

#[test]
fn attack_17_a_malicious_signers_invalid_share_is_named() {
    let mut w = world(28);
    let req = w.request("r-cheat", &w.psbt());
    let approvals = w.approve(&req, &[0, 1, 2]);
    let packages = w.packages(&req, &approvals);
    let mut shares: Vec<Signed<WithdrawalShares>> = [0, 1, 2]
        .iter()
        .map(|&i| w.signer(i).sign(&req, &packages, NOW).unwrap())
        .collect();
    // Signer 3 (bob is 2, carol is 3) corrupts its share for input 1 and re-signs the document.
    let mut body = shares[2].body.clone();
    let honest_share = body.shares[1];
    body.shares[1] = body.shares[0];
    assert_ne!(body.shares[1], honest_share);
    shares[2] = Signed::sign(w.group.id(), body, &w.stores[2]).unwrap();
    match finalize_withdrawal(
        &w.group,
        &w.identities,
        &req,
        &packages,
        &shares,
        Network::Regtest,
    ) {
        Err(CoordinatorError::Aggregate {
            input: 1,
            source: AggregateError::InvalidShares { culprits },
        }) => {
            let names: Vec<_> = culprits
                .iter()
                .map(|c| c.label.as_ref().unwrap().as_str())
                .collect();
            assert_eq!(names, ["signer-3"], "only the cheater is blamed");
        }
        other => panic!("{other:?}"),
    }
    // Without the cheater's shares, the two honest signers still complete it?
    // No: their packages include the cheater's commitments, so a new round is
    // needed — the coordinator cannot finish with a bad share.
    let honest_only = &shares[..2];
    assert!(finalize_withdrawal(
        &w.group,
        &w.identities,
        &req,
        &packages,
        honest_only,
        Network::Regtest
    )
    .is_err());
}

#[test]
fn attack_18_destination_not_on_the_allowlist() {
    let mut w = world(29);
    let mut outputs = w.outputs();
    let thief = outside_address(66);
    outputs[0].script_pubkey = thief.script_pubkey();
    let req = w.request("r-thief", &psbt(&w.coins, outputs));
    match w.signer(2).approve(&req, NOW) {
        Err(Refusal::Policy(p)) => {
            assert_eq!(p.rule, Rule::DestinationAllowlist);
            assert!(p.message.contains(&thief.to_string()), "{p}");
        }
        other => panic!("{other:?}"),
    }
    audited_refusal(&w, 2, "destination-allowlist");
}

#[test]
fn attack_19_amount_limits() {
    let mut w = world(30);
    // Per transaction: 600,000 leaving > 500,000.
    let outputs = vec![
        TxOut {
            value: Amount::from_sat(600_000),
            script_pubkey: w.allowed.script_pubkey(),
        },
        TxOut {
            value: Amount::from_sat(98_000),
            script_pubkey: w.group.taproot().script_pubkey(),
        },
    ];
    let req = w.request("r-big", &psbt(&w.coins, outputs));
    assert!(
        matches!(w.signer(0).approve(&req, NOW), Err(Refusal::Policy(p)) if p.rule == Rule::PerTransactionLimit)
    );
    // Rolling window: two honest 250k withdrawals pass, the third (750k in 24 h) is refused.
    honest(&mut w, "r-a");
    let own = w.group.taproot().script_pubkey();
    w.coins = vec![coin(&own, 400_000, 101), coin(&own, 300_000, 102)];
    honest(&mut w, "r-b");
    w.coins = vec![coin(&own, 400_000, 103), coin(&own, 300_000, 104)];
    let req = w.request("r-c", &w.psbt());
    match w.signer(0).approve(&req, NOW) {
        Err(Refusal::Policy(p)) => assert_eq!(p.rule, Rule::RollingWindowLimit, "{p}"),
        other => panic!("{other:?}"),
    }
    // Signer 2 (bob) released nothing yet, so its own window allows it: each
    // signer enforces its own limits from its own log.
    assert!(w.signer(1).approve(&req, NOW).is_ok());
}

#[test]
fn every_audit_log_verifies_after_the_attacks() {
    let mut w = world(31);
    honest(&mut w, "r-ok");
    let req = w.request("r-ok", &w.psbt());
    let _ = w.signer(0).approve(&req, NOW);
    for (i, a) in w.audits.iter().enumerate() {
        let bytes = std::fs::read(a.path()).unwrap_or_default();
        let pk = wallet_core::keystore::Keystore::identity_public_key(&w.stores[i]).unwrap();
        wallet_core::audit::verify(&bytes, &pk).unwrap();
    }
}

fn message_request(
    w: &World,
    id: &str,
    message: &[u8],
) -> Signed<wallet_core::withdrawal::request::MessageRequest> {
    let body = wallet_core::withdrawal::request::MessageRequest {
        request_id: wallet_core::withdrawal::request::RequestId::new(id).unwrap(),
        requester: w.requester.public_key(),
        created_at: NOW - 10,
        expires_at: NOW + 600,
        memo: "a message to sign".into(),
        message: message.to_vec(),
    };
    Signed::sign(
        w.group.id(),
        body,
        &MemoryKeystore::with_identity(w.requester.clone()),
    )
    .unwrap()
}

#[test]
fn attack_20_blind_raw_message_signing_is_refused_by_default() {
    let mut w = world(32);
    // A 32-byte "message" that is really some transaction's sighash: exactly
    // what a blind-signing attack would ask for.
    let req = message_request(&w, "m-1", &[0x99; 32]);
    for i in 0..3 {
        match w.signer(i).approve_message(&req, NOW) {
            Err(Refusal::Policy(p)) => assert_eq!(p.rule, Rule::RawMessages, "{p}"),
            other => panic!("{other:?}"),
        }
        audited_refusal(&w, i, "raw-messages");
    }
}

#[test]
fn raw_messages_sign_when_the_policy_allows_them() {
    let mut w = world(33);
    let toml = policy_toml(&w.requester.public_key(), &w.allowed).replacen(
        "label = \"treasury-ops\"\n",
        "label = \"treasury-ops\"\nraw_messages = true\n",
        1,
    );
    w.install_policy(&toml);
    let message = b"attestation: reserves held on 2026-11-26";
    let req = message_request(&w, "m-2", message);
    let approvals: Vec<_> = [0, 1]
        .iter()
        .map(|&i| w.signer(i).approve_message(&req, NOW).unwrap())
        .collect();
    let packages = wallet_core::withdrawal::coordinator::build_message_packages(
        &w.group,
        &w.identities,
        &req,
        &approvals,
    )
    .unwrap();
    // A package for another message is refused.
    let mut other = packages.clone();
    other.packages[0].message = b"something else".to_vec();
    assert!(matches!(
        w.signer(0).sign_message(&req, &other, NOW),
        Err(Refusal::Package {
            source: SignError::MessageMismatch { .. },
            ..
        })
    ));
    let shares: Vec<_> = [0, 1]
        .iter()
        .map(|&i| w.signer(i).sign_message(&req, &packages, NOW).unwrap())
        .collect();
    let package = packages.packages[0].to_package().unwrap();
    let by_signer = shares
        .iter()
        .map(|s| (s.body.participant, s.body.shares[0]))
        .collect();
    let sig = wallet_core::signing::aggregate(&w.group, &package, &by_signer).unwrap();
    let out = w
        .group
        .taproot()
        .output_key()
        .to_x_only_public_key()
        .serialize();
    // The group signed the domain-separated digest of the message, not the
    // requester's bytes themselves.
    let sig_bytes: [u8; 64] = sig.serialize().unwrap().try_into().unwrap();
    wallet_core::taproot::verify_bip340(
        &out,
        wallet_core::withdrawal::request::raw_message_digest(message).as_bytes(),
        &sig_bytes,
    )
    .unwrap();
    assert!(wallet_core::taproot::verify_bip340(&out, message, &sig_bytes).is_err());
    // Replays of the message request are refused like withdrawals.
    assert!(matches!(
        w.signer(0).approve_message(&req, NOW),
        Err(Refusal::Replayed(_))
    ));
}

/// An operator's "no" stands: the same request sent to the daemon again
/// (a replayed mailbox event, a restart) is refused, neither held for a
/// person nor approved alone.
#[test]
fn a_declined_request_is_not_put_to_a_person_again() {
    let mut w = world(91);
    let req = w.request("wd-declined", &w.psbt());
    let declined = w.signer(0).decline(&req, "not on today's list", NOW);
    assert_eq!(declined.kind(), wallet_core::RefusalKind::Declined);
    for auto in [false, true] {
        let again = w.signer(0).approve_if(&req, NOW, |_, _| auto);
        assert!(matches!(again, Err(Refusal::Replayed(_))), "{again:?}");
    }
    // Another signer that did not decline still decides for itself.
    assert!(w.signer(1).approve_if(&req, NOW, |_, _| true).is_ok());
}
