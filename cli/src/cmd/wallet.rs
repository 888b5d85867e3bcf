//! `kura wallet address | descriptor`: where to fund the group's wallet.
//! Every deposit gets its own address, `m/0/<index>` below the group xpub
//! (BIP328 construction, [`wallet_core::hd`]); change goes to `m/1/<index>`.

use std::path::PathBuf;

use bitcoin::Network;
use clap::{Args, Subcommand};

use wallet_core::hd::{Chain, ChildPath};

use crate::ctx::Ctx;
use crate::home;
use crate::network::{self, NetworkArg};

#[derive(Debug, Subcommand)]
pub enum WalletCmd {
    /// A P2TR address of the group: deposit address N with --index N (change address N with --change), else the group key's own; the address alone on stdout (--verbose adds details on stderr).
    ///
    /// Example: kura wallet address --home alice --index 17   (or: --group group/group.json --network regtest --index 17)
    Address(AddressArgs),
    /// The group's watch-only descriptor: `tr([fp]xpub/<0;1>/*)#checksum` (BIP389: receive and change; Bitcoin Core, Sparrow, BDK), one chain with --chain, the group key alone with --group-key.
    ///
    /// Example: kura wallet descriptor --group group.json --network regtest
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
    /// The index on the chain (deposit addresses are m/0/INDEX); without it, the group key's own address.
    #[arg(long, value_name = "N")]
    index: Option<u32>,
    /// The change chain (m/1/INDEX) instead of the deposit chain.
    #[arg(long, requires = "index")]
    change: bool,
    /// Also print the network, the path, the keys and the watch-only descriptor, on stderr.
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
        let xpub = group.xpub();
        let chain = if self.change {
            Chain::Change
        } else {
            Chain::Receive
        };
        let path = match self.index {
            Some(i) => ChildPath::new(chain, i)?,
            None => ChildPath::root(),
        };
        let child = xpub.derive(&path)?;
        let keys = child.taproot();
        let address = keys.address(network);
        let descriptor = xpub.descriptor(network);
        if self.verbose {
            ctx.note(&format!(
                "network {named}\npath {path} below the group xpub (fingerprint {})\ninternal key {}\noutput key {}\nwatch-only descriptor {descriptor}",
                xpub.fingerprint(),
                keys.internal_key(),
                keys.output_key(),
            ));
        }
        // One value on stdout: scripts capture it with $(kura wallet address …).
        ctx.done(
            "wallet-address",
            serde_json::json!({"address": address.to_string(), "network": named.name(), "path": path.to_string(), "fingerprint": xpub.fingerprint().to_string(), "internal_key": keys.internal_key().to_string(), "output_key": keys.output_key().to_string(), "descriptor": descriptor}),
            &address.to_string(),
        )
    }
}

#[derive(Debug, Args)]
pub struct DescriptorArgs {
    #[command(flatten)]
    group: GroupArgs,
    /// The Bitcoin network (xpub on bitcoin, tpub on the others); by default the home's, as for `kura wallet address`.
    #[arg(long, value_enum)]
    network: Option<NetworkArg>,
    /// One chain only: `tr([fp]xpub/0/*)` (receive) or `tr([fp]xpub/1/*)` (change), for wallets without BIP389.
    #[arg(long, value_enum, conflicts_with = "group_key")]
    chain: Option<ChainArg>,
    /// The group key alone, `tr(<internal key>)`: its one address, as before derivation.
    #[arg(long)]
    group_key: bool,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum ChainArg {
    Receive,
    Change,
}

impl DescriptorArgs {
    fn run(self, ctx: &Ctx) -> anyhow::Result<()> {
        let (group_path, home) = self.group.paths();
        let named = network::resolve(self.network, home.as_deref())?;
        let network = Network::from(named);
        let group = home::read_group(&group_path)?;
        let xpub = group.xpub();
        let d = match (self.group_key, self.chain) {
            (true, _) => group.taproot().descriptor(),
            (false, Some(ChainArg::Receive)) => xpub.chain_descriptor(Chain::Receive, network),
            (false, Some(ChainArg::Change)) => xpub.chain_descriptor(Chain::Change, network),
            (false, None) => xpub.descriptor(network),
        };
        ctx.done(
            "wallet-descriptor",
            serde_json::json!({
                "descriptor": d,
                "network": named.name(),
                "multipath": xpub.descriptor(network),
                "receive": xpub.chain_descriptor(Chain::Receive, network),
                "change": xpub.chain_descriptor(Chain::Change, network),
                "group_key": group.taproot().descriptor(),
                "xpub": xpub.xpub(network).to_string(),
                "fingerprint": xpub.fingerprint().to_string(),
            }),
            &d,
        )
    }
}
