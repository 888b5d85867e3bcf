//! Where a signer's secrets live.
//!
//! [`Keystore`] is what a signer needs from a secret store, whatever it is:
//! keep the key share and hand it back in zeroizing memory, keep round-1
//! nonces and hand each set back **at most once**, produce random bytes, sign
//! with the participant's identity key, and open messages sealed to it.
//!
//! Two implementations ship here — [`MemoryKeystore`] (tests, benchmarks) and
//! [`SoftwareKeystore`] (age-encrypted files under a passphrase); the
//! `hsm-bridge` crate adds one over PKCS#11 tokens.
//!
//! Every secret is stored under a [`SecretSlot`] naming its purpose, suite,
//! group, participant and (for nonces) signing session. Keystores bind the
//! slot to the ciphertext, so a secret copied to another slot fails to load.
//!
//! [`commit`] and [`sign`] run the FROST rounds with persisted nonces: the
//! nonces are stored encrypted after round 1 and taken (consumed durably)
//! before a share is computed in round 2.
//!
//! # State a disk writer cannot roll back
//!
//! Whoever can write a signer's files but does not know its PIN or
//! passphrase may restore old copies, delete or edit them. Three things a
//! signer remembers must survive that, so they live inside the keystore:
//!
//! - **take-once**: each nonce set is encrypted under its own key held in
//!   the keystore (a key object on a token, an entry of the software
//!   keystore's encrypted state); taking the nonces destroys that key, so a
//!   restored nonce file no longer decrypts;
//! - **the audit head** and **the pinned policy**: a [`StateAnchor`] that
//!   [`AuditLog`](crate::audit::AuditLog) moves with every append and checks
//!   before every decision, and that only the keystore's holder can change.

use std::fmt;

use frost_core::round1::{SigningCommitments, SigningNonces};
use frost_core::round2::SignatureShare;
use frost_core::SigningPackage;
use rand_chacha::ChaCha20Rng;
use rand_core::{OsRng, RngCore, SeedableRng};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::format::{self, DocumentBody, FormatError, GroupId};
use crate::group::{identifier_hex, GroupError, KeyShare, PublicGroup};
use crate::identity::{IdentityError, IdentityPublicKey, IdentitySignature, SealedMessage};
use crate::secret::SecretBytes;
use crate::signing::{self, Round1State, SignError};
use crate::suite::{KuraSuite, SuiteId};

mod anchor;
pub mod files;
mod memory;
mod software;

pub use anchor::{AuditHead, StateAnchor, ANCHOR_LEN};
pub use memory::MemoryKeystore;
pub use software::{SoftwareKeystore, WorkFactor};

/// A signing session: 32 random bytes naming one run of the two rounds.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId([u8; 32]);

impl SessionId {
    /// A fresh random session id.
    pub fn random() -> Self {
        let mut b = [0u8; 32];
        OsRng.fill_bytes(&mut b);
        SessionId(b)
    }

    /// A session id with the given bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        SessionId(bytes)
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionId({self})")
    }
}

impl std::str::FromStr for SessionId {
    type Err = FormatError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let v = hex::decode(s).map_err(|_| FormatError::Invalid {
            field: "session",
            reason: "not hex".into(),
        })?;
        let b: [u8; 32] = v.try_into().map_err(|_| FormatError::Invalid {
            field: "session",
            reason: "not 32 bytes".into(),
        })?;
        Ok(SessionId(b))
    }
}

impl Serialize for SessionId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for SessionId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// What a stored secret is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Purpose {
    /// A participant's key share.
    KeyShare,
    /// Round-1 nonces of one signing session.
    Nonces,
}

impl Purpose {
    /// The purpose's name in associated data and file names.
    pub const fn as_str(self) -> &'static str {
        match self {
            Purpose::KeyShare => "key-share",
            Purpose::Nonces => "nonces",
        }
    }
}

/// The name and binding of one stored secret.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SecretSlot {
    purpose: Purpose,
    suite: SuiteId,
    group: GroupId,
    participant: String,
    session: Option<SessionId>,
}

impl SecretSlot {
    /// The slot of `share`'s key package.
    pub fn key_share<C: KuraSuite>(share: &KeyShare<C>) -> Self {
        Self::for_share(
            C::SUITE,
            *share.group_id(),
            identifier_hex(share.identifier()),
        )
    }

    /// The slot of a key share by its parts.
    pub fn for_share(suite: SuiteId, group: GroupId, participant: String) -> Self {
        SecretSlot {
            purpose: Purpose::KeyShare,
            suite,
            group,
            participant,
            session: None,
        }
    }

    /// The slot where a new share for `group` (same group key, new
    /// verifying shares: a refresh) waits until it is activated. It is
    /// named by a digest of the whole public group, so each refresh has
    /// its own and the active share is never overwritten by staging.
    pub fn staged_share<C: KuraSuite>(group: &PublicGroup<C>, participant: &str) -> Self {
        let mut h = Sha256::new();
        h.update(b"kura/v1/staged-share\0");
        h.update(group.id().as_bytes());
        for (id, vs) in group.public_key_package().verifying_shares() {
            h.update(id.serialize());
            h.update(vs.serialize().unwrap_or_default());
        }
        Self::for_share(
            C::SUITE,
            GroupId::from_bytes(h.finalize().into()),
            participant.to_owned(),
        )
    }

    /// The slot of `share`'s nonces for `session`.
    pub fn nonces<C: KuraSuite>(share: &KeyShare<C>, session: &SessionId) -> Self {
        Self::for_nonces(
            C::SUITE,
            *share.group_id(),
            identifier_hex(share.identifier()),
            *session,
        )
    }

    /// The slot of a participant's nonces by its parts.
    pub fn for_nonces(
        suite: SuiteId,
        group: GroupId,
        participant: String,
        session: SessionId,
    ) -> Self {
        SecretSlot {
            purpose: Purpose::Nonces,
            suite,
            group,
            participant,
            session: Some(session),
        }
    }

    /// The slot's purpose.
    pub fn purpose(&self) -> Purpose {
        self.purpose
    }

    /// Associated data binding a ciphertext to this slot: format version,
    /// purpose, suite, group, participant and session.
    pub fn associated_data(&self) -> Vec<u8> {
        let mut ad = format!(
            "kura/v{}/slot\0{}\0{}\0{}\0{}\0",
            format::FORMAT_VERSION,
            self.purpose.as_str(),
            self.suite,
            self.group,
            self.participant
        )
        .into_bytes();
        if let Some(s) = &self.session {
            ad.extend_from_slice(s.to_string().as_bytes());
        }
        ad
    }

    /// A short, file-name-safe name for the slot: purpose and a hash of the
    /// associated data.
    pub fn name(&self) -> String {
        let digest = Sha256::digest(self.associated_data());
        format!(
            "{}-{}",
            self.purpose.as_str(),
            hex::encode(digest.get(..16).unwrap_or_default())
        )
    }
}

impl fmt::Display for SecretSlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} of participant …{} in group {}",
            self.purpose.as_str(),
            crate::group::tail(&self.participant, 8),
            self.group.short()
        )?;
        if let Some(s) = &self.session {
            write!(
                f,
                ", session {}…",
                hex::encode(s.0.get(..4).unwrap_or_default())
            )?;
        }
        Ok(())
    }
}

/// Why a keystore operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeystoreError {
    /// Nothing stored in the slot.
    #[error("no {0} in this keystore")]
    NotFound(String),
    /// The slot is already taken and may not be overwritten.
    #[error("{0} already exists in this keystore; refusing to overwrite it")]
    AlreadyExists(String),
    /// These nonces were already used or never made; the session cannot sign.
    #[error("nonces for {0} were already used or never stored; start a new signing session")]
    NoncesConsumed(String),
    /// A wrong passphrase or PIN.
    #[error("the keystore could not be unlocked: wrong passphrase or PIN")]
    WrongPassphrase,
    /// A ciphertext that fails authentication, or one moved from another slot.
    #[error("stored {0} failed authentication: it was tampered with or copied from another slot")]
    Tampered(String),
    /// An I/O failure.
    #[error("keystore I/O error on {path}: {source}")]
    Io {
        /// The file involved.
        path: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A stored document that does not parse.
    #[error("stored secret is malformed: {0}")]
    Format(#[from] FormatError),
    /// A key share that does not fit.
    #[error(transparent)]
    Group(#[from] GroupError),
    /// An identity failure.
    #[error(transparent)]
    Identity(#[from] IdentityError),
    /// A file or directory of the signer's state that others can write.
    #[error("{path} can be written by users other than its owner (mode {mode:o}); fix it with `chmod go-w` and check that nobody replaced its contents")]
    Insecure {
        /// The file or directory.
        path: String,
        /// Its permission bits.
        mode: u32,
    },
    /// The state anchor is not what the caller last saw: another process
    /// moved it, or it was changed behind this one's back.
    #[error("the keystore's state anchor moved (expected {expected}, found {found}): another process is using this keystore, or its state was changed; retry the operation")]
    AnchorMoved {
        /// What the caller expected.
        expected: String,
        /// What the keystore holds.
        found: String,
    },
    /// A backend-specific failure (e.g. a PKCS#11 error), kept as the
    /// backend's own error: see [`KeystoreError::backend_error`].
    #[error("{0}")]
    Backend(crate::error::Cause),
}

impl KeystoreError {
    /// The backend's own error behind [`KeystoreError::Backend`], if it is
    /// an `E` (for the PKCS#11 keystore, `hsm_bridge::HsmError`).
    pub fn backend_error<E: std::error::Error + 'static>(&self) -> Option<&E> {
        match self {
            KeystoreError::Backend(cause) => cause.downcast_ref::<E>(),
            _ => None,
        }
    }
}

/// What a signer needs from wherever its secrets live.
///
/// All methods take `&self`: implementations synchronise internally, and
/// [`Keystore::take_nonces`] must return a slot's nonces to at most one caller
/// ever, across threads and processes, and only after the removal is durable.
pub trait Keystore: Send + Sync {
    /// A short description for messages ("software keystore at …").
    fn describe(&self) -> String;

    /// Stores a key-share document, replacing an older one in the slot.
    ///
    /// # Errors
    /// [`KeystoreError`] when the write fails; the old value then stays.
    fn put_key_share(&self, slot: &SecretSlot, document: &SecretBytes)
        -> Result<(), KeystoreError>;

    /// Loads a key-share document into zeroizing memory.
    ///
    /// # Errors
    /// [`KeystoreError::NotFound`], [`KeystoreError::Tampered`], …
    fn key_share(&self, slot: &SecretSlot) -> Result<SecretBytes, KeystoreError>;

    /// Stores nonces for a session; the slot must be empty.
    ///
    /// # Errors
    /// [`KeystoreError::AlreadyExists`] when the slot is in use.
    fn put_nonces(&self, slot: &SecretSlot, document: &SecretBytes) -> Result<(), KeystoreError>;

    /// Takes a session's nonces: returns them once and durably forgets them.
    /// The forgetting must be a keystore operation that restoring files
    /// cannot undo (destroying a per-session key in the keystore).
    ///
    /// # Errors
    /// [`KeystoreError::NoncesConsumed`] for any later call.
    fn take_nonces(&self, slot: &SecretSlot) -> Result<SecretBytes, KeystoreError>;

    /// Destroys a session's nonces without returning them, durably; a slot
    /// with no nonces is not an error. Used when an approval is superseded.
    ///
    /// # Errors
    /// A backend or I/O failure; the nonces may then still exist.
    fn discard_nonces(&self, slot: &SecretSlot) -> Result<(), KeystoreError>;

    /// The signer state anchored in this keystore ([`StateAnchor::NEW`] for
    /// a keystore that never stored one).
    ///
    /// # Errors
    /// [`KeystoreError::Tampered`] for an anchor that does not parse or
    /// authenticate, or a backend failure.
    fn anchor(&self) -> Result<StateAnchor, KeystoreError>;

    /// Replaces the anchor with `next` if it is still `expected`, durably
    /// and atomically with respect to other processes using the keystore.
    ///
    /// # Errors
    /// [`KeystoreError::AnchorMoved`] when the anchor is not `expected`
    /// (nothing is written), or a backend failure.
    fn replace_anchor(
        &self,
        expected: &StateAnchor,
        next: &StateAnchor,
    ) -> Result<(), KeystoreError>;

    /// Fills `out` with random bytes from the keystore's RNG (a token's, or
    /// the OS's).
    ///
    /// # Errors
    /// A backend failure.
    fn fill_random(&self, out: &mut [u8]) -> Result<(), KeystoreError>;

    /// The participant's public identity key.
    ///
    /// # Errors
    /// A backend failure.
    fn identity_public_key(&self) -> Result<IdentityPublicKey, KeystoreError>;

    /// Signs `message` with the identity key.
    ///
    /// # Errors
    /// A backend failure.
    fn sign_identity(&self, message: &[u8]) -> Result<IdentitySignature, KeystoreError>;

    /// Opens a message sealed to this participant's identity key.
    ///
    /// # Errors
    /// [`KeystoreError::Identity`] when it does not open.
    fn open_sealed(
        &self,
        sealed: &SealedMessage,
        context: &[u8],
    ) -> Result<SecretBytes, KeystoreError>;
}

/// A shared keystore is a keystore: a service hands one `Arc` to its signer
/// and keeps another.
impl<K: Keystore + ?Sized> Keystore for std::sync::Arc<K> {
    fn describe(&self) -> String {
        (**self).describe()
    }
    fn put_key_share(
        &self,
        slot: &SecretSlot,
        document: &SecretBytes,
    ) -> Result<(), KeystoreError> {
        (**self).put_key_share(slot, document)
    }
    fn key_share(&self, slot: &SecretSlot) -> Result<SecretBytes, KeystoreError> {
        (**self).key_share(slot)
    }
    fn put_nonces(&self, slot: &SecretSlot, document: &SecretBytes) -> Result<(), KeystoreError> {
        (**self).put_nonces(slot, document)
    }
    fn take_nonces(&self, slot: &SecretSlot) -> Result<SecretBytes, KeystoreError> {
        (**self).take_nonces(slot)
    }
    fn discard_nonces(&self, slot: &SecretSlot) -> Result<(), KeystoreError> {
        (**self).discard_nonces(slot)
    }
    fn anchor(&self) -> Result<StateAnchor, KeystoreError> {
        (**self).anchor()
    }
    fn replace_anchor(
        &self,
        expected: &StateAnchor,
        next: &StateAnchor,
    ) -> Result<(), KeystoreError> {
        (**self).replace_anchor(expected, next)
    }
    fn fill_random(&self, out: &mut [u8]) -> Result<(), KeystoreError> {
        (**self).fill_random(out)
    }
    fn identity_public_key(&self) -> Result<IdentityPublicKey, KeystoreError> {
        (**self).identity_public_key()
    }
    fn sign_identity(&self, message: &[u8]) -> Result<IdentitySignature, KeystoreError> {
        (**self).sign_identity(message)
    }
    fn open_sealed(
        &self,
        sealed: &SealedMessage,
        context: &[u8],
    ) -> Result<SecretBytes, KeystoreError> {
        (**self).open_sealed(sealed, context)
    }
}

/// An RNG for nonce generation: ChaCha20 keyed with SHA-256 of 32 bytes from
/// the keystore (a token's RNG) and 32 bytes from the OS, so that neither
/// source alone decides the nonces. frost further hedges nonces with the
/// signing share.
///
/// # Errors
/// The keystore's RNG failure.
pub fn nonce_rng(keystore: &dyn Keystore) -> Result<ChaCha20Rng, KeystoreError> {
    let mut ks = Zeroizing::new([0u8; 32]);
    keystore.fill_random(ks.as_mut_slice())?;
    let mut os = Zeroizing::new([0u8; 32]);
    OsRng.fill_bytes(os.as_mut_slice());
    let mut h = Sha256::new();
    h.update(b"kura/v1/nonce-rng\0");
    h.update(ks.as_slice());
    h.update(os.as_slice());
    let mut seed = Zeroizing::new(<[u8; 32]>::from(h.finalize()));
    let rng = ChaCha20Rng::from_seed(*seed);
    zeroize::Zeroize::zeroize(&mut *seed);
    Ok(rng)
}

/// Installs the policy with `digest` as the one in force: pins it in the
/// keystore's [`StateAnchor`]. Only the keystore's holder can do this (it
/// needs the unlocked keystore); a policy file whose digest differs from the
/// pinned one makes the signer refuse everything. Returns the digest pinned
/// before, if any.
///
/// # Errors
/// A backend failure, or [`KeystoreError::AnchorMoved`] if another process
/// kept moving the anchor.
pub fn pin_policy(
    keystore: &dyn Keystore,
    digest: crate::digest::PolicyDigest,
) -> Result<Option<crate::digest::PolicyDigest>, KeystoreError> {
    let mut last = None;
    // The anchor also moves with audit appends: retry a few times.
    for _ in 0..8 {
        let current = keystore.anchor()?;
        match keystore.replace_anchor(&current, &current.with_policy(digest.to_bytes())) {
            Ok(()) => return Ok(current.policy.map(crate::digest::PolicyDigest::from_bytes)),
            Err(e @ KeystoreError::AnchorMoved { .. }) => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        KeystoreError::Backend(crate::error::Cause::message("the state anchor kept moving"))
    }))
}

/// Stores `share` in `keystore`.
///
/// # Errors
/// As [`Keystore::put_key_share`].
pub fn put_share<C: KuraSuite>(
    keystore: &dyn Keystore,
    share: &KeyShare<C>,
) -> Result<(), KeystoreError> {
    keystore.put_key_share(&SecretSlot::key_share(share), &share.to_secret_document()?)
}

/// What a staged slot holds once its share is active (nothing to load).
pub const STAGED_TOMBSTONE: &[u8] = b"activated";

/// Loads the key share of `participant` in `group`.
///
/// # Errors
/// As [`Keystore::key_share`], or a document that does not parse or fit.
pub fn load_share<C: KuraSuite>(
    keystore: &dyn Keystore,
    group: &PublicGroup<C>,
    participant: &frost_core::Identifier<C>,
) -> Result<KeyShare<C>, KeystoreError> {
    let participant = crate::group::identifier_hex(participant);
    let participant = participant.as_str();
    let slot = SecretSlot::for_share(C::SUITE, *group.id(), participant.to_owned());
    let main = keystore.key_share(&slot).and_then(|doc| {
        let share = KeyShare::<C>::from_secret_document(doc.expose())?;
        share.check_member_of(group)?;
        Ok(share)
    });
    match main {
        Ok(share) => Ok(share),
        Err(first) => {
            // A share change (refresh) switches the group file first and
            // the share slot second; a crash in between leaves the new
            // share only in its staged slot. Use it, and finish the switch.
            let staged = SecretSlot::staged_share(group, participant);
            let Ok(doc) = keystore.key_share(&staged) else {
                return Err(first);
            };
            // A tombstone, or a staged share of another group state: the
            // main slot's error is the one that explains the problem.
            let Ok(share) = KeyShare::<C>::from_secret_document(doc.expose()) else {
                return Err(first);
            };
            if share.check_member_of(group).is_err() {
                return Err(first);
            }
            keystore.put_key_share(&slot, &doc)?;
            keystore.put_key_share(&staged, &SecretBytes::new(STAGED_TOMBSTONE.to_vec()))?;
            Ok(share)
        }
    }
}

/// The persisted round-1 state (secret).
#[derive(Serialize, Deserialize)]
#[serde(bound = "C: KuraSuite", deny_unknown_fields)]
struct NoncesBody<C: KuraSuite> {
    session: SessionId,
    participant: frost_core::Identifier<C>,
    nonces: SigningNonces<C>,
}

impl<C: KuraSuite> DocumentBody for NoncesBody<C> {
    const KIND: &'static str = "round1-nonces";
    fn suite() -> SuiteId {
        C::SUITE
    }
}

/// Why a signer with persisted nonces did not produce a share.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoredSignError {
    /// The package was refused before any nonce was touched.
    #[error(transparent)]
    Refused(#[from] SignError),
    /// The keystore failed (nonces already used, tampered, …).
    #[error(transparent)]
    Keystore(#[from] KeystoreError),
}

/// Round 1 with persisted nonces: draws nonces from [`nonce_rng`], stores
/// them encrypted under `session`, and returns the public commitments.
///
/// # Errors
/// A keystore failure, or [`KeystoreError::AlreadyExists`] when the session
/// already has nonces.
pub fn commit<C: KuraSuite>(
    keystore: &dyn Keystore,
    share: &KeyShare<C>,
    session: &SessionId,
) -> Result<SigningCommitments<C>, KeystoreError> {
    let mut rng = nonce_rng(keystore)?;
    let (state, commitments) = signing::commit(share, &mut rng);
    let body = NoncesBody {
        session: *session,
        participant: *share.identifier(),
        nonces: state.nonces().clone(),
    };
    let doc = SecretBytes::new(format::encode(share.group_id(), &body)?);
    keystore.put_nonces(&SecretSlot::nonces(share, session), &doc)?;
    Ok(commitments)
}

/// Round 2 with persisted nonces: checks the package against the message
/// this signer computed and its own commitments *before* touching the
/// nonces, then takes them (once, durably) and computes the share.
///
/// # Errors
/// [`StoredSignError::Refused`] for a refused package (the nonces stay
/// available), [`StoredSignError::Keystore`] when they were already taken.
pub fn sign<C: KuraSuite>(
    keystore: &dyn Keystore,
    share: &KeyShare<C>,
    group: &PublicGroup<C>,
    session: &SessionId,
    package: &SigningPackage<C>,
    expected_message: &[u8],
    own_commitments: &SigningCommitments<C>,
) -> Result<SignatureShare<C>, StoredSignError> {
    signing::check_package(share, group, package, expected_message, own_commitments)?;
    let slot = SecretSlot::nonces(share, session);
    let doc = keystore.take_nonces(&slot)?;
    let body = format::decode_for_group::<NoncesBody<C>>(doc.expose(), share.group_id())
        .map_err(KeystoreError::from)?;
    if body.session != *session || body.participant != *share.identifier() {
        return Err(KeystoreError::Tampered(slot.to_string()).into());
    }
    // Rebuild the nonces from their scalars so the commitments compared are
    // the ones these nonces really have, not a stored field beside them.
    let nonces = SigningNonces::<C>::from_nonces(*body.nonces.hiding(), *body.nonces.binding());
    if nonces.commitments() != own_commitments {
        return Err(SignError::CommitmentChanged.into());
    }
    let state = Round1State::from_nonces(body.participant, nonces);
    Ok(signing::sign(
        share,
        group,
        package,
        expected_message,
        state,
    )?)
}
