//! The coordinator's `kura coordinate package | finalize`.

use std::path::{Path, PathBuf};

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

#[allow(clippy::too_many_arguments)]
pub fn finalize(
    group: &Path,
    roster: &Path,
    request: &Path,
    packages: &Path,
    shares: &[PathBuf],
    psbt_out: &Path,
    tx_out: &Path,
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
    home::write_new(psbt_out, format!("{psbt}\n").as_bytes())?;
    home::write_new(
        tx_out,
        format!("{}\n", bitcoin::consensus::encode::serialize_hex(&tx)).as_bytes(),
    )?;
    r.done(
        "coordinate-finalize",
        serde_json::json!({"request_id": req.body.request_id, "txid": tx.compute_txid().to_string(), "psbt": psbt_out.display().to_string(), "tx": tx_out.display().to_string()}),
        &format!("transaction {} finalized: {} (PSBT) and {} (raw hex)", tx.compute_txid(), psbt_out.display(), tx_out.display()),
    )
}
