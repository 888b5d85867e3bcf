//! `kura wallet address | descriptor`: where to fund the group's wallet.

use std::path::PathBuf;

use bitcoin::Network;
use clap::{Args, Subcommand};

use crate::ctx::Ctx;
use crate::home;
use crate::network::{self, NetworkArg};

#[derive(Debug, Subcommand)]
pub enum WalletCmd {
    /// The group's P2TR address: the address alone on stdout (--verbose adds details on stderr).
    ///
    /// Example: kura wallet address --home alice   (or: --group group/group.json --network regtest)
    Address(AddressArgs),
    /// The group's watch-only descriptor `tr(<internal key>)#checksum` (Bitcoin Core, Sparrow, BDK).
    ///
    /// Example: kura wallet descriptor --group group.json
    Descriptor(DescriptorArgs),
}

impl WalletCmd {
    pub fn run(self, ctx: &Ctx) -> anyhow::Result<()> {
        match self {
            WalletCmd::Address(a) => a.run(ctx),
            WalletCmd::Descriptor(a) => a.run(ctx),
        }
    }
}

#[derive(Debug, Args)]
pub struct AddressArgs {
    #[command(flatten)]
    group: GroupArgs,
    /// The Bitcoin network; by default the network of the home the group file is in (HOME/group.json:
    /// `network` in HOME/kura.json, else its installed policy's), else bitcoin. A value that
    /// contradicts the home's is an error.
    #[arg(long, value_enum)]
    network: Option<NetworkArg>,
    /// Also print the network, the keys and the watch-only descriptor, on stderr.
    #[arg(long, short = 'v')]
    verbose: bool,
}

// Which group: a member's home, or a group file.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct GroupArgs {
    /// A member's home: its group.json, and its network.
    #[arg(long, value_name = "DIR")]
    home: Option<PathBuf>,
    /// The group file (HOME/group.json of a member, or a dealing's group.json).
    #[arg(long, value_name = "FILE")]
    group: Option<PathBuf>,
}

impl GroupArgs {
    /// The group file, and the home it belongs to, if any.
    fn paths(&self) -> (PathBuf, Option<PathBuf>) {
        match (&self.home, &self.group) {
            (Some(h), _) => (h.join("group.json"), Some(h.clone())),
            (None, Some(g)) => (g.clone(), network::home_of_group(g).map(|h| h.to_owned())),
            // clap requires one of them.
            (None, None) => (PathBuf::from("group.json"), None),
        }
    }
}

impl AddressArgs {
    fn run(self, ctx: &Ctx) -> anyhow::Result<()> {
        let (group_path, home) = self.group.paths();
        let named = network::resolve(self.network, home.as_deref())?;
        let network = Network::from(named);
        let group = home::read_group(&group_path)?;
        let keys = group.taproot();
        let address = keys.address(network);
        if self.verbose {
            ctx.note(&format!(
                "network {named}\ninternal key {}\noutput key {}\nwatch-only descriptor {}",
                keys.internal_key(),
                keys.output_key(),
                keys.descriptor()
            ));
        }
        // One value on stdout: scripts capture it with $(kura wallet address …).
        ctx.done(
            "wallet-address",
            serde_json::json!({"address": address.to_string(), "network": named.name(), "internal_key": keys.internal_key().to_string(), "output_key": keys.output_key().to_string(), "descriptor": keys.descriptor()}),
            &address.to_string(),
        )
    }
}

#[derive(Debug, Args)]
pub struct DescriptorArgs {
    #[command(flatten)]
    group: GroupArgs,
}

impl DescriptorArgs {
    fn run(self, ctx: &Ctx) -> anyhow::Result<()> {
        let group = home::read_group(&self.group.paths().0)?;
        let d = group.taproot().descriptor();
        ctx.done(
            "wallet-descriptor",
            serde_json::json!({"descriptor": d}),
            &d,
        )
    }
}
