//! `kura wallet address | descriptor`: where to fund the group's wallet.

use std::path::PathBuf;

use bitcoin::Network;
use clap::{Args, Subcommand};

use crate::ctx::Ctx;
use crate::home;

#[derive(Debug, Subcommand)]
pub enum WalletCmd {
    /// The group's P2TR address.
    ///
    /// Example: kura wallet address --group group.json --network regtest
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
    /// The group file (HOME/group.json of a member, or a dealing's group.json).
    #[arg(long, value_name = "FILE")]
    group: PathBuf,
    /// The network the address is for.
    #[arg(long, default_value = "bitcoin")]
    network: Network,
}

impl AddressArgs {
    fn run(self, ctx: &Ctx) -> anyhow::Result<()> {
        let network = self.network;
        let group = home::read_group(&self.group)?;
        let keys = group.taproot();
        let address = keys.address(network);
        ctx.done(
            "wallet-address",
            serde_json::json!({"address": address.to_string(), "network": network.to_string(), "internal_key": keys.internal_key().to_string(), "output_key": keys.output_key().to_string(), "descriptor": keys.descriptor()}),
            &format!("{address}\nwatch-only descriptor: {}", keys.descriptor()),
        )
    }
}

#[derive(Debug, Args)]
pub struct DescriptorArgs {
    /// The group file (HOME/group.json of a member, or a dealing's group.json).
    #[arg(long, value_name = "FILE")]
    group: PathBuf,
}

impl DescriptorArgs {
    fn run(self, ctx: &Ctx) -> anyhow::Result<()> {
        let group = home::read_group(&self.group)?;
        let d = group.taproot().descriptor();
        ctx.done(
            "wallet-descriptor",
            serde_json::json!({"descriptor": d}),
            &d,
        )
    }
}
