//! A whole 2-of-3 withdrawal (one input, two outputs) through wallet-core —
//! request verification, PSBT review, policy, approvals with commitments,
//! packages, checked shares, audit entries, aggregation and finalization —
//! against raw frost signing of the same sighash, in one run.
//!
//! Audit logs are fsynced on every entry; they live in a temporary
//! directory (`/dev/shm` when present, else the system temp dir).

use std::collections::BTreeMap;
use std::path::PathBuf;

use bitcoin::{Amount, Network, TxOut};
use criterion::{criterion_group, criterion_main, Criterion};
use rand::rngs::StdRng;
use rand::SeedableRng;
use wallet_core::audit::{AuditEvent, AuditLog, AuditRecord};
use wallet_core::frost_core::Identifier;
use wallet_core::identity::{IdentityPublicKey, SoftwareIdentity};
use wallet_core::keygen::{self, Dealt, Identifiers};
use wallet_core::keystore::{self, Keystore, MemoryKeystore};
use wallet_core::policy::Policy;
use wallet_core::withdrawal::coordinator::{build_packages, finalize_withdrawal};
use wallet_core::withdrawal::request::{RequestId, Signed, WithdrawalRequest};
use wallet_core::withdrawal::signer::Signer;
use wallet_core::{Label, Secp256k1Tr};

const NOW: u64 = 1_790_000_000;

fn address(tag: u8) -> bitcoin::Address {
    use bitcoin::secp256k1::{Keypair, Secp256k1, SecretKey};
    let secp = Secp256k1::new();
    let kp = Keypair::from_secret_key(&secp, &SecretKey::from_slice(&[tag; 32]).unwrap());
    bitcoin::Address::p2tr(&secp, kp.x_only_public_key().0, None, Network::Regtest)
}

fn psbt(d: &Dealt<Secp256k1Tr>, dest: &bitcoin::Address, n: u32) -> bitcoin::psbt::Psbt {
    use bitcoin::{absolute, transaction, OutPoint, Sequence, Transaction, TxIn, Witness};
    let own = d.group.taproot().script_pubkey();
    let prev = TxOut {
        value: Amount::from_sat(500_000),
        script_pubkey: own.clone(),
    };
    let tx = Transaction {
        version: transaction::Version::TWO,
        lock_time: absolute::LockTime::ZERO,
        input: vec![TxIn {
            previous_output: OutPoint {
                txid: bitcoin::hashes::Hash::from_byte_array([7; 32]),
                vout: n,
            },
            script_sig: bitcoin::ScriptBuf::new(),
            sequence: Sequence::ENABLE_RBF_NO_LOCKTIME,
            witness: Witness::new(),
        }],
        output: vec![
            TxOut {
                value: Amount::from_sat(200_000),
                script_pubkey: dest.script_pubkey(),
            },
            TxOut {
                value: Amount::from_sat(299_000),
                script_pubkey: own,
            },
        ],
    };
    let mut p = bitcoin::psbt::Psbt::from_unsigned_tx(tx).unwrap();
    p.inputs[0].witness_utxo = Some(prev);
    p
}

fn tmpdir() -> PathBuf {
    let shm = PathBuf::from("/dev/shm");
    let base = if shm.is_dir() {
        shm
    } else {
        std::env::temp_dir()
    };
    let dir = base.join(format!("kura-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn bench(c: &mut Criterion) {
    let labels: Vec<_> = ["alice", "bob", "carol"]
        .iter()
        .map(|l| Label::new(*l).unwrap())
        .collect();
    let d = keygen::dealer::<Secp256k1Tr, _>(
        2,
        &labels,
        Identifiers::Default,
        &mut StdRng::seed_from_u64(1),
    )
    .unwrap();
    let identity = |i: u64| SoftwareIdentity::generate(&mut StdRng::seed_from_u64(100 + i));
    let identities: BTreeMap<Identifier<Secp256k1Tr>, IdentityPublicKey> = d
        .shares
        .iter()
        .zip(0..)
        .map(|(s, i)| (*s.identifier(), identity(i).public_key()))
        .collect();
    let requester = SoftwareIdentity::generate(&mut StdRng::seed_from_u64(2));
    let requester_ks = MemoryKeystore::with_identity(requester.clone());
    let dest = address(9);
    let policy = Policy::from_toml(&format!(
        "version = 1\nnetwork = \"regtest\"\n[[requester]]\nlabel = \"ops\"\nkey = \"{}\"\n[[destination]]\nlabel = \"x\"\naddress = \"{dest}\"\n[limits]\nper_transaction_sat = 100_000_000_000\nrolling_window_hours = 24\nrolling_window_sat = 2_000_000_000_000_000\nmax_fee_sat = 50_000\nmax_fee_rate_sat_per_vb = 200\n",
        requester.public_key()
    ))
    .unwrap();
    let dir = tmpdir();
    // Each signer is built once, as a service holds it, with `prior`
    // entries already in its log (other requests seen, approved, released
    // within the rolling window), written through the log's own append.
    let signers = |tag: &str, prior: u64| -> Vec<Signer> {
        (0..3u64)
            .map(|i| {
                let ks = MemoryKeystore::with_identity(identity(i));
                let share = &d.shares[i as usize];
                keystore::put_share(&ks, share).unwrap();
                keystore::pin_policy(&ks, policy.digest()).unwrap();
                let mut audit = AuditLog::open(
                    &dir.join(format!("audit-{tag}-{i}.jsonl")),
                    &ks.identity_public_key().unwrap(),
                )
                .unwrap();
                for k in 0..prior {
                    let id = RequestId::new(format!("old-{}", k / 3)).unwrap();
                    let event = match k % 3 {
                        0 => AuditEvent::RequestSeen,
                        1 => AuditEvent::Approved,
                        _ => AuditEvent::ShareReleased,
                    };
                    let mut record = AuditRecord::new(event)
                        .with_request_id(&id)
                        .with_requester(requester.public_key().to_string())
                        .with_session(wallet_core::keystore::SessionId::random());
                    if k % 3 == 2 {
                        record = record.with_amount_sat(1_000).with_fee_sat(10);
                    }
                    audit.append(&ks, NOW - 3600, record).unwrap();
                }
                Signer::new(
                    d.group.clone(),
                    identities.clone(),
                    share.clone(),
                    std::sync::Arc::new(ks),
                    policy.clone(),
                    audit,
                )
                .unwrap()
            })
            .collect()
    };
    let mut n = 0u32;
    let mut withdraw = |signers: &mut [Signer]| {
        n += 1;
        let body = WithdrawalRequest {
            request_id: RequestId::new(format!("bench-{n}")).unwrap(),
            requester: requester.public_key(),
            created_at: NOW,
            expires_at: NOW + 3600,
            memo: String::new(),
            psbt: psbt(&d, &dest, n).to_string(),
        };
        let req = Signed::sign(d.group.id(), body, &requester_ks).unwrap();
        let mut approvals = Vec::new();
        for i in [0usize, 2] {
            approvals.push(signers[i].approve(&req, NOW).unwrap());
        }
        let packages =
            build_packages(&d.group, &identities, &req, &approvals, Network::Regtest).unwrap();
        let mut shares = Vec::new();
        for i in [0usize, 2] {
            shares.push(signers[i].sign(&req, &packages, NOW).unwrap());
        }
        finalize_withdrawal(
            &d.group,
            &identities,
            &req,
            &packages,
            &shares,
            Network::Regtest,
        )
        .unwrap();
    };

    let mut g = c.benchmark_group("withdrawal-2-of-3-secp256k1-tr");
    g.sample_size(30);
    let mut fresh = signers("fresh", 0);
    g.bench_function("kura-wallet", |b| b.iter(|| withdraw(&mut fresh)));
    // The same with long logs behind every signer: the per-request
    // lookups (replay, rolling window, stale approvals) are indexed, so
    // this should cost what the fresh run costs.
    // `cargo test --all-targets` runs each benchmark once in a debug build:
    // a short log there, the long one when measuring.
    let measuring = std::env::args().any(|a| a == "--bench");
    let prior: u64 = std::env::var("KURA_BENCH_AUDIT_ENTRIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if measuring { 100_000 } else { 30 });
    let mut long = signers("long", prior);
    g.bench_function(format!("kura-wallet-{prior}-entry-logs"), |b| {
        b.iter(|| withdraw(&mut long))
    });
    // The lookups a decision makes, on the long log: through the indexes,
    // and by scanning every entry as signers did before the indexes.
    let history = long[0].audit().history();
    let who = requester.public_key().to_string();
    let id = format!("old-{}", prior / 6);
    g.bench_function(format!("lookups-indexed-{prior}-entries"), |b| {
        b.iter(|| {
            let about = history.about(&who, &id).count();
            let window = history.amount_released_since(NOW - 86_400)
                + history.fee_released_since(NOW - 86_400);
            let stale = history.open_approvals_before(NOW - 86_400 * 8).count();
            (about, window, stale)
        })
    });
    g.bench_function(format!("lookups-scanned-{prior}-entries"), |b| {
        b.iter(|| {
            let entries = history.entries();
            let about = entries
                .iter()
                .filter(|e| {
                    e.record.request_id.as_deref() == Some(id.as_str())
                        && e.record.requester.as_deref() == Some(who.as_str())
                })
                .count();
            let released = |f: fn(&AuditRecord) -> Option<u64>| {
                entries
                    .iter()
                    .filter(|e| {
                        e.time >= NOW - 86_400
                            && matches!(e.record.event, AuditEvent::ShareReleased)
                    })
                    .filter_map(|e| f(&e.record))
                    .fold(0u64, u64::saturating_add)
            };
            let window = released(|r| r.amount_sat) + released(|r| r.fee_sat);
            let stale = entries
                .iter()
                .filter(|e| {
                    e.time < NOW - 86_400 * 8 && matches!(e.record.event, AuditEvent::Approved)
                })
                .count();
            (about, window, stale)
        })
    });
    // What a process that starts on such a log pays once: reading and
    // verifying every entry (one signature each).
    let owner = identity(0).public_key();
    let path = dir.join("audit-long-0.jsonl");
    g.sample_size(10);
    g.bench_function(format!("open-verify-{prior}-entry-log"), |b| {
        b.iter(|| AuditLog::open(&path, &owner).unwrap())
    });
    g.sample_size(30);
    let sighash = wallet_core::withdrawal::review::review(
        &psbt(&d, &dest, 0),
        &d.group.xpub(),
        Network::Regtest,
    )
    .unwrap()
    .inputs[0]
        .sighash;
    let mut rng = StdRng::seed_from_u64(3);
    g.bench_function("raw-frost-same-sighash", |b| {
        b.iter(|| {
            let kps = [d.shares[0].key_package(), d.shares[2].key_package()];
            let mut nonces = BTreeMap::new();
            let mut commitments = BTreeMap::new();
            for kp in kps {
                let (nn, cc) = frost_secp256k1_tr::round1::commit(kp.signing_share(), &mut rng);
                nonces.insert(*kp.identifier(), nn);
                commitments.insert(*kp.identifier(), cc);
            }
            let package = frost_secp256k1_tr::SigningPackage::new(commitments, sighash.as_ref());
            let mut shares = BTreeMap::new();
            for kp in kps {
                let s = frost_secp256k1_tr::round2::sign_with_tweak(
                    &package,
                    &nonces[kp.identifier()],
                    kp,
                    None,
                )
                .unwrap();
                shares.insert(*kp.identifier(), s);
            }
            frost_secp256k1_tr::aggregate_with_tweak(
                &package,
                &shares,
                d.group.public_key_package(),
                None,
            )
            .unwrap();
        })
    });
    g.finish();
    let _ = std::fs::remove_dir_all(&dir);

    // The identity layer's unit costs, to explain the wallet-level figure.
    let id = SoftwareIdentity::generate(&mut StdRng::seed_from_u64(4));
    let msg = b"kura/v1/withdrawal-approval\0{canonical json of an approval}";
    let sig = id.sign(msg);
    let pk = id.public_key();
    let mut g = c.benchmark_group("identity-p256");
    g.bench_function("sign", |b| b.iter(|| id.sign(msg)));
    g.bench_function("verify", |b| b.iter(|| pk.verify(msg, &sig).unwrap()));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
