//! The service as processes: `kura coordinator serve` and `kura signer
//! run` on the homes `kura demo` leaves (SoftHSM2 tokens when installed),
//! requests through `kura withdraw submit | status`. A daemon is stopped
//! dead (abort, as kill -9) at every checkpoint of its work and started
//! again; the coordinator is SIGKILLed mid-withdrawal and started again.
//! Every withdrawal must complete, valid under Bitcoin Core's consensus
//! code, with no signer ever releasing two share sets for one request.

#![allow(clippy::print_stderr)] // progress of a long test, shown with --nocapture

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use wallet_core::bitcoin::{self, consensus};

struct Demo {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    hsm: bool,
}

impl Demo {
    fn new() -> Demo {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("d");
        let o = Command::new(env!("CARGO_BIN_EXE_kura"))
            .args(["--json", "demo", "--out"])
            .arg(&dir)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let hsm = v["data"]["keystores"]
            .as_str()
            .unwrap()
            .contains("SoftHSM2");
        Demo {
            _tmp: tmp,
            dir,
            hsm,
        }
    }

    /// Every process log, for a failure's message.
    fn logs(&self) -> String {
        ["coordinator", "alice", "bob", "carol"]
            .iter()
            .map(|n| {
                let text =
                    fs::read_to_string(self.dir.join(format!("{n}.log"))).unwrap_or_default();
                format!("--- {n}.log\n{text}")
            })
            .collect()
    }

    fn command(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_kura"));
        c.env("SOFTHSM2_CONF", self.dir.join("softhsm/softhsm2.conf"));
        c
    }

    fn kura(&self, args: &[&str]) -> Output {
        self.command().args(args).output().unwrap()
    }

    fn unlock(&self, who: &str) -> [String; 2] {
        if self.hsm {
            [
                "--pin-file".into(),
                self.path(&format!("secrets/{who}.pin")),
            ]
        } else {
            [
                "--passphrase-file".into(),
                self.path(&format!("secrets/{who}.pass")),
            ]
        }
    }

    fn path(&self, rel: &str) -> String {
        self.dir.join(rel).display().to_string()
    }

    fn spawn(&self, args: &[String], log: &str, env: Option<(&str, &str)>) -> Proc {
        let path = self.dir.join(log);
        let out = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .unwrap();
        let mut c = self.command();
        c.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::from(out.try_clone().unwrap()))
            .stderr(Stdio::from(out));
        if let Some((k, v)) = env {
            c.env(k, v);
        }
        Proc {
            child: c.spawn().unwrap(),
            log: path,
        }
    }
}

struct Proc {
    child: Child,
    log: PathBuf,
}

impl Proc {
    fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn wait_log(&mut self, needle: &str) {
        self.wait_log_count(needle, 1);
    }

    /// Waits until `needle` is in the log `n` times (a restarted process
    /// appends to its predecessor's log).
    fn wait_log_count(&mut self, needle: &str, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.log().matches(needle).count() < n {
            assert!(
                Instant::now() < deadline,
                "never logged {needle}: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn wait_exit(&mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            assert!(Instant::now() < deadline, "did not stop: {}", self.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

struct Service<'a> {
    demo: &'a Demo,
    url: String,
    pin: String,
    group: wallet_core::PublicGroup<wallet_core::Secp256k1Tr>,
    exchange: bitcoin::Address,
}

impl<'a> Service<'a> {
    fn init(demo: &'a Demo) -> Service<'a> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let pass = demo.dir.join("secrets/coordinator.pass");
        fs::write(&pass, "coordinator passphrase\n").unwrap();
        let mut perms = fs::metadata(&pass).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o600);
        fs::set_permissions(&pass, perms).unwrap();
        let listen = format!("127.0.0.1:{port}");
        let o = demo.kura(&[
            "--json",
            "coordinator",
            "init",
            "--dir",
            &demo.path("coord"),
            "--group",
            &demo.path("group.json"),
            "--roster",
            &demo.path("signers/alice/roster.json"),
            "--requester",
            &demo.path("requester/identity.json"),
            "--listen",
            &listen,
            "--network",
            "regtest",
            "--passphrase-file",
            &demo.path("secrets/coordinator.pass"),
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let pin = v["data"]["fingerprint"].as_str().unwrap().to_owned();
        let group = wallet_core::PublicGroup::from_document(
            &fs::read(demo.dir.join("group.json")).unwrap(),
        )
        .unwrap();
        let policy = wallet_core::Policy::from_toml(
            &fs::read_to_string(demo.dir.join("signers/alice/policy.toml")).unwrap(),
        )
        .unwrap();
        let exchange = policy.destinations()[0].address().clone();
        Service {
            demo,
            url: format!("https://{listen}"),
            pin,
            group,
            exchange,
        }
    }

    fn serve(&self) -> Proc {
        let before = fs::read_to_string(self.demo.dir.join("coordinator.log"))
            .unwrap_or_default()
            .matches("serving https://")
            .count();
        let mut p = self.demo.spawn(
            &[
                "coordinator".into(),
                "serve".into(),
                "--dir".into(),
                self.demo.path("coord"),
                "--passphrase-file".into(),
                self.demo.path("secrets/coordinator.pass"),
            ],
            "coordinator.log",
            None,
        );
        p.wait_log_count("serving https://", before + 1);
        p
    }

    fn daemon(&self, who: &str, crash_at: Option<&str>) -> Proc {
        let [flag, file] = self.demo.unlock(who);
        let mut p = self.demo.spawn(
            &[
                "--json".into(),
                "signer".into(),
                "run".into(),
                "--home".into(),
                self.demo.path(&format!("signers/{who}")),
                "--coordinator".into(),
                self.url.clone(),
                "--coordinator-pin".into(),
                self.pin.clone(),
                flag,
                file,
            ],
            &format!("{who}.log"),
            crash_at.map(|c| ("KURA_TEST_CRASH_AT", c)),
        );
        p.wait_log("\"connected\"");
        p
    }

    /// A PSBT paying `amount` to the exchange from a fresh coin; with the
    /// coin it spends.
    fn psbt(&self, tag: u8, amount: u64) -> (PathBuf, bitcoin::TxOut) {
        let own = self.group.taproot().script_pubkey();
        let coin = kura_testkit::coin(&own, 100_000, tag);
        let outputs = kura_testkit::withdrawal_outputs(
            100_000,
            &self.exchange.script_pubkey(),
            amount,
            &own,
            1_500,
        );
        let psbt = kura_testkit::psbt(std::slice::from_ref(&coin), outputs);
        let path = self.demo.dir.join(format!("w{tag}.psbt"));
        fs::write(&path, psbt.serialize()).unwrap();
        (path, coin.1)
    }

    fn submit(&self, id: &str, psbt: &Path) -> String {
        let o = self.demo.kura(&[
            "--json",
            "withdraw",
            "submit",
            "--home",
            &self.demo.path("requester"),
            "--group",
            &self.demo.path("group.json"),
            "--psbt",
            &psbt.display().to_string(),
            "--id",
            id,
            "--coordinator",
            &self.url,
            "--coordinator-pin",
            &self.pin,
            "--passphrase-file",
            &self.demo.path("secrets/requester.pass"),
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        v["data"]["id"].as_str().unwrap().to_owned()
    }

    /// Waits for the withdrawal with `kura withdraw status --wait` and
    /// checks its transaction with Bitcoin Core's consensus code.
    fn finalized(&self, id: &str, spent: &bitcoin::TxOut) {
        let tx_out = self.demo.dir.join(format!("{id}.tx"));
        let o = self.demo.kura(&[
            "--json",
            "withdraw",
            "status",
            id,
            "--wait",
            "--timeout",
            "90",
            "--home",
            &self.demo.path("requester"),
            "--group",
            &self.demo.path("group.json"),
            "--coordinator",
            &self.url,
            "--coordinator-pin",
            &self.pin,
            "--tx-out",
            &tx_out.display().to_string(),
            "--passphrase-file",
            &self.demo.path("secrets/requester.pass"),
        ]);
        assert!(
            o.status.success(),
            "{}\n{}",
            String::from_utf8_lossy(&o.stderr),
            self.demo.logs()
        );
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(v["data"]["state"], "finalized", "{v}");
        let hex_tx = fs::read_to_string(&tx_out).unwrap();
        let tx: bitcoin::Transaction =
            consensus::deserialize(&hex::decode(hex_tx.trim()).unwrap()).unwrap();
        kura_testkit::consensus_verify(&tx, std::slice::from_ref(spent)).unwrap();
    }

    /// How many share sets `who` released for the request with this digest.
    fn releases(&self, who: &str, id: &str) -> usize {
        let log =
            fs::read_to_string(self.demo.dir.join(format!("signers/{who}/audit.jsonl"))).unwrap();
        log.lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|e| {
                e["record"]["event"]["type"] == "share-released"
                    && e["record"]["request_digest"] == id
            })
            .count()
    }

    fn audit_intact(&self, who: &str) {
        let [flag, file] = self.demo.unlock(who);
        let o = self.demo.kura(&[
            "audit",
            "verify",
            "--home",
            &self.demo.path(&format!("signers/{who}")),
            &flag,
            &file,
        ]);
        assert!(
            o.status.success(),
            "{who}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
}

#[test]
fn killed_daemons_and_coordinator_lose_nothing_and_reuse_no_nonce() {
    let started = Instant::now();
    let demo = Demo::new();
    eprintln!("demo ({:?})", started.elapsed());
    let service = Service::init(&demo);
    let mut coordinator = service.serve();
    let mut carol = service.daemon("carol", None);

    // Alice's daemon stops dead at each checkpoint in turn, then runs again.
    for (n, point) in [
        "reviewed",
        "approved",
        "approval-posted",
        "signed",
        "shares-posted",
    ]
    .into_iter()
    .enumerate()
    {
        eprintln!("alice stops at {point} ({:?})", started.elapsed());
        let mut alice = service.daemon("alice", Some(point));
        let (psbt, coin) = service.psbt(0x40 + n as u8, 20_000);
        let id = service.submit(&format!("crash-{point}"), &psbt);
        let status = alice.wait_exit();
        assert!(
            !status.success(),
            "{point}: alice's daemon did not stop there"
        );
        let mut alice = service.daemon("alice", None);
        service.finalized(&id, &coin);
        assert_eq!(
            service.releases("alice", &id),
            1,
            "{point}: alice's releases"
        );
        assert_eq!(
            service.releases("carol", &id),
            1,
            "{point}: carol's releases"
        );
        alice.kill();
    }

    eprintln!("coordinator kill ({:?})", started.elapsed());
    // The coordinator is SIGKILLed with one approval recorded.
    let (psbt, coin) = service.psbt(0x50, 20_000);
    let id = service.submit("coordinator-killed", &psbt);
    carol.wait_log(&format!("\"auto-approved\",\"id\":\"{id}\""));
    coordinator.kill();
    let _coordinator = service.serve();
    let _alice = service.daemon("alice", None);
    service.finalized(&id, &coin);
    for who in ["alice", "carol"] {
        assert_eq!(service.releases(who, &id), 1);
    }
    carol.kill();
    drop(_alice);
    for who in ["alice", "bob", "carol"] {
        service.audit_intact(who);
    }
}

#[test]
fn a_refresh_runs_through_the_coordinators_mailbox() {
    let demo = Demo::new();
    let service = Service::init(&demo);
    let _coordinator = service.serve();
    let run = |who: &str, args: &[&str]| -> serde_json::Value {
        let mut all: Vec<String> = vec!["--json".into()];
        all.extend(args.iter().map(|a| a.to_string()));
        all.extend(["--home".into(), demo.path(&format!("signers/{who}"))]);
        all.extend(demo.unlock(who));
        let refs: Vec<&str> = all.iter().map(String::as_str).collect();
        let o = demo.kura(&refs);
        assert!(
            o.status.success(),
            "{who} {args:?}: {}\n{}",
            String::from_utf8_lossy(&o.stderr),
            demo.logs()
        );
        serde_json::from_slice(&o.stdout).unwrap()
    };
    let mailbox = ["--mailbox", &service.url, "--mailbox-pin", &service.pin];
    let send = |who: &str, file: &str| {
        let mut a = vec!["mailbox", "send"];
        a.extend(mailbox);
        a.push(file);
        run(who, &a);
    };
    // Files that arrived for `who`, of `kind`, at least `n` (own excluded).
    let fetch = |who: &str, kind: &str, n: usize| -> Vec<String> {
        let out = demo.path(&format!("inbox-{who}"));
        let expect = n.to_string();
        let mut a = vec![
            "mailbox",
            "fetch",
            "--out-dir",
            &out,
            "--kind",
            kind,
            "--expect",
            &expect,
            "--wait",
            "30",
        ];
        a.extend(mailbox);
        let v = run(who, &a);
        let files: Vec<String> = v["data"]["files"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f.as_str().unwrap().to_owned())
            .collect();
        assert_eq!(files.len(), n, "{who} {kind}: {files:?}");
        files
    };
    let file = |name: &str| demo.path(name);
    let before = fs::read(demo.dir.join("signers/alice/group.json")).unwrap();

    // Bob proposes; the proposal reaches alice and carol through the mailbox.
    run(
        "bob",
        &["refresh", "propose", "--out", &file("bob-refresh.json")],
    );
    send("bob", &file("bob-refresh.json"));
    let for_carol = fetch("carol", "refresh-proposal", 1).remove(0);
    let for_alice = fetch("alice", "refresh-proposal", 1).remove(0);
    // Bob and carol consent (t = 2).
    run(
        "bob",
        &[
            "refresh",
            "endorse",
            &file("bob-refresh.json"),
            "--out",
            &file("endorse-bob.json"),
        ],
    );
    send("bob", &file("endorse-bob.json"));
    run(
        "carol",
        &[
            "refresh",
            "endorse",
            &for_carol,
            "--out",
            &file("endorse-carol.json"),
        ],
    );
    send("carol", &file("endorse-carol.json"));
    // Each applies with the endorsements it has (its own and what came).
    let mut receipts = Vec::new();
    for (who, proposal, own) in [
        ("alice", for_alice.clone(), None),
        (
            "bob",
            file("bob-refresh.json"),
            Some(file("endorse-bob.json")),
        ),
        ("carol", for_carol.clone(), Some(file("endorse-carol.json"))),
    ] {
        let mut endorsements = fetch(
            who,
            "refresh-endorsement",
            if own.is_some() { 1 } else { 2 },
        );
        endorsements.extend(own);
        let receipt = file(&format!("receipt-{who}.json"));
        let mut a = vec![
            "refresh",
            "apply",
            proposal.as_str(),
            "--out",
            receipt.as_str(),
        ];
        for e in &endorsements {
            a.extend(["--endorsement", e.as_str()]);
        }
        run(who, &a);
        send(who, &receipt);
        receipts.push((who, receipt));
    }
    // Each activates with every member's receipt.
    for (who, own) in &receipts {
        let mut all = fetch(who, "refresh-receipt", 2);
        all.push(own.clone());
        let mut a = vec!["refresh", "activate"];
        for r in &all {
            a.extend(["--receipt", r.as_str()]);
        }
        run(who, &a);
    }
    // Same group, new shares: the verifying shares in the group file changed.
    let after = fs::read(demo.dir.join("signers/alice/group.json")).unwrap();
    assert_ne!(before, after);
    let (b, a) = (
        wallet_core::PublicGroup::<wallet_core::Secp256k1Tr>::from_document(&before).unwrap(),
        wallet_core::PublicGroup::<wallet_core::Secp256k1Tr>::from_document(&after).unwrap(),
    );
    assert_eq!(b.id(), a.id());
    assert_eq!(b.verifying_key(), a.verifying_key());
    for who in ["bob", "carol"] {
        assert_eq!(
            after,
            fs::read(demo.dir.join(format!("signers/{who}/group.json"))).unwrap()
        );
    }
    // The next refresh does not pick up this one's proposal: a fetch
    // counts only what is new since the home's last fetch of that kind
    // (and finds the old one only when asked for everything).
    let home = demo.path("signers/carol");
    let inbox = demo.path("inbox-carol-next");
    let mut a = vec![
        "mailbox",
        "fetch",
        "--home",
        &home,
        "--out-dir",
        &inbox,
        "--kind",
        "refresh-proposal",
        "--expect",
        "1",
        "--wait",
        "1",
    ];
    a.extend(mailbox);
    let unlock = demo.unlock("carol");
    a.extend(unlock.iter().map(String::as_str));
    let o = demo.kura(&a);
    assert!(!o.status.success(), "an old proposal counted as new");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("0 of the 1"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    a.push("--all");
    let o = demo.kura(&a);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}
