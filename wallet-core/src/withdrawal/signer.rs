//! A co-signer's side of a withdrawal. It trusts nothing it did not compute:
//! it verifies the requester, reads the PSBT itself, evaluates its own
//! policy on the parsed transaction, and releases signature shares only for
//! the sighashes it computed, only against approvals it can verify, and only
//! after the release is durably in its audit log.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use frost_core::round1::SigningCommitments;
use frost_core::Identifier;
use sha2::Digest;

use super::request::{
    Approval, BadSignature, MessageRequest, RequestId, Signed, WithdrawalPackages,
    WithdrawalRequest, WithdrawalShares,
};
use super::review::{parse_psbt, review, WithdrawalSummary};
use crate::audit::{AuditError, AuditEvent, AuditLog, AuditRecord, AuditStore, DecisionGuard};
use crate::digest::{PackagesDigest, PolicyDigest, RequestDigest, SigningDigest};
use crate::group::{identifier_hex, Culprit, GroupError, KeyShare, PublicGroup};
use crate::hd::ChildTweak;
use crate::identity::IdentityPublicKey;
use crate::keystore::{self, Keystore, KeystoreError, SecretSlot, SessionId, StoredSignError};
use crate::policy::Policy;
use crate::signing::{self, SignError};
use crate::suite::Secp256k1Tr;

pub use super::refusal::{Refusal, RefusalKind, MAX_CLOCK_SKEW_SECS};

/// What a signer learned from a request it accepts for review.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reviewed {
    /// The request's id.
    pub request_id: RequestId,
    /// The signed request's digest.
    pub request_digest: RequestDigest,
    /// The signer's own reading of the PSBT.
    pub summary: WithdrawalSummary,
    /// The requester's label in this signer's policy.
    pub requester_label: String,
    /// The request's creation time (Unix seconds).
    pub created_at: u64,
    /// The request's expiry (Unix seconds).
    pub expires_at: u64,
    /// The requester's memo, as sent (render it with [`Reviewed::render`]).
    pub memo: String,
}

impl Reviewed {
    /// The whole review as a person reads it: who asked, when, until when,
    /// the memo, the signer's own reading of the transaction and the
    /// verdict. Outside text goes through [`crate::display::inert`]; the
    /// same text serves `sign review` and the approval prompt.
    pub fn render(&self) -> String {
        use crate::display::{inert_bounded, utc_time, MAX_MEMO_CHARS};
        format!(
            "request {} from requester `{}`\n  created {}, expires {}\n  memo \"{}\" (the requester's words, not checked)\n{}\nverdict: allowed by this signer's policy",
            self.request_id,
            inert_bounded(&self.requester_label, crate::display::MAX_LABEL_CHARS),
            utc_time(self.created_at),
            utc_time(self.expires_at),
            inert_bounded(&self.memo, MAX_MEMO_CHARS),
            self.summary
        )
    }
}

/// A signer's answer to one signing session: its shares, and its next
/// approval (fresh nonce commitments) for a later session
/// ([`Signer::sign_session`]).
#[derive(Clone, Debug)]
pub struct SessionReply {
    /// The shares for the session's packages.
    pub shares: Signed<WithdrawalShares>,
    /// The next approval of the same request.
    pub next: Box<Signed<Approval>>,
}

/// What [`Signer::approve_if`] decided.
#[derive(Clone, Debug)]
pub enum Decision {
    /// Approved.
    Approved(Box<Signed<Approval>>),
    /// Allowed by the policy but held (for a person): the review.
    Held(Box<Reviewed>),
}

/// One co-signer: its group, its roster of identity keys, its key share and
/// keystore, its policy and its audit store.
///
/// Built with [`Signer::new`], which checks that the parts belong together.
/// The audit store is any [`AuditStore`]: an [`AuditLog`] file by default,
/// or `&mut AuditLog` to keep the log after the signer is dropped.
pub struct Signer<A: AuditStore = AuditLog> {
    group: PublicGroup<Secp256k1Tr>,
    roster: BTreeMap<Identifier<Secp256k1Tr>, IdentityPublicKey>,
    share: KeyShare<Secp256k1Tr>,
    keystore: Arc<dyn Keystore>,
    policy: Policy,
    audit: A,
}

/// Why the parts given to [`Signer::new`] do not make a signer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SignerError {
    /// The key share is not a share of this group (another group, or a
    /// state before a refresh).
    #[error("the key share does not belong to this group: {0}")]
    ShareNotInGroup(#[source] GroupError),
    /// The roster does not name exactly the group's members.
    #[error("the roster does not match the group: {}", .0.join("; "))]
    RosterMismatch(Vec<String>),
    /// The keystore's identity key is not this member's key in the roster.
    #[error("the keystore's identity key is not {member}'s key in the roster")]
    NotOwnKey {
        /// This signer, as the group names it.
        member: Culprit<Secp256k1Tr>,
    },
    /// The keystore's identity key is not in the roster at all.
    #[error("the keystore's identity key is not in the roster: this keystore is not a member's")]
    NotInRoster,
    /// The keystore could not be read, or holds no share of this group.
    #[error(transparent)]
    Keystore(#[from] KeystoreError),
}

impl<A: AuditStore> Signer<A> {
    /// A signer of `group` holding `share` in `keystore`, trusting the
    /// identity keys of `roster`, deciding by `policy`, recording in `audit`.
    ///
    /// # Errors
    /// [`SignerError`] when the share is not the group's, the roster does
    /// not name exactly the group's members, or the keystore's identity key
    /// is not this member's key in the roster.
    pub fn new(
        group: PublicGroup<Secp256k1Tr>,
        roster: BTreeMap<Identifier<Secp256k1Tr>, IdentityPublicKey>,
        share: KeyShare<Secp256k1Tr>,
        keystore: Arc<dyn Keystore>,
        policy: Policy,
        audit: A,
    ) -> Result<Self, SignerError> {
        share
            .check_member_of(&group)
            .map_err(SignerError::ShareNotInGroup)?;
        let members: BTreeSet<_> = group.participants().keys().copied().collect();
        let listed: BTreeSet<_> = roster.keys().copied().collect();
        let mut mismatch: Vec<String> = members
            .difference(&listed)
            .map(|id| format!("{} has no identity key", group.culprit(id)))
            .collect();
        mismatch.extend(
            listed
                .difference(&members)
                .map(|id| format!("{} is listed", group.culprit(id))),
        );
        if !mismatch.is_empty() {
            return Err(SignerError::RosterMismatch(mismatch));
        }
        let me = *share.identifier();
        if roster.get(&me) != Some(&keystore.identity_public_key()?) {
            return Err(SignerError::NotOwnKey {
                member: group.culprit(&me),
            });
        }
        Ok(Signer {
            group,
            roster,
            share,
            keystore,
            policy,
            audit,
        })
    }

    /// The signer whose share is the one stored in `keystore`: the member
    /// whose roster key is the keystore's identity key, its share loaded
    /// with [`keystore::load_share`], then checked as [`Signer::new`] does.
    ///
    /// # Errors
    /// [`SignerError::NotInRoster`], a share that cannot be loaded, or any
    /// error of [`Signer::new`].
    pub fn open(
        group: PublicGroup<Secp256k1Tr>,
        roster: BTreeMap<Identifier<Secp256k1Tr>, IdentityPublicKey>,
        keystore: Arc<dyn Keystore>,
        policy: Policy,
        audit: A,
    ) -> Result<Self, SignerError> {
        let me = keystore.identity_public_key()?;
        let id = roster
            .iter()
            .find_map(|(id, key)| (*key == me).then_some(*id))
            .ok_or(SignerError::NotInRoster)?;
        let share = keystore::load_share(&*keystore, &group, &id)?;
        Signer::new(group, roster, share, keystore, policy, audit)
    }

    /// The group.
    pub fn group(&self) -> &PublicGroup<Secp256k1Tr> {
        &self.group
    }

    /// Every member's identity key.
    pub fn roster(&self) -> &BTreeMap<Identifier<Secp256k1Tr>, IdentityPublicKey> {
        &self.roster
    }

    /// This signer's identifier.
    pub fn identifier(&self) -> &Identifier<Secp256k1Tr> {
        self.share.identifier()
    }

    /// The policy.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The keystore.
    pub fn keystore(&self) -> &Arc<dyn Keystore> {
        &self.keystore
    }

    /// The audit store.
    pub fn audit(&self) -> &A {
        &self.audit
    }

    /// The audit store, to give back.
    pub fn into_audit(self) -> A {
        self.audit
    }
}

impl<A: AuditStore> std::fmt::Debug for Signer<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("group", self.group.id())
            .field("participant", self.share.label())
            .field("keystore", &self.keystore.describe())
            .finish_non_exhaustive()
    }
}

/// Text from outside, cut to a length an audit entry should carry.
fn bounded(text: &str) -> String {
    const MAX: usize = 512;
    match text.char_indices().nth(MAX) {
        Some((i, _)) => format!("{}…", text.get(..i).unwrap_or_default()),
        None => text.to_owned(),
    }
}

/// A signed request a signer can approve: a withdrawal or a raw message.
trait Subject {
    fn request_id(&self) -> &RequestId;
    fn requester(&self) -> &IdentityPublicKey;
    fn memo(&self) -> &str;
    fn times(&self) -> (u64, u64);
    fn signature_ok(&self, group: &crate::format::GroupId) -> bool;
    fn digest(
        &self,
        group: &crate::format::GroupId,
    ) -> Result<RequestDigest, crate::format::FormatError>;
}

macro_rules! subject {
    ($t:ty) => {
        impl Subject for Signed<$t> {
            fn request_id(&self) -> &RequestId {
                &self.body.request_id
            }
            fn requester(&self) -> &IdentityPublicKey {
                &self.body.requester
            }
            fn memo(&self) -> &str {
                &self.body.memo
            }
            fn times(&self) -> (u64, u64) {
                (self.body.created_at, self.body.expires_at)
            }
            fn signature_ok(&self, group: &crate::format::GroupId) -> bool {
                self.signer == self.body.requester && self.verify(group).is_ok()
            }
            fn digest(
                &self,
                group: &crate::format::GroupId,
            ) -> Result<RequestDigest, crate::format::FormatError> {
                self.request_digest(group)
            }
        }
    };
}

subject!(WithdrawalRequest);
subject!(MessageRequest);

/// What a signer computed from a request it accepts: the messages to sign
/// (one per input, or the raw message), and what leaves the wallet.
#[derive(Clone)]
struct Checked {
    request_id: RequestId,
    request_digest: RequestDigest,
    messages: Vec<SigningDigest>,
    /// Per message, the tweak from the group key to the key it is signed
    /// under (zero for the group key itself).
    tweaks: Vec<ChildTweak>,
    amount_sat: Option<u64>,
    fee_sat: Option<u64>,
}

impl<A: AuditStore> Signer<A> {
    /// Checks a request and reads its PSBT: requester signature and
    /// authorisation, times, PSBT review and policy. Records `request-seen`
    /// or the refusal.
    ///
    /// # Errors
    /// The [`Refusal`], after recording it.
    pub fn review(
        &mut self,
        request: &Signed<WithdrawalRequest>,
        now: u64,
    ) -> Result<Reviewed, Refusal> {
        let _guard = self.begin()?;
        match self.check_request(request, now) {
            Ok((reviewed, _)) => {
                let record = self.seen_record(request, &reviewed);
                self.record(now, record)?;
                Ok(reviewed)
            }
            Err(e) => Err(self.refuse(request, e, now)),
        }
    }

    /// Records that this signer's operator declined `request` (after reading
    /// its review) and returns that refusal. Nothing else changes: an
    /// approval already given stays (withdraw it by not signing).
    pub fn decline(
        &mut self,
        request: &Signed<WithdrawalRequest>,
        reason: &str,
        now: u64,
    ) -> Refusal {
        let reason = crate::display::inert_bounded(reason, crate::display::MAX_MEMO_CHARS);
        match self.begin() {
            Ok(_guard) => self.refuse(request, Refusal::Declined { reason }, now),
            Err(e) => e,
        }
    }

    /// The `request-seen` entry of a reviewed request.
    fn seen_record(&self, request: &Signed<WithdrawalRequest>, reviewed: &Reviewed) -> AuditRecord {
        AuditRecord::new(AuditEvent::RequestSeen)
            .with_request_id(&reviewed.request_id)
            .with_requester(request.body.requester.to_string())
            .with_request_digest(reviewed.request_digest)
            .with_sighashes(reviewed.summary.sighashes())
            .with_policy_digest(self.policy_digest())
    }

    /// Appends `record` to the audit log. Its time is the signer's clock, or
    /// the last entry's time if the clock is behind it: a clock that once
    /// ran ahead must not leave a log that refuses every later entry.
    fn record(
        &mut self,
        now: u64,
        record: AuditRecord,
    ) -> Result<crate::audit::AuditEntry, AuditError> {
        let at = now.max(self.audit.last_time());
        self.audit.append(&*self.keystore, at, record)
    }

    /// The digest of the policy this signer was given.
    fn policy_digest(&self) -> PolicyDigest {
        self.policy.digest()
    }

    /// Starts a decision: the signer's exclusive lock, the log brought up
    /// to date and checked against its anchor in the keystore.
    fn begin(&mut self) -> Result<DecisionGuard, Refusal> {
        Ok(self.audit.begin(&*self.keystore)?)
    }

    /// Checks what every request needs: the policy in force is the one
    /// pinned in the keystore, the requester's signature (by the key named
    /// in the request) and the times.
    fn check_common(&self, subject: &dyn Subject, now: u64) -> Result<(), Refusal> {
        let file = self.policy_digest();
        let pinned = self.keystore.anchor()?.policy.map(PolicyDigest::from_bytes);
        if pinned != Some(file) {
            return Err(Refusal::PolicyNotInForce { pinned, file });
        }
        if !subject.signature_ok(self.group.id()) {
            return Err(Refusal::BadRequestSignature);
        }
        crate::display::check_memo(subject.memo())?;
        let (created_at, expires_at) = subject.times();
        self.policy.check_request_lifetime(created_at, expires_at)?;
        if now >= expires_at {
            return Err(Refusal::Expired {
                request_id: subject.request_id().clone(),
                expires_at,
                now,
            });
        }
        if created_at > now.saturating_add(MAX_CLOCK_SKEW_SECS) {
            return Err(Refusal::NotYetValid {
                request_id: subject.request_id().clone(),
                created_at,
                now,
            });
        }
        Ok(())
    }

    fn check_request(
        &self,
        request: &Signed<WithdrawalRequest>,
        now: u64,
    ) -> Result<(Reviewed, Checked), Refusal> {
        self.check_common(request, now)?;
        let body = &request.body;
        let psbt = parse_psbt(&body.psbt)?;
        let summary = review(&psbt, &self.group.xpub(), self.policy.network())?;
        let window_start = now.saturating_sub(self.policy.rolling_window_secs());
        let mut released = crate::policy::Released {
            amount_sat: self.audit.history().amount_released_since(window_start),
            fee_sat: self.audit.history().fee_released_since(window_start),
        };
        // A request already released is only ever re-delivered: its own
        // release does not count against it a second time.
        if let Some(own) = self.release_of(request).filter(|e| e.time >= window_start) {
            released.amount_sat = released
                .amount_sat
                .saturating_sub(own.record.amount_sat.unwrap_or(0));
            released.fee_sat = released
                .fee_sat
                .saturating_sub(own.record.fee_sat.unwrap_or(0));
        }
        self.policy
            .evaluate(&summary, &body.requester, released, now)?;
        let requester_label = self
            .policy
            .requester(&body.requester)
            .map(|r| r.label().to_owned())
            .unwrap_or_default();
        let request_digest = request.request_digest(self.group.id())?;
        let checked = Checked {
            request_id: body.request_id.clone(),
            request_digest,
            messages: summary.sighashes(),
            tweaks: summary.inputs.iter().map(|i| *i.key.tweak()).collect(),
            amount_sat: Some(summary.amount_leaving().to_sat()),
            fee_sat: Some(summary.fee.to_sat()),
        };
        Ok((
            Reviewed {
                request_id: body.request_id.clone(),
                request_digest,
                summary,
                requester_label,
                created_at: body.created_at,
                expires_at: body.expires_at,
                memo: body.memo.clone(),
            },
            checked,
        ))
    }

    /// A raw (non-Bitcoin) message request passes only if this signer's
    /// policy allows raw messages from its requester — off by default.
    fn check_message(
        &self,
        request: &Signed<MessageRequest>,
        now: u64,
    ) -> Result<Checked, Refusal> {
        self.check_common(request, now)?;
        self.policy.check_raw_message(&request.body.requester)?;
        Ok(Checked {
            request_id: request.body.request_id.clone(),
            request_digest: request.request_digest(self.group.id())?,
            messages: vec![super::request::raw_message_digest(&request.body.message)],
            tweaks: vec![ChildTweak::ZERO],
            amount_sat: None,
            fee_sat: None,
        })
    }

    /// Records a refusal and returns it (or the audit failure, if the
    /// refusal could not be recorded).
    fn refuse(&mut self, subject: &dyn Subject, refusal: Refusal, now: u64) -> Refusal {
        let mut record = AuditRecord::new(AuditEvent::Refused {
            rule: refusal.kind(),
            reason: bounded(&refusal.to_string()),
        })
        .with_policy_digest(self.policy_digest());
        // Only a request whose signature verifies is named: an unsigned one
        // could otherwise write whatever id it likes into the log.
        if subject.signature_ok(self.group.id()) {
            record = record
                .with_request_id(subject.request_id())
                .with_requester(subject.requester().to_string());
            if let Ok(d) = subject.digest(self.group.id()) {
                record = record.with_request_digest(d);
            }
        }
        match self.record(now, record) {
            Ok(_) => refusal,
            Err(e) => Refusal::Audit(e),
        }
    }

    /// Whether this signer already recorded one of `events` for this
    /// requester's request id.
    fn handled(&self, subject: &dyn Subject, events: &[fn(&AuditEvent) -> bool]) -> bool {
        self.entries_about(subject)
            .any(|e| events.iter().any(|f| f(&e.record.event)))
    }

    /// This signer's audit entries about the subject's request: its id,
    /// from its requester (request ids are unique per requester).
    fn entries_about<'s>(
        &'s self,
        subject: &'s dyn Subject,
    ) -> impl Iterator<Item = &'s crate::audit::AuditEntry> + 's {
        self.audit.history().about(
            &subject.requester().to_string(),
            subject.request_id().as_str(),
        )
    }

    /// Approves a request: everything [`Signer::review`] checks, plus that
    /// this request id was never approved or signed before; then draws and
    /// stores fresh nonces for every input and signs the approval. The
    /// approval is recorded before it is returned.
    ///
    /// # Errors
    /// The [`Refusal`], after recording it.
    pub fn approve(
        &mut self,
        request: &Signed<WithdrawalRequest>,
        now: u64,
    ) -> Result<Signed<Approval>, Refusal> {
        let _guard = self.begin()?;
        let checked = self.check_request(request, now).map(|(_, c)| c);
        self.approve_checked(request, checked, now)
    }

    /// Reviews a request and approves it only if `decide` says so on the
    /// review (a daemon's auto-approval: `|r, p| p.auto_approves(&r.summary)`),
    /// in one pass over the checks: [`Decision::Approved`] as
    /// [`Signer::approve`] would, or [`Decision::Held`] with the review,
    /// recorded as `request-seen` like [`Signer::review`].
    ///
    /// # Errors
    /// The [`Refusal`], after recording it.
    pub fn approve_if(
        &mut self,
        request: &Signed<WithdrawalRequest>,
        now: u64,
        decide: impl FnOnce(&Reviewed, &Policy) -> bool,
    ) -> Result<Decision, Refusal> {
        let _guard = self.begin()?;
        let (reviewed, checked) = match self.check_request(request, now) {
            Ok(both) => both,
            Err(e) => return Err(self.refuse(request, e, now)),
        };
        // An operator's "no" stands: the same request is not put to a person
        // (or approved alone) again.
        let declined = self.entries_about(request).any(|e| {
            matches!(
                e.record.event,
                AuditEvent::Refused {
                    rule: RefusalKind::Declined,
                    ..
                }
            )
        });
        if declined {
            return Err(self.refuse(request, Refusal::Replayed(reviewed.request_id), now));
        }
        if decide(&reviewed, &self.policy) {
            return self
                .approve_checked(request, Ok(checked), now)
                .map(|a| Decision::Approved(Box::new(a)));
        }
        let record = self.seen_record(request, &reviewed);
        self.record(now, record)?;
        Ok(Decision::Held(Box::new(reviewed)))
    }

    /// Approves a raw-message request (the generic, non-Bitcoin use of the
    /// library). Refused unless this signer's policy allows raw messages from
    /// the requester: signing what one cannot read is how Bybit was robbed.
    ///
    /// # Errors
    /// The [`Refusal`], after recording it.
    pub fn approve_message(
        &mut self,
        request: &Signed<MessageRequest>,
        now: u64,
    ) -> Result<Signed<Approval>, Refusal> {
        let _guard = self.begin()?;
        let checked = self.check_message(request, now);
        self.approve_checked(request, checked, now)
    }

    fn approve_checked(
        &mut self,
        subject: &dyn Subject,
        checked: Result<Checked, Refusal>,
        now: u64,
    ) -> Result<Signed<Approval>, Refusal> {
        let released: [fn(&AuditEvent) -> bool; 1] = [|e| matches!(e, AuditEvent::ShareReleased)];
        let checked = checked.and_then(|c| {
            if self.handled(subject, &released) || self.approved_other_version(subject, &c) {
                return Err(Refusal::Replayed(c.request_id));
            }
            Ok(c)
        });
        let checked = match checked {
            Ok(c) => c,
            Err(e) => return Err(self.refuse(subject, e, now)),
        };
        self.fresh_approval(subject, &checked, now)
    }

    /// Draws and stores fresh nonces for every input, records the approval
    /// and signs it. Every earlier approval of this request still open is
    /// withdrawn first, so a signer holds at most one usable approval (one
    /// pending signing session) per request.
    fn fresh_approval(
        &mut self,
        subject: &dyn Subject,
        checked: &Checked,
        now: u64,
    ) -> Result<Signed<Approval>, Refusal> {
        // An earlier approval of this very request that never led to a
        // release (its nonces lost in a crash, tampered with, or simply
        // not used) is withdrawn first: its nonces are destroyed and that
        // is recorded, so at most one approval of a request can ever sign.
        let inputs = checked.messages.len();
        if let Err(e) = self.supersede_open_approvals(subject, checked.request_digest, inputs, now)
        {
            return Err(self.refuse(subject, e, now));
        }
        if let Err(e) = self.expire_stale_approvals(now) {
            return Err(self.refuse(subject, e, now));
        }
        let session = SessionId::random();
        let committed: Result<Vec<_>, KeystoreError> = (0..checked.messages.len())
            .map(|i| keystore::commit(&*self.keystore, &self.share, &session.for_input(i)))
            .collect();
        let commitments = match committed {
            Ok(c) => c,
            Err(e) => {
                // No approval names this session: destroy what was stored,
                // or it would hold room in the keystore for ever.
                for i in 0..checked.messages.len() {
                    let slot = SecretSlot::nonces(&self.share, &session.for_input(i));
                    let _ = self.keystore.discard_nonces(&slot);
                }
                return Err(self.refuse(subject, Refusal::Keystore(e), now));
            }
        };
        let approval = Approval {
            request_id: checked.request_id.clone(),
            request_digest: checked.request_digest,
            participant: *self.share.identifier(),
            sighashes: checked.messages.clone(),
            policy_digest: self.policy_digest(),
            session,
            commitments,
        };
        let record = AuditRecord::new(AuditEvent::Approved)
            .with_request_id(&checked.request_id)
            .with_requester(subject.requester().to_string())
            .with_request_digest(checked.request_digest)
            .with_sighashes(approval.sighashes.clone())
            .with_policy_digest(approval.policy_digest)
            .with_session(session);
        self.record(now, record)?;
        Ok(Signed::sign(self.group.id(), approval, &*self.keystore)?)
    }

    /// Whether `session` is an approval of this signer's for the subject's
    /// request that is still open: approved, never superseded, never used
    /// by a release.
    fn is_open_approval(&self, subject: &dyn Subject, session: &SessionId) -> bool {
        let mut approved = false;
        for e in self.entries_about(subject) {
            if e.record.session.as_ref() != Some(session) {
                continue;
            }
            match e.record.event {
                AuditEvent::Approved => approved = true,
                AuditEvent::ApprovalSuperseded | AuditEvent::ShareReleased => return false,
                _ => {}
            }
        }
        approved
    }

    /// This signer's share release for the subject's request, if any.
    fn release_of(&self, subject: &dyn Subject) -> Option<crate::audit::AuditEntry> {
        self.entries_about(subject)
            .find(|e| matches!(e.record.event, AuditEvent::ShareReleased))
            .cloned()
    }

    /// Whether this signer approved the request's id with another digest
    /// (another request reusing the id).
    fn approved_other_version(&self, subject: &dyn Subject, checked: &Checked) -> bool {
        self.entries_about(subject).any(|e| {
            matches!(e.record.event, AuditEvent::Approved)
                && e.record.request_digest != Some(checked.request_digest)
        })
    }

    /// Destroys the nonces of approvals so old that their requests have
    /// expired whatever their lifetime (older than the largest lifetime any
    /// policy allows, plus the clock skew) and that never signed: without
    /// this, every approval a coordinator never followed up would hold room
    /// in the keystore (key objects on a token) for ever. Each is recorded
    /// as superseded.
    fn expire_stale_approvals(&mut self, now: u64) -> Result<(), Refusal> {
        let horizon = crate::policy::MAX_REQUEST_LIFETIME_HOURS
            .saturating_mul(3600)
            .saturating_add(MAX_CLOCK_SKEW_SECS);
        let cutoff = now.saturating_sub(horizon);
        let stale: Vec<AuditRecord> = self
            .audit
            .history()
            .open_approvals_before(cutoff)
            .map(|e| e.record.clone())
            .collect();
        for approved in stale {
            let Some(session) = approved.session else {
                continue;
            };
            for i in 0..approved.sighashes.len() {
                self.keystore
                    .discard_nonces(&SecretSlot::nonces(&self.share, &session.for_input(i)))?;
            }
            let mut record = AuditRecord::new(AuditEvent::ApprovalSuperseded).with_session(session);
            record.request_id = approved.request_id;
            record.requester = approved.requester;
            record.request_digest = approved.request_digest;
            self.record(now, record)?;
        }
        Ok(())
    }

    /// Destroys the nonces (`inputs` per approval) of every approval of the
    /// request `digest` still open, records each, and returns how many.
    fn supersede_open_approvals(
        &mut self,
        subject: &dyn Subject,
        digest: RequestDigest,
        inputs: usize,
        now: u64,
    ) -> Result<usize, Refusal> {
        let requester = subject.requester().to_string();
        let of_this_request =
            |e: &&crate::audit::AuditEntry| e.record.request_digest == Some(digest);
        // Closed: superseded before, or used by a share release.
        let superseded: BTreeSet<SessionId> = self
            .entries_about(subject)
            .filter(of_this_request)
            .filter(|e| {
                matches!(
                    e.record.event,
                    AuditEvent::ApprovalSuperseded | AuditEvent::ShareReleased
                )
            })
            .filter_map(|e| e.record.session)
            .collect();
        let open: Vec<SessionId> = self
            .entries_about(subject)
            .filter(of_this_request)
            .filter(|e| matches!(e.record.event, AuditEvent::Approved))
            .filter_map(|e| e.record.session)
            .filter(|s| !superseded.contains(s))
            .collect();
        let closed = open.len();
        for session in open {
            for i in 0..inputs {
                self.keystore
                    .discard_nonces(&SecretSlot::nonces(&self.share, &session.for_input(i)))?;
            }
            let record = AuditRecord::new(AuditEvent::ApprovalSuperseded)
                .with_request_id(subject.request_id())
                .with_requester(requester.clone())
                .with_request_digest(digest)
                .with_session(session);
            self.record(now, record)?;
        }
        Ok(closed)
    }

    /// Releases signature shares for the coordinator's packages, after
    /// checking that they are for this request, that every approval in them
    /// is a member's valid signature over the same request and sighashes,
    /// that this signer's own approval is there, that at least `t` approve,
    /// and that every package signs this signer's own sighash for its input
    /// with exactly the approved commitments. Nonces are taken only after all
    /// of that; the release is recorded (durably) before shares are returned.
    ///
    /// # Errors
    /// The [`Refusal`], after recording it.
    pub fn sign(
        &mut self,
        request: &Signed<WithdrawalRequest>,
        packages: &WithdrawalPackages,
        now: u64,
    ) -> Result<Signed<WithdrawalShares>, Refusal> {
        let _guard = self.begin()?;
        let checked = self.check_request(request, now).map(|(_, c)| c);
        self.sign_checked(request, checked, packages, now)
    }

    /// [`Signer::sign`] for a raw-message request approved with
    /// [`Signer::approve_message`]; the policy is checked again.
    ///
    /// # Errors
    /// The [`Refusal`], after recording it.
    pub fn sign_message(
        &mut self,
        request: &Signed<MessageRequest>,
        packages: &WithdrawalPackages,
        now: u64,
    ) -> Result<Signed<WithdrawalShares>, Refusal> {
        let _guard = self.begin()?;
        let checked = self.check_message(request, now);
        self.sign_checked(request, checked, packages, now)
    }

    /// One answer to a signing session of a coordinator that retries
    /// (ROAST): [`Signer::sign`]'s shares for `packages`, and this signer's
    /// next approval of the same request with fresh nonces, which a later
    /// session may use if this one fails (another member silent or
    /// cheating). The next approval is made only after the release is
    /// recorded, and it withdraws any other open approval of this request:
    /// the signer is pending in at most one session per request, and each
    /// approval's nonces sign at most once.
    ///
    /// Signing the same request in several sessions is safe: every session
    /// signs the very sighashes this signer computed, with nonces never
    /// used before, and the amount counts against the rolling window once.
    ///
    /// # Errors
    /// The [`Refusal`], after recording it.
    pub fn sign_session(
        &mut self,
        request: &Signed<WithdrawalRequest>,
        packages: &WithdrawalPackages,
        now: u64,
    ) -> Result<SessionReply, Refusal> {
        let _guard = self.begin()?;
        let checked = match self.check_request(request, now) {
            Ok((_, c)) => c,
            Err(e) => return Err(self.refuse(request, e, now)),
        };
        let shares = self.sign_checked(request, Ok(checked.clone()), packages, now)?;
        let next = self.fresh_approval(request, &checked, now)?;
        Ok(SessionReply {
            shares,
            next: Box::new(next),
        })
    }

    /// Withdraws every open approval of `request` (a withdrawal that ended:
    /// finalized, refused or expired): their nonces are destroyed and each
    /// is recorded as superseded. Returns how many were open. Nothing is
    /// checked but the request's signature: closing never signs anything.
    ///
    /// # Errors
    /// [`Refusal::BadRequestSignature`]; an audit or keystore failure.
    pub fn close(
        &mut self,
        request: &Signed<WithdrawalRequest>,
        now: u64,
    ) -> Result<usize, Refusal> {
        let _guard = self.begin()?;
        if !request.signature_ok(self.group.id()) {
            return Err(Refusal::BadRequestSignature);
        }
        let digest = request.request_digest(self.group.id())?;
        let inputs = self
            .entries_about(request)
            .find(|e| matches!(e.record.event, AuditEvent::Approved))
            .map_or(0, |e| e.record.sighashes.len());
        self.supersede_open_approvals(request, digest, inputs, now)
    }

    fn sign_checked(
        &mut self,
        subject: &dyn Subject,
        checked: Result<Checked, Refusal>,
        packages: &WithdrawalPackages,
        now: u64,
    ) -> Result<Signed<WithdrawalShares>, Refusal> {
        let checked = match checked {
            Ok(c) => c,
            Err(e) => return Err(self.refuse(subject, e, now)),
        };
        let packages_digest = match crate::format::canonical_bytes(self.group.id(), packages) {
            Ok(bytes) => PackagesDigest::from_bytes(sha2::Sha256::digest(bytes).into()),
            Err(e) => return Err(self.refuse(subject, Refusal::Format(e), now)),
        };
        // Released before: the very same packages get the very same shares
        // again (a crash may have lost them on their way out). Another
        // session of the same request may be signed only with an approval
        // of this signer's that no release used yet (a ROAST retry, with
        // the fresh nonces of that approval); anything else is a replay.
        // No share is ever computed twice, no nonce used twice.
        let request_digest = checked.request_digest;
        let releases: Vec<crate::audit::AuditEntry> = self
            .entries_about(subject)
            .filter(|e| matches!(e.record.event, AuditEvent::ShareReleased))
            .cloned()
            .collect();
        let same = releases.iter().find(|e| {
            e.record.packages_digest == Some(packages_digest)
                && e.record.request_digest == Some(request_digest)
                && !e.record.shares.is_empty()
        });
        if let Some(entry) = same {
            let shares = match recorded_shares(&entry.record.shares) {
                Ok(s) => s,
                Err(e) => return Err(self.refuse(subject, e, now)),
            };
            let record = AuditRecord::new(AuditEvent::SharesRedelivered)
                .with_request_id(&checked.request_id)
                .with_requester(subject.requester().to_string())
                .with_request_digest(request_digest)
                .with_release(packages_digest, Vec::new());
            self.record(now, record)?;
            let body = WithdrawalShares {
                request_digest,
                participant: *self.share.identifier(),
                shares,
            };
            return Ok(Signed::sign(self.group.id(), body, &*self.keystore)?);
        }
        // A release of another version of this request id, or one recorded
        // before releases named their approval: nothing more is signed.
        let replay = releases
            .iter()
            .any(|e| e.record.request_digest != Some(request_digest) || e.record.session.is_none());
        if replay {
            let id = subject.request_id().clone();
            return Err(self.refuse(subject, Refusal::Replayed(id), now));
        }
        let own = match self.check_packages(&checked, packages) {
            Ok(own) => own,
            Err(e) => return Err(self.refuse(subject, e, now)),
        };
        if !self.is_open_approval(subject, &own.session) {
            let id = subject.request_id().clone();
            return Err(self.refuse(subject, Refusal::Replayed(id), now));
        }
        let first_release = releases.is_empty();
        let mut frost_packages = Vec::with_capacity(checked.messages.len());
        for (i, p) in packages.packages.iter().enumerate() {
            frost_packages.push(
                p.to_package()
                    .map_err(|source| Refusal::Package { input: i, source })?,
            );
        }
        // All checks passed; now (and only now) the nonces are taken.
        let signed: Result<Vec<_>, Refusal> = frost_packages
            .iter()
            .zip(&checked.messages)
            .enumerate()
            .map(|(i, (package, message))| {
                let own_c = own.commitments.get(i).ok_or(Refusal::MissingOwnApproval)?;
                let session = own.session.for_input(i);
                // Signed under the key this input spends, which this signer
                // derived itself from the PSBT in its review.
                let tweak = checked.tweaks.get(i).copied().unwrap_or(ChildTweak::ZERO);
                let derived = |e: crate::group::GroupError| Refusal::Package {
                    input: i,
                    source: e.into(),
                };
                let share = self.share.derive_child(&tweak).map_err(derived)?;
                let group = self.group.derive_child(&tweak).map_err(derived)?;
                keystore::sign(
                    &*self.keystore,
                    &share,
                    &group,
                    &session,
                    package,
                    message.as_bytes(),
                    own_c,
                )
                .map_err(|e| match e {
                    StoredSignError::Refused(source) => Refusal::Package { input: i, source },
                    StoredSignError::Keystore(k) => Refusal::Keystore(k),
                })
            })
            .collect();
        let shares = match signed {
            Ok(s) => s,
            Err(e) => return Err(self.refuse(subject, e, now)),
        };
        let shares_hex = shares.iter().map(|s| hex::encode(s.serialize())).collect();
        let mut record = AuditRecord::new(AuditEvent::ShareReleased)
            .with_request_id(&checked.request_id)
            .with_requester(subject.requester().to_string())
            .with_request_digest(checked.request_digest)
            .with_sighashes(checked.messages.clone())
            .with_policy_digest(self.policy_digest())
            .with_session(own.session)
            .with_release(packages_digest, shares_hex);
        // Every session of a request signs the same transaction: what it
        // moves counts against the rolling window once, at its first release.
        if first_release {
            if let Some(amount) = checked.amount_sat {
                record = record.with_amount_sat(amount);
            }
            if let Some(fee) = checked.fee_sat {
                record = record.with_fee_sat(fee);
            }
        }
        self.record(now, record)?;
        let body = WithdrawalShares {
            request_digest: checked.request_digest,
            participant: *self.share.identifier(),
            shares,
        };
        Ok(Signed::sign(self.group.id(), body, &*self.keystore)?)
    }

    /// Checks the packages against the reviewed request; returns this
    /// signer's own approval.
    fn check_packages(
        &self,
        reviewed: &Checked,
        packages: &WithdrawalPackages,
    ) -> Result<Approval, Refusal> {
        let digest = reviewed.request_digest;
        if packages.request_digest != digest {
            return Err(Refusal::WrongRequest {
                expected: digest,
                found: packages.request_digest,
            });
        }
        let sighashes = &reviewed.messages;
        let approvals = verify_approvals(
            &self.group,
            &self.roster,
            &digest,
            sighashes,
            &packages.approvals,
        )?;
        let me = *self.share.identifier();
        let own = approvals
            .get(&me)
            .cloned()
            .ok_or(Refusal::MissingOwnApproval)?;
        let own_key = self.keystore.identity_public_key()?;
        if self.roster.get(&me) != Some(&own_key) {
            return Err(Refusal::BadApproval {
                participant: self.group.culprit(&me),
                reason: "this signer's identity key is not the roster's".into(),
            });
        }
        if approvals.len() < usize::from(self.group.min_signers()) {
            return Err(Refusal::TooFewApprovals {
                have: approvals.len(),
                need: self.group.min_signers(),
            });
        }
        if packages.packages.len() != sighashes.len() {
            return Err(Refusal::BadPackage {
                input: packages.packages.len().min(sighashes.len()),
                reason: format!(
                    "{} packages for {} inputs",
                    packages.packages.len(),
                    sighashes.len()
                ),
            });
        }
        for (i, (p, sighash)) in packages.packages.iter().zip(&reviewed.messages).enumerate() {
            let package = p
                .to_package()
                .map_err(|source| Refusal::Package { input: i, source })?;
            if package.message().as_slice() != sighash.as_bytes() {
                return Err(Refusal::Package {
                    input: i,
                    source: SignError::MessageMismatch {
                        expected: sighash.to_string(),
                        found: hex::encode(package.message()),
                    },
                });
            }
            let expected: BTreeMap<Identifier<Secp256k1Tr>, &SigningCommitments<Secp256k1Tr>> =
                approvals
                    .iter()
                    .filter_map(|(id, a)| a.commitments.get(i).map(|c| (*id, c)))
                    .collect();
            let found: BTreeMap<_, _> = package
                .signing_commitments()
                .iter()
                .map(|(id, c)| (*id, c))
                .collect();
            if expected != found {
                let extra: Vec<_> = found
                    .keys()
                    .filter(|id| !expected.contains_key(*id))
                    .map(identifier_hex)
                    .collect();
                return Err(Refusal::BadPackage {
                    input: i,
                    reason: if extra.is_empty() {
                        "its commitments are not exactly those of the approvals (one dropped or substituted)".into()
                    } else {
                        format!(
                            "it includes commitments without an approval: {}",
                            extra.join(", ")
                        )
                    },
                });
            }
            signing::check_package(
                &self.share,
                &self.group,
                &package,
                sighash.as_bytes(),
                own.commitments.get(i).ok_or(Refusal::MissingOwnApproval)?,
            )
            .map_err(|source| Refusal::Package { input: i, source })?;
        }
        Ok(own)
    }
}

/// The shares of a release record, parsed back.
fn recorded_shares(
    hex_shares: &[String],
) -> Result<Vec<frost_core::round2::SignatureShare<Secp256k1Tr>>, Refusal> {
    hex_shares
        .iter()
        .map(|h| {
            let bytes = hex::decode(h).ok()?;
            frost_core::round2::SignatureShare::deserialize(&bytes).ok()
        })
        .collect::<Option<Vec<_>>>()
        .ok_or(Refusal::Audit(AuditError::Encoding(
            "a recorded share does not parse".into(),
        )))
}

/// Verifies signed approvals: each from a group member under its roster
/// identity key, for request `digest` and exactly `sighashes`, with one
/// commitment per input and no member twice.
///
/// # Errors
/// [`Refusal::BadApproval`] naming the participant.
pub fn verify_approvals(
    group: &PublicGroup<Secp256k1Tr>,
    identities: &BTreeMap<Identifier<Secp256k1Tr>, IdentityPublicKey>,
    digest: &RequestDigest,
    sighashes: &[SigningDigest],
    approvals: &[Signed<Approval>],
) -> Result<BTreeMap<Identifier<Secp256k1Tr>, Approval>, Refusal> {
    let mut out = BTreeMap::new();
    let mut seen = BTreeSet::new();
    for signed in approvals {
        let a = &signed.body;
        let bad = |reason: &str| Refusal::BadApproval {
            participant: group.culprit(&a.participant),
            reason: reason.to_owned(),
        };
        let Some(key) = identities.get(&a.participant) else {
            return Err(bad("not a member of this group's roster"));
        };
        if &signed.signer != key {
            return Err(bad("signed by a key that is not the member's identity key"));
        }
        signed
            .verify(group.id())
            .map_err(|BadSignature { .. }| bad("identity signature does not verify"))?;
        if a.request_digest != *digest {
            return Err(bad("it approves a different request"));
        }
        if a.sighashes != sighashes {
            return Err(bad(
                "its sighashes differ from the ones this signer computed",
            ));
        }
        if a.commitments.len() != sighashes.len() {
            return Err(bad("it has not exactly one commitment per input"));
        }
        if !seen.insert(a.participant) {
            return Err(bad("the same member approves twice"));
        }
        out.insert(a.participant, a.clone());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use rand_core::OsRng;

    use super::*;
    use crate::keystore::MemoryKeystore;

    struct Parts {
        group: PublicGroup<Secp256k1Tr>,
        shares: Vec<KeyShare<Secp256k1Tr>>,
        stores: Vec<Arc<MemoryKeystore>>,
        roster: BTreeMap<Identifier<Secp256k1Tr>, IdentityPublicKey>,
        policy: Policy,
        dir: tempfile::TempDir,
    }

    fn parts() -> Parts {
        let labels: Vec<_> = ["a", "b", "c"]
            .iter()
            .map(|l| crate::group::Label::new(*l).unwrap())
            .collect();
        let dealt = crate::keygen::dealer::<Secp256k1Tr, _>(
            2,
            &labels,
            crate::keygen::Identifiers::Default,
            &mut OsRng,
        )
        .unwrap();
        let stores: Vec<_> = (0..3).map(|_| Arc::new(MemoryKeystore::new())).collect();
        let roster = dealt
            .shares
            .iter()
            .zip(&stores)
            .map(|(s, k)| (*s.identifier(), k.identity_public_key().unwrap()))
            .collect();
        let requester = crate::identity::SoftwareIdentity::generate(&mut OsRng).public_key();
        let policy = Policy::from_toml(&format!(
            "version = 1\nnetwork = \"regtest\"\n[[requester]]\nlabel = \"ops\"\nkey = \"{requester}\"\n[limits]\nper_transaction_sat = 1\nrolling_window_hours = 1\nrolling_window_sat = 1\nmax_fee_sat = 1\nmax_fee_rate_sat_per_vb = 1\n"
        ))
        .unwrap();
        Parts {
            group: dealt.group,
            shares: dealt.shares,
            stores,
            roster,
            policy,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn build(
        p: &Parts,
        share: usize,
        store: usize,
        roster: BTreeMap<Identifier<Secp256k1Tr>, IdentityPublicKey>,
        group: &PublicGroup<Secp256k1Tr>,
    ) -> Result<Signer, SignerError> {
        let owner = p.stores[store].identity_public_key().unwrap();
        let audit =
            AuditLog::open(&p.dir.path().join(format!("{share}-{store}.jsonl")), &owner).unwrap();
        Signer::new(
            group.clone(),
            roster,
            p.shares[share].clone(),
            p.stores[store].clone(),
            p.policy.clone(),
            audit,
        )
    }

    #[test]
    fn the_parts_must_belong_together() {
        let p = parts();
        let ok = build(&p, 0, 0, p.roster.clone(), &p.group).unwrap();
        assert_eq!(ok.identifier(), p.shares[0].identifier());

        // Another member's keystore: its identity key is not this member's.
        let err = build(&p, 0, 1, p.roster.clone(), &p.group).unwrap_err();
        assert!(matches!(err, SignerError::NotOwnKey { .. }), "{err}");

        // A roster missing a member, or naming an outsider.
        let mut short = p.roster.clone();
        short.remove(p.shares[2].identifier());
        let err = build(&p, 0, 0, short, &p.group).unwrap_err();
        assert!(matches!(err, SignerError::RosterMismatch(_)), "{err}");
        assert!(err.to_string().contains("has no identity key"), "{err}");
        let mut long = p.roster.clone();
        long.insert(
            Identifier::try_from(9u16).unwrap(),
            p.stores[0].identity_public_key().unwrap(),
        );
        let err = build(&p, 0, 0, long, &p.group).unwrap_err();
        assert!(err.to_string().contains("non-member"), "{err}");

        // A share of another group.
        let other = parts();
        let err = build(&p, 0, 0, p.roster.clone(), &other.group).unwrap_err();
        assert!(matches!(err, SignerError::ShareNotInGroup(_)), "{err}");
    }

    #[test]
    fn open_finds_the_share_through_the_keystore() {
        let p = parts();
        let audit = |i: usize| {
            let owner = p.stores[i].identity_public_key().unwrap();
            AuditLog::open(&p.dir.path().join(format!("open-{i}.jsonl")), &owner).unwrap()
        };
        let open = |i: usize| {
            Signer::open(
                p.group.clone(),
                p.roster.clone(),
                p.stores[i].clone(),
                p.policy.clone(),
                audit(i),
            )
        };
        // No share stored yet: the keystore's error.
        assert!(matches!(open(1), Err(SignerError::Keystore(_))));
        keystore::put_share(&*p.stores[1], &p.shares[1]).unwrap();
        assert_eq!(open(1).unwrap().identifier(), p.shares[1].identifier());
        // A keystore no roster entry names.
        let stranger: Arc<dyn Keystore> = Arc::new(MemoryKeystore::new());
        let owner = stranger.identity_public_key().unwrap();
        let log = AuditLog::open(&p.dir.path().join("stranger.jsonl"), &owner).unwrap();
        let err = Signer::open(
            p.group.clone(),
            p.roster.clone(),
            stranger,
            p.policy.clone(),
            log,
        )
        .unwrap_err();
        assert!(matches!(err, SignerError::NotInRoster), "{err}");
    }

    #[test]
    fn a_signer_is_send_so_a_service_can_hold_it() {
        fn send<T: Send>() {}
        send::<Signer>();
        send::<Arc<dyn Keystore>>();
    }
}
