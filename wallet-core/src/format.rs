//! Kura's file and message envelope.
//!
//! Every document Kura writes is a JSON object of this shape:
//!
//! ```json
//! { "format": "kura", "version": 1, "kind": "group", "suite": "secp256k1-tr",
//!   "group": "<64 hex digits>", "body": { ... } }
//! ```
//!
//! Reading checks, in order: the document is JSON with exactly these fields,
//! `format` is `kura`, `version` is one this build understands, `kind` is the
//! kind the caller asked for, `suite` is the caller's suite, and (when the
//! caller names one) `group` is the caller's group. Only then is the body
//! parsed. Each failure is its own [`FormatError`] variant.
//!
//! Signed documents are signed over [`canonical_bytes`]: a domain-separation
//! tag naming the kind and version, then the document as compact JSON with
//! object keys sorted.

use std::fmt;
use std::str::FromStr;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::suite::SuiteId;

/// The envelope version this build writes and the only one it reads.
pub const FORMAT_VERSION: u16 = 1;

const MAGIC: &str = "kura";

/// A body type that travels inside the Kura envelope.
pub trait DocumentBody: Serialize + DeserializeOwned {
    /// The `kind` field naming this body.
    const KIND: &'static str;
    /// The ciphersuite this body belongs to.
    fn suite() -> SuiteId;
}

/// A 32-byte group identifier: a hash of the suite and the group verifying
/// key. It does not change when shares are refreshed or repaired.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GroupId([u8; 32]);

impl GroupId {
    /// Derives the id of the group with this suite and serialized group
    /// verifying key.
    pub fn derive(suite: SuiteId, verifying_key: &[u8]) -> Self {
        let mut h = Sha256::new();
        h.update(b"kura/group-id/v1\0");
        h.update(suite.as_str().as_bytes());
        h.update([0u8]);
        h.update(verifying_key);
        GroupId(h.finalize().into())
    }

    /// Wraps 32 bytes computed elsewhere (e.g. a DKG ceremony id).
    pub(crate) fn from_bytes(bytes: [u8; 32]) -> Self {
        GroupId(bytes)
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The first 8 hex digits, for messages meant for people.
    pub fn short(&self) -> String {
        hex::encode(&self.0[..4])
    }
}

impl fmt::Display for GroupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for GroupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GroupId({})", self)
    }
}

impl FromStr for GroupId {
    type Err = FormatError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bytes = hex::decode(s).map_err(|_| FormatError::invalid("group", "not hex"))?;
        let arr: [u8; 32] = bytes
            .try_into()
            .map_err(|_| FormatError::invalid("group", "not 32 bytes"))?;
        Ok(GroupId(arr))
    }
}

impl Serialize for GroupId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for GroupId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The largest document Kura reads, in bytes: room for a request carrying
/// a PSBT of [`crate::psbt::MAX_PSBT_BYTES`] in base64, and for packages.
pub const MAX_DOCUMENT_BYTES: usize = 4 * 1024 * 1024;

/// Why a document could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FormatError {
    /// Not JSON, or JSON without the envelope's fields.
    #[error("not a Kura document: {0}; check that you passed the right file")]
    Malformed(String),
    /// Over [`MAX_DOCUMENT_BYTES`].
    #[error("the document is {len} bytes, over the {MAX_DOCUMENT_BYTES}-byte limit")]
    TooLarge {
        /// Its length (at least).
        len: usize,
    },
    /// The `format` field is not `kura`.
    #[error("not a Kura document (format `{0}`)")]
    NotKura(String),
    /// A version this build does not read.
    #[error("unsupported Kura format version {found} (this build reads version {supported}); upgrade Kura or re-export the file")]
    UnknownVersion {
        /// The version in the file.
        found: u64,
        /// The version this build reads.
        supported: u16,
    },
    /// A document of another kind.
    #[error("expected a `{expected}` document, found `{found}`")]
    WrongKind {
        /// The kind the caller asked for.
        expected: &'static str,
        /// The kind in the file.
        found: String,
    },
    /// A document for another ciphersuite.
    #[error("document is for ciphersuite `{found}`, expected `{expected}`")]
    WrongSuite {
        /// The caller's suite.
        expected: SuiteId,
        /// The suite in the file.
        found: String,
    },
    /// A document for another group.
    #[error("document belongs to group {found}, expected group {expected}")]
    WrongGroup {
        /// The caller's group.
        expected: GroupId,
        /// The group in the file.
        found: GroupId,
    },
    /// A field whose value is not valid.
    #[error("invalid `{field}`: {reason}")]
    Invalid {
        /// Which field.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

impl FormatError {
    pub(crate) fn invalid(field: &'static str, reason: impl fmt::Display) -> Self {
        FormatError::Invalid {
            field,
            reason: reason.to_string(),
        }
    }
}

#[derive(Serialize)]
struct EnvelopeOut<'a, T> {
    format: &'static str,
    version: u16,
    kind: &'static str,
    suite: SuiteId,
    group: &'a GroupId,
    body: &'a T,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EnvelopeIn<'a> {
    format: String,
    version: u64,
    kind: String,
    suite: String,
    group: GroupId,
    // Borrowed from the input: a secret body is parsed straight from the
    // caller's (zeroizing) buffer, never copied into an intermediate tree.
    #[serde(borrow)]
    body: &'a serde_json::value::RawValue,
}

/// A decoded document: the group it names and its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document<T> {
    /// The group the document belongs to.
    pub group: GroupId,
    /// The body.
    pub body: T,
}

/// Encodes `body` as a Kura document of group `group`, pretty-printed for
/// people to read.
///
/// # Errors
/// Only if the body cannot be represented as JSON, which for Kura's own types
/// does not happen.
pub fn encode<T: DocumentBody>(group: &GroupId, body: &T) -> Result<Vec<u8>, FormatError> {
    let out = EnvelopeOut {
        format: MAGIC,
        version: FORMAT_VERSION,
        kind: T::KIND,
        suite: T::suite(),
        group,
        body,
    };
    // Sized up front so that a secret body is not left behind in buffers
    // freed by reallocation.
    let mut bytes = Vec::with_capacity(16 * 1024);
    serde_json::to_writer_pretty(&mut bytes, &out)
        .map_err(|e| FormatError::Malformed(e.to_string()))?;
    bytes.push(b'\n');
    Ok(bytes)
}

/// The envelope's size, JSON shape, magic and version: what every reader
/// checks first.
fn envelope(bytes: &[u8]) -> Result<EnvelopeIn<'_>, FormatError> {
    use crate::display::inert_bounded;
    if bytes.len() > MAX_DOCUMENT_BYTES {
        return Err(FormatError::TooLarge { len: bytes.len() });
    }
    let env: EnvelopeIn = serde_json::from_slice(bytes)
        .map_err(|e| FormatError::Malformed(inert_bounded(&e.to_string(), 512)))?;
    if env.format != MAGIC {
        return Err(FormatError::NotKura(inert_bounded(&env.format, 64)));
    }
    if env.version != u64::from(FORMAT_VERSION) {
        return Err(FormatError::UnknownVersion {
            found: env.version,
            supported: FORMAT_VERSION,
        });
    }
    Ok(env)
}

/// Decodes a document of kind `T::KIND` for `T::suite()`, of any group.
///
/// # Errors
/// A [`FormatError`] naming the first check that failed.
pub fn decode<T: DocumentBody>(bytes: &[u8]) -> Result<Document<T>, FormatError> {
    use crate::display::inert_bounded;
    let env = envelope(bytes)?;
    if env.kind != T::KIND {
        return Err(FormatError::WrongKind {
            expected: T::KIND,
            found: inert_bounded(&env.kind, 64),
        });
    }
    if env.suite != T::suite().as_str() {
        return Err(FormatError::WrongSuite {
            expected: T::suite(),
            found: inert_bounded(&env.suite, 64),
        });
    }
    let body = serde_json::from_str(env.body.get()).map_err(|e| FormatError::Invalid {
        field: "body",
        reason: inert_bounded(&e.to_string(), 512),
    })?;
    Ok(Document {
        group: env.group,
        body,
    })
}

/// What a document's envelope says, read without decoding its body: for a
/// relay that carries documents it has no business opening (the ceremony
/// mailbox) but should still refuse what is not a Kura document at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// Its kind (checked against `[a-z0-9-]{1,64}`).
    pub kind: String,
    /// Its suite.
    pub suite: SuiteId,
    /// The group (or ceremony) it belongs to.
    pub group: GroupId,
}

/// Reads a document's envelope: size, magic, version, a well-formed kind, a
/// known suite and the group — everything [`decode`] checks before the body.
///
/// # Errors
/// A [`FormatError`] naming the first check that failed.
pub fn peek(bytes: &[u8]) -> Result<Envelope, FormatError> {
    use crate::display::inert_bounded;
    let env = envelope(bytes)?;
    let kind_ok = (1..=64).contains(&env.kind.len())
        && env
            .kind
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !kind_ok {
        return Err(FormatError::invalid("kind", inert_bounded(&env.kind, 64)));
    }
    let suite = env
        .suite
        .parse::<SuiteId>()
        .map_err(|_| FormatError::invalid("suite", inert_bounded(&env.suite, 64)))?;
    Ok(Envelope {
        kind: env.kind,
        suite,
        group: env.group,
    })
}

/// Decodes a document like [`decode`] and also requires it to belong to `group`.
///
/// # Errors
/// [`FormatError::WrongGroup`] for a document of another group, or any error of [`decode`].
pub fn decode_for_group<T: DocumentBody>(bytes: &[u8], group: &GroupId) -> Result<T, FormatError> {
    let doc = decode::<T>(bytes)?;
    if doc.group != *group {
        return Err(FormatError::WrongGroup {
            expected: *group,
            found: doc.group,
        });
    }
    Ok(doc.body)
}

/// The bytes an identity key signs for a document: the tag
/// `kura/v<version>/<kind>`, a zero byte, then the document as compact JSON
/// with sorted object keys.
///
/// # Errors
/// Only if the body cannot be represented as JSON.
pub fn canonical_bytes<T: DocumentBody>(group: &GroupId, body: &T) -> Result<Vec<u8>, FormatError> {
    let out = EnvelopeOut {
        format: MAGIC,
        version: FORMAT_VERSION,
        kind: T::KIND,
        suite: T::suite(),
        group,
        body,
    };
    let mut bytes = format!("kura/v{FORMAT_VERSION}/{}\0", T::KIND).into_bytes();
    write_canonical_json(&mut bytes, &out).map_err(|e| FormatError::Malformed(e.to_string()))?;
    Ok(bytes)
}

/// Appends `value` to `out` as compact JSON with every object's keys sorted,
/// so that the bytes depend on the content only, not on struct field order.
pub(crate) fn write_canonical_json<T: Serialize + ?Sized>(
    out: &mut Vec<u8>,
    value: &T,
) -> Result<(), serde_json::Error> {
    // Going through `Value` sorts every object's keys: serde_json's map is a
    // BTreeMap without the `preserve_order` feature, and should another crate
    // in the build turn that feature on, `sort_all_objects` sorts them anyway.
    let mut value = serde_json::to_value(value)?;
    value.sort_all_objects();
    serde_json::to_writer(out, &value)
}

/// Serde helpers for hex-encoded byte strings.
pub(crate) mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        hex::decode(s).map_err(serde::de::Error::custom)
    }
}
