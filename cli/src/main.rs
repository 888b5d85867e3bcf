//! `kura`: the command line of the Kura threshold custody wallet.
//!
//! Every round is a file that can be carried between machines. Exit codes:
//! 0 success; 1 refused by a check (policy, tampering, mismatch); 2 usage or
//! input error (see `error`). `--json` prints one line `{"type": …, "data": …}`
//! on stdout, or on failure one object `{"error": {"kind", "exit_code",
//! "message", "hint"?}}` on stderr — usage errors included.

#![forbid(unsafe_code)]
// A CLI talks to people: it prints (library crates do not).
#![allow(clippy::print_stdout, clippy::print_stderr)]
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod cmd;
mod ctx;
mod demo;
mod demo_service;
mod error;
mod home;
mod network;
mod secrets;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use cmd::{
    audit, coordinate, dkg, docs, hsm, keygen, mailbox, maintain, policy, reshare, roles, service,
    sign, wallet,
};
use ctx::Ctx;

/// Kura: threshold custody with FROST, where every co-signer checks what it signs.
#[derive(Debug, Parser)]
#[command(
    name = "kura",
    version,
    about,
    after_help = "Exit codes: 0 success, 1 refused by a check, 2 usage or input error.\nWith --json, an error is one JSON object on stderr: {\"error\":{\"kind\",\"exit_code\",\"message\"}}."
)]
struct Cli {
    /// Print one machine-readable JSON line instead of text; errors as one JSON object on stderr.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a complete 2-of-3 custody round on this machine and write every round file.
    ///
    /// Example: kura demo --out /tmp/kura-demo
    Demo(demo::DemoArgs),
    /// A co-signer's home: keystore, identity, group, policy, audit log.
    #[command(subcommand)]
    Signer(roles::SignerCmd),
    /// A trusted dealer's home: the identity that signs dealings and dealer refreshes.
    #[command(subcommand)]
    Dealer(roles::DealerCmd),
    /// Fingerprints to compare over another channel: of identity cards, and of a ceremony.
    ///
    /// Example: kura fingerprint -t 2 --card alice/identity.json --card bob/identity.json --card carol/identity.json --ceremony $C
    Fingerprint(dkg::FingerprintArgs),
    /// A requester's home: the identity that signs withdrawal requests.
    #[command(subcommand)]
    Requester(roles::RequesterCmd),
    /// Key generation.
    #[command(subcommand)]
    Keygen(keygen::KeygenCmd),
    /// Distributed key generation as files (no dealer).
    #[command(subcommand)]
    Dkg(dkg::DkgCmd),
    /// Share refresh (same group key, new shares).
    #[command(subcommand)]
    Refresh(maintain::RefreshCmd),
    /// Share repair (t helpers rebuild a lost share).
    #[command(subcommand)]
    Repair(maintain::RepairCmd),
    /// Quorum change: members join or leave, the threshold changes; same key and addresses.
    #[command(subcommand)]
    Reshare(reshare::ReshareCmd),
    /// Refresh and repair files through the coordinator's ceremony mailbox instead of by hand.
    #[command(subcommand)]
    Mailbox(mailbox::MailboxCmd),
    /// The group wallet's address.
    #[command(subcommand)]
    Wallet(wallet::WalletCmd),
    /// Withdrawal requests (requester).
    #[command(subcommand)]
    Withdraw(sign::WithdrawCmd),
    /// Review, approve and sign (signer).
    #[command(subcommand)]
    Sign(sign::SignCmd),
    /// Build packages and finalize (coordinator).
    #[command(subcommand)]
    Coordinate(coordinate::CoordinateCmd),
    /// The coordinator service: HTTPS, state in SQLite, custodians' signer daemons connect to it.
    #[command(subcommand)]
    Coordinator(service::CoordinatorCmd),
    /// Read and verify a signer's audit log.
    #[command(subcommand)]
    Audit(audit::AuditCmd),
    /// Check a policy file.
    #[command(subcommand)]
    Policy(policy::PolicyCmd),
    /// Check a PKCS#11 token.
    #[command(subcommand)]
    Hsm(hsm::HsmCmd),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    ///
    /// Example: kura completions bash > ~/.local/share/bash-completion/completions/kura
    Completions(docs::CompletionsArgs),
    /// Man pages: the top page on standard output, or one page per (sub)command with --out.
    ///
    /// Example: kura man --out /usr/local/share/man/man1
    Man(docs::ManArgs),
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let ctx = Ctx { json: cli.json };
    match cli.command {
        Command::Demo(a) => a.run(&ctx),
        Command::Signer(c) => c.run(&ctx),
        Command::Dealer(c) => c.run(&ctx),
        Command::Fingerprint(a) => a.run(&ctx),
        Command::Requester(c) => c.run(&ctx),
        Command::Keygen(c) => c.run(&ctx),
        Command::Dkg(c) => c.run(&ctx),
        Command::Refresh(c) => c.run(&ctx),
        Command::Repair(c) => c.run(&ctx),
        Command::Reshare(c) => c.run(&ctx),
        Command::Mailbox(c) => c.run(&ctx),
        Command::Wallet(c) => c.run(&ctx),
        Command::Withdraw(c) => c.run(&ctx),
        Command::Sign(c) => c.run(&ctx),
        Command::Coordinate(c) => c.run(&ctx),
        Command::Coordinator(c) => c.run(&ctx),
        Command::Audit(c) => c.run(&ctx),
        Command::Policy(c) => c.run(&ctx),
        Command::Hsm(c) => c.run(&ctx),
        Command::Completions(a) => a.run(&ctx),
        Command::Man(a) => a.run(&ctx),
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // A usage error (or --help): with --json anywhere on the command
        // line, reported as JSON too.
        Err(e) => return error::report_clap(&e, error::json_requested(std::env::args_os())),
    };
    let json = cli.json;
    ctx::set_json(json);
    let result = run(cli);
    // Explicit PKCS#11 shutdown once every keystore is dropped.
    hsm_bridge::context::finalize_unused();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => error::report(&e, json),
    }
}

#[cfg(test)]
mod tests {
    use super::Cli;
    use clap::CommandFactory;

    /// Every argument and every subcommand says what it is for: a new
    /// argument without a doc comment fails here.
    #[test]
    fn every_argument_and_subcommand_has_help() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if matches!(id, "help" | "version") {
                    continue;
                }
                if arg.get_help().is_none() && arg.get_long_help().is_none() {
                    missing.push(format!("{path} {id}"));
                }
            }
            for sub in cmd.get_subcommands() {
                let name = format!("{path} {}", sub.get_name());
                if sub.get_name() != "help"
                    && sub.get_about().is_none()
                    && sub.get_long_about().is_none()
                {
                    missing.push(name.clone());
                }
                walk(sub, &name, missing);
            }
        }
        let cmd = Cli::command();
        cmd.clone().debug_assert();
        let mut missing = Vec::new();
        walk(&cmd, "kura", &mut missing);
        assert!(missing.is_empty(), "no help text: {missing:#?}");
    }
}
