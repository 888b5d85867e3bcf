//! Every error type of the library in one place, and [`Cause`], the typed
//! cause an error carries from a layer below it (frost, a keystore backend).
//!
//! Each layer has one error enum that keeps its causes: a signer's
//! [`Refusal`] carries the
//! [`KeystoreError`] that stopped it, which
//! carries the backend's own error (for the PKCS#11 keystore, an
//! `hsm_bridge::HsmError`), reachable with [`Cause::downcast_ref`]. Every
//! refusal has a [`RefusalKind`] for a
//! program to act on (exit codes, HTTP status codes), and the audit log
//! records it.

use std::error::Error;
use std::fmt;

pub use crate::audit::AuditError;
pub use crate::ceremony::CeremonyError;
pub use crate::digest::DigestParseError;
pub use crate::display::TextError;
pub use crate::format::FormatError;
pub use crate::group::GroupError;
pub use crate::identity::IdentityError;
pub use crate::keygen::KeygenError;
pub use crate::keystore::{KeystoreError, StoredSignError};
pub use crate::policy::{PolicyError, PolicyRefusal};
pub use crate::psbt::PsbtError;
pub use crate::signing::{AggregateError, SignError, VerifyError};
pub use crate::suite::UnknownSuite;
pub use crate::withdrawal::coordinator::CoordinatorError;
pub use crate::withdrawal::finalize::FinalizeError;
pub use crate::withdrawal::request::BadSignature;
pub use crate::withdrawal::review::ReviewError;
pub use crate::withdrawal::signer::{Refusal, RefusalKind, SignerError};

/// The error of a lower layer, kept as it was: its message is shown as it
/// is, and a caller who knows the type gets it back with
/// [`Cause::downcast_ref`].
pub struct Cause(Box<dyn Error + Send + Sync + 'static>);

impl Cause {
    /// Wraps `error`.
    pub fn new<E: Error + Send + Sync + 'static>(error: E) -> Self {
        Cause(Box::new(error))
    }

    /// A cause that is only a message (a backend with no error type).
    pub fn message(text: impl Into<String>) -> Self {
        Cause(Box::new(Message(text.into())))
    }

    /// The wrapped error, if it is an `E`.
    pub fn downcast_ref<E: Error + 'static>(&self) -> Option<&E> {
        self.0.downcast_ref::<E>()
    }

    /// The wrapped error.
    pub fn get_ref(&self) -> &(dyn Error + Send + Sync + 'static) {
        &*self.0
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Debug for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl Error for Cause {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.0.source()
    }
}

#[derive(Debug)]
struct Message(String);

impl fmt::Display for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Error for Message {}
