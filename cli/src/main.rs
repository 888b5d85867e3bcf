//! `kura`: the command line of the Kura threshold custody wallet.
//!
//! Exit codes: 0 success; 1 refused by a check (policy, tampering,
//! mismatch); 2 usage or input error.

#![forbid(unsafe_code)]
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod demo;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Kura: threshold custody with FROST, where every co-signer checks what it signs.
#[derive(Debug, Parser)]
#[command(name = "kura", version, about)]
struct Cli {
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a complete 2-of-3 ceremony on this machine and write every round file.
    ///
    /// Three signers with encrypted keystores run a DKG whose round-2 shares are
    /// sealed to each recipient, then two of them sign with persisted, take-once
    /// nonces; the signature is checked by libsecp256k1. Finally a coordinator
    /// tampers with a signing package and the signers refuse it.
    ///
    /// Example: kura demo --out /tmp/kura-demo
    Demo {
        /// Directory for the ceremony's files (created; must be empty if it exists).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
}

/// A check refused: the command exits with code 1 (any other error is 2).
#[derive(Debug)]
pub struct Refused(String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}

/// An error that makes the command exit with code 1.
pub fn refused(message: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Refused(message.into()))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo { out } => demo::run(&out, cli.json),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.downcast_ref::<Refused>().is_some() => {
            eprintln!("kura: refused: {e:#}");
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("kura: error: {e:#}");
            ExitCode::from(2)
        }
    }
}
