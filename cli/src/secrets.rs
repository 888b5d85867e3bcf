//! Passphrases and PINs: from a file, an environment variable *named* on
//! the command line, or a no-echo prompt on a terminal — never the secret
//! itself as an argument. A software keystore is unlocked by a
//! *passphrase*, a token by a *PIN*, and every message says which.

use std::path::{Path, PathBuf};

use clap::Args;
use secrecy::SecretString;

/// Where the keystore's passphrase (software) or the token's PIN comes
/// from. Flattened into exactly the commands that open a keystore.
#[derive(Debug, Clone, Args, Default)]
#[command(next_help_heading = "Keystore secret (never on the command line)")]
pub struct SecretArgs {
    /// File whose first line is the software keystore's passphrase (mode 0600).
    #[arg(long, value_name = "FILE", conflicts_with = "passphrase_env")]
    pub passphrase_file: Option<PathBuf>,
    /// Environment variable holding the software keystore's passphrase (its name, not its value).
    #[arg(long, value_name = "VAR")]
    pub passphrase_env: Option<String>,
    /// File whose first line is the token's PIN (mode 0600).
    #[arg(long, value_name = "FILE", conflicts_with = "pin_env")]
    pub pin_file: Option<PathBuf>,
    /// Environment variable holding the token's PIN (its name, not its value).
    #[arg(long, value_name = "VAR")]
    pub pin_env: Option<String>,
}

/// Which secret: a software keystore's passphrase or a token's PIN.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SecretKind {
    /// A software keystore's passphrase.
    Passphrase,
    /// A PKCS#11 token's PIN.
    Pin,
}

impl SecretKind {
    /// How messages name it.
    pub fn what(self) -> &'static str {
        match self {
            SecretKind::Passphrase => "keystore passphrase",
            SecretKind::Pin => "token PIN",
        }
    }

    fn flag(self) -> &'static str {
        match self {
            SecretKind::Passphrase => "passphrase",
            SecretKind::Pin => "pin",
        }
    }
}

/// Why a passphrase or PIN could not be had.
#[derive(Debug)]
pub enum SecretError {
    /// No file, no variable, and no terminal to ask on.
    Missing(SecretKind),
    /// The file cannot be read.
    File {
        kind: SecretKind,
        path: PathBuf,
        source: std::io::Error,
    },
    /// The file is larger than [`hsm_bridge::pin::MAX_PIN_FILE_BYTES`].
    TooLarge { kind: SecretKind, path: PathBuf },
    /// The named environment variable is not set (or not Unicode).
    Unset { kind: SecretKind, var: String },
    /// The secret is empty.
    Empty(SecretKind),
    /// The keystore refused it.
    Wrong(SecretKind),
}

impl std::fmt::Display for SecretError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SecretError::Missing(k) => write!(
                f,
                "this needs the {what}: pass --{flag}-file FILE or --{flag}-env VAR, or run on a terminal to be asked (secrets are never taken as command-line values)",
                what = k.what(),
                flag = k.flag()
            ),
            SecretError::File { kind, path, source } => write!(
                f,
                "cannot read the {} file {}: {source}",
                kind.what(),
                path.display()
            ),
            SecretError::TooLarge { kind, path } => write!(
                f,
                "the {} file {} is larger than {} bytes; it should hold the {} on its first line",
                kind.what(),
                path.display(),
                MAX_SECRET_FILE_BYTES,
                kind.what()
            ),
            SecretError::Unset { kind, var } => write!(
                f,
                "environment variable {} (named for the {}) is not set",
                wallet_core::display::inert_bounded(var, 64),
                kind.what()
            ),
            SecretError::Empty(k) => write!(f, "the {} is empty", k.what()),
            SecretError::Wrong(k) => write!(
                f,
                "the keystore could not be unlocked: wrong {}",
                match k {
                    SecretKind::Passphrase => "passphrase",
                    SecretKind::Pin => "PIN",
                }
            ),
        }
    }
}

impl std::error::Error for SecretError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SecretError::File { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// The largest passphrase or PIN file read (only its first line is used).
const MAX_SECRET_FILE_BYTES: u64 = hsm_bridge::pin::MAX_PIN_FILE_BYTES;

/// The first line of `text`, which must not be empty.
fn first_line(text: &str, kind: SecretKind) -> Result<SecretString, SecretError> {
    let line = text.lines().next().unwrap_or_default();
    if line.is_empty() {
        return Err(SecretError::Empty(kind));
    }
    Ok(SecretString::from(line.to_owned()))
}

fn read_file(path: &Path, kind: SecretKind) -> Result<SecretString, SecretError> {
    use std::io::Read;
    let cannot = |source| SecretError::File {
        kind,
        path: path.to_owned(),
        source,
    };
    let file = std::fs::File::open(path).map_err(cannot)?;
    let mut text = zeroize::Zeroizing::new(String::new());
    file.take(MAX_SECRET_FILE_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(cannot)?;
    if text.len() as u64 > MAX_SECRET_FILE_BYTES {
        return Err(SecretError::TooLarge {
            kind,
            path: path.to_owned(),
        });
    }
    first_line(&text, kind)
}

fn source(
    file: &Option<PathBuf>,
    env: &Option<String>,
    kind: SecretKind,
) -> anyhow::Result<SecretString> {
    match (file, env) {
        (Some(f), _) => {
            warn_if_others_can_read(f, kind.what());
            Ok(read_file(f, kind)?)
        }
        (None, Some(var)) => {
            let value =
                zeroize::Zeroizing::new(std::env::var(var).map_err(|_| SecretError::Unset {
                    kind,
                    var: var.clone(),
                })?);
            Ok(first_line(&value, kind)?)
        }
        (None, None) => {
            use std::io::IsTerminal;
            if std::io::stdin().is_terminal() && std::io::stderr().is_terminal() {
                // Read from the terminal without echo; the String is moved
                // straight into a zeroizing SecretString.
                let typed = rpassword::prompt_password(format!("{}: ", kind.what()))?;
                if typed.is_empty() {
                    return Err(SecretError::Empty(kind).into());
                }
                return Ok(SecretString::from(typed));
            }
            Err(SecretError::Missing(kind).into())
        }
    }
}

/// A secret file that other users can read is worth a warning (not a
/// refusal: the operator may have reasons, e.g. a group-readable mount).
fn warn_if_others_can_read(path: &std::path::Path, what: &str) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(m) = std::fs::metadata(path) {
            let mode = m.permissions().mode();
            if mode & 0o044 != 0 {
                crate::ctx::warn(&format!(
                    "the {what} file {} can be read by other users (mode {:o}); `chmod 600` it",
                    wallet_core::display::inert(&path.display().to_string()),
                    mode & 0o7777
                ));
            }
        }
    }
}

impl SecretArgs {
    /// The software keystore's passphrase.
    pub fn passphrase(&self) -> anyhow::Result<SecretString> {
        source(
            &self.passphrase_file,
            &self.passphrase_env,
            SecretKind::Passphrase,
        )
    }

    /// The token's PIN.
    pub fn pin(&self) -> anyhow::Result<SecretString> {
        source(&self.pin_file, &self.pin_env, SecretKind::Pin)
    }
}
