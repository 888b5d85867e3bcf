//! The coordinator's `kura coordinate package | finalize`.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use anyhow::Context;
use bitcoin::Network;
use clap::{Args, Subcommand};
use wallet_core::format;
use wallet_core::withdrawal::coordinator::{build_packages, finalize_withdrawal, CoordinatorError};
use wallet_core::withdrawal::request::{
    Approval, Signed, WithdrawalPackages, WithdrawalRequest, WithdrawalShares,
};

use crate::ctx::Ctx;
use crate::home;
use crate::network::{self, NetworkArg};

#[derive(Debug, Subcommand)]
pub enum CoordinateCmd {
    /// Build one signing package per input from the approvals.
    ///
    /// Example: kura coordinate package --group group.json --roster roster.json w-42.request.json a.json c.json --out w-42.packages.json
    Package(PackageArgs),
    /// Aggregate the shares (naming any cheater), finalize the PSBT and extract the transaction.
    ///
    /// Example: kura coordinate finalize --group group.json --roster roster.json w-42.request.json w-42.packages.json a.shares.json c.shares.json --psbt-out w-42.final.psbt --tx-out w-42.tx
    Finalize(FinalizeArgs),
}

impl CoordinateCmd {
    pub fn run(self, ctx: &Ctx) -> anyhow::Result<()> {
        match self {
            CoordinateCmd::Package(a) => package(&a, ctx),
            CoordinateCmd::Finalize(a) => finalize(&a, ctx),
        }
    }
}

#[derive(Debug, Args)]
pub struct PackageArgs {
    /// The group file.
    #[arg(long, value_name = "FILE")]
    group: PathBuf,
    /// The group's roster (members' identity keys).
    #[arg(long, value_name = "FILE")]
    roster: PathBuf,
    /// The signed withdrawal request.
    request: PathBuf,
    /// The signers' approvals (at least t).
    #[arg(required = true, value_name = "APPROVAL")]
    approvals: Vec<PathBuf>,
    /// Where to write the signing packages.
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// The Bitcoin network; by default the network of the home the group file is in (HOME/group.json:
    /// `network` in HOME/kura.json, else its installed policy's), else bitcoin. A value that
    /// contradicts the home's is an error.
    #[arg(long, value_enum)]
    network: Option<NetworkArg>,
}

#[derive(Debug, Args)]
pub struct FinalizeArgs {
    /// The group file.
    #[arg(long, value_name = "FILE")]
    group: PathBuf,
    /// The group's roster (members' identity keys).
    #[arg(long, value_name = "FILE")]
    roster: PathBuf,
    /// The signed withdrawal request.
    request: PathBuf,
    /// The signing packages built by `coordinate package`.
    packages: PathBuf,
    /// The signers' signature shares.
    #[arg(required = true, value_name = "SHARES")]
    shares: Vec<PathBuf>,
    /// The finalized PSBT: binary BIP174 by default; `-` writes it to standard output
    /// (base64 on a terminal) and the report to standard error.
    #[arg(long, value_name = "FILE")]
    psbt_out: PathBuf,
    /// Write the PSBT as base64 text instead of binary BIP174.
    #[arg(long)]
    psbt_base64: bool,
    /// Where to write the raw transaction (hex).
    #[arg(long, value_name = "FILE")]
    tx_out: PathBuf,
    /// The Bitcoin network; by default the network of the home the group file is in (HOME/group.json:
    /// `network` in HOME/kura.json, else its installed policy's), else bitcoin. A value that
    /// contradicts the home's is an error.
    #[arg(long, value_enum)]
    network: Option<NetworkArg>,
}

/// Kept typed: `error::exit_kind` makes a malformed document an input
/// error and every other coordinator error a refusal.
fn coordinator_error(e: CoordinatorError) -> anyhow::Error {
    anyhow::Error::new(e)
}

fn package(a: &PackageArgs, r: &Ctx) -> anyhow::Result<()> {
    let (group, roster, request, approvals, out) =
        (&a.group, &a.roster, &a.request, &a.approvals, &a.out);
    let network = group_network(a.network, group)?;
    let group = home::read_group(group)?;
    let identities = home::read_roster(roster, &group)?;
    let req: Signed<WithdrawalRequest> =
        home::read_doc(request, group.id(), "a withdrawal request of this group")?;
    let mut list = Vec::new();
    for p in approvals {
        let a: Signed<Approval> = home::read_doc(p, group.id(), "an approval of this group")?;
        list.push(a);
    }
    let packages =
        build_packages(&group, &identities, &req, &list, network).map_err(coordinator_error)?;
    home::write_new(out, &format::encode(group.id(), &packages)?)?;
    r.done(
        "coordinate-package",
        serde_json::json!({"request_id": req.body.request_id, "approvals": list.len(), "inputs": packages.packages.len(), "out": out.display().to_string()}),
        &format!("{} signing package(s) from {} approvals written to {}", packages.packages.len(), list.len(), out.display()),
    )
}

/// The network for a group file: `--network`, else that of the home the
/// file is in, else the default.
fn group_network(given: Option<NetworkArg>, group: &std::path::Path) -> anyhow::Result<Network> {
    Ok(network::resolve(given, network::home_of_group(group))?.into())
}

/// How `coordinate finalize` writes the finalized PSBT.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PsbtForm {
    /// Binary BIP174 (what `.psbt` files hold), unless written to a terminal.
    Auto,
    /// Base64 text, one line.
    Base64,
}

fn finalize(a: &FinalizeArgs, r: &Ctx) -> anyhow::Result<()> {
    let (group, roster, request, packages, shares) =
        (&a.group, &a.roster, &a.request, &a.packages, &a.shares);
    let (psbt_out, tx_out) = (&a.psbt_out, &a.tx_out);
    let network = group_network(a.network, group)?;
    let form = if a.psbt_base64 {
        PsbtForm::Base64
    } else {
        PsbtForm::Auto
    };
    let group = home::read_group(group)?;
    let identities = home::read_roster(roster, &group)?;
    let req: Signed<WithdrawalRequest> =
        home::read_doc(request, group.id(), "a withdrawal request of this group")?;
    let pk: WithdrawalPackages =
        home::read_doc(packages, group.id(), "signing packages of this group")?;
    let mut list = Vec::new();
    for p in shares {
        let s: Signed<WithdrawalShares> =
            home::read_doc(p, group.id(), "a shares file of this group")?;
        list.push(s);
    }
    let (psbt, tx) = finalize_withdrawal(&group, &identities, &req, &pk, &list, network)
        .map_err(coordinator_error)?;
    let to_stdout = psbt_out.as_os_str() == "-";
    let base64 = form == PsbtForm::Base64 || (to_stdout && std::io::stdout().is_terminal());
    let psbt_bytes = if base64 {
        format!("{}\n", wallet_core::psbt::encode_base64(&psbt)).into_bytes()
    } else {
        wallet_core::psbt::encode_binary(&psbt)
    };
    let tx_hex = format!("{}\n", bitcoin::consensus::encode::serialize_hex(&tx));
    if to_stdout {
        home::write_all_new(&[(tx_out, tx_hex.as_bytes())])?;
        crate::ctx::print_bytes(&psbt_bytes).context("cannot write the PSBT to standard output")?;
    } else {
        // Both files or neither: a PSBT is never left behind without its
        // transaction.
        home::write_all_new(&[(psbt_out, &psbt_bytes), (tx_out, tx_hex.as_bytes())])?;
    }
    let txid = tx.compute_txid();
    let text = format!(
        "transaction {txid} finalized (the reviewed txid): {} (PSBT, {}) and {} (raw hex)",
        psbt_out.display(),
        if base64 { "base64" } else { "binary BIP174" },
        tx_out.display()
    );
    let data = serde_json::json!({"request_id": req.body.request_id, "txid": txid.to_string(), "psbt": psbt_out.display().to_string(), "psbt_encoding": if base64 { "base64" } else { "binary" }, "tx": tx_out.display().to_string()});
    if to_stdout {
        // Standard output carries the PSBT; the report goes to stderr.
        let _ = writeln!(
            std::io::stderr(),
            "{}",
            wallet_core::display::terminal_safe(&text)
        );
        Ok(())
    } else {
        r.done("coordinate-finalize", data, &text)
    }
}
