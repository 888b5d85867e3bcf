//! `kura keygen dealer` and `kura signer import`: a trusted dealer's keygen
//! (for tests and migrations), with each share sealed to its signer's
//! identity key so whoever carries the files learns nothing.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use rand_core::OsRng;
use serde::{Deserialize, Serialize};
use wallet_core::format::{self, DocumentBody, GroupId};
use wallet_core::frost_core::Identifier;
use wallet_core::identity::SealedMessage;
use wallet_core::keygen::{self, Identifiers};
use wallet_core::{keystore, KeyShare, Label, Secp256k1Tr, SuiteId};

use crate::home::{self, Home, Roster, RosterEntry};
use crate::secrets::SecretArgs;
use crate::Reporter;

/// A key share sealed to its signer's identity key.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SealedShare {
    /// The recipient.
    pub participant: Identifier<Secp256k1Tr>,
    /// The `key-share` document, sealed.
    pub sealed: SealedMessage,
}

impl DocumentBody for SealedShare {
    const KIND: &'static str = "sealed-key-share";
    fn suite() -> SuiteId {
        SuiteId::Secp256k1Tr
    }
}

fn seal_context(group: &GroupId, participant: &Identifier<Secp256k1Tr>) -> Vec<u8> {
    let mut ctx = b"kura/v1/sealed-key-share\0".to_vec();
    ctx.extend_from_slice(group.as_bytes());
    ctx.extend_from_slice(&participant.serialize());
    ctx
}

pub fn dealer(threshold: u16, cards: &[PathBuf], out: &Path, r: &Reporter) -> anyhow::Result<()> {
    deal(threshold, cards, None, out, r)
}

/// `kura keygen import`: split an existing single-key wallet's secret key
/// (read from a file as WIF or 64 hex digits, never from the command line).
/// For Taproot the group's internal key is the imported key, so a BIP86
/// single-key wallet keeps its address.
pub fn import_key(
    threshold: u16,
    cards: &[PathBuf],
    key_file: &Path,
    out: &Path,
    r: &Reporter,
) -> anyhow::Result<()> {
    let raw = zeroize::Zeroizing::new(home::read_capped(key_file, 4096)?);
    let text = zeroize::Zeroizing::new(
        std::str::from_utf8(&raw)
            .with_context(|| format!("{} is not text (WIF or hex expected)", key_file.display()))?
            .to_owned(),
    );
    let text = text.trim();
    let bytes = zeroize::Zeroizing::new(match bitcoin::PrivateKey::from_wif(text) {
        Ok(k) => k.inner.secret_bytes().to_vec(),
        Err(_) => hex::decode(text).map_err(|_| {
            anyhow::anyhow!(
                "{} holds neither a WIF key nor 64 hex digits",
                key_file.display()
            )
        })?,
    });
    let key =
        wallet_core::frost_core::SigningKey::<Secp256k1Tr>::deserialize(&bytes).map_err(|_| {
            anyhow::anyhow!("{} is not a valid secp256k1 secret key", key_file.display())
        })?;
    deal(threshold, cards, Some(&key), out, r)
}

fn deal(
    threshold: u16,
    cards: &[PathBuf],
    key: Option<&wallet_core::frost_core::SigningKey<Secp256k1Tr>>,
    out: &Path,
    r: &Reporter,
) -> anyhow::Result<()> {
    let cards = cards
        .iter()
        .map(|c| home::read_card(c))
        .collect::<anyhow::Result<Vec<_>>>()?;
    if cards.iter().any(|c| c.role != "signer") {
        bail!("every card must be a signer's identity card");
    }
    let labels: Vec<Label> = cards.iter().map(|c| c.label.clone()).collect();
    let dealt = match key {
        None => {
            keygen::dealer::<Secp256k1Tr, _>(threshold, &labels, Identifiers::Default, &mut OsRng)?
        }
        Some(k) => keygen::split::<Secp256k1Tr, _>(
            k,
            threshold,
            &labels,
            Identifiers::Default,
            &mut OsRng,
        )?,
    };
    let group = &dealt.group;
    let roster = Roster {
        members: dealt
            .shares
            .iter()
            .zip(&cards)
            .map(|(s, c)| RosterEntry {
                participant: *s.identifier(),
                label: c.label.clone(),
                key: c.key,
            })
            .collect(),
    };
    home::write_new(&out.join("group.json"), &group.to_document()?)?;
    home::write_new(
        &out.join("roster.json"),
        &format::encode(group.id(), &roster)?,
    )?;
    for (share, card) in dealt.shares.iter().zip(&cards) {
        let doc = share.to_secret_document()?;
        let sealed = card.key.seal(
            doc.expose(),
            &seal_context(group.id(), share.identifier()),
            &mut OsRng,
        )?;
        let body = SealedShare {
            participant: *share.identifier(),
            sealed,
        };
        home::write_new(
            &out.join(format!("share-{}.json", card.label)),
            &format::encode(group.id(), &body)?,
        )?;
    }
    let address = group.taproot().address(bitcoin::Network::Regtest);
    r.done(
        "keygen-dealer",
        serde_json::json!({"group": group.id().to_string(), "threshold": threshold, "signers": labels.iter().map(Label::as_str).collect::<Vec<_>>(), "out": out.display().to_string()}),
        &format!(
            "group {} ({threshold}-of-{}) written to {}: group.json, roster.json and one sealed share per signer\nregtest address {address}",
            group.id(),
            labels.len(),
            out.display()
        ),
    )
}

pub fn import(
    home_dir: &Path,
    group_path: &Path,
    roster_path: &Path,
    share_path: &Path,
    secrets: &SecretArgs,
    r: &Reporter,
) -> anyhow::Result<()> {
    let home = Home::open(home_dir, "signer", secrets)?;
    let group = home::read_group(group_path)?;
    let identities = home::read_roster(roster_path, &group)?;
    let sealed =
        home::read_doc::<SealedShare>(share_path, group.id(), "a sealed key share for this group")?;
    let me = home.keystore.identity_public_key()?;
    if identities.get(&sealed.participant) != Some(&me) {
        bail!("this share is for another participant (the roster does not give it this signer's identity key)");
    }
    let plain = home
        .keystore
        .open_sealed(&sealed.sealed, &seal_context(group.id(), &sealed.participant))
        .context("the sealed share does not open with this signer's identity key (tampered, or for someone else)")?;
    let share = KeyShare::<Secp256k1Tr>::from_secret_document(plain.expose())?;
    share.check_member_of(&group)?;
    if share.identifier() != &sealed.participant || share.label() != &home.config.label {
        bail!(
            "the share inside is for {:?}, not this signer ({:?})",
            share.label().as_str(),
            home.config.label.as_str()
        );
    }
    keystore::put_share(home.keystore.as_ref(), &share)?;
    home::write_new(&home.dir.join("group.json"), &home::read(group_path)?)?;
    home::write_new(&home.dir.join("roster.json"), &home::read(roster_path)?)?;
    r.done(
        "signer-import",
        serde_json::json!({"group": group.id().to_string(), "participant": home.config.label.as_str()}),
        &format!("{} holds its share of group {} in {}", home.config.label, group.id().short(), home.keystore.describe()),
    )
}
