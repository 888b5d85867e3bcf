//! The documents of a withdrawal, each signed by its author's identity key
//! over canonical bytes (see [`crate::format::canonical_bytes`]).
//!
//! | kind | author | says |
//! |---|---|---|
//! | `withdrawal-request` | requester | "spend this PSBT", with id, times and memo |
//! | `withdrawal-approval` | signer | "I computed these sighashes for that request, my policy (digest) allows it, here are my round-1 commitments, one per input" |
//! | `withdrawal-packages` | coordinator (unsigned) | the approvals used and one signing package per input |
//! | `withdrawal-shares` | signer | "here are my signature shares, one per input" |

use frost_core::round1::SigningCommitments;
use frost_core::round2::SignatureShare;
use frost_core::Identifier;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::digest::{PolicyDigest, RequestDigest, SigningDigest};
use crate::display::TextError;
use crate::format::{self, DocumentBody, FormatError, GroupId};
use crate::identity::{IdentityPublicKey, IdentitySignature};
use crate::keystore::{Keystore, KeystoreError, SessionId};
use crate::messages::PackageMessage;
use crate::suite::{Secp256k1Tr, SuiteId};

/// A document body signed by an identity key: `signature` covers
/// [`format::canonical_bytes`] of `body` in the named group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Signed<T> {
    /// The signed content.
    pub body: T,
    /// Who signed it.
    pub signer: IdentityPublicKey,
    /// The signature.
    pub signature: IdentitySignature,
}

/// A signature that does not verify, or a document of the wrong signer.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("the {kind} document's identity signature does not verify")]
pub struct BadSignature {
    /// The document kind.
    pub kind: &'static str,
}

impl<T: DocumentBody> Signed<T> {
    /// Signs `body` with the keystore's identity key.
    ///
    /// # Errors
    /// A keystore failure.
    pub fn sign(group: &GroupId, body: T, keystore: &dyn Keystore) -> Result<Self, KeystoreError> {
        let bytes = format::canonical_bytes(group, &body)?;
        Ok(Signed {
            signer: keystore.identity_public_key()?,
            signature: keystore.sign_identity(&bytes)?,
            body,
        })
    }

    /// Checks the signature (by `self.signer`) over the body in `group`.
    ///
    /// # Errors
    /// [`BadSignature`].
    pub fn verify(&self, group: &GroupId) -> Result<&T, BadSignature> {
        let bad = BadSignature { kind: T::KIND };
        let bytes = format::canonical_bytes(group, &self.body).map_err(|_| bad.clone())?;
        self.signer
            .verify(&bytes, &self.signature)
            .map_err(|_| bad)?;
        Ok(&self.body)
    }

    /// SHA-256 of the signed canonical bytes (for a request, see
    /// [`Signed::request_digest`]).
    ///
    /// # Errors
    /// Only on an internal serialization failure.
    pub fn digest(&self, group: &GroupId) -> Result<[u8; 32], FormatError> {
        Ok(Sha256::digest(format::canonical_bytes(group, &self.body)?).into())
    }
}

impl Signed<WithdrawalRequest> {
    /// The request's digest: what approvals, packages, shares and audit
    /// entries name it by.
    ///
    /// # Errors
    /// Only on an internal serialization failure.
    pub fn request_digest(&self, group: &GroupId) -> Result<RequestDigest, FormatError> {
        self.digest(group).map(RequestDigest::from_bytes)
    }
}

impl Signed<MessageRequest> {
    /// The request's digest, as for a withdrawal request.
    ///
    /// # Errors
    /// Only on an internal serialization failure.
    pub fn request_digest(&self, group: &GroupId) -> Result<RequestDigest, FormatError> {
        self.digest(group).map(RequestDigest::from_bytes)
    }
}

impl Clone for BadSignature {
    fn clone(&self) -> Self {
        BadSignature { kind: self.kind }
    }
}

/// A request's id: unique per requester, honoured once by each signer.
///
/// 1 to [`MAX_REQUEST_ID_LEN`](crate::display::MAX_REQUEST_ID_LEN) characters
/// of `A–Z a–z 0–9 . _ : / -` ([`crate::display::check_request_id`]), so it
/// can be shown and used in file names as it is.
///
/// ```
/// use wallet_core::withdrawal::request::RequestId;
///
/// let id = RequestId::new("wd-2026-12-01/0042")?;
/// assert_eq!(id.as_str(), "wd-2026-12-01/0042");
/// assert!(RequestId::new("wd 42\u{1b}[2J").is_err());
/// # Ok::<(), wallet_core::display::TextError>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct RequestId(String);

impl RequestId {
    /// Checks `id` and wraps it.
    ///
    /// # Errors
    /// [`TextError::RequestId`].
    pub fn new(id: impl Into<String>) -> Result<Self, TextError> {
        let id = id.into();
        crate::display::check_request_id(&id)?;
        Ok(RequestId(id))
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::fmt::Debug for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RequestId({})", self.0)
    }
}

impl std::str::FromStr for RequestId {
    type Err = TextError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RequestId::new(s)
    }
}

impl<'de> Deserialize<'de> for RequestId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let id = String::deserialize(d)?;
        RequestId::new(id).map_err(serde::de::Error::custom)
    }
}

impl<T: DocumentBody + DeserializeOwned> DocumentBody for Signed<T> {
    const KIND: &'static str = T::KIND;
    fn suite() -> SuiteId {
        T::suite()
    }
}

/// A request to spend a PSBT, made by an authorised requester.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WithdrawalRequest {
    /// Unique per requester; a signer signs each id at most once.
    pub request_id: RequestId,
    /// The requester's identity key (must be in the signer's policy).
    pub requester: IdentityPublicKey,
    /// Unix seconds when made.
    pub created_at: u64,
    /// Unix seconds after which signers refuse it.
    pub expires_at: u64,
    /// A note for the people reviewing it (shown through
    /// [`crate::display::inert`], never trusted; at most
    /// [`crate::display::MAX_MEMO_CHARS`] characters).
    #[serde(deserialize_with = "crate::display::memo")]
    pub memo: String,
    /// The PSBT, base64.
    pub psbt: String,
}

impl WithdrawalRequest {
    /// A request by `requester` to spend `psbt`, made at `created_at` (Unix
    /// seconds) and valid for `lifetime_secs`; sign it with [`Signed::sign`].
    ///
    /// # Errors
    /// [`TextError::MemoTooLong`] for a memo over
    /// [`MAX_MEMO_CHARS`](crate::display::MAX_MEMO_CHARS) characters.
    pub fn new(
        request_id: RequestId,
        requester: IdentityPublicKey,
        psbt: &bitcoin::psbt::Psbt,
        created_at: u64,
        lifetime_secs: u64,
        memo: impl Into<String>,
    ) -> Result<Self, TextError> {
        let memo = memo.into();
        crate::display::check_memo(&memo)?;
        Ok(WithdrawalRequest {
            request_id,
            requester,
            created_at,
            expires_at: created_at.saturating_add(lifetime_secs),
            memo,
            psbt: psbt.to_string(),
        })
    }

    /// The PSBT, parsed.
    ///
    /// # Errors
    /// As [`parse_psbt`](super::review::parse_psbt): not base64, not a PSBT, or too large.
    pub fn parsed_psbt(&self) -> Result<bitcoin::psbt::Psbt, super::review::ReviewError> {
        super::review::parse_psbt(&self.psbt)
    }
}

impl DocumentBody for WithdrawalRequest {
    const KIND: &'static str = "withdrawal-request";
    fn suite() -> SuiteId {
        SuiteId::Secp256k1Tr
    }
}

/// The BIP340 tag under which raw messages are signed.
pub const RAW_MESSAGE_TAG: &[u8] = b"kura/raw-message";

/// What the group actually signs for a raw-message request: the BIP340
/// tagged hash `SHA256(SHA256(tag) ‖ SHA256(tag) ‖ message)` with tag
/// [`RAW_MESSAGE_TAG`], never the requester's bytes themselves.
///
/// A BIP341 transaction sighash is a tagged hash under the tag `TapSighash`,
/// so a raw-message signature is a signature on a transaction only if
/// SHA-256 has a collision: a requester allowed raw messages gets signatures
/// that verify (BIP340, under the group's output key) for this digest alone
/// — never a spend, whatever 32 bytes it sends. A verifier of a raw-message
/// signature computes the same digest from the message.
pub fn raw_message_digest(message: &[u8]) -> SigningDigest {
    let tag = Sha256::digest(RAW_MESSAGE_TAG);
    let mut h = Sha256::new();
    h.update(tag);
    h.update(tag);
    h.update(message);
    SigningDigest::from_bytes(h.finalize().into())
}

/// A request to sign a raw (non-Bitcoin) message with the group key — the
/// generic use of the library. Signers refuse it unless their policy allows
/// raw messages from the requester (off by default). What is signed is
/// [`raw_message_digest`] of `message`, domain-separated from every Bitcoin
/// sighash.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MessageRequest {
    /// Unique per requester; a signer signs each id at most once.
    pub request_id: RequestId,
    /// The requester's identity key.
    pub requester: IdentityPublicKey,
    /// Unix seconds when made.
    pub created_at: u64,
    /// Unix seconds after which signers refuse it.
    pub expires_at: u64,
    /// A note for the people reviewing it (bounded like a withdrawal's).
    #[serde(deserialize_with = "crate::display::memo")]
    pub memo: String,
    /// The message, hex.
    #[serde(with = "crate::format::hex_bytes")]
    pub message: Vec<u8>,
}

impl DocumentBody for MessageRequest {
    const KIND: &'static str = "message-request";
    fn suite() -> SuiteId {
        SuiteId::Secp256k1Tr
    }
}

/// A signer's approval of a request: what it computed, under which policy,
/// and its round-1 commitments (one per input).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Approval {
    /// The request's id.
    pub request_id: RequestId,
    /// The signed request's digest.
    pub request_digest: RequestDigest,
    /// The approving participant.
    pub participant: Identifier<Secp256k1Tr>,
    /// Each input's sighash (or the raw message's digest), as this signer
    /// computed it.
    pub sighashes: Vec<SigningDigest>,
    /// The digest of the policy that allowed it.
    pub policy_digest: PolicyDigest,
    /// This signer's nonce session (per input: [`SessionId::for_input`]).
    pub session: SessionId,
    /// Round-1 commitments, one per input.
    pub commitments: Vec<SigningCommitments<Secp256k1Tr>>,
}

impl DocumentBody for Approval {
    const KIND: &'static str = "withdrawal-approval";
    fn suite() -> SuiteId {
        SuiteId::Secp256k1Tr
    }
}

/// The coordinator's signing packages for a request: the approvals it used
/// and one package per input. Signers check every part of it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WithdrawalPackages {
    /// The signed request's digest.
    pub request_digest: RequestDigest,
    /// The signed approvals whose commitments the packages use.
    pub approvals: Vec<Signed<Approval>>,
    /// One signing package per input, in input order.
    pub packages: Vec<PackageMessage<Secp256k1Tr>>,
}

impl DocumentBody for WithdrawalPackages {
    const KIND: &'static str = "withdrawal-packages";
    fn suite() -> SuiteId {
        SuiteId::Secp256k1Tr
    }
}

/// A signer's signature shares for a request, one per input.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WithdrawalShares {
    /// The signed request's digest.
    pub request_digest: RequestDigest,
    /// The signing participant.
    pub participant: Identifier<Secp256k1Tr>,
    /// One share per input.
    pub shares: Vec<SignatureShare<Secp256k1Tr>>,
}

impl DocumentBody for WithdrawalShares {
    const KIND: &'static str = "withdrawal-shares";
    fn suite() -> SuiteId {
        SuiteId::Secp256k1Tr
    }
}

impl SessionId {
    /// The nonce session of input `index` within this session.
    pub fn for_input(&self, index: usize) -> SessionId {
        let mut h = Sha256::new();
        h.update(b"kura/v1/input-session\0");
        h.update(self.to_string().as_bytes());
        h.update((index as u64).to_be_bytes());
        SessionId::from_bytes(h.finalize().into())
    }
}
