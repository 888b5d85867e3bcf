//! `kura dkg round1 | round2 | finish`: distributed key generation as files.
//!
//! Participants are named by their identity cards; each one's FROST
//! identifier is derived from its label, so every participant computes the
//! same roster whatever order the cards are given in. The ceremony id binds
//! the suite, threshold, roster and a nonce the convener picks (`--ceremony`).
//! Secret state between rounds is kept in the participant's keystore as a
//! take-once entry. Round-2 shares are sealed to each recipient's identity
//! key with the ceremony, sender, recipient *and a digest of the round-1
//! set* as associated data: a recipient that saw a different set of round-1
//! broadcasts than the sender cannot open the share, so an inconsistent
//! broadcast is detected instead of producing split groups.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use rand_core::OsRng;
use sha2::{Digest, Sha256};
use wallet_core::format::{self, GroupId};
use wallet_core::frost_core::Identifier;
use wallet_core::keygen::dkg::{self, Round1Message, Round1Secret, Round2Message, Round2Secret};
use wallet_core::keystore::{self, SecretSlot, SessionId};
use wallet_core::messages::{
    ceremony_id, dkg_round2_context, DkgRound1Document, DkgRound2Document,
};
use wallet_core::{Label, Secp256k1Tr, SuiteId};

use crate::home::{self, Home, IdentityCard, Roster, RosterEntry};
use crate::secrets::SecretArgs;
use crate::{refused, Reporter};

type Suite = Secp256k1Tr;

/// The ceremony as every participant computes it.
pub struct Ceremony {
    pub id: GroupId,
    pub threshold: u16,
    pub cards: BTreeMap<Identifier<Suite>, IdentityCard>,
}

pub fn ceremony(threshold: u16, cards: &[PathBuf], nonce_hex: &str) -> anyhow::Result<Ceremony> {
    let nonce: [u8; 32] = hex::decode(nonce_hex)
        .ok()
        .and_then(|b| b.try_into().ok())
        .context(
            "--ceremony must be 64 hex digits (32 bytes the convener picks at random and shares)",
        )?;
    let mut map = BTreeMap::new();
    for path in cards {
        let card = home::read_card(path)?;
        if card.role != "signer" {
            bail!("{} is not a signer's identity card", path.display());
        }
        let id = Identifier::<Suite>::derive(card.label.as_str().as_bytes())?;
        if map.insert(id, card).is_some() {
            bail!("two cards share a label");
        }
    }
    let roster: BTreeMap<Identifier<Suite>, Label> =
        map.iter().map(|(id, c)| (*id, c.label.clone())).collect();
    Ok(Ceremony {
        id: ceremony_id::<Suite>(threshold, &roster, &nonce),
        threshold,
        cards: map,
    })
}

fn me(c: &Ceremony, home: &Home) -> anyhow::Result<Identifier<Suite>> {
    let key = home.keystore.identity_public_key()?;
    c.cards
        .iter()
        .find(|(_, card)| card.key == key && card.label == home.config.label)
        .map(|(id, _)| *id)
        .context("this signer's own identity card is not among the --card files")
}

fn state_slot(c: &Ceremony, me: &Identifier<Suite>, round: u8) -> SecretSlot {
    let session = SessionId::from_bytes(
        Sha256::digest([b"kura/v1/dkg-state\0".as_slice(), &[round]].concat()).into(),
    );
    SecretSlot::for_nonces(
        SuiteId::Secp256k1Tr,
        c.id,
        hex::encode(me.serialize()),
        session,
    )
}

fn round1_set(
    c: &Ceremony,
    files: &[PathBuf],
) -> anyhow::Result<(Vec<Round1Message<Suite>>, [u8; 32])> {
    let mut messages = BTreeMap::new();
    for f in files {
        let m = home::read_doc::<DkgRound1Document<Suite>>(
            f,
            &c.id,
            "a round-1 message of this ceremony",
        )?
        .message;
        match c.cards.get(&m.from) {
            Some(card) if card.label == m.label => {}
            _ => {
                return Err(refused(format!(
                    "{}: round-1 message from someone outside this ceremony",
                    f.display()
                )))
            }
        }
        if messages.insert(m.from, m).is_some() {
            return Err(refused(format!(
                "{}: a second round-1 message from the same participant",
                f.display()
            )));
        }
    }
    if messages.len() != c.cards.len() {
        bail!(
            "{} round-1 messages for {} participants: give every participant's, your own included",
            messages.len(),
            c.cards.len()
        );
    }
    let mut h = Sha256::new();
    h.update(b"kura/v1/dkg-round1-set\0");
    for m in messages.values() {
        h.update(serde_json::to_vec(m)?);
    }
    Ok((messages.into_values().collect(), h.finalize().into()))
}

fn seal_context(
    c: &Ceremony,
    from: &Identifier<Suite>,
    to: &Identifier<Suite>,
    set: &[u8; 32],
) -> Vec<u8> {
    let mut ctx = dkg_round2_context(&c.id, from, to);
    ctx.extend_from_slice(set);
    ctx
}

pub fn round1(
    home_dir: &Path,
    c: &Ceremony,
    out: &Path,
    secrets: &SecretArgs,
    r: &Reporter,
) -> anyhow::Result<()> {
    let home = Home::open(home_dir, "signer", secrets)?;
    let me = me(c, &home)?;
    let n = u16::try_from(c.cards.len())?;
    let (secret, message) =
        dkg::part1::<Suite, _>(me, home.config.label.clone(), n, c.threshold, &mut OsRng)?;
    home.keystore
        .put_nonces(&state_slot(c, &me, 1), &secret.to_secret_document(&c.id)?)?;
    home::write_new(out, &format::encode(&c.id, &DkgRound1Document { message })?)?;
    r.done(
        "dkg-round1",
        serde_json::json!({"ceremony": c.id.to_string(), "out": out.display().to_string()}),
        &format!(
            "round-1 broadcast for ceremony {} written to {}: send it to every participant",
            c.id.short(),
            out.display()
        ),
    )
}

pub fn round2(
    home_dir: &Path,
    c: &Ceremony,
    round1_files: &[PathBuf],
    out_dir: &Path,
    secrets: &SecretArgs,
    r: &Reporter,
) -> anyhow::Result<()> {
    let home = Home::open(home_dir, "signer", secrets)?;
    let me = me(c, &home)?;
    let (messages, set) = round1_set(c, round1_files)?;
    let state = home.keystore.take_nonces(&state_slot(c, &me, 1)).context(
        "no round-1 state for this ceremony (round 1 not run here, or round 2 already run)",
    )?;
    let secret = Round1Secret::<Suite>::from_secret_document(state.expose(), &c.id)?;
    if !messages.iter().any(|m| m.from == me) {
        bail!("your own round-1 message is missing from the set");
    }
    let (secret2, outgoing) = dkg::part2(secret, &messages).map_err(|e| refused(e.to_string()))?;
    home.keystore
        .put_nonces(&state_slot(c, &me, 2), &secret2.to_secret_document(&c.id)?)?;
    let mut written = Vec::new();
    for m in outgoing {
        let to = c
            .cards
            .get(&m.to)
            .context("recipient outside the ceremony")?;
        let sealed = to.key.seal(
            &serde_json::to_vec(&m)?,
            &seal_context(c, &m.from, &m.to, &set),
            &mut OsRng,
        )?;
        let path = out_dir.join(format!("round2-{}-to-{}.json", home.config.label, to.label));
        home::write_new(
            &path,
            &format::encode(
                &c.id,
                &DkgRound2Document::<Suite> {
                    from: m.from,
                    to: m.to,
                    sealed,
                },
            )?,
        )?;
        written.push(path.display().to_string());
    }
    r.done(
        "dkg-round2",
        serde_json::json!({"ceremony": c.id.to_string(), "round1_set": hex::encode(set), "out": written}),
        &format!("{} sealed round-2 messages written to {} (round-1 set {})", written.len(), out_dir.display(), &hex::encode(set)[..16]),
    )
}

#[allow(clippy::too_many_arguments)]
pub fn finish(
    home_dir: &Path,
    c: &Ceremony,
    round1_files: &[PathBuf],
    round2_files: &[PathBuf],
    out_dir: &Path,
    secrets: &SecretArgs,
    r: &Reporter,
) -> anyhow::Result<()> {
    let home = Home::open(home_dir, "signer", secrets)?;
    let me = me(c, &home)?;
    let (messages, set) = round1_set(c, round1_files)?;
    let mut received: Vec<Round2Message<Suite>> = Vec::new();
    for f in round2_files {
        let doc = home::read_doc::<DkgRound2Document<Suite>>(
            f,
            &c.id,
            "a round-2 message of this ceremony",
        )?;
        if doc.to != me {
            continue;
        }
        let from = c
            .cards
            .get(&doc.from)
            .map(|c| c.label.to_string())
            .unwrap_or_else(|| "an outsider".into());
        let plain = home.keystore.open_sealed(&doc.sealed, &seal_context(c, &doc.from, &doc.to, &set)).map_err(|_| {
            refused(format!(
                "round-2 message from {from} ({}) does not open: tampered, or {from} saw a different set of round-1 messages than you (inconsistent broadcast) — abort the ceremony",
                f.display()
            ))
        })?;
        let m: Round2Message<Suite> = serde_json::from_slice(plain.expose())?;
        if m.from != doc.from || m.to != doc.to {
            return Err(refused(format!(
                "{}: sealed content is addressed differently from its envelope",
                f.display()
            )));
        }
        received.push(m);
    }
    let state = home.keystore.take_nonces(&state_slot(c, &me, 2)).context(
        "no round-2 state for this ceremony (round 2 not run here, or already finished)",
    )?;
    let secret2 = Round2Secret::<Suite>::from_secret_document(state.expose(), &c.id)?;
    let (share, group) =
        dkg::part3(&secret2, &messages, &received).map_err(|e| refused(e.to_string()))?;
    keystore::put_share(home.keystore.as_ref(), &share)?;
    let roster = Roster {
        members: c
            .cards
            .iter()
            .map(|(id, card)| RosterEntry {
                participant: *id,
                label: card.label.clone(),
                key: card.key,
            })
            .collect(),
    };
    let group_doc = group.to_document()?;
    let roster_doc = format::encode(group.id(), &roster)?;
    home::write_new(&home.dir.join("group.json"), &group_doc)?;
    home::write_new(&home.dir.join("roster.json"), &roster_doc)?;
    home::write_new(
        &out_dir.join(format!("group-{}.json", home.config.label)),
        &group_doc,
    )?;
    home::write_new(
        &out_dir.join(format!("roster-{}.json", home.config.label)),
        &roster_doc,
    )?;
    r.done(
        "dkg-finish",
        serde_json::json!({"group": group.id().to_string(), "address_regtest": group.taproot().address(bitcoin::Network::Regtest).to_string()}),
        &format!(
            "{} holds its share of group {} — compare this group id with every other participant's before funding\naddress (regtest) {}",
            home.config.label,
            group.id(),
            group.taproot().address(bitcoin::Network::Regtest)
        ),
    )
}
