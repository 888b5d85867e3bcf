//! `kura dkg` as files: a 3-of-5 ceremony; a swapped card, forged round-1
//! and round-2 messages and an inconsistent broadcast, each refused; a
//! `dkg finish` killed at every step and rerun.

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

/// The ceremony fingerprint the convener announces (computed from the real cards).
fn announced(dir: &std::path::Path) -> String {
    let mut a = args(&["--json", "fingerprint", "-t", "3", "--ceremony", CEREMONY]);
    for n in NAMES {
        a.push("--card".into());
        a.push(format!("{n}/identity.json"));
    }
    let v: serde_json::Value = serde_json::from_str(ok(dir, a).trim()).unwrap();
    v["data"]["ceremony"].as_str().unwrap().to_owned()
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
    let fp = announced(dir);
    for n in NAMES {
        let mut a = args(&["dkg", "round1"]);
        a.extend(common(n));
        a.extend(args(&[
            "--fingerprint",
            &fp,
            "--out",
            &format!("r1-{n}.json"),
        ]));
        ok(dir, a);
    }
}

fn round2_all(dir: &std::path::Path) {
    for n in NAMES {
        let mut a = args(&["dkg", "round2"]);
        a.extend(common(n));
        a.extend(args(&["--out-dir", "sent"]));
        a.extend(round1_files());
        ok(dir, a);
    }
}

fn finish_args(n: &str) -> Vec<String> {
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
    a
}

fn round1_files() -> Vec<String> {
    NAMES.iter().map(|n| format!("r1-{n}.json")).collect()
}

#[test]
fn a_3_of_5_dkg_as_files_gives_everyone_the_same_group() {
    let tmp = setup();
    let dir = tmp.path();
    round2_all(dir);
    let mut groups = Vec::new();
    let mut fingerprints = Vec::new();
    for n in NAMES {
        let out = ok(dir, finish_args(n));
        let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        groups.push(v["data"]["group"].as_str().unwrap().to_owned());
        fingerprints.push(v["data"]["fingerprint"].as_str().unwrap().to_owned());
    }
    assert!(groups.windows(2).all(|w| w[0] == w[1]), "{groups:?}");
    assert!(
        fingerprints.windows(2).all(|w| w[0] == w[1]),
        "{fingerprints:?}"
    );
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
    a.extend(args(&[
        "--fingerprint",
        &announced(dir),
        "--out",
        "r1-ben-other.json",
    ]));
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

fn run(dir: &std::path::Path, a: &[String]) -> (i32, String, String) {
    kura(dir, a)
}

#[test]
fn a_card_swapped_in_transit_is_refused_before_round_one() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    for n in NAMES.iter().chain(["mallory"].iter()) {
        std::fs::write(dir.join(format!("{n}.pass")), format!("pass {n}\n")).unwrap();
    }
    for n in NAMES {
        ok(
            dir,
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
    }
    let fp = announced(dir);
    // The courier hands ann a look-alike card for ben: label "ben", its own key.
    ok(
        dir,
        args(&[
            "signer",
            "init",
            "--home",
            "mallory",
            "--label",
            "ben",
            "--software",
            "--passphrase-file",
            "mallory.pass",
        ]),
    );
    let mut a = args(&["dkg", "round1"]);
    let mut c = common("ann");
    let i = c.iter().position(|x| x == "ben/identity.json").unwrap();
    c[i] = "mallory/identity.json".into();
    a.extend(c);
    a.extend(args(&["--fingerprint", &fp, "--out", "r1-ann.json"]));
    let (code, _, err) = run(dir, &a);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("fingerprint mismatch"), "{err}");
    assert!(
        !dir.join("r1-ann.json").exists(),
        "nothing is written or sealed"
    );
    // Without --fingerprint (and no terminal), round 1 does not run either.
    let mut a = args(&["dkg", "round1"]);
    a.extend(common("ann"));
    a.extend(args(&["--out", "r1-ann.json"]));
    let (code, _, err) = run(dir, &a);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--fingerprint"), "{err}");
}

#[test]
fn a_forged_round1_message_is_refused_naming_the_claimed_sender() {
    let tmp = setup();
    let dir = tmp.path();
    // A relay replaces ben's broadcast: its own round-1 (from a home
    // labelled ben, in a ceremony with its card), re-addressed to this
    // ceremony's id.
    std::fs::write(dir.join("mallory.pass"), "pass mallory\n").unwrap();
    ok(
        dir,
        args(&[
            "signer",
            "init",
            "--home",
            "mallory",
            "--label",
            "ben",
            "--software",
            "--passphrase-file",
            "mallory.pass",
        ]),
    );
    let mut cards = args(&["-t", "3", "--ceremony", CEREMONY]);
    for n in NAMES {
        cards.push("--card".into());
        cards.push(if n == "ben" {
            "mallory/identity.json".into()
        } else {
            format!("{n}/identity.json")
        });
    }
    let mut fa = args(&["--json", "fingerprint"]);
    fa.extend(cards.clone());
    let v: serde_json::Value = serde_json::from_str(ok(dir, fa).trim()).unwrap();
    let mfp = v["data"]["ceremony"].as_str().unwrap().to_owned();
    let mut a = args(&[
        "dkg",
        "round1",
        "--home",
        "mallory",
        "--passphrase-file",
        "mallory.pass",
        "--fingerprint",
        &mfp,
        "--out",
        "r1-forged.json",
    ]);
    a.extend(cards);
    ok(dir, a);
    let real: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("r1-ben.json")).unwrap()).unwrap();
    let mut forged: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("r1-forged.json")).unwrap()).unwrap();
    forged["group"] = real["group"].clone();
    std::fs::write(
        dir.join("r1-ben.json"),
        serde_json::to_vec(&forged).unwrap(),
    )
    .unwrap();
    let mut a = args(&["dkg", "round2"]);
    a.extend(common("ann"));
    a.extend(args(&["--out-dir", "sent"]));
    a.extend(round1_files());
    let (code, _, err) = run(dir, &a);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("claiming to come from ben"), "{err}");
    assert!(err.contains("ben is not to blame"), "{err}");
    assert!(!dir.join("sent").exists(), "nothing sealed");
    // Unsigned: the same refusal, naming ben.
    let mut unsigned = real.clone();
    unsigned["body"]
        .as_object_mut()
        .unwrap()
        .remove("signature");
    std::fs::write(
        dir.join("r1-ben.json"),
        serde_json::to_vec(&unsigned).unwrap(),
    )
    .unwrap();
    let (code, _, err) = run(dir, &a);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("claiming to come from ben"), "{err}");
}

#[test]
fn a_replaced_round2_message_is_refused_and_the_honest_sender_not_blamed() {
    let tmp = setup();
    let dir = tmp.path();
    round2_all(dir);
    // The relay puts cat's sealed share in ben's envelope.
    let mut m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("sent/round2-cat-to-ann.json")).unwrap())
            .unwrap();
    let ben: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("sent/round2-ben-to-ann.json")).unwrap())
            .unwrap();
    m["body"]["part"]["from"] = ben["body"]["part"]["from"].clone();
    std::fs::write(
        dir.join("sent/round2-ben-to-ann.json"),
        serde_json::to_vec(&m).unwrap(),
    )
    .unwrap();
    let (code, _, err) = run(dir, &finish_args("ann"));
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("from ben does not open"), "{err}");
    assert!(!err.contains("exclude"), "ben is not blamed: {err}");
    assert!(!dir.join("ann/group.json").exists());
}

#[test]
fn dkg_finish_killed_at_every_step_is_completed_by_a_rerun() {
    let tmp = setup();
    let dir = tmp.path();
    round2_all(dir);
    for step in ["ShareKept", "RosterWritten", "GroupSwitched"] {
        let out = Command::new(env!("CARGO_BIN_EXE_kura"))
            .current_dir(dir)
            .args(finish_args("ann"))
            .env("KURA_CRASH_AT", step)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{step}: the process was killed");
        assert_eq!(out.status.code(), None, "{step}: killed by a signal");
        // Either no group (the old state) or the whole new one.
        let has_group = dir.join("ann/group.json").exists();
        assert_eq!(has_group, step == "GroupSwitched", "{step}");
    }
    let out = ok(dir, finish_args("ann"));
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let ben = ok(dir, finish_args("ben"));
    let w: serde_json::Value = serde_json::from_str(ben.trim()).unwrap();
    assert_eq!(v["data"]["fingerprint"], w["data"]["fingerprint"]);
    // Once finished, the round-2 state is gone.
    let (code, _, err) = run(dir, &finish_args("ann"));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("already finished"), "{err}");
}

#[test]
fn cards_with_traversal_or_control_character_labels_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::write(dir.join("x.pass"), "pass x\n").unwrap();
    ok(
        dir,
        args(&[
            "signer",
            "init",
            "--home",
            "x",
            "--label",
            "x",
            "--software",
            "--passphrase-file",
            "x.pass",
        ]),
    );
    let card: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("x/identity.json")).unwrap()).unwrap();
    for bad in [
        "../../etc/passwd",
        "a/b",
        "bob\u{202e}",
        "bob\nmallory",
        "Bob",
    ] {
        let mut c = card.clone();
        c["label"] = serde_json::Value::String(bad.into());
        std::fs::write(dir.join("evil.json"), serde_json::to_vec(&c).unwrap()).unwrap();
        let (code, _, err) = run(dir, &args(&["fingerprint", "--card", "evil.json"]));
        assert_eq!(code, 2, "{bad:?}: {err}");
        assert!(err.contains("invalid participant label"), "{err}");
        assert!(
            !err.contains('\u{202e}') && !err.contains("\nmallory"),
            "escaped: {err}"
        );
        let (code, _, _) = run(
            dir,
            &args(&[
                "signer",
                "init",
                "--home",
                "y",
                "--label",
                bad,
                "--software",
                "--passphrase-file",
                "x.pass",
            ]),
        );
        assert_eq!(code, 2, "{bad:?}");
        assert!(!dir.join("y").exists(), "nothing created for {bad:?}");
    }
}

#[test]
fn round1_asks_for_the_fingerprint_at_a_terminal() {
    // `script` (util-linux) gives kura a pseudo-terminal: without
    // --fingerprint, round 1 shows the fingerprint of the cards it holds and
    // asks for the one the convener announced.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    for n in NAMES {
        std::fs::write(dir.join(format!("{n}.pass")), format!("pass {n}\n")).unwrap();
        ok(
            dir,
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
    }
    let fp = announced(dir);
    let kura = env!("CARGO_BIN_EXE_kura");
    let mut line = format!("{kura} dkg round1 --out r1-ann.json");
    for a in common("ann") {
        line.push(' ');
        line.push_str(&a);
    }
    let typed = |answer: &str| {
        let mut child = Command::new("script")
            .current_dir(dir)
            .args(["-qec", &line, "/dev/null"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("`script` (util-linux) is needed for this test");
        std::thread::sleep(std::time::Duration::from_millis(500));
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(format!("{answer}\n").as_bytes())
            .unwrap();
        String::from_utf8_lossy(&child.wait_with_output().unwrap().stdout).into_owned()
    };
    let wrong = typed("AAAA-BBBB-CCCC-DDDD-EEEE-FFFF-GGGG-HHHH");
    assert!(
        wrong.contains("type the fingerprint the convener announced"),
        "{wrong}"
    );
    assert!(wrong.contains("fingerprint mismatch"), "{wrong}");
    assert!(!dir.join("r1-ann.json").exists());
    let right = typed(&fp.to_lowercase());
    assert!(right.contains("fingerprint confirmed"), "{right}");
    assert!(dir.join("r1-ann.json").exists());
}

/// `kura coordinator relay` for the ceremony, on a free port: the process,
/// its URL and certificate pin.
fn relay(dir: &std::path::Path) -> (std::process::Child, String, String) {
    use std::io::BufRead;
    let mut a = args(&[
        "--json",
        "coordinator",
        "relay",
        "-t",
        "3",
        "--ceremony",
        CEREMONY,
        "--listen",
        "127.0.0.1:0",
    ]);
    for n in NAMES {
        a.push("--card".into());
        a.push(format!("{n}/identity.json"));
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_kura"))
        .current_dir(dir)
        .args(&a)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(line.trim()).unwrap();
    let url = format!("https://{}", v["listen"].as_str().unwrap());
    (child, url, v["certificate"].as_str().unwrap().to_owned())
}

fn run_args(n: &str, url: &str, pin: &str, fp: &str, timeout: &str) -> Vec<String> {
    let mut a = args(&["--json", "dkg", "run"]);
    a.extend(common(n));
    a.extend(args(&[
        "--fingerprint",
        fp,
        "--mailbox",
        url,
        "--mailbox-pin",
        pin,
        "--out-dir",
        &format!("done-{n}"),
        "--timeout",
        timeout,
    ]));
    a
}

#[test]
fn a_3_of_5_dkg_through_the_mailbox_and_a_stopped_run_started_again() {
    let tmp = homes();
    let dir = tmp.path();
    let fp = announced(dir);
    let (mut server, url, pin) = relay(dir);
    // Ann runs alone first: she sends round 1, waits 1 s for the others,
    // and stops, naming whose broadcasts are missing.
    let (code, _, err) = kura(dir, &run_args("ann", &url, &pin, &fp, "1"));
    assert_ne!(code, 0, "{err}");
    assert!(
        err.contains("no dkg-round1 message from") && err.contains("ben"),
        "{err}"
    );
    // Then everyone (Ann with the same command): one group.
    let children: Vec<_> = NAMES
        .iter()
        .map(|n| {
            Command::new(env!("CARGO_BIN_EXE_kura"))
                .current_dir(dir)
                .args(run_args(n, &url, &pin, &fp, "60"))
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut groups = Vec::new();
    for (n, child) in NAMES.iter().zip(children) {
        let out = child.wait_with_output().unwrap();
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        assert!(out.status.success(), "{n}: {stdout}\n{stderr}");
        let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
        groups.push((
            v["data"]["group"].as_str().unwrap().to_owned(),
            v["data"]["fingerprint"].as_str().unwrap().to_owned(),
        ));
    }
    assert!(groups.windows(2).all(|w| w[0] == w[1]), "{groups:?}");
    // Each keeps what it sent and received; what was sealed stays sealed.
    let work = std::fs::read_dir(dir.join("done-ann"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.is_dir())
        .unwrap();
    let sealed = std::fs::read_to_string(work.join("round2-ann-to-ben.json")).unwrap();
    assert!(sealed.contains("\"sealed\"") && !sealed.contains("signing_share"));
    assert!(work.join("round1-eve.json").exists());
    server.kill().unwrap();
    let _ = server.wait();
}
