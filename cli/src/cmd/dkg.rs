//! `kura dkg round1 | round2 | finish` and `kura fingerprint`: distributed
//! key generation as files. The protocol — identifiers, the ceremony id and
//! fingerprint, signatures, sealing, the round-1-set binding — is
//! `wallet_core::ceremony::dkg`; this module reads and writes files and
//! talks to the operator.

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Subcommand};
use rand_core::OsRng;
use wallet_core::ceremony::dkg::{self, Ceremony, Confirmed, Round1Document, Round2Document};
use wallet_core::ceremony::state::{MemberState, Step};
use wallet_core::ceremony::{CeremonyError, IdentityCard};
use wallet_core::{format, Secp256k1Tr};

use crate::ctx::Ctx;
use crate::error::ceremony_err;
use crate::home::{self, Home};
use crate::network::{self, NetworkArg};
use crate::secrets::SecretArgs;

type Suite = Secp256k1Tr;

#[derive(Debug, Subcommand)]
pub enum DkgCmd {
    /// Round 1: confirm the ceremony fingerprint, then this signer's signed broadcast (send it to everyone).
    ///
    /// Example: kura dkg round1 --home alice -t 2 --card alice/identity.json --card bob/identity.json --card carol/identity.json --ceremony $C --fingerprint $FP --out r1-alice.json --passphrase-file alice.pass
    Round1(Round1Args),
    /// Round 2: check everyone's round-1 broadcasts; one sealed message per peer.
    ///
    /// Example: kura dkg round2 --home alice -t 2 --card … --ceremony $C --out-dir to-send r1-*.json --passphrase-file alice.pass
    Round2(Round2Args),
    /// Finish: open the messages sealed to this signer, verify them, keep the share; writes group and roster.
    ///
    /// Example: kura dkg finish --home alice -t 2 --card … --ceremony $C --round1 r1-*.json --round2 round2-*-to-alice.json --out-dir done --passphrase-file alice.pass
    Finish(FinishArgs),
    /// All three rounds through a ceremony mailbox (`kura coordinator relay`, or a coordinator's), instead of files.
    ///
    /// Every message is still signed and sealed end to end: the mailbox learns nothing and can forge nothing. The
    /// messages sent and received are kept under --out-dir, so a run stopped half-way can be started again.
    ///
    /// Example: kura dkg run --home alice -t 2 --card … --ceremony $C --fingerprint $FP --mailbox https://127.0.0.1:8444 --mailbox-pin $PIN --out-dir done --passphrase-file alice.pass
    Run(RunArgs),
}

impl DkgCmd {
    pub fn run(self, ctx: &Ctx) -> anyhow::Result<()> {
        match self {
            DkgCmd::Round1(a) => {
                let c = &a.c;
                let cer = ceremony(c.threshold, &c.cards, &c.ceremony)?;
                let cer = confirm(cer, c.fingerprint.as_deref())?;
                round1(&c.home, &cer, &a.out, &c.secrets, ctx)
            }
            DkgCmd::Round2(a) => {
                let c = &a.c;
                let outcome = Round2Out {
                    round1_files: &a.round1,
                    out_dir: &a.out_dir,
                };
                round2(&c.home, &c.ceremony()?, &outcome, &c.secrets, ctx)
            }
            DkgCmd::Finish(a) => finish(&a, ctx),
            DkgCmd::Run(a) => run(&a, ctx),
        }
    }
}

// The ceremony every DKG command names.
#[derive(Debug, Args)]
pub struct CeremonyArgs {
    /// The signer's home.
    #[arg(long, value_name = "DIR")]
    home: PathBuf,
    /// How many signers must take part in each signature (t of n).
    #[arg(long, short = 't')]
    threshold: u16,
    /// Every participant's identity card (repeat), this signer's included.
    #[arg(long = "card", value_name = "FILE", required = true)]
    cards: Vec<PathBuf>,
    /// 64 hex digits the convener picked at random and gave everyone.
    #[arg(long, value_name = "HEX")]
    ceremony: String,
    /// The ceremony fingerprint the convener announced over another channel
    /// (round 1 needs it, or asks on a terminal; later rounds check it if given).
    #[arg(long, value_name = "FP")]
    fingerprint: Option<String>,
    #[command(flatten)]
    secrets: SecretArgs,
}

impl CeremonyArgs {
    /// The ceremony, its fingerprint checked when one is given.
    fn ceremony(&self) -> anyhow::Result<Ceremony<Suite>> {
        let c = ceremony(self.threshold, &self.cards, &self.ceremony)?;
        if let Some(f) = &self.fingerprint {
            c.fingerprint().confirm(f).map_err(ceremony_err)?;
        }
        Ok(c)
    }
}

#[derive(Debug, Args)]
pub struct Round1Args {
    #[command(flatten)]
    c: CeremonyArgs,
    /// Where to write this signer's round-1 broadcast.
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
}

#[derive(Debug, Args)]
pub struct Round2Args {
    #[command(flatten)]
    c: CeremonyArgs,
    /// Directory for the round-2 messages, one per peer (round2-FROM-to-TO.json).
    #[arg(long, value_name = "DIR")]
    out_dir: PathBuf,
    /// Every participant's round-1 broadcast, this signer's included.
    #[arg(required = true, value_name = "ROUND1")]
    round1: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub struct FinishArgs {
    #[command(flatten)]
    c: CeremonyArgs,
    /// Every participant's round-1 broadcast (repeat).
    #[arg(long = "round1", value_name = "FILE", required = true)]
    round1: Vec<PathBuf>,
    /// Each round-2 message sealed to this signer (repeat).
    #[arg(long = "round2", value_name = "FILE", required = true)]
    round2: Vec<PathBuf>,
    /// Directory for copies of the group and roster (group-LABEL.json, roster-LABEL.json).
    #[arg(long, value_name = "DIR")]
    out_dir: PathBuf,
    /// The network of the address printed; by default the home's (`network` in its kura.json, else its installed
    /// policy's), else bitcoin. A value that contradicts the home's is an error.
    #[arg(long, value_enum)]
    network: Option<NetworkArg>,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    c: CeremonyArgs,
    /// The ceremony mailbox's URL; repeat for coordinators sharing one certificate.
    #[arg(long = "mailbox", value_name = "URL", required = true)]
    mailbox: Vec<String>,
    /// The fingerprint of the mailbox's certificate, as its operator announced it.
    #[arg(long, value_name = "FINGERPRINT")]
    mailbox_pin: String,
    /// Directory for the messages sent and received (under ceremony-ID/) and the group and roster copies.
    #[arg(long, value_name = "DIR")]
    out_dir: PathBuf,
    /// How long to wait for the other participants' messages, in each round.
    #[arg(long, default_value_t = 600, value_name = "SECONDS")]
    timeout: u64,
    /// The network of the address printed (as for `kura dkg finish`).
    #[arg(long, value_enum)]
    network: Option<NetworkArg>,
}

#[derive(Debug, Args)]
pub struct FingerprintArgs {
    /// The threshold t: with --ceremony, prints the ceremony fingerprint alone on stdout (the cards on stderr).
    #[arg(long, short = 't')]
    threshold: Option<u16>,
    /// Identity cards (repeat).
    #[arg(long = "card", value_name = "FILE", required = true)]
    cards: Vec<PathBuf>,
    /// The dealer's identity card, for a dealer ceremony.
    #[arg(long, value_name = "FILE")]
    dealer_card: Option<PathBuf>,
    /// The ceremony nonce (64 hex digits); with -t, prints the ceremony fingerprint.
    #[arg(long, value_name = "HEX")]
    ceremony: Option<String>,
}

impl FingerprintArgs {
    pub fn run(self, ctx: &Ctx) -> anyhow::Result<()> {
        fingerprint(
            self.threshold,
            &self.cards,
            self.dealer_card.as_deref(),
            self.ceremony.as_deref(),
            ctx,
        )
    }
}

/// Where round 2 reads from and writes to.
pub struct Round2Out<'a> {
    pub round1_files: &'a [PathBuf],
    pub out_dir: &'a Path,
}

/// Parses the convener's 64-hex-digit nonce.
pub fn nonce(nonce_hex: &str) -> anyhow::Result<[u8; 32]> {
    hex::decode(nonce_hex)
        .ok()
        .and_then(|b| b.try_into().ok())
        .context(
            "--ceremony must be 64 hex digits (32 bytes the convener picks at random and shares)",
        )
}

pub fn read_cards(cards: &[PathBuf]) -> anyhow::Result<Vec<IdentityCard>> {
    cards.iter().map(|p| home::read_card(p)).collect()
}

pub fn ceremony(
    threshold: u16,
    cards: &[PathBuf],
    nonce_hex: &str,
) -> anyhow::Result<Ceremony<Suite>> {
    Ceremony::new(threshold, read_cards(cards)?, nonce(nonce_hex)?).map_err(ceremony_err)
}

/// Confirms the ceremony's fingerprint: the value of `--fingerprint`, or
/// typed at a terminal after the operator compared it with the one the
/// convener announced over another channel.
pub fn confirm(c: Ceremony<Suite>, fingerprint: Option<&str>) -> anyhow::Result<Confirmed<Suite>> {
    let typed = match fingerprint {
        Some(f) => f.to_owned(),
        None if std::io::stdin().is_terminal() && std::io::stderr().is_terminal() => {
            let mut err = std::io::stderr();
            writeln!(err, "ceremony fingerprint from your cards: {}", c.fingerprint())?;
            write!(
                err,
                "type the fingerprint the convener announced (by phone or in person) to confirm: "
            )?;
            err.flush()?;
            let mut line = String::new();
            std::io::stdin().lock().read_line(&mut line)?;
            line
        }
        None => anyhow::bail!(
            "this step needs the ceremony fingerprint the convener announced over another channel: pass --fingerprint FP (see `kura fingerprint` for yours)"
        ),
    };
    c.confirm(typed.trim()).map_err(ceremony_err)
}

/// Debug builds only: `KURA_CRASH_AT=<Step>` kills the process with
/// SIGKILL at that point of a state change (the crash tests use it).
pub fn crash_point(step: Step) -> Result<(), CeremonyError> {
    if cfg!(debug_assertions)
        && std::env::var("KURA_CRASH_AT").is_ok_and(|at| at == format!("{step:?}"))
    {
        let _ = std::process::Command::new("kill")
            .args(["-9", &std::process::id().to_string()])
            .status();
        std::process::abort();
    }
    Ok(())
}

/// Writes a public copy; an identical existing file (a rerun) is fine.
pub fn write_copy(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    if std::fs::read(path).is_ok_and(|b| b == bytes) {
        return Ok(());
    }
    home::write_new(path, bytes)
}

fn fingerprint(
    threshold: Option<u16>,
    cards: &[PathBuf],
    dealer: Option<&Path>,
    nonce_hex: Option<&str>,
    r: &Ctx,
) -> anyhow::Result<()> {
    let cards = read_cards(cards)?;
    let mut lines: Vec<String> = cards
        .iter()
        .map(|c| {
            format!(
                "card {:<16} {:<9} {}",
                c.label.as_str(),
                c.role.as_str(),
                c.fingerprint()
            )
        })
        .collect();
    let dealer = dealer.map(home::read_card).transpose()?;
    if let Some(d) = &dealer {
        lines.push(format!(
            "card {:<16} {:<9} {}",
            d.label.as_str(),
            d.role.as_str(),
            d.fingerprint()
        ));
    }
    let mut json = serde_json::Map::new();
    json.insert(
        "cards".into(),
        cards
            .iter()
            .chain(dealer.iter())
            .map(|c| serde_json::json!({"label": c.label.as_str(), "role": c.role.as_str(), "fingerprint": c.fingerprint().to_string()}))
            .collect(),
    );
    if let (Some(t), Some(n)) = (threshold, nonce_hex) {
        let c = match dealer {
            None => Ceremony::<Suite>::new(t, cards, nonce(n)?),
            Some(d) => Ceremony::<Suite>::with_dealer(t, cards, d, nonce(n)?),
        }
        .map_err(ceremony_err)?;
        json.insert("ceremony".into(), c.fingerprint().to_string().into());
        // The one value asked for on stdout ($(kura fingerprint …)); the
        // cards it covers on stderr, for the person comparing them.
        lines.push("ceremony fingerprint (on stdout):".into());
        r.note(&lines.join("\n"));
        return r.done("fingerprint", json.into(), &c.fingerprint().to_string());
    }
    r.done("fingerprint", json.into(), &lines.join("\n"))
}

fn round1(
    home_dir: &Path,
    c: &Confirmed<Suite>,
    out: &Path,
    secrets: &SecretArgs,
    r: &Ctx,
) -> anyhow::Result<()> {
    let home = Home::open(home_dir, "signer", secrets)?;
    let doc = dkg::round1(c, home.keystore.as_ref(), &mut OsRng).map_err(ceremony_err)?;
    home::write_new(out, &format::encode(c.id(), &doc)?)?;
    r.done(
        "dkg-round1",
        serde_json::json!({"ceremony": c.id().to_string(), "fingerprint": c.fingerprint().to_string(), "out": out.display().to_string()}),
        &format!(
            "round-1 broadcast for ceremony {} (fingerprint confirmed) written to {}: send it to every participant",
            c.fingerprint(),
            out.display()
        ),
    )
}

fn round1_docs(
    c: &Ceremony<Suite>,
    files: &[PathBuf],
) -> anyhow::Result<Vec<Round1Document<Suite>>> {
    files
        .iter()
        .map(|f| home::read_doc(f, c.id(), "a round-1 message of this ceremony"))
        .collect()
}

pub fn round2(
    home_dir: &Path,
    c: &Ceremony<Suite>,
    io: &Round2Out<'_>,
    secrets: &SecretArgs,
    r: &Ctx,
) -> anyhow::Result<()> {
    let (round1_files, out_dir) = (io.round1_files, io.out_dir);
    let home = Home::open(home_dir, "signer", secrets)?;
    let docs = round1_docs(c, round1_files)?;
    let out = dkg::round2(c, home.keystore.as_ref(), &docs, &mut OsRng).map_err(ceremony_err)?;
    let mut written = Vec::new();
    for (to, doc) in &out.messages {
        // Labels are checked ([a-z0-9._-], no ".."): safe in a file name.
        let path = out_dir.join(format!("round2-{}-to-{to}.json", home.config.label));
        home::write_new(&path, &format::encode(c.id(), doc)?)?;
        written.push(path.display().to_string());
    }
    let set = hex::encode(out.round1_set);
    r.done(
        "dkg-round2",
        serde_json::json!({"ceremony": c.id().to_string(), "round1_set": set, "out": written}),
        &format!(
            "{} signed, sealed round-2 messages written to {} (round-1 set {})",
            written.len(),
            out_dir.display(),
            set.get(..16).unwrap_or_default()
        ),
    )
}

fn finish(a: &FinishArgs, r: &Ctx) -> anyhow::Result<()> {
    let named = network::resolve(a.network, Some(&a.c.home))?;
    let c = &a.c.ceremony()?;
    let home = Home::open(&a.c.home, "signer", &a.c.secrets)?;
    let r1 = round1_docs(c, &a.round1)?;
    let r2: Vec<Round2Document<Suite>> = a
        .round2
        .iter()
        .map(|f| home::read_doc(f, c.id(), "a round-2 message of this ceremony"))
        .collect::<anyhow::Result<_>>()?;
    finish_with(&home, c, &r1, &r2, &a.out_dir, named, r)
}

/// Finishes with the messages gathered (from files or a mailbox): keeps
/// the share, writes the group and roster copies, reports.
fn finish_with(
    home: &Home,
    c: &Ceremony<Suite>,
    r1: &[Round1Document<Suite>],
    r2: &[Round2Document<Suite>],
    out_dir: &Path,
    named: NetworkArg,
    r: &Ctx,
) -> anyhow::Result<()> {
    let ks = home.keystore.as_ref();
    let done = dkg::finish(c, ks, r1, r2).map_err(ceremony_err)?;
    let group_doc = done.group.to_document()?;
    let roster_doc = done.roster.to_document(done.group.id())?;
    let label = &home.config.label;
    write_copy(&out_dir.join(format!("group-{label}.json")), &group_doc)?;
    write_copy(&out_dir.join(format!("roster-{label}.json")), &roster_doc)?;
    MemberState::new(&home.dir)
        .install(ks, &done.share, &done.group, &done.roster, &mut crash_point)
        .map_err(ceremony_err)?;
    dkg::forget(c, ks).map_err(ceremony_err)?;
    let address = done.group.taproot().address(named.into());
    r.done(
        "dkg-finish",
        serde_json::json!({"group": done.group.id().to_string(), "fingerprint": done.fingerprint.to_string(), "address": address.to_string(), "network": named.name()}),
        &format!(
            "{label} holds its share of group {}\ngroup fingerprint {} — compare it with every other participant's before funding\naddress ({named}) {address}",
            done.group.id().short(),
            done.fingerprint,
        ),
    )
}

/// `kura dkg run`: the rounds of round1 / round2 / finish with a mailbox
/// as the courier. What this signer sends is written under the work
/// directory before it is posted, and read from there on a rerun (round 1
/// and round 2 each run once per ceremony: their state is take-once), so a
/// run stopped at any point is started again with the same command — except
/// in the instant between a round keeping its state and its files being
/// written, after which the ceremony is started again under a new id (the
/// keystore refuses a round run twice; nothing secret is lost or exposed).
fn run(a: &RunArgs, r: &Ctx) -> anyhow::Result<()> {
    use kura_service::ceremony::{self as over, MailboxClient};
    let named = network::resolve(a.network, Some(&a.c.home))?;
    let cer = a.c.ceremony()?;
    let confirmed = confirm(cer.clone(), a.c.fingerprint.as_deref())?;
    let home = Home::open(&a.c.home, "signer", &a.c.secrets)?;
    let ks = home.keystore.as_ref();
    let label = home.config.label.clone();
    let me = confirmed.me(ks).map_err(ceremony_err)?;
    let work = a.out_dir.join(format!("ceremony-{}", cer.id().short()));
    let pin: kura_service::CertFingerprint = a
        .mailbox_pin
        .parse()
        .context("--mailbox-pin is not a certificate fingerprint")?;
    let bases: Vec<&str> = a.mailbox.iter().map(String::as_str).collect();
    let mailbox = MailboxClient::new(&bases, pin, *cer.id(), home.keystore.clone())?;
    let timeout = std::time::Duration::from_secs(a.timeout);
    let mine1 = work.join(format!("round1-{label}.json"));
    let round1: Round1Document<Suite> = if mine1.exists() {
        home::read_doc(&mine1, cer.id(), "this signer's round-1 message")?
    } else {
        let doc = dkg::round1(&confirmed, ks, &mut OsRng).map_err(ceremony_err)?;
        home::write_new(&mine1, &format::encode(cer.id(), &doc)?)?;
        doc
    };
    r.note(&format!(
        "{label}: round 1 sent to the mailbox; waiting for every participant's"
    ));
    let rt = super::service::runtime()?;
    let set = rt.block_on(async {
        over::post_round1(&mailbox, &cer, &round1).await?;
        over::round1_set(&mailbox, &cer, timeout).await
    })?;
    let peers: Vec<_> = cer.members().iter().filter(|(id, _)| **id != me).collect();
    let sent2: Vec<PathBuf> = peers
        .iter()
        .map(|(_, card)| work.join(format!("round2-{label}-to-{}.json", card.label)))
        .collect();
    let outgoing: Vec<Round2Document<Suite>> = if sent2.iter().all(|p| p.exists()) {
        sent2
            .iter()
            .map(|p| home::read_doc(p, cer.id(), "this signer's round-2 message"))
            .collect::<anyhow::Result<_>>()?
    } else {
        let out = dkg::round2(&cer, ks, &set, &mut OsRng).map_err(ceremony_err)?;
        // All or none: a rerun finding some but not all would run round 2
        // again, which its take-once state refuses.
        let files = out
            .messages
            .iter()
            .map(|(to, doc)| {
                let path = work.join(format!("round2-{label}-to-{to}.json"));
                Ok((path, format::encode(cer.id(), doc)?))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let refs: Vec<(&Path, &[u8])> = files
            .iter()
            .map(|(p, b)| (p.as_path(), b.as_slice()))
            .collect();
        home::write_all_new(&refs)?;
        out.messages.into_iter().map(|(_, d)| d).collect()
    };
    r.note(&format!(
        "{label}: round 2 sealed to each peer and sent; waiting for the shares sealed to {label}"
    ));
    let received = rt.block_on(async {
        over::post_round2(&mailbox, &cer, &outgoing).await?;
        over::round2_for(&mailbox, &cer, me, timeout).await
    })?;
    finish_with(&home, &cer, &set, &received, &a.out_dir, named, r)?;
    // A record of every participant's broadcast, once finishing checked
    // them all. (Labels are checked, [a-z0-9._-] without "..": safe in a
    // file name.)
    for doc in &set {
        if let Some(card) = cer.members().get(&doc.body.from) {
            write_copy(
                &work.join(format!("round1-{}.json", card.label)),
                &format::encode(cer.id(), doc)?,
            )?;
        }
    }
    Ok(())
}
