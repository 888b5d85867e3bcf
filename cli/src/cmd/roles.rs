//! `kura signer init | import`, `kura dealer init`, `kura requester init`:
//! a participant's home, its keystore and identity card.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use wallet_core::ceremony::Role;

use crate::ctx::Ctx;
use crate::home::{self, Home};
use crate::network::NetworkArg;
use crate::secrets::SecretArgs;

#[derive(Debug, Subcommand)]
pub enum SignerCmd {
    /// Create a signer home with a new keystore and identity key; prints the identity card to share.
    ///
    /// Example: kura signer init --home alice --label alice --software --passphrase-file alice.pass
    Init(InitArgs),
    /// Import this signer's share from a dealer's signed dealing, after confirming the ceremony fingerprint.
    ///
    /// Example: kura signer import --home alice --dealing out/dealing.json --fingerprint XXXX-… --passphrase-file alice.pass
    Import(super::keygen::ImportArgs),
    /// Run the signer daemon: unlock the keystore once, take withdrawals from the coordinator service, approve what the policy's `[auto_approve]` table allows, keep the rest for a person.
    ///
    /// Example: kura signer run --home alice --coordinator https://127.0.0.1:8443 --coordinator-pin sha256:… --passphrase-file alice.pass
    Run(super::service::RunArgs),
    /// What waits for a person in this home's running daemon, with the daemon's own review.
    ///
    /// Example: kura signer pending --home alice
    Pending(super::service::PendingArgs),
    /// Approve a withdrawal waiting in this home's running daemon.
    ///
    /// Example: kura signer approve --home alice 3f2a9c01…(all 64 hex digits)
    Approve(super::service::DecideArgs),
    /// Refuse a withdrawal waiting in this home's running daemon (recorded in the audit log).
    ///
    /// Example: kura signer refuse --home alice 3f2a9c01…(all 64 hex digits) --reason "not on the payout list"
    Refuse(super::service::RefuseArgs),
}

impl SignerCmd {
    pub fn run(self, ctx: &Ctx) -> anyhow::Result<()> {
        match self {
            SignerCmd::Init(a) => a.run(Role::Signer, ctx),
            SignerCmd::Import(a) => a.run(ctx),
            SignerCmd::Run(a) => a.run(ctx),
            SignerCmd::Pending(a) => a.run(ctx),
            SignerCmd::Approve(a) => a.approve(ctx),
            SignerCmd::Refuse(a) => a.run(ctx),
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum DealerCmd {
    /// Create a dealer home with a new keystore and identity key; its card is pinned by every signer.
    ///
    /// Example: kura dealer init --home dealer --label dealer --software --passphrase-file dealer.pass
    Init(InitArgs),
}

impl DealerCmd {
    pub fn run(self, ctx: &Ctx) -> anyhow::Result<()> {
        match self {
            DealerCmd::Init(a) => a.run(Role::Dealer, ctx),
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum RequesterCmd {
    /// Create a requester home (software keystore) and identity card.
    ///
    /// Example: kura requester init --home ops --label treasury-ops --passphrase-env OPS_PASS
    Init(RequesterInitArgs),
}

impl RequesterCmd {
    pub fn run(self, ctx: &Ctx) -> anyhow::Result<()> {
        match self {
            RequesterCmd::Init(a) => init(
                &a.home,
                Role::Requester,
                &a.label,
                (None, a.network),
                &a.secrets,
                ctx,
            ),
        }
    }
}

// The arguments of `signer init` and `dealer init`.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// The home directory to create (0700): configuration, keystore, identity card.
    #[arg(long, value_name = "DIR")]
    home: PathBuf,
    /// This participant's label, as others will see it on its card (e.g. alice).
    #[arg(long)]
    label: String,
    /// Keep secrets in an age-encrypted software keystore under HOME/keystore (passphrase).
    #[arg(long, conflicts_with = "hsm", required_unless_present = "hsm")]
    software: bool,
    /// Keep secrets on this PKCS#11 token, e.g. pkcs11:token=kura-alice?module-path=/usr/lib/softhsm/libsofthsm2.so
    #[arg(long, value_name = "PKCS11-URI")]
    hsm: Option<String>,
    /// Record the Bitcoin network this home is for: later commands default to it and refuse another.
    #[arg(long, value_enum)]
    network: Option<NetworkArg>,
    #[command(flatten)]
    secrets: SecretArgs,
}

impl InitArgs {
    fn run(self, role: Role, ctx: &Ctx) -> anyhow::Result<()> {
        init(
            &self.home,
            role,
            &self.label,
            (self.hsm.as_deref(), self.network),
            &self.secrets,
            ctx,
        )
    }
}

// The arguments of `requester init`.
#[derive(Debug, Args)]
pub struct RequesterInitArgs {
    /// The home directory to create (0700): configuration, keystore, identity card.
    #[arg(long, value_name = "DIR")]
    home: PathBuf,
    /// The requester's label, as signers' policies name it (e.g. treasury-ops).
    #[arg(long)]
    label: String,
    /// Record the Bitcoin network this home is for: later commands default to it and refuse another.
    #[arg(long, value_enum)]
    network: Option<NetworkArg>,
    #[command(flatten)]
    secrets: SecretArgs,
}

fn init(
    dir: &Path,
    role: Role,
    label: &str,
    (hsm, network): (Option<&str>, Option<NetworkArg>),
    secrets: &SecretArgs,
    ctx: &Ctx,
) -> anyhow::Result<()> {
    let home = Home::init(dir, role, label, hsm, network, secrets)?;
    let key = home.keystore.identity_public_key()?;
    let card = home::read_card(&dir.join("identity.json"))?;
    let fp = card.fingerprint();
    ctx.done(
        &format!("{role}-init"),
        serde_json::json!({"label": label, "network": network.map(NetworkArg::name), "identity": key.to_string(), "fingerprint": fp.to_string(), "keystore": home.keystore.describe(), "card": dir.join("identity.json").display().to_string()}),
        &format!(
            "{role} {label} ready ({}).\nidentity key {key}\ncard fingerprint {fp} (read it out to whoever receives your card)\nshare your identity card: {}",
            home.keystore.describe(),
            dir.join("identity.json").display()
        ),
    )
}
