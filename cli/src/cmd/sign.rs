//! The requester's `kura withdraw request` and the signer's
//! `kura sign review | approve | share`.

use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;

use anyhow::{bail, Context};
use wallet_core::audit::AuditLog;
use wallet_core::format;
use wallet_core::policy::Policy;
use wallet_core::withdrawal::request::{Signed, WithdrawalPackages, WithdrawalRequest};
use wallet_core::withdrawal::review::parse_psbt;
use wallet_core::withdrawal::signer::{Refusal, Signer};
use wallet_core::{keystore, Secp256k1Tr};

use crate::home::{self, Home};
use crate::secrets::SecretArgs;
use crate::{now, refused, Reporter};

#[allow(clippy::too_many_arguments)]
pub fn request(
    home_dir: &Path,
    group_path: &Path,
    psbt_path: &Path,
    id: &str,
    memo: &str,
    expires_in: u64,
    out: &Path,
    secrets: &SecretArgs,
    r: &Reporter,
) -> anyhow::Result<()> {
    let home = Home::open(home_dir, "requester", secrets)?;
    let group = home::read_group(group_path)?;
    let text = String::from_utf8(home::read(psbt_path)?)
        .context("the PSBT file is not text (base64 expected)")?;
    parse_psbt(&text)?;
    if id.is_empty() || id.len() > 128 || id.chars().any(char::is_control) {
        bail!("request id must be 1 to 128 printable characters");
    }
    let t = now();
    let body = WithdrawalRequest {
        request_id: id.to_owned(),
        requester: home.keystore.identity_public_key()?,
        created_at: t,
        expires_at: t.saturating_add(expires_in),
        memo: memo.to_owned(),
        psbt: text.trim().to_owned(),
    };
    let signed = Signed::sign(group.id(), body, home.keystore.as_ref())?;
    home::write_new(out, &format::encode(group.id(), &signed)?)?;
    r.done(
        "withdraw-request",
        serde_json::json!({"request_id": id, "expires_at": t.saturating_add(expires_in), "out": out.display().to_string()}),
        &format!("signed request {id} written to {}", out.display()),
    )
}

/// A signer's home, opened, with everything a `Signer` needs.
struct SignerHome {
    home: Home,
    group: wallet_core::PublicGroup<Secp256k1Tr>,
    identities: std::collections::BTreeMap<
        wallet_core::frost_core::Identifier<Secp256k1Tr>,
        wallet_core::identity::IdentityPublicKey,
    >,
    share: wallet_core::KeyShare<Secp256k1Tr>,
    policy: Policy,
    audit: AuditLog,
}

fn open_signer(home_dir: &Path, secrets: &SecretArgs) -> anyhow::Result<SignerHome> {
    let home = Home::open(home_dir, "signer", secrets)?;
    let group = home::read_group(&home.dir.join("group.json"))
        .context("this signer has no group yet: run `kura signer import` first")?;
    let identities = home::read_roster(&home.dir.join("roster.json"), &group)?;
    let me = home.keystore.identity_public_key()?;
    let (id, _) = identities
        .iter()
        .find(|(_, k)| **k == me)
        .context("this signer's identity key is not in the roster")?;
    let share = keystore::load_share::<Secp256k1Tr>(
        home.keystore.as_ref(),
        &group,
        &hex::encode(id.serialize()),
    )?;
    let policy_path = home.dir.join("policy.toml");
    let text = std::fs::read_to_string(&policy_path).with_context(|| {
        format!(
            "no policy at {}: without a policy this signer refuses everything",
            policy_path.display()
        )
    })?;
    let policy = Policy::from_toml(&text).with_context(|| {
        format!(
            "{} does not parse: this signer refuses everything until it does",
            policy_path.display()
        )
    })?;
    let audit = AuditLog::open(&home.dir.join("audit.jsonl"), &me)?;
    Ok(SignerHome {
        home,
        group,
        identities,
        share,
        policy,
        audit,
    })
}

impl SignerHome {
    fn signer(&mut self) -> Signer<'_> {
        Signer {
            group: &self.group,
            identities: &self.identities,
            share: &self.share,
            keystore: self.home.keystore.as_ref(),
            policy: &self.policy,
            audit: &mut self.audit,
        }
    }
}

fn read_request(
    path: &Path,
    group: &wallet_core::PublicGroup<Secp256k1Tr>,
) -> anyhow::Result<Signed<WithdrawalRequest>> {
    home::read_doc(path, group.id(), "a withdrawal request of this group")
}

fn refusal(e: Refusal) -> anyhow::Error {
    use wallet_core::audit::AuditError;
    match e {
        // A log that is behind, forked from or too far ahead of its anchor:
        // a refusal (exit 1), with the anchor's own explanation.
        Refusal::Audit(
            a @ (AuditError::BehindAnchor { .. }
            | AuditError::Forked { .. }
            | AuditError::AheadOfAnchor { .. }
            | AuditError::Broken { .. }
            | AuditError::Truncated { .. }),
        ) => refused(a.to_string()),
        Refusal::Audit(a) => anyhow::Error::new(a)
            .context("the audit log could not record the decision, so nothing was released"),
        Refusal::Format(f) => anyhow::Error::new(f),
        other => refused(other.to_string()),
    }
}

pub fn review(
    home_dir: &Path,
    request_path: &Path,
    secrets: &SecretArgs,
    r: &Reporter,
) -> anyhow::Result<()> {
    let mut s = open_signer(home_dir, secrets)?;
    let request = read_request(request_path, &s.group)?;
    let reviewed = s.signer().review(&request, now()).map_err(refusal)?;
    r.done(
        "sign-review",
        serde_json::json!({
            "request_id": reviewed.request_id,
            "verdict": "allowed by policy",
            "txid": reviewed.summary.txid.to_string(),
            "fee_sat": reviewed.summary.fee.to_sat(),
            "outputs": reviewed.summary.outputs.iter().map(|o| serde_json::json!({"destination": o.destination.to_string(), "amount_sat": o.amount.to_sat(), "change": o.is_change})).collect::<Vec<_>>(),
        }),
        &format!("request {} from the requester's key, memo {:?}\n{}\nverdict: allowed by this signer's policy", reviewed.request_id, request.body.memo, reviewed.summary),
    )
}

pub fn approve(
    home_dir: &Path,
    request_path: &Path,
    out: &Path,
    yes: bool,
    secrets: &SecretArgs,
    r: &Reporter,
) -> anyhow::Result<()> {
    let mut s = open_signer(home_dir, secrets)?;
    let request = read_request(request_path, &s.group)?;
    if !yes {
        let reviewed = s.signer().review(&request, now()).map_err(refusal)?;
        if !std::io::stdin().is_terminal() {
            bail!("refusing to approve without confirmation: run on a terminal, or pass --yes for automation");
        }
        eprintln!("{}\n", reviewed.summary);
        eprint!(
            "Approve request {} as {}? [y/N] ",
            reviewed.request_id, s.home.config.label
        );
        std::io::stderr().flush().ok();
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            return Err(refused("not approved by the operator"));
        }
    }
    let approval = s.signer().approve(&request, now()).map_err(refusal)?;
    home::write_new(out, &format::encode(s.group.id(), &approval)?)?;
    r.done(
        "sign-approve",
        serde_json::json!({"request_id": approval.body.request_id, "participant": s.home.config.label.as_str(), "out": out.display().to_string()}),
        &format!("{} approved request {}; approval written to {}", s.home.config.label, approval.body.request_id, out.display()),
    )
}

pub fn share(
    home_dir: &Path,
    request_path: &Path,
    packages_path: &Path,
    out: &Path,
    secrets: &SecretArgs,
    r: &Reporter,
) -> anyhow::Result<()> {
    let mut s = open_signer(home_dir, secrets)?;
    let request = read_request(request_path, &s.group)?;
    let packages: WithdrawalPackages =
        format::decode_for_group(&home::read(packages_path)?, s.group.id()).map_err(|e| {
            refused(format!(
                "{} is not acceptable signing packages: {e}",
                packages_path.display()
            ))
        })?;
    let shares = s
        .signer()
        .sign(&request, &packages, now())
        .map_err(refusal)?;
    home::write_new(out, &format::encode(s.group.id(), &shares)?)?;
    r.done(
        "sign-share",
        serde_json::json!({"request_id": request.body.request_id, "participant": s.home.config.label.as_str(), "out": out.display().to_string()}),
        &format!("{} released its signature shares for request {}; written to {}", s.home.config.label, request.body.request_id, out.display()),
    )
}
