//! What a signer sees is all it signs. Each test feeds one of the ways a
//! signer could be shown less than it signs (the findings below) — a hostile
//! requester or coordinator, or outside wallets — and asserts the refusal or
//! the value shown.
//!
//! | finding | test |
//! |---|---|
//! | 1 timelocks and version invisible | `timelocks_and_versions_are_shown_and_refused_by_default`, `an_allowing_policy_signs_what_it_shows` |
//! | 2 terminal injection | `ansi_and_bidi_ids_are_refused_where_parsed`, `the_review_renders_outside_text_inert` |
//! | 3 finalize emits another transaction | `finalize_clears_a_preset_final_script_sig_and_emits_the_reviewed_txid` |
//! | 4 non_witness_utxo ignored | `a_contradicting_non_witness_utxo_is_refused` |
//! | 5 fees outside limits | `fees_count_in_the_rolling_window_and_its_fee_budget` |
//! | 6 raw message = sighash | `a_raw_message_equal_to_a_sighash_does_not_sign_the_transaction` |
//! | 7 unbounded input | `lifetimes_amounts_dust_and_memos_are_bounded` |
//! | 2 coordinator fields echoed raw | `coordinator_fields_are_echoed_inert` |

use wallet_core::withdrawal::request::RequestId;

use bitcoin::psbt::Psbt;
use bitcoin::{absolute, transaction, Amount, Network, ScriptBuf, Sequence, TxOut};
use kura_testkit::*;
use wallet_core::format;
use wallet_core::identity::IdentityPublicKey;
use wallet_core::keystore::MemoryKeystore;
use wallet_core::policy::{Policy, PolicyError, Rule};
use wallet_core::withdrawal::coordinator::build_packages;
use wallet_core::withdrawal::request::{MessageRequest, Signed, WithdrawalRequest};
use wallet_core::withdrawal::review::{review, ReviewError};
use wallet_core::withdrawal::signer::Refusal;

fn policy_toml(requester: &IdentityPublicKey, allowed: &bitcoin::Address, extra: &str) -> String {
    format!(
        r#"version = 1
network = "regtest"
[[requester]]
label = "treasury-ops"
key = "{requester}"
raw_messages = true
[[destination]]
label = "exchange deposit"
address = "{allowed}"
[limits]
per_transaction_sat = 500_000
rolling_window_hours = 24
rolling_window_sat = 2_000_000
max_fee_sat = 20_000
max_fee_rate_sat_per_vb = 100
rolling_window_fee_sat = 5_000
{extra}
"#
    )
}

/// Three signers with in-memory keystores, two coins (400k and 300k).
fn world(seed: u64) -> World {
    World::builder(seed, |requester, allowed| {
        policy_toml(requester, allowed, "")
    })
    .build()
}

/// Installs the policy with `extra` (pins it in every signer's keystore).
fn set_policy(w: &mut World, extra: &str) {
    let toml = policy_toml(&w.requester.public_key(), &w.allowed, extra);
    w.install_policy(&toml);
}

/// The rule under which signer 0 refuses `req`.
fn refused_rule(w: &mut World, req: &Signed<WithdrawalRequest>) -> Rule {
    match w.signer(0).review(req, NOW) {
        Err(Refusal::Policy(p)) => p.rule,
        other => panic!("expected a policy refusal, got {other:?}"),
    }
}

// ---- Finding 1 ------------------------------------------------------------------

#[test]
fn timelocks_and_versions_are_shown_and_refused_by_default() {
    let mut w = world(1);
    let xpub = w.group.xpub();
    let cases: Vec<(&str, Psbt, Rule, &str)> = vec![
        (
            "height",
            with_tx(w.psbt(), |tx| {
                tx.lock_time = absolute::LockTime::from_consensus(1_900_000)
            }),
            Rule::LockTime,
            "nLockTime 1900000: LOCKED until block height 1900000",
        ),
        (
            "time",
            with_tx(w.psbt(), |tx| {
                tx.lock_time = absolute::LockTime::from_consensus(4_000_000_000)
            }),
            Rule::LockTime,
            "LOCKED until 2096-10-02 07:06:40 UTC",
        ),
        (
            "relative",
            with_tx(w.psbt(), |tx| {
                tx.input[1].sequence = Sequence::from_height(60_000)
            }),
            Rule::RelativeLock,
            "RELATIVE LOCK: valid only once the coin has 60000 confirmations",
        ),
        (
            "v0",
            with_tx(w.psbt(), |tx| tx.version = transaction::Version(0)),
            Rule::TxVersion,
            "version 0 (UNUSUAL",
        ),
        (
            "v1",
            with_tx(w.psbt(), |tx| tx.version = transaction::Version::ONE),
            Rule::TxVersion,
            "version 1 (UNUSUAL",
        ),
        (
            "v3",
            with_tx(w.psbt(), |tx| tx.version = transaction::Version(3)),
            Rule::TxVersion,
            "version 3 (UNUSUAL",
        ),
    ];
    for (name, p, rule, shown) in cases {
        let text = review(&p, &xpub, Network::Regtest).unwrap().to_string();
        assert!(text.contains(shown), "{name}: {text}");
        let req = w.request(&format!("r-{name}"), &p);
        assert_eq!(refused_rule(&mut w, &req), rule, "{name}");
    }

    // Final sequences: shown (no RBF), and they turn nLockTime off — then a
    // far lock time is harmless and passes, and says so.
    let p = with_tx(w.psbt(), |tx| {
        tx.lock_time = absolute::LockTime::from_consensus(1_900_000);
        for i in &mut tx.input {
            i.sequence = Sequence::MAX;
        }
    });
    let req = w.request("r-final", &p);
    let reviewed = w.signer(0).review(&req, NOW).unwrap();
    let text = reviewed.render();
    assert!(text.contains("nSequence 0xffffffff: final"), "{text}");
    assert!(text.contains("not enforced"), "{text}");
    // The everyday transaction shows its defaults too.
    let text = review(&w.psbt(), &xpub, Network::Regtest)
        .unwrap()
        .to_string();
    assert!(text.contains("version 2\n"), "{text}");
    assert!(text.contains("nLockTime 0: none"), "{text}");
    assert!(
        text.contains("nSequence 0xfffffffd: replaceable (BIP125 RBF), no relative lock"),
        "{text}"
    );
}

#[test]
fn an_allowing_policy_signs_what_it_shows() {
    let mut w = world(2);
    set_policy(
        &mut w,
        "[transaction]\nversions = [1, 2]\nmax_lock_height = 2_000_000\nrelative_locks = true\n",
    );
    for (name, p) in [
        (
            "height",
            with_tx(w.psbt(), |tx| {
                tx.lock_time = absolute::LockTime::from_consensus(1_900_000)
            }),
        ),
        (
            "v1",
            with_tx(w.psbt(), |tx| tx.version = transaction::Version::ONE),
        ),
        (
            "relative",
            with_tx(w.psbt(), |tx| {
                tx.input[0].sequence = Sequence::from_height(10)
            }),
        ),
    ] {
        let req = w.request(name, &p);
        w.signer(1).review(&req, NOW).unwrap();
    }
    // Signed through, the lock and the sequences are part of what the
    // signature commits to: Bitcoin Core accepts the spend as reviewed.
    let p = with_tx(w.psbt(), |tx| {
        tx.lock_time = absolute::LockTime::from_consensus(1_900_000);
        tx.input[0].sequence = Sequence::from_height(10);
    });
    let (_, tx) = w.run(&w.request("signed", &p), &[0, 2]).unwrap();
    assert_eq!(tx.lock_time.to_consensus_u32(), 1_900_000);
    assert_eq!(tx.input[0].sequence, Sequence::from_height(10));
    consensus_verify(&tx, &w.spent()).unwrap();
    // A time lock is measured from the signer's clock.
    set_policy(&mut w, "[transaction]\nmax_lock_ahead_hours = 2\n");
    let soon = with_tx(w.psbt(), |tx| {
        tx.lock_time = absolute::LockTime::from_consensus((NOW + 3_600) as u32)
    });
    let req = w.request("soon", &soon);
    w.signer(1).review(&req, NOW).unwrap();
    let later = with_tx(w.psbt(), |tx| {
        tx.lock_time = absolute::LockTime::from_consensus((NOW + 3 * 3_600) as u32)
    });
    let req = w.request("later", &later);
    assert_eq!(refused_rule(&mut w, &req), Rule::LockTime);
    // Versions outside 1..=3 cannot even be configured.
    for bad in [
        "versions = [0]",
        "versions = []",
        "versions = [2, 2]",
        "max_lock_height = 500000000",
    ] {
        let toml = policy_toml(
            &w.requester.public_key(),
            &w.allowed,
            &format!("[transaction]\n{bad}\n"),
        );
        assert!(
            matches!(
                Policy::from_toml(&toml),
                Err(PolicyError::InvalidLimit { .. })
            ),
            "{bad}"
        );
    }
}

// ---- Finding 2 ------------------------------------------------------------------

#[test]
fn ansi_and_bidi_ids_are_refused_where_parsed() {
    let w = world(3);
    let p = w.psbt();
    for id in [
        "r-1\x1b[2K\x1b[1A  output 0: 0.001 BTC",
        "r\u{202e}1-r",
        "r\u{200b}1",
        "",
    ] {
        // A request id is a type: such an id cannot be made in memory, and
        // the refusal quotes it inert.
        let err = RequestId::new(id).unwrap_err().to_string();
        assert!(err.contains("request id"), "{err}");
        assert!(
            !err.chars().any(wallet_core::display::is_unsafe_char),
            "{err:?}"
        );
        // As a document: refused when parsed.
        let signed = w.request("r-placeholder", &p);
        let text = String::from_utf8(format::encode(w.group.id(), &signed).unwrap()).unwrap();
        let quoted = serde_json::to_string(id).unwrap();
        let bytes = text.replace("\"r-placeholder\"", &quoted).into_bytes();
        let err = format::decode_for_group::<Signed<WithdrawalRequest>>(&bytes, w.group.id())
            .unwrap_err()
            .to_string();
        assert!(err.contains("request id"), "{err}");
        assert!(
            !err.chars().any(wallet_core::display::is_unsafe_char),
            "{err:?}"
        );
    }
    // A policy label with a bidi override or a zero-width space is refused.
    // (TOML escapes, which the parser turns into the characters.)
    for label in ["ops\\u202E", "o\\u200Bps", "ops\\u001b[31m", "ops\\u2066"] {
        let toml =
            policy_toml(&w.requester.public_key(), &w.allowed, "").replace("treasury-ops", label);
        assert!(
            matches!(
                Policy::from_toml(&toml),
                Err(PolicyError::UnsafeLabel { .. })
            ),
            "{label:?}"
        );
    }
    // A participant label too.
    assert!(wallet_core::Label::new("signer\u{2066}-1").is_err());
}

#[test]
fn the_review_renders_outside_text_inert() {
    let mut w = world(4);
    let mut body = w.request_body("r-memo", &w.psbt());
    body.memo = "ok\x1b[2K\x1b[1A\routput 0: 0.0001 BTC \u{202e}evil".into();
    let req = w.sign_request(body);
    let reviewed = w.signer(0).review(&req, NOW).unwrap();
    let text = reviewed.render();
    assert!(!text.contains('\x1b') && !text.contains('\r') && !text.contains('\u{202e}'));
    assert!(text.contains("\\u{001b}[2K"), "{text}");
    // Who asked, when and until when, and the verdict.
    assert!(text.contains("from requester `treasury-ops`"), "{text}");
    assert!(text.contains("created 2026-09-21 14:12:20 UTC"), "{text}");
    assert!(text.contains("expires 2026-09-21 15:13:20 UTC"), "{text}");
    assert!(text.contains("verdict: allowed"), "{text}");
    assert!(
        text.contains("committed") || text.contains("commits to them"),
        "{text}"
    );
}

// ---- Finding 3 ------------------------------------------------------------------

#[test]
fn finalize_clears_a_preset_final_script_sig_and_emits_the_reviewed_txid() {
    let mut w = world(5);
    let mut p = w.psbt();
    let reviewed_txid = p.unsigned_tx.compute_txid();
    // The requester pre-sets finalizer fields and leaves leaf scripts and
    // proprietary data behind.
    p.inputs[0].final_script_sig = Some(ScriptBuf::from_bytes(vec![0x51]));
    p.inputs[1].final_script_witness = Some(bitcoin::Witness::from_slice(&[vec![1u8; 64]]));
    let leaf = ScriptBuf::from_bytes(vec![0x51]);
    let cb = bitcoin::taproot::ControlBlock::decode(&{
        let mut v = vec![0xc0];
        v.extend_from_slice(&w.group.taproot().internal_key().serialize());
        v
    })
    .unwrap();
    p.inputs[0]
        .tap_scripts
        .insert(cb, (leaf, bitcoin::taproot::LeafVersion::TapScript));
    let key = bitcoin::psbt::raw::ProprietaryKey {
        prefix: b"evil".to_vec(),
        subtype: 0,
        key: vec![],
    };
    p.inputs[1].proprietary.insert(key.clone(), vec![1, 2, 3]);
    p.outputs[0].proprietary.insert(key.clone(), vec![4]);
    p.proprietary.insert(key, vec![5]);
    let req = w.request("r-preset", &p);
    let (final_psbt, tx) = w.run(&req, &[0, 2]).unwrap();
    assert_eq!(tx.compute_txid(), reviewed_txid);
    assert!(tx.input.iter().all(|i| i.script_sig.is_empty()));
    consensus_verify(&tx, &w.spent()).unwrap();
    for input in &final_psbt.inputs {
        assert!(input.final_script_sig.is_none());
        assert!(input.tap_scripts.is_empty());
        assert!(input.proprietary.is_empty());
        assert!(input.witness_utxo.is_some());
        assert!(input.final_script_witness.is_some());
    }
    assert!(final_psbt.outputs[0].proprietary.is_empty());
    assert!(final_psbt.proprietary.is_empty());
}

// ---- Finding 4 ------------------------------------------------------------------

#[test]
fn a_contradicting_non_witness_utxo_is_refused() {
    let w = world(6);
    let keys = w.group.taproot();
    let xpub = w.group.xpub();
    let own = keys.script_pubkey();
    // world(6)'s first coin is coin(own, 400_000, 6): the same funding tx.
    let honest = funding_tx(&own, 400_000, 6);
    assert_eq!(honest.compute_txid(), w.coins[0].0.txid);

    let mut p = w.psbt();
    p.inputs[0].non_witness_utxo = Some(honest.clone());
    review(&p, &xpub, Network::Regtest).unwrap();

    // The full previous transaction says 400k, witness_utxo understates it.
    let mut understated = p.clone();
    understated.inputs[0].witness_utxo.as_mut().unwrap().value = Amount::from_sat(390_000);
    match review(&understated, &xpub, Network::Regtest) {
        Err(ReviewError::NonWitnessUtxo { input: 0, reason }) => {
            assert!(reason.contains("0.00400000 BTC"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    // A previous transaction that is not the one spent from.
    let mut wrong = p.clone();
    wrong.inputs[0].non_witness_utxo = Some(funding_tx(&own, 400_000, 99));
    assert!(matches!(
        review(&wrong, &xpub, Network::Regtest),
        Err(ReviewError::NonWitnessUtxo { input: 0, .. })
    ));
}

// ---- Finding 5 ------------------------------------------------------------------

#[test]
fn fees_count_in_the_rolling_window_and_its_fee_budget() {
    let mut w = world(7);
    // 100k + 3k fee: the audit records what left the wallet, fee included.
    let first = w.request("r-fee-1", &w.psbt_paying(100_000, 3_000));
    w.run(&first, &[0, 2]).unwrap();
    assert_eq!(w.audits[0].amount_released_since(0), 103_000);
    assert_eq!(w.audits[0].fee_released_since(0), 3_000);
    // Fresh coins for the second withdrawal (the first spent these).
    let own = w.group.taproot().script_pubkey();
    w.coins = vec![coin(&own, 400_000, 0x71), coin(&own, 300_000, 0x72)];
    // 3k more fee would make 6k in the window, over the 5k budget.
    let second = w.request("r-fee-2", &w.psbt_paying(100_000, 3_000));
    match w.signer(0).review(&second, NOW) {
        Err(Refusal::Policy(p)) => {
            assert_eq!(p.rule, Rule::RollingWindowFee, "{p}");
            assert!(p.message.contains("6000 sat"), "{p}");
        }
        other => panic!("{other:?}"),
    }
    // 2k fits.
    let req = w.request("r-fee-3", &w.psbt_paying(100_000, 2_000));
    w.signer(0).review(&req, NOW).unwrap();
}

// ---- Finding 6 ------------------------------------------------------------------

#[test]
fn a_raw_message_equal_to_a_sighash_does_not_sign_the_transaction() {
    let mut w = world(8);
    // The transaction the hostile requester wants spent, outside every limit.
    let total: u64 = w.coins.iter().map(|(_, o)| o.value.to_sat()).sum();
    let theft = psbt(
        &w.coins,
        vec![TxOut {
            value: Amount::from_sat(total - 1_000),
            script_pubkey: outside_address(66).script_pubkey(),
        }],
    );
    let sighashes = review(&theft, &w.group.xpub(), Network::Regtest)
        .unwrap()
        .sighashes();
    let body = MessageRequest {
        request_id: wallet_core::withdrawal::request::RequestId::new("m-theft").unwrap(),
        requester: w.requester.public_key(),
        created_at: NOW - 60,
        expires_at: NOW + 3600,
        memo: "attestation".into(),
        message: sighashes[0].as_bytes().to_vec(),
    };
    let req = Signed::sign(
        w.group.id(),
        body,
        &MemoryKeystore::with_identity(w.requester.clone()),
    )
    .unwrap();
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
    assert!(!libsecp_verify_tr(&w.group, sighashes[0].as_bytes(), &sig));
    // Put into the transaction, Bitcoin Core refuses it.
    let mut tx = theft.unsigned_tx.clone();
    let sig = bitcoin::taproot::Signature {
        signature: bitcoin::secp256k1::schnorr::Signature::from_slice(&sig.serialize().unwrap())
            .unwrap(),
        sighash_type: bitcoin::TapSighashType::Default,
    };
    tx.input[0].witness = bitcoin::Witness::p2tr_key_spend(&sig);
    tx.input[1].witness = bitcoin::Witness::p2tr_key_spend(&sig);
    let err = consensus_verify(&tx, &w.spent()).unwrap_err();
    assert_eq!(err.input, 0, "{err}");
}

// ---- Finding 7 ------------------------------------------------------------------

#[test]
fn lifetimes_amounts_dust_and_memos_are_bounded() {
    let mut w = world(9);
    // A request that never expires.
    let mut body = w.request_body("r-forever", &w.psbt());
    body.expires_at = u64::MAX;
    let req = w.sign_request(body);
    assert_eq!(refused_rule(&mut w, &req), Rule::RequestLifetime);
    // 25 h, over the default 24 h.
    let mut body = w.request_body("r-25h", &w.psbt());
    body.expires_at = body.created_at + 25 * 3600;
    let req = w.sign_request(body);
    assert_eq!(refused_rule(&mut w, &req), Rule::RequestLifetime);

    // An output above MAX_MONEY (and inputs claiming it).
    let big = Amount::MAX_MONEY + Amount::from_sat(1);
    let own = w.group.taproot().script_pubkey();
    let p = psbt(
        &[coin(&own, big.to_sat() + 1_000, 1)],
        vec![TxOut {
            value: big,
            script_pubkey: w.allowed.script_pubkey(),
        }],
    );
    assert!(matches!(
        review(&p, &w.group.xpub(), Network::Regtest),
        Err(ReviewError::AboveMaxMoney { .. })
    ));

    // Dust: 329 sat to a P2TR address.
    let total: u64 = w.coins.iter().map(|(_, o)| o.value.to_sat()).sum();
    let dust = psbt(
        &w.coins,
        vec![
            TxOut {
                value: Amount::from_sat(329),
                script_pubkey: w.allowed.script_pubkey(),
            },
            TxOut {
                value: Amount::from_sat(total - 329 - 2_000),
                script_pubkey: own.clone(),
            },
        ],
    );
    let req = w.request("r-dust", &dust);
    assert_eq!(refused_rule(&mut w, &req), Rule::Dust);
    // 330 is not dust.
    let p = w.psbt_paying(330, 2_000);
    let req = w.request("r-330", &p);
    w.signer(0).review(&req, NOW).unwrap();

    // A 50 MB memo never reaches review: refused when parsed.
    let mut body = w.request_body("r-memo", &w.psbt());
    body.memo = "x".repeat(wallet_core::display::MAX_MEMO_CHARS + 1);
    let signed = w.sign_request(body);
    let bytes = format::encode(w.group.id(), &signed).unwrap();
    let err = format::decode_for_group::<Signed<WithdrawalRequest>>(&bytes, w.group.id())
        .unwrap_err()
        .to_string();
    assert!(err.contains("memo has 1025 characters"), "{err}");
    assert!(matches!(
        w.signer(0).review(&signed, NOW),
        Err(Refusal::Text(_))
    ));
}

#[test]
fn coordinator_fields_are_echoed_inert() {
    let mut w = world(10);
    let req = w.request("r-coord", &w.psbt());
    let approvals: Vec<_> = [0, 1]
        .iter()
        .map(|&i| w.signer(i).approve(&req, NOW).unwrap())
        .collect();
    let mut packages =
        build_packages(&w.group, &w.identities, &req, &approvals, Network::Regtest).unwrap();
    // A request digest is a type: terminal escapes cannot be put into
    // one in memory, and in a file it is refused when parsed, the refusal
    // quoting it inert.
    packages.request_digest = wallet_core::digest::RequestDigest::from_bytes([9; 32]);
    let refusal = w.signer(0).sign(&req, &packages, NOW).unwrap_err();
    assert!(matches!(refusal, Refusal::WrongRequest { .. }), "{refusal}");
    let bytes = String::from_utf8(format::encode(w.group.id(), &packages).unwrap())
        .unwrap()
        .replace(&"09".repeat(32), "\\u001b[2J\\u001b[Hall good \u{202e}")
        .into_bytes();
    let err = format::decode_for_group::<wallet_core::withdrawal::request::WithdrawalPackages>(
        &bytes,
        w.group.id(),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("is not a digest"), "{err}");
    assert!(
        !err.chars().any(wallet_core::display::is_unsafe_char),
        "{err:?}"
    );
    // A document whose kind (or any field serde quotes) carries escapes.
    let doc = format!(
        "{{\"format\":\"kura\",\"version\":1,\"kind\":\"x\\u001b[31m\",\"suite\":\"secp256k1-tr\",\"group\":\"{}\",\"body\":{{}}}}",
        w.group.id()
    );
    let err = format::decode_for_group::<Signed<WithdrawalRequest>>(doc.as_bytes(), w.group.id())
        .unwrap_err()
        .to_string();
    assert!(err.contains("x\\u{001b}[31m"), "{err}");
    assert!(
        !err.chars().any(wallet_core::display::is_unsafe_char),
        "{err:?}"
    );
}

#[test]
fn oversized_documents_psbts_and_policies_are_refused_before_parsing() {
    let w = world(11);
    let big = vec![b' '; format::MAX_DOCUMENT_BYTES + 1];
    assert!(matches!(
        format::decode_for_group::<Signed<WithdrawalRequest>>(&big, w.group.id()),
        Err(format::FormatError::TooLarge { .. })
    ));
    // A request whose PSBT field is over the PSBT cap, inside a document
    // under the document cap.
    let mut body = w.request_body("r-big", &w.psbt());
    body.psbt = format!(
        "cHNidP8{}",
        "A".repeat(wallet_core::psbt::MAX_PSBT_BYTES / 3 * 4 + 8)
    );
    let err = wallet_core::withdrawal::review::parse_psbt(&body.psbt).unwrap_err();
    assert!(err.to_string().contains("byte limit"), "{err}");
    let text = format!(
        "{}{}",
        policy_toml(&w.requester.public_key(), &w.allowed, ""),
        "#".repeat(wallet_core::policy::MAX_POLICY_BYTES)
    );
    match Policy::from_toml(&text) {
        Err(PolicyError::Parse(m)) => assert!(m.contains("byte limit"), "{m}"),
        other => panic!("{other:?}"),
    }
}
