//! `kura dkg` as files: a 3-of-5 ceremony, and an inconsistent broadcast.

use std::process::Command;

const NAMES: [&str; 5] = ["ann", "ben", "cat", "dan", "eve"];
const CEREMONY: &str = "5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed";

fn kura(dir: &std::path::Path, args: &[String]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_kura"))
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

fn args(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn ok(dir: &std::path::Path, a: Vec<String>) -> String {
    let (code, out, err) = kura(dir, &a);
    assert_eq!(code, 0, "{a:?}\n{out}\n{err}");
    out
}

fn common(name: &str) -> Vec<String> {
    let mut a = args(&[
        "--home",
        name,
        "-t",
        "3",
        "--ceremony",
        CEREMONY,
        "--passphrase-file",
        &format!("{name}.pass"),
    ]);
    for n in NAMES {
        a.push("--card".into());
        a.push(format!("{n}/identity.json"));
    }
    a
}

fn setup() -> tempfile::TempDir {
    let tmp = homes();
    round1_all(tmp.path());
    tmp
}

fn homes() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    for n in NAMES {
        std::fs::write(tmp.path().join(format!("{n}.pass")), format!("pass {n}\n")).unwrap();
        ok(
            tmp.path(),
            args(&[
                "signer",
                "init",
                "--home",
                n,
                "--label",
                n,
                "--software",
                "--passphrase-file",
                &format!("{n}.pass"),
            ]),
        );
        std::fs::create_dir_all(tmp.path().join(format!("to-{n}"))).unwrap();
    }
    tmp
}

fn round1_all(dir: &std::path::Path) {
    for n in NAMES {
        let mut a = args(&["dkg", "round1"]);
        a.extend(common(n));
        a.extend(args(&["--out", &format!("r1-{n}.json")]));
        ok(dir, a);
    }
}

fn round1_files() -> Vec<String> {
    NAMES.iter().map(|n| format!("r1-{n}.json")).collect()
}

#[test]
fn a_3_of_5_dkg_as_files_gives_everyone_the_same_group() {
    let tmp = setup();
    let dir = tmp.path();
    for n in NAMES {
        let mut a = args(&["dkg", "round2"]);
        a.extend(common(n));
        a.extend(args(&["--out-dir", "sent"]));
        a.extend(round1_files());
        ok(dir, a);
    }
    let mut groups = Vec::new();
    for n in NAMES {
        let mut a = args(&["--json", "dkg", "finish"]);
        a.extend(common(n));
        a.extend(args(&["--out-dir", "done"]));
        for f in round1_files() {
            a.extend(["--round1".to_string(), f]);
        }
        for m in NAMES.iter().filter(|m| **m != n) {
            a.extend([
                "--round2".to_string(),
                format!("sent/round2-{m}-to-{n}.json"),
            ]);
        }
        let out = ok(dir, a);
        let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        groups.push(v["data"]["group"].as_str().unwrap().to_owned());
    }
    assert!(groups.windows(2).all(|w| w[0] == w[1]), "{groups:?}");
    let g: Vec<u8> = std::fs::read(dir.join("ann/group.json")).unwrap();
    assert_eq!(g, std::fs::read(dir.join("eve/group.json")).unwrap());
    // The sealed files never show a share in the clear.
    let sealed = std::fs::read_to_string(dir.join("sent/round2-ann-to-ben.json")).unwrap();
    assert!(sealed.contains("\"sealed\"") && !sealed.contains("signing_share"));
    // Round 2 cannot be run twice: its round-1 state was taken.
    let mut a = args(&["dkg", "round2"]);
    a.extend(common("ann"));
    a.extend(args(&["--out-dir", "again"]));
    a.extend(round1_files());
    let (code, _, err) = kura(dir, &a);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no round-1 state"), "{err}");
}

#[test]
fn an_inconsistent_round1_broadcast_is_detected() {
    let tmp = homes();
    let dir = tmp.path();
    // ben equivocates: a second, equally valid round-1 broadcast (made from a
    // copy of his home taken before round 1; his own keystore refuses a
    // second round 1) goes to cat only, the original to everyone else.
    copy_dir(&dir.join("ben"), &dir.join("ben-copy"));
    round1_all(dir);
    let mut a = args(&["dkg", "round1"]);
    let mut c = common("ben");
    c[1] = "ben-copy".into();
    a.extend(c);
    a.extend(args(&["--out", "r1-ben-other.json"]));
    ok(dir, a);
    for n in NAMES {
        let mut files = round1_files();
        if n == "cat" {
            files[1] = "r1-ben-other.json".into();
        }
        let mut a = args(&["dkg", "round2"]);
        a.extend(common(n));
        a.extend(args(&["--out-dir", "sent"]));
        a.extend(files);
        ok(dir, a);
    }
    // cat's finish: the messages sealed by ann, dan and eve were bound to a
    // different round-1 set than cat's, so they do not open.
    let mut a = args(&["dkg", "finish"]);
    a.extend(common("cat"));
    a.extend(args(&["--out-dir", "done"]));
    for (i, f) in round1_files().into_iter().enumerate() {
        a.extend([
            "--round1".to_string(),
            if i == 1 {
                "r1-ben-other.json".into()
            } else {
                f
            },
        ]);
    }
    for m in ["ann", "ben", "dan", "eve"] {
        a.extend([
            "--round2".to_string(),
            format!("sent/round2-{m}-to-cat.json"),
        ]);
    }
    let (code, _, err) = kura(dir, &a);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("inconsistent broadcast"), "{err}");
    assert!(
        !dir.join("cat/group.json").exists(),
        "no group may come out of an inconsistent ceremony"
    );
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let p = e.path();
        if p.is_dir() {
            copy_dir(&p, &to.join(e.file_name()));
        } else {
            std::fs::copy(&p, to.join(e.file_name())).unwrap();
        }
    }
}
