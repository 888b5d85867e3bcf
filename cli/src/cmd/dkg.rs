//! `kura dkg round1 | round2 | finish` and `kura fingerprint`: distributed
//! key generation as files. The protocol — identifiers, the ceremony id and
//! fingerprint, signatures, sealing, the round-1-set binding — is
//! `wallet_core::ceremony::dkg`; this module reads and writes files and
//! talks to the operator.

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use rand_core::OsRng;
use wallet_core::ceremony::dkg::{self, Ceremony, Confirmed, Round1Document, Round2Document};
use wallet_core::ceremony::state::{MemberState, Step};
use wallet_core::ceremony::{CeremonyError, IdentityCard};
use wallet_core::{format, Secp256k1Tr};

use crate::home::{self, Home};
use crate::secrets::SecretArgs;
use crate::{ceremony_err, Reporter};

type Suite = Secp256k1Tr;

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

pub fn fingerprint(
    threshold: Option<u16>,
    cards: &[PathBuf],
    dealer: Option<&Path>,
    nonce_hex: Option<&str>,
    r: &Reporter,
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
        lines.push(format!("ceremony fingerprint {}", c.fingerprint()));
        json.insert("ceremony".into(), c.fingerprint().to_string().into());
    }
    r.done("fingerprint", json.into(), &lines.join("\n"))
}

pub fn round1(
    home_dir: &Path,
    c: &Confirmed<Suite>,
    out: &Path,
    secrets: &SecretArgs,
    r: &Reporter,
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
    round1_files: &[PathBuf],
    out_dir: &Path,
    secrets: &SecretArgs,
    r: &Reporter,
) -> anyhow::Result<()> {
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

#[allow(clippy::too_many_arguments)]
pub fn finish(
    home_dir: &Path,
    c: &Ceremony<Suite>,
    round1_files: &[PathBuf],
    round2_files: &[PathBuf],
    out_dir: &Path,
    secrets: &SecretArgs,
    r: &Reporter,
) -> anyhow::Result<()> {
    let home = Home::open(home_dir, "signer", secrets)?;
    let r1 = round1_docs(c, round1_files)?;
    let r2: Vec<Round2Document<Suite>> = round2_files
        .iter()
        .map(|f| home::read_doc(f, c.id(), "a round-2 message of this ceremony"))
        .collect::<anyhow::Result<_>>()?;
    let ks = home.keystore.as_ref();
    let done = dkg::finish(c, ks, &r1, &r2).map_err(ceremony_err)?;
    let group_doc = done.group.to_document()?;
    let roster_doc = done.roster.to_document(done.group.id())?;
    let label = &home.config.label;
    write_copy(&out_dir.join(format!("group-{label}.json")), &group_doc)?;
    write_copy(&out_dir.join(format!("roster-{label}.json")), &roster_doc)?;
    MemberState::new(&home.dir)
        .install(ks, &done.share, &done.group, &done.roster, &mut crash_point)
        .map_err(ceremony_err)?;
    dkg::forget(c, ks).map_err(ceremony_err)?;
    let address = done.group.taproot().address(bitcoin::Network::Regtest);
    r.done(
        "dkg-finish",
        serde_json::json!({"group": done.group.id().to_string(), "fingerprint": done.fingerprint.to_string(), "address_regtest": address.to_string()}),
        &format!(
            "{label} holds its share of group {}\ngroup fingerprint {} — compare it with every other participant's before funding\naddress (regtest) {address}",
            done.group.id().short(),
            done.fingerprint,
        ),
    )
}
