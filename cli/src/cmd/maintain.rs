//! `kura refresh propose | endorse | apply | activate`, the refresh DKG
//! `kura refresh fingerprint | round1 | round2 | finish`, and `kura repair
//! deltas | sigma | recover`: share refresh (with the quorum's consent,
//! staged, then activated) and share repair as files. The protocol is
//! `wallet_core::ceremony::maintain`; state changes are
//! `wallet_core::ceremony::state`.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Subcommand};
use rand_core::OsRng;
use wallet_core::ceremony::dkg::{self, Ceremony, Round1Document, Round2Document};
use wallet_core::ceremony::maintain::{
    self, RefreshEndorsement, RefreshProposal, RefreshReceipt, RepairMessage,
};
use wallet_core::ceremony::state::MemberState;
use wallet_core::ceremony::{group_fingerprint, own_entry};
use wallet_core::frost_core::Identifier;
use wallet_core::{format, keystore, KeyShare, PublicGroup, Secp256k1Tr};

use super::dkg::{crash_point, write_copy};
use crate::ctx::Ctx;
use crate::error::ceremony_err;
use crate::home::{self, Home, Roster};
use crate::secrets::SecretArgs;

type Suite = Secp256k1Tr;

#[derive(Debug, Subcommand)]
pub enum RefreshCmd {
    /// Propose a refresh (a member, or the group's dealer with --group/--roster): one sealed refreshing share per member.
    ///
    /// Example: kura refresh propose --home bob --out refresh.json --passphrase-file bob.pass
    Propose(ProposeArgs),
    /// Consent to a member's refresh proposal (signed); t members must consent.
    ///
    /// Example: kura refresh endorse --home carol refresh.json --out endorse-carol.json --passphrase-file carol.pass
    Endorse(EndorseArgs),
    /// Check the proposal and its consent, stage this signer's refreshed share (the current one stays in use), write a signed receipt.
    ///
    /// Example: kura refresh apply --home alice refresh.json --endorsement endorse-carol.json --out receipt-alice.json --passphrase-file alice.pass
    Apply(ApplyArgs),
    /// Refresh by DKG (no proposer learns any refreshing share; every member takes part): the ceremony fingerprint to announce, alone on stdout.
    ///
    /// Example: kura refresh fingerprint --home alice --ceremony $C
    Fingerprint(RefreshFingerprintArgs),
    /// Refresh by DKG, round 1: confirm the fingerprint, then a signed zero-sharing broadcast.
    ///
    /// Example: kura refresh round1 --home alice --ceremony $C --fingerprint $FP --out rr1-alice.json --passphrase-file alice.pass
    Round1(RefreshRound1Args),
    /// Refresh by DKG, round 2: check every member's round-1; one signed, sealed message per peer.
    ///
    /// Example: kura refresh round2 --home alice --ceremony $C --out-dir rsent rr1-*.json --passphrase-file alice.pass
    Round2(RefreshRound2Args),
    /// Refresh by DKG, finish: stage the refreshed share, write a signed receipt.
    ///
    /// Example: kura refresh finish --home alice --ceremony $C --round1 rr1-*.json --round2 rsent/round2-bob-to-alice.json … --out receipt-alice.json --passphrase-file alice.pass
    Finish(RefreshFinishArgs),
    /// Switch to the staged share and group once every member's receipt is given (crash-safe; rerun completes it).
    ///
    /// Example: kura refresh activate --home alice --receipt receipt-alice.json --receipt receipt-bob.json --receipt receipt-carol.json --passphrase-file alice.pass
    Activate(ActivateArgs),
}

impl RefreshCmd {
    pub fn run(self, ctx: &Ctx) -> anyhow::Result<()> {
        match self {
            RefreshCmd::Propose(a) => refresh_propose(&a, ctx),
            RefreshCmd::Endorse(a) => refresh_endorse(&a, ctx),
            RefreshCmd::Apply(a) => refresh_apply(&a, ctx),
            RefreshCmd::Fingerprint(a) => refresh_fingerprint(&a.home, &a.ceremony, ctx),
            RefreshCmd::Round1(a) => refresh_round1(&a, ctx),
            RefreshCmd::Round2(a) => refresh_round2(&a, ctx),
            RefreshCmd::Finish(a) => refresh_finish(&a, ctx),
            RefreshCmd::Activate(a) => refresh_activate(&a, ctx),
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum RepairCmd {
    /// Helper, step 1: one signed, sealed delta per helper (the helper list includes this signer).
    ///
    /// Example: kura repair deltas --home bob --lost alice --helper bob --helper carol --out-dir repair --passphrase-file bob.pass
    Deltas(DeltasArgs),
    /// Helper, step 2: check the deltas sealed to this signer and seal a signed sigma to the lost member.
    ///
    /// Example: kura repair sigma --home bob --lost alice --helper bob --helper carol repair/delta-*-to-bob.json --out repair/sigma-bob.json --passphrase-file bob.pass
    Sigma(SigmaArgs),
    /// The lost member: check the helpers' sigmas and rebuild the share (checked against the group).
    ///
    /// Example: kura repair recover --home alice --helper bob --helper carol repair/sigma-bob.json repair/sigma-carol.json --passphrase-file alice.pass
    Recover(RecoverArgs),
}

impl RepairCmd {
    pub fn run(self, ctx: &Ctx) -> anyhow::Result<()> {
        match self {
            RepairCmd::Deltas(a) => repair_deltas(&a, ctx),
            RepairCmd::Sigma(a) => repair_sigma(&a, ctx),
            RepairCmd::Recover(a) => repair_recover(&a, ctx),
        }
    }
}

#[derive(Debug, Args)]
pub struct ProposeArgs {
    /// The proposer's home: a member's, or the group's dealer's.
    #[arg(long, value_name = "DIR")]
    home: PathBuf,
    /// The group file, for a dealer's proposal (with --roster).
    #[arg(long, value_name = "FILE", requires = "roster")]
    group: Option<PathBuf>,
    /// The roster file, for a dealer's proposal (with --group).
    #[arg(long, value_name = "FILE", requires = "group")]
    roster: Option<PathBuf>,
    /// Where to write the proposal.
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    #[command(flatten)]
    secrets: SecretArgs,
}

#[derive(Debug, Args)]
pub struct EndorseArgs {
    /// The endorsing member's home.
    #[arg(long, value_name = "DIR")]
    home: PathBuf,
    /// The refresh proposal to consent to.
    proposal: PathBuf,
    /// Where to write the endorsement.
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    #[command(flatten)]
    secrets: SecretArgs,
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// The member's home.
    #[arg(long, value_name = "DIR")]
    home: PathBuf,
    /// The refresh proposal.
    proposal: PathBuf,
    /// A member's endorsement of the proposal (repeat).
    #[arg(long = "endorsement", value_name = "FILE")]
    endorsements: Vec<PathBuf>,
    /// The receipt to give every other member.
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    #[command(flatten)]
    secrets: SecretArgs,
}

#[derive(Debug, Args)]
pub struct RefreshFingerprintArgs {
    /// A member's home (only its public group and roster are read; no secret needed).
    #[arg(long, value_name = "DIR")]
    home: PathBuf,
    /// 64 hex digits the convener picked at random and gave every member.
    #[arg(long, value_name = "HEX")]
    ceremony: String,
}

#[derive(Debug, Args)]
pub struct RefreshRound1Args {
    /// The member's home.
    #[arg(long, value_name = "DIR")]
    home: PathBuf,
    /// 64 hex digits the convener picked at random and gave every member.
    #[arg(long, value_name = "HEX")]
    ceremony: String,
    /// The refresh ceremony fingerprint the convener announced (else asked on a terminal).
    #[arg(long, value_name = "FP")]
    fingerprint: Option<String>,
    /// Where to write this member's round-1 broadcast.
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    #[command(flatten)]
    secrets: SecretArgs,
}

#[derive(Debug, Args)]
pub struct RefreshRound2Args {
    /// The member's home.
    #[arg(long, value_name = "DIR")]
    home: PathBuf,
    /// 64 hex digits the convener picked at random and gave every member.
    #[arg(long, value_name = "HEX")]
    ceremony: String,
    /// Directory for the round-2 messages, one per peer.
    #[arg(long, value_name = "DIR")]
    out_dir: PathBuf,
    /// Every member's round-1 broadcast, this member's included.
    #[arg(required = true, value_name = "ROUND1")]
    round1: Vec<PathBuf>,
    #[command(flatten)]
    secrets: SecretArgs,
}

#[derive(Debug, Args)]
pub struct RefreshFinishArgs {
    /// The member's home.
    #[arg(long, value_name = "DIR")]
    home: PathBuf,
    /// 64 hex digits the convener picked at random and gave every member.
    #[arg(long, value_name = "HEX")]
    ceremony: String,
    /// Every member's round-1 broadcast (repeat).
    #[arg(long = "round1", value_name = "FILE", required = true)]
    round1: Vec<PathBuf>,
    /// Each round-2 message sealed to this member (repeat).
    #[arg(long = "round2", value_name = "FILE", required = true)]
    round2: Vec<PathBuf>,
    /// Where to write this member's signed receipt.
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    #[command(flatten)]
    secrets: SecretArgs,
}

#[derive(Debug, Args)]
pub struct ActivateArgs {
    /// The member's home.
    #[arg(long, value_name = "DIR")]
    home: PathBuf,
    /// Every member's receipt (repeat).
    #[arg(long = "receipt", value_name = "FILE")]
    receipts: Vec<PathBuf>,
    #[command(flatten)]
    secrets: SecretArgs,
}

#[derive(Debug, Args)]
pub struct DeltasArgs {
    /// The helper's home.
    #[arg(long, value_name = "DIR")]
    home: PathBuf,
    /// The label of the member whose share is lost.
    #[arg(long)]
    lost: String,
    /// A helper's label (repeat; t helpers, this signer included).
    #[arg(long = "helper", required = true)]
    helpers: Vec<String>,
    /// Directory for the deltas, one per helper (delta-FROM-to-TO.json).
    #[arg(long, value_name = "DIR")]
    out_dir: PathBuf,
    #[command(flatten)]
    secrets: SecretArgs,
}

#[derive(Debug, Args)]
pub struct SigmaArgs {
    /// The helper's home.
    #[arg(long, value_name = "DIR")]
    home: PathBuf,
    /// The label of the member whose share is lost.
    #[arg(long)]
    lost: String,
    /// A helper's label (repeat; the same list as in `repair deltas`).
    #[arg(long = "helper", required = true)]
    helpers: Vec<String>,
    /// The deltas sealed to this helper, one from each helper.
    #[arg(required = true, value_name = "DELTA")]
    deltas: Vec<PathBuf>,
    /// Where to write the sigma for the lost member.
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    #[command(flatten)]
    secrets: SecretArgs,
}

#[derive(Debug, Args)]
pub struct RecoverArgs {
    /// The lost member's home (its keystore and identity kept, its share lost).
    #[arg(long, value_name = "DIR")]
    home: PathBuf,
    /// A helper's label (repeat; the same list the helpers used).
    #[arg(long = "helper", required = true)]
    helpers: Vec<String>,
    /// Every helper's sigma.
    #[arg(required = true, value_name = "SIGMA")]
    sigmas: Vec<PathBuf>,
    #[command(flatten)]
    secrets: SecretArgs,
}

/// A signer's home opened with its group, roster and own identifier.
pub(super) struct Member {
    pub(super) home: Home,
    pub(super) group: PublicGroup<Suite>,
    pub(super) roster: Roster,
    pub(super) me: Identifier<Suite>,
}

pub(super) fn member(home_dir: &Path, secrets: &SecretArgs) -> anyhow::Result<Member> {
    let home = Home::open(home_dir, "signer", secrets)?;
    let state = MemberState::new(&home.dir);
    let group = state
        .group::<Suite>()
        .map_err(ceremony_err)?
        .context("this signer holds no group yet")?;
    let roster = state.roster(&group).map_err(ceremony_err)?;
    let me = own_entry(&roster, home.keystore.as_ref())
        .map_err(ceremony_err)?
        .participant;
    Ok(Member {
        home,
        group,
        roster,
        me,
    })
}

impl Member {
    pub(super) fn share(&self) -> anyhow::Result<KeyShare<Suite>> {
        Ok(keystore::load_share::<Suite>(
            self.home.keystore.as_ref(),
            &self.group,
            &self.me,
        )?)
    }
}

fn id_of(group: &PublicGroup<Suite>, label: &str) -> anyhow::Result<Identifier<Suite>> {
    group
        .identifier_of(label)
        .with_context(|| format!("{label:?} is not a member of group {}", group.id().short()))
}

/// `kura refresh propose`: by a member (from its home) or by the group's
/// dealer (with the dealing's group and roster files).
fn refresh_propose(a: &ProposeArgs, r: &Ctx) -> anyhow::Result<()> {
    let (group_path, roster_path, out) = (a.group.as_deref(), a.roster.as_deref(), &a.out);
    let home = Home::open_any(&a.home, &a.secrets)?;
    let (group, roster) = match (group_path, roster_path) {
        (Some(g), Some(ro)) => {
            let group = home::read_group(g)?;
            let roster = home::read_roster_doc(ro, &group)?;
            (group, roster)
        }
        (None, None) => {
            let state = MemberState::new(&home.dir);
            let group = state
                .group::<Suite>()
                .map_err(ceremony_err)?
                .context("this home holds no group: pass --group and --roster")?;
            let roster = state.roster(&group).map_err(ceremony_err)?;
            (group, roster)
        }
        _ => {
            return Err(crate::error::usage(
                "give both --group and --roster, or neither",
            ))
        }
    };
    let proposal = maintain::propose_refresh(&group, &roster, home.keystore.as_ref(), &mut OsRng)
        .map_err(ceremony_err)?;
    home::write_new(out, &format::encode(group.id(), &proposal)?)?;
    let needs = match proposal.body.proposer {
        maintain::Proposer::Dealer => "signed by the group's dealer".to_string(),
        maintain::Proposer::Member(_) => format!(
            "it needs endorsements (`kura refresh endorse`) so that {} members consent",
            group.min_signers()
        ),
    };
    r.done(
        "refresh-propose",
        serde_json::json!({"group": group.id().to_string(), "out": out.display().to_string()}),
        &format!(
            "refresh of group {} proposed in {}: {needs}; then every member runs `kura refresh apply`",
            group.id().short(),
            out.display()
        ),
    )
}

fn read_proposal(
    path: &Path,
    group: &PublicGroup<Suite>,
) -> anyhow::Result<RefreshProposal<Suite>> {
    home::read_doc(path, group.id(), "a refresh proposal for this group")
}

fn refresh_endorse(a: &EndorseArgs, r: &Ctx) -> anyhow::Result<()> {
    let (proposal_path, out) = (&a.proposal, &a.out);
    let m = member(&a.home, &a.secrets)?;
    let proposal = read_proposal(proposal_path, &m.group)?;
    let e = maintain::endorse_refresh(&m.group, &m.roster, &proposal, m.home.keystore.as_ref())
        .map_err(ceremony_err)?;
    home::write_new(out, &format::encode(m.group.id(), &e)?)?;
    r.done(
        "refresh-endorse",
        serde_json::json!({"out": out.display().to_string()}),
        &format!(
            "{} endorses the refresh in {}: endorsement written to {}",
            m.home.config.label,
            proposal_path.display(),
            out.display()
        ),
    )
}

fn refresh_apply(a: &ApplyArgs, r: &Ctx) -> anyhow::Result<()> {
    let (proposal_path, endorsements, out) = (&a.proposal, &a.endorsements, &a.out);
    let m = member(&a.home, &a.secrets)?;
    let proposal = read_proposal(proposal_path, &m.group)?;
    let endorsements: Vec<RefreshEndorsement<Suite>> = endorsements
        .iter()
        .map(|p| home::read_doc(p, m.group.id(), "a refresh endorsement for this group"))
        .collect::<anyhow::Result<_>>()?;
    let ks = m.home.keystore.as_ref();
    let current = m.share()?;
    let (share, new_group) =
        maintain::accept_refresh(&m.group, &m.roster, &current, &proposal, &endorsements, ks)
            .map_err(ceremony_err)?;
    let tag = proposal.digest(m.group.id()).map_err(ceremony_err)?;
    MemberState::new(&m.home.dir)
        .stage(ks, &share, &new_group, &tag, &mut crash_point)
        .map_err(ceremony_err)?;
    let receipt = maintain::receipt(&m.group, &m.roster, &tag, ks).map_err(ceremony_err)?;
    write_copy(out, &format::encode(m.group.id(), &receipt)?)?;
    r.done(
        "refresh-apply",
        serde_json::json!({"group": new_group.id().to_string(), "staged": true, "receipt": out.display().to_string()}),
        &format!(
            "{}'s refreshed share is staged; the current one stays in use. Give every member the receipt {}; `kura refresh activate` switches once it has every member's receipt",
            m.home.config.label,
            out.display()
        ),
    )
}

fn refresh_activate(a: &ActivateArgs, r: &Ctx) -> anyhow::Result<()> {
    let receipts = &a.receipts;
    let m = member(&a.home, &a.secrets)?;
    let state = MemberState::new(&m.home.dir);
    let receipts: Vec<RefreshReceipt<Suite>> = receipts
        .iter()
        .map(|p| home::read_doc(p, m.group.id(), "a refresh receipt for this group"))
        .collect::<anyhow::Result<_>>()?;
    let activated = maintain::activate_refresh(
        &state,
        &m.group,
        &m.roster,
        &receipts,
        m.home.keystore.as_ref(),
        &mut crash_point,
    )
    .map_err(ceremony_err)?;
    let group = activated.context("nothing staged: run `kura refresh apply` first")?;
    let fp = group_fingerprint(&group, &m.roster);
    r.done(
        "refresh-activate",
        serde_json::json!({"group": group.id().to_string(), "fingerprint": fp.to_string()}),
        &format!(
            "{} now signs with its refreshed share (group {}, fingerprint {fp} unchanged)",
            m.home.config.label,
            group.id().short()
        ),
    )
}

fn repair_deltas(a: &DeltasArgs, r: &Ctx) -> anyhow::Result<()> {
    let (lost, helpers, out) = (a.lost.as_str(), &a.helpers, &a.out_dir);
    let m = member(&a.home, &a.secrets)?;
    let share = m.share()?;
    let lost_id = id_of(&m.group, lost)?;
    let helper_ids = helpers
        .iter()
        .map(|h| id_of(&m.group, h))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let msgs = maintain::repair_deltas(
        &m.group,
        &m.roster,
        &share,
        m.home.keystore.as_ref(),
        &lost_id,
        &helper_ids,
        &mut OsRng,
    )
    .map_err(ceremony_err)?;
    for msg in &msgs {
        let to = m.roster.describe(&msg.part.to);
        write_copy(
            &out.join(format!("delta-{}-to-{to}.json", m.home.config.label)),
            &format::encode(m.group.id(), msg)?,
        )?;
    }
    r.done(
        "repair-deltas",
        serde_json::json!({"lost": lost, "deltas": msgs.len()}),
        &format!(
            "{} signed, sealed deltas for repairing {lost} written to {}",
            msgs.len(),
            out.display()
        ),
    )
}

fn read_repair(
    paths: &[PathBuf],
    group: &PublicGroup<Suite>,
) -> anyhow::Result<Vec<RepairMessage<Suite>>> {
    paths
        .iter()
        .map(|p| home::read_doc(p, group.id(), "a repair message for this group"))
        .collect()
}

fn repair_sigma(a: &SigmaArgs, r: &Ctx) -> anyhow::Result<()> {
    let (lost, helpers, deltas, out) = (a.lost.as_str(), &a.helpers, &a.deltas, &a.out);
    let m = member(&a.home, &a.secrets)?;
    let lost_id = id_of(&m.group, lost)?;
    let helper_ids = helpers
        .iter()
        .map(|h| id_of(&m.group, h))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let msgs = read_repair(deltas, &m.group)?;
    let sigma = maintain::repair_sigma(
        &m.group,
        &m.roster,
        m.home.keystore.as_ref(),
        &lost_id,
        &helper_ids,
        &msgs,
        &mut OsRng,
    )
    .map_err(ceremony_err)?;
    home::write_new(out, &format::encode(m.group.id(), &sigma)?)?;
    r.done(
        "repair-sigma",
        serde_json::json!({"lost": lost, "out": out.display().to_string()}),
        &format!(
            "signed, sealed sigma for {lost} written to {}",
            out.display()
        ),
    )
}

fn repair_recover(a: &RecoverArgs, r: &Ctx) -> anyhow::Result<()> {
    let (helpers, sigmas) = (&a.helpers, &a.sigmas);
    let m = member(&a.home, &a.secrets)?;
    let helper_ids = helpers
        .iter()
        .map(|h| id_of(&m.group, h))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let msgs = read_repair(sigmas, &m.group)?;
    let ks = m.home.keystore.as_ref();
    let share = maintain::repair_recover(&m.group, &m.roster, ks, &helper_ids, &msgs)
        .map_err(ceremony_err)?;
    MemberState::new(&m.home.dir)
        .replace_share(ks, &share)
        .map_err(ceremony_err)?;
    r.done(
        "repair-recover",
        serde_json::json!({"participant": m.home.config.label.as_str()}),
        &format!("{} holds its repaired share again", m.home.config.label),
    )
}

/// A refresh DKG of this member's group: every member draws a
/// zero-sharing, nobody learns another's refreshing share.
fn refresh_ceremony(home_dir: &Path, nonce_hex: &str) -> anyhow::Result<Ceremony<Suite>> {
    // Public files only: the fingerprint can be shown before unlocking.
    let state = MemberState::new(home_dir);
    let group = state
        .group::<Suite>()
        .map_err(ceremony_err)?
        .context("this home holds no group")?;
    let roster = state.roster(&group).map_err(ceremony_err)?;
    Ceremony::for_refresh(&group, &roster, super::dkg::nonce(nonce_hex)?).map_err(ceremony_err)
}

fn refresh_fingerprint(home_dir: &Path, nonce_hex: &str, r: &Ctx) -> anyhow::Result<()> {
    let c = refresh_ceremony(home_dir, nonce_hex)?;
    r.done(
        "refresh-fingerprint",
        serde_json::json!({"ceremony": c.fingerprint().to_string()}),
        // The value alone: scripts capture it.
        &c.fingerprint().to_string(),
    )
}

fn refresh_round1(a: &RefreshRound1Args, r: &Ctx) -> anyhow::Result<()> {
    let out = &a.out;
    let c = super::dkg::confirm(
        refresh_ceremony(&a.home, &a.ceremony)?,
        a.fingerprint.as_deref(),
    )?;
    let m = member(&a.home, &a.secrets)?;
    let share = m.share()?;
    let doc = dkg::refresh_round1(&c, m.home.keystore.as_ref(), &share, &m.group, &mut OsRng)
        .map_err(ceremony_err)?;
    home::write_new(out, &format::encode(c.id(), &doc)?)?;
    r.done(
        "refresh-round1",
        serde_json::json!({"ceremony": c.fingerprint().to_string(), "out": out.display().to_string()}),
        &format!(
            "refresh round-1 broadcast (ceremony {} confirmed) written to {}: send it to every member",
            c.fingerprint(),
            out.display()
        ),
    )
}

fn refresh_round2(a: &RefreshRound2Args, r: &Ctx) -> anyhow::Result<()> {
    let c = refresh_ceremony(&a.home, &a.ceremony)?;
    let io = super::dkg::Round2Out {
        round1_files: &a.round1,
        out_dir: &a.out_dir,
    };
    super::dkg::round2(&a.home, &c, &io, &a.secrets, r)
}

fn refresh_finish(a: &RefreshFinishArgs, r: &Ctx) -> anyhow::Result<()> {
    let (round1_files, round2_files, out) = (&a.round1, &a.round2, &a.out);
    let c = refresh_ceremony(&a.home, &a.ceremony)?;
    let m = member(&a.home, &a.secrets)?;
    let r1: Vec<Round1Document<Suite>> = round1_files
        .iter()
        .map(|f| home::read_doc(f, c.id(), "a round-1 message of this refresh"))
        .collect::<anyhow::Result<_>>()?;
    let r2: Vec<Round2Document<Suite>> = round2_files
        .iter()
        .map(|f| home::read_doc(f, c.id(), "a round-2 message of this refresh"))
        .collect::<anyhow::Result<_>>()?;
    let ks = m.home.keystore.as_ref();
    let current = m.share()?;
    let (share, new_group) =
        dkg::refresh_finish(&c, ks, &r1, &r2, &current, &m.group).map_err(ceremony_err)?;
    let tag = *c.id().as_bytes();
    MemberState::new(&m.home.dir)
        .stage(ks, &share, &new_group, &tag, &mut crash_point)
        .map_err(ceremony_err)?;
    dkg::forget(&c, ks).map_err(ceremony_err)?;
    let receipt = maintain::receipt(&m.group, &m.roster, &tag, ks).map_err(ceremony_err)?;
    write_copy(out, &format::encode(m.group.id(), &receipt)?)?;
    r.done(
        "refresh-finish",
        serde_json::json!({"group": new_group.id().to_string(), "staged": true, "receipt": out.display().to_string()}),
        &format!(
            "{}'s refreshed share is staged; the current one stays in use. Give every member the receipt {}; `kura refresh activate` switches once it has every member's receipt",
            m.home.config.label,
            out.display()
        ),
    )
}
