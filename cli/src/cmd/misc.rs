//! `kura signer|requester init`, `kura wallet`, `kura audit`, `kura policy
//! check`, `kura hsm check`.

use std::path::Path;

use anyhow::Context;
use bitcoin::Network;
use wallet_core::audit::{AuditError, AuditLog};
use wallet_core::keystore::{self, files};
use wallet_core::policy::Policy;
use wallet_core::{audit, display};

use crate::home::{self, Home};
use crate::secrets::SecretArgs;
use crate::{refused, Reporter};

pub fn init(
    dir: &Path,
    role: wallet_core::ceremony::Role,
    label: &str,
    hsm: Option<&str>,
    secrets: &SecretArgs,
    r: &Reporter,
) -> anyhow::Result<()> {
    let home = Home::init(dir, role, label, hsm, secrets)?;
    let key = home.keystore.identity_public_key()?;
    let card = home::read_card(&dir.join("identity.json"))?;
    let fp = card.fingerprint();
    r.done(
        &format!("{role}-init"),
        serde_json::json!({"label": label, "identity": key.to_string(), "fingerprint": fp.to_string(), "keystore": home.keystore.describe(), "card": dir.join("identity.json").display().to_string()}),
        &format!(
            "{role} {label} ready ({}).\nidentity key {key}\ncard fingerprint {fp} (read it out to whoever receives your card)\nshare your identity card: {}",
            home.keystore.describe(),
            dir.join("identity.json").display()
        ),
    )
}

pub fn address(group: &Path, network: Network, r: &Reporter) -> anyhow::Result<()> {
    let group = home::read_group(group)?;
    let keys = group.taproot();
    let address = keys.address(network);
    r.done(
        "wallet-address",
        serde_json::json!({"address": address.to_string(), "network": network.to_string(), "internal_key": keys.internal_key().to_string(), "output_key": keys.output_key().to_string(), "descriptor": keys.descriptor()}),
        &format!("{address}\nwatch-only descriptor: {}", keys.descriptor()),
    )
}

pub fn descriptor(group: &Path, r: &Reporter) -> anyhow::Result<()> {
    let group = home::read_group(group)?;
    let d = group.taproot().descriptor();
    r.done(
        "wallet-descriptor",
        serde_json::json!({"descriptor": d}),
        &d,
    )
}

pub fn audit_verify(home_dir: &Path, secrets: &SecretArgs, r: &Reporter) -> anyhow::Result<()> {
    let home = Home::open_any(home_dir, secrets)?;
    let owner = home.keystore.identity_public_key()?;
    let path = home_dir.join("audit.jsonl");
    // A missing log is an empty one here; the anchor says whether it may be.
    let mut log = AuditLog::open(&path, &owner).map_err(|e| refused(format!("{e}")))?;
    // Under the signer's decision lock: the check may move the anchor up
    // to a line a crash left unanchored.
    let _guard = log.begin(home.keystore.as_ref()).map_err(|e| match e {
        AuditError::Keystore(k) => anyhow::Error::new(k),
        other => refused(other.to_string()),
    })?;
    let head = log.head_hash();
    r.done(
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

pub fn audit_reanchor(
    home_dir: &Path,
    reason: &str,
    yes: bool,
    secrets: &SecretArgs,
    r: &Reporter,
) -> anyhow::Result<()> {
    let reason = wallet_core::display::inert(reason).to_string();
    let home = Home::open(home_dir, "signer", secrets)?;
    let owner = home.keystore.identity_public_key()?;
    let path = home_dir.join("audit.jsonl");
    let mut log = AuditLog::open(&path, &owner).map_err(|e| refused(format!("{e}")))?;
    let anchor = home.keystore.anchor()?.audit;
    if anchor == log.head() {
        return r.done(
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
    if !yes {
        crate::confirm(
            &summary,
            "Re-anchor to the log as it is?",
            "re-anchor",
            "re-anchored",
        )?;
    }
    let old = log.reanchor(home.keystore.as_ref(), crate::now(), &reason)?;
    r.done(
        "audit-reanchor",
        serde_json::json!({"changed": true, "previous_seq": old.seq, "seq": log.head().seq}),
        &format!("re-anchored: {summary}"),
    )
}

pub fn audit_show(home_dir: &Path, r: &Reporter) -> anyhow::Result<()> {
    let card = home::read_card(&home_dir.join("identity.json"))?;
    let path = home_dir.join("audit.jsonl");
    let entries = audit::verify(&home::read_capped(&path, home::MAX_AUDIT_BYTES)?, &card.key)
        .map_err(|e| refused(format!("{}: {e}", path.display())))?;
    let mut text = String::new();
    for e in &entries {
        let event = serde_json::to_value(&e.record.event)?;
        text.push_str(&format!(
            "{:>4}  {}  {}  {}\n",
            e.seq,
            e.time,
            display::inert(event.get("type").and_then(|t| t.as_str()).unwrap_or("?")),
            display::inert(e.record.request_id.as_deref().unwrap_or("-"))
        ));
        if let Some(reason) = event.get("reason").and_then(|v| v.as_str()) {
            text.push_str(&format!("      {}\n", display::inert(reason)));
        }
    }
    r.done(
        "audit-show",
        serde_json::to_value(entries.iter().map(|e| &e.record).collect::<Vec<_>>())?,
        text.trim_end(),
    )
}

pub fn policy_check(path: &Path, r: &Reporter) -> anyhow::Result<()> {
    let text = String::from_utf8(home::read_capped(
        path,
        wallet_core::policy::MAX_POLICY_BYTES,
    )?)
    .with_context(|| format!("{} is not UTF-8 text", path.display()))?;
    let policy = Policy::from_toml(&text).map_err(|e| {
        refused(format!(
            "{}: {e}; a signer with this policy refuses everything",
            path.display()
        ))
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

pub fn policy_install(
    home_dir: &Path,
    file: &Path,
    yes: bool,
    secrets: &SecretArgs,
    r: &Reporter,
) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let new = Policy::from_toml(&text)
        .map_err(|e| refused(format!("{}: {e}; nothing was installed", file.display())))?;
    let home = Home::open(home_dir, "signer", secrets)?;
    let pinned = home.keystore.anchor()?.policy;
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
        crate::confirm(
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

pub fn hsm_check(uri: &str, r: &Reporter) -> anyhow::Result<()> {
    let caps = hsm_bridge::check::capabilities(&hsm_bridge::Pkcs11Uri::parse(uri)?)?;
    let missing: Vec<String> = caps
        .missing
        .iter()
        .map(|(m, why)| format!("{m} (to {why})"))
        .collect();
    if !caps.complete() {
        return Err(refused(format!(
            "token {:?} lacks: {}{}",
            caps.token,
            missing.join(", "),
            if caps.random {
                ""
            } else {
                "; C_GenerateRandom does not work"
            }
        )));
    }
    r.done(
        "hsm-check",
        serde_json::json!({"token": caps.token, "complete": true}),
        &format!("token {:?} offers every mechanism Kura needs", caps.token),
    )
}
