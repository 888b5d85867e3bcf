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
use wallet_core::ceremony::Role;

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
    /// A trusted dealer's home: the identity that signs dealings and dealer refreshes.
    #[command(subcommand)]
    Dealer(DealerCmd),
    /// Fingerprints to compare over another channel: of identity cards, and of a ceremony.
    ///
    /// Example: kura fingerprint -t 2 --card alice/identity.json --card bob/identity.json --card carol/identity.json --ceremony $C
    Fingerprint {
        #[arg(long, short = 't')]
        threshold: Option<u16>,
        /// Identity cards (repeat).
        #[arg(long = "card", value_name = "FILE", required = true)]
        cards: Vec<PathBuf>,
        /// The dealer's identity card, for a dealer ceremony.
        #[arg(long, value_name = "FILE")]
        dealer_card: Option<PathBuf>,
        /// The ceremony nonce (64 hex digits); with -t, prints the ceremony fingerprint.
        #[arg(long, value_name = "HEX")]
        ceremony: Option<String>,
    },
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
    /// Import this signer's share from a dealer's signed dealing, after confirming the ceremony fingerprint.
    ///
    /// Example: kura signer import --home alice --dealing out/dealing.json --fingerprint XXXX-… --passphrase-file alice.pass
    Import {
        #[arg(long, value_name = "DIR")]
        home: PathBuf,
        #[arg(long, value_name = "FILE")]
        dealing: PathBuf,
        /// The ceremony fingerprint the convener announced (else asked on a terminal).
        #[arg(long, value_name = "FP")]
        fingerprint: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum DealerCmd {
    /// Create a dealer home with a new keystore and identity key; its card is pinned by every signer.
    ///
    /// Example: kura dealer init --home dealer --label dealer --software --passphrase-file dealer.pass
    Init {
        #[arg(long, value_name = "DIR")]
        home: PathBuf,
        #[arg(long)]
        label: String,
        #[arg(long, conflicts_with = "hsm", required_unless_present = "hsm")]
        software: bool,
        #[arg(long, value_name = "PKCS11-URI")]
        hsm: Option<String>,
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

/// A dealer ceremony.
#[derive(Debug, clap::Args)]
struct DealArgs {
    /// The dealer's home.
    #[arg(long, value_name = "DIR")]
    home: PathBuf,
    #[arg(long, short = 't')]
    threshold: u16,
    /// A signer's identity card (repeat, one per signer).
    #[arg(long = "card", value_name = "FILE", required = true)]
    cards: Vec<PathBuf>,
    /// 64 hex digits the convener picked at random and gave everyone.
    #[arg(long, value_name = "HEX")]
    ceremony: String,
    /// The ceremony fingerprint the convener announced (else asked on a terminal).
    #[arg(long, value_name = "FP")]
    fingerprint: Option<String>,
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
}

impl DealArgs {
    fn view(&self) -> cmd::keygen::DealArgs<'_> {
        cmd::keygen::DealArgs {
            home: &self.home,
            threshold: self.threshold,
            cards: &self.cards,
            ceremony: &self.ceremony,
            fingerprint: self.fingerprint.as_deref(),
            out: &self.out,
        }
    }
}

#[derive(Debug, Subcommand)]
enum KeygenCmd {
    /// Trusted-dealer keygen (tests, migrations): a dealing signed by the dealer, one share sealed to each signer.
    ///
    /// Example: kura keygen dealer --home dealer -t 2 --card alice/identity.json --card bob/identity.json --card carol/identity.json --ceremony $C --fingerprint $FP --out group
    Dealer {
        #[command(flatten)]
        d: DealArgs,
    },
    /// Split an existing single-key wallet's secret key (a file: WIF or hex) into sealed shares.
    ///
    /// For Taproot the group's internal key is the imported key, so a BIP86 wallet keeps its address.
    /// Example: kura keygen import --home dealer -t 2 --key-file old-wallet.wif --card … --ceremony $C --fingerprint $FP --out group
    Import {
        #[command(flatten)]
        d: DealArgs,
        /// File holding the secret key (WIF or 64 hex digits); never pass a key on the command line.
        #[arg(long, value_name = "FILE")]
        key_file: PathBuf,
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
    /// The ceremony fingerprint the convener announced over another channel
    /// (round 1 needs it, or asks on a terminal; later rounds check it if given).
    #[arg(long, value_name = "FP")]
    fingerprint: Option<String>,
}

impl CeremonyArgs {
    fn ceremony(
        &self,
    ) -> anyhow::Result<wallet_core::ceremony::dkg::Ceremony<wallet_core::Secp256k1Tr>> {
        let c = cmd::dkg::ceremony(self.threshold, &self.cards, &self.ceremony)?;
        if let Some(f) = &self.fingerprint {
            c.fingerprint().confirm(f).map_err(ceremony_err)?;
        }
        Ok(c)
    }
}

#[derive(Debug, Subcommand)]
enum DkgCmd {
    /// Round 1: confirm the ceremony fingerprint, then this signer's signed broadcast (send it to everyone).
    ///
    /// Example: kura dkg round1 --home alice -t 2 --card alice/identity.json --card bob/identity.json --card carol/identity.json --ceremony $C --fingerprint $FP --out r1-alice.json --passphrase-file alice.pass
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
    /// Propose a refresh (a member, or the group's dealer with --group/--roster): one sealed refreshing share per member.
    ///
    /// Example: kura refresh propose --home bob --out refresh.json --passphrase-file bob.pass
    Propose {
        #[arg(long, value_name = "DIR")]
        home: PathBuf,
        #[arg(long, value_name = "FILE", requires = "roster")]
        group: Option<PathBuf>,
        #[arg(long, value_name = "FILE", requires = "group")]
        roster: Option<PathBuf>,
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Consent to a member's refresh proposal (signed); t members must consent.
    ///
    /// Example: kura refresh endorse --home carol refresh.json --out endorse-carol.json --passphrase-file carol.pass
    Endorse {
        #[arg(long, value_name = "DIR")]
        home: PathBuf,
        proposal: PathBuf,
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Check the proposal and its consent, stage this signer's refreshed share (the current one stays in use), write a signed receipt.
    ///
    /// Example: kura refresh apply --home alice refresh.json --endorsement endorse-carol.json --out receipt-alice.json --passphrase-file alice.pass
    Apply {
        #[arg(long, value_name = "DIR")]
        home: PathBuf,
        proposal: PathBuf,
        #[arg(long = "endorsement", value_name = "FILE")]
        endorsements: Vec<PathBuf>,
        /// The receipt to give every other member.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Refresh by DKG (no proposer learns any refreshing share; every member takes part): the ceremony fingerprint to announce.
    ///
    /// Example: kura refresh fingerprint --home alice --ceremony $C
    Fingerprint {
        #[arg(long, value_name = "DIR")]
        home: PathBuf,
        #[arg(long, value_name = "HEX")]
        ceremony: String,
    },
    /// Refresh by DKG, round 1: confirm the fingerprint, then a signed zero-sharing broadcast.
    ///
    /// Example: kura refresh round1 --home alice --ceremony $C --fingerprint $FP --out rr1-alice.json --passphrase-file alice.pass
    Round1 {
        #[arg(long, value_name = "DIR")]
        home: PathBuf,
        #[arg(long, value_name = "HEX")]
        ceremony: String,
        #[arg(long, value_name = "FP")]
        fingerprint: Option<String>,
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Refresh by DKG, round 2: check every member's round-1; one signed, sealed message per peer.
    ///
    /// Example: kura refresh round2 --home alice --ceremony $C --out-dir rsent rr1-*.json --passphrase-file alice.pass
    Round2 {
        #[arg(long, value_name = "DIR")]
        home: PathBuf,
        #[arg(long, value_name = "HEX")]
        ceremony: String,
        #[arg(long, value_name = "DIR")]
        out_dir: PathBuf,
        #[arg(required = true)]
        round1: Vec<PathBuf>,
    },
    /// Refresh by DKG, finish: stage the refreshed share, write a signed receipt.
    ///
    /// Example: kura refresh finish --home alice --ceremony $C --round1 rr1-*.json --round2 rsent/round2-bob-to-alice.json … --out receipt-alice.json --passphrase-file alice.pass
    Finish {
        #[arg(long, value_name = "DIR")]
        home: PathBuf,
        #[arg(long, value_name = "HEX")]
        ceremony: String,
        #[arg(long = "round1", value_name = "FILE", required = true)]
        round1: Vec<PathBuf>,
        #[arg(long = "round2", value_name = "FILE", required = true)]
        round2: Vec<PathBuf>,
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Switch to the staged share and group once every member's receipt is given (crash-safe; rerun completes it).
    ///
    /// Example: kura refresh activate --home alice --receipt receipt-alice.json --receipt receipt-bob.json --receipt receipt-carol.json --passphrase-file alice.pass
    Activate {
        #[arg(long, value_name = "DIR")]
        home: PathBuf,
        /// Every member's receipt (repeat).
        #[arg(long = "receipt", value_name = "FILE")]
        receipts: Vec<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum RepairCmd {
    /// Helper, step 1: one signed, sealed delta per helper (the helper list includes this signer).
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
    /// Helper, step 2: check the deltas sealed to this signer and seal a signed sigma to the lost member.
    ///
    /// Example: kura repair sigma --home bob --lost alice --helper bob --helper carol repair/delta-*-to-bob.json --out repair/sigma-bob.json --passphrase-file bob.pass
    Sigma {
        #[arg(long, value_name = "DIR")]
        home: PathBuf,
        #[arg(long)]
        lost: String,
        #[arg(long = "helper", required = true)]
        helpers: Vec<String>,
        #[arg(required = true)]
        deltas: Vec<PathBuf>,
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// The lost member: check the helpers' sigmas and rebuild the share (checked against the group).
    ///
    /// Example: kura repair recover --home alice --helper bob --helper carol repair/sigma-bob.json repair/sigma-carol.json --passphrase-file alice.pass
    Recover {
        #[arg(long, value_name = "DIR")]
        home: PathBuf,
        #[arg(long = "helper", required = true)]
        helpers: Vec<String>,
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

/// A ceremony error: exit 1 when a check refused its input, else 2.
pub fn ceremony_err(e: wallet_core::ceremony::CeremonyError) -> anyhow::Error {
    if e.is_refusal() {
        refused(e.to_string())
    } else {
        anyhow::Error::new(e)
    }
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

/// Asks the operator on the terminal: shows `shown`, then `question [y/N]`.
/// Without a terminal it refuses to go on (pass `--yes` for automation);
/// any answer but yes is a refusal ("not {done} by the operator").
pub fn confirm(shown: &str, question: &str, action: &str, done: &str) -> anyhow::Result<()> {
    use std::io::{BufRead, IsTerminal, Write};
    if !std::io::stdin().is_terminal() {
        anyhow::bail!(
            "refusing to {action} without confirmation: run on a terminal, or pass --yes for automation"
        );
    }
    eprintln!("{shown}");
    eprint!("{question} [y/N] ");
    std::io::stderr().flush().ok();
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    if matches!(answer.trim(), "y" | "Y" | "yes") {
        Ok(())
    } else {
        Err(refused(format!("not {done} by the operator")))
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
        }) => cmd::misc::init(&home, Role::Signer, &label, hsm.as_deref(), s, &r),
        Command::Dealer(DealerCmd::Init {
            home, label, hsm, ..
        }) => cmd::misc::init(&home, Role::Dealer, &label, hsm.as_deref(), s, &r),
        Command::Fingerprint {
            threshold,
            cards,
            dealer_card,
            ceremony,
        } => cmd::dkg::fingerprint(
            threshold,
            &cards,
            dealer_card.as_deref(),
            ceremony.as_deref(),
            &r,
        ),
        Command::Signer(SignerCmd::Import {
            home,
            dealing,
            fingerprint,
        }) => cmd::keygen::import(&home, &dealing, fingerprint.as_deref(), s, &r),
        Command::Requester(RequesterCmd::Init { home, label }) => {
            cmd::misc::init(&home, Role::Requester, &label, None, s, &r)
        }
        Command::Dkg(DkgCmd::Round1 { c, out }) => {
            let cer = cmd::dkg::ceremony(c.threshold, &c.cards, &c.ceremony)?;
            let cer = cmd::dkg::confirm(cer, c.fingerprint.as_deref())?;
            cmd::dkg::round1(&c.home, &cer, &out, s, &r)
        }
        Command::Dkg(DkgCmd::Round2 { c, out_dir, round1 }) => {
            cmd::dkg::round2(&c.home, &c.ceremony()?, &round1, &out_dir, s, &r)
        }
        Command::Dkg(DkgCmd::Finish {
            c,
            round1,
            round2,
            out_dir,
        }) => cmd::dkg::finish(&c.home, &c.ceremony()?, &round1, &round2, &out_dir, s, &r),
        Command::Refresh(RefreshCmd::Propose {
            home,
            group,
            roster,
            out,
        }) => {
            cmd::maintain::refresh_propose(&home, group.as_deref(), roster.as_deref(), &out, s, &r)
        }
        Command::Refresh(RefreshCmd::Endorse {
            home,
            proposal,
            out,
        }) => cmd::maintain::refresh_endorse(&home, &proposal, &out, s, &r),
        Command::Refresh(RefreshCmd::Apply {
            home,
            proposal,
            endorsements,
            out,
        }) => cmd::maintain::refresh_apply(&home, &proposal, &endorsements, &out, s, &r),
        Command::Refresh(RefreshCmd::Fingerprint { home, ceremony }) => {
            cmd::maintain::refresh_fingerprint(&home, &ceremony, &r)
        }
        Command::Refresh(RefreshCmd::Round1 {
            home,
            ceremony,
            fingerprint,
            out,
        }) => cmd::maintain::refresh_round1(&home, &ceremony, fingerprint.as_deref(), &out, s, &r),
        Command::Refresh(RefreshCmd::Round2 {
            home,
            ceremony,
            out_dir,
            round1,
        }) => cmd::maintain::refresh_round2(&home, &ceremony, &round1, &out_dir, s, &r),
        Command::Refresh(RefreshCmd::Finish {
            home,
            ceremony,
            round1,
            round2,
            out,
        }) => cmd::maintain::refresh_finish(&home, &ceremony, &round1, &round2, &out, s, &r),
        Command::Refresh(RefreshCmd::Activate { home, receipts }) => {
            cmd::maintain::refresh_activate(&home, &receipts, s, &r)
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
            helpers,
            deltas,
            out,
        }) => cmd::maintain::repair_sigma(&home, &lost, &helpers, &deltas, &out, s, &r),
        Command::Repair(RepairCmd::Recover {
            home,
            helpers,
            sigmas,
        }) => cmd::maintain::repair_recover(&home, &helpers, &sigmas, s, &r),
        Command::Keygen(KeygenCmd::Import { d, key_file }) => {
            cmd::keygen::import_key(&d.view(), &key_file, s, &r)
        }
        Command::Keygen(KeygenCmd::Dealer { d }) => cmd::keygen::dealer(&d.view(), s, &r),
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
