//! The verified entries of a log, indexed for the lookups a signer makes on
//! every request, so that none of them grows with the log.

use std::collections::{BTreeSet, HashMap};

use super::{AuditEntry, AuditEvent};
use crate::keystore::SessionId;

/// A request as the log names it: its requester's identity key (hex) and its
/// id. Request ids are unique per requester.
type RequestKey = (String, String);

/// One share release, for the rolling window: its time and the running
/// totals up to and including it. Totals are `u128`, which a log of fewer
/// than 2^64 entries cannot overflow, so any window's sum is exact before
/// it is saturated to `u64`.
#[derive(Clone, Copy, Debug)]
struct Release {
    time: u64,
    amount_total: u128,
    fee_total: u128,
}

/// A log's verified entries, oldest first, with indexes:
///
/// - the entries about one request ([`AuditHistory::about`]): a hash
///   lookup, then only that request's entries;
/// - the amount and fees released since a time
///   ([`AuditHistory::amount_released_since`]): a binary search over running
///   totals (entry times never go backwards);
/// - the approvals that never led to a release nor were superseded, oldest
///   first ([`AuditHistory::open_approvals_before`]).
///
/// Built entry by entry as a log is verified or appended to; it never holds
/// anything the entries do not.
#[derive(Clone, Debug, Default)]
pub struct AuditHistory {
    entries: Vec<AuditEntry>,
    about: HashMap<RequestKey, Vec<usize>>,
    releases: Vec<Release>,
    /// Open approvals by (time, position).
    open: BTreeSet<(u64, usize)>,
    /// Where each approval's session was approved.
    approved_session: HashMap<SessionId, usize>,
}

impl AuditHistory {
    /// The entries, oldest first.
    pub fn entries(&self) -> &[AuditEntry] {
        &self.entries
    }

    /// The last entry, if any.
    pub fn last(&self) -> Option<&AuditEntry> {
        self.entries.last()
    }

    /// The number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entries about the request `request_id` of the requester whose
    /// identity key is `requester_hex`, oldest first.
    pub fn about<'s>(
        &'s self,
        requester_hex: &str,
        request_id: &str,
    ) -> impl Iterator<Item = &'s AuditEntry> + 's {
        let key = (requester_hex.to_owned(), request_id.to_owned());
        self.about
            .get(&key)
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .filter_map(|&i| self.entries.get(i))
    }

    /// Satoshis released at or after `since` (unix seconds): `amount_sat`
    /// summed over [`AuditEvent::ShareReleased`] entries, saturating.
    pub fn amount_released_since(&self, since: u64) -> u64 {
        self.released_since(since, |r| r.amount_total)
    }

    /// `fee_sat` summed over [`AuditEvent::ShareReleased`] entries at or
    /// after `since` (the fees within a rolling window).
    pub fn fee_released_since(&self, since: u64) -> u64 {
        self.released_since(since, |r| r.fee_total)
    }

    fn released_since(&self, since: u64, total: impl Fn(&Release) -> u128) -> u64 {
        let Some(last) = self.releases.last() else {
            return 0;
        };
        let first = self.releases.partition_point(|r| r.time < since);
        let before = match first.checked_sub(1).and_then(|i| self.releases.get(i)) {
            Some(r) => total(r),
            None => 0,
        };
        u64::try_from(total(last).saturating_sub(before)).unwrap_or(u64::MAX)
    }

    /// [`AuditEvent::Approved`] entries (with a nonce session) dated before
    /// `cutoff` whose session was never superseded nor used by a share
    /// release, oldest first.
    pub fn open_approvals_before(&self, cutoff: u64) -> impl Iterator<Item = &AuditEntry> + '_ {
        self.open
            .range(..(cutoff, 0))
            .filter_map(|&(_, i)| self.entries.get(i))
    }

    pub(crate) fn into_entries(self) -> Vec<AuditEntry> {
        self.entries
    }

    /// Adds the next entry (already verified) and indexes it.
    pub(crate) fn push(&mut self, entry: AuditEntry) {
        let position = self.entries.len();
        let key = match (&entry.record.requester, &entry.record.request_id) {
            (Some(requester), Some(id)) => Some((requester.clone(), id.clone())),
            _ => None,
        };
        if let Some(key) = &key {
            self.about.entry(key.clone()).or_default().push(position);
        }
        match entry.record.event {
            AuditEvent::ShareReleased => {
                let (amount, fee) = self
                    .releases
                    .last()
                    .map_or((0, 0), |r| (r.amount_total, r.fee_total));
                self.releases.push(Release {
                    time: entry.time,
                    amount_total: amount
                        .saturating_add(u128::from(entry.record.amount_sat.unwrap_or(0))),
                    fee_total: fee.saturating_add(u128::from(entry.record.fee_sat.unwrap_or(0))),
                });
                if let Some(session) = entry.record.session {
                    // A release names the approval it used: that one is
                    // closed (a later session's approval stays open).
                    self.close_session(&session);
                } else if let Some(key) = key {
                    // Releases recorded before they named their approval
                    // close every approval of the request.
                    for &i in self.about.get(&key).map(Vec::as_slice).unwrap_or_default() {
                        if let Some(e) = self.entries.get(i) {
                            self.open.remove(&(e.time, i));
                        }
                    }
                }
            }
            AuditEvent::Approved => {
                if let Some(session) = entry.record.session {
                    self.approved_session.insert(session, position);
                    self.open.insert((entry.time, position));
                }
            }
            AuditEvent::ApprovalSuperseded => {
                if let Some(session) = entry.record.session {
                    self.close_session(&session);
                }
            }
            _ => {}
        }
        self.entries.push(entry);
    }

    /// The approval of `session` is no longer open.
    fn close_session(&mut self, session: &SessionId) {
        if let Some(&i) = self.approved_session.get(session) {
            if let Some(e) = self.entries.get(i) {
                self.open.remove(&(e.time, i));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use rand_chacha::rand_core::{RngCore, SeedableRng};
    use rand_chacha::ChaCha20Rng;

    use super::*;
    use crate::audit::AuditRecord;
    use crate::identity::SoftwareIdentity;

    /// What the indexes answer, computed by scanning every entry as the
    /// signer did before they existed.
    fn scan_about<'e>(entries: &'e [AuditEntry], req: &str, id: &str) -> Vec<&'e AuditEntry> {
        entries
            .iter()
            .filter(|e| {
                e.record.requester.as_deref() == Some(req)
                    && e.record.request_id.as_deref() == Some(id)
            })
            .collect()
    }

    fn scan_released(entries: &[AuditEntry], since: u64) -> (u64, u64) {
        let released = entries
            .iter()
            .filter(|e| e.time >= since && matches!(e.record.event, AuditEvent::ShareReleased));
        released.fold((0u64, 0u64), |(a, f), e| {
            (
                a.saturating_add(e.record.amount_sat.unwrap_or(0)),
                f.saturating_add(e.record.fee_sat.unwrap_or(0)),
            )
        })
    }

    /// Open: approved, its session neither superseded nor named by a
    /// release, and no release without a session (an old log's) after it
    /// for the same request.
    fn scan_open(entries: &[AuditEntry], cutoff: u64) -> Vec<u64> {
        let closed: std::collections::BTreeSet<_> = entries
            .iter()
            .filter(|e| {
                matches!(
                    e.record.event,
                    AuditEvent::ApprovalSuperseded | AuditEvent::ShareReleased
                )
            })
            .filter_map(|e| e.record.session)
            .collect();
        let same_request = |a: &AuditEntry, b: &AuditEntry| {
            a.record.request_id == b.record.request_id && a.record.requester == b.record.requester
        };
        entries
            .iter()
            .filter(|e| e.time < cutoff && matches!(e.record.event, AuditEvent::Approved))
            .filter(|e| e.record.session.is_some_and(|s| !closed.contains(&s)))
            .filter(|e| {
                !entries.iter().any(|r| {
                    r.seq > e.seq
                        && matches!(r.record.event, AuditEvent::ShareReleased)
                        && r.record.session.is_none()
                        && same_request(r, e)
                })
            })
            .map(|e| e.seq)
            .collect()
    }

    #[test]
    fn the_indexes_answer_what_a_scan_answers() {
        let me = SoftwareIdentity::from_secret_bytes(&[7u8; 32]).unwrap();
        let signature = me.sign(b"not checked here");
        for seed in 0..20u64 {
            let mut rng = ChaCha20Rng::seed_from_u64(seed);
            let mut history = AuditHistory::default();
            let mut sessions = Vec::new();
            let mut time = 0u64;
            for seq in 1..=300u64 {
                time += rng.next_u64() % 3;
                let request = rng.next_u64() % 12;
                let event = match rng.next_u64() % 6 {
                    0 => AuditEvent::RequestSeen,
                    1 | 2 => AuditEvent::Approved,
                    3 => AuditEvent::ShareReleased,
                    4 => AuditEvent::ApprovalSuperseded,
                    _ => AuditEvent::Finalized,
                };
                let mut record = AuditRecord::new(event.clone());
                record.request_id = Some(format!("r-{request}"));
                record.requester = Some(format!("k-{}", request % 3));
                match event {
                    AuditEvent::Approved => {
                        let s = SessionId::random();
                        sessions.push(s);
                        record.session = Some(s);
                    }
                    AuditEvent::ApprovalSuperseded if !sessions.is_empty() => {
                        let i = (rng.next_u64() as usize) % sessions.len();
                        record.session = sessions.get(i).copied();
                    }
                    AuditEvent::ShareReleased => {
                        // Half name the approval they used (as releases do
                        // now), half none (as older logs' releases).
                        if !sessions.is_empty() && rng.next_u64() % 2 == 0 {
                            let i = (rng.next_u64() as usize) % sessions.len();
                            record.session = sessions.get(i).copied();
                        }
                        // Now and then an amount near u64::MAX, so sums
                        // saturate.
                        record.amount_sat = Some(match rng.next_u64() % 8 {
                            0 => u64::MAX - rng.next_u64() % 3,
                            _ => rng.next_u64() % 1_000_000,
                        });
                        record.fee_sat = Some(rng.next_u64() % 1_000);
                    }
                    _ => {}
                }
                history.push(AuditEntry {
                    seq,
                    time,
                    record,
                    prev_hash: String::new(),
                    signer: me.public_key(),
                    signature,
                });
            }
            let entries = history.entries().to_vec();
            for request in 0..12 {
                let (req, id) = (format!("k-{}", request % 3), format!("r-{request}"));
                let indexed: Vec<_> = history.about(&req, &id).collect();
                assert_eq!(indexed, scan_about(&entries, &req, &id), "seed {seed}");
            }
            for since in (0..=time + 1).step_by(7) {
                let indexed = (
                    history.amount_released_since(since),
                    history.fee_released_since(since),
                );
                assert_eq!(
                    indexed,
                    scan_released(&entries, since),
                    "seed {seed} since {since}"
                );
                let open: Vec<u64> = history
                    .open_approvals_before(since)
                    .map(|e| e.seq)
                    .collect();
                assert_eq!(
                    open,
                    scan_open(&entries, since),
                    "seed {seed} cutoff {since}"
                );
            }
        }
    }
}
