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

    // The demo's folders are real homes that later commands continue.
    homes_continue_after_the_demo(&out, d);

    // A second run into the same directory is a usage error (exit 2) and
    // leaves the first run's files alone.
    let before = std::fs::read(out.join("group.json")).unwrap();
    let again = kura().args(["demo", "--out"]).arg(&out).output().unwrap();
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("not empty"));
    assert_eq!(std::fs::read(out.join("group.json")).unwrap(), before);
}

/// `kura` commands run on the demo's homes afterwards: audit show (UTC
/// times, and quiet when its reader goes away), audit verify unlocking the
/// token with the demo's throwaway PIN file, wallet address from the
/// home's own network.
fn homes_continue_after_the_demo(out: &std::path::Path, d: &serde_json::Value) {
    use std::os::unix::fs::PermissionsExt;
    let alice = out.join("signers/alice");
    for f in ["kura.json", "identity.json", "group.json", "roster.json"] {
        assert!(alice.join(f).is_file(), "{f} missing in alice's home");
    }
    assert!(out.join("requester/kura.json").is_file());
    assert_eq!(d["secrets"], out.join("secrets").display().to_string());
    for f in ["alice.pin", "bob.pin", "carol.pin", "requester.pass"] {
        let mode = std::fs::metadata(out.join("secrets").join(f))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{f}");
    }
    let conf = out.join("softhsm/softhsm2.conf");
    let run = |args: &[&str]| {
        kura()
            .env("SOFTHSM2_CONF", &conf)
            .args(args)
            .arg("--home")
            .arg(&alice)
            .output()
            .unwrap()
    };
    let show = run(&["audit", "show"]);
    let text = String::from_utf8_lossy(&show.stdout);
    assert!(
        show.status.success(),
        "{}",
        String::from_utf8_lossy(&show.stderr)
    );
    assert_eq!(
        text.lines()
            .filter(|l| l.ends_with(" UTC") || l.contains(" UTC  "))
            .count(),
        4,
        "{text}"
    );
    assert!(text.contains("share-released"), "{text}");
    let json = run(&["--json", "audit", "show"]);
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert!(
        v["data"][0]["time_utc"].as_str().unwrap().ends_with(" UTC"),
        "{v}"
    );
    assert!(v["data"][0]["time"].is_u64(), "{v}");
    // `kura audit show … | head -1` exits 0, quietly.
    let piped = std::process::Command::new("bash")
        .env("SOFTHSM2_CONF", &conf)
        .arg("-c")
        .arg(format!(
            "set -o pipefail; {} audit show --home {} | head -1",
            env!("CARGO_BIN_EXE_kura"),
            alice.display()
        ))
        .output()
        .unwrap();
    assert_eq!(
        piped.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&piped.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&piped.stdout).lines().count(), 1);
    assert!(
        piped.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&piped.stderr)
    );
    // And when the reader is gone before anything is written.
    let mut child = kura()
        .args(["audit", "show", "--home"])
        .arg(&alice)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let gone = child.wait_with_output().unwrap();
    assert_eq!(
        gone.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&gone.stderr)
    );
    // The keystore opens with the demo's PIN file: a real home.
    let pin = out.join("secrets/alice.pin");
    let verify = run(&[
        "--json",
        "audit",
        "verify",
        "--pin-file",
        pin.to_str().unwrap(),
    ]);
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&verify.stdout).unwrap();
    assert_eq!(v["data"]["entries"], 4, "{v}");
    // The home is on regtest: wallet address needs no --network.
    let addr = run(&["wallet", "address"]);
    assert_eq!(
        String::from_utf8_lossy(&addr.stdout).trim(),
        d["address"].as_str().unwrap()
    );
}

#[test]
fn demo_with_the_service_runs_its_dkg_through_the_mailbox_and_withdraws_over_https() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("demo");
    let run = kura()
        .args(["demo", "--service", "--json", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "stderr: {stderr}");
    // No round went through a file: the ceremony's plan is the only one.
    let dkg: Vec<String> = std::fs::read_dir(out.join("dkg"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(dkg, vec!["ceremony.json".to_owned()]);
    let v: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    let service = &v["data"]["service"];
    assert!(service.is_object(), "{v}");
    assert_eq!(v["data"]["consensus_verified"], true);
    // The group the mailbox DKG made signed on the service too.
    let group: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("group.json")).unwrap()).unwrap();
    assert_eq!(group["group"], v["data"]["group"]);
}
