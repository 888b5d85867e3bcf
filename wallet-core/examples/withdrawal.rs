//! A 2-of-3 Taproot withdrawal with [`Signer`]: three custodians, each with
//! its own keystore, policy and audit log; a requester who signs the PSBT;
//! a coordinator (untrusted) that only moves documents. Then two requests
//! the signers refuse: a destination not on the allowlist, and a replay.
//!
//! ```sh
//! cargo run -p wallet-core --example withdrawal
//! ```
//!
//! The keystores here are [`MemoryKeystore`]s and the logs live in a
//! temporary directory; a real signer uses a `SoftwareKeystore` (or
//! `hsm-bridge`'s token keystore) and a log in its home.
#![allow(clippy::print_stdout, clippy::print_stderr)] // prints by design

use std::collections::BTreeMap;
use std::error::Error;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use rand_core::OsRng;
use wallet_core::audit::AuditEvent;
use wallet_core::bitcoin::address::NetworkUnchecked;
use wallet_core::bitcoin::{
    absolute, consensus, transaction, Address, Amount, Network, OutPoint, Psbt, Sequence,
    Transaction, TxIn, TxOut, Txid,
};
use wallet_core::frost_core::Identifier;
use wallet_core::identity::{IdentityPublicKey, SoftwareIdentity};
use wallet_core::keygen::{self, Identifiers};
use wallet_core::keystore::{self, Keystore};
use wallet_core::policy::Rule;
use wallet_core::{
    build_packages, finalize_withdrawal, AuditLog, Label, MemoryKeystore, Policy, PublicGroup,
    RefusalKind, RequestId, Secp256k1Tr, Signed, Signer, WithdrawalRequest,
};

const NETWORK: Network = Network::Regtest;

/// The exchange's deposit address, the one destination the policy allows.
const EXCHANGE: &str = "bcrt1pj86axd9ctu0sgv8yh6ph8vhlg6f0g8a8837em9qnsx4fzug6xtxs58v992";
/// An address nobody allowed.
const THIEF: &str = "bcrt1qw508d6qejxtdg4y5r3zarvary0c5xw7kygt080";

fn main() -> Result<(), Box<dyn Error>> {
    // --- Setup (once): the group, the keystores, the roster, the policies.

    // A dealt group for brevity; the `ceremony` example creates one by DKG.
    let labels = ["alice", "bob", "carol"]
        .map(Label::new)
        .into_iter()
        .collect::<Result<Vec<_>, _>>()?;
    let dealt = keygen::dealer::<Secp256k1Tr, _>(2, &labels, Identifiers::Default, &mut OsRng)?;
    let group = dealt.group;
    let own = group.taproot().address(NETWORK);
    println!("group {} (2-of-3), address {own}", group.id().short());

    // Each custodian's keystore holds its share and identity key; the roster
    // is every member's identity key, which every signer and the
    // coordinator check approvals and shares against.
    let keystores: Vec<Arc<MemoryKeystore>> =
        (0..3).map(|_| Arc::new(MemoryKeystore::new())).collect();
    let mut roster: BTreeMap<Identifier<Secp256k1Tr>, IdentityPublicKey> = BTreeMap::new();
    for (share, ks) in dealt.shares.iter().zip(&keystores) {
        roster.insert(*share.identifier(), ks.identity_public_key()?);
    }

    // The requester: an identity key the custodians list in their policies.
    let requester = SoftwareIdentity::generate(&mut OsRng);
    let exchange = regtest_address(EXCHANGE)?;
    let policy = Policy::from_toml(&format!(
        r#"version = 1
network = "regtest"

[[requester]]
label = "treasury-ops"
key = "{requester}"

[[destination]]
label = "exchange deposit"
address = "{exchange}"

[limits]
per_transaction_sat = 1_000_000
rolling_window_hours = 24
rolling_window_sat = 5_000_000
max_fee_sat = 10_000
max_fee_rate_sat_per_vb = 100
"#,
        requester = requester.public_key()
    ))?;
    println!("policy digest {}", policy.digest());

    // Each signer: share and pinned policy in its keystore (a policy whose
    // digest is not pinned is not in force), its own audit log, and a
    // Signer that checks the parts belong together.
    let dir = tempfile::tempdir()?;
    let mut signers = Vec::new();
    for (share, ks) in dealt.shares.iter().zip(&keystores) {
        keystore::put_share(ks, share)?;
        keystore::pin_policy(ks, policy.digest())?;
        let log = dir.path().join(format!("{}.audit.jsonl", share.label()));
        let audit = AuditLog::open(&log, &ks.identity_public_key()?)?;
        signers.push(Signer::new(
            group.clone(),
            roster.clone(),
            share.clone(),
            ks.clone(),
            policy.clone(),
            audit,
        )?);
    }

    // --- A withdrawal.

    // A coin of the group (here from a made-up funding transaction; a real
    // one comes from the chain), spent: 60,000 sat to the exchange, 38,000
    // back to the group, 2,000 fee.
    let coin = TxOut {
        value: Amount::from_sat(100_000),
        script_pubkey: own.script_pubkey(),
    };
    let funding: Txid =
        "b2ae3c1f6a9f2c1d0e4b7a8c9d0e1f2a3b4c5d6e7f8091a2b3c4d5e6f7081920".parse()?;
    let outpoint = OutPoint {
        txid: funding,
        vout: 0,
    };
    let psbt = spend(outpoint, &coin, &exchange, 60_000, &own, 38_000)?;

    // The requester signs the request: the PSBT, an id, a lifetime, a memo.
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let request = signed_request(&group, &requester, "wd-0001", &psbt, now)?;
    println!("\nrequest wd-0001 signed by treasury-ops\n");

    // Each custodian reviews: its own reading of the PSBT, its policy's verdict.
    println!("{}\n", signers[0].review(&request, now)?.render());

    // alice and carol approve: each checks everything again, draws nonces
    // (stored take-once in its keystore) and signs its approval.
    let approvals = vec![
        signers[0].approve(&request, now)?,
        signers[2].approve(&request, now)?,
    ];
    println!("approved by alice and carol");

    // The coordinator builds one signing package per input.
    let packages = build_packages(&group, &roster, &request, &approvals, NETWORK)?;

    // Each approver checks the packages against its own sighashes and
    // approvals, records the release, then returns its shares.
    let shares = vec![
        signers[0].sign(&request, &packages, now)?,
        signers[2].sign(&request, &packages, now)?,
    ];
    println!("shares released by alice and carol");

    // The coordinator aggregates (naming any cheater), verifies, finalizes.
    let (_signed_psbt, tx) =
        finalize_withdrawal(&group, &roster, &request, &packages, &shares, NETWORK)?;
    println!(
        "finalized: txid {}, {} vB\n  {}",
        tx.compute_txid(),
        tx.vsize(),
        consensus::encode::serialize_hex(&tx)
    );

    // --- Refusals.

    // The same coin to an address no policy lists: bob refuses, and says why.
    let thief = regtest_address(THIEF)?;
    let theft = spend(outpoint, &coin, &thief, 60_000, &own, 38_000)?;
    let theft = signed_request(&group, &requester, "wd-0002", &theft, now)?;
    match signers[1].approve(&theft, now) {
        Err(refusal) if refusal.kind() == RefusalKind::Policy(Rule::DestinationAllowlist) => {
            println!("\nbob refuses wd-0002 ({}): {refusal}", refusal.kind());
        }
        other => return Err(format!("wd-0002 should be refused, got {other:?}").into()),
    }

    // The first request again: a request id is honoured once.
    match signers[0].approve(&request, now) {
        Err(refusal) if refusal.kind() == RefusalKind::Replay => {
            println!(
                "alice refuses wd-0001 again ({}): {refusal}",
                refusal.kind()
            );
        }
        other => return Err(format!("a replay should be refused, got {other:?}").into()),
    }

    // --- Every decision is in the deciding signer's audit log.
    println!();
    for signer in &signers {
        let label = signer.group().culprit(signer.identifier());
        for entry in signer.audit().entries() {
            let what = match &entry.record.event {
                AuditEvent::Refused { rule, .. } => format!("refused ({rule})"),
                other => format!("{other:?}"),
            };
            let id = entry.record.request_id.as_deref().unwrap_or("-");
            println!("{label} audit #{}: {id} {what}", entry.seq);
        }
    }
    Ok(())
}

/// `text` as a regtest address (refused if it is another network's).
fn regtest_address(text: &str) -> Result<Address, Box<dyn Error>> {
    Ok(text
        .parse::<Address<NetworkUnchecked>>()?
        .require_network(NETWORK)?)
}

/// A PSBT spending `coin` at `outpoint`: `amount` to `to`, `change` back to
/// the group's address `own`. Every input carries its `witness_utxo`: the
/// signers compute their sighashes from it.
fn spend(
    outpoint: OutPoint,
    coin: &TxOut,
    to: &Address,
    amount: u64,
    own: &Address,
    change: u64,
) -> Result<Psbt, Box<dyn Error>> {
    let tx = Transaction {
        version: transaction::Version::TWO,
        lock_time: absolute::LockTime::ZERO,
        input: vec![TxIn {
            previous_output: outpoint,
            sequence: Sequence::ENABLE_RBF_NO_LOCKTIME,
            ..TxIn::default()
        }],
        output: vec![
            TxOut {
                value: Amount::from_sat(amount),
                script_pubkey: to.script_pubkey(),
            },
            TxOut {
                value: Amount::from_sat(change),
                script_pubkey: own.script_pubkey(),
            },
        ],
    };
    let mut psbt = Psbt::from_unsigned_tx(tx)?;
    for input in &mut psbt.inputs {
        input.witness_utxo = Some(coin.clone());
    }
    Ok(psbt)
}

/// The requester's signed request for `psbt`, valid for an hour.
fn signed_request(
    group: &PublicGroup<Secp256k1Tr>,
    requester: &SoftwareIdentity,
    id: &str,
    psbt: &Psbt,
    now: u64,
) -> Result<Signed<WithdrawalRequest>, Box<dyn Error>> {
    let body = WithdrawalRequest {
        request_id: RequestId::new(id)?,
        requester: requester.public_key(),
        created_at: now,
        expires_at: now + 3600,
        memo: "weekly rebalance to the exchange".into(),
        psbt: psbt.to_string(),
    };
    // Signed::sign takes a keystore; a requester holding only its identity
    // key wraps it in a MemoryKeystore.
    let keystore = MemoryKeystore::with_identity(requester.clone());
    Ok(Signed::sign(group.id(), body, &keystore)?)
}
