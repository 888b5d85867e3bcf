//! Kura's [`Keystore`](wallet_core::keystore::Keystore) over PKCS#11 tokens.
//!
//! Standard PKCS#11 has no FROST mechanism, so the token cannot compute a
//! signature share itself. What it does: it holds a non-extractable AES-256
//! key-encryption key (KEK) that wraps the key share and the round-1 nonces,
//! it feeds its RNG into nonce generation, and it generates and holds the
//! participant's P-256 identity key. The share and nonces are decrypted into
//! zeroizing host memory only for the duration of a commit or sign.
//!
//! | secret | where it lives | protected by |
//! |---|---|---|
//! | KEK (AES-256) | token object, `Sensitive`, not `Extractable` | the token |
//! | identity private key (P-256) | token object, `Sensitive`, not `Extractable` | the token |
//! | key share | token data object (private), AES-GCM ciphertext | the KEK |
//! | round-1 nonces | local files in a take-once directory, AES-GCM ciphertext | one AES key per nonce set, generated on the token, destroyed at the take |
//! | state anchor (audit head, pinned policy) | the label of a private data object | the token (login to change it) |
//!
//! Associated data of every ciphertext binds format version, purpose,
//! suite, group, participant and (for nonces) the signing session, so a
//! ciphertext moved to another participant, group or purpose fails to
//! decrypt and is reported as tampering.
//!
//! ## Why nonce ciphertexts live in files, not on the token
//!
//! Measured with SoftHSM2 2.6.1 on this project's 2-vCPU VM (token directory
//! on tmpfs; see `BENCHMARKS.md`): consuming a nonce kept as a token object
//! (find + read + decrypt + destroy) costs milliseconds and grows with the
//! number of objects on the token (every object call rescans the token
//! directory), while taking a file from a [`TakeOnceDir`] (lock, read,
//! unlink, fsync the directory) and decrypting it on the token costs a small
//! fraction of that. The ciphertext is useless without the token, so storing
//! it outside loses nothing. What makes a set of nonces single-use is on the
//! token: each set is encrypted under its own AES key object, and the take
//! decrypts, then destroys that key (`C_DestroyObject` succeeds for exactly
//! one caller) and hands the nonces out only if the destroy succeeded. A
//! ciphertext file put back from a backup has no key left to open it; two
//! racing processes get one share; a crash can lose a session but never
//! reuse a nonce.
//!
//! [`TakeOnceDir`]: wallet_core::keystore::files::TakeOnceDir
#![forbid(unsafe_code)]
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
#![warn(missing_docs)]
#![cfg_attr(
    test,
    allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

pub mod check;
pub mod context;
mod error;
mod keystore;
pub mod pin;
pub mod softhsm;
pub mod uri;

pub use error::HsmError;
pub use keystore::{HsmKeystore, IDENTITY_LABEL, KEK_LABEL, STATE_APPLICATION};
pub use pin::PinSource;
pub use uri::Pkcs11Uri;
