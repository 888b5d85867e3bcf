//! [`HsmKeystore`]: wallet-core's `Keystore` over a PKCS#11 token.

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use cryptoki::context::Pkcs11;
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::mechanism::elliptic_curve::{EcKdf, Ecdh1DeriveParams};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use secrecy::SecretString;
use sha2::{Digest, Sha256};
use wallet_core::identity::{self, IdentityPublicKey, IdentitySignature, SealedMessage};
use wallet_core::keystore::files::TakeOnceDir;
use wallet_core::keystore::{Keystore, KeystoreError, SecretSlot};
use wallet_core::SecretBytes;
use zeroize::Zeroizing;

use crate::context::{context, find_token};
use crate::error::HsmError;
use crate::uri::Pkcs11Uri;

/// Label of the key-encryption key on the token.
pub const KEK_LABEL: &str = "kura-kek";
/// Label (and id) of the identity key pair on the token.
pub const IDENTITY_LABEL: &str = "kura-identity";
/// `CKA_APPLICATION` of Kura's data objects.
const APPLICATION: &[u8] = b"kura";
/// Suffix of a data object being replaced (see `put_key_share`).
const PENDING: &str = "~pending";
/// DER OID of P-256 (prime256v1) for `CKA_EC_PARAMS`.
const P256_PARAMS: [u8; 10] = [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
/// Ciphertext layout version: `version ‖ iv(12) ‖ AES-GCM(ct ‖ tag(16))`.
const CT_VERSION: u8 = 1;
const IV_LEN: usize = 12;

/// A signer's secrets on a PKCS#11 token.
///
/// - The **key-encryption key** (AES-256, `Sensitive`, not `Extractable`)
///   is generated on the token and never leaves it.
/// - The **key share** is an AES-GCM ciphertext in a private data object on
///   the token; the associated data binds format version, suite, group,
///   participant and purpose.
/// - **Round-1 nonces** are AES-GCM ciphertexts in a local
///   [`TakeOnceDir`] (why not on the token: see the crate docs).
/// - The **identity key** (P-256) is generated on the token; it signs
///   (`CKM_ECDSA` over a SHA-256 digest, low-S) and derives ECDH secrets to
///   open sealed messages.
/// - **Randomness** for nonces comes from the token's `C_GenerateRandom`,
///   mixed with the OS RNG by wallet-core.
///
/// One session per keystore, guarded by a mutex (PKCS#11 sessions are not
/// thread-safe); the context is shared by the process.
pub struct HsmKeystore {
    label: String,
    session: Mutex<Session>,
    kek: ObjectHandle,
    identity_private: ObjectHandle,
    identity_public: IdentityPublicKey,
    nonces: TakeOnceDir,
    _context: Arc<Pkcs11>,
}

impl std::fmt::Debug for HsmKeystore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HsmKeystore")
            .field("token", &self.label)
            .field("identity", &self.identity_public)
            .finish_non_exhaustive()
    }
}

/// Salted hashes of the PINs this process logged in with, by module and
/// token. PKCS#11 login is per process and token: a second session finds
/// the user already logged in and the token never checks its PIN, so this
/// process checks it against the PIN of the login it made.
type LoginMap = std::sync::Mutex<std::collections::HashMap<(std::path::PathBuf, String), [u8; 32]>>;

fn logins() -> &'static LoginMap {
    static LOGINS: std::sync::OnceLock<LoginMap> = std::sync::OnceLock::new();
    LOGINS.get_or_init(Default::default)
}

fn pin_hash(pin: &SecretString) -> [u8; 32] {
    use secrecy::ExposeSecret;
    static SALT: std::sync::OnceLock<[u8; 32]> = std::sync::OnceLock::new();
    let salt = SALT.get_or_init(|| {
        let mut s = [0u8; 32];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut s);
        s
    });
    let mut h = Sha256::new();
    h.update(salt);
    h.update(pin.expose_secret().as_bytes());
    h.finalize().into()
}

fn login(session: &Session, uri: &Pkcs11Uri, pin: &SecretString) -> Result<(), HsmError> {
    let label = &uri.token;
    let key = (uri.module(), label.clone());
    let mut known = logins().lock().unwrap_or_else(|p| p.into_inner());
    match session.login(UserType::User, Some(pin)) {
        Ok(()) => {
            known.insert(key, pin_hash(pin));
            Ok(())
        }
        // Already logged in by this process: accept only the same PIN.
        Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => match known.get(&key) {
            Some(h) if *h != pin_hash(pin) => Err(HsmError::WrongPin {
                label: label.clone(),
            }),
            _ => Ok(()),
        },
        Err(CkError::Pkcs11(RvError::PinIncorrect, _)) => Err(HsmError::WrongPin {
            label: label.clone(),
        }),
        Err(CkError::Pkcs11(RvError::PinLocked, _)) => Err(HsmError::PinLocked {
            label: label.clone(),
        }),
        Err(e) => Err(HsmError::pkcs11("C_Login")(e)),
    }
}

fn open_session(uri: &Pkcs11Uri, pin: &SecretString) -> Result<(Arc<Pkcs11>, Session), HsmError> {
    let ctx = context(&uri.module())?;
    let slot = find_token(&ctx, &uri.token)?;
    let session = ctx
        .open_rw_session(slot)
        .map_err(HsmError::pkcs11("C_OpenSession"))?;
    login(&session, uri, pin)?;
    Ok((ctx, session))
}

fn find_one(session: &Session, template: &[Attribute]) -> Result<Option<ObjectHandle>, HsmError> {
    Ok(session
        .find_objects(template)
        .map_err(HsmError::pkcs11("C_FindObjects"))?
        .into_iter()
        .next())
}

fn kek_template() -> Vec<Attribute> {
    vec![
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(KeyType::AES),
        Attribute::Label(KEK_LABEL.into()),
    ]
}

impl HsmKeystore {
    /// Generates Kura's keys on a token that has none: the AES-256 KEK and the
    /// P-256 identity key pair. Nonce ciphertexts will live in `nonce_dir`.
    ///
    /// # Errors
    /// [`HsmError::AlreadyProvisioned`] when the token has a KEK; login and
    /// PKCS#11 errors otherwise.
    pub fn provision(
        uri: &Pkcs11Uri,
        pin: &SecretString,
        nonce_dir: &Path,
    ) -> Result<Self, HsmError> {
        let (ctx, session) = open_session(uri, pin)?;
        if find_one(&session, &kek_template())?.is_some() {
            return Err(HsmError::AlreadyProvisioned {
                label: uri.token.clone(),
            });
        }
        let full = |e: CkError| match e {
            CkError::Pkcs11(RvError::DeviceMemory, _) => HsmError::TokenFull {
                label: uri.token.clone(),
            },
            other => HsmError::pkcs11("C_GenerateKey")(other),
        };
        let mut kek = kek_template();
        kek.extend([
            Attribute::ValueLen(32.into()),
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Encrypt(true),
            Attribute::Decrypt(true),
            Attribute::Wrap(false),
            Attribute::Unwrap(false),
            Attribute::Derive(false),
            Attribute::Sign(false),
        ]);
        session
            .generate_key(&Mechanism::AesKeyGen, &kek)
            .map_err(full)?;
        let public = [
            Attribute::Token(true),
            Attribute::Private(false),
            Attribute::Verify(true),
            Attribute::EcParams(P256_PARAMS.to_vec()),
            Attribute::Label(IDENTITY_LABEL.into()),
            Attribute::Id(IDENTITY_LABEL.into()),
        ];
        let private = [
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Sign(true),
            Attribute::Derive(true),
            Attribute::Decrypt(false),
            Attribute::Label(IDENTITY_LABEL.into()),
            Attribute::Id(IDENTITY_LABEL.into()),
        ];
        session
            .generate_key_pair(&Mechanism::EccKeyPairGen, &public, &private)
            .map_err(|e| match e {
                CkError::Pkcs11(RvError::DeviceMemory, _) => HsmError::TokenFull {
                    label: uri.token.clone(),
                },
                other => HsmError::pkcs11("C_GenerateKeyPair")(other),
            })?;
        Self::from_session(uri, ctx, session, nonce_dir)
    }

    /// Opens a provisioned token: logs in once (a wrong PIN is reported, never
    /// retried) and finds Kura's keys.
    ///
    /// # Errors
    /// [`HsmError::WrongPin`], [`HsmError::TokenNotFound`],
    /// [`HsmError::ModuleNotFound`], [`HsmError::NotProvisioned`], …
    pub fn open(uri: &Pkcs11Uri, pin: &SecretString, nonce_dir: &Path) -> Result<Self, HsmError> {
        let (ctx, session) = open_session(uri, pin)?;
        Self::from_session(uri, ctx, session, nonce_dir)
    }

    fn from_session(
        uri: &Pkcs11Uri,
        ctx: Arc<Pkcs11>,
        session: Session,
        nonce_dir: &Path,
    ) -> Result<Self, HsmError> {
        let missing = |what| HsmError::NotProvisioned {
            label: uri.token.clone(),
            missing: what,
        };
        let kek =
            find_one(&session, &kek_template())?.ok_or_else(|| missing("key-encryption key"))?;
        let identity_private = find_one(
            &session,
            &[
                Attribute::Class(ObjectClass::PRIVATE_KEY),
                Attribute::Label(IDENTITY_LABEL.into()),
            ],
        )?
        .ok_or_else(|| missing("identity private key"))?;
        let public_handle = find_one(
            &session,
            &[
                Attribute::Class(ObjectClass::PUBLIC_KEY),
                Attribute::Label(IDENTITY_LABEL.into()),
            ],
        )?
        .ok_or_else(|| missing("identity public key"))?;
        let attrs = session
            .get_attributes(public_handle, &[AttributeType::EcPoint])
            .map_err(HsmError::pkcs11("C_GetAttributeValue"))?;
        let point = attrs
            .into_iter()
            .find_map(|a| match a {
                Attribute::EcPoint(p) => Some(p),
                _ => None,
            })
            .ok_or(HsmError::BadTokenData(
                "identity public key (no CKA_EC_POINT)",
            ))?;
        let identity_public = IdentityPublicKey::from_sec1(strip_der_octet_string(&point))
            .map_err(|_| HsmError::BadTokenData("identity public key"))?;
        let nonces = TakeOnceDir::open(nonce_dir).map_err(|e| HsmError::NonceDir {
            path: nonce_dir.display().to_string(),
            reason: e.to_string(),
        })?;
        Ok(HsmKeystore {
            label: uri.token.clone(),
            session: Mutex::new(session),
            kek,
            identity_private,
            identity_public,
            nonces,
            _context: ctx,
        })
    }

    /// The token's label.
    pub fn token_label(&self) -> &str {
        &self.label
    }

    fn session(&self) -> MutexGuard<'_, Session> {
        // No critical section leaves the session in a state a later caller
        // could misuse, so a poisoned lock is taken over.
        self.session.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Encrypts `plain` under the KEK with `slot`'s associated data.
    fn seal(&self, slot: &SecretSlot, plain: &[u8]) -> Result<Vec<u8>, HsmError> {
        let session = self.session();
        let mut iv = [0u8; IV_LEN];
        session
            .generate_random_slice(&mut iv)
            .map_err(HsmError::pkcs11("C_GenerateRandom"))?;
        let aad = slot.associated_data();
        let mut iv_param = iv;
        let params = GcmParams::new(&mut iv_param, &aad, 128.into())
            .map_err(HsmError::pkcs11("GCM parameters"))?;
        let ct = session
            .encrypt(&Mechanism::AesGcm(params), self.kek, plain)
            .map_err(HsmError::pkcs11("C_Encrypt"))?;
        let mut out = Vec::with_capacity(1 + IV_LEN + ct.len());
        out.push(CT_VERSION);
        out.extend_from_slice(&iv);
        out.extend_from_slice(&ct);
        Ok(out)
    }

    /// Decrypts a ciphertext of `slot`. Any failure — a flipped bit, another
    /// slot's ciphertext, another token's — is reported as tampering.
    fn unseal(&self, slot: &SecretSlot, ct: &[u8]) -> Result<SecretBytes, KeystoreError> {
        let tampered = || KeystoreError::Tampered(slot.to_string());
        let (&version, rest) = ct.split_first().ok_or_else(tampered)?;
        if version != CT_VERSION || rest.len() < IV_LEN + 16 {
            return Err(tampered());
        }
        let (iv, body) = rest.split_at(IV_LEN);
        let mut iv: [u8; IV_LEN] = iv.try_into().map_err(|_| tampered())?;
        let aad = slot.associated_data();
        let session = self.session();
        let params = GcmParams::new(&mut iv, &aad, 128.into()).map_err(|_| tampered())?;
        // SoftHSM reports a failed tag as CKR_GENERAL_ERROR, other tokens as
        // CKR_ENCRYPTED_DATA_INVALID: every decrypt failure is tampering.
        let plain = session
            .decrypt(&Mechanism::AesGcm(params), self.kek, body)
            .map_err(|_| tampered())?;
        Ok(SecretBytes::new(plain))
    }

    fn data_objects(&self, session: &Session, label: &str) -> Result<Vec<ObjectHandle>, HsmError> {
        session
            .find_objects(&[
                Attribute::Class(ObjectClass::DATA),
                Attribute::Application(APPLICATION.to_vec()),
                Attribute::Label(label.as_bytes().to_vec()),
            ])
            .map_err(HsmError::pkcs11("C_FindObjects"))
    }

    fn object_value(session: &Session, object: ObjectHandle) -> Result<Vec<u8>, HsmError> {
        session
            .get_attributes(object, &[AttributeType::Value])
            .map_err(HsmError::pkcs11("C_GetAttributeValue"))?
            .into_iter()
            .find_map(|a| match a {
                Attribute::Value(v) => Some(v),
                _ => None,
            })
            .ok_or(HsmError::BadTokenData("data object without a value"))
    }
}

/// `CKA_EC_POINT` is a DER OCTET STRING around the SEC1 point on most
/// tokens (`04 41 04…`); some return the bare point.
fn strip_der_octet_string(bytes: &[u8]) -> &[u8] {
    match bytes {
        [0x04, len, rest @ ..]
            if usize::from(*len) == rest.len()
                && matches!(rest.len(), 33 | 65)
                && matches!(rest.first(), Some(2..=4)) =>
        {
            rest
        }
        other => other,
    }
}

impl Keystore for HsmKeystore {
    fn describe(&self) -> String {
        format!("PKCS#11 token {:?}", self.label)
    }

    /// Writes the new ciphertext as a pending object, then destroys the old
    /// one, then renames the pending one: a failure at any point leaves a
    /// readable share (the old one, or the pending one if the old is gone).
    fn put_key_share(
        &self,
        slot: &SecretSlot,
        document: &SecretBytes,
    ) -> Result<(), KeystoreError> {
        let ct = self.seal(slot, document.expose())?;
        let ct_check = ct.clone();
        let name = slot.name();
        let pending = format!("{name}{PENDING}");
        let session = self.session();
        let stale = self.data_objects(&session, &pending)?;
        if self.data_objects(&session, &name)?.is_empty() {
            // An earlier replacement was interrupted after the old share was
            // destroyed: the pending object is the only copy. Finish that
            // replacement first instead of deleting it.
            if let Some(only) = stale.first() {
                session
                    .update_attributes(*only, &[Attribute::Label(name.clone().into_bytes())])
                    .map_err(HsmError::pkcs11("C_SetAttributeValue"))?;
            }
        } else {
            for s in stale {
                session
                    .destroy_object(s)
                    .map_err(HsmError::pkcs11("C_DestroyObject"))?;
            }
        }
        let new = session
            .create_object(&[
                Attribute::Class(ObjectClass::DATA),
                Attribute::Token(true),
                Attribute::Private(true),
                Attribute::Modifiable(true),
                Attribute::Application(APPLICATION.to_vec()),
                Attribute::Label(pending.clone().into_bytes()),
                Attribute::Value(ct.clone()),
            ])
            .map_err(|e| match e {
                CkError::Pkcs11(RvError::DeviceMemory, _) => HsmError::TokenFull {
                    label: self.label.clone(),
                },
                other => HsmError::pkcs11("C_CreateObject")(other),
            })?;
        // A token that ran out of space can hand back a handle to an object
        // it never stored (SoftHSM2 does, on a full file system): read the new
        // object back, by label, before the old one is touched.
        let stored = self
            .data_objects(&session, &pending)?
            .into_iter()
            .find(|o| *o == new)
            .and_then(|o| Self::object_value(&session, o).ok());
        if stored.as_deref() != Some(ct_check.as_slice()) {
            let _ = session.destroy_object(new);
            return Err(HsmError::TokenFull {
                label: self.label.clone(),
            }
            .into());
        }
        for old in self.data_objects(&session, &name)? {
            session
                .destroy_object(old)
                .map_err(HsmError::pkcs11("C_DestroyObject"))?;
        }
        session
            .update_attributes(new, &[Attribute::Label(name.into_bytes())])
            .map_err(HsmError::pkcs11("C_SetAttributeValue"))?;
        Ok(())
    }

    fn key_share(&self, slot: &SecretSlot) -> Result<SecretBytes, KeystoreError> {
        let name = slot.name();
        let ct = {
            let session = self.session();
            let object = match self.data_objects(&session, &name)?.first() {
                Some(o) => *o,
                // A replacement interrupted after the old object was destroyed.
                None => *self
                    .data_objects(&session, &format!("{name}{PENDING}"))?
                    .first()
                    .ok_or_else(|| KeystoreError::NotFound(slot.to_string()))?,
            };
            Self::object_value(&session, object)?
        };
        self.unseal(slot, &ct)
    }

    fn put_nonces(&self, slot: &SecretSlot, document: &SecretBytes) -> Result<(), KeystoreError> {
        let ct = self.seal(slot, document.expose())?;
        self.nonces
            .put_new(&format!("{}.gcm", slot.name()), &ct)
            .map_err(|e| match e {
                KeystoreError::AlreadyExists(_) => KeystoreError::AlreadyExists(slot.to_string()),
                other => other,
            })
    }

    fn take_nonces(&self, slot: &SecretSlot) -> Result<SecretBytes, KeystoreError> {
        let ct = self
            .nonces
            .take(&format!("{}.gcm", slot.name()))?
            .ok_or_else(|| KeystoreError::NoncesConsumed(slot.to_string()))?;
        self.unseal(slot, &ct)
    }

    fn fill_random(&self, out: &mut [u8]) -> Result<(), KeystoreError> {
        self.session()
            .generate_random_slice(out)
            .map_err(|e| HsmError::pkcs11("C_GenerateRandom")(e).into())
    }

    fn identity_public_key(&self) -> Result<IdentityPublicKey, KeystoreError> {
        Ok(self.identity_public)
    }

    fn sign_identity(&self, message: &[u8]) -> Result<IdentitySignature, KeystoreError> {
        let digest = Sha256::digest(message);
        let raw = self
            .session()
            .sign(&Mechanism::Ecdsa, self.identity_private, &digest)
            .map_err(HsmError::pkcs11("C_Sign"))?;
        // About half of a token's ECDSA signatures are high-S: normalise.
        IdentitySignature::from_raw_normalizing(&raw)
            .map_err(|_| HsmError::BadTokenData("ECDSA signature").into())
    }

    fn open_sealed(
        &self,
        sealed: &SealedMessage,
        context: &[u8],
    ) -> Result<SecretBytes, KeystoreError> {
        let ephemeral = sealed.ephemeral_key()?;
        let point = ephemeral.to_sec1_uncompressed();
        let params = Ecdh1DeriveParams::new(EcKdf::null(), &point);
        let template = [
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::GENERIC_SECRET),
            Attribute::ValueLen(32.into()),
            Attribute::Token(false),
            Attribute::Sensitive(false),
            Attribute::Extractable(true),
        ];
        let shared = {
            let session = self.session();
            let derived = session
                .derive_key(
                    &Mechanism::Ecdh1Derive(params),
                    self.identity_private,
                    &template,
                )
                .map_err(HsmError::pkcs11("C_DeriveKey(ECDH)"))?;
            let value = Self::object_value(&session, derived).map(Zeroizing::new);
            // The derived secret must not outlive this call on the token.
            session
                .destroy_object(derived)
                .map_err(HsmError::pkcs11("C_DestroyObject(ECDH secret)"))?;
            value?
        };
        Ok(identity::open_with_shared_secret(
            sealed,
            &shared,
            &self.identity_public,
            context,
        )?)
    }
}
