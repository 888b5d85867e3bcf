//! `kura demo` run as a real process.

use std::process::Command;

fn kura() -> Command {
    Command::new(env!("CARGO_BIN_EXE_kura"))
}

#[test]
fn demo_withdraws_verifies_under_core_and_refuses_the_attack() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("demo");
    let run = kura()
        .args(["demo", "--json", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(v["type"], "demo");
    let d = &v["data"];
    assert_eq!(d["consensus_verified"], true);
    assert_eq!(d["attack_refused"].as_array().unwrap().len(), 2);
    for refusal in d["attack_refused"].as_array().unwrap() {
        assert!(
            refusal
                .as_str()
                .unwrap()
                .contains("differs from the message this signer computed"),
            "{refusal}"
        );
    }
    assert!(d["address"].as_str().unwrap().starts_with("bcrt1p"));
    // SoftHSM2 is installed by scripts/test: the signers are on tokens.
    assert!(
        d["keystores"].as_str().unwrap().contains("SoftHSM2"),
        "{}",
        d["keystores"]
    );
    let outputs = d["outputs"].as_array().unwrap();
    assert_eq!(outputs.len(), 2);
    assert_eq!(outputs[0]["amount_sat"], 300_000);
    assert_eq!(outputs[1]["change"], true);
    assert_eq!(d["fee_sat"], 1_400);

    // The finalized PSBT and raw transaction, and every round's file.
    let tx_hex = std::fs::read_to_string(out.join("withdrawal.tx")).unwrap();
    let tx: bitcoin::Transaction =
        bitcoin::consensus::encode::deserialize_hex(tx_hex.trim()).unwrap();
    assert_eq!(tx.compute_txid().to_string(), d["txid"].as_str().unwrap());
    assert_eq!(tx.input[0].witness.len(), 1);
    // Binary BIP174, as Bitcoin Core and Sparrow write .psbt files.
    let psbt =
        bitcoin::psbt::Psbt::deserialize(&std::fs::read(out.join("withdrawal.psbt")).unwrap())
            .unwrap();
    assert_eq!(psbt.extract_tx().unwrap(), tx);
    for f in [
        "group.json",
        "dkg/round1-bob.json",
        "dkg/round2-carol-to-alice.json",
        "withdrawal/request.json",
        "withdrawal/approval-alice.json",
        "withdrawal/packages.json",
        "withdrawal/shares-carol.json",
        "attack/packages-tampered.json",
        "signers/alice/audit.jsonl",
        "signers/alice/policy.toml",
        "softhsm/softhsm2.conf",
    ] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    let sealed = std::fs::read_to_string(out.join("dkg/round2-carol-to-alice.json")).unwrap();
    assert!(
        sealed.contains("\"sealed\"") && !sealed.contains("signing_share"),
        "{sealed}"
    );
    // The demo runs the CLI's protocol (wallet_core::ceremony): `kura
    // fingerprint` over the demo's card files gives the demo's ceremony,
    // and the demo's round-1 files authenticate under it.
    use wallet_core::ceremony::dkg::{self, Ceremony, CeremonyPlan, Round1Document};
    let plan: CeremonyPlan =
        serde_json::from_slice(&std::fs::read(out.join("dkg/ceremony.json")).unwrap()).unwrap();
    let c = Ceremony::<wallet_core::Secp256k1Tr>::from_plan(&plan).unwrap();
    let mut a: Vec<String> = ["--json", "fingerprint", "-t", "2", "--ceremony"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    a.push(hex::encode(&plan.nonce));
    for n in ["alice", "bob", "carol"] {
        a.push("--card".into());
        a.push(
            out.join(format!("signers/{n}/identity.json"))
                .display()
                .to_string(),
        );
    }
    let fp = kura().args(&a).output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&fp.stdout).unwrap();
    assert_eq!(v["data"]["ceremony"], c.fingerprint().to_string());
    let docs: Vec<Round1Document<wallet_core::Secp256k1Tr>> = ["alice", "bob", "carol"]
        .iter()
        .map(|n| {
            let b = std::fs::read(out.join(format!("dkg/round1-{n}.json"))).unwrap();
            wallet_core::format::decode_for_group(&b, c.id()).unwrap()
        })
        .collect();
    dkg::round1_set_digest(&c, &docs).unwrap();
    assert_eq!(
        std::fs::read(out.join("signers/alice/group.json")).unwrap(),
        std::fs::read(out.join("group.json")).unwrap()
    );

    // alice's audit log: approved, refused (the attack), share released.
    let audit = std::fs::read_to_string(out.join("signers/alice/audit.jsonl")).unwrap();
    let events: Vec<String> = audit
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["record"]["event"]["type"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(
        events,
        ["request-seen", "approved", "refused", "share-released"]
    );

    // A second run into the same directory is a usage error (exit 2) and
    // leaves the first run's files alone.
    let before = std::fs::read(out.join("group.json")).unwrap();
    let again = kura().args(["demo", "--out"]).arg(&out).output().unwrap();
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("not empty"));
    assert_eq!(std::fs::read(out.join("group.json")).unwrap(), before);
}
