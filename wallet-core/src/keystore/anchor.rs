//! The signer state that a disk writer must not be able to roll back,
//! anchored inside the keystore (on the token, or in the software keystore's
//! encrypted state).
//!
//! A [`StateAnchor`] holds two things:
//!
//! - the **audit head**: the sequence number and line hash of the latest
//!   entry of the signer's audit log ([`AuditHead`]). It moves with every
//!   append, so a log that is missing, shorter than its anchor, or forked is
//!   detected before any decision reads it (see
//!   [`AuditLog`](crate::audit::AuditLog));
//! - the **pinned policy**: the digest of the policy the keystore's holder
//!   installed ([`Policy::digest`](crate::policy::Policy::digest)). A policy
//!   file whose digest differs is not in force, whatever its content.
//!
//! Its byte form ([`StateAnchor::to_bytes`]) is a contract (76 bytes,
//! big-endian): the tag `KA1\0`, the audit sequence (8 bytes), the head hash
//! (32), a flag byte (0: no policy pinned, 1: pinned) and the policy digest
//! (32, zero when none).

use std::fmt;

use super::KeystoreError;

/// The tag that starts an anchor's bytes (format version 1).
const TAG: &[u8; 4] = b"KA1\0";

/// The length of [`StateAnchor::to_bytes`].
pub const ANCHOR_LEN: usize = 4 + 8 + 32 + 1 + 32;

/// Where an audit log must be: its last entry's sequence number and line
/// hash. Sequence 0 is the empty log (the hash is then all zero).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct AuditHead {
    /// The last entry's sequence number (0 for an empty log).
    pub seq: u64,
    /// SHA-256 of the last entry's line (all zero for an empty log).
    pub hash: [u8; 32],
}

impl AuditHead {
    /// The head of an empty log.
    pub const EMPTY: AuditHead = AuditHead {
        seq: 0,
        hash: [0; 32],
    };
}

impl fmt::Debug for AuditHead {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AuditHead({}, {})", self.seq, hex::encode(self.hash))
    }
}

impl fmt::Display for AuditHead {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.seq == 0 {
            f.write_str("an empty log")
        } else {
            write!(
                f,
                "entry {} (line hash {}…)",
                self.seq,
                hex::encode(self.hash.get(..8).unwrap_or_default())
            )
        }
    }
}

/// The rollback-proof part of a signer's state (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct StateAnchor {
    /// Where the audit log must be.
    pub audit: AuditHead,
    /// The digest of the installed policy, if one was installed.
    pub policy: Option<[u8; 32]>,
}

impl fmt::Display for StateAnchor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "audit log at {}, ", self.audit)?;
        match &self.policy {
            Some(p) => write!(
                f,
                "policy {}… pinned",
                hex::encode(p.get(..8).unwrap_or_default())
            ),
            None => f.write_str("no policy pinned"),
        }
    }
}

impl StateAnchor {
    /// [`KeystoreError::AnchorMoved`] for a compare-and-swap that found
    /// `found` where `self` was expected.
    pub fn moved(&self, found: &StateAnchor) -> KeystoreError {
        KeystoreError::AnchorMoved {
            expected: self.to_string(),
            found: found.to_string(),
        }
    }

    /// The anchor of a new keystore: an empty log, no policy.
    pub const NEW: StateAnchor = StateAnchor {
        audit: AuditHead::EMPTY,
        policy: None,
    };

    /// The anchor with the audit head moved to `head`.
    #[must_use]
    pub fn with_audit(self, head: AuditHead) -> Self {
        StateAnchor {
            audit: head,
            ..self
        }
    }

    /// The anchor with `digest` pinned as the policy in force.
    #[must_use]
    pub fn with_policy(self, digest: [u8; 32]) -> Self {
        StateAnchor {
            policy: Some(digest),
            ..self
        }
    }

    /// The anchor's 76-byte form (see the module docs).
    pub fn to_bytes(&self) -> [u8; ANCHOR_LEN] {
        let mut out = [0u8; ANCHOR_LEN];
        let (tag, rest) = out.split_at_mut(4);
        tag.copy_from_slice(TAG);
        let (seq, rest) = rest.split_at_mut(8);
        seq.copy_from_slice(&self.audit.seq.to_be_bytes());
        let (hash, rest) = rest.split_at_mut(32);
        hash.copy_from_slice(&self.audit.hash);
        let (flag, digest) = rest.split_at_mut(1);
        if let Some(p) = &self.policy {
            flag.copy_from_slice(&[1]);
            digest.copy_from_slice(p);
        }
        out
    }

    /// Parses [`StateAnchor::to_bytes`].
    ///
    /// # Errors
    /// [`KeystoreError::Tampered`] for anything else.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, KeystoreError> {
        let bad = || KeystoreError::Tampered("state anchor".into());
        let bytes: &[u8; ANCHOR_LEN] = bytes.try_into().map_err(|_| bad())?;
        let (tag, rest) = bytes.split_at(4);
        if tag != TAG {
            return Err(bad());
        }
        let (seq, rest) = rest.split_at(8);
        let (hash, rest) = rest.split_at(32);
        let (flag, digest) = rest.split_at(1);
        let seq = u64::from_be_bytes(seq.try_into().map_err(|_| bad())?);
        let hash: [u8; 32] = hash.try_into().map_err(|_| bad())?;
        let digest: [u8; 32] = digest.try_into().map_err(|_| bad())?;
        let policy = match flag {
            [0] if digest == [0; 32] => None,
            [1] => Some(digest),
            _ => return Err(bad()),
        };
        if seq == 0 && hash != [0; 32] {
            return Err(bad());
        }
        Ok(StateAnchor {
            audit: AuditHead { seq, hash },
            policy,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_round_trip_and_refuse_junk() {
        let a = StateAnchor::NEW
            .with_audit(AuditHead {
                seq: 7,
                hash: [9; 32],
            })
            .with_policy([3; 32]);
        assert_eq!(StateAnchor::from_bytes(&a.to_bytes()).unwrap(), a);
        assert_eq!(
            StateAnchor::from_bytes(&StateAnchor::NEW.to_bytes()).unwrap(),
            StateAnchor::NEW
        );
        let mut b = a.to_bytes();
        b[44] = 2;
        assert!(StateAnchor::from_bytes(&b).is_err());
        assert!(StateAnchor::from_bytes(&b[..75]).is_err());
        let mut c = a.to_bytes();
        c[0] = b'X';
        assert!(StateAnchor::from_bytes(&c).is_err());
    }
}
