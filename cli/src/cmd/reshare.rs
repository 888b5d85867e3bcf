//! `kura reshare propose | deal | accept | activate`: change the quorum —
//! members join or leave, the threshold rises or falls — with the same group
//! key and addresses, as files. The protocol is
//! `wallet_core::ceremony::reshare`; state changes are
//! `wallet_core::ceremony::state`.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use rand_core::OsRng;
use wallet_core::audit::AuditLog;
use wallet_core::ceremony::maintain::{self, RefreshReceipt};
use wallet_core::ceremony::reshare::{self, ReshareDeal, ReshareProposal};
use wallet_core::ceremony::state::MemberState;
use wallet_core::ceremony::{group_fingerprint, own_entry};
use wallet_core::{format, PublicGroup, Secp256k1Tr};

use super::dkg::{crash_point, read_cards, write_copy};
use super::maintain::member;
use crate::ctx::Ctx;
use crate::error::ceremony_err;
use crate::home::{self, Home, Roster};
use crate::secrets::SecretArgs;

type Suite = Secp256k1Tr;

#[derive(Debug, Subcommand)]
pub enum ReshareCmd {
    /// Propose the new quorum (a current member): threshold, every new member's card, the current members who deal (at least t).
    ///
    /// Example: kura reshare propose --home alice -t 3 --card alice/identity.json --card bob/identity.json --card carol/identity.json --card dave/identity.json --dealer alice --dealer bob --out reshare.json --passphrase-file alice.pass
    Propose(ProposeArgs),
    /// A dealer's consent and part: one share per new member, each sealed to its card.
    ///
    /// Shows the plan (threshold, who joins, leaves and deals, expiry) and asks the operator; each joining member's card fingerprint must be confirmed with that member over another channel.
    ///
    /// Example: kura reshare deal --home bob reshare.json --joining-card $DAVE_CARD_FP --out deal-bob.json --passphrase-file bob.pass
    Deal(DealArgs),
    /// A new member: check the proposal and every deal, stage the new share (the current one stays in use), write a signed receipt.
    ///
    /// Example: kura reshare accept --home dave --group group.json --roster roster.json --fingerprint $FP reshare.json --deal deal-alice.json --deal deal-bob.json --out receipt-dave.json --passphrase-file dave.pass
    Accept(AcceptArgs),
    /// Switch to the staged share, group and roster once every new member's receipt is given (crash-safe; rerun completes it).
    ///
    /// Example: kura reshare activate --home alice --receipt receipt-alice.json … --receipt receipt-dave.json --passphrase-file alice.pass
    Activate(ActivateArgs),
    /// A member who leaves: check the reshare and every new member's receipt, then erase this member's share and group files.
    ///
    /// Example: kura reshare retire --home carol reshare.json --deal deal-alice.json --deal deal-bob.json --receipt receipt-alice.json … --passphrase-file carol.pass
    Retire(RetireArgs),
}

impl ReshareCmd {
    pub fn run(self, ctx: &Ctx) -> anyhow::Result<()> {
        match self {
            ReshareCmd::Propose(a) => propose(&a, ctx),
            ReshareCmd::Deal(a) => deal(&a, ctx),
            ReshareCmd::Accept(a) => accept(&a, ctx),
            ReshareCmd::Activate(a) => activate(&a, ctx),
            ReshareCmd::Retire(a) => retire(&a, ctx),
        }
    }
}

#[derive(Debug, Args)]
pub struct ProposeArgs {
    /// The proposing member's home.
    #[arg(long, value_name = "DIR")]
    home: PathBuf,
    /// The new threshold.
    #[arg(long, short = 't', value_name = "T")]
    threshold: u16,
    /// Every new member's identity card (current members who stay included); repeat.
    #[arg(long = "card", value_name = "FILE", required = true)]
    cards: Vec<PathBuf>,
    /// A current member who deals (label); repeat, at least the current threshold.
    #[arg(long = "dealer", value_name = "LABEL", required = true)]
    dealers: Vec<String>,
    /// Hours until nobody deals or accepts the proposal any more (at most 720: 30 days).
    #[arg(long, value_name = "HOURS", default_value_t = 72, value_parser = clap::value_parser!(u64).range(1..=720))]
    expires_in: u64,
    /// Where to write the proposal.
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    #[command(flatten)]
    secrets: SecretArgs,
}

#[derive(Debug, Args)]
pub struct DealArgs {
    /// The dealer's home (a current member named by the proposal).
    #[arg(long, value_name = "DIR")]
    home: PathBuf,
    /// The reshare proposal.
    proposal: PathBuf,
    /// The card fingerprint a joining member read out to you (by phone or in person; `kura fingerprint --card` on its card); repeat, once per joining member. Without it, asked at the terminal.
    #[arg(long = "joining-card", value_name = "FINGERPRINT")]
    joining_cards: Vec<String>,
    /// Deal without asking (automation): the plan is still printed on stderr.
    #[arg(long)]
    yes: bool,
    /// Where to write the deal.
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    #[command(flatten)]
    secrets: SecretArgs,
}

#[derive(Debug, Args)]
pub struct AcceptArgs {
    /// The new member's home (a current member's, or a new signer's from `kura signer init`).
    #[arg(long, value_name = "DIR")]
    home: PathBuf,
    /// The current group file (a joining member, whose home holds no group yet).
    #[arg(long, value_name = "FILE", requires_all = ["roster", "fingerprint"])]
    group: Option<PathBuf>,
    /// The current roster file (a joining member).
    #[arg(long, value_name = "FILE", requires = "group")]
    roster: Option<PathBuf>,
    /// The current group's fingerprint, as the members read it out (a joining member: it pins the group it joins).
    #[arg(long, value_name = "FINGERPRINT")]
    fingerprint: Option<String>,
    /// The reshare proposal.
    proposal: PathBuf,
    /// Every dealer's deal; repeat.
    #[arg(long = "deal", value_name = "FILE", required = true)]
    deals: Vec<PathBuf>,
    /// Where to write this member's receipt.
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    #[command(flatten)]
    secrets: SecretArgs,
}

#[derive(Debug, Args)]
pub struct ActivateArgs {
    /// The new member's home.
    #[arg(long, value_name = "DIR")]
    home: PathBuf,
    /// Every new member's receipt; repeat.
    #[arg(long = "receipt", value_name = "FILE", required = true)]
    receipts: Vec<PathBuf>,
    #[command(flatten)]
    secrets: SecretArgs,
}

#[derive(Debug, Args)]
pub struct RetireArgs {
    /// The leaving member's home.
    #[arg(long, value_name = "DIR")]
    home: PathBuf,
    /// The reshare proposal it leaves by.
    proposal: PathBuf,
    /// Every dealer's deal; repeat.
    #[arg(long = "deal", value_name = "FILE", required = true)]
    deals: Vec<PathBuf>,
    /// Every new member's receipt; repeat.
    #[arg(long = "receipt", value_name = "FILE", required = true)]
    receipts: Vec<PathBuf>,
    #[command(flatten)]
    secrets: SecretArgs,
}

fn read_proposal(
    path: &std::path::Path,
    group: &PublicGroup<Suite>,
) -> anyhow::Result<ReshareProposal<Suite>> {
    home::read_doc(path, group.id(), "a reshare proposal for this group")
}

fn propose(a: &ProposeArgs, r: &Ctx) -> anyhow::Result<()> {
    let m = member(&a.home, &a.secrets)?;
    let cards = read_cards(&a.cards)?;
    let dealers = a
        .dealers
        .iter()
        .map(|label| {
            m.group.identifier_of(label).with_context(|| {
                format!(
                    "{} is not a member of group {}",
                    wallet_core::display::inert_bounded(label, 64),
                    m.group.id().short()
                )
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let expires = crate::ctx::now().saturating_add(a.expires_in.saturating_mul(3600));
    let proposal = reshare::propose_reshare(
        &m.group,
        &m.roster,
        reshare::ReshareTerms {
            threshold: a.threshold,
            members: cards,
            dealers,
            expires,
        },
        m.home.keystore.as_ref(),
        &mut OsRng,
    )
    .map_err(ceremony_err)?;
    let plan = reshare::check_proposal(&m.group, &m.roster, &proposal).map_err(ceremony_err)?;
    home::write_new(&a.out, &format::encode(m.group.id(), &proposal)?)?;
    let (joining, leaving) = plan.changes(&m.group);
    r.done(
        "reshare-propose",
        serde_json::json!({"group": m.group.id().to_string(), "group_fingerprint": group_fingerprint(&m.group, &m.roster).to_string(), "threshold": plan.threshold, "members": plan.roster.members.len(), "joining": joining, "leaving": leaving, "expires": plan.expires, "out": a.out.display().to_string()}),
        &format!(
            "reshare of group {} from {}-of-{} to {}-of-{} proposed in {} (joining: {}; leaving: {}); it expires in {} h. Each dealer runs `kura reshare deal` with every joining member's card fingerprint, read out by that member; then every new member `kura reshare accept`",
            m.group.id().short(),
            m.group.min_signers(),
            m.group.max_signers(),
            plan.threshold,
            plan.roster.members.len(),
            a.out.display(),
            none_if_empty(&joining),
            none_if_empty(&leaving),
            a.expires_in,
        ),
    )
}

/// What a dealer's operator is shown before consenting: the whole plan,
/// in labels (validated where parsed) and numbers.
fn describe_plan(
    group: &PublicGroup<Suite>,
    roster: &Roster,
    plan: &reshare::Plan<Suite>,
    now: u64,
) -> String {
    let (joining, leaving) = plan.changes(group);
    let staying: Vec<String> = plan
        .roster
        .members
        .iter()
        .filter(|m| group.participants().contains_key(&m.participant))
        .map(|m| m.label.to_string())
        .collect();
    let dealers: Vec<String> = plan.dealers.iter().map(|d| roster.describe(d)).collect();
    format!(
        "reshare of group {} proposed by {}:\n  threshold: {}-of-{} becomes {}-of-{}\n  joining:   {}\n  leaving:   {}\n  staying:   {}\n  dealers:   {}\n  expires:   in {} min (unix {})\nThe key and addresses stay the same. Every joining member's card must be the one its person holds: you confirmed its fingerprint with them.",
        group.id().short(),
        roster.describe(&plan.proposer),
        group.min_signers(),
        group.max_signers(),
        plan.threshold,
        plan.roster.members.len(),
        none_if_empty(&joining),
        none_if_empty(&leaving),
        none_if_empty(&staying),
        dealers.join(", "),
        plan.expires.saturating_sub(now) / 60,
        plan.expires,
    )
}

/// The joining members' card fingerprints: as given, or typed at the
/// terminal for each joining member (never shown from the proposal: the
/// operator types what the member read out).
fn joining_fingerprints(
    a: &DealArgs,
    joining: &[wallet_core::ceremony::IdentityCard],
) -> anyhow::Result<Vec<String>> {
    use std::io::{BufRead, IsTerminal, Write};
    if !a.joining_cards.is_empty() || joining.is_empty() {
        return Ok(a.joining_cards.clone());
    }
    if !(std::io::stdin().is_terminal() && std::io::stderr().is_terminal()) {
        return Err(crate::error::usage(
            "members join in this reshare: pass --joining-card FP for each, the fingerprint that member read out to you (`kura fingerprint --card` on its card)",
        ));
    }
    let mut typed = Vec::with_capacity(joining.len());
    for card in joining {
        let mut err = std::io::stderr();
        write!(
            err,
            "type the card fingerprint joining member {} read out to you: ",
            card.label
        )?;
        err.flush()?;
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        typed.push(line.trim().to_owned());
    }
    Ok(typed)
}

fn none_if_empty(labels: &[String]) -> String {
    if labels.is_empty() {
        "nobody".into()
    } else {
        labels.join(", ")
    }
}

fn deal(a: &DealArgs, r: &Ctx) -> anyhow::Result<()> {
    let m = member(&a.home, &a.secrets)?;
    let proposal = read_proposal(&a.proposal, &m.group)?;
    let now = crate::ctx::now();
    let plan = reshare::check_proposal(&m.group, &m.roster, &proposal).map_err(ceremony_err)?;
    plan.check_fresh(now).map_err(ceremony_err)?;
    if !plan.dealers.contains(&m.me) {
        return Err(ceremony_err(
            wallet_core::ceremony::CeremonyError::Misaddressed(
                "the reshare does not name this member as a dealer".into(),
            ),
        ));
    }
    let shown = describe_plan(&m.group, &m.roster, &plan, now);
    let typed = joining_fingerprints(a, &plan.joining_cards(&m.group))?;
    let typed: Vec<&str> = typed.iter().map(String::as_str).collect();
    let consent = reshare::Consent::check(&m.group, &m.roster, &proposal, &typed, now)
        .map_err(ceremony_err)?;
    if a.yes {
        r.note(&shown);
    } else {
        crate::ctx::confirm(
            &shown,
            "Deal your part of the key to these members?",
            "deal",
            "dealt",
        )?;
    }
    let share = m.share()?;
    let ks = m.home.keystore.as_ref();
    let mut log = AuditLog::open(&m.home.dir.join("audit.jsonl"), &ks.identity_public_key()?)?;
    let deal = reshare::deal_reshare(
        &m.group, &m.roster, &share, &consent, ks, &mut log, &mut OsRng,
    )
    .map_err(ceremony_err)?;
    home::write_new(&a.out, &format::encode(m.group.id(), &deal)?)?;
    let (joining, leaving) = plan.changes(&m.group);
    r.done(
        "reshare-deal",
        serde_json::json!({"out": a.out.display().to_string(), "threshold": plan.threshold, "members": plan.roster.members.len(), "joining": joining, "leaving": leaving, "expires": plan.expires}),
        &format!(
            "{} consents to the reshare in {} and deals its part: {} (sealed to each new member)",
            m.home.config.label,
            a.proposal.display(),
            a.out.display()
        ),
    )
}

/// The current group and roster an accepting member checks against: its
/// home's, or (a joining member) the given files pinned by fingerprint.
fn current(a: &AcceptArgs, home: &Home) -> anyhow::Result<(PublicGroup<Suite>, Roster)> {
    let state = MemberState::new(&home.dir);
    if let Some(group) = state.group::<Suite>().map_err(ceremony_err)? {
        let roster = state.roster(&group).map_err(ceremony_err)?;
        return Ok((group, roster));
    }
    let (Some(g), Some(ro), Some(fp)) = (&a.group, &a.roster, &a.fingerprint) else {
        return Err(crate::error::usage(
            "this home holds no group yet: a joining member gives --group, --roster and --fingerprint",
        ));
    };
    let group = home::read_group(g)?;
    let roster = home::read_roster_doc(ro, &group)?;
    group_fingerprint(&group, &roster)
        .confirm(fp)
        .map_err(ceremony_err)?;
    Ok((group, roster))
}

fn accept(a: &AcceptArgs, r: &Ctx) -> anyhow::Result<()> {
    let home = Home::open(&a.home, "signer", &a.secrets)?;
    let (group, roster) = current(a, &home)?;
    let proposal = read_proposal(&a.proposal, &group)?;
    let deals: Vec<ReshareDeal<Suite>> = a
        .deals
        .iter()
        .map(|p| home::read_doc(p, group.id(), "a reshare deal for this group"))
        .collect::<anyhow::Result<_>>()?;
    let ks = home.keystore.as_ref();
    let accepted =
        reshare::accept_reshare(&group, &roster, &proposal, &deals, ks, crate::ctx::now())
            .map_err(ceremony_err)?;
    let plan = &accepted.plan;
    MemberState::new(&home.dir)
        .stage_reshare(
            ks,
            &accepted.share,
            &accepted.group,
            &plan.roster,
            &accepted.tag,
            &mut crash_point,
        )
        .map_err(ceremony_err)?;
    let receipt = maintain::receipt(&accepted.group, &plan.roster, &accepted.tag, ks)
        .map_err(ceremony_err)?;
    write_copy(&a.out, &format::encode(group.id(), &receipt)?)?;
    let fp = group_fingerprint(&accepted.group, &plan.roster);
    r.done(
        "reshare-accept",
        serde_json::json!({"group": group.id().to_string(), "staged": true, "threshold": plan.threshold, "members": plan.roster.members.len(), "fingerprint": fp.to_string(), "receipt": a.out.display().to_string()}),
        &format!(
            "{}'s share of the {}-of-{} group is staged (new group fingerprint {fp}); give every new member the receipt {}; `kura reshare activate` switches once it has every new member's receipt",
            home.config.label,
            plan.threshold,
            plan.roster.members.len(),
            a.out.display()
        ),
    )
}

fn activate(a: &ActivateArgs, r: &Ctx) -> anyhow::Result<()> {
    let home = Home::open(&a.home, "signer", &a.secrets)?;
    let state = MemberState::new(&home.dir);
    let staged = state.staged_reshare::<Suite>().map_err(ceremony_err)?;
    // Receipts are documents of the group (same id before and after).
    let scope = match (&staged, state.group::<Suite>().map_err(ceremony_err)?) {
        (Some(s), _) => *s.group.id(),
        (None, Some(g)) => *g.id(),
        (None, None) => anyhow::bail!("nothing staged: run `kura reshare accept` first"),
    };
    let receipts: Vec<RefreshReceipt<Suite>> = a
        .receipts
        .iter()
        .map(|p| home::read_doc(p, &scope, "a reshare receipt for this group"))
        .collect::<anyhow::Result<_>>()?;
    let activated =
        reshare::activate_reshare(&state, &receipts, home.keystore.as_ref(), &mut crash_point)
            .map_err(ceremony_err)?;
    let group = activated.context(
        "nothing staged: the reshare is active already, or run `kura reshare accept` first",
    )?;
    let roster = state.roster(&group).map_err(ceremony_err)?;
    let me = own_entry(&roster, home.keystore.as_ref()).map_err(ceremony_err)?;
    let fp = group_fingerprint(&group, &roster);
    r.done(
        "reshare-activate",
        serde_json::json!({"group": group.id().to_string(), "threshold": group.min_signers(), "members": group.max_signers(), "fingerprint": fp.to_string()}),
        &format!(
            "{} now signs with its share of the {}-of-{} group {} (fingerprint {fp}; the key and addresses are unchanged)",
            me.label,
            group.min_signers(),
            group.max_signers(),
            group.id().short()
        ),
    )
}

fn retire(a: &RetireArgs, r: &Ctx) -> anyhow::Result<()> {
    let m = member(&a.home, &a.secrets)?;
    let proposal = read_proposal(&a.proposal, &m.group)?;
    let deals: Vec<ReshareDeal<Suite>> = a
        .deals
        .iter()
        .map(|p| home::read_doc(p, m.group.id(), "a reshare deal for this group"))
        .collect::<anyhow::Result<_>>()?;
    let receipts: Vec<RefreshReceipt<Suite>> = a
        .receipts
        .iter()
        .map(|p| home::read_doc(p, m.group.id(), "a reshare receipt for this group"))
        .collect::<anyhow::Result<_>>()?;
    let state = MemberState::new(&m.home.dir);
    let left = reshare::retire(
        &state,
        &m.group,
        &m.roster,
        &proposal,
        &deals,
        &receipts,
        m.home.keystore.as_ref(),
    )
    .map_err(ceremony_err)?;
    r.done(
        "reshare-retire",
        serde_json::json!({"group": left.id().to_string()}),
        &format!(
            "{} left group {}: its share is erased from its keystore and the group files from its home",
            m.home.config.label,
            left.id().short()
        ),
    )
}
