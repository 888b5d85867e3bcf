#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
#![cfg_attr(
    test,
    allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]
#![warn(missing_docs)]

pub mod audit;
pub mod ceremony;
pub mod digest;
pub mod display;
pub mod error;
pub mod format;
pub mod group;
pub mod hd;
pub mod identity;
pub mod keygen;
pub mod keystore;
pub mod messages;
pub mod policy;
pub mod psbt;
pub mod signing;
pub mod suite;
pub mod taproot;
pub mod withdrawal;

mod secret;

// The types a library user reaches for first, at the crate root.
pub use audit::{AuditLog, AuditStore};
pub use digest::{PackagesDigest, PolicyDigest, RequestDigest, SigningDigest};
pub use format::{FormatError, GroupId};
pub use group::{Culprit, GroupError, KeyShare, Label, PublicGroup};
pub use identity::{IdentityPublicKey, SoftwareIdentity};
pub use keystore::{Keystore, KeystoreError, MemoryKeystore, SoftwareKeystore};
pub use policy::Policy;
pub use secret::SecretBytes;
pub use suite::{KuraSuite, Secp256k1, Secp256k1Tr, SuiteId};
pub use withdrawal::{
    build_packages, finalize_withdrawal, Approval, Refusal, RefusalKind, RequestId, Signed, Signer,
    SignerError, WithdrawalPackages, WithdrawalRequest, WithdrawalShares,
};

/// Re-export of the frost-core version Kura is built on.
pub use frost_core;

/// Re-export of the rust-bitcoin version Kura's PSBTs, addresses and
/// transactions are.
pub use bitcoin;
