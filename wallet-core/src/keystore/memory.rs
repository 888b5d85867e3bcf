//! A keystore in process memory, for tests and benchmarks.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use rand_core::{OsRng, RngCore};

use super::{Keystore, KeystoreError, SecretSlot, StateAnchor};
use crate::identity::{IdentityPublicKey, IdentitySignature, SealedMessage, SoftwareIdentity};
use crate::secret::SecretBytes;

/// Secrets kept in memory only (zeroized when dropped). Nonces are still
/// taken at most once. Nothing survives the process.
#[derive(Debug)]
pub struct MemoryKeystore {
    identity: SoftwareIdentity,
    /// ring's fast signing with random nonces, unless deterministic.
    prepared: Option<crate::identity::PreparedIdentity>,
    shares: Mutex<HashMap<SecretSlot, SecretBytes>>,
    nonces: Mutex<HashMap<SecretSlot, SecretBytes>>,
    anchor: Mutex<StateAnchor>,
}

impl MemoryKeystore {
    /// An empty keystore with a fresh identity key.
    pub fn new() -> Self {
        Self::with_identity(SoftwareIdentity::generate(&mut OsRng))
    }

    /// An empty keystore with the given identity key, signing with ring
    /// (random nonces), as the software keystore does.
    pub fn with_identity(identity: SoftwareIdentity) -> Self {
        let prepared = identity.prepare().ok();
        MemoryKeystore {
            prepared,
            ..Self::with_deterministic_identity(identity)
        }
    }

    /// An empty keystore with the given identity key whose signatures are
    /// RFC 6979 deterministic ([`SoftwareIdentity::sign`]): what
    /// known-answer vectors need to come out byte for byte the same.
    pub fn with_deterministic_identity(identity: SoftwareIdentity) -> Self {
        MemoryKeystore {
            identity,
            prepared: None,
            shares: Mutex::new(HashMap::new()),
            nonces: Mutex::new(HashMap::new()),
            anchor: Mutex::new(StateAnchor::NEW),
        }
    }
}

impl Default for MemoryKeystore {
    fn default() -> Self {
        Self::new()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave a map half-updated (every
    // critical section is a single insert or remove), so poisoning is ignored.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Keystore for MemoryKeystore {
    fn describe(&self) -> String {
        "in-memory keystore".into()
    }

    fn put_key_share(
        &self,
        slot: &SecretSlot,
        document: &SecretBytes,
    ) -> Result<(), KeystoreError> {
        lock(&self.shares).insert(slot.clone(), document.clone());
        Ok(())
    }

    fn key_share(&self, slot: &SecretSlot) -> Result<SecretBytes, KeystoreError> {
        lock(&self.shares)
            .get(slot)
            .cloned()
            .ok_or_else(|| KeystoreError::NotFound(slot.to_string()))
    }

    fn put_nonces(&self, slot: &SecretSlot, document: &SecretBytes) -> Result<(), KeystoreError> {
        let mut nonces = lock(&self.nonces);
        if nonces.contains_key(slot) {
            return Err(KeystoreError::AlreadyExists(slot.to_string()));
        }
        nonces.insert(slot.clone(), document.clone());
        Ok(())
    }

    fn take_nonces(&self, slot: &SecretSlot) -> Result<SecretBytes, KeystoreError> {
        lock(&self.nonces)
            .remove(slot)
            .ok_or_else(|| KeystoreError::NoncesConsumed(slot.to_string()))
    }

    fn discard_nonces(&self, slot: &SecretSlot) -> Result<(), KeystoreError> {
        lock(&self.nonces).remove(slot);
        Ok(())
    }

    fn anchor(&self) -> Result<StateAnchor, KeystoreError> {
        Ok(*lock(&self.anchor))
    }

    fn replace_anchor(
        &self,
        expected: &StateAnchor,
        next: &StateAnchor,
    ) -> Result<(), KeystoreError> {
        let mut anchor = lock(&self.anchor);
        if *anchor != *expected {
            return Err(expected.moved(&anchor));
        }
        *anchor = *next;
        Ok(())
    }

    fn fill_random(&self, out: &mut [u8]) -> Result<(), KeystoreError> {
        OsRng.fill_bytes(out);
        Ok(())
    }

    fn identity_public_key(&self) -> Result<IdentityPublicKey, KeystoreError> {
        Ok(self.identity.public_key())
    }

    fn sign_identity(&self, message: &[u8]) -> Result<IdentitySignature, KeystoreError> {
        match &self.prepared {
            Some(prepared) => prepared
                .sign(message)
                .map_err(|e| KeystoreError::Backend(crate::error::Cause::new(e))),
            None => Ok(self.identity.sign(message)),
        }
    }

    fn open_sealed(
        &self,
        sealed: &SealedMessage,
        context: &[u8],
    ) -> Result<SecretBytes, KeystoreError> {
        Ok(self.identity.open(sealed, context)?)
    }
}
