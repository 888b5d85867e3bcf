//! `kura audit verify | reanchor | show`: a signer's audit log.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use wallet_core::audit::AuditLog;
use wallet_core::{audit, display};

use crate::ctx::Ctx;
use crate::error::refused_by;
use crate::home::{self, Home};
use crate::secrets::SecretArgs;

#[derive(Debug, Subcommand)]
pub enum AuditCmd {
    /// Verify the hash chain and signatures, and that the log is where its anchor in the keystore says; names the first broken entry.
    ///
    /// Example: kura audit verify --home alice --passphrase-file alice.pass
    Verify(VerifyArgs),
    /// Accept the log as it is and move the keystore's anchor to its end, after a log was honestly lost or damaged.
    /// Entries the anchor covered and the log lacks are forgotten (replay protection and the rolling window no
    /// longer see them); the change is recorded in the log. Needs the keystore's PIN or passphrase.
    ///
    /// Example: kura audit reanchor --home alice --reason "disk replaced, log restored from Monday's backup" --passphrase-file alice.pass
    Reanchor(ReanchorArgs),
    /// List the entries, times in UTC (after verifying their chain and signatures against the home's identity card).
    ///
    /// Example: kura audit show --home alice
    Show(ShowArgs),
}

impl AuditCmd {
    pub fn run(self, ctx: &Ctx) -> anyhow::Result<()> {
        match self {
            AuditCmd::Verify(a) => a.run(ctx),
            AuditCmd::Reanchor(a) => a.run(ctx),
            AuditCmd::Show(a) => a.run(ctx),
        }
    }
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The home whose log (HOME/audit.jsonl) is checked.
    #[arg(long, value_name = "DIR")]
    home: PathBuf,
    #[command(flatten)]
    secrets: SecretArgs,
}

impl VerifyArgs {
    fn run(self, ctx: &Ctx) -> anyhow::Result<()> {
        let home = Home::open_any(&self.home, &self.secrets)?;
        let owner = home.keystore.identity_public_key()?;
        let path = self.home.join("audit.jsonl");
        // A missing log is an empty one here; the anchor says whether it may
        // be. A log failing its checks is a refusal (error::exit_kind).
        let mut log = AuditLog::open(&path, &owner)?;
        // Under the signer's decision lock: the check may move the anchor up
        // to a line a crash left unanchored.
        let _guard = log.begin(home.keystore.as_ref())?;
        let head = log.head_hash();
        ctx.done(
            "audit-verify",
            serde_json::json!({"entries": log.entries().len(), "head": head, "anchored": true}),
            &format!(
                "{}: {} entries, chain and signatures intact, and the log ends where its anchor in {} says; head {head}",
                path.display(),
                log.entries().len(),
                home.keystore.describe()
            ),
        )
    }
}

#[derive(Debug, Args)]
pub struct ReanchorArgs {
    /// The signer's home.
    #[arg(long, value_name = "DIR")]
    home: PathBuf,
    /// Why, in words; recorded in the log.
    #[arg(long)]
    reason: String,
    /// Do it without asking (the change is still printed).
    #[arg(long)]
    yes: bool,
    #[command(flatten)]
    secrets: SecretArgs,
}

impl ReanchorArgs {
    fn run(self, ctx: &Ctx) -> anyhow::Result<()> {
        let reason = display::inert(&self.reason).to_string();
        let home = Home::open(&self.home, "signer", &self.secrets)?;
        let owner = home.keystore.identity_public_key()?;
        let path = self.home.join("audit.jsonl");
        let mut log = AuditLog::open(&path, &owner)?;
        let anchor = home.keystore.anchor()?.audit;
        if anchor == log.head() {
            return ctx.done(
                "audit-reanchor",
                serde_json::json!({"changed": false}),
                "the log already ends where its anchor says; nothing to do",
            );
        }
        let summary = format!(
            "the anchor in {} says {anchor}; {} ends at {}. Re-anchoring forgets every entry the log lacks: replay protection and the rolling window will not see them.",
            home.keystore.describe(),
            path.display(),
            log.head()
        );
        if !self.yes {
            crate::ctx::confirm(
                &summary,
                "Re-anchor to the log as it is?",
                "re-anchor",
                "re-anchored",
            )?;
        }
        let old = log.reanchor(home.keystore.as_ref(), crate::ctx::now(), &reason)?;
        ctx.done(
            "audit-reanchor",
            serde_json::json!({"changed": true, "previous_seq": old.seq, "seq": log.head().seq}),
            &format!("re-anchored: {summary}"),
        )
    }
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The home whose log (HOME/audit.jsonl) is listed; needs no secret.
    #[arg(long, value_name = "DIR")]
    home: PathBuf,
}

impl ShowArgs {
    fn run(self, ctx: &Ctx) -> anyhow::Result<()> {
        let card = home::read_card(&self.home.join("identity.json"))?;
        let path = self.home.join("audit.jsonl");
        let entries = audit::verify(&home::read_capped(&path, home::MAX_AUDIT_BYTES)?, &card.key)
            .map_err(|e| refused_by(e, path.display().to_string()))?;
        let mut text = String::new();
        for e in &entries {
            let event = serde_json::to_value(&e.record.event)?;
            text.push_str(&format!(
                "{:>4}  {}  {}  {}\n",
                e.seq,
                display::utc_time(e.time),
                display::inert(event.get("type").and_then(|t| t.as_str()).unwrap_or("?")),
                display::inert(e.record.request_id.as_deref().unwrap_or("-"))
            ));
            if let Some(reason) = event.get("reason").and_then(|v| v.as_str()) {
                text.push_str(&format!("      {}\n", display::inert(reason)));
            }
        }
        // JSON: each record as before, plus its sequence number and time in
        // Unix seconds and as readable UTC.
        let mut list = Vec::with_capacity(entries.len());
        for e in &entries {
            let mut v = serde_json::to_value(&e.record)?;
            if let Some(map) = v.as_object_mut() {
                map.insert("seq".into(), e.seq.into());
                map.insert("time".into(), e.time.into());
                map.insert("time_utc".into(), display::utc_time(e.time).into());
            }
            list.push(v);
        }
        ctx.done("audit-show", list.into(), text.trim_end())
    }
}
