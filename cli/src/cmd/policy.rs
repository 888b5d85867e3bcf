//! `kura policy check | install`: a signer's policy file.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Subcommand};
use wallet_core::display;
use wallet_core::keystore::{self, files};
use wallet_core::policy::Policy;

use crate::ctx::Ctx;
use crate::error::{refused, refused_by};
use crate::home::{self, Home};
use crate::network::NetworkArg;
use crate::secrets::SecretArgs;

#[derive(Debug, Subcommand)]
pub enum PolicyCmd {
    /// Parse and validate a policy file.
    ///
    /// Example: kura policy check alice/policy.toml
    Check(CheckArgs),
    /// Install a policy: show what changes, pin its digest in the keystore and copy it to HOME/policy.toml.
    /// Only an installed policy is in force; a policy file edited on disk makes the signer refuse everything.
    ///
    /// Example: kura policy install --home alice new-policy.toml --passphrase-file alice.pass
    Install(InstallArgs),
}

impl PolicyCmd {
    pub fn run(self, ctx: &Ctx) -> anyhow::Result<()> {
        match self {
            PolicyCmd::Check(a) => policy_check(&a.file, ctx),
            PolicyCmd::Install(a) => policy_install(&a.home, &a.file, a.yes, &a.secrets, ctx),
        }
    }
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The policy file (TOML) to check.
    file: PathBuf,
}

#[derive(Debug, Args)]
pub struct InstallArgs {
    /// The signer's home.
    #[arg(long, value_name = "DIR")]
    home: PathBuf,
    /// The policy file to install.
    file: PathBuf,
    /// Install without asking (for automation; the change is still printed).
    #[arg(long)]
    yes: bool,
    #[command(flatten)]
    secrets: SecretArgs,
}

fn policy_check(path: &Path, r: &Ctx) -> anyhow::Result<()> {
    let text = String::from_utf8(home::read_capped(
        path,
        wallet_core::policy::MAX_POLICY_BYTES,
    )?)
    .with_context(|| format!("{} is not UTF-8 text", path.display()))?;
    let policy = Policy::from_toml(&text).map_err(|e| {
        refused_by(
            e,
            format!(
                "{} (a signer with this policy refuses everything)",
                path.display()
            ),
        )
    })?;
    let t = policy.transaction();
    let lock = |v: u64, what: &str| {
        if v == 0 {
            format!("no {what}")
        } else {
            format!("{what} up to {v}")
        }
    };
    r.done(
        "policy-check",
        serde_json::json!({
            "network": policy.network().to_string(),
            "requesters": policy.requesters().len(),
            "destinations": policy.destinations().len(),
            "digest": hex::encode(policy.digest()),
            "rolling_window_fee_sat": policy.limits().rolling_window_fee_sat(),
            "versions": t.versions(),
            "max_lock_height": t.max_lock_height(),
            "max_lock_ahead_hours": t.max_lock_ahead_hours(),
            "relative_locks": t.relative_locks(),
            "allow_dust": t.allow_dust(),
            "max_request_lifetime_secs": policy.max_request_lifetime_secs(),
        }),
        &format!(
            "{}: valid ({} network, {} requester(s), {} allowlisted destination(s)); digest {}\n\
             transactions: version(s) {:?}; {}; {}; relative locks {}; dust {}; requests valid at most {} h",
            path.display(),
            policy.network(),
            policy.requesters().len(),
            policy.destinations().len(),
            hex::encode(policy.digest()),
            t.versions(),
            lock(u64::from(t.max_lock_height()), "height lock"),
            lock(t.max_lock_ahead_hours(), "time lock (hours ahead)"),
            if t.relative_locks() { "allowed" } else { "refused" },
            if t.allow_dust() { "allowed" } else { "refused" },
            policy.max_request_lifetime_secs() / 3600
        ),
    )
}

/// Every setting of a policy as `path = value` lines, from its canonical
/// form (so nothing the digest covers is left out). List entries are named
/// by their key or address, so adding one does not shift the others.
fn policy_lines(policy: &Policy) -> Vec<String> {
    fn walk(path: &str, v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(map) => {
                for (k, v) in map {
                    let p = if path.is_empty() {
                        k.clone()
                    } else {
                        format!("{path}.{k}")
                    };
                    walk(&p, v, out);
                }
            }
            serde_json::Value::Array(items) if items.iter().all(|i| i.is_object()) => {
                for (i, item) in items.iter().enumerate() {
                    let name = ["key", "address"]
                        .iter()
                        .find_map(|k| item.get(*k).and_then(|x| x.as_str()))
                        .map_or_else(|| i.to_string(), str::to_owned);
                    walk(&format!("{path}[{name}]"), item, out);
                }
            }
            other => out.push(format!("{path} = {}", display::inert(&other.to_string()))),
        }
    }
    let mut out = Vec::new();
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(policy.canonical_json()) {
        walk("", &v, &mut out);
    }
    out
}

/// What changes from `old` to `new`, line by line, for the operator: every
/// setting removed (`-`) or added (`+`); with no `old`, everything `new` allows.
fn policy_changes(old: Option<&Policy>, new: &Policy) -> Vec<String> {
    let new_lines = policy_lines(new);
    let Some(old) = old else {
        return new_lines.into_iter().map(|l| format!("+ {l}")).collect();
    };
    let old_lines = policy_lines(old);
    let mut out: Vec<String> = old_lines
        .iter()
        .filter(|l| !new_lines.contains(l))
        .map(|l| format!("- {l}"))
        .collect();
    out.extend(
        new_lines
            .iter()
            .filter(|l| !old_lines.contains(l))
            .map(|l| format!("+ {l}")),
    );
    out
}

fn policy_install(
    home_dir: &Path,
    file: &Path,
    yes: bool,
    secrets: &SecretArgs,
    r: &Ctx,
) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let new = Policy::from_toml(&text)
        .map_err(|e| refused_by(e, format!("{} (nothing was installed)", file.display())))?;
    let home = Home::open(home_dir, "signer", secrets)?;
    if let Some(want) = home.config.network {
        let have = NetworkArg::of(new.network());
        if have != want {
            return Err(refused(format!(
                "{} is for {have}, but {} is a home for {want} (its kura.json); nothing was installed",
                file.display(),
                home_dir.display()
            )));
        }
    }
    let pinned = home
        .keystore
        .anchor()?
        .policy
        .map(wallet_core::PolicyDigest::from_bytes);
    let installed_path = home_dir.join("policy.toml");
    // The policy in force now: the file, if it is the pinned one.
    let current = std::fs::read_to_string(&installed_path)
        .ok()
        .and_then(|t| Policy::from_toml(&t).ok())
        .filter(|p| Some(p.digest()) == pinned);
    let digest = new.digest();
    if pinned == Some(digest) && current.is_some() {
        return r.done(
            "policy-install",
            serde_json::json!({"digest": hex::encode(digest), "changed": false}),
            &format!(
                "this policy (digest {}) is already installed",
                hex::encode(digest)
            ),
        );
    }
    let mut changes = policy_changes(current.as_ref(), &new);
    if pinned.is_some() && current.is_none() {
        changes.insert(
            0,
            format!(
                "(the installed policy {} is not readable at {}: it was edited or removed)",
                pinned.map(hex::encode).unwrap_or_default(),
                installed_path.display()
            ),
        );
    }
    let summary = changes.join("\n  ");
    if !yes {
        crate::ctx::confirm(
            &format!(
                "Installing {} in {}:\n  {summary}",
                file.display(),
                home_dir.display()
            ),
            "Install this policy?",
            "install a policy",
            "installed",
        )?;
    }
    // Pin first: a crash before the copy leaves a signer that refuses
    // everything (fail closed) until this command is run again.
    keystore::pin_policy(home.keystore.as_ref(), digest)?;
    files::write_atomic(&installed_path, text.as_bytes(), true)?;
    r.done(
        "policy-install",
        serde_json::json!({"digest": hex::encode(digest), "changed": true, "changes": changes, "previous": pinned.map(hex::encode)}),
        &format!(
            "installed {} as {} (digest {})\n  {summary}",
            file.display(),
            installed_path.display(),
            hex::encode(digest)
        ),
    )
}
