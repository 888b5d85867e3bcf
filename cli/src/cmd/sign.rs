//! The requester's `kura withdraw request` and the signer's
//! `kura sign review | approve | share`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use wallet_core::audit::AuditLog;
use wallet_core::display;
use wallet_core::format;
use wallet_core::policy::Policy;
use wallet_core::withdrawal::request::{RequestId, Signed, WithdrawalPackages, WithdrawalRequest};
use wallet_core::withdrawal::review;
use wallet_core::withdrawal::signer::{Refusal, Signer};
use wallet_core::{keystore, Secp256k1Tr};

use crate::ctx::{now, Ctx};
use crate::error::{refused, refused_by};
use crate::home::{self, Home};
use crate::secrets::SecretArgs;

#[derive(Debug, Subcommand)]
pub enum WithdrawCmd {
    /// Sign a withdrawal request for a PSBT (binary, base64 or hex; `-` reads stdin).
    ///
    /// The PSBT is first checked as every signer will check it (own coins,
    /// witness_utxo, sighash type, amounts); what every signer would refuse
    /// is refused here too, unless --unchecked.
    ///
    /// Example: kura withdraw request --home ops --group group.json --psbt w.psbt --id w-42 --out w-42.request.json --passphrase-env OPS_PASS
    Request(RequestArgs),
    /// Sign a withdrawal request and submit it to the coordinator service; prints the withdrawal's id.
    ///
    /// Example: kura withdraw submit --home ops --group group.json --psbt w.psbt --id w-42 --coordinator https://127.0.0.1:8443 --coordinator-pin sha256:… --passphrase-env OPS_PASS
    Submit(super::service::SubmitArgs),
    /// A submitted withdrawal's progress; with --wait, until it ends, then the final PSBT and transaction written out.
    ///
    /// Example: kura withdraw status ID --wait --home ops --group group.json --coordinator https://127.0.0.1:8443 --coordinator-pin sha256:… --tx-out w-42.tx --passphrase-env OPS_PASS
    Status(super::service::StatusArgs),
}

impl WithdrawCmd {
    pub fn run(self, ctx: &Ctx) -> anyhow::Result<()> {
        match self {
            WithdrawCmd::Request(a) => request(&a, ctx),
            WithdrawCmd::Submit(a) => a.run(ctx),
            WithdrawCmd::Status(a) => a.run(ctx),
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum SignCmd {
    /// Show what the request really spends and the policy verdict (writes only the audit log).
    ///
    /// Example: kura sign review --home alice w-42.request.json --passphrase-file alice.pass
    Review(ReviewArgs),
    /// Approve a request: commitments for every input, signed (asks for confirmation on a terminal).
    ///
    /// Example: kura sign approve --home alice w-42.request.json --out w-42.alice.approval.json --yes --passphrase-file alice.pass
    Approve(ApproveArgs),
    /// Check the coordinator's packages and release signature shares.
    ///
    /// Example: kura sign share --home alice w-42.request.json w-42.packages.json --out w-42.alice.shares.json --passphrase-file alice.pass
    Share(ShareArgs),
}

impl SignCmd {
    pub fn run(self, ctx: &Ctx) -> anyhow::Result<()> {
        match self {
            SignCmd::Review(a) => review(&a, ctx),
            SignCmd::Approve(a) => approve(&a, ctx),
            SignCmd::Share(a) => share(&a, ctx),
        }
    }
}

/// What a withdrawal request is made of, and who signs it.
#[derive(Debug, Args)]
pub struct RequestSpec {
    /// The requester's home.
    #[arg(long, value_name = "DIR")]
    home: PathBuf,
    /// The group file the withdrawal spends from.
    #[arg(long, value_name = "FILE")]
    group: PathBuf,
    /// The PSBT (binary BIP174, base64 or hex), with witness_utxo on every input; `-` reads standard input.
    #[arg(long, value_name = "FILE")]
    psbt: PathBuf,
    /// A unique request id; signers honour each id once (1-128 of A-Z a-z 0-9 . _ : / -).
    #[arg(long)]
    id: String,
    /// A note for the reviewers (at most 1024 characters).
    #[arg(long, default_value = "")]
    memo: String,
    /// Seconds until signers refuse the request (at most 7 days; signers' policies default to 24 h).
    #[arg(long, default_value_t = 3600, value_name = "SECONDS")]
    expires_in: u64,
    /// Sign the request even if the PSBT fails the checks every signer applies.
    #[arg(long)]
    unchecked: bool,
    /// How many addresses of each chain to search for the group's own inputs and change that the PSBT leaves without a derivation (BIP371 fields are then filled in; at most 100000).
    #[arg(long, default_value_t = 1000, value_name = "N")]
    lookahead: u32,
    #[command(flatten)]
    secrets: SecretArgs,
}

#[derive(Debug, Args)]
pub struct RequestArgs {
    #[command(flatten)]
    spec: RequestSpec,
    /// Where to write the signed request.
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
}

#[derive(Debug, Args)]
pub struct ReviewArgs {
    /// The signer's home.
    #[arg(long, value_name = "DIR")]
    home: PathBuf,
    /// The signed withdrawal request.
    request: PathBuf,
    #[command(flatten)]
    secrets: SecretArgs,
}

#[derive(Debug, Args)]
pub struct ApproveArgs {
    /// The signer's home.
    #[arg(long, value_name = "DIR")]
    home: PathBuf,
    /// The signed withdrawal request.
    request: PathBuf,
    /// Where to write this signer's approval.
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// Approve without asking (automation).
    #[arg(long)]
    yes: bool,
    #[command(flatten)]
    secrets: SecretArgs,
}

#[derive(Debug, Args)]
pub struct ShareArgs {
    /// The signer's home.
    #[arg(long, value_name = "DIR")]
    home: PathBuf,
    /// The signed withdrawal request.
    request: PathBuf,
    /// The coordinator's signing packages.
    packages: PathBuf,
    /// Where to write this signer's signature shares.
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    #[command(flatten)]
    secrets: SecretArgs,
}

/// A signed request, with the home and group it was made with.
pub struct SignedRequest {
    pub home: Home,
    pub group: wallet_core::PublicGroup<Secp256k1Tr>,
    /// The derivations filled in for the group's own inputs and change.
    pub filled: wallet_core::hd::Filled,
    pub request_id: String,
    pub expires_at: u64,
    /// The `withdrawal-request` document.
    pub document: Vec<u8>,
}

impl RequestSpec {
    /// Checks the PSBT as every signer will, then signs the request with
    /// the requester's keystore.
    pub fn sign(&self) -> anyhow::Result<SignedRequest> {
        let a = self;
        let (group_path, psbt_path, id, memo) = (&a.group, &a.psbt, a.id.as_str(), a.memo.as_str());
        let (expires_in, unchecked) = (a.expires_in, a.unchecked);
        display::check_request_id(id)?;
        display::check_memo(memo)?;
        let max = wallet_core::policy::MAX_REQUEST_LIFETIME_HOURS * 3600;
        if expires_in == 0 || expires_in > max {
            bail!("--expires-in {expires_in}: a request may live 1 to {max} seconds (7 days); signers' policies allow 24 h unless they say otherwise");
        }
        let group = home::read_group(group_path)?;
        let bytes = home::read_input(psbt_path, wallet_core::psbt::MAX_PSBT_TEXT_BYTES)?;
        let mut psbt = wallet_core::psbt::decode(&bytes)
            .with_context(|| format!("{} is not a PSBT Kura can read", psbt_path.display()))?;
        // The group's own inputs and change, where the wallet that made the
        // PSBT wrote no derivation: every signer derives them again.
        let filled = wallet_core::hd::fill_psbt(&mut psbt, &group.xpub(), a.lookahead)?;
        // What every signer checks, whatever its policy: the signer-independent
        // part of review (the network only changes how addresses are written).
        let early = review::review(&psbt, &group.xpub(), bitcoin::Network::Bitcoin)
            .map_err(|e| e.to_string())
            .and_then(|summary| {
                wallet_core::policy::check_any_policy(&summary).map_err(|e| e.to_string())
            });
        if let Err(e) = early {
            if !unchecked {
                return Err(refused(format!(
                    "every signer will refuse this PSBT: {e}; fix the PSBT (or pass --unchecked to sign the request anyway)"
                )));
            }
            crate::ctx::warn(&format!("every signer will refuse this PSBT: {e}"));
        }
        let home = Home::open(&a.home, "requester", &a.secrets)?;
        let t = now();
        let expires_at = t
            .checked_add(expires_in)
            .context("--expires-in goes past the end of time")?;
        let body = WithdrawalRequest {
            request_id: RequestId::new(id)?,
            requester: home.keystore.identity_public_key()?,
            created_at: t,
            expires_at,
            memo: memo.to_owned(),
            psbt: wallet_core::psbt::encode_base64(&psbt),
        };
        let signed = Signed::sign(group.id(), body, home.keystore.as_ref())?;
        let document = format::encode(group.id(), &signed)?;
        Ok(SignedRequest {
            home,
            group,
            filled,
            request_id: id.to_owned(),
            expires_at,
            document,
        })
    }
}

fn request(a: &RequestArgs, r: &Ctx) -> anyhow::Result<()> {
    let signed = a.spec.sign()?;
    let (id, out) = (&signed.request_id, &a.out);
    home::write_new(out, &signed.document)?;
    let paths = |v: &[(usize, wallet_core::hd::ChildPath)]| {
        v.iter()
            .map(|(i, p)| serde_json::json!({"index": i, "path": p.to_string()}))
            .collect::<Vec<_>>()
    };
    let f = &signed.filled;
    let note = if f.inputs.is_empty() && f.outputs.is_empty() {
        String::new()
    } else {
        format!(
            " (derivations filled in for {} input(s) and {} change output(s))",
            f.inputs.len(),
            f.outputs.len()
        )
    };
    r.done(
        "withdraw-request",
        serde_json::json!({"request_id": id, "expires_at": signed.expires_at, "out": out.display().to_string(), "filled_inputs": paths(&f.inputs), "filled_outputs": paths(&f.outputs)}),
        &format!("signed request {id} written to {}{note}", out.display()),
    )
}

/// A signer's home, opened, with everything a `Signer` needs.
pub struct SignerHome {
    home: Home,
    group: wallet_core::PublicGroup<Secp256k1Tr>,
    signer: Signer,
}

pub fn open_signer(home_dir: &Path, secrets: &SecretArgs) -> anyhow::Result<SignerHome> {
    let home = Home::open(home_dir, "signer", secrets)?;
    let group = home::read_group(&home.dir.join("group.json"))
        .context("this signer has no group yet: run `kura signer import` first")?;
    let identities = home::read_roster(&home.dir.join("roster.json"), &group)?;
    let me = home.keystore.identity_public_key()?;
    let (id, _) = identities
        .iter()
        .find(|(_, k)| **k == me)
        .context("this signer's identity key is not in the roster")?;
    let share = keystore::load_share::<Secp256k1Tr>(home.keystore.as_ref(), &group, id)?;
    let policy_path = home.dir.join("policy.toml");
    let bytes = home::read_capped(&policy_path, wallet_core::policy::MAX_POLICY_BYTES)
        .with_context(|| {
            format!(
                "no readable policy at {}: without a policy this signer refuses everything",
                policy_path.display()
            )
        })?;
    let text = String::from_utf8(bytes)
        .with_context(|| format!("{} is not UTF-8 text", policy_path.display()))?;
    let policy = Policy::from_toml(&text).with_context(|| {
        format!(
            "{} does not parse: this signer refuses everything until it does",
            policy_path.display()
        )
    })?;
    let audit = AuditLog::open(&home.dir.join("audit.jsonl"), &me)?;
    let signer = Signer::new(
        group.clone(),
        identities,
        share,
        home.keystore.clone(),
        policy,
        audit,
    )?;
    Ok(SignerHome {
        home,
        group,
        signer,
    })
}

impl SignerHome {
    fn signer(&mut self) -> &mut Signer {
        &mut self.signer
    }

    /// The signer alone, as a daemon holds it.
    pub fn into_signer(self) -> Signer {
        self.signer
    }
}

fn read_request(
    path: &Path,
    group: &wallet_core::PublicGroup<Secp256k1Tr>,
) -> anyhow::Result<Signed<WithdrawalRequest>> {
    home::read_doc(path, group.id(), "a withdrawal request of this group")
}

/// A signer's refusal, kept typed (`error::exit_kind` decides its exit
/// code by variant). An audit log that could not record the decision (not
/// one that fails its checks, which is a refusal) says nothing was released.
fn refusal(e: Refusal) -> anyhow::Error {
    use wallet_core::audit::AuditError;
    match e {
        Refusal::Audit(
            AuditError::BehindAnchor { .. }
            | AuditError::Forked { .. }
            | AuditError::AheadOfAnchor { .. }
            | AuditError::Broken { .. }
            | AuditError::Truncated { .. }
            | AuditError::NotOwner { .. },
        ) => anyhow::Error::new(e),
        Refusal::Audit(_) => anyhow::Error::new(e)
            .context("the audit log could not record the decision, so nothing was released"),
        other => anyhow::Error::new(other),
    }
}

/// The review as JSON: everything the text shows.
fn review_json(reviewed: &wallet_core::withdrawal::signer::Reviewed) -> serde_json::Value {
    let s = &reviewed.summary;
    serde_json::json!({
        "request_id": reviewed.request_id,
        "requester": reviewed.requester_label,
        "created_at": reviewed.created_at,
        "expires_at": reviewed.expires_at,
        "memo": reviewed.memo,
        "verdict": "allowed by policy",
        "txid": s.txid.to_string(),
        "version": s.version,
        "lock_time": s.lock_time.to_consensus_u32(),
        "lock_time_enforced": s.lock_time_enforced(),
        "inputs": s.inputs.iter().map(|i| serde_json::json!({"outpoint": i.outpoint.to_string(), "amount_sat": i.amount.to_sat(), "sequence": i.sequence.0, "path": i.key.path().to_string()})).collect::<Vec<_>>(),
        "fee_sat": s.fee.to_sat(),
        "leaving_sat": s.amount_leaving().to_sat(),
        "outputs": s.outputs.iter().map(|o| serde_json::json!({"destination": o.destination.to_string(), "amount_sat": o.amount.to_sat(), "change": o.is_change, "path": o.path.as_ref().map(ToString::to_string)})).collect::<Vec<_>>(),
    })
}

fn review(a: &ReviewArgs, r: &Ctx) -> anyhow::Result<()> {
    let mut s = open_signer(&a.home, &a.secrets)?;
    let request = read_request(&a.request, &s.group)?;
    let reviewed = s.signer().review(&request, now()).map_err(refusal)?;
    r.done("sign-review", review_json(&reviewed), &reviewed.render())
}

fn approve(a: &ApproveArgs, r: &Ctx) -> anyhow::Result<()> {
    let out = &a.out;
    let mut s = open_signer(&a.home, &a.secrets)?;
    let request = read_request(&a.request, &s.group)?;
    if !a.yes {
        let reviewed = s.signer().review(&request, now()).map_err(refusal)?;
        // The same review `sign review` shows, memo and verdict included.
        crate::ctx::confirm(
            &format!("{}\n", reviewed.render()),
            &format!(
                "Approve request {} as {}?",
                reviewed.request_id, s.home.config.label
            ),
            "approve",
            "approved",
        )?;
    }
    let approval = s.signer().approve(&request, now()).map_err(refusal)?;
    home::write_new(out, &format::encode(s.group.id(), &approval)?)?;
    r.done(
        "sign-approve",
        serde_json::json!({"request_id": approval.body.request_id, "participant": s.home.config.label.as_str(), "out": out.display().to_string()}),
        &format!("{} approved request {}; approval written to {}", s.home.config.label, approval.body.request_id, out.display()),
    )
}

fn share(a: &ShareArgs, r: &Ctx) -> anyhow::Result<()> {
    let (packages_path, out) = (&a.packages, &a.out);
    let mut s = open_signer(&a.home, &a.secrets)?;
    let request = read_request(&a.request, &s.group)?;
    let packages: WithdrawalPackages =
        format::decode_for_group(&home::read(packages_path)?, s.group.id()).map_err(|e| {
            refused_by(
                e,
                format!(
                    "{} is not acceptable signing packages",
                    packages_path.display()
                ),
            )
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
