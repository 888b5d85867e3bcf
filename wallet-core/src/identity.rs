//! Participant identity keys: P-256 ECDSA, the algorithm PKCS#11 tokens
//! commonly offer, so a token-held identity and a software one look the same
//! to everyone who verifies them. Verification is pure software (ring's
//! P-256; signing in software is RustCrypto's `p256`, deterministic per
//! RFC 6979, so Kura's known-answer vectors regenerate byte for byte).
//!
//! Signatures are ECDSA over SHA-256 of the message, encoded as 64 bytes
//! `r ‖ s` with low `s` (high-`s` signatures are refused, so a signature has
//! one encoding). Messages are always a domain-separated canonical encoding
//! (see [`crate::format::canonical_bytes`]).
//!
//! This module also seals messages *to* an identity key (P-256 ECDH, HKDF-SHA256,
//! ChaCha20-Poly1305), for DKG round-2 shares that a courier must not read.

use std::fmt;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use hkdf::Hkdf;
use p256::ecdsa::signature::Signer;
use p256::elliptic_curve::sec1::ToEncodedPoint;
use rand_core::{CryptoRng, RngCore};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::secret::SecretBytes;

/// A participant's public identity key (SEC1 compressed P-256 point).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct IdentityPublicKey(p256::PublicKey);

/// An identity signature: 64 bytes `r ‖ s`, low `s`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct IdentitySignature(p256::ecdsa::Signature);

/// Why an identity operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// Bytes that are not a P-256 point.
    #[error("not a valid P-256 identity public key")]
    InvalidPublicKey,
    /// Bytes that are not a 64-byte low-S signature.
    #[error("not a valid identity signature (need 64 bytes r||s with low s)")]
    InvalidSignature,
    /// A signature that does not verify.
    #[error("identity signature does not verify for this key and message")]
    BadSignature,
    /// A sealed message that does not open.
    #[error("sealed message could not be opened: it was tampered with or sealed to another key")]
    SealOpen,
}

impl IdentityPublicKey {
    /// Parses a SEC1 (compressed or uncompressed) P-256 point.
    ///
    /// # Errors
    /// [`IdentityError::InvalidPublicKey`] for anything else, the identity included.
    pub fn from_sec1(bytes: &[u8]) -> Result<Self, IdentityError> {
        p256::PublicKey::from_sec1_bytes(bytes)
            .map(IdentityPublicKey)
            .map_err(|_| IdentityError::InvalidPublicKey)
    }

    /// The 33-byte compressed encoding.
    pub fn to_sec1(&self) -> Vec<u8> {
        self.0.to_encoded_point(true).as_bytes().to_vec()
    }

    /// The 65-byte uncompressed encoding (`04 ‖ x ‖ y`), as PKCS#11 ECDH wants it.
    pub fn to_sec1_uncompressed(&self) -> Vec<u8> {
        self.0.to_encoded_point(false).as_bytes().to_vec()
    }

    /// Verifies `signature` over `message`.
    ///
    /// # Errors
    /// [`IdentityError::BadSignature`] when it does not verify.
    pub fn verify(
        &self,
        message: &[u8],
        signature: &IdentitySignature,
    ) -> Result<(), IdentityError> {
        // ring's P-256 verification (about 7× faster here than RustCrypto's,
        // see BENCHMARKS.md). The signature's low-s form is this type's
        // invariant, checked where it was parsed or made.
        let key = self.0.to_encoded_point(false);
        ring::signature::UnparsedPublicKey::new(
            &ring::signature::ECDSA_P256_SHA256_FIXED,
            key.as_bytes(),
        )
        .verify(message, &signature.to_bytes())
        .map_err(|_| IdentityError::BadSignature)
    }

    /// Seals `plaintext` so that only the holder of this identity's secret
    /// key can open it. `context` is bound as associated data.
    ///
    /// # Errors
    /// Does not fail for valid keys; the `Result` guards the AEAD call.
    pub fn seal<R: RngCore + CryptoRng>(
        &self,
        plaintext: &[u8],
        context: &[u8],
        rng: &mut R,
    ) -> Result<SealedMessage, IdentityError> {
        let ephemeral = p256::ecdh::EphemeralSecret::random(rng);
        let ephemeral_pk = p256::PublicKey::from(&ephemeral).to_encoded_point(true);
        let shared = ephemeral.diffie_hellman(&self.0);
        let key = seal_key(
            shared.raw_secret_bytes(),
            ephemeral_pk.as_bytes(),
            &self.to_sec1(),
        )?;
        let ciphertext = ChaCha20Poly1305::new(&Key::from(*key))
            .encrypt(
                &Nonce::default(),
                Payload {
                    msg: plaintext,
                    aad: context,
                },
            )
            .map_err(|_| IdentityError::SealOpen)?;
        Ok(SealedMessage {
            ephemeral: ephemeral_pk.as_bytes().to_vec(),
            ciphertext,
        })
    }
}

/// Derives the one-time AEAD key of a sealed message. Each key is used for
/// exactly one message (the ephemeral key is fresh), so the zero nonce is safe.
fn seal_key(
    shared: &[u8],
    ephemeral: &[u8],
    recipient: &[u8],
) -> Result<Zeroizing<[u8; 32]>, IdentityError> {
    let mut info = b"kura/v1/seal\0".to_vec();
    info.extend_from_slice(ephemeral);
    info.extend_from_slice(recipient);
    let mut key = Zeroizing::new([0u8; 32]);
    Hkdf::<Sha256>::new(None, shared)
        .expand(&info, key.as_mut_slice())
        .map_err(|_| IdentityError::SealOpen)?;
    Ok(key)
}

/// Opens a sealed message given the raw ECDH shared secret with its
/// ephemeral key. Keystores call this after computing the ECDH with their
/// identity secret (in software or on a token).
///
/// # Errors
/// [`IdentityError::SealOpen`] when the ciphertext or context was altered or
/// the message was sealed to another key.
pub fn open_with_shared_secret(
    sealed: &SealedMessage,
    shared_secret: &[u8],
    recipient: &IdentityPublicKey,
    context: &[u8],
) -> Result<SecretBytes, IdentityError> {
    let key = seal_key(shared_secret, &sealed.ephemeral, &recipient.to_sec1())?;
    ChaCha20Poly1305::new(&Key::from(*key))
        .decrypt(
            &Nonce::default(),
            Payload {
                msg: &sealed.ciphertext,
                aad: context,
            },
        )
        .map(SecretBytes::new)
        .map_err(|_| IdentityError::SealOpen)
}

/// A message sealed to an identity key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SealedMessage {
    /// The sender's ephemeral P-256 public key (compressed).
    #[serde(with = "crate::format::hex_bytes")]
    pub ephemeral: Vec<u8>,
    /// ChaCha20-Poly1305 ciphertext and tag.
    #[serde(with = "crate::format::hex_bytes")]
    pub ciphertext: Vec<u8>,
}

impl SealedMessage {
    /// The sender's ephemeral public key.
    ///
    /// # Errors
    /// [`IdentityError::InvalidPublicKey`] when the field is not a point.
    pub fn ephemeral_key(&self) -> Result<IdentityPublicKey, IdentityError> {
        IdentityPublicKey::from_sec1(&self.ephemeral)
    }
}

impl fmt::Display for IdentityPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.to_sec1()))
    }
}

impl fmt::Debug for IdentityPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IdentityPublicKey({self})")
    }
}

impl Serialize for IdentityPublicKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for IdentityPublicKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let bytes = hex::decode(s).map_err(serde::de::Error::custom)?;
        IdentityPublicKey::from_sec1(&bytes).map_err(serde::de::Error::custom)
    }
}

impl IdentitySignature {
    /// Parses 64 bytes `r ‖ s`, refusing high `s`.
    ///
    /// # Errors
    /// [`IdentityError::InvalidSignature`] otherwise.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, IdentityError> {
        let sig = p256::ecdsa::Signature::from_slice(bytes)
            .map_err(|_| IdentityError::InvalidSignature)?;
        if sig.normalize_s().is_some() {
            return Err(IdentityError::InvalidSignature);
        }
        Ok(IdentitySignature(sig))
    }

    /// Builds a signature from a token's raw ECDSA output, normalising `s`.
    ///
    /// # Errors
    /// [`IdentityError::InvalidSignature`] for bytes that are not `r ‖ s`.
    pub fn from_raw_normalizing(bytes: &[u8]) -> Result<Self, IdentityError> {
        let sig = p256::ecdsa::Signature::from_slice(bytes)
            .map_err(|_| IdentityError::InvalidSignature)?;
        Ok(IdentitySignature(sig.normalize_s().unwrap_or(sig)))
    }

    /// The 64-byte encoding.
    pub fn to_bytes(&self) -> [u8; 64] {
        self.0.to_bytes().into()
    }
}

impl fmt::Debug for IdentitySignature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IdentitySignature({})", hex::encode(self.to_bytes()))
    }
}

impl Serialize for IdentitySignature {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(self.to_bytes()))
    }
}

impl<'de> Deserialize<'de> for IdentitySignature {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let bytes = hex::decode(s).map_err(serde::de::Error::custom)?;
        IdentitySignature::from_bytes(&bytes).map_err(serde::de::Error::custom)
    }
}

/// A software identity key prepared for signing with ring's P-256 (about
/// ten times faster here than RustCrypto's deterministic signing): the
/// nonce is random, from the system's generator, so two signatures of one
/// message differ. Both verify alike.
pub struct PreparedIdentity {
    key: ring::signature::EcdsaKeyPair,
    rng: ring::rand::SystemRandom,
}

impl fmt::Debug for PreparedIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PreparedIdentity(<redacted>)")
    }
}

impl PreparedIdentity {
    /// Signs `message` (ECDSA P-256 over SHA-256), `s` made low.
    ///
    /// # Errors
    /// [`IdentityError::InvalidSignature`] if the system's random
    /// generator fails.
    pub fn sign(&self, message: &[u8]) -> Result<IdentitySignature, IdentityError> {
        let signature = self
            .key
            .sign(&self.rng, message)
            .map_err(|_| IdentityError::InvalidSignature)?;
        IdentitySignature::from_raw_normalizing(signature.as_ref())
    }
}

/// A software identity key pair. The secret scalar zeroizes on drop and is
/// never shown by `Debug`.
#[derive(Clone)]
pub struct SoftwareIdentity(p256::ecdsa::SigningKey);

impl SoftwareIdentity {
    /// Generates a fresh identity.
    pub fn generate<R: RngCore + CryptoRng>(rng: &mut R) -> Self {
        SoftwareIdentity(p256::ecdsa::SigningKey::random(rng))
    }

    /// Restores an identity from its 32-byte secret scalar.
    ///
    /// # Errors
    /// [`IdentityError::InvalidPublicKey`] for a zero or out-of-range scalar.
    pub fn from_secret_bytes(bytes: &[u8]) -> Result<Self, IdentityError> {
        p256::ecdsa::SigningKey::from_slice(bytes)
            .map(SoftwareIdentity)
            .map_err(|_| IdentityError::InvalidPublicKey)
    }

    /// The 32-byte secret scalar, in zeroizing memory.
    pub fn secret_bytes(&self) -> SecretBytes {
        SecretBytes::new(self.0.to_bytes().to_vec())
    }

    /// The public identity key.
    pub fn public_key(&self) -> IdentityPublicKey {
        IdentityPublicKey(p256::PublicKey::from(self.0.verifying_key()))
    }

    /// The same key prepared for fast signing with random nonces
    /// ([`PreparedIdentity`]).
    ///
    /// # Errors
    /// [`IdentityError::InvalidPublicKey`] if ring refuses the key (not
    /// expected for a valid one).
    pub fn prepare(&self) -> Result<PreparedIdentity, IdentityError> {
        let scalar = zeroize::Zeroizing::new(self.0.to_bytes());
        let public = self.0.verifying_key().to_encoded_point(false);
        ring::signature::EcdsaKeyPair::from_private_key_and_public_key(
            &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            &scalar[..],
            public.as_bytes(),
            &ring::rand::SystemRandom::new(),
        )
        .map(|key| PreparedIdentity {
            key,
            rng: ring::rand::SystemRandom::new(),
        })
        .map_err(|_| IdentityError::InvalidPublicKey)
    }

    /// Signs `message` (ECDSA P-256 over SHA-256, low `s`), with the
    /// deterministic nonce of RFC 6979: the same message always gets the
    /// same signature, which keeps known-answer vectors byte-stable. A
    /// keystore that signs often uses [`SoftwareIdentity::prepare`].
    pub fn sign(&self, message: &[u8]) -> IdentitySignature {
        let sig: p256::ecdsa::Signature = self.0.sign(message);
        IdentitySignature(sig.normalize_s().unwrap_or(sig))
    }

    /// Opens a message sealed to this identity.
    ///
    /// # Errors
    /// [`IdentityError::SealOpen`] when it does not open.
    pub fn open(
        &self,
        sealed: &SealedMessage,
        context: &[u8],
    ) -> Result<SecretBytes, IdentityError> {
        let ephemeral = sealed.ephemeral_key()?;
        let secret = p256::SecretKey::from(self.0.as_nonzero_scalar());
        let shared =
            p256::ecdh::diffie_hellman(secret.to_nonzero_scalar(), ephemeral.0.as_affine());
        open_with_shared_secret(
            sealed,
            shared.raw_secret_bytes(),
            &self.public_key(),
            context,
        )
    }
}

impl fmt::Debug for SoftwareIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "SoftwareIdentity({}, secret: <redacted>)",
            self.public_key()
        )
    }
}

#[cfg(test)]
mod tests {
    use p256::ecdsa::signature::Verifier;
    use rand_chacha::rand_core::SeedableRng;

    use super::*;

    /// ring's signatures (the software keystore's) verify under RustCrypto
    /// (the oracle) and Kura's verifier, are low-s (they parse as Kura
    /// signatures), differ on every signing (random nonces), and fail on
    /// another message.
    #[test]
    fn prepared_signatures_verify_everywhere_and_are_low_s() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(12);
        for i in 0..64u8 {
            let id = SoftwareIdentity::generate(&mut rng);
            let key = id.public_key();
            let prepared = id.prepare().unwrap();
            let message = vec![i; usize::from(i) * 5 + 1];
            let a = prepared.sign(&message).unwrap();
            let b = prepared.sign(&message).unwrap();
            assert_ne!(a, b, "random nonces");
            for sig in [a, b] {
                assert!(
                    IdentitySignature::from_bytes(&sig.to_bytes()).is_ok(),
                    "low s"
                );
                assert!(key.verify(&message, &sig).is_ok());
                assert!(p256::ecdsa::VerifyingKey::from(key.0)
                    .verify(&message, &sig.0)
                    .is_ok());
                assert!(key.verify(b"another message", &sig).is_err());
            }
        }
    }

    /// ring (the verifier) against RustCrypto (the signer's library, here
    /// the oracle): the same answer on good signatures, altered messages,
    /// altered signatures and other keys.
    #[test]
    fn ring_verifies_exactly_what_p256_verifies() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(11);
        let other = SoftwareIdentity::generate(&mut rng).public_key();
        for i in 0..64u8 {
            let id = SoftwareIdentity::generate(&mut rng);
            let key = id.public_key();
            let message = vec![i; usize::from(i) * 7];
            let sig = id.sign(&message);
            let oracle = |k: &IdentityPublicKey, m: &[u8], s: &IdentitySignature| {
                p256::ecdsa::VerifyingKey::from(k.0).verify(m, &s.0).is_ok()
            };
            assert!(key.verify(&message, &sig).is_ok());
            assert!(oracle(&key, &message, &sig));
            let mut altered = message.clone();
            altered.push(1);
            assert_eq!(
                key.verify(&altered, &sig).is_ok(),
                oracle(&key, &altered, &sig)
            );
            assert!(key.verify(&altered, &sig).is_err());
            assert!(other.verify(&message, &sig).is_err());
            let mut bytes = sig.to_bytes();
            bytes[usize::from(i % 64)] ^= 1;
            if let Ok(bad) = IdentitySignature::from_bytes(&bytes) {
                assert!(key.verify(&message, &bad).is_err());
                assert!(!oracle(&key, &message, &bad));
            }
        }
    }

    /// A high-s signature (valid ECDSA, which ring would accept) never
    /// becomes an `IdentitySignature`: one signature, one encoding.
    #[test]
    fn a_high_s_signature_is_refused_before_verification() {
        let id = SoftwareIdentity::from_secret_bytes(&[5u8; 32]).unwrap();
        let sig = id.sign(b"kura");
        let (r, s) = sig.0.split_scalars();
        let high = p256::ecdsa::Signature::from_scalars(r, -*s).unwrap();
        assert!(IdentitySignature::from_bytes(&high.to_bytes()).is_err());
        let normalized = IdentitySignature::from_raw_normalizing(&high.to_bytes()).unwrap();
        assert!(id.public_key().verify(b"kura", &normalized).is_ok());
    }
}
