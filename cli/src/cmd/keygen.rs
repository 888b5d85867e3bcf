//! `kura keygen dealer | import` and `kura signer import`: a trusted
//! dealer's keygen (tests, migrations) as one dealing signed by the
//! dealer's identity key, each share sealed to its signer. The protocol is
//! `wallet_core::ceremony::dealer`.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use rand_core::OsRng;
use wallet_core::ceremony::dealer::{self, Dealing};
use wallet_core::ceremony::dkg::Ceremony;
use wallet_core::ceremony::state::MemberState;
use wallet_core::{format, Label, Secp256k1Tr};

use super::dkg::{confirm, crash_point, nonce, read_cards};
use crate::ctx::Ctx;
use crate::error::ceremony_err;
use crate::home::{self, Home};
use crate::network::{self, NetworkArg};
use crate::secrets::SecretArgs;

type Suite = Secp256k1Tr;

#[derive(Debug, Subcommand)]
pub enum KeygenCmd {
    /// Trusted-dealer keygen (tests, migrations): a dealing signed by the dealer, one share sealed to each signer.
    ///
    /// Example: kura keygen dealer --home dealer -t 2 --card alice/identity.json --card bob/identity.json --card carol/identity.json --ceremony $C --fingerprint $FP --out group
    Dealer(DealArgs),
    /// Split an existing single-key wallet's secret key (a file: WIF or hex) into sealed shares.
    ///
    /// For Taproot the group's internal key is the imported key, so a BIP86 wallet keeps its address.
    /// Example: kura keygen import --home dealer -t 2 --key-file old-wallet.wif --card … --ceremony $C --fingerprint $FP --out group
    Import(ImportKeyArgs),
}

impl KeygenCmd {
    pub fn run(self, ctx: &Ctx) -> anyhow::Result<()> {
        match self {
            KeygenCmd::Dealer(a) => deal(&a, None, ctx),
            KeygenCmd::Import(a) => import_key(&a, ctx),
        }
    }
}

// A dealer ceremony's inputs.
#[derive(Debug, Args)]
pub struct DealArgs {
    /// The dealer's home.
    #[arg(long, value_name = "DIR")]
    home: PathBuf,
    /// How many signers must take part in each signature (t of n).
    #[arg(long, short = 't')]
    threshold: u16,
    /// A signer's identity card (repeat, one per signer).
    #[arg(long = "card", value_name = "FILE", required = true)]
    cards: Vec<PathBuf>,
    /// 64 hex digits the convener picked at random and gave everyone.
    #[arg(long, value_name = "HEX")]
    ceremony: String,
    /// The ceremony fingerprint the convener announced (else asked on a terminal).
    #[arg(long, value_name = "FP")]
    fingerprint: Option<String>,
    /// Directory for dealing.json, group.json and roster.json (created).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// The network of the address printed; by default the dealer home's (`network` in its
    /// kura.json), else bitcoin. A value that contradicts the home's is an error.
    #[arg(long, value_enum)]
    network: Option<NetworkArg>,
    #[command(flatten)]
    secrets: SecretArgs,
}

// `keygen import`: a dealer ceremony of an existing key.
#[derive(Debug, Args)]
pub struct ImportKeyArgs {
    #[command(flatten)]
    deal: DealArgs,
    /// File holding the secret key (WIF or 64 hex digits); never pass a key on the command line.
    #[arg(long, value_name = "FILE")]
    key_file: PathBuf,
}

// `signer import`: this signer's share from a dealing.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The signer's home.
    #[arg(long, value_name = "DIR")]
    home: PathBuf,
    /// The dealer's signed dealing (dealing.json).
    #[arg(long, value_name = "FILE")]
    dealing: PathBuf,
    /// The ceremony fingerprint the convener announced (else asked on a terminal).
    #[arg(long, value_name = "FP")]
    fingerprint: Option<String>,
    #[command(flatten)]
    secrets: SecretArgs,
}

/// `kura keygen import`: split an existing single-key wallet's secret key
/// (read from a file as WIF or 64 hex digits, never from the command line).
/// For Taproot the group's internal key is the imported key, so a BIP86
/// single-key wallet keeps its address.
fn import_key(args: &ImportKeyArgs, ctx: &Ctx) -> anyhow::Result<()> {
    let key_file = &args.key_file;
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
    deal(&args.deal, Some(&key), ctx)
}

fn deal(
    a: &DealArgs,
    key: Option<&wallet_core::frost_core::SigningKey<Secp256k1Tr>>,
    ctx: &Ctx,
) -> anyhow::Result<()> {
    let named = network::resolve(a.network, Some(&a.home))?;
    let cards = read_cards(&a.cards)?;
    let nonce = nonce(&a.ceremony)?;
    let home = Home::open(&a.home, "dealer", &a.secrets)?;
    let own = home::read_card(&home.dir.join("identity.json"))?;
    let c = Ceremony::<Suite>::with_dealer(a.threshold, cards, own, nonce).map_err(ceremony_err)?;
    // Nothing is dealt, let alone sealed, before the fingerprint is confirmed.
    let c = confirm(c, a.fingerprint.as_deref())?;
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
    let address = group.taproot().address(named.into());
    ctx.done(
        "keygen-dealer",
        serde_json::json!({"group": group.id().to_string(), "fingerprint": dealt.fingerprint.to_string(), "threshold": a.threshold, "signers": labels.iter().map(|l| l.as_str()).collect::<Vec<_>>(), "out": a.out.display().to_string(), "address": address.to_string(), "network": named.name()}),
        &format!(
            "group {} ({}-of-{}) written to {}: dealing.json (signed, one sealed share per signer), group.json, roster.json\ngroup fingerprint {}\naddress ({named}) {address}",
            group.id().short(),
            a.threshold,
            labels.len(),
            a.out.display(),
            dealt.fingerprint
        ),
    )
}

impl ImportArgs {
    pub fn run(self, ctx: &Ctx) -> anyhow::Result<()> {
        import(&self, ctx)
    }
}

fn import(args: &ImportArgs, ctx: &Ctx) -> anyhow::Result<()> {
    let dealing_path = &args.dealing;
    let fingerprint = args.fingerprint.as_deref();
    let home = Home::open(&args.home, "signer", &args.secrets)?;
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
    ctx.done(
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
