//! The kura binary's test kit: a directory of homes, the binary run in it,
//! a dealt 2-of-3 group with installed policies, and PSBTs of addresses
//! given as text (built with kura-testkit, which also has Bitcoin Core's
//! consensus check). Shared by the CLI test files.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use bitcoin::{Amount, TxOut};
use kura_testkit::{coin, with_tx};
pub use kura_testkit::{consensus_verify, outside_address};

/// The ceremony nonce the tests' dealings use.
pub const NONCE: &str = "c0ffeec0ffeec0ffeec0ffeec0ffeec0ffeec0ffeec0ffeec0ffeec0ffeec0ff";

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(self.stdout.trim())
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.stdout))
    }
    pub fn ok(self) -> Self {
        self.code(0)
    }
    pub fn code(self, code: i32) -> Self {
        assert_eq!(
            self.code, code,
            "stdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        self
    }
}

pub struct Env {
    pub dir: tempfile::TempDir,
    pub softhsm_conf: Option<PathBuf>,
}

impl Env {
    pub fn new() -> Env {
        Env {
            dir: tempfile::tempdir().unwrap(),
            softhsm_conf: None,
        }
    }

    pub fn p(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn kura(&self, args: &[&str]) -> Run {
        self.kura_with(args, &[])
    }

    /// The `kura` command in this environment's directory.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_kura"));
        cmd.current_dir(self.dir.path())
            .args(args)
            .env_remove("KURA_NOW");
        if let Some(conf) = &self.softhsm_conf {
            cmd.env("SOFTHSM2_CONF", conf);
        }
        cmd
    }

    /// A finished process's [`Run`].
    pub fn finish_output(out: Output) -> Run {
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    pub fn kura_with(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let mut cmd = self.command(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        Self::finish_output(cmd.output().unwrap())
    }

    /// `kura args` with `stdin` on its standard input.
    pub fn kura_stdin(&self, args: &[&str], stdin: &[u8]) -> Run {
        use std::io::Write;
        let mut child = self
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(stdin).unwrap();
        Self::finish_output(child.wait_with_output().unwrap())
    }

    /// Signer homes alice, bob, carol (software keystores, or tokens), a
    /// requester, a dealt 2-of-3 group imported by every signer, and a policy
    /// for each signer allowing the requester to pay `exchange`.
    pub fn setup(&mut self, tokens: bool) -> (String, String) {
        self.setup_with(tokens, "")
    }

    /// [`Env::setup`] with `policy_extra` appended to every signer's policy.
    pub fn setup_with(&mut self, tokens: bool, policy_extra: &str) -> (String, String) {
        for name in ["alice", "bob", "carol", "ops", "dealer"] {
            std::fs::write(
                self.p(&format!("{name}.pass")),
                format!("passphrase of {name}\n"),
            )
            .unwrap();
        }
        if tokens {
            let module = hsm_bridge::softhsm::module()
                .expect("SoftHSM2 not installed (scripts/test installs it)");
            let hsm = hsm_bridge::softhsm::SoftHsm::create_in(&self.p("softhsm")).unwrap();
            self.softhsm_conf = Some(hsm.conf());
            for name in ["alice", "bob", "carol"] {
                // The PIN on softhsm2-util's command line is a test-only shortcut.
                let st = Command::new("softhsm2-util")
                    .env("SOFTHSM2_CONF", hsm.conf())
                    .args([
                        "--init-token",
                        "--free",
                        "--label",
                        &format!("kura-{name}"),
                        "--so-pin",
                        "87654321",
                        "--pin",
                    ])
                    .arg(format!("pin-{name}"))
                    .output()
                    .unwrap();
                assert!(
                    st.status.success(),
                    "{}",
                    String::from_utf8_lossy(&st.stderr)
                );
                std::fs::write(self.p(&format!("{name}.pin")), format!("pin-{name}\n")).unwrap();
            }
            for name in ["alice", "bob", "carol"] {
                let uri = format!("pkcs11:token=kura-{name}?module-path={}", module.display());
                self.kura(&[
                    "signer",
                    "init",
                    "--home",
                    name,
                    "--label",
                    name,
                    "--hsm",
                    &uri,
                    "--pin-file",
                    &format!("{name}.pin"),
                ])
                .ok();
            }
        } else {
            for name in ["alice", "bob", "carol"] {
                self.kura(&[
                    "signer",
                    "init",
                    "--home",
                    name,
                    "--label",
                    name,
                    "--software",
                    "--passphrase-file",
                    &format!("{name}.pass"),
                ])
                .ok();
            }
        }
        let init = self
            .kura(&[
                "--json",
                "requester",
                "init",
                "--home",
                "ops",
                "--label",
                "treasury-ops",
                "--passphrase-env",
                "OPS_PASS",
            ])
            .code;
        assert_eq!(init, 2, "a named but unset variable is an input error");
        let run = self.kura_with(
            &[
                "--json",
                "requester",
                "init",
                "--home",
                "ops",
                "--label",
                "treasury-ops",
                "--passphrase-env",
                "OPS_PASS",
            ],
            &[("OPS_PASS", "passphrase of ops")],
        );
        let requester_key = run.ok().json()["data"]["identity"]
            .as_str()
            .unwrap()
            .to_owned();
        self.deal("dealer", None);
        let exchange = outside_address(0x11);
        let policy = format!(
            "version = 1\nnetwork = \"regtest\"\n[[requester]]\nlabel = \"treasury-ops\"\nkey = \"{requester_key}\"\n[[destination]]\nlabel = \"exchange\"\naddress = \"{exchange}\"\n[limits]\nper_transaction_sat = 500_000\nrolling_window_hours = 24\nrolling_window_sat = 1_000_000\nmax_fee_sat = 10_000\nmax_fee_rate_sat_per_vb = 50\n{policy_extra}"
        );
        for name in ["alice", "bob", "carol"] {
            let file = format!("{name}-policy.toml");
            std::fs::write(self.p(&file), &policy).unwrap();
            self.kura(&["policy", "check", &file]).ok();
            // Only an installed policy is in force.
            self.kura_as(name, &["policy", "install", "--home", name, "--yes", &file])
                .ok();
        }
        let addr = self
            .kura(&[
                "--json",
                "wallet",
                "address",
                "--group",
                "group/group.json",
                "--network",
                "regtest",
            ])
            .ok()
            .json();
        (
            addr["data"]["address"].as_str().unwrap().to_owned(),
            exchange.to_string(),
        )
    }

    /// A dealer home `dealer` (software keystore), a 2-of-3 dealing (of a
    /// new key, or of the key in `key_file`) into `group/`, confirmed by
    /// fingerprint, and every signer's import of it. Returns the fingerprint.
    pub fn deal(&self, verb: &str, key_file: Option<&str>) -> String {
        if !self.p("dealer/kura.json").exists() {
            self.kura(&[
                "dealer",
                "init",
                "--home",
                "dealer",
                "--label",
                "dealer",
                "--software",
                "--passphrase-file",
                "dealer.pass",
            ])
            .ok();
        }
        let cards = [
            "--card",
            "alice/identity.json",
            "--card",
            "bob/identity.json",
            "--card",
            "carol/identity.json",
        ];
        let mut a = vec![
            "--json",
            "fingerprint",
            "-t",
            "2",
            "--dealer-card",
            "dealer/identity.json",
            "--ceremony",
            NONCE,
        ];
        a.extend(cards);
        let fp = self.kura(&a).ok().json()["data"]["ceremony"]
            .as_str()
            .unwrap()
            .to_owned();
        let keygen_verb = if verb == "dealer" { "dealer" } else { "import" };
        let mut a = vec![
            "keygen",
            keygen_verb,
            "--home",
            "dealer",
            "-t",
            "2",
            "--ceremony",
            NONCE,
            "--fingerprint",
            &fp,
            "--out",
            "group",
            "--passphrase-file",
            "dealer.pass",
        ];
        if let Some(k) = key_file {
            a.extend(["--key-file", k]);
        }
        a.extend(cards);
        self.kura(&a).ok();
        for name in ["alice", "bob", "carol"] {
            self.kura_as(
                name,
                &[
                    "signer",
                    "import",
                    "--home",
                    name,
                    "--dealing",
                    "group/dealing.json",
                    "--fingerprint",
                    &fp,
                ],
            )
            .ok();
        }
        fp
    }

    /// Args that unlock `name`'s keystore.
    pub fn unlock(&self, name: &str) -> Vec<String> {
        if self.softhsm_conf.is_some() && name != "ops" {
            vec!["--pin-file".into(), format!("{name}.pin")]
        } else {
            vec!["--passphrase-file".into(), format!("{name}.pass")]
        }
    }

    pub fn kura_as(&self, name: &str, args: &[&str]) -> Run {
        let unlock = self.unlock(name);
        let mut all: Vec<&str> = args.to_vec();
        all.extend(unlock.iter().map(String::as_str));
        self.kura(&all)
    }
}

/// A PSBT spending a synthetic 1,000,000-sat coin of `coin_owner` (the
/// kit's [`coin`] with `tag`) to `outputs`, with `edit` applied to the
/// transaction; returns it and the spent output.
pub fn psbt_with(
    coin_owner: &str,
    outputs: &[(&str, u64)],
    tag: u8,
    edit: impl FnOnce(&mut bitcoin::Transaction),
) -> (bitcoin::psbt::Psbt, TxOut) {
    let script = |a: &str| {
        a.parse::<bitcoin::Address<_>>()
            .unwrap()
            .assume_checked()
            .script_pubkey()
    };
    let coin = coin(&script(coin_owner), 1_000_000, tag);
    let outputs = outputs
        .iter()
        .map(|(a, v)| TxOut {
            value: Amount::from_sat(*v),
            script_pubkey: script(a),
        })
        .collect();
    let p = with_tx(
        kura_testkit::psbt(std::slice::from_ref(&coin), outputs),
        edit,
    );
    (p, coin.1)
}

/// A PSBT (base64) spending a synthetic 1,000,000-sat coin of `group` to
/// `outputs`; returns it and the spent output.
pub fn psbt(group: &str, outputs: &[(&str, u64)], tag: u8) -> (String, TxOut) {
    let (p, coin) = psbt_with(group, outputs, tag, |_| {});
    (p.to_string(), coin)
}

/// The transaction in a hex file's text (as `coordinate finalize` writes it).
pub fn tx_from_hex(text: &str) -> bitcoin::Transaction {
    bitcoin::consensus::encode::deserialize_hex(text.trim()).unwrap()
}
