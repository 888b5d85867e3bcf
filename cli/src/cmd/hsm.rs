//! `kura hsm check`: what a PKCS#11 token lacks.

use clap::{Args, Subcommand};

use crate::ctx::Ctx;
use crate::error::refused;

#[derive(Debug, Subcommand)]
pub enum HsmCmd {
    /// Report which mechanisms Kura needs a token lacks.
    ///
    /// Example: kura hsm check 'pkcs11:token=kura-alice?module-path=/usr/lib/softhsm/libsofthsm2.so'
    Check(CheckArgs),
}

impl HsmCmd {
    pub fn run(self, ctx: &Ctx) -> anyhow::Result<()> {
        match self {
            HsmCmd::Check(a) => hsm_check(&a.uri, ctx),
        }
    }
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The token's PKCS#11 URI, e.g. pkcs11:token=kura-alice?module-path=/usr/lib/softhsm/libsofthsm2.so
    uri: String,
}

fn hsm_check(uri: &str, r: &Ctx) -> anyhow::Result<()> {
    let caps = hsm_bridge::check::capabilities(&hsm_bridge::Pkcs11Uri::parse(uri)?)?;
    let missing: Vec<String> = caps
        .missing
        .iter()
        .map(|(m, why)| format!("{m} (to {why})"))
        .collect();
    if !caps.complete() {
        return Err(refused(format!(
            "token {:?} lacks: {}{}",
            caps.token,
            missing.join(", "),
            if caps.random {
                ""
            } else {
                "; C_GenerateRandom does not work"
            }
        )));
    }
    r.done(
        "hsm-check",
        serde_json::json!({"token": caps.token, "complete": true}),
        &format!("token {:?} offers every mechanism Kura needs", caps.token),
    )
}
