//! The command line itself, without keystores: network names and defaults,
//! completions and man pages, errors as JSON. Fast: no scrypt, no token.

use std::path::Path;
use std::process::{Command, Output};

fn kura(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kura"))
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A dealt 2-of-3 group's file at `path` (the library's dealer: no keystores).
fn group_file(path: &Path) {
    use wallet_core::keygen::{self, Identifiers};
    use wallet_core::{Label, Secp256k1Tr};
    let labels = ["alice", "bob", "carol"].map(|l| Label::new(l).unwrap());
    let dealt =
        keygen::dealer::<Secp256k1Tr, _>(2, &labels, Identifiers::Default, &mut rand_core::OsRng)
            .unwrap();
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, dealt.group.to_document().unwrap()).unwrap();
}

/// A home's kura.json (no keystore: enough for the commands that read
/// only public files).
fn home_config(dir: &Path, network: Option<&str>) {
    let mut config = serde_json::json!({
        "kura_home": 1, "role": "signer", "label": "alice", "keystore": {"type": "software"}
    });
    if let Some(n) = network {
        config["network"] = n.into();
    }
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("kura.json"), config.to_string()).unwrap();
}

#[test]
fn network_names_as_bitcoin_cli_and_bdk_spell_them() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    group_file(&dir.join("group/group.json"));
    let address = |network: &str| {
        let o = kura(
            dir,
            &[
                "wallet",
                "address",
                "--group",
                "group/group.json",
                "--network",
                network,
            ],
        );
        assert!(o.status.success(), "{network}: {}", stderr(&o));
        stdout(&o).trim().to_owned()
    };
    let main = address("bitcoin");
    assert!(main.starts_with("bc1p"), "{main}");
    assert_eq!(address("main"), main);
    assert_eq!(address("mainnet"), main);
    assert!(address("testnet").starts_with("tb1p"));
    assert!(address("testnet4").starts_with("tb1p"));
    assert!(address("signet").starts_with("tb1p"));
    assert!(address("regtest").starts_with("bcrt1p"));
    // Without a home and without --network: the one default, bitcoin.
    let o = kura(dir, &["wallet", "address", "--group", "group/group.json"]);
    assert_eq!(stdout(&o).trim(), main);
    // An unknown name is a usage error listing the names.
    let o = kura(
        dir,
        &[
            "wallet",
            "address",
            "--group",
            "group/group.json",
            "--network",
            "mainnet3",
        ],
    );
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    for name in ["bitcoin", "testnet", "testnet4", "signet", "regtest"] {
        assert!(err.contains(name), "{err}");
    }
    // --help lists them too.
    let o = kura(dir, &["wallet", "address", "--help"]);
    let help = stdout(&o);
    for name in ["bitcoin", "mainnet", "testnet4", "signet", "regtest"] {
        assert!(help.contains(name), "{help}");
    }
}

#[test]
fn a_group_in_a_home_takes_the_homes_network() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    group_file(&dir.join("alice/group.json"));
    home_config(&dir.join("alice"), Some("regtest"));
    for args in [
        &["wallet", "address", "--home", "alice"][..],
        &["wallet", "address", "--group", "alice/group.json"][..],
        &[
            "wallet",
            "address",
            "--home",
            "alice",
            "--network",
            "regtest",
        ][..],
    ] {
        let o = kura(dir, args);
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));
        assert!(stdout(&o).trim().starts_with("bcrt1p"), "{}", stdout(&o));
    }
    // A --network that contradicts the home is an error naming both.
    let o = kura(
        dir,
        &["wallet", "address", "--home", "alice", "--network", "main"],
    );
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(
        err.contains("--network bitcoin") && err.contains("regtest") && err.contains("kura.json"),
        "{err}"
    );
    // A home without a network in kura.json takes its installed policy's.
    group_file(&dir.join("bob/group.json"));
    home_config(&dir.join("bob"), None);
    std::fs::write(
        dir.join("bob/policy.toml"),
        "version = 1\nnetwork = \"signet\"\n[[requester]]\nlabel = \"ops\"\nkey = \"031e18532fd4754c02f3041d9c75ceb33b83ffd81ac7ce4fe882ccb1c98bc5896e\"\n[limits]\nper_transaction_sat = 1\nrolling_window_hours = 1\nrolling_window_sat = 1\nmax_fee_sat = 1\nmax_fee_rate_sat_per_vb = 1\n",
    )
    .unwrap();
    let o = kura(dir, &["--json", "wallet", "address", "--home", "bob"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["data"]["network"], "signet", "{v}");
}

#[test]
fn completions_for_every_shell_and_man_pages() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let o = kura(dir, &["completions", shell]);
        assert!(o.status.success(), "{shell}: {}", stderr(&o));
        let script = stdout(&o);
        assert!(
            script.contains("coordinate") && script.contains("reanchor"),
            "{shell}: {script}"
        );
    }
    // The top page on stdout.
    let o = kura(dir, &["man"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains(".TH kura"), "{}", stdout(&o));
    // One page per (sub)command.
    let o = kura(dir, &["man", "--out", "man"]);
    assert!(o.status.success(), "{}", stderr(&o));
    for page in [
        "kura.1",
        "kura-sign.1",
        "kura-sign-review.1",
        "kura-wallet-address.1",
    ] {
        let text = std::fs::read_to_string(dir.join("man").join(page)).unwrap();
        assert!(text.contains(".TH"), "{page}: {text}");
    }
    let review = std::fs::read_to_string(dir.join("man/kura-sign-review.1")).unwrap();
    assert!(review.contains("passphrase"), "{review}");
}

/// The one JSON object a failed `--json` run prints on stderr.
fn json_error(o: &Output) -> serde_json::Value {
    assert!(o.stdout.is_empty(), "stdout: {}", stdout(o));
    let err = stderr(o);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    serde_json::from_str(err.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {err}"))
}

#[test]
fn with_json_every_error_is_one_json_object_on_stderr() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // Usage errors, found by clap: an unknown flag, a missing argument, a
    // missing subcommand, a bad value; --json before or after the command.
    for args in [
        &[
            "--json",
            "wallet",
            "address",
            "--group",
            "g.json",
            "--frobnicate",
        ][..],
        &["wallet", "address", "--json"][..],
        &["--json", "sign"][..],
        &[
            "--json",
            "wallet",
            "address",
            "--group",
            "g.json",
            "--network",
            "moon",
        ][..],
        &[
            "--json",
            "audit",
            "show",
            "--home",
            "a",
            "--passphrase-file",
            "p",
        ][..],
    ] {
        let o = kura(dir, args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        let e = json_error(&o);
        assert_eq!(e["error"]["kind"], "usage", "{args:?}: {e}");
        assert_eq!(e["error"]["exit_code"], 2, "{args:?}: {e}");
        assert!(!e["error"]["message"].as_str().unwrap().is_empty());
    }
    // An error while running: a file that is not there.
    let o = kura(
        dir,
        &["--json", "wallet", "address", "--group", "nothing.json"],
    );
    assert_eq!(o.status.code(), Some(2));
    let e = json_error(&o);
    assert_eq!(e["error"]["kind"], "io", "{e}");
    assert!(e["error"]["message"]
        .as_str()
        .unwrap()
        .contains("nothing.json"));
    // A refusal: a policy file that does not validate.
    std::fs::write(dir.join("p.toml"), "version = 1\n").unwrap();
    let o = kura(dir, &["policy", "check", "p.toml", "--json"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(json_error(&o)["error"]["kind"], "refused");
    // A missing positional argument.
    let o = kura(
        dir,
        &[
            "--json",
            "coordinate",
            "package",
            "--group",
            "g.json",
            "--roster",
            "r.json",
        ],
    );
    assert_eq!(json_error(&o)["error"]["kind"], "usage");
    // Without --json: text, and clap's own usage message.
    let o = kura(
        dir,
        &["wallet", "address", "--group", "g.json", "--frobnicate"],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("unexpected argument"), "{}", stderr(&o));
    let o = kura(dir, &["policy", "check", "p.toml"]);
    assert!(stderr(&o).starts_with("kura: refused: "), "{}", stderr(&o));
    // --help and --version still print to stdout and succeed.
    let o = kura(dir, &["--json", "--help"]);
    assert!(o.status.success() && stdout(&o).contains("Usage"));
}

#[test]
fn wallet_address_prints_one_value_per_line() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    group_file(&dir.join("group/group.json"));
    let o = kura(dir, &["wallet", "address", "--group", "group/group.json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o).lines().count(), 1, "{}", stdout(&o));
    assert!(stderr(&o).is_empty(), "{}", stderr(&o));
    let o = kura(
        dir,
        &[
            "wallet",
            "address",
            "--group",
            "group/group.json",
            "--verbose",
        ],
    );
    assert_eq!(stdout(&o).lines().count(), 1, "{}", stdout(&o));
    assert!(
        stderr(&o).contains("watch-only descriptor tr("),
        "{}",
        stderr(&o)
    );
    let o = kura(
        dir,
        &["wallet", "descriptor", "--group", "group/group.json"],
    );
    assert_eq!(stdout(&o).lines().count(), 1, "{}", stdout(&o));
}
