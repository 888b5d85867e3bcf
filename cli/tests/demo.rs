//! `kura demo` run as a real process.

use std::process::Command;

fn kura() -> Command {
    Command::new(env!("CARGO_BIN_EXE_kura"))
}

#[test]
fn demo_signs_verifies_and_refuses_the_attack() {
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
    assert_eq!(d["libsecp256k1_verified"], true);
    assert_eq!(d["attack_refused"].as_array().unwrap().len(), 2);
    assert!(d["address_regtest"].as_str().unwrap().starts_with("bcrt1p"));
    assert_eq!(d["signature"].as_str().unwrap().len(), 128);

    // Every round left its file, and no file shows a secret in the clear.
    for f in [
        "group.json",
        "dkg/round1-bob.json",
        "dkg/round2-carol-to-alice.json",
        "signing/package.json",
        "signing/share-alice.json",
        "signing/signature.json",
        "attack/package-tampered.json",
    ] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    let sealed = std::fs::read_to_string(out.join("dkg/round2-carol-to-alice.json")).unwrap();
    assert!(
        sealed.contains("\"sealed\"") && !sealed.contains("signing_share"),
        "{sealed}"
    );

    // A second run into the same directory is a usage error (exit 2) and
    // leaves the first run's files alone.
    let before = std::fs::read(out.join("group.json")).unwrap();
    let again = kura().args(["demo", "--out"]).arg(&out).output().unwrap();
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("not empty"));
    assert_eq!(std::fs::read(out.join("group.json")).unwrap(), before);
}
