//! `kura keygen dealer | import` and `kura signer import`: a trusted
//! dealer's keygen (tests, migrations) as one dealing signed by the
//! dealer's identity key, each share sealed to its signer. The protocol is
//! `wallet_core::ceremony::dealer`.

use std::path::{Path, PathBuf};

use anyhow::Context;
use rand_core::OsRng;
use wallet_core::ceremony::dealer::{self, Dealing};
use wallet_core::ceremony::dkg::Ceremony;
use wallet_core::ceremony::state::MemberState;
use wallet_core::{format, Label, Secp256k1Tr};

use super::dkg::{confirm, crash_point, nonce, read_cards};
use crate::home::{self, Home};
use crate::secrets::SecretArgs;
use crate::{ceremony_err, Reporter};

type Suite = Secp256k1Tr;

/// The inputs of a dealer ceremony.
pub struct DealArgs<'a> {
    pub home: &'a Path,
    pub threshold: u16,
    pub cards: &'a [PathBuf],
    pub ceremony: &'a str,
    pub fingerprint: Option<&'a str>,
    pub out: &'a Path,
}

pub fn dealer(a: &DealArgs<'_>, secrets: &SecretArgs, r: &Reporter) -> anyhow::Result<()> {
    deal(a, None, secrets, r)
}

/// `kura keygen import`: split an existing single-key wallet's secret key
/// (read from a file as WIF or 64 hex digits, never from the command line).
/// For Taproot the group's internal key is the imported key, so a BIP86
/// single-key wallet keeps its address.
pub fn import_key(
    a: &DealArgs<'_>,
    key_file: &Path,
    secrets: &SecretArgs,
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
    deal(a, Some(&key), secrets, r)
}

fn deal(
    a: &DealArgs<'_>,
    key: Option<&wallet_core::frost_core::SigningKey<Secp256k1Tr>>,
    secrets: &SecretArgs,
    r: &Reporter,
) -> anyhow::Result<()> {
    let cards = read_cards(a.cards)?;
    let nonce = nonce(a.ceremony)?;
    let home = Home::open(a.home, "dealer", secrets)?;
    let own = home::read_card(&home.dir.join("identity.json"))?;
    let c = Ceremony::<Suite>::with_dealer(a.threshold, cards, own, nonce).map_err(ceremony_err)?;
    // Nothing is dealt, let alone sealed, before the fingerprint is confirmed.
    let c = confirm(c, a.fingerprint)?;
    let dealt = dealer::deal(&c, home.keystore.as_ref(), key, &mut OsRng).map_err(ceremony_err)?;
    let group = &dealt.group;
    home::write_new(
        &a.out.join("dealing.json"),
        &format::encode(group.id(), &dealt.dealing)?,
    )?;
    home::write_new(&a.out.join("group.json"), &group.to_document()?)?;
    home::write_new(
        &a.out.join("roster.json"),
        &dealt.roster.to_document(group.id())?,
    )?;
    let labels: Vec<&Label> = c.members().values().map(|m| &m.label).collect();
    let address = group.taproot().address(bitcoin::Network::Regtest);
    r.done(
        "keygen-dealer",
        serde_json::json!({"group": group.id().to_string(), "fingerprint": dealt.fingerprint.to_string(), "threshold": a.threshold, "signers": labels.iter().map(|l| l.as_str()).collect::<Vec<_>>(), "out": a.out.display().to_string()}),
        &format!(
            "group {} ({}-of-{}) written to {}: dealing.json (signed, one sealed share per signer), group.json, roster.json\ngroup fingerprint {}\nregtest address {address}",
            group.id().short(),
            a.threshold,
            labels.len(),
            a.out.display(),
            dealt.fingerprint
        ),
    )
}

pub fn import(
    home_dir: &Path,
    dealing_path: &Path,
    fingerprint: Option<&str>,
    secrets: &SecretArgs,
    r: &Reporter,
) -> anyhow::Result<()> {
    let home = Home::open(home_dir, "signer", secrets)?;
    let bytes = home::read(dealing_path)?;
    let doc = format::decode::<Dealing<Suite>>(&bytes)
        .with_context(|| format!("{} is not a dealing", dealing_path.display()))?;
    let typed = match fingerprint {
        Some(f) => f.to_owned(),
        None => {
            // Show the fingerprint of the cards inside, for a terminal confirmation.
            let c = Ceremony::<Suite>::from_plan(&doc.body.body.plan).map_err(ceremony_err)?;
            confirm(c.clone(), None)?;
            c.fingerprint().to_string()
        }
    };
    let ks = home.keystore.as_ref();
    let imported = dealer::import(&doc.group, &doc.body, &typed, ks).map_err(ceremony_err)?;
    MemberState::new(&home.dir)
        .install(
            ks,
            &imported.share,
            &imported.group,
            &imported.roster,
            &mut crash_point,
        )
        .map_err(ceremony_err)?;
    r.done(
        "signer-import",
        serde_json::json!({"group": imported.group.id().to_string(), "fingerprint": imported.fingerprint.to_string(), "participant": home.config.label.as_str()}),
        &format!(
            "{} holds its share of group {} in {}\ngroup fingerprint {} — compare it with every other participant's before funding",
            home.config.label,
            imported.group.id().short(),
            home.keystore.describe(),
            imported.fingerprint
        ),
    )
}
