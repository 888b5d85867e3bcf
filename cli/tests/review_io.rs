//! The signer's review with the real `kura` binary: PSBT files as other
//! wallets write them, early refusal at `withdraw request`, ids and memos
//! that cannot rewrite the terminal, bounded input, and `coordinate finalize`
//! writing exactly the reviewed transaction, all or nothing.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::*;

/// A 2-of-3 group of software signers alice, bob, carol, a requester ops,
/// and `policy_extra` appended to every signer's policy. Returns the group's
/// address and the allowlisted exchange address.
impl Env {
    fn request(&self, psbt: &str, id: &str, out: &str, extra: &[&str]) -> Run {
        let mut args = vec![
            "withdraw",
            "request",
            "--home",
            "ops",
            "--group",
            "group/group.json",
            "--psbt",
            psbt,
            "--id",
            id,
            "--out",
            out,
        ];
        args.extend_from_slice(extra);
        self.kura_as("ops", &args)
    }
}

fn world(policy_extra: &str) -> (Env, String, String) {
    let mut env = Env::new();
    let (group, exchange) = env.setup_with(false, policy_extra);
    (env, group, exchange)
}

fn wrap(text: &str, width: usize) -> String {
    text.as_bytes()
        .chunks(width)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

fn unsafe_chars(s: &str) -> bool {
    s.chars()
        .any(|c| c != '\n' && wallet_core::display::is_unsafe_char(c))
}

#[test]
fn psbts_as_wallets_write_them_and_early_refusals() {
    let (env, group, exchange) = world("");
    let outputs = [(exchange.as_str(), 300_000), (group.as_str(), 698_600)];
    let (p, _) = psbt_with(&group, &outputs, 1, |_| {});
    let b64 = p.to_string();
    let binary = p.serialize();
    // Binary (Core, Sparrow), base64 wrapped at 76 (coreutils) and 64, hex.
    std::fs::write(env.p("binary.psbt"), &binary).unwrap();
    std::fs::write(env.p("wrapped76.psbt"), wrap(&b64, 76)).unwrap();
    std::fs::write(env.p("wrapped64.txt"), wrap(&b64, 64)).unwrap();
    std::fs::write(env.p("hex.txt"), hex::encode(&binary).to_uppercase()).unwrap();
    for (i, file) in ["binary.psbt", "wrapped76.psbt", "wrapped64.txt", "hex.txt"]
        .iter()
        .enumerate()
    {
        let out = format!("r{i}.json");
        env.request(file, &format!("w-form-{i}"), &out, &[]).ok();
        env.kura_as("alice", &["sign", "review", "--home", "alice", &out])
            .ok();
    }
    // And from standard input.
    let r = env.kura_stdin(
        &[
            "withdraw",
            "request",
            "--home",
            "ops",
            "--group",
            "group/group.json",
            "--psbt",
            "-",
            "--id",
            "w-stdin",
            "--out",
            "stdin.json",
            "--passphrase-file",
            "ops.pass",
        ],
        &binary,
    );
    r.ok();
    env.kura_as("bob", &["sign", "review", "--home", "bob", "stdin.json"])
        .ok();

    // Empty, truncated, version 2, not a PSBT: each named, exit 2, no file.
    std::fs::write(env.p("empty.psbt"), b"").unwrap();
    std::fs::write(env.p("cut.psbt"), &binary[..binary.len() / 2]).unwrap();
    let mut v2 = b"psbt\xff\x01\xfb\x04\x02\x00\x00\x00\x00".to_vec();
    v2.extend_from_slice(b"\x00\x00");
    std::fs::write(env.p("v2.psbt"), &v2).unwrap();
    std::fs::write(env.p("junk.psbt"), b"hello").unwrap();
    for (file, needle) in [
        ("empty.psbt", "the PSBT is empty"),
        ("cut.psbt", "truncated"),
        ("v2.psbt", "PSBT version 2 is not supported yet"),
        ("junk.psbt", "not a PSBT"),
    ] {
        let r = env.request(file, "w-bad-form", "bad.json", &[]).code(2);
        assert!(r.stderr.contains(needle), "{file}: {}", r.stderr);
        assert!(!env.p("bad.json").exists());
    }

    // A 100 MB PSBT is refused within the cap: the process never holds it
    // (run under a 300 MB address-space limit).
    let big = env.p("big.psbt");
    {
        let f = std::fs::File::create(&big).unwrap();
        f.set_len(100 * 1024 * 1024).unwrap();
    }
    let run = Command::new("sh")
        .current_dir(env.dir.path())
        .arg("-c")
        .arg(format!(
            "ulimit -v 300000; exec '{}' withdraw request --home ops --group group/group.json --psbt big.psbt --id w-big --out big.json --passphrase-file ops.pass",
            env!("CARGO_BIN_EXE_kura")
        ))
        .output()
        .unwrap();
    let r = Env::finish_output(run).code(2);
    assert!(r.stderr.contains("larger than the"), "{}", r.stderr);

    // Early warning: a PSBT every signer refuses (a coin that is not the
    // group's) is refused at request time, exit 1, unless --unchecked.
    let (foreign, _) = psbt_with(&outside_address(0x44).to_string(), &outputs, 2, |_| {});
    std::fs::write(env.p("foreign.psbt"), foreign.serialize()).unwrap();
    let r = env
        .request("foreign.psbt", "w-foreign", "foreign.json", &[])
        .code(1);
    assert!(
        r.stderr.contains("every signer will refuse") && r.stderr.contains("not this group's"),
        "{}",
        r.stderr
    );
    assert!(!env.p("foreign.json").exists());
    let (no_utxo, _) = psbt_with(&group, &outputs, 3, |_| {});
    let mut no_utxo = no_utxo;
    no_utxo.inputs[0].witness_utxo = None;
    std::fs::write(env.p("noutxo.psbt"), no_utxo.serialize()).unwrap();
    let r = env
        .request("noutxo.psbt", "w-noutxo", "noutxo.json", &[])
        .code(1);
    assert!(r.stderr.contains("witness_utxo"), "{}", r.stderr);
    // Version 0 is refused by every policy (versions are 1, 2 or 3).
    let (v0, _) = psbt_with(&group, &outputs, 6, |tx| {
        tx.version = bitcoin::transaction::Version(0)
    });
    std::fs::write(env.p("v0.psbt"), v0.serialize()).unwrap();
    let r = env.request("v0.psbt", "w-v0", "v0.json", &[]).code(1);
    assert!(r.stderr.contains("tx-version"), "{}", r.stderr);
    let r = env
        .request(
            "foreign.psbt",
            "w-foreign",
            "foreign.json",
            &["--unchecked"],
        )
        .ok();
    assert!(r.stderr.contains("warning"), "{}", r.stderr);

    // Ids and lifetimes are checked when the request is made.
    let r = env
        .request("binary.psbt", "w-\x1b[2K", "ansi.json", &[])
        .code(2);
    assert!(r.stderr.contains("request id"), "{}", r.stderr);
    assert!(!unsafe_chars(&r.stderr), "{:?}", r.stderr);
    // Shown once escaped, not twice.
    assert!(
        r.stderr.contains("\"w-\\u{001b}[2K\"") && !r.stderr.contains("\\\\u"),
        "{}",
        r.stderr
    );
    let r = env
        .request(
            "binary.psbt",
            "w-forever",
            "forever.json",
            &["--expires-in", "18446744073709551615"],
        )
        .code(2);
    assert!(r.stderr.contains("expires-in"), "{}", r.stderr);
    let memo = "m".repeat(1025);
    let r = env
        .request("binary.psbt", "w-memo", "memo.json", &["--memo", &memo])
        .code(2);
    assert!(
        r.stderr.contains("memo has 1025 characters"),
        "{}",
        r.stderr
    );
}

#[test]
fn review_shows_everything_outside_text_is_inert_and_finalize_is_exact() {
    let (env, group, exchange) = world("");
    let outputs = [(exchange.as_str(), 300_000), (group.as_str(), 698_600)];

    // `policy check` states the transaction rules in force (the defaults).
    let r = env.kura(&["policy", "check", "alice/policy.toml"]).ok();
    assert!(
        r.stdout.contains("version(s) [2]; no height lock; no time lock (hours ahead); relative locks refused; dust refused; requests valid at most 24 h"),
        "{}",
        r.stdout
    );

    // A timelocked transaction: the review would show it; the default policy
    // refuses it, naming the rule.
    let (locked, _) = psbt_with(&group, &outputs, 4, |tx| {
        tx.lock_time = bitcoin::absolute::LockTime::from_consensus(1_900_000)
    });
    std::fs::write(env.p("locked.psbt"), locked.serialize()).unwrap();
    env.request("locked.psbt", "w-locked", "locked.json", &[])
        .ok();
    let r = env
        .kura_as(
            "alice",
            &["sign", "review", "--home", "alice", "locked.json"],
        )
        .code(1);
    assert!(
        r.stderr.contains("lock-time") && r.stderr.contains("1900000"),
        "{}",
        r.stderr
    );

    // The honest request, with a hostile memo and a pre-set final_script_sig.
    let (mut p, coin) = psbt_with(&group, &outputs, 5, |_| {});
    let reviewed_txid = p.unsigned_tx.compute_txid().to_string();
    p.inputs[0].final_script_sig = Some(bitcoin::ScriptBuf::from_bytes(vec![0x51]));
    std::fs::write(env.p("w.psbt"), p.serialize()).unwrap();
    env.request(
        "w.psbt",
        "w-1",
        "w.json",
        &["--memo", "ok\x1b[2K\x1b[1A\routput 0: 0.0001 BTC \u{202e}"],
    )
    .ok();
    let r = env
        .kura_as("alice", &["sign", "review", "--home", "alice", "w.json"])
        .ok();
    assert!(!unsafe_chars(&r.stdout), "{:?}", r.stdout);
    let review_text = r.stdout.trim_end().to_owned();
    assert!(review_text.lines().count() > 8, "{review_text}");
    for needle in [
        "from requester `treasury-ops`",
        "created ",
        "expires ",
        "\\u{001b}[2K",
        "version 2",
        "nLockTime 0: none",
        "nSequence 0xfffffffd",
        "commits to them",
        "verdict: allowed",
    ] {
        assert!(r.stdout.contains(needle), "{needle}: {}", r.stdout);
    }
    let j = env
        .kura_as(
            "alice",
            &["--json", "sign", "review", "--home", "alice", "w.json"],
        )
        .ok()
        .json();
    assert_eq!(j["data"]["version"], 2);
    assert_eq!(j["data"]["lock_time"], 0);
    assert_eq!(j["data"]["requester"], "treasury-ops");
    assert_eq!(j["data"]["leaving_sat"], 301_400);

    // A request whose id was edited to carry ANSI escapes: refused when
    // parsed, and the refusal does not replay the escapes.
    let mut doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(env.p("w.json")).unwrap()).unwrap();
    doc["body"]["body"]["request_id"] = "w-1\x1b[2K\x1b[1A  total 0.0001 BTC".into();
    std::fs::write(env.p("ansi.json"), serde_json::to_vec(&doc).unwrap()).unwrap();
    let r = env
        .kura_as("alice", &["sign", "review", "--home", "alice", "ansi.json"])
        .code(2);
    assert!(r.stderr.contains("request id"), "{}", r.stderr);
    assert!(!unsafe_chars(&r.stderr), "{:?}", r.stderr);

    // The approval prompt (on a pseudo-terminal, via util-linux `script`)
    // shows the same full review as `sign review`, then asks.
    let kura = env!("CARGO_BIN_EXE_kura");
    let mut child = Command::new("script")
        .current_dir(env.dir.path())
        .args([
            "-qec",
            &format!(
                "{kura} sign approve --home bob w.json --out w.bob.approval.json --passphrase-file bob.pass"
            ),
            "/dev/null",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("`script` (util-linux) is needed for this test");
    std::thread::sleep(std::time::Duration::from_millis(1500));
    child.stdin.take().unwrap().write_all(b"n\n").unwrap();
    let prompt = String::from_utf8_lossy(&child.wait_with_output().unwrap().stdout).into_owned();
    for line in review_text.lines() {
        assert!(
            prompt.contains(line.trim_end()),
            "{line:?} not in the prompt: {prompt}"
        );
    }
    assert!(
        prompt.contains("Approve request w-1 as bob? [y/N]"),
        "{prompt}"
    );
    assert!(!prompt.contains('\x1b'), "{prompt:?}");
    assert!(!env.p("w.bob.approval.json").exists());

    // The round to the end.
    for name in ["alice", "carol"] {
        let out = format!("w.{name}.approval.json");
        env.kura_as(
            name,
            &[
                "sign", "approve", "--home", name, "w.json", "--out", &out, "--yes",
            ],
        )
        .ok();
    }
    env.kura(&[
        "coordinate",
        "package",
        "--group",
        "group/group.json",
        "--roster",
        "group/roster.json",
        "--network",
        "regtest",
        "w.json",
        "w.alice.approval.json",
        "w.carol.approval.json",
        "--out",
        "w.packages.json",
    ])
    .ok();
    for name in ["alice", "carol"] {
        let out = format!("w.{name}.shares.json");
        env.kura_as(
            name,
            &[
                "sign",
                "share",
                "--home",
                name,
                "w.json",
                "w.packages.json",
                "--out",
                &out,
            ],
        )
        .ok();
    }
    let finalize = |psbt_out: &str, tx_out: &str, extra: &[&str]| {
        let mut args = vec![
            "--json",
            "coordinate",
            "finalize",
            "--group",
            "group/group.json",
            "--roster",
            "group/roster.json",
            "--network",
            "regtest",
            "w.json",
            "w.packages.json",
            "w.alice.shares.json",
            "w.carol.shares.json",
            "--psbt-out",
            psbt_out,
            "--tx-out",
            tx_out,
        ];
        args.extend_from_slice(extra);
        env.kura(&args)
    };
    // All or nothing: the tx file exists already, so no PSBT is left behind.
    std::fs::write(env.p("taken.hex"), b"x").unwrap();
    finalize("left.psbt", "taken.hex", &[]).code(2);
    assert!(!env.p("left.psbt").exists());
    // The tx file cannot be created (its directory is a file): same.
    finalize("left.psbt", "taken.hex/tx.hex", &[]).code(2);
    assert!(!env.p("left.psbt").exists());
    // Binary BIP174 by default; the pre-set final_script_sig is gone and the
    // txid is the reviewed one.
    let r = finalize("final.psbt", "final.hex", &[]).ok().json();
    assert_eq!(r["data"]["txid"], reviewed_txid.as_str());
    assert_eq!(r["data"]["psbt_encoding"], "binary");
    let bytes = std::fs::read(env.p("final.psbt")).unwrap();
    assert!(bytes.starts_with(b"psbt\xff"));
    let final_psbt = bitcoin::psbt::Psbt::deserialize(&bytes).unwrap();
    assert!(final_psbt.inputs[0].final_script_sig.is_none());
    let hex = std::fs::read_to_string(env.p("final.hex")).unwrap();
    let tx = tx_from_hex(&hex);
    consensus_verify(&tx, std::slice::from_ref(&coin)).unwrap();
    assert_eq!(tx.compute_txid().to_string(), reviewed_txid);
    // Base64 on request.
    finalize("final64.psbt", "final64.hex", &["--psbt-base64"]).ok();
    let text = std::fs::read_to_string(env.p("final64.psbt")).unwrap();
    assert!(text.starts_with("cHNidP8"), "{text}");
    // `-`: the PSBT on standard output (binary to a pipe), the report on stderr.
    let r = finalize("-", "stdout.hex", &[]).ok();
    assert!(r.stdout.starts_with("psbt"), "{:?}", r.stdout);
    assert!(r.stderr.contains(&reviewed_txid), "{}", r.stderr);
    assert!(env.p("stdout.hex").exists());
}
