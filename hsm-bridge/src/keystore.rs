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
use wallet_core::keystore::{Keystore, KeystoreError, SecretSlot, StateAnchor};
use wallet_core::SecretBytes;
use zeroize::Zeroizing;

use crate::context::{context, find_token};
use crate::error::HsmError;
use crate::uri::Pkcs11Uri;

/// Label of the key-encryption key on the token.
pub const KEK_LABEL: &str = "kura-kek";
/// Label (and id) of the identity key pair on the token.
pub const IDENTITY_LABEL: &str = "kura-identity";
/// `CKA_APPLICATION` of the state anchor (audit head, pinned policy): one
/// private data object whose *label* holds the anchor, as
/// `kura-state/v1/<hex of its 76 bytes>`. The label, because SoftHSM (and
/// the standard, for many tokens) keeps a data object's `CKA_VALUE`
/// read-only once created, while its label can be changed in one
/// `C_SetAttributeValue` — one write per anchor move, no object churn.
pub const STATE_APPLICATION: &[u8] = b"kura-state";
/// The prefix of the state object's label.
const STATE_LABEL_PREFIX: &str = "kura-state/v1/";
/// Label prefix of the per-session keys nonce ciphertexts are under.
const NONCE_KEY_PREFIX: &str = "kura-nonce-key-";
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
///   [`TakeOnceDir`], each under **its own AES key generated on the token**;
///   taking the nonces destroys that key object, so a ciphertext file
///   restored from a backup no longer decrypts (see the crate docs).
/// - The **state anchor** (audit head, pinned policy) is a private data
///   object on the token, changed only under the host lock that takes hold.
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
    serial: String,
    kek: ObjectHandle,
    identity_private: ObjectHandle,
    identity_public: IdentityPublicKey,
    state: ObjectHandle,
    nonces: TakeOnceDir,
    _context: Arc<Pkcs11>,
}

impl std::fmt::Debug for HsmKeystore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HsmKeystore")
            .field("token", &self.label)
            .field("serial", &self.serial)
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
    let key = (
        uri.module(),
        format!(
            "{label}\0{serial}",
            serial = uri.serial.as_deref().unwrap_or("")
        ),
    );
    let mut known = logins().lock().unwrap_or_else(|p| p.into_inner());
    match session.login(UserType::User, Some(pin)) {
        Ok(()) => {
            known.insert(key, pin_hash(pin));
            Ok(())
        }
        // Already logged in by this process: accept only the same PIN, and
        // nothing when the login was not Kura's (its PIN is unknown here).
        Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => match known.get(&key) {
            Some(h) if *h == pin_hash(pin) => Ok(()),
            Some(_) => Err(HsmError::WrongPin {
                label: label.clone(),
            }),
            None => Err(HsmError::ForeignLogin {
                label: label.clone(),
            }),
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

/// An open, logged-in session and the token's serial number.
struct Opened {
    ctx: Arc<Pkcs11>,
    session: Session,
    serial: String,
}

fn open_session(uri: &Pkcs11Uri, pin: &SecretString) -> Result<Opened, HsmError> {
    let ctx = context(&uri.module())?;
    let slot = find_token(&ctx, &uri.token, uri.serial.as_deref())?;
    let serial = ctx
        .get_token_info(slot)
        .map_err(HsmError::pkcs11("C_GetTokenInfo"))?
        .serial_number()
        .trim_end()
        .to_owned();
    let session = ctx
        .open_rw_session(slot)
        .map_err(HsmError::pkcs11("C_OpenSession"))?;
    login(&session, uri, pin)?;
    Ok(Opened {
        ctx,
        session,
        serial,
    })
}

/// The attributes Kura checks on its objects, as the token reports them.
#[derive(Default)]
struct Flags {
    class: Option<ObjectClass>,
    key_type: Option<KeyType>,
    token: Option<bool>,
    private: Option<bool>,
    sensitive: Option<bool>,
    extractable: Option<bool>,
    local: Option<bool>,
}

fn flags(session: &Session, object: ObjectHandle) -> Result<Flags, HsmError> {
    let wanted = [
        AttributeType::Class,
        AttributeType::KeyType,
        AttributeType::Token,
        AttributeType::Private,
        AttributeType::Sensitive,
        AttributeType::Extractable,
        AttributeType::Local,
    ];
    let mut f = Flags::default();
    for a in session
        .get_attributes(object, &wanted)
        .map_err(HsmError::pkcs11("C_GetAttributeValue"))?
    {
        match a {
            Attribute::Class(c) => f.class = Some(c),
            Attribute::KeyType(k) => f.key_type = Some(k),
            Attribute::Token(b) => f.token = Some(b),
            Attribute::Private(b) => f.private = Some(b),
            Attribute::Sensitive(b) => f.sensitive = Some(b),
            Attribute::Extractable(b) => f.extractable = Some(b),
            Attribute::Local(b) => f.local = Some(b),
            _ => {}
        }
    }
    Ok(f)
}

/// What one of Kura's keys must be.
#[derive(Clone, Copy)]
enum Expect {
    /// A secret key generated on the token, never readable.
    Secret(KeyType),
    /// A private key generated on the token, never readable.
    Private,
    /// The public half of the identity key.
    Public,
}

impl Expect {
    fn class(self) -> ObjectClass {
        match self {
            Expect::Secret(_) => ObjectClass::SECRET_KEY,
            Expect::Private => ObjectClass::PRIVATE_KEY,
            Expect::Public => ObjectClass::PUBLIC_KEY,
        }
    }

    /// Why `f` is not such an object, if it is not.
    fn mismatch(self, f: &Flags) -> Option<&'static str> {
        if f.class != Some(self.class()) {
            return Some("another object class");
        }
        if f.token != Some(true) {
            return Some("not a token object");
        }
        match self {
            Expect::Secret(_) | Expect::Private => {
                if let Expect::Secret(k) = self {
                    if f.key_type != Some(k) {
                        return Some("another key type");
                    }
                }
                if f.private != Some(true) {
                    return Some("public: readable and writable without the PIN");
                }
                if f.sensitive != Some(true) || f.extractable != Some(false) {
                    return Some("its value can be read or exported");
                }
                if f.local != Some(true) {
                    return Some("imported, not generated on the token");
                }
            }
            Expect::Public => {
                if f.key_type != Some(KeyType::EC) {
                    return Some("not an EC key");
                }
                if f.private != Some(true) {
                    return Some("public: replaceable without the PIN");
                }
            }
        }
        None
    }
}

/// The one object of kind `expect` labelled `label`. Every object with the
/// label is looked at: one that is not what Kura made (a public or
/// extractable decoy, an imported key) or a second one is refused.
fn find_exactly_one(
    session: &Session,
    token: &str,
    label: &str,
    expect: Expect,
) -> Result<Option<ObjectHandle>, HsmError> {
    let found = session
        .find_objects(&[Attribute::Label(label.as_bytes().to_vec())])
        .map_err(HsmError::pkcs11("C_FindObjects"))?;
    let unexpected = |reason: String| HsmError::UnexpectedObject {
        label: token.to_owned(),
        object: label.to_owned(),
        reason,
    };
    let mut ours = None;
    for object in found {
        let f = flags(session, object)?;
        // The identity key pair shares one label: each half is looked for
        // on its own, and the other half is not a decoy.
        let other_half = matches!(expect, Expect::Private | Expect::Public)
            && matches!(f.class, Some(c) if c == ObjectClass::PRIVATE_KEY || c == ObjectClass::PUBLIC_KEY)
            && f.class != Some(expect.class());
        if other_half {
            continue;
        }
        if let Some(reason) = expect.mismatch(&f) {
            return Err(unexpected(reason.to_owned()));
        }
        if ours.replace(object).is_some() {
            return Err(unexpected("there are two of them".to_owned()));
        }
    }
    Ok(ours)
}

fn kek_template() -> Vec<Attribute> {
    vec![
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(KeyType::AES),
        Attribute::Label(KEK_LABEL.into()),
    ]
}

/// A key made on the token for AES-GCM and nothing else, never readable,
/// never copied or changed.
fn aes_key_template(label: &str) -> Vec<Attribute> {
    vec![
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(KeyType::AES),
        Attribute::Label(label.as_bytes().to_vec()),
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
        Attribute::Verify(false),
        Attribute::Modifiable(false),
        Attribute::Copyable(false),
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
        let opened = open_session(uri, pin)?;
        let session = &opened.session;
        let any_kek = session
            .find_objects(&kek_template())
            .map_err(HsmError::pkcs11("C_FindObjects"))?;
        if !any_kek.is_empty() {
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
        session
            .generate_key(&Mechanism::AesKeyGen, &aes_key_template(KEK_LABEL))
            .map_err(full)?;
        let public = [
            Attribute::Token(true),
            // Private: a token holder without the PIN cannot destroy it.
            Attribute::Private(true),
            Attribute::Verify(true),
            Attribute::Encrypt(false),
            Attribute::Wrap(false),
            Attribute::Derive(false),
            Attribute::Modifiable(false),
            Attribute::Copyable(false),
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
            Attribute::Unwrap(false),
            Attribute::Modifiable(false),
            Attribute::Copyable(false),
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
        session
            .create_object(&[
                Attribute::Class(ObjectClass::DATA),
                Attribute::Token(true),
                Attribute::Private(true),
                Attribute::Modifiable(true),
                Attribute::Copyable(false),
                Attribute::Application(STATE_APPLICATION.to_vec()),
                Attribute::Label(state_label(&StateAnchor::NEW).into_bytes()),
                Attribute::Value(Vec::new()),
            ])
            .map_err(|e| match e {
                CkError::Pkcs11(RvError::DeviceMemory, _) => HsmError::TokenFull {
                    label: uri.token.clone(),
                },
                other => HsmError::pkcs11("C_CreateObject")(other),
            })?;
        Self::from_session(uri, opened, nonce_dir)
    }

    /// Opens a provisioned token: logs in once (a wrong PIN is reported, never
    /// retried) and finds Kura's keys.
    ///
    /// # Errors
    /// [`HsmError::WrongPin`], [`HsmError::TokenNotFound`],
    /// [`HsmError::ModuleNotFound`], [`HsmError::NotProvisioned`], …
    pub fn open(uri: &Pkcs11Uri, pin: &SecretString, nonce_dir: &Path) -> Result<Self, HsmError> {
        let opened = open_session(uri, pin)?;
        Self::from_session(uri, opened, nonce_dir)
    }

    /// Finds Kura's objects — each exactly once and exactly as Kura makes
    /// them — and runs the self-test.
    fn from_session(uri: &Pkcs11Uri, opened: Opened, nonce_dir: &Path) -> Result<Self, HsmError> {
        let Opened {
            ctx,
            session,
            serial,
        } = opened;
        let token = uri.token.as_str();
        let missing = |what| HsmError::NotProvisioned {
            label: uri.token.clone(),
            missing: what,
        };
        let kek = find_exactly_one(&session, token, KEK_LABEL, Expect::Secret(KeyType::AES))?
            .ok_or_else(|| missing("key-encryption key"))?;
        let identity_private = find_exactly_one(&session, token, IDENTITY_LABEL, Expect::Private)?
            .ok_or_else(|| missing("identity private key"))?;
        let public_handle = find_exactly_one(&session, token, IDENTITY_LABEL, Expect::Public)?
            .ok_or_else(|| missing("identity public key"))?;
        let state = find_state(&session, token)?
            .ok_or_else(|| missing("state anchor (audit head and pinned policy)"))?;
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
        let keystore = HsmKeystore {
            label: uri.token.clone(),
            serial,
            session: Mutex::new(session),
            kek,
            identity_private,
            identity_public,
            state,
            nonces,
            _context: ctx,
        };
        keystore.self_test()?;
        Ok(keystore)
    }

    /// Checks that the keys found work together: the KEK decrypts what it
    /// encrypts, and the identity private key signs for the public key
    /// found beside it (a swapped public key is caught here).
    fn self_test(&self) -> Result<(), HsmError> {
        let failed = |what| HsmError::SelfTest {
            label: self.label.clone(),
            what,
        };
        let mut challenge = [0u8; 32];
        self.session()
            .generate_random_slice(&mut challenge)
            .map_err(HsmError::pkcs11("C_GenerateRandom"))?;
        let slot = SecretSlot::for_share(
            wallet_core::SuiteId::Secp256k1Tr,
            wallet_core::GroupId::derive(
                wallet_core::SuiteId::Secp256k1Tr,
                b"kura/v1/token-self-test",
            ),
            "self-test".into(),
        );
        let ct = self.seal(self.kek, &slot, &challenge)?;
        match self.unseal(self.kek, &slot, &ct) {
            Ok(back) if back.expose() == challenge.as_slice() => {}
            _ => {
                return Err(failed(
                    "the key-encryption key does not decrypt what it encrypts",
                ))
            }
        }
        let mut message = b"kura/v1/token-self-test\0".to_vec();
        message.extend_from_slice(&challenge);
        let signature = self
            .sign_identity(&message)
            .map_err(|_| failed("the identity key does not sign"))?;
        self.identity_public
            .verify(&message, &signature)
            .map_err(|_| failed("the identity public key does not match its private key"))
    }

    /// The token's label.
    pub fn token_label(&self) -> &str {
        &self.label
    }

    /// The token's serial number. Record it (e.g. as `serial=` in the URI
    /// the signer keeps) so that another token with the same label is
    /// refused later.
    pub fn token_serial(&self) -> &str {
        &self.serial
    }

    fn session(&self) -> MutexGuard<'_, Session> {
        // No critical section leaves the session in a state a later caller
        // could misuse, so a poisoned lock is taken over.
        self.session.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Encrypts `plain` under `key` (the KEK, or a nonce key) with `slot`'s
    /// associated data.
    fn seal(
        &self,
        key: ObjectHandle,
        slot: &SecretSlot,
        plain: &[u8],
    ) -> Result<Vec<u8>, HsmError> {
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
            .encrypt(&Mechanism::AesGcm(params), key, plain)
            .map_err(HsmError::pkcs11("C_Encrypt"))?;
        let mut out = Vec::with_capacity(1 + IV_LEN + ct.len());
        out.push(CT_VERSION);
        out.extend_from_slice(&iv);
        out.extend_from_slice(&ct);
        Ok(out)
    }

    /// Decrypts a ciphertext of `slot` under `key`. Any failure — a flipped
    /// bit, another slot's ciphertext, another token's — is reported as
    /// tampering.
    fn unseal(
        &self,
        key: ObjectHandle,
        slot: &SecretSlot,
        ct: &[u8],
    ) -> Result<SecretBytes, KeystoreError> {
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
            .decrypt(&Mechanism::AesGcm(params), key, body)
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

    fn read_anchor(&self, session: &Session) -> Result<StateAnchor, KeystoreError> {
        let label = session
            .get_attributes(self.state, &[AttributeType::Label])
            .map_err(HsmError::pkcs11("C_GetAttributeValue(state)"))?
            .into_iter()
            .find_map(|a| match a {
                Attribute::Label(l) => Some(l),
                _ => None,
            })
            .unwrap_or_default();
        let tampered =
            || KeystoreError::Tampered(format!("state anchor on token {:?}", self.label));
        let hex_part = std::str::from_utf8(&label)
            .ok()
            .and_then(|l| l.strip_prefix(STATE_LABEL_PREFIX))
            .ok_or_else(tampered)?;
        StateAnchor::from_bytes(&hex::decode(hex_part).map_err(|_| tampered())?)
    }

    /// The nonce key labelled `label`: private token objects only, so a
    /// public decoy planted without the PIN never matches.
    fn nonce_key(&self, session: &Session, label: &str) -> Result<Option<ObjectHandle>, HsmError> {
        let found = session
            .find_objects(&[
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::KeyType(KeyType::AES),
                Attribute::Token(true),
                Attribute::Private(true),
                Attribute::Label(label.as_bytes().to_vec()),
            ])
            .map_err(HsmError::pkcs11("C_FindObjects"))?;
        match found.as_slice() {
            [] => Ok(None),
            [one] => Ok(Some(*one)),
            _ => Err(HsmError::UnexpectedObject {
                label: self.label.clone(),
                object: label.to_owned(),
                reason: "there are two of them".into(),
            }),
        }
    }
}

/// The state object's label for `anchor`.
fn state_label(anchor: &StateAnchor) -> String {
    format!("{STATE_LABEL_PREFIX}{}", hex::encode(anchor.to_bytes()))
}

/// The state object: the one private data object of application
/// [`STATE_APPLICATION`]; a public one (a decoy planted without the PIN) or
/// a second one is refused.
fn find_state(session: &Session, token: &str) -> Result<Option<ObjectHandle>, HsmError> {
    let found = session
        .find_objects(&[
            Attribute::Class(ObjectClass::DATA),
            Attribute::Application(STATE_APPLICATION.to_vec()),
        ])
        .map_err(HsmError::pkcs11("C_FindObjects"))?;
    let unexpected = |reason: &str| HsmError::UnexpectedObject {
        label: token.to_owned(),
        object: "kura-state".into(),
        reason: reason.to_owned(),
    };
    let mut ours = None;
    for object in found {
        let f = flags(session, object)?;
        if f.token != Some(true) || f.private != Some(true) {
            return Err(unexpected("public or not on the token"));
        }
        if ours.replace(object).is_some() {
            return Err(unexpected("there are two of them"));
        }
    }
    Ok(ours)
}

/// The label of the token key a nonce set is encrypted under.
fn nonce_key_label(slot: &SecretSlot) -> String {
    format!("{NONCE_KEY_PREFIX}{}", slot.name())
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
        let ct = self.seal(self.kek, slot, document.expose())?;
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
        self.unseal(self.kek, slot, &ct)
    }

    /// Generates a fresh AES key on the token for this nonce set, encrypts
    /// the nonces under it and writes the ciphertext to the nonce directory.
    fn put_nonces(&self, slot: &SecretSlot, document: &SecretBytes) -> Result<(), KeystoreError> {
        let label = nonce_key_label(slot);
        let file = format!("{}.gcm", slot.name());
        let key = {
            let session = self.session();
            if let Some(existing) = self.nonce_key(&session, &label)? {
                if self.nonces.contains(&file) {
                    return Err(KeystoreError::AlreadyExists(slot.to_string()));
                }
                // A key without its ciphertext: a crash between the two
                // steps below. It protects nothing; make room for the new one.
                session
                    .destroy_object(existing)
                    .map_err(HsmError::pkcs11("C_DestroyObject(orphan nonce key)"))?;
            }
            session
                .generate_key(&Mechanism::AesKeyGen, &aes_key_template(&label))
                .map_err(|e| match e {
                    CkError::Pkcs11(RvError::DeviceMemory, _) => HsmError::TokenFull {
                        label: self.label.clone(),
                    },
                    other => HsmError::pkcs11("C_GenerateKey(nonce key)")(other),
                })?
        };
        let written = self
            .seal(key, slot, document.expose())
            .map_err(KeystoreError::from)
            .and_then(|ct| self.nonces.put_new(&file, &ct));
        if let Err(e) = written {
            // No ciphertext: the key would only take room on the token.
            let _ = self.session().destroy_object(key);
            return Err(match e {
                KeystoreError::AlreadyExists(_) => KeystoreError::AlreadyExists(slot.to_string()),
                other => other,
            });
        }
        Ok(())
    }

    /// Takes the nonces: decrypts the file with the set's key, then destroys
    /// the key on the token — the irreversible step — and returns the
    /// nonces only if that destroy succeeded. A restored file is useless.
    fn take_nonces(&self, slot: &SecretSlot) -> Result<SecretBytes, KeystoreError> {
        let label = nonce_key_label(slot);
        self.nonces
            .take_with(&format!("{}.gcm", slot.name()), |ct| {
                let consumed = || KeystoreError::NoncesConsumed(slot.to_string());
                let key = {
                    let session = self.session();
                    self.nonce_key(&session, &label)?.ok_or_else(consumed)?
                };
                let opened = match ct {
                    Some(ct) => self.unseal(key, slot, &ct),
                    None => Err(consumed()),
                };
                // Spent whatever the file held: a tampered or missing file
                // loses this set, it never leaves it usable.
                self.session().destroy_object(key).map_err(|e| match e {
                    CkError::Pkcs11(RvError::ObjectHandleInvalid, _) => consumed(),
                    other => HsmError::pkcs11("C_DestroyObject(nonce key)")(other).into(),
                })?;
                opened
            })
    }

    fn discard_nonces(&self, slot: &SecretSlot) -> Result<(), KeystoreError> {
        let label = nonce_key_label(slot);
        self.nonces.locked(|| {
            let session = self.session();
            if let Some(key) = self.nonce_key(&session, &label)? {
                session
                    .destroy_object(key)
                    .map_err(HsmError::pkcs11("C_DestroyObject(nonce key)"))?;
            }
            Ok(())
        })?;
        self.nonces.remove(&format!("{}.gcm", slot.name()))
    }

    fn anchor(&self) -> Result<StateAnchor, KeystoreError> {
        let session = self.session();
        self.read_anchor(&session)
    }

    fn replace_anchor(
        &self,
        expected: &StateAnchor,
        next: &StateAnchor,
    ) -> Result<(), KeystoreError> {
        self.nonces.locked(|| {
            let session = self.session();
            let current = self.read_anchor(&session)?;
            if current != *expected {
                return Err(expected.moved(&current));
            }
            session
                .update_attributes(
                    self.state,
                    &[Attribute::Label(state_label(next).into_bytes())],
                )
                .map_err(HsmError::pkcs11("C_SetAttributeValue(state)"))?;
            // A token out of room can report success for a write it did not
            // keep (SoftHSM2 does on a full file system): read it back.
            if self.read_anchor(&session)? != *next {
                return Err(HsmError::TokenFull {
                    label: self.label.clone(),
                }
                .into());
            }
            Ok(())
        })
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
