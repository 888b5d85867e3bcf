//! `kura`: the command line of the Kura threshold custody wallet.
//!
//! Every round is a file that can be carried between machines. Exit codes:
//! 0 success; 1 refused by a check (policy, tampering, mismatch); 2 usage or
//! input error. `--json` prints one line `{"type": …, "data": …}`.

#![forbid(unsafe_code)]
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod cmd;
mod demo;
mod home;
mod secrets;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use secrets::SecretArgs;

/// Kura: threshold custody with FROST, where every co-signer checks what it signs.
#[derive(Debug, Parser)]
#[command(
    name = "kura",
    version,
    about,
    after_help = "Exit codes: 0 success, 1 refused by a check, 2 usage or input error."
)]
struct Cli {
    /// Print one machine-readable JSON line instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(flatten)]
    secrets: SecretArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a complete 2-of-3 custody round on this machine and write every round file.
    ///
    /// Example: kura demo --out /tmp/kura-demo
    Demo {
        /// Directory for the ceremony's files (created; must be empty if it exists).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// A co-signer's home: keystore, identity, group, policy, audit log.
    #[command(subcommand)]
    Signer(SignerCmd),
    /// A requester's home: the identity that signs withdrawal requests.
    #[command(subcommand)]
    Requester(RequesterCmd),
    /// Key generation.
    #[command(subcommand)]
    Keygen(KeygenCmd),
    /// Distributed key generation as files (no dealer).
    #[command(subcommand)]
    Dkg(DkgCmd),
    /// Share refresh (same group key, new shares).
    #[command(subcommand)]
    Refresh(RefreshCmd),
    /// Share repair (t helpers rebuild a lost share).
    #[command(subcommand)]
    Repair(RepairCmd),
    /// The group wallet's address.
    #[command(subcommand)]
    Wallet(WalletCmd),
    /// Withdrawal requests (requester).
    #[command(subcommand)]
    Withdraw(WithdrawCmd),
    /// Review, approve and sign (signer).
    #[command(subcommand)]
    Sign(SignCmd),
    /// Build packages and finalize (coordinator).
    #[command(subcommand)]
    Coordinate(CoordinateCmd),
    /// Read and verify a signer's audit log.
    #[command(subcommand)]
    Audit(AuditCmd),
    /// Check a policy file.
    #[command(subcommand)]
    Policy(PolicyCmd),
    /// Check a PKCS#11 token.
    #[command(subcommand)]
    Hsm(HsmCmd),
}

#[derive(Debug, Subcommand)]
enum SignerCmd {
    /// Create a signer home with a new keystore and identity key; prints the identity card to share.
    ///
    /// Example: kura signer init --home alice --label alice --software --passphrase-file alice.pass
    Init {
        #[arg(long, value_name = "DIR")]
        home: PathBuf,
        #[arg(long)]
        label: String,
        /// Keep secrets in an age-encrypted software keystore (passphrase).
        #[arg(long, conflicts_with = "hsm", required_unless_present = "hsm")]
        software: bool,
        /// Keep secrets on this PKCS#11 token, e.g. pkcs11:token=kura-alice?module-path=/usr/lib/softhsm/libsofthsm2.so
        #[arg(long, value_name = "PKCS11-URI")]
        hsm: Option<String>,
    },
    /// Import this signer's sealed share from a dealer (with the group and roster files).
    ///
    /// Example: kura signer import --home alice --group out/group.json --roster out/roster.json --share out/share-alice.json --passphrase-file alice.pass
    Import {
        #[arg(long, value_name = "DIR")]
        home: PathBuf,
        #[arg(long, value_name = "FILE")]
        group: PathBuf,
        #[arg(long, value_name = "FILE")]
        roster: PathBuf,
        #[arg(long, value_name = "FILE")]
        share: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum RequesterCmd {
    /// Create a requester home (software keystore) and identity card.
    ///
    /// Example: kura requester init --home ops --label treasury-ops --passphrase-env OPS_PASS
    Init {
        #[arg(long, value_name = "DIR")]
        home: PathBuf,
        #[arg(long)]
        label: String,
    },
}

#[derive(Debug, Subcommand)]
enum KeygenCmd {
    /// Trusted-dealer keygen (tests, migrations): group, roster and one share sealed to each signer's card.
    ///
    /// Example: kura keygen dealer --threshold 2 --card alice/identity.json --card bob/identity.json --card carol/identity.json --out group
    Dealer {
        #[arg(long, short = 't')]
        threshold: u16,
        /// A signer's identity card (repeat, one per signer).
        #[arg(long = "card", value_name = "FILE", required = true)]
        cards: Vec<PathBuf>,
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// Split an existing single-key wallet's secret key (a file: WIF or hex) into sealed shares.
    ///
    /// For Taproot the group's internal key is the imported key, so a BIP86 wallet keeps its address.
    /// Example: kura keygen import -t 2 --key-file old-wallet.wif --card alice/identity.json --card bob/identity.json --card carol/identity.json --out group
    Import {
        #[arg(long, short = 't')]
        threshold: u16,
        /// File holding the secret key (WIF or 64 hex digits); never pass a key on the command line.
        #[arg(long, value_name = "FILE")]
        key_file: PathBuf,
        #[arg(long = "card", value_name = "FILE", required = true)]
        cards: Vec<PathBuf>,
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
}

/// The ceremony every DKG command names.
#[derive(Debug, clap::Args)]
struct CeremonyArgs {
    #[arg(long, value_name = "DIR")]
    home: PathBuf,
    #[arg(long, short = 't')]
    threshold: u16,
    /// Every participant's identity card (repeat), this signer's included.
    #[arg(long = "card", value_name = "FILE", required = true)]
    cards: Vec<PathBuf>,
    /// 64 hex digits the convener picked at random and gave everyone.
    #[arg(long, value_name = "HEX")]
    ceremony: String,
}

#[derive(Debug, Subcommand)]
enum DkgCmd {
    /// Round 1: this signer's broadcast (send it to everyone).
    ///
    /// Example: kura dkg round1 --home alice -t 2 --card alice/identity.json --card bob/identity.json --card carol/identity.json --ceremony $C --out r1-alice.json --passphrase-file alice.pass
    Round1 {
        #[command(flatten)]
        c: CeremonyArgs,
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Round 2: check everyone's round-1 broadcasts; one sealed message per peer.
    ///
    /// Example: kura dkg round2 --home alice -t 2 --card … --ceremony $C --out-dir to-send r1-*.json --passphrase-file alice.pass
    Round2 {
        #[command(flatten)]
        c: CeremonyArgs,
        #[arg(long, value_name = "DIR")]
        out_dir: PathBuf,
        #[arg(required = true)]
        round1: Vec<PathBuf>,
    },
    /// Finish: open the messages sealed to this signer, verify them, keep the share; writes group and roster.
    ///
    /// Example: kura dkg finish --home alice -t 2 --card … --ceremony $C --round1 r1-*.json --round2 round2-*-to-alice.json --out-dir done --passphrase-file alice.pass
    Finish {
        #[command(flatten)]
        c: CeremonyArgs,
        #[arg(long = "round1", value_name = "FILE", required = true)]
        round1: Vec<PathBuf>,
        #[arg(long = "round2", value_name = "FILE", required = true)]
        round2: Vec<PathBuf>,
        #[arg(long, value_name = "DIR")]
        out_dir: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum RefreshCmd {
    /// Trusted-dealer refresh: the refreshed group and one sealed refreshing share per member.
    ///
    /// Example: kura refresh dealer --group group.json --roster roster.json --out refresh
    Dealer {
        #[arg(long, value_name = "FILE")]
        group: PathBuf,
        #[arg(long, value_name = "FILE")]
        roster: PathBuf,
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// Apply this signer's refreshing share; the old share is replaced.
    ///
    /// Example: kura refresh apply --home alice --group refresh/group.json --share refresh/refresh-alice.json --passphrase-file alice.pass
    Apply {
        #[arg(long, value_name = "DIR")]
        home: PathBuf,
        #[arg(long, value_name = "FILE")]
        group: PathBuf,
        #[arg(long, value_name = "FILE")]
        share: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum RepairCmd {
    /// Helper, step 1: one sealed delta per helper (the helper list includes this signer).
    ///
    /// Example: kura repair deltas --home bob --lost alice --helper bob --helper carol --out-dir repair --passphrase-file bob.pass
    Deltas {
        #[arg(long, value_name = "DIR")]
        home: PathBuf,
        #[arg(long)]
        lost: String,
        #[arg(long = "helper", required = true)]
        helpers: Vec<String>,
        #[arg(long, value_name = "DIR")]
        out_dir: PathBuf,
    },
    /// Helper, step 2: sum the deltas sealed to this signer into a sigma sealed to the lost member.
    ///
    /// Example: kura repair sigma --home bob --lost alice repair/delta-*-to-bob.json --out repair/sigma-bob.json --passphrase-file bob.pass
    Sigma {
        #[arg(long, value_name = "DIR")]
        home: PathBuf,
        #[arg(long)]
        lost: String,
        #[arg(required = true)]
        deltas: Vec<PathBuf>,
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// The lost member: rebuild the share from the helpers' sigmas (checked against the group).
    ///
    /// Example: kura repair recover --home alice repair/sigma-bob.json repair/sigma-carol.json --passphrase-file alice.pass
    Recover {
        #[arg(long, value_name = "DIR")]
        home: PathBuf,
        #[arg(required = true)]
        sigmas: Vec<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum WalletCmd {
    /// The group's P2TR address.
    ///
    /// Example: kura wallet address --group group.json --network regtest
    Address {
        #[arg(long, value_name = "FILE")]
        group: PathBuf,
        #[arg(long, default_value = "bitcoin")]
        network: bitcoin::Network,
    },
    /// The group's watch-only descriptor `tr(<internal key>)#checksum` (Bitcoin Core, Sparrow, BDK).
    ///
    /// Example: kura wallet descriptor --group group.json
    Descriptor {
        #[arg(long, value_name = "FILE")]
        group: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum WithdrawCmd {
    /// Sign a withdrawal request for a PSBT (binary, base64 or hex; `-` reads stdin).
    ///
    /// The PSBT is first checked as every signer will check it (own coins,
    /// witness_utxo, sighash type, amounts); what every signer would refuse
    /// is refused here too, unless --unchecked.
    ///
    /// Example: kura withdraw request --home ops --group group.json --psbt w.psbt --id w-42 --out w-42.request.json --passphrase-env OPS_PASS
    Request {
        #[arg(long, value_name = "DIR")]
        home: PathBuf,
        #[arg(long, value_name = "FILE")]
        group: PathBuf,
        #[arg(long, value_name = "FILE")]
        psbt: PathBuf,
        /// A unique request id; signers honour each id once (1-128 of A-Z a-z 0-9 . _ : / -).
        #[arg(long)]
        id: String,
        /// A note for the reviewers (at most 1024 characters).
        #[arg(long, default_value = "")]
        memo: String,
        /// Seconds until signers refuse the request (at most 7 days; signers' policies default to 24 h).
        #[arg(long, default_value_t = 3600)]
        expires_in: u64,
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// Sign the request even if the PSBT fails the checks every signer applies.
        #[arg(long)]
        unchecked: bool,
    },
}

#[derive(Debug, Subcommand)]
enum SignCmd {
    /// Show what the request really spends and the policy verdict (writes only the audit log).
    ///
    /// Example: kura sign review --home alice w-42.request.json --passphrase-file alice.pass
    Review {
        #[arg(long, value_name = "DIR")]
        home: PathBuf,
        request: PathBuf,
    },
    /// Approve a request: commitments for every input, signed (asks for confirmation on a terminal).
    ///
    /// Example: kura sign approve --home alice w-42.request.json --out w-42.alice.approval.json --yes --passphrase-file alice.pass
    Approve {
        #[arg(long, value_name = "DIR")]
        home: PathBuf,
        request: PathBuf,
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// Approve without asking (automation).
        #[arg(long)]
        yes: bool,
    },
    /// Check the coordinator's packages and release signature shares.
    ///
    /// Example: kura sign share --home alice w-42.request.json w-42.packages.json --out w-42.alice.shares.json --passphrase-file alice.pass
    Share {
        #[arg(long, value_name = "DIR")]
        home: PathBuf,
        request: PathBuf,
        packages: PathBuf,
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum CoordinateCmd {
    /// Build one signing package per input from the approvals.
    ///
    /// Example: kura coordinate package --group group.json --roster roster.json w-42.request.json a.json c.json --out w-42.packages.json
    Package {
        #[arg(long, value_name = "FILE")]
        group: PathBuf,
        #[arg(long, value_name = "FILE")]
        roster: PathBuf,
        request: PathBuf,
        #[arg(required = true)]
        approvals: Vec<PathBuf>,
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        #[arg(long, default_value = "bitcoin")]
        network: bitcoin::Network,
    },
    /// Aggregate the shares (naming any cheater), finalize the PSBT and extract the transaction.
    ///
    /// Example: kura coordinate finalize --group group.json --roster roster.json w-42.request.json w-42.packages.json a.shares.json c.shares.json --psbt-out w-42.final.psbt --tx-out w-42.tx
    Finalize {
        #[arg(long, value_name = "FILE")]
        group: PathBuf,
        #[arg(long, value_name = "FILE")]
        roster: PathBuf,
        request: PathBuf,
        packages: PathBuf,
        #[arg(required = true)]
        shares: Vec<PathBuf>,
        /// The finalized PSBT: binary BIP174 by default; `-` writes it to standard output
        /// (base64 on a terminal) and the report to standard error.
        #[arg(long, value_name = "FILE")]
        psbt_out: PathBuf,
        /// Write the PSBT as base64 text instead of binary BIP174.
        #[arg(long)]
        psbt_base64: bool,
        #[arg(long, value_name = "FILE")]
        tx_out: PathBuf,
        #[arg(long, default_value = "bitcoin")]
        network: bitcoin::Network,
    },
}

#[derive(Debug, Subcommand)]
enum AuditCmd {
    /// Verify the hash chain and signatures, and that the log is where its anchor in the keystore says; names the first broken entry.
    ///
    /// Example: kura audit verify --home alice --passphrase-file alice.pass
    Verify {
        #[arg(long, value_name = "DIR")]
        home: PathBuf,
    },
    /// Accept the log as it is and move the keystore's anchor to its end, after a log was honestly lost or damaged.
    /// Entries the anchor covered and the log lacks are forgotten (replay protection and the rolling window no
    /// longer see them); the change is recorded in the log. Needs the keystore's PIN or passphrase.
    ///
    /// Example: kura audit reanchor --home alice --reason "disk replaced, log restored from Monday's backup" --passphrase-file alice.pass
    Reanchor {
        /// The signer's home.
        #[arg(long, value_name = "DIR")]
        home: PathBuf,
        /// Why, in words; recorded in the log.
        #[arg(long)]
        reason: String,
        /// Do it without asking (the change is still printed).
        #[arg(long)]
        yes: bool,
    },
    /// List the entries (after verifying them).
    Show {
        #[arg(long, value_name = "DIR")]
        home: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum PolicyCmd {
    /// Parse and validate a policy file.
    ///
    /// Example: kura policy check alice/policy.toml
    Check { file: PathBuf },
    /// Install a policy: show what changes, pin its digest in the keystore and copy it to HOME/policy.toml.
    /// Only an installed policy is in force; a policy file edited on disk makes the signer refuse everything.
    ///
    /// Example: kura policy install --home alice new-policy.toml --passphrase-file alice.pass
    Install {
        /// The signer's home.
        #[arg(long, value_name = "DIR")]
        home: PathBuf,
        /// The policy file to install.
        file: PathBuf,
        /// Install without asking (for automation; the change is still printed).
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Debug, Subcommand)]
enum HsmCmd {
    /// Report which mechanisms Kura needs a token lacks.
    ///
    /// Example: kura hsm check 'pkcs11:token=kura-alice?module-path=/usr/lib/softhsm/libsofthsm2.so'
    Check { uri: String },
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

/// Prints a command's result as text or as one JSON line.
#[derive(Debug)]
pub struct Reporter {
    json: bool,
}

impl Reporter {
    pub fn done(&self, kind: &str, data: serde_json::Value, text: &str) -> anyhow::Result<()> {
        if self.json {
            print_line(&json_inert(
                &serde_json::json!({"type": kind, "data": data}).to_string(),
            ))
        } else {
            // Outside text is validated or escaped where each message is
            // built; this is the backstop for anything that slipped through.
            print_line(&wallet_core::display::terminal_safe(text))
        }
    }
}

/// Writes a line to stdout; a reader that went away (`kura … | head -1`)
/// ends the output quietly instead of a panic.
pub fn print_line(line: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{line}").and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

/// Serialized JSON with every character [`wallet_core::display::is_unsafe_char`]
/// flags written as a `\uXXXX` escape: the same JSON value, nothing a
/// terminal acts on (serde_json escapes only U+0000–U+001F itself). Such
/// characters can only occur inside strings, where the escape is valid.
fn json_inert(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        if wallet_core::display::is_unsafe_char(c) {
            let mut units = [0u16; 2];
            for u in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{:04x}", u));
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Unix seconds. In debug builds only, `KURA_NOW` overrides the clock (the
/// CLI tests of expiry use it); release builds ignore it, so nobody who
/// controls a signer's environment can move its clock.
pub fn now() -> u64 {
    if cfg!(debug_assertions) {
        if let Some(t) = std::env::var("KURA_NOW").ok().and_then(|v| v.parse().ok()) {
            return t;
        }
    }
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let r = Reporter { json: cli.json };
    let s = &cli.secrets;
    match cli.command {
        Command::Demo { out } => demo::run(&out, cli.json),
        Command::Signer(SignerCmd::Init {
            home, label, hsm, ..
        }) => cmd::misc::init(&home, "signer", &label, hsm.as_deref(), s, &r),
        Command::Signer(SignerCmd::Import {
            home,
            group,
            roster,
            share,
        }) => cmd::keygen::import(&home, &group, &roster, &share, s, &r),
        Command::Requester(RequesterCmd::Init { home, label }) => {
            cmd::misc::init(&home, "requester", &label, None, s, &r)
        }
        Command::Dkg(DkgCmd::Round1 { c, out }) => {
            let cer = cmd::dkg::ceremony(c.threshold, &c.cards, &c.ceremony)?;
            cmd::dkg::round1(&c.home, &cer, &out, s, &r)
        }
        Command::Dkg(DkgCmd::Round2 { c, out_dir, round1 }) => {
            let cer = cmd::dkg::ceremony(c.threshold, &c.cards, &c.ceremony)?;
            cmd::dkg::round2(&c.home, &cer, &round1, &out_dir, s, &r)
        }
        Command::Dkg(DkgCmd::Finish {
            c,
            round1,
            round2,
            out_dir,
        }) => {
            let cer = cmd::dkg::ceremony(c.threshold, &c.cards, &c.ceremony)?;
            cmd::dkg::finish(&c.home, &cer, &round1, &round2, &out_dir, s, &r)
        }
        Command::Refresh(RefreshCmd::Dealer { group, roster, out }) => {
            cmd::maintain::refresh_dealer(&group, &roster, &out, &r)
        }
        Command::Refresh(RefreshCmd::Apply { home, group, share }) => {
            cmd::maintain::refresh_apply(&home, &group, &share, s, &r)
        }
        Command::Repair(RepairCmd::Deltas {
            home,
            lost,
            helpers,
            out_dir,
        }) => cmd::maintain::repair_deltas(&home, &lost, &helpers, &out_dir, s, &r),
        Command::Repair(RepairCmd::Sigma {
            home,
            lost,
            deltas,
            out,
        }) => cmd::maintain::repair_sigma(&home, &lost, &deltas, &out, s, &r),
        Command::Repair(RepairCmd::Recover { home, sigmas }) => {
            cmd::maintain::repair_recover(&home, &sigmas, s, &r)
        }
        Command::Keygen(KeygenCmd::Import {
            threshold,
            key_file,
            cards,
            out,
        }) => cmd::keygen::import_key(threshold, &cards, &key_file, &out, &r),
        Command::Keygen(KeygenCmd::Dealer {
            threshold,
            cards,
            out,
        }) => cmd::keygen::dealer(threshold, &cards, &out, &r),
        Command::Wallet(WalletCmd::Address { group, network }) => {
            cmd::misc::address(&group, network, &r)
        }
        Command::Wallet(WalletCmd::Descriptor { group }) => cmd::misc::descriptor(&group, &r),
        Command::Withdraw(WithdrawCmd::Request {
            home,
            group,
            psbt,
            id,
            memo,
            expires_in,
            out,
            unchecked,
        }) => cmd::sign::request(
            &home, &group, &psbt, &id, &memo, expires_in, &out, unchecked, s, &r,
        ),
        Command::Sign(SignCmd::Review { home, request }) => {
            cmd::sign::review(&home, &request, s, &r)
        }
        Command::Sign(SignCmd::Approve {
            home,
            request,
            out,
            yes,
        }) => cmd::sign::approve(&home, &request, &out, yes, s, &r),
        Command::Sign(SignCmd::Share {
            home,
            request,
            packages,
            out,
        }) => cmd::sign::share(&home, &request, &packages, &out, s, &r),
        Command::Coordinate(CoordinateCmd::Package {
            group,
            roster,
            request,
            approvals,
            out,
            network,
        }) => cmd::coordinate::package(&group, &roster, &request, &approvals, &out, network, &r),
        Command::Coordinate(CoordinateCmd::Finalize {
            group,
            roster,
            request,
            packages,
            shares,
            psbt_out,
            psbt_base64,
            tx_out,
            network,
        }) => cmd::coordinate::finalize(
            &group,
            &roster,
            &request,
            &packages,
            &shares,
            &psbt_out,
            &tx_out,
            if psbt_base64 {
                cmd::coordinate::PsbtForm::Base64
            } else {
                cmd::coordinate::PsbtForm::Auto
            },
            network,
            &r,
        ),
        Command::Audit(AuditCmd::Verify { home }) => cmd::misc::audit_verify(&home, s, &r),
        Command::Audit(AuditCmd::Reanchor { home, reason, yes }) => {
            cmd::misc::audit_reanchor(&home, &reason, yes, s, &r)
        }
        Command::Audit(AuditCmd::Show { home }) => cmd::misc::audit_show(&home, &r),
        Command::Policy(PolicyCmd::Check { file }) => cmd::misc::policy_check(&file, &r),
        Command::Policy(PolicyCmd::Install { home, file, yes }) => {
            cmd::misc::policy_install(&home, &file, yes, s, &r)
        }
        Command::Hsm(HsmCmd::Check { uri }) => cmd::misc::hsm_check(&uri, &r),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let json = cli.json;
    let result = run(cli);
    // Explicit PKCS#11 shutdown once every keystore is dropped.
    hsm_bridge::context::finalize_unused();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let code = if e.downcast_ref::<Refused>().is_some() {
                1
            } else {
                2
            };
            if json {
                let _ = print_line(&json_inert(&serde_json::json!({"type": "error", "data": {"exit_code": code, "message": format!("{e:#}")}}).to_string()));
            }
            let kind = if code == 1 { "refused" } else { "error" };
            // Errors quote outside text (ids, fields, file contents): shown inert.
            eprintln!(
                "kura: {kind}: {}",
                wallet_core::display::terminal_safe(&format!("{e:#}"))
            );
            ExitCode::from(code)
        }
    }
}
