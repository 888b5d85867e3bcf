//! `kura signer|requester init`, `kura wallet`, `kura audit`, `kura policy
//! check`, `kura hsm check`.

use std::path::Path;

use anyhow::Context;
use bitcoin::Network;
use wallet_core::audit;
use wallet_core::policy::Policy;

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

pub fn audit_verify(home_dir: &Path, r: &Reporter) -> anyhow::Result<()> {
    let card = home::read_card(&home_dir.join("identity.json"))?;
    let path = home_dir.join("audit.jsonl");
    let bytes = home::read(&path)?;
    let entries = audit::verify(&bytes, &card.key)
        .map_err(|e| refused(format!("{}: {e}", path.display())))?;
    let head = match entries.last() {
        Some(e) => e.line_hash()?,
        None => audit::genesis_hash(&card.key),
    };
    r.done(
        "audit-verify",
        serde_json::json!({"entries": entries.len(), "head": head}),
        &format!("{}: {} entries, chain and signatures intact; head {head} (keep it elsewhere to detect truncation)", path.display(), entries.len()),
    )
}

pub fn audit_show(home_dir: &Path, r: &Reporter) -> anyhow::Result<()> {
    let card = home::read_card(&home_dir.join("identity.json"))?;
    let path = home_dir.join("audit.jsonl");
    let entries = audit::verify(&home::read(&path)?, &card.key)
        .map_err(|e| refused(format!("{}: {e}", path.display())))?;
    let mut text = String::new();
    for e in &entries {
        let event = serde_json::to_value(&e.record.event)?;
        text.push_str(&format!(
            "{:>4}  {}  {}  {}\n",
            e.seq,
            e.time,
            event.get("type").and_then(|t| t.as_str()).unwrap_or("?"),
            e.record.request_id.as_deref().unwrap_or("-")
        ));
        if let Some(reason) = event.get("reason").and_then(|v| v.as_str()) {
            text.push_str(&format!("      {reason}\n"));
        }
    }
    r.done(
        "audit-show",
        serde_json::to_value(entries.iter().map(|e| &e.record).collect::<Vec<_>>())?,
        text.trim_end(),
    )
}

pub fn policy_check(path: &Path, r: &Reporter) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let policy = Policy::from_toml(&text).map_err(|e| {
        refused(format!(
            "{}: {e}; a signer with this policy refuses everything",
            path.display()
        ))
    })?;
    r.done(
        "policy-check",
        serde_json::json!({"network": policy.network().to_string(), "requesters": policy.requesters().len(), "destinations": policy.destinations().len(), "digest": hex::encode(policy.digest())}),
        &format!(
            "{}: valid ({} network, {} requester(s), {} allowlisted destination(s)); digest {}",
            path.display(),
            policy.network(),
            policy.requesters().len(),
            policy.destinations().len(),
            hex::encode(policy.digest())
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
