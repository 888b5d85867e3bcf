//! The two ciphersuites Kura speaks, and the one place where they differ.
//!
//! Everything else in wallet-core is generic over [`KuraSuite`], a
//! [`frost_core::Ciphersuite`] that also knows its Kura name and how it turns
//! a group's key material into the key material that actually signs.
//!
//! - [`Secp256k1`] is RFC 9591 FROST(secp256k1, SHA-256): 65-byte signatures,
//!   for general message signing and interoperability.
//! - [`Secp256k1Tr`] is FROST with BIP340 challenges: 64-byte signatures that
//!   spend Taproot outputs. Kura applies one rule to every key of this suite,
//!   whether it came from a dealer or a DKG: the group verifying key is the
//!   BIP86 *internal* key, the *output* key is `TapTweak(internal, no script
//!   tree)`, and every signature is made and checked under that tweak.

use std::borrow::Cow;
use std::fmt;

use frost_core::keys::{KeyPackage, PublicKeyPackage};
use frost_core::{Ciphersuite, VerifyingKey};
use serde::{Deserialize, Serialize};

pub use frost_secp256k1::Secp256K1Sha256 as Secp256k1;
pub use frost_secp256k1_tr::Secp256K1Sha256TR as Secp256k1Tr;

/// The name of a ciphersuite as it appears in every Kura file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum SuiteId {
    /// RFC 9591 FROST(secp256k1, SHA-256).
    #[serde(rename = "secp256k1")]
    Secp256k1,
    /// FROST(secp256k1, SHA-256) with BIP340 signatures and the BIP86 Taproot tweak.
    #[serde(rename = "secp256k1-tr")]
    Secp256k1Tr,
}

impl SuiteId {
    /// The name used in files and on the command line.
    pub const fn as_str(self) -> &'static str {
        match self {
            SuiteId::Secp256k1 => "secp256k1",
            SuiteId::Secp256k1Tr => "secp256k1-tr",
        }
    }
}

impl fmt::Display for SuiteId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for SuiteId {
    type Err = UnknownSuite;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "secp256k1" => Ok(SuiteId::Secp256k1),
            "secp256k1-tr" => Ok(SuiteId::Secp256k1Tr),
            other => Err(UnknownSuite(other.to_owned())),
        }
    }
}

/// A ciphersuite name Kura does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown ciphersuite `{0}`: use `secp256k1-tr` (BIP340/Taproot) or `secp256k1` (RFC 9591)")]
pub struct UnknownSuite(pub String);

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::Secp256k1 {}
    impl Sealed for super::Secp256k1Tr {}
}

/// A FROST ciphersuite Kura supports. Sealed: the two suites above are all.
pub trait KuraSuite: Ciphersuite + sealed::Sealed + Send + Sync + 'static {
    /// The suite's name in Kura files.
    const SUITE: SuiteId;

    /// The key package that produces signature shares for this suite.
    ///
    /// For RFC 9591 this is the key package itself; for Taproot it is the
    /// package tweaked to the BIP86 output key.
    fn signing_key_package(key_package: &KeyPackage<Self>) -> Cow<'_, KeyPackage<Self>>;

    /// The public key package that aggregates and verifies for this suite
    /// (tweaked to the output key for Taproot).
    fn signing_public_key_package(
        public_key_package: &PublicKeyPackage<Self>,
    ) -> Cow<'_, PublicKeyPackage<Self>>;

    /// The key a final signature verifies under.
    fn output_key(public_key_package: &PublicKeyPackage<Self>) -> VerifyingKey<Self> {
        *Self::signing_public_key_package(public_key_package).verifying_key()
    }
}

impl KuraSuite for Secp256k1 {
    const SUITE: SuiteId = SuiteId::Secp256k1;

    fn signing_key_package(key_package: &KeyPackage<Self>) -> Cow<'_, KeyPackage<Self>> {
        Cow::Borrowed(key_package)
    }

    fn signing_public_key_package(
        public_key_package: &PublicKeyPackage<Self>,
    ) -> Cow<'_, PublicKeyPackage<Self>> {
        Cow::Borrowed(public_key_package)
    }
}

impl KuraSuite for Secp256k1Tr {
    const SUITE: SuiteId = SuiteId::Secp256k1Tr;

    fn signing_key_package(key_package: &KeyPackage<Self>) -> Cow<'_, KeyPackage<Self>> {
        use frost_secp256k1_tr::keys::Tweak;
        Cow::Owned(key_package.clone().tweak::<&[u8]>(None))
    }

    fn signing_public_key_package(
        public_key_package: &PublicKeyPackage<Self>,
    ) -> Cow<'_, PublicKeyPackage<Self>> {
        use frost_secp256k1_tr::keys::Tweak;
        Cow::Owned(public_key_package.clone().tweak::<&[u8]>(None))
    }
}
