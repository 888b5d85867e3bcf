//! `kura demo --service`: after the file round, the same custody round over
//! loopback HTTPS with real processes — `kura coordinator serve`, one
//! `kura signer run` per signer on its own token (or keystore), and the
//! requester submitting through the coordinator's API.
//!
//! On the way, carol's daemon is killed (SIGKILL) right after it approved
//! and started again: it finds the packages waiting and signs, with no
//! nonce used twice. Then a compromised requester asks to pay the
//! attacker: every signer daemon refuses it by its own policy.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use kura_service::api::{RoleName, StateName};
use kura_service::client::Client;
use kura_service::CertFingerprint;
use wallet_core::format;
use wallet_core::keystore::Keystore;
use wallet_core::withdrawal::request::{RequestId, Signed, WithdrawalRequest};
use wallet_core::{PublicGroup, Secp256k1Tr};

use crate::cmd::service::NewCoordinator;
use crate::network::NetworkArg;

/// Which flag and file unlock a signer's keystore.
pub type Unlock<'a> = Box<dyn Fn(&str) -> (&'static str, PathBuf) + 'a>;

/// What the service round needs from the file round.
pub struct Setup<'a> {
    pub out: &'a Path,
    pub group: &'a PublicGroup<Secp256k1Tr>,
    /// Each signer's label and home.
    pub signers: Vec<(String, PathBuf)>,
    /// The file that unlocks signer `label`'s keystore, and its flag.
    pub unlock: Unlock<'a>,
    pub requester: Arc<dyn Keystore>,
    pub requester_home: &'a Path,
    /// The withdrawal to make (spends a fresh coin) and the attacker's.
    pub honest: bitcoin::psbt::Psbt,
    pub theft: bitcoin::psbt::Psbt,
    pub spent: Vec<bitcoin::TxOut>,
    pub step: &'a dyn Fn(&str),
}

/// How the service round went.
#[derive(Debug)]
pub struct Outcome {
    pub url: String,
    pub fingerprint: CertFingerprint,
    pub id: String,
    pub txid: String,
    pub restarted: String,
    pub theft_refused_by: Vec<String>,
}

struct Proc {
    name: String,
    child: Child,
    log: PathBuf,
}

impl Proc {
    fn spawn(name: &str, args: &[String], log: PathBuf) -> anyhow::Result<Proc> {
        let exe = std::env::current_exe().context("cannot find the kura binary")?;
        // Appended: a restarted daemon's log follows its first run's.
        let out = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .with_context(|| format!("cannot create {}", log.display()))?;
        let err = out.try_clone()?;
        let child = Command::new(exe)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()
            .with_context(|| format!("cannot start {name}"))?;
        Ok(Proc {
            name: name.to_owned(),
            child,
            log,
        })
    }

    fn text(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = fs::File::open(&self.log) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }

    /// Waits until the log has a line containing `needle`.
    fn wait_for(&mut self, needle: &str, limit: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + limit;
        loop {
            if self.text().contains(needle) {
                return Ok(());
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                bail!(
                    "{} exited ({status}); see {}",
                    self.name,
                    self.log.display()
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "{} never reported {needle}; see {}",
                    self.name,
                    self.log.display()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL: what a crash or `kill -9` does.
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

fn free_port() -> anyhow::Result<std::net::SocketAddr> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?)
}

pub fn run(s: Setup<'_>) -> anyhow::Result<Outcome> {
    let dir = s.out.join("service");
    wallet_core::keystore::files::create_private_dir(&dir)?;
    let coordinator_dir = s.out.join("coordinator");
    let pass_file = s.out.join("secrets").join("coordinator.pass");
    let passphrase = crate::demo::throwaway_secret(s.out, "coordinator.pass")?;
    let listen = free_port()?;
    let requester_card = s.requester_home.join("identity.json");
    let (_, alice_home) = s.signers.first().context("no signer")?;
    let fingerprint = NewCoordinator {
        dir: &coordinator_dir,
        group: &s.out.join("group.json"),
        roster: &alice_home.join("roster.json"),
        requesters: std::slice::from_ref(&requester_card),
        listen,
        names: vec!["127.0.0.1".into(), "localhost".into()],
        network: NetworkArg::Regtest,
    }
    .create(&passphrase)?;
    let url = format!("https://{listen}");
    let mut coordinator = Proc::spawn(
        "the coordinator",
        &[
            "coordinator".into(),
            "serve".into(),
            "--dir".into(),
            coordinator_dir.display().to_string(),
            "--passphrase-file".into(),
            pass_file.display().to_string(),
        ],
        dir.join("coordinator.log"),
    )?;
    coordinator.wait_for("serving https://", Duration::from_secs(30))?;
    (s.step)(&format!(
        "coordinator serving {url} (SQLite in coordinator/, certificate {})",
        fingerprint
    ));

    let daemon = |label: &str, home: &Path| -> anyhow::Result<Proc> {
        let (flag, file) = (s.unlock)(label);
        Proc::spawn(
            &format!("{label}'s daemon"),
            &[
                "--json".into(),
                "signer".into(),
                "run".into(),
                "--home".into(),
                home.display().to_string(),
                "--coordinator".into(),
                url.clone(),
                "--coordinator-pin".into(),
                fingerprint.to_string(),
                flag.into(),
                file.display().to_string(),
            ],
            dir.join(format!("{label}.log")),
        )
    };
    let find = |label: &str| -> anyhow::Result<PathBuf> {
        s.signers
            .iter()
            .find(|(l, _)| l == label)
            .map(|(_, h)| h.clone())
            .with_context(|| format!("no signer {label}"))
    };

    let requester = Client::new(
        &url,
        fingerprint,
        *s.group.id(),
        RoleName::Requester,
        s.requester.clone(),
    )?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let submit = |id: &str,
                  psbt: &bitcoin::psbt::Psbt,
                  memo: &str|
     -> anyhow::Result<wallet_core::RequestDigest> {
        let now = crate::ctx::now();
        let body = WithdrawalRequest::new(
            RequestId::new(id)?,
            s.requester.identity_public_key()?,
            psbt,
            now,
            3600,
            memo,
        )?;
        let signed = Signed::sign(s.group.id(), body, s.requester.as_ref())?;
        let document = format::encode(s.group.id(), &signed)?;
        Ok(rt.block_on(requester.submit(document))?.id)
    };

    // Carol first: she approves, and is killed before anything else happens.
    let mut carol = daemon("carol", &find("carol")?)?;
    let tag = hex::encode(&s.group.id().as_bytes()[..4]);
    let id = submit(
        &format!("svc-{tag}"),
        &s.honest,
        "weekly transfer, through the service",
    )?;
    (s.step)(&format!("requester submitted withdrawal {} over HTTPS", id));
    carol.wait_for("\"auto-approved\"", Duration::from_secs(60))?;
    carol.kill();
    (s.step)("carol's daemon approved under [auto_approve] — and was killed (SIGKILL)");
    let mut alice = daemon("alice", &find("alice")?)?;
    alice.wait_for("\"signed\"", Duration::from_secs(60))?;
    (s.step)("alice's daemon approved and signed; the withdrawal waits for carol's shares");
    let mut carol = daemon("carol", &find("carol")?)?;
    carol.wait_for("\"signed\"", Duration::from_secs(60))?;
    (s.step)(
        "carol's daemon restarted, found the packages waiting and signed (its nonces taken once)",
    );
    let status = rt.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let status = requester.status(&id).await?;
            if status.state.is_final() || Instant::now() > deadline {
                return Ok::<_, anyhow::Error>(status);
            }
            let _ = requester.work(0, Duration::from_millis(500)).await;
        }
    })?;
    if status.state != StateName::Finalized {
        bail!(
            "the service round ended {:?}: {:?}",
            status.state,
            status.reason
        );
    }
    let tx_hex = status.tx.context("no transaction")?;
    let tx: bitcoin::Transaction = bitcoin::consensus::deserialize(&hex::decode(&tx_hex)?)?;
    crate::demo::consensus_verify(&tx, &s.spent).map_err(crate::error::refused)?;
    fs::write(dir.join("withdrawal.tx"), format!("{tx_hex}\n"))?;
    (s.step)("finalized by the coordinator; verified by Bitcoin Core's consensus code");

    // A compromised requester asks to pay the attacker.
    let mut bob = daemon("bob", &find("bob")?)?;
    bob.wait_for("\"connected\"", Duration::from_secs(60))?;
    let theft = submit(
        &format!("svc-theft-{tag}"),
        &s.theft,
        "urgent: new exchange address",
    )?;
    (s.step)("attack: a compromised requester submits a withdrawal paying the attacker…");
    let mut refused_by = Vec::new();
    for (label, p) in [
        ("alice", &mut alice),
        ("bob", &mut bob),
        ("carol", &mut carol),
    ] {
        p.wait_for(
            &format!("\"id\":\"{theft}\",\"kind\":\"destination-allowlist\""),
            Duration::from_secs(60),
        )?;
        refused_by.push(label.to_owned());
        (s.step)(&format!(
            "  {label}'s daemon refused it: destination not on its allowlist"
        ));
    }
    let theft_status = rt.block_on(requester.status(&theft))?;
    if !theft_status.approved_by.is_empty() {
        bail!("the theft got an approval");
    }
    drop((alice, bob, carol, coordinator));
    Ok(Outcome {
        url,
        fingerprint,
        id: id.to_string(),
        txid: tx.compute_txid().to_string(),
        restarted: "carol".into(),
        theft_refused_by: refused_by,
    })
}
