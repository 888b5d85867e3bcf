//! `kura refresh dealer | apply` and `kura repair deltas | sigma | recover`:
//! share refresh and share repair as files. Every secret that travels is
//! sealed to its recipient's identity key, bound to the group, sender,
//! recipient and purpose.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use rand_core::OsRng;
use serde::{Deserialize, Serialize};
use wallet_core::format::{self, DocumentBody, GroupId};
use wallet_core::frost_core::keys::repairable::{Delta, Sigma};
use wallet_core::frost_core::keys::SecretShare;
use wallet_core::frost_core::Identifier;
use wallet_core::identity::SealedMessage;
use wallet_core::keygen::{refresh, repair};
use wallet_core::{keystore, PublicGroup, Secp256k1Tr, SuiteId};

use crate::home::{self, Home};
use crate::secrets::SecretArgs;
use crate::{refused, Reporter};

type Suite = Secp256k1Tr;

/// A secret for one member, sealed to its identity key.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SealedSecret {
    /// What it is: `refresh-share`, `repair-delta` or `repair-sigma`.
    pub purpose: String,
    /// Sender (`None` for a dealer).
    pub from: Option<Identifier<Suite>>,
    /// Recipient.
    pub to: Identifier<Suite>,
    /// The sealed JSON.
    pub sealed: SealedMessage,
}

impl DocumentBody for SealedSecret {
    const KIND: &'static str = "sealed-secret";
    fn suite() -> SuiteId {
        SuiteId::Secp256k1Tr
    }
}

fn context(
    group: &GroupId,
    purpose: &str,
    from: Option<&Identifier<Suite>>,
    to: &Identifier<Suite>,
) -> Vec<u8> {
    let mut ctx = format!("kura/v1/{purpose}\0").into_bytes();
    ctx.extend_from_slice(group.as_bytes());
    ctx.extend_from_slice(&from.map(Identifier::serialize).unwrap_or_default());
    ctx.push(0);
    ctx.extend_from_slice(&to.serialize());
    ctx
}

fn seal<T: Serialize>(
    group: &PublicGroup<Suite>,
    identities: &std::collections::BTreeMap<
        Identifier<Suite>,
        wallet_core::identity::IdentityPublicKey,
    >,
    purpose: &str,
    from: Option<Identifier<Suite>>,
    to: Identifier<Suite>,
    value: &T,
) -> anyhow::Result<Vec<u8>> {
    let key = identities.get(&to).context("recipient not in the roster")?;
    let plain = zeroize::Zeroizing::new(serde_json::to_vec(value)?);
    let sealed = key.seal(
        &plain,
        &context(group.id(), purpose, from.as_ref(), &to),
        &mut OsRng,
    )?;
    Ok(format::encode(
        group.id(),
        &SealedSecret {
            purpose: purpose.into(),
            from,
            to,
            sealed,
        },
    )?)
}

fn open<T: serde::de::DeserializeOwned>(
    home: &Home,
    group: &PublicGroup<Suite>,
    me: &Identifier<Suite>,
    purpose: &str,
    path: &Path,
) -> anyhow::Result<(Option<Identifier<Suite>>, T)> {
    let doc = home::read_doc::<SealedSecret>(path, group.id(), "a sealed secret of this group")?;
    if doc.purpose != purpose || &doc.to != me {
        bail!(
            "{} is a {} for someone else, not a {purpose} for this signer",
            path.display(),
            doc.purpose
        );
    }
    let plain = home
        .keystore
        .open_sealed(
            &doc.sealed,
            &context(group.id(), purpose, doc.from.as_ref(), &doc.to),
        )
        .map_err(|_| {
            refused(format!(
                "{} does not open with this signer's identity key: tampered, or not for you",
                path.display()
            ))
        })?;
    Ok((doc.from, serde_json::from_slice(plain.expose())?))
}

fn my_id(
    home: &Home,
    identities: &std::collections::BTreeMap<
        Identifier<Suite>,
        wallet_core::identity::IdentityPublicKey,
    >,
) -> anyhow::Result<Identifier<Suite>> {
    let key = home.keystore.identity_public_key()?;
    identities
        .iter()
        .find(|(_, k)| **k == key)
        .map(|(id, _)| *id)
        .context("this signer's identity key is not in the roster")
}

/// A signer's home opened with its group, roster and own identifier.
struct Member {
    home: Home,
    group: PublicGroup<Suite>,
    identities:
        std::collections::BTreeMap<Identifier<Suite>, wallet_core::identity::IdentityPublicKey>,
    me: Identifier<Suite>,
}

fn member(home_dir: &Path, secrets: &SecretArgs) -> anyhow::Result<Member> {
    let home = Home::open(home_dir, "signer", secrets)?;
    let group = home::read_group(&home.dir.join("group.json"))?;
    let identities = home::read_roster(&home.dir.join("roster.json"), &group)?;
    let me = my_id(&home, &identities)?;
    Ok(Member {
        home,
        group,
        identities,
        me,
    })
}

fn id_of(group: &PublicGroup<Suite>, label: &str) -> anyhow::Result<Identifier<Suite>> {
    group
        .identifier_of(label)
        .with_context(|| format!("{label:?} is not a member of group {}", group.id().short()))
}

/// Replaces a file atomically (the group file after a refresh).
fn replace(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    wallet_core::keystore::files::write_atomic(path, bytes, true)?;
    Ok(())
}

pub fn refresh_dealer(
    group_path: &Path,
    roster_path: &Path,
    out: &Path,
    r: &Reporter,
) -> anyhow::Result<()> {
    let group = home::read_group(group_path)?;
    let identities = home::read_roster(roster_path, &group)?;
    let keep: Vec<_> = group.participants().keys().copied().collect();
    let rf = refresh::dealer_refresh(&group, &keep, &mut OsRng)?;
    home::write_new(&out.join("group.json"), &rf.group.to_document()?)?;
    for (id, share) in &rf.refreshing_shares {
        let label = group.label(id).context("member")?;
        home::write_new(
            &out.join(format!("refresh-{label}.json")),
            &seal::<SecretShare<Suite>>(&group, &identities, "refresh-share", None, *id, share)?,
        )?;
    }
    r.done(
        "refresh-dealer",
        serde_json::json!({"group": rf.group.id().to_string(), "out": out.display().to_string()}),
        &format!("refreshed group {} (same key, new shares) written to {}; give each member its refresh file", rf.group.id().short(), out.display()),
    )
}

pub fn refresh_apply(
    home_dir: &Path,
    new_group_path: &Path,
    share_path: &Path,
    secrets: &SecretArgs,
    r: &Reporter,
) -> anyhow::Result<()> {
    let Member {
        home, group, me, ..
    } = member(home_dir, secrets)?;
    let current = keystore::load_share::<Suite>(
        home.keystore.as_ref(),
        &group,
        &hex::encode(me.serialize()),
    )?;
    let new_group = home::read_group(new_group_path)?;
    let (_, refreshing): (_, SecretShare<Suite>) =
        open(&home, &group, &me, "refresh-share", share_path)?;
    let refreshed = refresh::apply_dealer_refresh(&current, refreshing, &new_group)
        .map_err(|e| refused(e.to_string()))?;
    keystore::put_share(home.keystore.as_ref(), &refreshed)?;
    replace(&home.dir.join("group.json"), &new_group.to_document()?)?;
    r.done(
        "refresh-apply",
        serde_json::json!({"group": new_group.id().to_string()}),
        &format!(
            "{} now holds its refreshed share; the old one is replaced",
            home.config.label
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
    let Member {
        home,
        group,
        identities,
        me,
    } = member(home_dir, secrets)?;
    let share = keystore::load_share::<Suite>(
        home.keystore.as_ref(),
        &group,
        &hex::encode(me.serialize()),
    )?;
    let lost_id = id_of(&group, lost)?;
    let helper_ids = helpers
        .iter()
        .map(|h| id_of(&group, h))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let deltas = repair::helper_deltas(&share, &group, &helper_ids, &lost_id, &mut OsRng)
        .map_err(|e| refused(e.to_string()))?;
    for (to, delta) in &deltas {
        let label = group.label(to).context("member")?;
        home::write_new(
            &out.join(format!("delta-{}-to-{label}.json", home.config.label)),
            &seal::<Delta<Suite>>(&group, &identities, "repair-delta", Some(me), *to, delta)?,
        )?;
    }
    r.done(
        "repair-deltas",
        serde_json::json!({"lost": lost, "deltas": deltas.len()}),
        &format!(
            "{} deltas for repairing {lost} written to {}",
            deltas.len(),
            out.display()
        ),
    )
}

pub fn repair_sigma(
    home_dir: &Path,
    lost: &str,
    deltas: &[PathBuf],
    out: &Path,
    secrets: &SecretArgs,
    r: &Reporter,
) -> anyhow::Result<()> {
    let Member {
        home,
        group,
        identities,
        me,
    } = member(home_dir, secrets)?;
    let lost_id = id_of(&group, lost)?;
    let mut received = Vec::new();
    for p in deltas {
        let (_, d): (_, Delta<Suite>) = open(&home, &group, &me, "repair-delta", p)?;
        received.push(d);
    }
    let sigma = repair::helper_sigma(&received);
    home::write_new(
        out,
        &seal::<Sigma<Suite>>(
            &group,
            &identities,
            "repair-sigma",
            Some(me),
            lost_id,
            &sigma,
        )?,
    )?;
    r.done(
        "repair-sigma",
        serde_json::json!({"lost": lost, "out": out.display().to_string()}),
        &format!("sigma for {lost} written to {}", out.display()),
    )
}

pub fn repair_recover(
    home_dir: &Path,
    sigmas: &[PathBuf],
    secrets: &SecretArgs,
    r: &Reporter,
) -> anyhow::Result<()> {
    let Member {
        home, group, me, ..
    } = member(home_dir, secrets)?;
    let mut received = Vec::new();
    for p in sigmas {
        let (_, s): (_, Sigma<Suite>) = open(&home, &group, &me, "repair-sigma", p)?;
        received.push(s);
    }
    let share = repair::recover(&received, &me, &group).map_err(|e| {
        refused(format!(
            "{e}: the helpers' sigmas do not rebuild this signer's share"
        ))
    })?;
    keystore::put_share(home.keystore.as_ref(), &share)?;
    r.done(
        "repair-recover",
        serde_json::json!({"participant": home.config.label.as_str()}),
        &format!("{} holds its repaired share again", home.config.label),
    )
}
