//! `kura mailbox send | fetch`: the files of a group's maintenance
//! ceremonies (refresh, repair) carried by the coordinator's ceremony
//! mailbox instead of by hand. The files are the same ones `kura refresh`
//! and `kura repair` write and read, each signed (and, where secret,
//! sealed) by its author: the coordinator carries them and can read or
//! forge none. The mailbox's scope is the home's group; only the roster's
//! members log in.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use kura_service::ceremony::MailboxClient;
use kura_service::CertFingerprint;
use wallet_core::ceremony::Roster;
use wallet_core::{format, IdentityPublicKey, Secp256k1Tr};

use crate::ctx::Ctx;
use crate::home::{self, Home};
use crate::secrets::SecretArgs;

#[derive(Debug, Subcommand)]
pub enum MailboxCmd {
    /// Post ceremony files (refresh proposals, endorsements, receipts, repair messages) to the group's mailbox.
    ///
    /// Example: kura mailbox send --home bob --mailbox https://127.0.0.1:8443 --mailbox-pin $PIN refresh.json --passphrase-file bob.pass
    Send(SendArgs),
    /// Fetch what the group's mailbox holds for this member into a directory (one file per document).
    ///
    /// Example: kura mailbox fetch --home alice --mailbox https://127.0.0.1:8443 --mailbox-pin $PIN --out-dir inbox --kind refresh-proposal --expect 1 --passphrase-file alice.pass
    Fetch(FetchArgs),
}

impl MailboxCmd {
    pub fn run(self, ctx: &Ctx) -> anyhow::Result<()> {
        match self {
            MailboxCmd::Send(a) => send(&a, ctx),
            MailboxCmd::Fetch(a) => fetch(&a, ctx),
        }
    }
}

#[derive(Debug, Args)]
pub struct MailboxArgs {
    /// The member's home (its group and roster name the mailbox and its members).
    #[arg(long, value_name = "DIR")]
    home: PathBuf,
    /// The coordinator's URL; repeat for coordinators sharing one certificate.
    #[arg(long = "mailbox", value_name = "URL", required = true)]
    mailbox: Vec<String>,
    /// The fingerprint of the coordinator's certificate.
    #[arg(long, value_name = "FINGERPRINT")]
    mailbox_pin: String,
    #[command(flatten)]
    secrets: SecretArgs,
}

#[derive(Debug, Args)]
pub struct SendArgs {
    #[command(flatten)]
    m: MailboxArgs,
    /// The one member (label) the files are for, e.g. a repair message's reader; for every member when absent.
    #[arg(long, value_name = "LABEL")]
    to: Option<String>,
    /// The files to post.
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub struct FetchArgs {
    #[command(flatten)]
    m: MailboxArgs,
    /// Where to write what arrived (KIND-from-LABEL-DIGEST.json; an identical file already there is kept).
    #[arg(long, value_name = "DIR")]
    out_dir: PathBuf,
    /// Only documents of this kind (e.g. refresh-proposal, refresh-endorsement, refresh-receipt, repair-message).
    #[arg(long, value_name = "KIND")]
    kind: Option<String>,
    /// Wait until at least this many documents (of --kind, from others, new since this home's last fetch of that kind) are there.
    #[arg(long, default_value_t = 0, value_name = "N")]
    expect: usize,
    /// Count and write everything the mailbox holds, not only what is new since the last fetch.
    #[arg(long)]
    all: bool,
    /// How long to wait for them.
    #[arg(long, default_value_t = 120, value_name = "SECONDS")]
    wait: u64,
}

/// The opened home, its roster, and a client of its group's mailbox.
struct Opened {
    home: Home,
    roster: Roster<Secp256k1Tr>,
    mailbox: MailboxClient,
}

fn open(m: &MailboxArgs) -> anyhow::Result<Opened> {
    let home = Home::open(&m.home, "signer", &m.secrets)?;
    let group = home::read_group(&m.home.join("group.json"))?;
    let roster = home::read_roster_doc(&m.home.join("roster.json"), &group)?;
    let pin: CertFingerprint = m
        .mailbox_pin
        .parse()
        .context("--mailbox-pin is not a certificate fingerprint")?;
    let bases: Vec<&str> = m.mailbox.iter().map(String::as_str).collect();
    let mailbox = MailboxClient::new(&bases, pin, *group.id(), home.keystore.clone())?;
    Ok(Opened {
        home,
        roster,
        mailbox,
    })
}

fn label_of(roster: &Roster<Secp256k1Tr>, key: &IdentityPublicKey) -> String {
    roster
        .member_by_key(key)
        .map_or_else(|| "unknown".to_owned(), |m| m.label.to_string())
}

fn send(a: &SendArgs, r: &Ctx) -> anyhow::Result<()> {
    let o = open(&a.m)?;
    let to = match &a.to {
        None => None,
        Some(label) => Some(
            o.roster
                .members
                .iter()
                .find(|m| m.label.as_str() == label)
                .map(|m| m.key)
                .with_context(|| {
                    format!(
                        "{} is not a member of this group",
                        wallet_core::display::inert_bounded(label, 64)
                    )
                })?,
        ),
    };
    let documents = a
        .files
        .iter()
        .map(|f| {
            let bytes = home::read(f)?;
            // Refused here with the file's name rather than by the mailbox.
            format::peek(&bytes)
                .with_context(|| format!("{} is not a Kura document", f.display()))?;
            Ok((f, bytes))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let rt = super::service::runtime()?;
    let mut posted = Vec::new();
    for (file, bytes) in documents {
        let answer = rt.block_on(o.mailbox.post(to.as_ref(), bytes))?;
        posted.push(serde_json::json!({"file": file.display().to_string(), "seq": answer.seq, "duplicate": answer.duplicate}));
    }
    let whom = a.to.as_deref().unwrap_or("every member");
    r.done(
        "mailbox-sent",
        serde_json::json!({"to": a.to, "posted": posted}),
        &format!(
            "{} file(s) posted to group {}'s mailbox for {whom}",
            posted.len(),
            o.mailbox.scope().short()
        ),
    )
}

/// Where the home remembers, per kind, the last mailbox message a fetch
/// delivered, so that a fetch for the next ceremony does not count the
/// documents of the last one. (Not a secret and not trusted: rolled back,
/// a fetch only delivers old documents again, which the ceremony commands
/// refuse.)
const CURSOR_FILE: &str = "mailbox-cursor.json";

#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct Cursor {
    epoch: String,
    seen: std::collections::BTreeMap<String, u64>,
}

impl Cursor {
    fn read(home: &Path) -> Cursor {
        home::read_capped(&home.join(CURSOR_FILE), 64 * 1024)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    /// The last message of `kind` delivered in `epoch` (0: none).
    fn seen(&self, epoch: Option<&str>, kind: &str) -> u64 {
        if epoch == Some(self.epoch.as_str()) {
            self.seen.get(kind).copied().unwrap_or(0)
        } else {
            0
        }
    }

    fn write(&self, home: &Path) -> anyhow::Result<()> {
        let bytes = serde_json::to_vec_pretty(self)?;
        wallet_core::keystore::files::write_atomic(&home.join(CURSOR_FILE), &bytes, true)
            .with_context(|| format!("cannot write {}", home.join(CURSOR_FILE).display()))
    }
}

fn fetch(a: &FetchArgs, r: &Ctx) -> anyhow::Result<()> {
    let o = open(&a.m)?;
    let me = o.home.keystore.identity_public_key()?;
    let group = *o.mailbox.scope();
    let rt = super::service::runtime()?;
    let deadline = Instant::now() + Duration::from_secs(a.wait);
    let wanted = |kind: &str| a.kind.as_deref().is_none_or(|k| k == kind);
    let cursor = if a.all {
        Cursor::default()
    } else {
        Cursor::read(&a.m.home)
    };
    let mut written: Vec<String> = Vec::new();
    let mut last: std::collections::BTreeMap<String, u64> = std::collections::BTreeMap::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        rt.block_on(o.mailbox.fetch(left.min(Duration::from_secs(5))))?;
        let epoch = rt.block_on(o.mailbox.epoch());
        written.clear();
        last.clear();
        for d in rt.block_on(o.mailbox.inbox()) {
            if d.from == me || !wanted(&d.kind) || d.seq <= cursor.seen(epoch.as_deref(), &d.kind) {
                continue;
            }
            // The mailbox's kind is a claim: the document's own envelope
            // must say the same kind and this group.
            match format::peek(&d.document) {
                Ok(e) if e.group == group && e.kind == d.kind => {}
                _ => continue,
            }
            written.push(keep(&a.out_dir, &o.roster, &d)?);
            let seq = last.entry(d.kind.clone()).or_default();
            *seq = (*seq).max(d.seq);
        }
        if written.len() >= a.expect {
            if let Some(epoch) = epoch {
                let mut next = if cursor.epoch == epoch {
                    cursor
                } else {
                    Cursor::default()
                };
                next.epoch = epoch;
                for (kind, seq) in &last {
                    let s = next.seen.entry(kind.clone()).or_default();
                    *s = (*s).max(*seq);
                }
                next.write(&a.m.home)?;
            }
            break;
        }
        if Instant::now() >= deadline {
            bail!(
                "after {}s, {} of the {} document(s) expected have arrived: their authors have not sent them, or the mailbox withheld them",
                a.wait,
                written.len(),
                a.expect
            );
        }
    }
    r.done(
        "mailbox-fetched",
        serde_json::json!({"files": written}),
        &format!(
            "{} document(s) in {}: check each with the kura refresh / kura repair command that reads it",
            written.len(),
            a.out_dir.display()
        ),
    )
}

/// Writes one delivered document; its name is built from checked parts
/// only (the kind is `[a-z0-9-]`, labels `[a-z0-9._-]`, the digest hex).
fn keep(
    dir: &Path,
    roster: &Roster<Secp256k1Tr>,
    d: &kura_service::ceremony::Delivered,
) -> anyhow::Result<String> {
    use sha2::Digest;
    let digest = hex::encode(sha2::Sha256::digest(&d.document));
    let envelope = format::peek(&d.document)?;
    let name = format!(
        "{}-from-{}-{}.json",
        envelope.kind,
        label_of(roster, &d.from),
        digest.get(..12).unwrap_or_default()
    );
    let path = dir.join(name);
    super::dkg::write_copy(&path, &d.document)?;
    Ok(path.display().to_string())
}
