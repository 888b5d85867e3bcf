//! How a failed command ends: its exit code and what it prints.

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
