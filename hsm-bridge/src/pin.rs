//! Where a PIN comes from: a file, or an environment variable named by the
//! user. Never a plain command-line value. (The CLI adds an interactive
//! prompt.) PINs are `SecretString`s: zeroized on drop, redacted in `Debug`.

use std::path::PathBuf;

use secrecy::SecretString;

use crate::error::HsmError;

/// A source of a token PIN.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PinSource {
    /// The first line of a file (which should be mode 0600).
    File(PathBuf),
    /// An environment variable, by name.
    Env(String),
}

impl PinSource {
    /// Reads the PIN.
    ///
    /// # Errors
    /// [`HsmError::Pin`] when the file or variable is missing or empty.
    pub fn read(&self) -> Result<SecretString, HsmError> {
        let raw = zeroize::Zeroizing::new(match self {
            PinSource::File(p) => std::fs::read_to_string(p)
                .map_err(|e| HsmError::Pin(format!("cannot read PIN file {}: {e}", p.display())))?,
            PinSource::Env(name) => std::env::var(name)
                .map_err(|_| HsmError::Pin(format!("environment variable {name} is not set")))?,
        });
        let pin = raw.lines().next().unwrap_or_default();
        if pin.is_empty() {
            return Err(HsmError::Pin("the PIN is empty".into()));
        }
        Ok(SecretString::from(pin.to_owned()))
    }
}
