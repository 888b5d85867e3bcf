//! An encrypted software keystore: a directory of age files.
//!
//! ```text
//! DIR/keystore.age        the keystore key (an age X25519 identity) and the
//!                         P-256 identity key, encrypted with the passphrase
//!                         (age scrypt)
//! DIR/shares/<slot>.age   key-share documents, age-encrypted to the keystore key
//! DIR/state.bin           the keystore's state: the [`StateAnchor`] and one
//!                         key per outstanding nonce set (ChaCha20-Poly1305
//!                         under a key derived from the keystore key)
//! DIR/nonces/<slot>.bin   round-1 nonces, encrypted under their own key from
//!                         the state; that key is destroyed when they are taken
//! DIR/nonces/.lock        serialises takes and state changes across processes
//! ```
//!
//! The passphrase is stretched once, when the keystore is opened; shares
//! then cost one X25519 + ChaCha20-Poly1305 operation each, nonces and
//! state changes one ChaCha20-Poly1305 operation and an atomic rewrite of
//! the state file. Every ciphertext is bound to its slot's associated data,
//! so a file copied to another slot is refused as tampered. Files are
//! written atomically (write to a temporary file, fsync, rename or link,
//! fsync the directory), mode 0600, in directories of mode 0700.
//!
//! **What a software keystore cannot detect**: someone who can write the
//! directory may restore an old copy of *all* of it (state file included)
//! together with the audit log. The restored keystore is consistent with
//! itself and cannot tell. Restoring only the nonce files, or only the audit
//! log, or removing the state file is detected. Against a whole-home
//! rollback, use a PKCS#11 token, whose state does not live on the host.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use std::collections::BTreeMap;

use age::secrecy::{ExposeSecret, SecretString};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use hkdf::Hkdf;
use rand_core::{OsRng, RngCore};
use sha2::Sha256;
use zeroize::Zeroizing;

use super::files::{create_private_dir, io_error, write_atomic, TakeOnceDir};
use super::{Keystore, KeystoreError, SecretSlot, StateAnchor};
use crate::identity::{IdentityPublicKey, IdentitySignature, SealedMessage, SoftwareIdentity};
use crate::secret::SecretBytes;

const HEADER: &str = "kura-software-keystore/v1";
const KEY_FILE: &str = "keystore.age";
const STATE_FILE: &str = "state.bin";
/// Tag and version of the state file.
const STATE_TAG: &[u8; 4] = b"KS1\0";
/// Associated data of the state file's ciphertext.
const STATE_AD: &[u8] = b"kura/v1/software-keystore-state";
const STATE_KEY_INFO: &[u8] = b"kura/v1/software-keystore-state-key";
/// Most nonce sets outstanding at once (approvals not yet signed or
/// superseded); bounds the state file.
const MAX_OUTSTANDING: usize = 4096;

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
    state_key: Zeroizing<[u8; 32]>,
    identity: SoftwareIdentity,
    /// The identity key, prepared for ring's fast signing.
    signing: crate::identity::PreparedIdentity,
}

/// The decrypted state file.
struct State {
    anchor: StateAnchor,
    /// Per nonce slot name, the key its ciphertext is under.
    nonce_keys: BTreeMap<String, Zeroizing<[u8; 32]>>,
}

impl State {
    fn encode(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::with_capacity(
            super::ANCHOR_LEN + 4 + self.nonce_keys.len() * 80,
        ));
        out.extend_from_slice(&self.anchor.to_bytes());
        let count = u32::try_from(self.nonce_keys.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&count.to_be_bytes());
        for (name, key) in &self.nonce_keys {
            // Slot names are short ASCII (purpose and a hash).
            out.push(u8::try_from(name.len()).unwrap_or(u8::MAX));
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(key.as_slice());
        }
        out
    }

    fn decode(bytes: &[u8]) -> Option<State> {
        let anchor = StateAnchor::from_bytes(bytes.get(..super::ANCHOR_LEN)?).ok()?;
        let mut rest = bytes.get(super::ANCHOR_LEN..)?;
        let count = u32::from_be_bytes(rest.get(..4)?.try_into().ok()?);
        rest = rest.get(4..)?;
        let mut nonce_keys = BTreeMap::new();
        for _ in 0..count {
            let len = usize::from(*rest.first()?);
            let name = std::str::from_utf8(rest.get(1..1 + len)?).ok()?.to_owned();
            let key: [u8; 32] = rest.get(1 + len..1 + len + 32)?.try_into().ok()?;
            nonce_keys.insert(name, Zeroizing::new(key));
            rest = rest.get(1 + len + 32..)?;
        }
        rest.is_empty().then_some(State { anchor, nonce_keys })
    }
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
        create_private_dir(dir)?;
        for sub in ["shares", "nonces"] {
            create_private_dir(&dir.join(sub))?;
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
            .map_err(|e| KeystoreError::Backend(crate::error::Cause::new(e)))?;
        write_atomic(&dir.join(KEY_FILE), &ct, false).map_err(|e| match e {
            KeystoreError::Io { source, .. } if source.kind() == io::ErrorKind::AlreadyExists => {
                KeystoreError::AlreadyExists(format!("a keystore in {}", dir.display()))
            }
            other => other,
        })?;
        let keystore = SoftwareKeystore {
            dir: dir.to_owned(),
            nonces: TakeOnceDir::open(&dir.join("nonces"))?,
            state_key: state_key(&at_rest),
            at_rest,
            signing: identity
                .prepare()
                .map_err(|e| KeystoreError::Backend(crate::error::Cause::new(e)))?,
            identity,
        };
        keystore.write_state(&State {
            anchor: StateAnchor::NEW,
            nonce_keys: BTreeMap::new(),
        })?;
        Ok(keystore)
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
            other => KeystoreError::Io {
                path: path.display().to_string(),
                source: io::Error::other(other),
            },
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
        for d in [dir.to_owned(), dir.join("shares"), dir.join("nonces")] {
            super::files::check_private(&d)?;
        }
        super::files::check_private(&path)?;
        let keystore = SoftwareKeystore {
            dir: dir.to_owned(),
            nonces: TakeOnceDir::open(&dir.join("nonces"))?,
            state_key: state_key(&at_rest),
            at_rest,
            signing: identity.prepare().map_err(|_| tampered())?,
            identity,
        };
        // A keystore whose state file is gone must not pass for a new one.
        keystore.read_state()?;
        Ok(keystore)
    }

    fn state_cipher(&self) -> ChaCha20Poly1305 {
        ChaCha20Poly1305::new(&Key::from(*self.state_key))
    }

    /// Reads and authenticates the state file. Missing is tampering: every
    /// keystore has one from its creation.
    fn read_state(&self) -> Result<State, KeystoreError> {
        let path = self.dir.join(STATE_FILE);
        let tampered = || KeystoreError::Tampered(format!("keystore state {}", path.display()));
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(KeystoreError::Tampered(format!(
                    "keystore state {} (the file is missing: it was deleted, or this keystore predates it)",
                    path.display()
                )))
            }
            Err(e) => return Err(io_error(&path)(e)),
        };
        let (tag, rest) = bytes.split_at_checked(4).ok_or_else(tampered)?;
        let (nonce, ct) = rest.split_at_checked(12).ok_or_else(tampered)?;
        if tag != STATE_TAG {
            return Err(tampered());
        }
        let plain = Zeroizing::new(
            self.state_cipher()
                .decrypt(
                    &nonce_from(nonce)?,
                    Payload {
                        msg: ct,
                        aad: STATE_AD,
                    },
                )
                .map_err(|_| tampered())?,
        );
        State::decode(&plain).ok_or_else(tampered)
    }

    fn write_state(&self, state: &State) -> Result<(), KeystoreError> {
        let mut nonce = [0u8; 12];
        OsRng.fill_bytes(&mut nonce);
        let plain = state.encode();
        let ct = self
            .state_cipher()
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: &plain,
                    aad: STATE_AD,
                },
            )
            .map_err(|_| {
                KeystoreError::Backend(crate::error::Cause::message(
                    "cannot encrypt the keystore state",
                ))
            })?;
        let mut out = Vec::with_capacity(4 + 12 + ct.len());
        out.extend_from_slice(STATE_TAG);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        write_atomic(&self.dir.join(STATE_FILE), &out, true)
    }

    /// Changes the state under the lock all takes and state changes hold.
    fn update_state<T>(
        &self,
        f: impl FnOnce(&mut State) -> Result<T, KeystoreError>,
    ) -> Result<T, KeystoreError> {
        self.nonces.locked(|| {
            let mut state = self.read_state()?;
            let out = f(&mut state)?;
            self.write_state(&state)?;
            Ok(out)
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
            .map_err(|e| KeystoreError::Backend(crate::error::Cause::new(e)))
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
        let name = slot.name();
        let mut key = Zeroizing::new([0u8; 32]);
        OsRng.fill_bytes(key.as_mut_slice());
        let ct = seal_nonces(&key, slot, document)?;
        self.update_state(|state| {
            if state.nonce_keys.contains_key(&name) {
                return Err(KeystoreError::AlreadyExists(slot.to_string()));
            }
            if state.nonce_keys.len() >= MAX_OUTSTANDING {
                return Err(KeystoreError::Backend(crate::error::Cause::message(format!(
                    "{MAX_OUTSTANDING} approvals are outstanding in {}; sign or supersede some first",
                    self.describe()
                ))));
            }
            // The ciphertext first: a crash then leaves a file without a key
            // (useless), never a key without its file. Such an orphan is
            // removed here, so the step can be rerun.
            let file = format!("{name}.bin");
            if self.nonces.contains(&file) {
                self.nonces.remove(&file)?;
            }
            self.nonces
                .put_new(&format!("{name}.bin"), &ct)
                .map_err(|e| match e {
                    KeystoreError::AlreadyExists(_) => {
                        KeystoreError::AlreadyExists(slot.to_string())
                    }
                    other => other,
                })?;
            state.nonce_keys.insert(name.clone(), key.clone());
            Ok(())
        })
    }

    fn take_nonces(&self, slot: &SecretSlot) -> Result<SecretBytes, KeystoreError> {
        let name = slot.name();
        self.nonces.take_with(&format!("{name}.bin"), |ct| {
            let mut state = self.read_state()?;
            let key = state
                .nonce_keys
                .remove(&name)
                .ok_or_else(|| KeystoreError::NoncesConsumed(slot.to_string()))?;
            // The key is destroyed whatever the file holds: these nonces
            // are spent from here on.
            self.write_state(&state)?;
            let ct = ct.ok_or_else(|| KeystoreError::NoncesConsumed(slot.to_string()))?;
            open_nonces(&key, slot, &ct)
        })
    }

    fn discard_nonces(&self, slot: &SecretSlot) -> Result<(), KeystoreError> {
        let name = slot.name();
        self.update_state(|state| {
            state.nonce_keys.remove(&name);
            Ok(())
        })?;
        self.nonces.remove(&format!("{name}.bin"))
    }

    fn anchor(&self) -> Result<StateAnchor, KeystoreError> {
        Ok(self.read_state()?.anchor)
    }

    fn replace_anchor(
        &self,
        expected: &StateAnchor,
        next: &StateAnchor,
    ) -> Result<(), KeystoreError> {
        self.update_state(|state| {
            if state.anchor != *expected {
                return Err(expected.moved(&state.anchor));
            }
            state.anchor = *next;
            Ok(())
        })
    }

    fn fill_random(&self, out: &mut [u8]) -> Result<(), KeystoreError> {
        OsRng.fill_bytes(out);
        Ok(())
    }

    fn identity_public_key(&self) -> Result<IdentityPublicKey, KeystoreError> {
        Ok(self.identity.public_key())
    }

    fn sign_identity(&self, message: &[u8]) -> Result<IdentitySignature, KeystoreError> {
        self.signing
            .sign(message)
            .map_err(|e| KeystoreError::Backend(crate::error::Cause::new(e)))
    }

    fn open_sealed(
        &self,
        sealed: &SealedMessage,
        context: &[u8],
    ) -> Result<SecretBytes, KeystoreError> {
        Ok(self.identity.open(sealed, context)?)
    }
}

/// The key of the state file, derived from the keystore key.
fn state_key(at_rest: &age::x25519::Identity) -> Zeroizing<[u8; 32]> {
    let secret = at_rest.to_string();
    let mut key = Zeroizing::new([0u8; 32]);
    // A 32-byte output is always within HKDF-SHA256's limit.
    let _ = Hkdf::<Sha256>::new(None, secret.expose_secret().as_bytes())
        .expand(STATE_KEY_INFO, key.as_mut_slice());
    key
}

fn nonce_cipher(key: &[u8; 32]) -> ChaCha20Poly1305 {
    ChaCha20Poly1305::new(&Key::from(*key))
}

/// `nonce(12) ‖ ChaCha20-Poly1305(key, document, ad = slot)`.
fn seal_nonces(
    key: &[u8; 32],
    slot: &SecretSlot,
    document: &SecretBytes,
) -> Result<Vec<u8>, KeystoreError> {
    let mut nonce = [0u8; 12];
    OsRng.fill_bytes(&mut nonce);
    let ad = slot.associated_data();
    let ct = nonce_cipher(key)
        .encrypt(
            &Nonce::from(nonce),
            Payload {
                msg: document.expose(),
                aad: &ad,
            },
        )
        .map_err(|_| {
            KeystoreError::Backend(crate::error::Cause::message("cannot encrypt nonces"))
        })?;
    let mut out = nonce.to_vec();
    out.extend_from_slice(&ct);
    Ok(out)
}

fn open_nonces(key: &[u8; 32], slot: &SecretSlot, ct: &[u8]) -> Result<SecretBytes, KeystoreError> {
    let tampered = || KeystoreError::Tampered(slot.to_string());
    let (nonce, body) = ct.split_at_checked(12).ok_or_else(tampered)?;
    let ad = slot.associated_data();
    nonce_cipher(key)
        .decrypt(
            &nonce_from(nonce)?,
            Payload {
                msg: body,
                aad: &ad,
            },
        )
        .map(SecretBytes::new)
        .map_err(|_| tampered())
}

fn nonce_from(bytes: &[u8]) -> Result<Nonce, KeystoreError> {
    let b: [u8; 12] = bytes
        .try_into()
        .map_err(|_| KeystoreError::Tampered("ciphertext".into()))?;
    Ok(Nonce::from(b))
}
