//! Where a PIN comes from: a file, or an environment variable named by the
//! user. Never a plain command-line value. (The CLI adds an interactive
//! prompt.) PINs are `SecretString`s: zeroized on drop, redacted in `Debug`.

use std::path::PathBuf;

use secrecy::SecretString;
use zeroize::Zeroize;

use crate::error::HsmError;

/// The largest PIN or passphrase file read, in bytes (only its first line
/// is used; memory stays bounded whatever the file holds).
pub const MAX_PIN_FILE_BYTES: u64 = 4096;

fn read_bounded(path: &std::path::Path) -> Result<String, HsmError> {
    use std::io::Read;
    let cannot =
        |e: std::io::Error| HsmError::Pin(format!("cannot read PIN file {}: {e}", path.display()));
    let file = std::fs::File::open(path).map_err(cannot)?;
    let mut text = String::new();
    file.take(MAX_PIN_FILE_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(cannot)?;
    if text.len() as u64 > MAX_PIN_FILE_BYTES {
        text.zeroize();
        return Err(HsmError::Pin(format!(
            "PIN file {} is larger than {MAX_PIN_FILE_BYTES} bytes; it should hold the PIN on its first line",
            path.display()
        )));
    }
    Ok(text)
}

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
            PinSource::File(p) => read_bounded(p)?,
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
