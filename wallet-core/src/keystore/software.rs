//! An encrypted software keystore: a directory of age files.
//!
//! ```text
//! DIR/keystore.age        the keystore key (an age X25519 identity) and the
//!                         P-256 identity key, encrypted with the passphrase
//!                         (age scrypt)
//! DIR/shares/<slot>.age   key-share documents, age-encrypted to the keystore key
//! DIR/nonces/<slot>.age   round-1 nonces, likewise; deleted when taken
//! DIR/nonces/.lock        serialises takes across processes (see [`super::files`])
//! ```
//!
//! The passphrase is stretched once, when the keystore is opened; shares and
//! nonces then cost one X25519 + ChaCha20-Poly1305 operation each. Every
//! plaintext starts with its slot's associated data, so a file copied to
//! another slot is refused as tampered. Files are written atomically (write
//! to a temporary file, fsync, rename or link, fsync the directory), with
//! mode 0600 on Unix.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use age::secrecy::{ExposeSecret, SecretString};
use rand_core::{OsRng, RngCore};

use super::files::{io_error, write_atomic, TakeOnceDir};
use super::{Keystore, KeystoreError, SecretSlot};
use crate::identity::{IdentityPublicKey, IdentitySignature, SealedMessage, SoftwareIdentity};
use crate::secret::SecretBytes;

const HEADER: &str = "kura-software-keystore/v1";
const KEY_FILE: &str = "keystore.age";

/// The scrypt work factor for a new keystore's passphrase.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WorkFactor {
    /// age's default: calibrated to about a second on this machine.
    Default,
    /// An explicit log2(N), e.g. a small one in tests. Never lower it in production.
    LogN(u8),
}

/// A keystore of age-encrypted files under a passphrase.
pub struct SoftwareKeystore {
    dir: PathBuf,
    nonces: TakeOnceDir,
    at_rest: age::x25519::Identity,
    identity: SoftwareIdentity,
}

impl std::fmt::Debug for SoftwareKeystore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SoftwareKeystore")
            .field("dir", &self.dir)
            .field("identity", &self.identity.public_key())
            .finish_non_exhaustive()
    }
}

impl SoftwareKeystore {
    /// Creates a keystore in `dir` (created if missing; must not already hold
    /// a keystore) with a fresh identity key.
    ///
    /// # Errors
    /// [`KeystoreError::AlreadyExists`] when `dir` already has a keystore, or an I/O error.
    pub fn create(
        dir: &Path,
        passphrase: &SecretString,
        work: WorkFactor,
    ) -> Result<Self, KeystoreError> {
        for sub in ["shares", "nonces"] {
            fs::create_dir_all(dir.join(sub)).map_err(io_error(dir))?;
        }
        let at_rest = age::x25519::Identity::generate();
        let identity = SoftwareIdentity::generate(&mut OsRng);
        // Sized up front and filled from zeroizing temporaries, so no copy of
        // a secret is left behind in freed memory.
        let mut plain = zeroize::Zeroizing::new(String::with_capacity(512));
        plain.push_str(HEADER);
        plain.push('\n');
        plain.push_str(at_rest.to_string().expose_secret());
        plain.push('\n');
        let identity_hex = zeroize::Zeroizing::new(hex::encode(identity.secret_bytes().expose()));
        plain.push_str(&identity_hex);
        plain.push('\n');
        let mut recipient = age::scrypt::Recipient::new(passphrase.clone());
        if let WorkFactor::LogN(n) = work {
            recipient.set_work_factor(n);
        }
        let ct = age::encrypt(&recipient, plain.as_bytes())
            .map_err(|e| KeystoreError::Backend(e.to_string()))?;
        write_atomic(&dir.join(KEY_FILE), &ct, false).map_err(|e| match e {
            KeystoreError::Io { source, .. } if source.kind() == io::ErrorKind::AlreadyExists => {
                KeystoreError::AlreadyExists(format!("a keystore in {}", dir.display()))
            }
            other => other,
        })?;
        Ok(SoftwareKeystore {
            dir: dir.to_owned(),
            nonces: TakeOnceDir::open(&dir.join("nonces"))?,
            at_rest,
            identity,
        })
    }

    /// Opens the keystore in `dir` with its passphrase.
    ///
    /// # Errors
    /// [`KeystoreError::WrongPassphrase`], [`KeystoreError::NotFound`] when
    /// `dir` has no keystore, or [`KeystoreError::Tampered`] for a key file
    /// that decrypts to something else.
    pub fn open(dir: &Path, passphrase: &SecretString) -> Result<Self, KeystoreError> {
        let path = dir.join(KEY_FILE);
        let ct = match fs::read(&path) {
            Ok(ct) => ct,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(KeystoreError::NotFound(format!(
                    "keystore in {}",
                    dir.display()
                )))
            }
            Err(e) => return Err(io_error(&path)(e)),
        };
        let mut identity = age::scrypt::Identity::new(passphrase.clone());
        // Accept files made with age's default work factor on faster machines.
        identity.set_max_work_factor(22);
        let plain = SecretBytes::new(age::decrypt(&identity, &ct).map_err(|e| match e {
            age::DecryptError::DecryptionFailed | age::DecryptError::NoMatchingKeys => {
                KeystoreError::WrongPassphrase
            }
            other => KeystoreError::Backend(format!("cannot read {}: {other}", path.display())),
        })?);
        let text = std::str::from_utf8(plain.expose())
            .map_err(|_| KeystoreError::Tampered("keystore key file".into()))?;
        let mut lines = text.lines();
        let tampered = || KeystoreError::Tampered("keystore key file".into());
        if lines.next() != Some(HEADER) {
            return Err(tampered());
        }
        let at_rest = age::x25519::Identity::from_str(lines.next().ok_or_else(tampered)?)
            .map_err(|_| tampered())?;
        let id_bytes = zeroize::Zeroizing::new(
            hex::decode(lines.next().ok_or_else(tampered)?).map_err(|_| tampered())?,
        );
        let identity = SoftwareIdentity::from_secret_bytes(&id_bytes).map_err(|_| tampered())?;
        Ok(SoftwareKeystore {
            dir: dir.to_owned(),
            nonces: TakeOnceDir::open(&dir.join("nonces"))?,
            at_rest,
            identity,
        })
    }

    fn share_path(&self, slot: &SecretSlot) -> PathBuf {
        self.dir.join("shares").join(format!("{}.age", slot.name()))
    }

    fn seal(&self, slot: &SecretSlot, document: &SecretBytes) -> Result<Vec<u8>, KeystoreError> {
        let ad = slot.associated_data();
        let mut plain =
            SecretBytes::new(Vec::with_capacity(4 + ad.len() + document.len())).into_vec();
        plain.extend_from_slice(&u32::try_from(ad.len()).unwrap_or(u32::MAX).to_be_bytes());
        plain.extend_from_slice(&ad);
        plain.extend_from_slice(document.expose());
        age::encrypt(&self.at_rest.to_public(), &plain)
            .map_err(|e| KeystoreError::Backend(e.to_string()))
    }

    fn unseal(&self, slot: &SecretSlot, ct: &[u8]) -> Result<SecretBytes, KeystoreError> {
        let tampered = || KeystoreError::Tampered(slot.to_string());
        let plain = SecretBytes::new(age::decrypt(&self.at_rest, ct).map_err(|_| tampered())?);
        let bytes = plain.expose();
        let ad = slot.associated_data();
        let len_bytes: [u8; 4] = bytes
            .get(..4)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(tampered)?;
        let len = usize::try_from(u32::from_be_bytes(len_bytes)).map_err(|_| tampered())?;
        if len != ad.len() || bytes.get(4..4 + len) != Some(ad.as_slice()) {
            return Err(tampered());
        }
        Ok(SecretBytes::new(
            bytes.get(4 + len..).unwrap_or_default().to_vec(),
        ))
    }

    fn read(&self, path: &Path, slot: &SecretSlot) -> Result<Vec<u8>, KeystoreError> {
        fs::read(path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => KeystoreError::NotFound(slot.to_string()),
            _ => io_error(path)(e),
        })
    }
}

impl Keystore for SoftwareKeystore {
    fn describe(&self) -> String {
        format!("software keystore at {}", self.dir.display())
    }

    fn put_key_share(
        &self,
        slot: &SecretSlot,
        document: &SecretBytes,
    ) -> Result<(), KeystoreError> {
        let ct = self.seal(slot, document)?;
        write_atomic(&self.share_path(slot), &ct, true)
    }

    fn key_share(&self, slot: &SecretSlot) -> Result<SecretBytes, KeystoreError> {
        let path = self.share_path(slot);
        let ct = self.read(&path, slot)?;
        self.unseal(slot, &ct)
    }

    fn put_nonces(&self, slot: &SecretSlot, document: &SecretBytes) -> Result<(), KeystoreError> {
        let ct = self.seal(slot, document)?;
        self.nonces
            .put_new(&format!("{}.age", slot.name()), &ct)
            .map_err(|e| match e {
                KeystoreError::AlreadyExists(_) => KeystoreError::AlreadyExists(slot.to_string()),
                other => other,
            })
    }

    fn take_nonces(&self, slot: &SecretSlot) -> Result<SecretBytes, KeystoreError> {
        let ct = self
            .nonces
            .take(&format!("{}.age", slot.name()))?
            .ok_or_else(|| KeystoreError::NoncesConsumed(slot.to_string()))?;
        self.unseal(slot, &ct)
    }

    fn fill_random(&self, out: &mut [u8]) -> Result<(), KeystoreError> {
        OsRng.fill_bytes(out);
        Ok(())
    }

    fn identity_public_key(&self) -> Result<IdentityPublicKey, KeystoreError> {
        Ok(self.identity.public_key())
    }

    fn sign_identity(&self, message: &[u8]) -> Result<IdentitySignature, KeystoreError> {
        Ok(self.identity.sign(message))
    }

    fn open_sealed(
        &self,
        sealed: &SealedMessage,
        context: &[u8],
    ) -> Result<SecretBytes, KeystoreError> {
        Ok(self.identity.open(sealed, context)?)
    }
}
