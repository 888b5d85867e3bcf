//! `kura refresh propose | endorse | apply | activate`, the refresh DKG
//! `kura refresh fingerprint | round1 | round2 | finish`, and `kura repair
//! deltas | sigma | recover`: share refresh (with the quorum's consent,
//! staged, then activated) and share repair as files. The protocol is
//! `wallet_core::ceremony::maintain`; state changes are
//! `wallet_core::ceremony::state`.

use std::path::{Path, PathBuf};

use anyhow::Context;
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
use crate::home::{self, Home, Roster};
use crate::secrets::SecretArgs;
use crate::{ceremony_err, Reporter};

type Suite = Secp256k1Tr;

/// A signer's home opened with its group, roster and own identifier.
struct Member {
    home: Home,
    group: PublicGroup<Suite>,
    roster: Roster,
    me: Identifier<Suite>,
}

fn member(home_dir: &Path, secrets: &SecretArgs) -> anyhow::Result<Member> {
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
    fn share(&self) -> anyhow::Result<KeyShare<Suite>> {
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
pub fn refresh_propose(
    home_dir: &Path,
    group_path: Option<&Path>,
    roster_path: Option<&Path>,
    out: &Path,
    secrets: &SecretArgs,
    r: &Reporter,
) -> anyhow::Result<()> {
    let home = Home::open_any(home_dir, secrets)?;
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
        _ => anyhow::bail!("give both --group and --roster, or neither"),
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

pub fn refresh_endorse(
    home_dir: &Path,
    proposal_path: &Path,
    out: &Path,
    secrets: &SecretArgs,
    r: &Reporter,
) -> anyhow::Result<()> {
    let m = member(home_dir, secrets)?;
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

pub fn refresh_apply(
    home_dir: &Path,
    proposal_path: &Path,
    endorsements: &[PathBuf],
    out: &Path,
    secrets: &SecretArgs,
    r: &Reporter,
) -> anyhow::Result<()> {
    let m = member(home_dir, secrets)?;
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

pub fn refresh_activate(
    home_dir: &Path,
    receipts: &[PathBuf],
    secrets: &SecretArgs,
    r: &Reporter,
) -> anyhow::Result<()> {
    let m = member(home_dir, secrets)?;
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

pub fn repair_deltas(
    home_dir: &Path,
    lost: &str,
    helpers: &[String],
    out: &Path,
    secrets: &SecretArgs,
    r: &Reporter,
) -> anyhow::Result<()> {
    let m = member(home_dir, secrets)?;
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

#[allow(clippy::too_many_arguments)]
pub fn repair_sigma(
    home_dir: &Path,
    lost: &str,
    helpers: &[String],
    deltas: &[PathBuf],
    out: &Path,
    secrets: &SecretArgs,
    r: &Reporter,
) -> anyhow::Result<()> {
    let m = member(home_dir, secrets)?;
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

pub fn repair_recover(
    home_dir: &Path,
    helpers: &[String],
    sigmas: &[PathBuf],
    secrets: &SecretArgs,
    r: &Reporter,
) -> anyhow::Result<()> {
    let m = member(home_dir, secrets)?;
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

pub fn refresh_fingerprint(home_dir: &Path, nonce_hex: &str, r: &Reporter) -> anyhow::Result<()> {
    let c = refresh_ceremony(home_dir, nonce_hex)?;
    r.done(
        "refresh-fingerprint",
        serde_json::json!({"ceremony": c.fingerprint().to_string()}),
        &format!("refresh ceremony fingerprint {}", c.fingerprint()),
    )
}

pub fn refresh_round1(
    home_dir: &Path,
    nonce_hex: &str,
    fingerprint: Option<&str>,
    out: &Path,
    secrets: &SecretArgs,
    r: &Reporter,
) -> anyhow::Result<()> {
    let c = super::dkg::confirm(refresh_ceremony(home_dir, nonce_hex)?, fingerprint)?;
    let m = member(home_dir, secrets)?;
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

pub fn refresh_round2(
    home_dir: &Path,
    nonce_hex: &str,
    round1_files: &[PathBuf],
    out_dir: &Path,
    secrets: &SecretArgs,
    r: &Reporter,
) -> anyhow::Result<()> {
    let c = refresh_ceremony(home_dir, nonce_hex)?;
    super::dkg::round2(home_dir, &c, round1_files, out_dir, secrets, r)
}

#[allow(clippy::too_many_arguments)]
pub fn refresh_finish(
    home_dir: &Path,
    nonce_hex: &str,
    round1_files: &[PathBuf],
    round2_files: &[PathBuf],
    out: &Path,
    secrets: &SecretArgs,
    r: &Reporter,
) -> anyhow::Result<()> {
    let c = refresh_ceremony(home_dir, nonce_hex)?;
    let m = member(home_dir, secrets)?;
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
