//! Secret bytes in memory.

use std::fmt;

use zeroize::Zeroizing;

/// Serialized secret material (a key-share document, persisted nonces, a
/// decrypted message): zeroized on drop, never shown by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretBytes(Zeroizing<Vec<u8>>);

impl SecretBytes {
    /// Takes ownership of `bytes`.
    pub fn new(bytes: Vec<u8>) -> Self {
        SecretBytes(Zeroizing::new(bytes))
    }

    /// The secret bytes.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no bytes.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretBytes(<{} bytes redacted>)", self.0.len())
    }
}

impl SecretBytes {
    /// Unwraps into a zeroizing vector.
    pub fn into_vec(self) -> zeroize::Zeroizing<Vec<u8>> {
        self.0
    }
}
