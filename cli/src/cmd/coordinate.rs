//! The coordinator's `kura coordinate package | finalize`.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;

use bitcoin::Network;
use wallet_core::format;
use wallet_core::withdrawal::coordinator::{build_packages, finalize_withdrawal, CoordinatorError};
use wallet_core::withdrawal::request::{
    Approval, Signed, WithdrawalPackages, WithdrawalRequest, WithdrawalShares,
};

use crate::home;
use crate::{refused, Reporter};

fn coordinator_error(e: CoordinatorError) -> anyhow::Error {
    match e {
        CoordinatorError::Format(f) => anyhow::Error::new(f),
        other => refused(other.to_string()),
    }
}

pub fn package(
    group: &Path,
    roster: &Path,
    request: &Path,
    approvals: &[PathBuf],
    out: &Path,
    network: Network,
    r: &Reporter,
) -> anyhow::Result<()> {
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

/// How `coordinate finalize` writes the finalized PSBT.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PsbtForm {
    /// Binary BIP174 (what `.psbt` files hold), unless written to a terminal.
    Auto,
    /// Base64 text, one line.
    Base64,
}

#[allow(clippy::too_many_arguments)]
pub fn finalize(
    group: &Path,
    roster: &Path,
    request: &Path,
    packages: &Path,
    shares: &[PathBuf],
    psbt_out: &Path,
    tx_out: &Path,
    form: PsbtForm,
    network: Network,
    r: &Reporter,
) -> anyhow::Result<()> {
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
        let mut out = std::io::stdout().lock();
        out.write_all(&psbt_bytes)
            .and_then(|()| out.flush())
            .context("cannot write the PSBT to standard output")?;
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
        eprintln!("{}", wallet_core::display::terminal_safe(&text));
        Ok(())
    } else {
        r.done("coordinate-finalize", data, &text)
    }
}
