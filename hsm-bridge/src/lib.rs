//! Kura's keystore over PKCS#11 tokens (issue #3): a non-extractable AES key
//! on the token wraps the key share and nonces, the token's RNG feeds nonce
//! generation and identity keys are generated on the token.
//!
//! Not implemented yet: this crate only reserves its place in the workspace.
#![forbid(unsafe_code)]
