//! The hsm-bridge error type.

use wallet_core::keystore::KeystoreError;

/// What went wrong talking to a PKCS#11 token.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HsmError {
    /// The module (shared library) could not be loaded.
    #[error("PKCS#11 module {path} could not be loaded ({reason}); point module-path= or PKCS11_MODULE at the HSM's PKCS#11 library")]
    ModuleNotFound {
        /// The module path tried.
        path: String,
        /// Why loading failed.
        reason: String,
    },
    /// The module could have been replaced by someone other than root.
    #[error("PKCS#11 module {module} is not trusted: {path} is {reason}; a module is code that receives the PIN, so it must be a root-owned file in root-owned directories that nobody else can write")]
    UntrustedModule {
        /// The module asked for.
        module: String,
        /// The file or directory that failed the check.
        path: String,
        /// Why.
        reason: String,
    },
    /// No token with the label.
    #[error("no token labelled {label:?} (tokens present: {available}); check the token= part of the URI")]
    TokenNotFound {
        /// The label asked for.
        label: String,
        /// Labels of the tokens present.
        available: String,
    },
    /// Several tokens carry the label and nothing tells them apart.
    #[error("more than one token is labelled {label:?} (serials {serials}); add `;serial=<serial>` to the URI to name the one this signer uses")]
    AmbiguousToken {
        /// The label.
        label: String,
        /// The candidates' serial numbers.
        serials: String,
    },
    /// Another part of this process is logged in to the token, so its PIN
    /// cannot be checked here.
    #[error("token {label:?} is already logged in by another user of the PKCS#11 module in this process, so Kura cannot check the PIN; open Kura's keystore first, or in its own process")]
    ForeignLogin {
        /// The token.
        label: String,
    },
    /// An object on the token carries one of Kura's labels but is not what
    /// Kura made: a decoy, or a token provisioned by something else.
    #[error("token {label:?} has an object labelled {object:?} that is not Kura's ({reason}); someone may have planted it — refusing to use this token until its owner has inspected it")]
    UnexpectedObject {
        /// The token.
        label: String,
        /// The object's label.
        object: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The token failed its self-test on open.
    #[error("token {label:?} failed Kura's self-test ({what}); its keys do not work together as provisioned")]
    SelfTest {
        /// The token.
        label: String,
        /// What failed.
        what: &'static str,
    },
    /// The PIN was refused.
    #[error(
        "wrong PIN for token {label:?}; Kura does not retry (repeated failures can lock the token)"
    )]
    WrongPin {
        /// The token.
        label: String,
    },
    /// The user PIN is locked.
    #[error("the user PIN of token {label:?} is locked; its security officer must reset it")]
    PinLocked {
        /// The token.
        label: String,
    },
    /// The token lacks Kura's keys.
    #[error("token {label:?} has no {missing}; provision it for Kura first")]
    NotProvisioned {
        /// The token.
        label: String,
        /// What is missing.
        missing: &'static str,
    },
    /// The token already has Kura's keys.
    #[error("token {label:?} is already provisioned for Kura; refusing to create a second key-encryption key")]
    AlreadyProvisioned {
        /// The token.
        label: String,
    },
    /// The token has no room.
    #[error("token {label:?} is full; the previous state is unchanged — free space on the token and retry")]
    TokenFull {
        /// The token.
        label: String,
    },
    /// A malformed URI.
    #[error("invalid PKCS#11 URI {uri:?}: {reason}")]
    InvalidUri {
        /// The URI.
        uri: String,
        /// What is wrong.
        reason: String,
    },
    /// The PIN could not be obtained.
    #[error("cannot read the PIN: {0}")]
    Pin(String),
    /// The token or module failed.
    #[error("PKCS#11 {operation} failed: {source}")]
    Pkcs11 {
        /// The operation.
        operation: &'static str,
        /// The cryptoki error.
        source: cryptoki::error::Error,
    },
    /// The local directory for nonce ciphertexts is unusable.
    #[error("nonce directory {path} is unusable: {reason}")]
    NonceDir {
        /// The directory.
        path: String,
        /// Why.
        reason: String,
    },
    /// The token returned data Kura cannot use.
    #[error("token returned unusable {0}")]
    BadTokenData(&'static str),
}

impl HsmError {
    pub(crate) fn pkcs11(
        operation: &'static str,
    ) -> impl FnOnce(cryptoki::error::Error) -> HsmError {
        move |source| HsmError::Pkcs11 { operation, source }
    }
}

impl From<HsmError> for KeystoreError {
    fn from(e: HsmError) -> Self {
        match e {
            HsmError::WrongPin { .. } => KeystoreError::WrongPassphrase,
            other => KeystoreError::Backend(wallet_core::error::Cause::new(other)),
        }
    }
}
