//! How a failed command ends: its kind and exit code, chosen in one place
//! ([`exit_kind`]) from the error's *type*, a remedy where Kura knows one
//! ([`hint`]), and what is printed — a line of text, or with `--json` one
//! JSON object on stderr:
//!
//! ```text
//! {"error":{"kind":"refused","exit_code":1,"message":"…","hint":"…"}}
//! ```
//!
//! Exit codes: 0 success; 1 refused by a check (policy, tampering, a
//! mismatch, the operator's "no"); 2 usage or input error (and every other
//! failure: a keystore that does not open, a file that cannot be read).

use std::error::Error as StdError;
use std::io::Write;

use hsm_bridge::HsmError;
use wallet_core::audit::AuditError;
use wallet_core::ceremony::CeremonyError;
use wallet_core::keystore::KeystoreError;
use wallet_core::policy::PolicyError;
use wallet_core::withdrawal::coordinator::CoordinatorError;
use wallet_core::withdrawal::{Refusal, RefusalKind};
use wallet_core::FormatError;

use crate::ctx::json_inert;
use crate::network::NetworkMismatch;
use crate::secrets::{SecretError, SecretKind};

/// A check the CLI itself made refused (a policy file that does not
/// validate, a token that lacks mechanisms, the operator's "no"): exit 1.
#[derive(Debug)]
pub struct Refused(String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl StdError for Refused {}

/// An error that makes the command exit with code 1.
pub fn refused(message: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Refused(message.into()))
}

/// `cause`, as the reason the CLI refused (exit 1); the cause is kept.
pub fn refused_by<E>(cause: E, message: impl Into<String>) -> anyhow::Error
where
    E: StdError + Send + Sync + 'static,
{
    anyhow::Error::new(cause).context(Refused(message.into()))
}

/// Flags that do not fit together, found after parsing: a usage error.
#[derive(Debug)]
pub struct Usage(pub String);

impl std::fmt::Display for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl StdError for Usage {}

/// A usage error (exit 2) found after parsing.
pub fn usage(message: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Usage(message.into()))
}

/// A ceremony error, kept typed ([`exit_kind`] asks it whether it is a refusal).
pub fn ceremony_err(e: CeremonyError) -> anyhow::Error {
    anyhow::Error::new(e)
}

/// What kind of failure ended a command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitKind {
    /// A check refused: policy, tampering, a mismatch, the operator's "no" (exit 1).
    Refused,
    /// The command line is wrong (exit 2).
    Usage,
    /// A file or value given is not acceptable (exit 2).
    Input,
    /// The keystore or token could not be opened or used (exit 2).
    Keystore,
    /// Reading or writing a file failed (exit 2).
    Io,
}

impl ExitKind {
    /// The process exit code.
    pub fn code(self) -> u8 {
        match self {
            ExitKind::Refused => 1,
            ExitKind::Usage | ExitKind::Input | ExitKind::Keystore | ExitKind::Io => 2,
        }
    }

    /// The `kind` of a JSON error.
    pub fn name(self) -> &'static str {
        match self {
            ExitKind::Refused => "refused",
            ExitKind::Usage => "usage",
            ExitKind::Input => "input",
            ExitKind::Keystore => "keystore",
            ExitKind::Io => "io",
        }
    }
}

/// The kind of a failure, from the types in its chain: the CLI's own
/// markers first ([`Refused`], [`Usage`]), then the outermost library
/// error that Kura knows. Never from message text.
pub fn exit_kind(err: &anyhow::Error) -> ExitKind {
    if err.downcast_ref::<Refused>().is_some() {
        return ExitKind::Refused;
    }
    if err.downcast_ref::<Usage>().is_some() || err.downcast_ref::<NetworkMismatch>().is_some() {
        return ExitKind::Usage;
    }
    err.chain().find_map(kind_of).unwrap_or(ExitKind::Input)
}

fn kind_of(e: &(dyn StdError + 'static)) -> Option<ExitKind> {
    if let Some(r) = e.downcast_ref::<Refusal>() {
        return Some(refusal_kind(r));
    }
    if let Some(c) = e.downcast_ref::<CeremonyError>() {
        return Some(match c {
            _ if c.is_refusal() => ExitKind::Refused,
            CeremonyError::Keystore(k) => keystore_kind(k),
            CeremonyError::Audit(a) => audit_kind(a),
            _ => ExitKind::Input,
        });
    }
    if let Some(c) = e.downcast_ref::<CoordinatorError>() {
        return Some(match c {
            CoordinatorError::Format(_) => ExitKind::Input,
            _ => ExitKind::Refused,
        });
    }
    if let Some(a) = e.downcast_ref::<AuditError>() {
        return Some(audit_kind(a));
    }
    if let Some(k) = e.downcast_ref::<KeystoreError>() {
        return Some(keystore_kind(k));
    }
    if let Some(s) = e.downcast_ref::<SecretError>() {
        return Some(match s {
            SecretError::Missing(_) => ExitKind::Usage,
            SecretError::File { .. } => ExitKind::Io,
            _ => ExitKind::Keystore,
        });
    }
    if e.downcast_ref::<HsmError>().is_some() {
        return Some(ExitKind::Keystore);
    }
    if e.downcast_ref::<FormatError>().is_some() || e.downcast_ref::<PolicyError>().is_some() {
        return Some(ExitKind::Input);
    }
    if e.downcast_ref::<std::io::Error>().is_some() {
        return Some(ExitKind::Io);
    }
    None
}

/// A signer's refusal, by its [`RefusalKind`]: a refusal, except a
/// malformed document (input) and an audit log that could not record the
/// decision (nothing was released, but nothing was refused either).
fn refusal_kind(r: &Refusal) -> ExitKind {
    match (r.kind(), r) {
        (RefusalKind::Audit, Refusal::Audit(a)) => audit_kind(a),
        (RefusalKind::Format, _) => ExitKind::Input,
        _ => ExitKind::Refused,
    }
}

/// A log that fails its checks (tampered, cut, forked from or behind its
/// anchor, someone else's) is a refusal; failing to read or write it is not.
fn audit_kind(a: &AuditError) -> ExitKind {
    match a {
        AuditError::Broken { .. }
        | AuditError::Truncated { .. }
        | AuditError::NotOwner { .. }
        | AuditError::BehindAnchor { .. }
        | AuditError::Forked { .. }
        | AuditError::AheadOfAnchor { .. } => ExitKind::Refused,
        AuditError::Keystore(k) => keystore_kind(k),
        AuditError::Io { .. } => ExitKind::Io,
        _ => ExitKind::Input,
    }
}

fn keystore_kind(k: &KeystoreError) -> ExitKind {
    match k {
        KeystoreError::Io { .. } => ExitKind::Io,
        KeystoreError::Format(_) => ExitKind::Input,
        _ => ExitKind::Keystore,
    }
}

/// What to do about it, where the CLI knows a remedy: keyed by the error's
/// variant (the library says what is wrong, the CLI what to do).
pub fn hint(err: &anyhow::Error) -> Option<&'static str> {
    err.chain().find_map(|e| {
        if let Some(h) = e.downcast_ref::<HsmError>() {
            return match h {
                HsmError::ModuleNotFound { .. } => Some(
                    "install SoftHSM2 (`apt-get install softhsm2`), or point module-path= in the URI (or PKCS11_MODULE) at your HSM's PKCS#11 library",
                ),
                _ => None,
            };
        }
        if let Some(s) = e.downcast_ref::<SecretError>() {
            return match s {
                SecretError::Wrong(SecretKind::Passphrase) => Some(
                    "check the file given to --passphrase-file, or the variable named by --passphrase-env",
                ),
                _ => None,
            };
        }
        let audit = match e.downcast_ref::<Refusal>() {
            Some(Refusal::Audit(a)) => Some(a),
            Some(Refusal::PolicyNotInForce { .. }) => {
                return Some("install the policy this signer should enforce with `kura policy install`")
            }
            _ => e.downcast_ref::<AuditError>(),
        };
        match audit? {
            AuditError::BehindAnchor { .. } | AuditError::Forked { .. } => Some(
                "put the real audit log back; if it was honestly lost, `kura audit reanchor` accepts the log as it is (recorded in it)",
            ),
            _ => None,
        }
    })
}

/// Whether `--json` is among the raw arguments (before any `--`): for
/// errors found before or while parsing them.
pub fn json_requested(args: impl IntoIterator<Item = std::ffi::OsString>) -> bool {
    args.into_iter()
        .skip(1)
        .take_while(|a| a != "--")
        .any(|a| a == "--json")
}

/// Prints one failure on stderr, as text or as one JSON object, and
/// returns the exit code. A stderr that cannot be written is ignored.
fn print_error(kind: ExitKind, code: u8, message: &str, hint: Option<&str>, json: bool) {
    let mut err = std::io::stderr().lock();
    let _ = if json {
        let mut e = serde_json::Map::new();
        e.insert("kind".into(), kind.name().into());
        e.insert("exit_code".into(), code.into());
        e.insert("message".into(), message.into());
        if let Some(h) = hint {
            e.insert("hint".into(), h.into());
        }
        writeln!(
            err,
            "{}",
            json_inert(&serde_json::json!({ "error": e }).to_string())
        )
    } else {
        let label = if kind == ExitKind::Refused {
            "refused"
        } else {
            "error"
        };
        // Errors quote outside text (ids, fields, file contents): shown inert.
        let mut text = format!(
            "kura: {label}: {}",
            wallet_core::display::terminal_safe(message)
        );
        if let Some(h) = hint {
            text.push_str(&format!("\nkura: hint: {h}"));
        }
        writeln!(err, "{text}")
    };
}

/// Reports a command's failure; returns its exit code.
pub fn report(err: &anyhow::Error, json: bool) -> std::process::ExitCode {
    let kind = exit_kind(err);
    print_error(kind, kind.code(), &format!("{err:#}"), hint(err), json);
    std::process::ExitCode::from(kind.code())
}

/// Reports a command line clap could not parse (or `--help`/`--version`,
/// which are printed as clap prints them); returns the exit code.
pub fn report_clap(e: &clap::Error, json: bool) -> std::process::ExitCode {
    use clap::error::ErrorKind;
    let code = u8::try_from(e.exit_code()).unwrap_or(2);
    let shown = matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion);
    if shown || !json {
        // Help and version on stdout (a closed pipe ends quietly), errors
        // on stderr, as clap writes them.
        let _ = e.print();
    } else {
        let rendered = e.render().to_string();
        let message = rendered.trim().trim_start_matches("error: ");
        print_error(ExitKind::Usage, code, message, None, true);
    }
    std::process::ExitCode::from(code)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn exit_kinds_come_from_types_not_text() {
        let behind = || AuditError::Forked {
            path: "a".into(),
            seq: 3,
        };
        let io = || AuditError::Io {
            path: "a".into(),
            source: std::io::Error::other("disk"),
        };
        let kind = |e: anyhow::Error| exit_kind(&e);
        assert_eq!(
            kind(anyhow::Error::new(Refusal::Audit(behind()))),
            ExitKind::Refused
        );
        assert_eq!(
            kind(anyhow::Error::new(Refusal::Audit(io())).context("nothing released")),
            ExitKind::Io
        );
        assert_eq!(kind(anyhow::Error::new(behind())), ExitKind::Refused);
        assert_eq!(
            kind(anyhow::Error::new(Refusal::Replayed(
                wallet_core::RequestId::new("w").unwrap()
            ))),
            ExitKind::Refused
        );
        assert_eq!(
            kind(anyhow::Error::new(KeystoreError::WrongPassphrase).context("opening")),
            ExitKind::Keystore
        );
        assert_eq!(
            kind(anyhow::Error::new(SecretError::Missing(SecretKind::Pin))),
            ExitKind::Usage
        );
        assert_eq!(kind(refused_by(io(), "checked")), ExitKind::Refused);
        assert_eq!(kind(usage("both or neither")), ExitKind::Usage);
        // Text alone is an input error, whatever it says.
        assert_eq!(kind(anyhow::anyhow!("refused: tampered")), ExitKind::Input);
        assert_eq!(ExitKind::Refused.code(), 1);
        assert_eq!(ExitKind::Io.code(), 2);
        // Hints are keyed by variant.
        assert!(hint(&anyhow::Error::new(Refusal::Audit(behind())))
            .is_some_and(|h| h.contains("reanchor")));
        assert!(hint(&anyhow::Error::new(SecretError::Wrong(
            SecretKind::Passphrase
        )))
        .is_some_and(|h| h.contains("--passphrase-file")));
        assert!(json_requested(["kura", "x", "--json"].map(Into::into)));
        assert!(!json_requested(
            ["kura", "x", "--", "--json"].map(Into::into)
        ));
    }
}
