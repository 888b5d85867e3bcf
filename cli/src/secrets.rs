//! Passphrases and PINs: from a file, an environment variable *named* on
//! the command line, or a no-echo prompt on a terminal — never the secret
//! itself as an argument.

use std::path::PathBuf;

use anyhow::bail;
use clap::Args;
use secrecy::SecretString;

/// Where the keystore's passphrase (software) or the token's PIN comes from.
#[derive(Debug, Clone, Args, Default)]
pub struct SecretArgs {
    /// File whose first line is the keystore passphrase.
    #[arg(long, value_name = "FILE", global = true)]
    pub passphrase_file: Option<PathBuf>,
    /// Environment variable holding the keystore passphrase (its name, not its value).
    #[arg(long, value_name = "VAR", global = true)]
    pub passphrase_env: Option<String>,
    /// File whose first line is the token PIN.
    #[arg(long, value_name = "FILE", global = true)]
    pub pin_file: Option<PathBuf>,
    /// Environment variable holding the token PIN (its name, not its value).
    #[arg(long, value_name = "VAR", global = true)]
    pub pin_env: Option<String>,
}

fn source(
    file: &Option<PathBuf>,
    env: &Option<String>,
    what: &str,
    flag: &str,
) -> anyhow::Result<SecretString> {
    let src = match (file, env) {
        (Some(f), None) => {
            warn_if_others_can_read(f, what);
            hsm_bridge::PinSource::File(f.clone())
        }
        (None, Some(v)) => hsm_bridge::PinSource::Env(v.clone()),
        (Some(_), Some(_)) => bail!("give either --{flag}-file or --{flag}-env, not both"),
        (None, None) => {
            use std::io::IsTerminal;
            if std::io::stdin().is_terminal() && std::io::stderr().is_terminal() {
                // Read from the terminal without echo; the String is moved
                // straight into a zeroizing SecretString.
                let typed = rpassword::prompt_password(format!("{what}: "))?;
                if typed.is_empty() {
                    bail!("the {what} is empty");
                }
                return Ok(SecretString::from(typed));
            }
            bail!(
                "this needs the {what}: pass --{flag}-file FILE or --{flag}-env VAR, or run on a terminal to be asked (secrets are never taken as command-line values)"
            )
        }
    };
    Ok(src.read()?)
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
                eprintln!(
                    "kura: warning: the {what} file {} can be read by other users (mode {:o}); `chmod 600` it",
                    path.display(),
                    mode & 0o7777
                );
            }
        }
    }
}

impl SecretArgs {
    pub fn passphrase(&self) -> anyhow::Result<SecretString> {
        source(
            &self.passphrase_file,
            &self.passphrase_env,
            "keystore passphrase",
            "passphrase",
        )
    }

    pub fn pin(&self) -> anyhow::Result<SecretString> {
        source(&self.pin_file, &self.pin_env, "token PIN", "pin")
    }
}
