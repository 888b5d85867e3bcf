//! An append-only, hash-chained, identity-signed audit log (threat model R7).
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
//! leaves a shorter log that is perfectly valid. To detect that, anchor the
//! latest [`AuditLog::head_hash`] (with the entry count) somewhere the log's
//! host cannot rewrite — another machine, a peer signer, a printed record —
//! and compare it after opening. Likewise, someone holding the owner's
//! identity key can write a whole new valid log; the log protects against
//! tampering by people without that key.
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
//! One process writes a given log at a time. Appends take an exclusive lock
//! on the file and refuse to write when the file is not as the handle last
//! saw it, so a second writer is caught rather than forking the chain.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::format::write_canonical_json;
use crate::identity::{IdentityPublicKey, IdentitySignature};
use crate::keystore::{files, Keystore, KeystoreError};

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
        /// The policy rule that refused it.
        rule: String,
        /// Why, in words for an operator.
        reason: String,
    },
    /// A signature share left this signer.
    ShareReleased,
    /// The coordinator aggregated shares into a signature.
    Aggregated,
    /// The transaction was finalized.
    Finalized,
    /// Free text for operators (never a secret).
    Note {
        /// The note.
        text: String,
    },
}

/// The content of an audit entry: an event and what it concerns.
///
/// Build one with [`AuditRecord::new`] and the `with_*` methods. Digests and
/// sighashes are lowercase hex strings, as the caller gives them (the log
/// signs what it is given and does not parse them).
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
    /// Hex digest of the request concerned, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_digest: Option<String>,
    /// Hex sighashes signed (or refused), in input order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sighashes: Vec<String>,
    /// Hex digest of the policy that decided, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_digest: Option<String>,
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
        }
    }

    /// Names the signing request concerned.
    #[must_use]
    pub fn with_request_id(mut self, request_id: impl Into<String>) -> Self {
        self.request_id = Some(request_id.into());
        self
    }

    /// Records the request's requester (hex identity key).
    #[must_use]
    pub fn with_requester(mut self, requester_hex: impl Into<String>) -> Self {
        self.requester = Some(requester_hex.into());
        self
    }

    /// Records the request's digest, as lowercase hex.
    #[must_use]
    pub fn with_request_digest(mut self, digest_hex: impl Into<String>) -> Self {
        self.request_digest = Some(digest_hex.into());
        self
    }

    /// Records the sighashes concerned, as lowercase hex in input order,
    /// replacing any set before.
    #[must_use]
    pub fn with_sighashes(mut self, sighashes_hex: Vec<String>) -> Self {
        self.sighashes = sighashes_hex;
        self
    }

    /// Records the digest of the policy that decided, as lowercase hex.
    #[must_use]
    pub fn with_policy_digest(mut self, digest_hex: impl Into<String>) -> Self {
        self.policy_digest = Some(digest_hex.into());
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
    entries: Vec<AuditEntry>,
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
    verify_chain(bytes, owner).map(|chain| chain.entries)
}

fn verify_chain(bytes: &[u8], owner: &IdentityPublicKey) -> Result<Chain, AuditError> {
    let mut entries: Vec<AuditEntry> = Vec::new();
    let mut head = genesis(owner);
    for (index, chunk) in bytes.split_inclusive(|b| *b == b'\n').enumerate() {
        let line = index.saturating_add(1);
        let Some(content) = chunk.strip_suffix(b"\n") else {
            return Err(AuditError::Truncated { line });
        };
        let entry = check_line(content, line, &head, entries.last(), owner)?;
        head = Sha256::digest(chunk).into();
        entries.push(entry);
    }
    Ok(Chain { entries, head })
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
    entries: Vec<AuditEntry>,
    head: [u8; 32],
    /// The file's length as last verified or written.
    len: u64,
}

impl fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditLog")
            .field("path", &self.path)
            .field("owner", &self.owner)
            .field("entries", &self.entries.len())
            .field("head", &hex::encode(self.head))
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
                let mut bytes = Vec::new();
                file.read_to_end(&mut bytes).map_err(io_error(path))?;
                bytes
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(io_error(path)(e)),
        };
        let chain = verify_chain(&bytes, owner)?;
        Ok(AuditLog {
            path: path.to_owned(),
            owner: *owner,
            entries: chain.entries,
            head: chain.head,
            len: bytes.len() as u64,
        })
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
        let (seq, last_time) = match self.entries.last() {
            Some(last) => (last.seq.checked_add(1).ok_or(AuditError::Full)?, last.time),
            None => (1, 0),
        };
        if time < last_time {
            return Err(AuditError::TimeWentBackwards {
                last: last_time,
                given: time,
            });
        }
        let prev_hash = hex::encode(self.head);
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
        self.head = Sha256::digest(&line).into();
        self.len = self.len.saturating_add(line.len() as u64);
        self.entries.push(entry.clone());
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
            files::sync_dir(dir).map_err(|e| match e {
                KeystoreError::Io { path, source } => AuditError::Io { path, source },
                other => AuditError::Keystore(other),
            })?;
        }
        Ok(())
    }

    /// The verified entries, oldest first.
    pub fn entries(&self) -> &[AuditEntry] {
        &self.entries
    }

    /// Hex SHA-256 of the last line (the owner's [`genesis_hash`] for an empty
    /// log). Store it outside this host after appending and compare it after
    /// opening: that is the only way to notice entries removed from the end.
    pub fn head_hash(&self) -> String {
        hex::encode(self.head)
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
        self.entries
            .iter()
            .filter(|e| e.time >= since && matches!(e.record.event, AuditEvent::ShareReleased))
            .filter_map(|e| e.record.amount_sat)
            .fold(0u64, u64::saturating_add)
    }

    /// `fee_sat` over [`AuditEvent::ShareReleased`] entries with
    /// `time >= since` (the fees within a rolling window).
    pub fn fee_released_since(&self, since: u64) -> u64 {
        self.entries
            .iter()
            .filter(|e| e.time >= since && matches!(e.record.event, AuditEvent::ShareReleased))
            .filter_map(|e| e.record.fee_sat)
            .fold(0u64, u64::saturating_add)
    }

    /// Whether request `request_id` was already seen, approved, refused or
    /// had a share released — a signer handles each request id once.
    pub fn has_seen_request(&self, request_id: &str) -> bool {
        self.entries.iter().any(|e| {
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
