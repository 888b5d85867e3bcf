//! An append-only, hash-chained, identity-signed audit log: every decision a
//! signer makes, in a record nobody can edit, reorder, cut or roll back
//! without the signer noticing.
//!
//! Each signer (and the coordinator) keeps its own log: a file of JSON Lines,
//! one [`AuditEntry`] per line, each line the entry as compact JSON with
//! sorted object keys followed by a newline. An entry records what happened
//! ([`AuditRecord`]), when (`time`, unix seconds, given by the caller), its
//! position (`seq`, counting from 1), and `prev_hash`: the hex SHA-256 of the
//! previous line's exact bytes, its newline included. The first entry's
//! `prev_hash` is the owner's [`genesis_hash`], so a log cannot be passed off
//! as another identity's. Every entry is signed by the owner's identity key
//! over [`AuditEntry::signing_bytes`]: the tag `kura/v1/audit-entry`, a zero
//! byte, then the entry without its signature as compact JSON with sorted
//! keys.
//!
//! [`verify`] (and [`AuditLog::open`], which calls it) accepts a log only if
//! every line is complete and in that exact encoding, the sequence numbers
//! run 1, 2, 3, …, each `prev_hash` matches the line before, every entry is
//! signed by the owner, and times never go backwards (equal times are fine).
//! Editing, deleting, inserting, replaying or reordering entries is therefore
//! detected, and the error names the first line that does not check out.
//!
//! **What the file alone cannot show:** removing entries from the *end*
//! (or deleting the file, or restoring an old copy) leaves a shorter log
//! that is perfectly valid. So the log's head — the last entry's sequence
//! number and line hash, an [`AuditHead`] — is anchored in the owner's
//! keystore ([`Keystore::anchor`]), where someone who can write the host's
//! files but does not hold its PIN or passphrase cannot move it back.
//! [`AuditLog::append`] moves the anchor with every entry (the line first,
//! then the anchor), and [`AuditLog::check_anchor`] — which every signer
//! decision runs first — refuses a log that is behind its anchor, missing,
//! or forked from it. A log exactly one entry ahead of its anchor is what a
//! crash between the two writes leaves; the check moves the anchor up to
//! it. Someone holding the owner's identity key can still write a whole new
//! valid log; the log protects against tampering by people without it.
//!
//! [`AuditLog::append`] makes an entry durable (the file, and its directory
//! when the file was just created, are synced) before it returns, so callers
//! release the recorded action (a signature share, a broadcast) only after
//! `append` has returned `Ok`. When `append` fails the entry may still have
//! reached the file: the log can over-report actions, never under-report them.
//!
//! Records must never hold secrets: they name requests, digests, sighashes
//! and amounts only.
//!
//! One process decides at a time: [`AuditLog::begin`] takes an exclusive
//! lock (a `.lock` file beside the log) for a whole decision, reads what
//! other processes appended meanwhile and checks the anchor. Appends also
//! take an exclusive lock on the file and refuse to write when the file is
//! not as the handle last saw it, so a writer that skipped `begin` is
//! caught rather than forking the chain.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::digest::{PackagesDigest, PolicyDigest, RequestDigest, SigningDigest};
use crate::withdrawal::request::RequestId;
use sha2::{Digest, Sha256};

use crate::format::write_canonical_json;

mod history;
use crate::identity::{IdentityPublicKey, IdentitySignature};
use crate::keystore::{files, AuditHead, Keystore, KeystoreError};
pub use history::AuditHistory;

/// The largest audit log Kura reads (256 MiB, about a million entries): a
/// planted or runaway file is refused instead of exhausting memory.
pub const MAX_LOG_BYTES: u64 = 256 * 1024 * 1024;

/// Domain-separation tag of the genesis hash.
const GENESIS_TAG: &[u8] = b"kura/v1/audit-genesis\0";

/// Domain-separation tag of the bytes an entry's signature covers.
const ENTRY_TAG: &[u8] = b"kura/v1/audit-entry\0";

/// What happened.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
pub enum AuditEvent {
    /// A signing request arrived.
    RequestSeen,
    /// The policy approved a request.
    Approved,
    /// The policy refused a request.
    Refused {
        /// The kind of refusal (for a policy refusal, its rule), stored by
        /// its kebab-case name.
        rule: crate::withdrawal::RefusalKind,
        /// Why, in words for an operator.
        reason: String,
    },
    /// A signature share left this signer.
    ShareReleased,
    /// Shares released earlier were handed out again, unchanged, for the
    /// same packages (the record names them); nothing new was computed.
    SharesRedelivered,
    /// An earlier approval of the same request was withdrawn: its nonces
    /// were destroyed (the record's `session`), so it can never sign, and a
    /// fresh approval follows. What a lost or spent nonce set leads to.
    ApprovalSuperseded,
    /// The coordinator aggregated shares into a signature.
    Aggregated,
    /// The transaction was finalized.
    Finalized,
    /// This signer dealt its part of a reshare (a quorum change): once per
    /// proposal, which this names.
    ReshareDealt {
        /// The reshare proposal's digest, hex.
        proposal: String,
    },
    /// Free text for operators (never a secret).
    Note {
        /// The note.
        text: String,
    },
}

impl AuditEvent {
    /// The event's kebab-case name, as its entry's `type` stores it.
    pub fn as_str(&self) -> &'static str {
        match self {
            AuditEvent::RequestSeen => "request-seen",
            AuditEvent::Approved => "approved",
            AuditEvent::Refused { .. } => "refused",
            AuditEvent::ShareReleased => "share-released",
            AuditEvent::SharesRedelivered => "shares-redelivered",
            AuditEvent::ApprovalSuperseded => "approval-superseded",
            AuditEvent::Aggregated => "aggregated",
            AuditEvent::Finalized => "finalized",
            AuditEvent::ReshareDealt { .. } => "reshare-dealt",
            AuditEvent::Note { .. } => "note",
        }
    }
}

/// The name, and for a refusal its kind: `refused (fee-cap)`. Refusal
/// reasons and notes are outside text; show them through
/// [`crate::display::inert`].
impl fmt::Display for AuditEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AuditEvent::Refused { rule, .. } => write!(f, "refused ({rule})"),
            other => f.write_str(other.as_str()),
        }
    }
}

/// The content of an audit entry: an event and what it concerns.
///
/// Build one with [`AuditRecord::new`] and the `with_*` methods. Digests
/// are typed and written as lowercase hex, the one spelling that parses.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditRecord {
    /// What happened.
    pub event: AuditEvent,
    /// The signing request concerned, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// Hex identity key of the request's requester, if any (request ids are
    /// unique per requester).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requester: Option<String>,
    /// The digest of the request concerned, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_digest: Option<RequestDigest>,
    /// What was signed (or refused), in input order: each input's sighash,
    /// or a raw message's digest.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sighashes: Vec<SigningDigest>,
    /// The digest of the policy that decided, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_digest: Option<PolicyDigest>,
    /// Satoshis leaving the wallet (for rolling limits), if known: the
    /// outputs that are not change plus the fee. (Entries written before
    /// `fee_sat` existed counted the outputs only.)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount_sat: Option<u64>,
    /// Of `amount_sat`, the fee (for the rolling fee budget), if known.
    /// Optional, so older logs still verify; a build from before this field
    /// refuses a log that has it (records deny unknown fields).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fee_sat: Option<u64>,
    /// The nonce session of an approval (or of the approval superseded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<crate::keystore::SessionId>,
    /// The digest of the signing packages a share release answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub packages_digest: Option<PackagesDigest>,
    /// Hex of each released signature share, in input order. A share is
    /// public once released; recording it lets the signer hand the same
    /// shares out again for the same packages (after a crash lost them)
    /// without ever computing new ones.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shares: Vec<String>,
}

impl AuditRecord {
    /// A record of `event` concerning nothing else yet.
    pub fn new(event: AuditEvent) -> Self {
        AuditRecord {
            event,
            request_id: None,
            requester: None,
            request_digest: None,
            sighashes: Vec::new(),
            policy_digest: None,
            amount_sat: None,
            fee_sat: None,
            session: None,
            packages_digest: None,
            shares: Vec::new(),
        }
    }

    /// Records the packages answered and the shares released for them.
    #[must_use]
    pub fn with_release(mut self, packages: PackagesDigest, shares_hex: Vec<String>) -> Self {
        self.packages_digest = Some(packages);
        self.shares = shares_hex;
        self
    }

    /// Records the nonce session concerned.
    #[must_use]
    pub fn with_session(mut self, session: crate::keystore::SessionId) -> Self {
        self.session = Some(session);
        self
    }

    /// Names the signing request concerned.
    #[must_use]
    pub fn with_request_id(mut self, request_id: &RequestId) -> Self {
        self.request_id = Some(request_id.as_str().to_owned());
        self
    }

    /// Records the request's requester (hex identity key).
    #[must_use]
    pub fn with_requester(mut self, requester_hex: impl Into<String>) -> Self {
        self.requester = Some(requester_hex.into());
        self
    }

    /// Records the request's digest.
    #[must_use]
    pub fn with_request_digest(mut self, digest: RequestDigest) -> Self {
        self.request_digest = Some(digest);
        self
    }

    /// Records what was signed, in input order, replacing any set before.
    #[must_use]
    pub fn with_sighashes(mut self, sighashes: Vec<SigningDigest>) -> Self {
        self.sighashes = sighashes;
        self
    }

    /// Records the digest of the policy that decided.
    #[must_use]
    pub fn with_policy_digest(mut self, digest: PolicyDigest) -> Self {
        self.policy_digest = Some(digest);
        self
    }

    /// Records the amount leaving the wallet, in satoshis.
    #[must_use]
    pub fn with_amount_sat(mut self, amount_sat: u64) -> Self {
        self.amount_sat = Some(amount_sat);
        self
    }

    /// Records the fee paid (part of the amount), in satoshis.
    #[must_use]
    pub fn with_fee_sat(mut self, fee_sat: u64) -> Self {
        self.fee_sat = Some(fee_sat);
        self
    }
}

/// One line of the log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditEntry {
    /// Position in the log, counting from 1.
    pub seq: u64,
    /// Unix seconds, as given by the appender; never less than the previous entry's.
    pub time: u64,
    /// What is recorded.
    pub record: AuditRecord,
    /// Hex SHA-256 of the previous line's bytes (newline included), or the
    /// owner's [`genesis_hash`] for entry 1.
    pub prev_hash: String,
    /// The identity that signed the entry: the log's owner.
    pub signer: IdentityPublicKey,
    /// The signer's signature over [`AuditEntry::signing_bytes`].
    pub signature: IdentitySignature,
}

/// An entry without its signature: what the signature covers.
#[derive(Serialize)]
struct UnsignedEntry<'a> {
    seq: u64,
    time: u64,
    record: &'a AuditRecord,
    prev_hash: &'a str,
    signer: &'a IdentityPublicKey,
}

impl UnsignedEntry<'_> {
    fn signing_bytes(&self) -> Result<Vec<u8>, AuditError> {
        let mut bytes = ENTRY_TAG.to_vec();
        write_canonical_json(&mut bytes, self).map_err(encoding_error)?;
        Ok(bytes)
    }
}

impl AuditEntry {
    /// The bytes the signature covers: the tag `kura/v1/audit-entry`, a zero
    /// byte, then the entry without `signature` as compact JSON with sorted keys.
    ///
    /// # Errors
    /// [`AuditError::Encoding`], which does not happen for these types.
    pub fn signing_bytes(&self) -> Result<Vec<u8>, AuditError> {
        UnsignedEntry {
            seq: self.seq,
            time: self.time,
            record: &self.record,
            prev_hash: &self.prev_hash,
            signer: &self.signer,
        }
        .signing_bytes()
    }

    /// The entry's line in the log: compact JSON with sorted keys, then a newline.
    ///
    /// # Errors
    /// [`AuditError::Encoding`], which does not happen for these types.
    pub fn to_line(&self) -> Result<Vec<u8>, AuditError> {
        let mut line = Vec::new();
        write_canonical_json(&mut line, self).map_err(encoding_error)?;
        line.push(b'\n');
        Ok(line)
    }

    /// Hex SHA-256 of [`AuditEntry::to_line`]: the next entry's `prev_hash`.
    /// For the last entry of a log this is the log's head hash.
    ///
    /// # Errors
    /// [`AuditError::Encoding`], which does not happen for these types.
    pub fn line_hash(&self) -> Result<String, AuditError> {
        Ok(hex::encode(Sha256::digest(self.to_line()?)))
    }
}

/// The `prev_hash` of entry 1 in `owner`'s log: hex SHA-256 of
/// `kura/v1/audit-genesis`, a zero byte, and the owner's compressed SEC1 key.
pub fn genesis_hash(owner: &IdentityPublicKey) -> String {
    hex::encode(genesis(owner))
}

fn genesis(owner: &IdentityPublicKey) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(GENESIS_TAG);
    h.update(owner.to_sec1());
    h.finalize().into()
}

/// Why the audit log could not be read or appended to.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    /// A line that does not check out. Entries on earlier lines verified;
    /// this one and everything after it must not be trusted.
    #[error("audit log is broken at line {line}{}: {reason}; do not trust entries from here on", entry_label(.seq))]
    Broken {
        /// The line (counting from 1) that failed.
        line: usize,
        /// The sequence number that line claims, when it could be read.
        seq: Option<u64>,
        /// What is wrong.
        reason: String,
    },
    /// The last line has no newline: an append was cut short (a crash
    /// mid-write), or the file was cut.
    #[error("audit log ends in a truncated line {line} (no newline at its end): an append was interrupted, e.g. by a crash, or the file was cut; do not trust the log until an operator has inspected it and removed the partial line")]
    Truncated {
        /// The truncated line (counting from 1).
        line: usize,
    },
    /// The keystore appending is not the log's owner.
    #[error("the keystore's identity {keystore} is not the owner {owner} of this audit log; append with the owner's keystore")]
    NotOwner {
        /// The log's owner.
        owner: Box<IdentityPublicKey>,
        /// The keystore's identity.
        keystore: Box<IdentityPublicKey>,
    },
    /// An append with a time before the last entry's.
    #[error("time {given} is before the last audit entry's time {last}; audit entries may not go back in time, check the system clock")]
    TimeWentBackwards {
        /// The last entry's time.
        last: u64,
        /// The time given.
        given: u64,
    },
    /// The file is not as this handle last saw it.
    #[error("audit log {path} changed since this handle last read or wrote it (another writer, or an earlier append that failed); open it again to re-verify it")]
    Changed {
        /// The log file.
        path: String,
    },
    /// The log is missing or shorter than its anchor in the keystore:
    /// entries were removed, the file deleted, or an old copy restored.
    #[error("audit log {path} is behind its anchor in the keystore: the log ends at {log}, the keystore says {anchor}; entries were removed or an old copy was restored — this signer refuses everything until the log is put back")]
    BehindAnchor {
        /// The log file.
        path: String,
        /// Where the log ends.
        log: AuditHead,
        /// Where the keystore says it must be.
        anchor: AuditHead,
    },
    /// The log's entry at the anchored position is not the anchored one.
    #[error("audit log {path} is forked from its anchor in the keystore: entry {seq} is not the one the keystore recorded; the log was replaced — this signer refuses everything until the real log is put back")]
    Forked {
        /// The log file.
        path: String,
        /// The anchored sequence number.
        seq: u64,
    },
    /// More than one entry beyond the anchor: not what a crash leaves.
    #[error("audit log {path} is {ahead} entries ahead of its anchor in the keystore ({anchor}); at most one entry can be left unanchored by a crash — this signer refuses everything until an operator has inspected the log")]
    AheadOfAnchor {
        /// The log file.
        path: String,
        /// How many entries beyond the anchor.
        ahead: u64,
        /// Where the keystore says the log ends.
        anchor: AuditHead,
    },
    /// The log is larger than [`MAX_LOG_BYTES`].
    #[error("audit log {path} is larger than {} MiB; Kura does not read it (start a new log after archiving this one)", MAX_LOG_BYTES / (1024 * 1024))]
    TooLarge {
        /// The log file.
        path: String,
    },
    /// The sequence numbers are used up.
    #[error("audit log has reached the largest sequence number; start a new log")]
    Full,
    /// An I/O failure.
    #[error("audit log I/O error on {path}: {source}")]
    Io {
        /// The file involved.
        path: String,
        /// The underlying error.
        source: io::Error,
    },
    /// The keystore could not tell its identity or sign, or signed wrongly.
    #[error("audit entry could not be signed: {0}")]
    Keystore(#[from] KeystoreError),
    /// An entry that cannot be written as JSON (does not happen for these types).
    #[error("audit entry could not be encoded as JSON: {0}")]
    Encoding(String),
}

fn from_keystore_io(e: KeystoreError) -> AuditError {
    match e {
        KeystoreError::Io { path, source } => AuditError::Io { path, source },
        other => AuditError::Keystore(other),
    }
}

fn entry_label(seq: &Option<u64>) -> String {
    match seq {
        Some(s) => format!(" (entry {s})"),
        None => String::new(),
    }
}

fn encoding_error(e: serde_json::Error) -> AuditError {
    AuditError::Encoding(e.to_string())
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> AuditError + '_ {
    move |source| AuditError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// A verified log: its entries and the hash the next entry must chain to.
struct Chain {
    history: AuditHistory,
    head: [u8; 32],
}

/// Verifies a whole log file's bytes for `owner` and returns its entries.
///
/// An empty input is an empty log. Entries removed from the end cannot be
/// detected here; compare the last entry's [`AuditEntry::line_hash`] with an
/// anchored head hash for that.
///
/// # Errors
/// [`AuditError::Broken`] naming the first line that is malformed, not in the
/// canonical encoding, out of sequence, not chained to the line before,
/// signed by someone other than `owner`, badly signed, or earlier in time
/// than the line before; [`AuditError::Truncated`] when the last line has no
/// newline.
pub fn verify(bytes: &[u8], owner: &IdentityPublicKey) -> Result<Vec<AuditEntry>, AuditError> {
    verify_chain(bytes, owner).map(|chain| chain.history.into_entries())
}

fn verify_chain(bytes: &[u8], owner: &IdentityPublicKey) -> Result<Chain, AuditError> {
    let mut chain = Chain {
        history: AuditHistory::default(),
        head: genesis(owner),
    };
    extend_chain(&mut chain, bytes, owner)?;
    Ok(chain)
}

/// Verifies `bytes` as lines that continue `chain`, and appends them.
fn extend_chain(
    chain: &mut Chain,
    bytes: &[u8],
    owner: &IdentityPublicKey,
) -> Result<(), AuditError> {
    let first_line = chain.history.len();
    for (index, chunk) in bytes.split_inclusive(|b| *b == b'\n').enumerate() {
        let line = first_line.saturating_add(index).saturating_add(1);
        let Some(content) = chunk.strip_suffix(b"\n") else {
            return Err(AuditError::Truncated { line });
        };
        let entry = check_line(content, line, &chain.head, chain.history.last(), owner)?;
        chain.head = Sha256::digest(chunk).into();
        chain.history.push(entry);
    }
    Ok(())
}

/// Checks one line (without its newline) against the line before.
fn check_line(
    content: &[u8],
    line: usize,
    prev_hash: &[u8; 32],
    prev: Option<&AuditEntry>,
    owner: &IdentityPublicKey,
) -> Result<AuditEntry, AuditError> {
    let broken = |seq: Option<u64>, reason: String| AuditError::Broken { line, seq, reason };
    let entry: AuditEntry = serde_json::from_slice(content)
        .map_err(|e| broken(None, format!("not a valid audit entry ({e})")))?;
    let seq = Some(entry.seq);

    let expected_seq = match prev {
        Some(p) => p.seq.checked_add(1),
        None => Some(1),
    };
    if Some(entry.seq) != expected_seq {
        let expected = expected_seq.map_or_else(|| "none".to_owned(), |s| s.to_string());
        return Err(broken(
            seq,
            format!(
                "sequence number {} where {expected} was expected: entries were deleted, inserted, replayed or reordered",
                entry.seq
            ),
        ));
    }

    let mut canonical = entry.to_line()?;
    canonical.pop();
    if canonical != content {
        return Err(broken(
            seq,
            "the line is not in the canonical encoding Kura writes: it was edited".to_owned(),
        ));
    }

    if entry.prev_hash != hex::encode(prev_hash) {
        let reason = if prev.is_none() {
            "prev_hash is not the genesis hash of this owner's log: the log belongs to another identity, or its first entries were removed".to_owned()
        } else {
            "prev_hash does not match the line before: that line was altered or replaced after this entry was written, or entries were removed or inserted between them".to_owned()
        };
        return Err(broken(seq, reason));
    }

    if entry.signer != *owner {
        return Err(broken(
            seq,
            format!(
                "entry is signed by identity {}, not by the log's owner {owner}",
                entry.signer
            ),
        ));
    }

    if owner
        .verify(&entry.signing_bytes()?, &entry.signature)
        .is_err()
    {
        return Err(broken(
            seq,
            "the owner's signature does not verify: the entry was changed after it was signed"
                .to_owned(),
        ));
    }

    if let Some(p) = prev {
        if entry.time < p.time {
            return Err(broken(
                seq,
                format!(
                    "time {} is before the previous entry's time {}",
                    entry.time, p.time
                ),
            ));
        }
    }

    Ok(entry)
}

/// An open, verified audit log that this process appends to.
pub struct AuditLog {
    path: PathBuf,
    owner: IdentityPublicKey,
    chain: Chain,
    /// The file's length as last verified or written.
    len: u64,
}

/// Where a signer's audit entries are kept: the signer decides through this
/// trait, so a store other than the file ([`AuditLog`]) — a database for a
/// service — plugs in unchanged.
///
/// An implementation must keep what [`AuditLog`] keeps: entries appended in
/// order, each durable before `append` returns, the head anchored in the
/// keystore (moved after each append, checked by `begin`), one decision at
/// a time per signer, and a history whose lookups do not scan the log.
pub trait AuditStore: Send {
    /// Starts a decision: exclusive for this signer until the guard is
    /// dropped, with the history brought up to date and checked against the
    /// anchor in `keystore`.
    ///
    /// # Errors
    /// As [`AuditLog::begin`].
    fn begin(&mut self, keystore: &dyn Keystore) -> Result<DecisionGuard, AuditError>;

    /// Signs and appends `record` at `time`, durably, then moves the anchor.
    ///
    /// # Errors
    /// As [`AuditLog::append`].
    fn append(
        &mut self,
        keystore: &dyn Keystore,
        time: u64,
        record: AuditRecord,
    ) -> Result<AuditEntry, AuditError>;

    /// The entries and their indexes.
    fn history(&self) -> &AuditHistory;

    /// Where the log ends.
    fn head(&self) -> AuditHead;

    /// The last entry's time (0 for an empty log).
    fn last_time(&self) -> u64 {
        self.history().last().map_or(0, |e| e.time)
    }
}

impl AuditStore for AuditLog {
    fn begin(&mut self, keystore: &dyn Keystore) -> Result<DecisionGuard, AuditError> {
        AuditLog::begin(self, keystore)
    }

    fn append(
        &mut self,
        keystore: &dyn Keystore,
        time: u64,
        record: AuditRecord,
    ) -> Result<AuditEntry, AuditError> {
        AuditLog::append(self, keystore, time, record)
    }

    fn history(&self) -> &AuditHistory {
        AuditLog::history(self)
    }

    fn head(&self) -> AuditHead {
        AuditLog::head(self)
    }
}

impl<S: AuditStore + ?Sized> AuditStore for &mut S {
    fn begin(&mut self, keystore: &dyn Keystore) -> Result<DecisionGuard, AuditError> {
        (**self).begin(keystore)
    }

    fn append(
        &mut self,
        keystore: &dyn Keystore,
        time: u64,
        record: AuditRecord,
    ) -> Result<AuditEntry, AuditError> {
        (**self).append(keystore, time, record)
    }

    fn history(&self) -> &AuditHistory {
        (**self).history()
    }

    fn head(&self) -> AuditHead {
        (**self).head()
    }
}

/// Held for the length of one decision (see [`AuditStore::begin`]): no
/// other process decides for the same signer until it is dropped.
#[must_use = "the decision is exclusive only while the guard lives"]
pub struct DecisionGuard {
    _held: Box<dyn Send>,
}

impl DecisionGuard {
    /// A guard that holds `held` (a lock, a transaction) until dropped: for
    /// [`AuditStore`] implementations.
    pub fn holding(held: impl Send + 'static) -> Self {
        DecisionGuard {
            _held: Box::new(held),
        }
    }
}

impl fmt::Debug for DecisionGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DecisionGuard")
    }
}

impl fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditLog")
            .field("path", &self.path)
            .field("owner", &self.owner)
            .field("entries", &self.chain.history.len())
            .field("head", &hex::encode(self.chain.head))
            .finish()
    }
}

impl AuditLog {
    /// Opens the log at `path` owned by `owner`, verifying every entry (see
    /// [`verify`]). A missing file is an empty log; nothing is created until
    /// the first [`AuditLog::append`].
    ///
    /// # Errors
    /// [`AuditError::Io`] when the file cannot be read, or any error of [`verify`].
    pub fn open(path: &Path, owner: &IdentityPublicKey) -> Result<Self, AuditError> {
        let bytes = match File::open(path) {
            Ok(mut file) => {
                // Shared with other readers, exclusive of an append in progress.
                file.lock_shared().map_err(io_error(path))?;
                let too_large = || AuditError::TooLarge {
                    path: path.display().to_string(),
                };
                if file.metadata().map_err(io_error(path))?.len() > MAX_LOG_BYTES {
                    return Err(too_large());
                }
                let mut bytes = Vec::new();
                (&mut file)
                    .take(MAX_LOG_BYTES.saturating_add(1))
                    .read_to_end(&mut bytes)
                    .map_err(io_error(path))?;
                if bytes.len() as u64 > MAX_LOG_BYTES {
                    return Err(too_large());
                }
                bytes
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(io_error(path)(e)),
        };
        let chain = verify_chain(&bytes, owner)?;
        Ok(AuditLog {
            path: path.to_owned(),
            owner: *owner,
            chain,
            len: bytes.len() as u64,
        })
    }

    /// Starts a decision: takes the signer's exclusive decision lock (a
    /// `.lock` file beside the log; it waits for another process's decision
    /// to end), reads and verifies what other processes appended since this
    /// handle last looked, and checks the log against its anchor in
    /// `keystore` ([`AuditLog::check_anchor`]). Decide and append while the
    /// returned guard lives.
    ///
    /// # Errors
    /// [`AuditError::Changed`] when the file is no longer a continuation of
    /// what this handle verified, any error of [`verify`] for the new lines,
    /// or of [`AuditLog::check_anchor`].
    pub fn begin(&mut self, keystore: &dyn Keystore) -> Result<DecisionGuard, AuditError> {
        let mut lock_path = self.path.clone().into_os_string();
        lock_path.push(".lock");
        let lock = files::lock_exclusive(Path::new(&lock_path)).map_err(from_keystore_io)?;
        self.refresh()?;
        self.check_anchor(keystore)?;
        Ok(DecisionGuard::holding(lock))
    }

    /// Reads lines other writers appended since this handle's last look.
    fn refresh(&mut self) -> Result<(), AuditError> {
        let path = self.path.as_path();
        let changed = || AuditError::Changed {
            path: path.display().to_string(),
        };
        let mut file = match File::open(path) {
            Ok(f) => f,
            // Missing: check_anchor says whether that is allowed.
            Err(e) if e.kind() == io::ErrorKind::NotFound && self.len == 0 => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(changed()),
            Err(e) => return Err(io_error(path)(e)),
        };
        file.lock_shared().map_err(io_error(path))?;
        let len = file.metadata().map_err(io_error(path))?.len();
        if len == self.len {
            return Ok(());
        }
        if len < self.len {
            return Err(changed());
        }
        use std::io::{Seek, SeekFrom};
        file.seek(SeekFrom::Start(self.len))
            .map_err(io_error(path))?;
        let mut tail = Vec::new();
        file.read_to_end(&mut tail).map_err(io_error(path))?;
        extend_chain(&mut self.chain, &tail, &self.owner)?;
        self.len = self.len.saturating_add(tail.len() as u64);
        Ok(())
    }

    /// Moves the anchor to where this log ends, whatever the anchor says,
    /// and records that (with the old anchor) as the log's next entry: the
    /// keystore holder's way forward after the log was honestly lost or
    /// damaged and an older copy (or an empty log) is all there is. Entries
    /// the anchor covered and the log lacks are forgotten: replay
    /// protection and the rolling window no longer see them, which is why
    /// this needs the unlocked keystore and is never done automatically.
    ///
    /// # Errors
    /// [`AuditError::Keystore`] when the anchor cannot be read or moved, or
    /// an error of [`AuditLog::append`].
    pub fn reanchor(
        &mut self,
        keystore: &dyn Keystore,
        now: u64,
        reason: &str,
    ) -> Result<AuditHead, AuditError> {
        let anchor = keystore.anchor()?;
        let old = anchor.audit;
        keystore.replace_anchor(&anchor, &anchor.with_audit(self.head()))?;
        let text = format!(
            "re-anchored by the keystore holder: the anchor said {old}, the log ended at {}; {reason}",
            self.head()
        );
        let at = now.max(self.last_time());
        self.append(keystore, at, AuditRecord::new(AuditEvent::Note { text }))?;
        Ok(old)
    }

    /// Where this handle's log ends.
    pub fn head(&self) -> AuditHead {
        match self.chain.history.last() {
            Some(last) => AuditHead {
                seq: last.seq,
                hash: self.chain.head,
            },
            None => AuditHead::EMPTY,
        }
    }

    /// Checks the log against its anchor in `keystore`: the log must end
    /// exactly at the anchored entry, or one entry after it (a crash between
    /// an append and the anchor's move; the anchor is then moved up).
    ///
    /// # Errors
    /// [`AuditError::BehindAnchor`] for a missing or cut log,
    /// [`AuditError::Forked`] when the anchored entry is another,
    /// [`AuditError::AheadOfAnchor`] for more than one unanchored entry,
    /// [`AuditError::Keystore`] when the anchor cannot be read or moved.
    pub fn check_anchor(&self, keystore: &dyn Keystore) -> Result<(), AuditError> {
        let anchor = keystore.anchor()?;
        let target = self.position_of(&anchor.audit)?;
        if target != anchor.audit {
            keystore.replace_anchor(&anchor, &anchor.with_audit(target))?;
        }
        Ok(())
    }

    /// Where the anchor should be given that the keystore anchored
    /// `anchored`: this log's head, if it is at or one after `anchored`.
    fn position_of(&self, anchored: &AuditHead) -> Result<AuditHead, AuditError> {
        let path = || self.path.display().to_string();
        let head = self.head();
        if head.seq < anchored.seq {
            return Err(AuditError::BehindAnchor {
                path: path(),
                log: head,
                anchor: *anchored,
            });
        }
        let at_anchor = match anchored.seq {
            0 => AuditHead::EMPTY,
            seq => {
                let index = usize::try_from(seq - 1).unwrap_or(usize::MAX);
                let entry = self
                    .chain
                    .history
                    .entries()
                    .get(index)
                    .ok_or(AuditError::Forked { path: path(), seq })?;
                let hash = Sha256::digest(entry.to_line()?).into();
                AuditHead { seq, hash }
            }
        };
        if at_anchor != *anchored {
            return Err(AuditError::Forked {
                path: path(),
                seq: anchored.seq,
            });
        }
        match head.seq - anchored.seq {
            0 | 1 => Ok(head),
            ahead => Err(AuditError::AheadOfAnchor {
                path: path(),
                ahead,
                anchor: *anchored,
            }),
        }
    }

    /// Signs `record` at `time` (unix seconds) with `keystore`'s identity key,
    /// appends it as the next entry, and makes it durable before returning:
    /// release the recorded action only after this returns `Ok`.
    ///
    /// # Errors
    /// [`AuditError::NotOwner`] when the keystore's identity is not the log's
    /// owner, [`AuditError::TimeWentBackwards`] for a time before the last
    /// entry's, [`AuditError::Changed`] when the file was changed by someone
    /// else or an earlier append on this handle failed, [`AuditError::Keystore`]
    /// when signing fails, [`AuditError::Io`] when writing or syncing fails (the
    /// entry may then be in the file anyway; open the log again).
    pub fn append(
        &mut self,
        keystore: &dyn Keystore,
        time: u64,
        record: AuditRecord,
    ) -> Result<AuditEntry, AuditError> {
        let signer = keystore.identity_public_key()?;
        if signer != self.owner {
            return Err(AuditError::NotOwner {
                owner: Box::new(self.owner),
                keystore: Box::new(signer),
            });
        }
        // Another writer first (write_line checks again under the lock)...
        let on_disk = match std::fs::metadata(&self.path) {
            Ok(m) => m.len(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => 0,
            Err(e) => return Err(io_error(&self.path)(e)),
        };
        if on_disk != self.len {
            return Err(AuditError::Changed {
                path: self.path.display().to_string(),
            });
        }
        // ...then refuse to write onto a log that is behind, forked or too
        // far ahead; one entry past the anchor (a crash) is caught up first,
        // so a crash during this append again leaves at most one.
        let mut anchor = keystore.anchor()?;
        let position = self.position_of(&anchor.audit)?;
        if position != anchor.audit {
            let caught_up = anchor.with_audit(position);
            keystore.replace_anchor(&anchor, &caught_up)?;
            anchor = caught_up;
        }
        let (seq, last_time) = match self.chain.history.last() {
            Some(last) => (last.seq.checked_add(1).ok_or(AuditError::Full)?, last.time),
            None => (1, 0),
        };
        if time < last_time {
            return Err(AuditError::TimeWentBackwards {
                last: last_time,
                given: time,
            });
        }
        let prev_hash = hex::encode(self.chain.head);
        let message = UnsignedEntry {
            seq,
            time,
            record: &record,
            prev_hash: &prev_hash,
            signer: &signer,
        }
        .signing_bytes()?;
        let signature = keystore.sign_identity(&message)?;
        // A token that signs wrongly would leave a log that no longer opens.
        self.owner
            .verify(&message, &signature)
            .map_err(KeystoreError::from)?;
        let entry = AuditEntry {
            seq,
            time,
            record,
            prev_hash,
            signer,
            signature,
        };
        let line = entry.to_line()?;
        self.write_line(&line)?;
        self.chain.head = Sha256::digest(&line).into();
        self.len = self.len.saturating_add(line.len() as u64);
        self.chain.history.push(entry.clone());
        // The line is durable; now the anchor follows it. A crash between
        // the two leaves the log one entry ahead, which check_anchor accepts.
        keystore.replace_anchor(&anchor, &anchor.with_audit(self.head()))?;
        Ok(entry)
    }

    /// Appends `line` under an exclusive lock, after checking that the file
    /// is as this handle left it, and syncs the file (and the directory when
    /// the file is new). On failure `self.len` is left as it was, so the
    /// handle refuses further appends.
    fn write_line(&self, line: &[u8]) -> Result<(), AuditError> {
        let path = self.path.as_path();
        let changed = || AuditError::Changed {
            path: path.display().to_string(),
        };
        let (mut file, created) = match OpenOptions::new().append(true).open(path) {
            Ok(file) => (file, false),
            Err(e) if e.kind() == io::ErrorKind::NotFound && self.len == 0 => {
                let mut opts = OpenOptions::new();
                opts.append(true).create_new(true);
                #[cfg(unix)]
                {
                    use std::os::unix::fs::OpenOptionsExt;
                    opts.mode(0o600);
                }
                match opts.open(path) {
                    Ok(file) => (file, true),
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Err(changed()),
                    Err(e) => return Err(io_error(path)(e)),
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(changed()),
            Err(e) => return Err(io_error(path)(e)),
        };
        file.lock().map_err(io_error(path))?;
        let len = file.metadata().map_err(io_error(path))?.len();
        if len != self.len {
            return Err(changed());
        }
        file.write_all(line).map_err(io_error(path))?;
        file.sync_all().map_err(io_error(path))?;
        if created {
            let dir = path
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            files::sync_dir(dir).map_err(from_keystore_io)?;
        }
        Ok(())
    }

    /// The last entry's time (0 for an empty log).
    pub fn last_time(&self) -> u64 {
        self.chain.history.last().map_or(0, |e| e.time)
    }

    /// The verified entries, oldest first.
    pub fn entries(&self) -> &[AuditEntry] {
        self.chain.history.entries()
    }

    /// The verified entries with the indexes a signer's lookups use.
    pub fn history(&self) -> &AuditHistory {
        &self.chain.history
    }

    /// Hex SHA-256 of the last line (the owner's [`genesis_hash`] for an empty
    /// log). Store it outside this host after appending and compare it after
    /// opening: that is the only way to notice entries removed from the end.
    pub fn head_hash(&self) -> String {
        hex::encode(self.chain.head)
    }

    /// The log's owner.
    pub fn owner(&self) -> &IdentityPublicKey {
        &self.owner
    }

    /// The log file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Satoshis released at or after `since` (unix seconds): the sum of
    /// `amount_sat` over [`AuditEvent::ShareReleased`] entries with
    /// `time >= since`, saturating at `u64::MAX`. For rolling limits.
    pub fn amount_released_since(&self, since: u64) -> u64 {
        self.chain.history.amount_released_since(since)
    }

    /// `fee_sat` over [`AuditEvent::ShareReleased`] entries with
    /// `time >= since` (the fees within a rolling window).
    pub fn fee_released_since(&self, since: u64) -> u64 {
        self.chain.history.fee_released_since(since)
    }

    /// Whether request `request_id` was already seen, approved, refused or
    /// had a share released — a signer handles each request id once.
    pub fn has_seen_request(&self, request_id: &str) -> bool {
        self.chain.history.entries().iter().any(|e| {
            e.record.request_id.as_deref() == Some(request_id)
                && matches!(
                    e.record.event,
                    AuditEvent::RequestSeen
                        | AuditEvent::Approved
                        | AuditEvent::Refused { .. }
                        | AuditEvent::ShareReleased
                )
        })
    }
}
