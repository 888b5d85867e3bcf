//! The signing rounds' messages as Kura documents.
//!
//! | kind | from → to | body |
//! |---|---|---|
//! | `signing-commitments` | signer → coordinator | session, participant, commitments |
//! | `signing-package` | coordinator → signers | session, message, commitments (a list; each participant once) |
//! | `signature-share` | signer → coordinator | session, participant, share |
//! | `signature` | coordinator → anyone | session, message, signature |
//!
//! Each is encoded with [`crate::format::encode`] and read with
//! [`crate::format::decode_for_group`]. The signing package is carried as a
//! list rather than a map so that a participant listed twice is an error
//! ([`PackageMessage::to_package`]) instead of silently collapsing.

use std::collections::BTreeMap;

use frost_core::round1::SigningCommitments;
use frost_core::round2::SignatureShare;
use frost_core::{Identifier, Signature, SigningPackage};
use serde::{Deserialize, Serialize};

use crate::format::{hex_bytes, DocumentBody};
use crate::group::identifier_hex;
use crate::keystore::SessionId;
use crate::signing::SignError;
use crate::suite::{KuraSuite, SuiteId};

/// A signer's round-1 commitments.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(bound = "C: KuraSuite", deny_unknown_fields)]
pub struct CommitmentsMessage<C: KuraSuite> {
    /// The signing session.
    pub session: SessionId,
    /// The committing participant.
    pub participant: Identifier<C>,
    /// The commitments.
    pub commitments: SigningCommitments<C>,
}

/// One entry of a signing package.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(bound = "C: KuraSuite", deny_unknown_fields)]
pub struct PackageEntry<C: KuraSuite> {
    /// The participant.
    pub participant: Identifier<C>,
    /// Its commitments.
    pub commitments: SigningCommitments<C>,
}

/// A signing package: the message and every signer's commitments.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(bound = "C: KuraSuite", deny_unknown_fields)]
pub struct PackageMessage<C: KuraSuite> {
    /// The signing session.
    pub session: SessionId,
    /// The message to sign, hex.
    #[serde(with = "hex_bytes")]
    pub message: Vec<u8>,
    /// The signers' commitments, ordered by identifier.
    pub commitments: Vec<PackageEntry<C>>,
}

impl<C: KuraSuite> PackageMessage<C> {
    /// The message for a frost signing package.
    pub fn from_package(session: SessionId, package: &SigningPackage<C>) -> Self {
        PackageMessage {
            session,
            message: package.message().clone(),
            commitments: package
                .signing_commitments()
                .iter()
                .map(|(id, c)| PackageEntry {
                    participant: *id,
                    commitments: *c,
                })
                .collect(),
        }
    }

    /// The frost signing package.
    ///
    /// # Errors
    /// [`SignError::DuplicateSigner`] when a participant is listed twice.
    pub fn to_package(&self) -> Result<SigningPackage<C>, SignError> {
        let mut map = BTreeMap::new();
        for e in &self.commitments {
            if map.insert(e.participant, e.commitments).is_some() {
                return Err(SignError::DuplicateSigner(identifier_hex(&e.participant)));
            }
        }
        Ok(SigningPackage::new(map, &self.message))
    }
}

/// A signer's signature share.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(bound = "C: KuraSuite", deny_unknown_fields)]
pub struct ShareMessage<C: KuraSuite> {
    /// The signing session.
    pub session: SessionId,
    /// The signer.
    pub participant: Identifier<C>,
    /// The share.
    pub share: SignatureShare<C>,
}

/// An aggregated signature.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(bound = "C: KuraSuite", deny_unknown_fields)]
pub struct SignatureMessage<C: KuraSuite> {
    /// The signing session.
    pub session: SessionId,
    /// The signed message, hex.
    #[serde(with = "hex_bytes")]
    pub message: Vec<u8>,
    /// The signature.
    pub signature: Signature<C>,
}

macro_rules! document_kind {
    ($t:ident, $kind:literal) => {
        impl<C: KuraSuite> DocumentBody for $t<C> {
            const KIND: &'static str = $kind;
            fn suite() -> SuiteId {
                C::SUITE
            }
        }
    };
}

document_kind!(CommitmentsMessage, "signing-commitments");
document_kind!(PackageMessage, "signing-package");
document_kind!(ShareMessage, "signature-share");
document_kind!(SignatureMessage, "signature");

// The setup documents (DKG rounds, dealings, refresh, repair) are in
// [`crate::ceremony`].
