//! What the coordinator does with what it is sent, independent of HTTP:
//! it checks each document as far as it can without keys, records it, and
//! moves the withdrawal on (packages once `t` approvals are in, the final
//! transaction once a session's shares are). Every step reads its inputs
//! from the store, so a restarted coordinator continues each withdrawal
//! with [`Coordinator::resume`].
//!
//! The coordinator is untrusted: the signers verify everything again. Its
//! checks only keep garbage out of the store and name culprits early.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use wallet_core::format::{self, GroupId};
use wallet_core::frost_core::Identifier;
use wallet_core::withdrawal::coordinator::{check_shares, InputKeys};
use wallet_core::withdrawal::signer::verify_approvals;
use wallet_core::{
    bitcoin, build_packages, finalize_withdrawal, Approval, IdentityPublicKey, PublicGroup,
    RequestDigest, Secp256k1Tr, Signed, WithdrawalPackages, WithdrawalRequest, WithdrawalShares,
};

use crate::api::{
    ChallengeResponse, LoginResponse, ServiceLogin, SessionStatus, SetAsideStatus, StateName,
    WithdrawalStatus, CHALLENGE_LIFETIME_SECS, TOKEN_LIFETIME_SECS,
};
use crate::error::{ServiceError, StoreError};
use crate::store::{
    Added, ApprovalUse, Outcome, Received, Role, SessionPackages, SetAside, SetAsideReason, Store,
    Submitted, Token, WithdrawalRecord, WithdrawalState, Work,
};
use crate::tls::CertFingerprint;

/// Who the coordinator serves: its group, the members' identity keys, the
/// requesters it accepts requests from, the network, and its own
/// certificate's fingerprint (which logins must name).
#[derive(Clone, Debug)]
pub struct CoordinatorConfig {
    /// The group.
    pub group: PublicGroup<Secp256k1Tr>,
    /// Each member's identity key.
    pub roster: BTreeMap<Identifier<Secp256k1Tr>, IdentityPublicKey>,
    /// The requesters' identity keys.
    pub requesters: Vec<IdentityPublicKey>,
    /// The Bitcoin network of the group's wallet.
    pub network: bitcoin::Network,
    /// The coordinator's TLS certificate fingerprint.
    pub fingerprint: CertFingerprint,
}

/// A withdrawal's status and documents as stored: the signed request and
/// each session's packages, byte for byte.
#[derive(Clone, Debug)]
pub struct StoredDocuments {
    /// Its status.
    pub status: WithdrawalStatus,
    /// The signed request.
    pub request: Vec<u8>,
    /// `(session, packages document)`, by session.
    pub sessions: Vec<(u32, Vec<u8>)>,
}

/// What the coordinator keeps decoded in memory: documents are never
/// changed once recorded, so what was decoded once stays true. Lost on a
/// restart (then decoded again from the store); dropped when a withdrawal
/// ends, and wholly when it grows past [`Cache::MAX_ENTRIES`].
#[derive(Default)]
struct Cache {
    requests: std::collections::HashMap<RequestDigest, Arc<Signed<WithdrawalRequest>>>,
    /// Each withdrawal's inputs as this coordinator read its PSBT: sighash
    /// and the (child) group signing each.
    sighashes: std::collections::HashMap<RequestDigest, Arc<InputKeys>>,
    /// Each session's packages, decoded.
    sessions: std::collections::HashMap<(RequestDigest, u32), Arc<WithdrawalPackages>>,
    tokens: std::collections::HashMap<[u8; 32], Token>,
    /// The PSBT text of the requests held, in bytes.
    request_bytes: usize,
}

impl Cache {
    const MAX_ENTRIES: usize = 50_000;
    /// Requests are up to a document's 4 MiB: their PSBT text is counted.
    const MAX_REQUEST_BYTES: usize = 256 * 1024 * 1024;

    fn bound(&mut self) {
        let entries =
            self.requests.len() + self.sighashes.len() + self.sessions.len() + self.tokens.len();
        if entries > Self::MAX_ENTRIES || self.request_bytes > Self::MAX_REQUEST_BYTES {
            *self = Cache::default();
        }
    }

    fn keep_request(&mut self, id: RequestDigest, request: Arc<Signed<WithdrawalRequest>>) {
        self.bound();
        self.request_bytes += request.body.psbt.len();
        if let Some(old) = self.requests.insert(id, request) {
            self.request_bytes = self.request_bytes.saturating_sub(old.body.psbt.len());
        }
    }

    fn forget(&mut self, id: &RequestDigest) {
        if let Some(old) = self.requests.remove(id) {
            self.request_bytes = self.request_bytes.saturating_sub(old.body.psbt.len());
        }
        self.sighashes.remove(id);
        self.sessions.retain(|(w, _), _| w != id);
    }
}

/// How long a signing session waits for its members' shares before the
/// coordinator opens another with the next responsive members: 1 s. A
/// healthy 3-of-5 session on SoftHSM2 tokens answers in under 100 ms here
/// even 16 withdrawals at a time (BENCHMARKS.md).
pub const DEFAULT_SESSION_DEADLINE: Duration = Duration::from_secs(1);

/// What the coordinator did that its operator should see: sessions opened,
/// members set aside, how withdrawals ended. Given to the hook of
/// [`Coordinator::with_log`] (the CLI writes them as JSON lines).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CoordinatorEvent {
    /// A signing session opened with these members.
    SessionOpened {
        /// The withdrawal.
        id: RequestDigest,
        /// The session.
        session: u32,
        /// Its members.
        members: Vec<IdentityPublicKey>,
    },
    /// A member was set aside in a session.
    SetAside {
        /// The withdrawal.
        id: RequestDigest,
        /// The session.
        session: u32,
        /// Who.
        member: IdentityPublicKey,
        /// Why.
        reason: SetAsideReason,
        /// In words.
        detail: String,
    },
    /// Finalized by the shares of this session.
    Finalized {
        /// The withdrawal.
        id: RequestDigest,
        /// The session that signed.
        session: u32,
    },
    /// Refused.
    Refused {
        /// The withdrawal.
        id: RequestDigest,
        /// Why.
        reason: String,
    },
}

type EventHook = Box<dyn Fn(&CoordinatorEvent) + Send + Sync>;

/// In memory: when each session started (its deadline runs from there; a
/// restarted coordinator starts the clock of every open session anew), and
/// when a withdrawal must be looked at again.
#[derive(Default)]
struct Deadlines {
    started: HashMap<(RequestDigest, u32), Instant>,
    due: BTreeSet<(Instant, RequestDigest)>,
}

/// The coordinator's logic over a [`Store`].
pub struct Coordinator<S> {
    config: CoordinatorConfig,
    store: S,
    members: Vec<IdentityPublicKey>,
    cache: Mutex<Cache>,
    /// One withdrawal moves on at a time: two approvals arriving together
    /// must not build two different first sessions.
    drive: Mutex<()>,
    deadlines: Mutex<Deadlines>,
    /// Woken when a deadline earlier than all others is added.
    deadline_added: tokio::sync::Notify,
    session_deadline: Duration,
    log: Option<EventHook>,
    clock: fn() -> u64,
}

impl<S> std::fmt::Debug for Coordinator<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coordinator")
            .field("group", self.config.group.id())
            .field("members", &self.members.len())
            .field("requesters", &self.config.requesters.len())
            .finish()
    }
}

/// Unix seconds now.
pub fn system_clock() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

pub(crate) fn random_32() -> Result<[u8; 32], ServiceError> {
    let mut bytes = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
        .map_err(|_| ServiceError::Internal("the system random generator failed".into()))?;
    Ok(bytes)
}

/// The SHA-256 of a bearer token: what the store keeps.
pub fn token_hash(token: &[u8]) -> [u8; 32] {
    Sha256::digest(token).into()
}

impl<S: Store> Coordinator<S> {
    /// A coordinator for `config` over `store`.
    pub fn new(config: CoordinatorConfig, store: S) -> Self {
        let members = config.roster.values().copied().collect();
        Coordinator {
            config,
            store,
            members,
            cache: Mutex::new(Cache::default()),
            drive: Mutex::new(()),
            deadlines: Mutex::new(Deadlines::default()),
            deadline_added: tokio::sync::Notify::new(),
            session_deadline: DEFAULT_SESSION_DEADLINE,
            log: None,
            clock: system_clock,
        }
    }

    /// The same with another session deadline
    /// ([`DEFAULT_SESSION_DEADLINE`]).
    pub fn with_session_deadline(mut self, deadline: Duration) -> Self {
        self.session_deadline = deadline;
        self
    }

    /// The same, telling `hook` what it does ([`CoordinatorEvent`]).
    pub fn with_log(mut self, hook: impl Fn(&CoordinatorEvent) + Send + Sync + 'static) -> Self {
        self.log = Some(Box::new(hook));
        self
    }

    fn log(&self, event: CoordinatorEvent) {
        if let Some(hook) = &self.log {
            hook(&event);
        }
    }

    /// The same with another clock (tests).
    pub fn with_clock(mut self, clock: fn() -> u64) -> Self {
        self.clock = clock;
        self
    }

    /// The configuration.
    pub fn config(&self) -> &CoordinatorConfig {
        &self.config
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }

    fn group_id(&self) -> &GroupId {
        self.config.group.id()
    }

    fn is_member(&self, key: &IdentityPublicKey) -> bool {
        self.members.contains(key)
    }

    fn is_requester(&self, key: &IdentityPublicKey) -> bool {
        self.config.requesters.contains(key)
    }

    /// Issues a login challenge to a member or requester.
    ///
    /// # Errors
    /// [`ServiceError::Forbidden`] for any other key.
    pub fn challenge(&self, key: &IdentityPublicKey) -> Result<ChallengeResponse, ServiceError> {
        if !self.is_member(key) && !self.is_requester(key) {
            return Err(ServiceError::Forbidden(
                "this key is neither a member nor a requester of the group".into(),
            ));
        }
        let challenge = random_32()?;
        let expires_at = (self.clock)().saturating_add(CHALLENGE_LIFETIME_SECS);
        self.store.put_challenge(&challenge, key, expires_at)?;
        Ok(ChallengeResponse {
            challenge: hex::encode(challenge),
            expires_at,
        })
    }

    /// Checks a signed login and issues a token.
    ///
    /// # Errors
    /// [`ServiceError::BadDocument`] for a malformed document,
    /// [`ServiceError::Unauthenticated`] for a bad signature, an unknown,
    /// used or expired challenge, another coordinator's fingerprint or
    /// another group; [`ServiceError::Forbidden`] for a role the key does
    /// not have.
    pub fn login(&self, document: &[u8]) -> Result<LoginResponse, ServiceError> {
        let login: Signed<ServiceLogin> = self.decode(document)?;
        let unauthenticated = |why: &str| ServiceError::Unauthenticated(why.to_owned());
        let body = login
            .verify(self.group_id())
            .map_err(|_| unauthenticated("the login's signature does not verify"))?;
        if body.coordinator != self.config.fingerprint {
            return Err(unauthenticated("the login names another coordinator"));
        }
        let mut challenge = [0u8; 32];
        hex::decode_to_slice(&body.challenge, &mut challenge)
            .map_err(|_| unauthenticated("the challenge is not 32 bytes of hex"))?;
        match self.store.consume_challenge(&challenge)? {
            Some(key) if key == login.signer => {}
            _ => return Err(unauthenticated("unknown, used or expired challenge")),
        }
        let role = body.role.coordinator_role().ok_or_else(|| {
            ServiceError::Forbidden(
                "a ceremony participant logs in to the ceremony's mailbox, not to the coordinator"
                    .into(),
            )
        })?;
        let allowed = match role {
            Role::Signer => self.is_member(&login.signer),
            Role::Requester => self.is_requester(&login.signer),
        };
        if !allowed {
            return Err(ServiceError::Forbidden(format!(
                "this key may not log in as a {}",
                role.as_str()
            )));
        }
        let token = random_32()?;
        let expires_at = (self.clock)().saturating_add(TOKEN_LIFETIME_SECS);
        self.store
            .put_token(&token_hash(&token), &login.signer, role, expires_at)?;
        Ok(LoginResponse {
            token: hex::encode(token),
            expires_at,
        })
    }

    /// Who holds this bearer token.
    ///
    /// # Errors
    /// [`ServiceError::Unauthenticated`] for an unknown or expired token.
    pub fn authenticate(&self, bearer: &str) -> Result<Token, ServiceError> {
        let mut token = [0u8; 32];
        hex::decode_to_slice(bearer, &mut token)
            .map_err(|_| ServiceError::Unauthenticated("malformed token".into()))?;
        let hash = token_hash(&token);
        let now = (self.clock)();
        if let Some(t) = self.cache()?.tokens.get(&hash).copied() {
            if t.expires_at > now {
                return Ok(t);
            }
        }
        let found = self
            .store
            .token(&hash)?
            .ok_or_else(|| ServiceError::Unauthenticated("unknown or expired token".into()))?;
        let mut cache = self.cache()?;
        cache.bound();
        cache.tokens.insert(hash, found);
        Ok(found)
    }

    fn cache(&self) -> Result<MutexGuard<'_, Cache>, ServiceError> {
        self.cache
            .lock()
            .map_err(|_| ServiceError::Internal("the coordinator's cache was poisoned".into()))
    }

    fn decode<T: format::DocumentBody>(&self, bytes: &[u8]) -> Result<T, ServiceError> {
        format::decode_for_group::<T>(bytes, self.group_id()).map_err(ServiceError::BadDocument)
    }

    fn request_of(
        &self,
        id: &RequestDigest,
    ) -> Result<Arc<Signed<WithdrawalRequest>>, ServiceError> {
        if let Some(r) = self.cache()?.requests.get(id) {
            return Ok(r.clone());
        }
        let record = self.store.withdrawal(id)?;
        let request: Arc<Signed<WithdrawalRequest>> = Arc::new(self.decode(&record.request)?);
        self.cache()?.keep_request(*id, request.clone());
        Ok(request)
    }

    /// The packages of session `session` of `id`, decoded once.
    fn session(
        &self,
        id: &RequestDigest,
        session: u32,
    ) -> Result<Arc<WithdrawalPackages>, ServiceError> {
        if let Some(p) = self.cache()?.sessions.get(&(*id, session)) {
            return Ok(p.clone());
        }
        let stored = self
            .store
            .packages(id)?
            .into_iter()
            .find(|p| p.session == session)
            .ok_or_else(|| ServiceError::NotFound(format!("session {session}")))?;
        let packages = Arc::new(self.decode::<WithdrawalPackages>(&stored.document)?);
        let mut cache = self.cache()?;
        cache.bound();
        cache.sessions.insert((*id, session), packages.clone());
        Ok(packages)
    }

    /// The members of session `session` of `id` (the signers of its
    /// packages' approvals).
    fn session_members(
        &self,
        id: &RequestDigest,
        session: u32,
    ) -> Result<Vec<IdentityPublicKey>, ServiceError> {
        Ok(self
            .session(id, session)?
            .approvals
            .iter()
            .map(|a| a.signer)
            .collect())
    }

    /// Records a requester's signed withdrawal request and tells the members.
    ///
    /// # Errors
    /// [`ServiceError::BadDocument`], [`ServiceError::Forbidden`] (signed by
    /// another key than the caller's, or expired), or the store's.
    pub fn submit(&self, caller: &Token, document: Vec<u8>) -> Result<Submitted, ServiceError> {
        let received = Received::<Signed<WithdrawalRequest>>::decode(document)
            .map_err(ServiceError::BadDocument)?;
        if received.group() != self.group_id() {
            return Err(ServiceError::Forbidden(
                "the request is for another group".into(),
            ));
        }
        let request = received.body();
        if caller.role != Role::Requester || request.signer != caller.member {
            return Err(ServiceError::Forbidden(
                "a request is submitted by the requester who signed it".into(),
            ));
        }
        let body = request.verify(self.group_id()).map_err(|_| {
            ServiceError::Forbidden("the request's signature does not verify".into())
        })?;
        if body.requester != request.signer {
            return Err(ServiceError::Forbidden(
                "signed by another key than its requester's".into(),
            ));
        }
        let now = (self.clock)();
        if body.expires_at <= now {
            return Err(ServiceError::Forbidden("the request has expired".into()));
        }
        // No signer's policy accepts a longer life; the coordinator does not
        // keep one open longer either.
        let longest = wallet_core::policy::MAX_REQUEST_LIFETIME_HOURS * 3600
            + wallet_core::withdrawal::refusal::MAX_CLOCK_SKEW_SECS;
        if body.expires_at.saturating_sub(now) > longest {
            return Err(ServiceError::Forbidden(format!(
                "the request lives longer than any signer accepts ({} hours)",
                wallet_core::policy::MAX_REQUEST_LIFETIME_HOURS
            )));
        }
        body.parsed_psbt()
            .map_err(|e| ServiceError::BadRequest(format!("the request's PSBT: {e}")))?;
        Ok(self.store.submit(&received, &self.members)?)
    }

    /// Records a member's approval, then moves the withdrawal on.
    ///
    /// # Errors
    /// [`ServiceError::Forbidden`] for an approval not the caller's, or one
    /// that does not verify for this request; the store's.
    pub fn approve(
        &self,
        caller: &Token,
        id: &RequestDigest,
        document: Vec<u8>,
    ) -> Result<Added, ServiceError> {
        let received = self.checked_approval(caller, id, document)?;
        let added = self.store.add_approval(id, &received)?;
        self.advance(id)?;
        Ok(added)
    }

    fn sighashes(&self, id: &RequestDigest) -> Result<Arc<InputKeys>, ServiceError> {
        if let Some(s) = self.cache()?.sighashes.get(id) {
            return Ok(s.clone());
        }
        let request = self.request_of(id)?;
        let psbt = request
            .body
            .parsed_psbt()
            .map_err(|e| ServiceError::BadRequest(e.to_string()))?;
        let summary = wallet_core::withdrawal::review::review(
            &psbt,
            &self.config.group.xpub(),
            self.config.network,
        )
        .map_err(|e| ServiceError::BadRequest(e.to_string()))?;
        let inputs = Arc::new(
            InputKeys::of(&self.config.group, &summary)
                .map_err(|e| ServiceError::BadRequest(e.to_string()))?,
        );
        let mut cache = self.cache()?;
        cache.bound();
        cache.sighashes.insert(*id, inputs.clone());
        Ok(inputs)
    }

    /// Records a member's answer to a session, then moves the withdrawal
    /// on: its shares, checked the moment they arrive (shares that do not
    /// verify set the member aside as a cheater, record them as evidence,
    /// and open the next session), and its `next` approval for a later
    /// session (fresh commitments), checked like any approval.
    ///
    /// # Errors
    /// [`ServiceError::Forbidden`] for shares not the caller's, from a
    /// member outside the session, or that do not verify; the store's.
    pub fn add_shares(
        &self,
        caller: &Token,
        id: &RequestDigest,
        session: u32,
        document: Vec<u8>,
        next: Option<Vec<u8>>,
    ) -> Result<Added, ServiceError> {
        let received = Received::<Signed<WithdrawalShares>>::decode(document)
            .map_err(ServiceError::BadDocument)?;
        if received.group() != self.group_id() {
            return Err(ServiceError::Forbidden(
                "the shares are for another group".into(),
            ));
        }
        let shares = received.body();
        if caller.role != Role::Signer || shares.signer != caller.member {
            return Err(ServiceError::Forbidden(
                "shares are posted by the member who signed them".into(),
            ));
        }
        if self.config.roster.get(&shares.body.participant) != Some(&shares.signer)
            || shares.verify(self.group_id()).is_err()
        {
            return Err(ServiceError::Forbidden(
                "the shares are not signed by that participant's identity key".into(),
            ));
        }
        let packages = self.session(id, session)?;
        if !packages.approvals.iter().any(|a| a.signer == shares.signer) {
            return Err(ServiceError::Forbidden(format!(
                "this member is not in session {session}"
            )));
        }
        let next = match next {
            Some(bytes) => Some(self.checked_approval(caller, id, bytes)?),
            None => None,
        };
        let inputs = self.sighashes(id)?;
        if let Err(e) = check_shares(
            &self.config.group,
            &inputs,
            &self.config.roster,
            &packages,
            shares,
        ) {
            let detail = e.to_string();
            let aside = SetAside {
                session,
                member: shares.signer,
                reason: SetAsideReason::InvalidShares,
                detail: detail.clone(),
                document: Some(received.bytes().to_vec()),
            };
            if self.store.set_aside(id, &aside)? == Added::New {
                self.log(CoordinatorEvent::SetAside {
                    id: *id,
                    session,
                    member: shares.signer,
                    reason: SetAsideReason::InvalidShares,
                    detail: detail.clone(),
                });
            }
            self.advance(id)?;
            return Err(ServiceError::Forbidden(format!(
                "the shares do not verify, this member is set aside: {detail}"
            )));
        }
        let added = self
            .store
            .add_shares(id, session, &received, next.as_ref())?;
        self.advance(id)?;
        Ok(added)
    }

    /// Decodes and checks an approval posted by `caller` for `id`.
    fn checked_approval(
        &self,
        caller: &Token,
        id: &RequestDigest,
        document: Vec<u8>,
    ) -> Result<Received<Signed<Approval>>, ServiceError> {
        let received =
            Received::<Signed<Approval>>::decode(document).map_err(ServiceError::BadDocument)?;
        if received.group() != self.group_id() {
            return Err(ServiceError::Forbidden(
                "the approval is for another group".into(),
            ));
        }
        let approval = received.body();
        if caller.role != Role::Signer || approval.signer != caller.member {
            return Err(ServiceError::Forbidden(
                "an approval is posted by the member who signed it".into(),
            ));
        }
        if approval.body.request_digest != *id {
            return Err(ServiceError::BadRequest(
                "the approval is for another withdrawal".into(),
            ));
        }
        let sighashes = self.sighashes(id)?;
        verify_approvals(
            &self.config.group,
            &self.config.roster,
            id,
            &sighashes.sighashes,
            std::slice::from_ref(approval),
        )
        .map_err(|e| ServiceError::Forbidden(e.to_string()))?;
        Ok(received)
    }

    /// Moves withdrawal `id` on as far as what is recorded allows, the way
    /// ROAST does (Ruffing et al., CCS 2022), with a deadline:
    ///
    /// 1. a session whose members all answered (their shares verified on
    ///    arrival) finalizes the withdrawal;
    /// 2. a session neither failed (a member's shares did not verify) nor
    ///    past its deadline is waited for; members of a session past its
    ///    deadline that did not answer are set aside as late;
    /// 3. otherwise a new session opens with `t` members that have an
    ///    unused approval (fresh commitments: every answer carries the
    ///    next) and never sent invalid shares: the less often late first,
    ///    then those that already answered a session of this withdrawal.
    ///
    /// A member is pending in at most one session (its approval is used by
    /// one session, its next comes with its answer), a cheater never takes
    /// part again and a late one only when the punctual do not suffice, so
    /// with up to `n − t` members silent or cheating the withdrawal is
    /// signed within `n − t + 1` sessions. Idempotent; what it does is
    /// recorded before it returns.
    ///
    /// # Errors
    /// The store's.
    pub fn advance(&self, id: &RequestDigest) -> Result<(), ServiceError> {
        let _one_at_a_time = self
            .drive
            .lock()
            .map_err(|_| ServiceError::Internal("the coordinator's lock was poisoned".into()))?;
        // And one coordinator at a time, where several share the store.
        let _only_driver = self.store.drive(id)?;
        let record = self.store.withdrawal(id)?;
        if !record.state.is_final() {
            let request = self.request_of(id)?;
            if request.body.expires_at <= (self.clock)() {
                return self.refuse(id, "the request expired before it was signed");
            }
        }
        match record.state {
            WithdrawalState::Submitted => Ok(()),
            WithdrawalState::Approving | WithdrawalState::Signing => self.drive(id),
            WithdrawalState::Finalized | WithdrawalState::Refused => {
                self.forget(id);
                Ok(())
            }
        }
    }

    fn drive(&self, id: &RequestDigest) -> Result<(), ServiceError> {
        let sessions = self.store.packages(id)?;
        let shares = self.store.shares(id)?;
        let mut asides = self.store.set_asides(id)?;
        // 1. A session whose members all answered signs.
        for p in sessions.iter().rev() {
            let members = self.session_members(id, p.session)?;
            let answered: Vec<&[u8]> = members
                .iter()
                .filter_map(|m| {
                    shares
                        .iter()
                        .find(|s| s.session == p.session && s.member == *m)
                        .map(|s| s.document.as_slice())
                })
                .collect();
            if answered.len() == members.len() {
                return self.finalize_session(id, p.session, &answered);
            }
        }
        // 2. A live session is waited for; the late are named.
        let now = Instant::now();
        let mut live = None;
        for p in &sessions {
            let failed = asides
                .iter()
                .any(|a| a.session == p.session && a.reason == SetAsideReason::InvalidShares);
            if failed {
                continue;
            }
            let due = self.started(id, p.session, now)? + self.session_deadline;
            if now < due {
                live = Some(due);
                continue;
            }
            for member in self.session_members(id, p.session)? {
                let answered = shares
                    .iter()
                    .any(|s| s.session == p.session && s.member == member);
                let noted = asides
                    .iter()
                    .any(|a| a.session == p.session && a.member == member);
                if answered || noted {
                    continue;
                }
                let aside = SetAside {
                    session: p.session,
                    member,
                    reason: SetAsideReason::MissedDeadline,
                    detail: format!("no shares within {} ms", self.session_deadline.as_millis()),
                    document: None,
                };
                self.store.set_aside(id, &aside)?;
                self.log(CoordinatorEvent::SetAside {
                    id: *id,
                    session: p.session,
                    member,
                    reason: aside.reason,
                    detail: aside.detail.clone(),
                });
                asides.push(aside);
            }
        }
        if let Some(due) = live {
            return self.wake_at(due, id);
        }
        // 3. The next session, from the responsive members.
        self.open_session(id, &sessions, &shares, &asides)
    }

    fn open_session(
        &self,
        id: &RequestDigest,
        sessions: &[SessionPackages],
        shares: &[crate::store::SessionShares],
        asides: &[SetAside],
    ) -> Result<(), ServiceError> {
        let t = usize::from(self.config.group.min_signers());
        let mut cheaters: Vec<IdentityPublicKey> = Vec::new();
        for a in asides {
            if a.reason == SetAsideReason::InvalidShares && !cheaters.contains(&a.member) {
                cheaters.push(a.member);
            }
        }
        // How often each member missed a deadline: the punctual first, then
        // the less often late (a member that keeps answering just too late
        // sinks behind the honest ones that were late once).
        let misses = |m: &IdentityPublicKey| {
            asides
                .iter()
                .filter(|a| a.reason == SetAsideReason::MissedDeadline && a.member == *m)
                .count()
        };
        if self.members.len() - cheaters.len().min(self.members.len()) < t {
            let named: Vec<String> = cheaters.iter().map(|m| m.to_string()).collect();
            return self.refuse(
                id,
                &format!(
                    "too few members left to sign: {} sent invalid shares ({})",
                    cheaters.len(),
                    named.join(", ")
                ),
            );
        }
        // Among those, a member that answered a session of this withdrawal
        // has shown it is there now; one that only approved has not.
        let answered = |m: &IdentityPublicKey| shares.iter().any(|s| s.member == *m);
        let mut ready: Vec<((usize, bool, usize), Signed<Approval>)> = Vec::new();
        for (i, a) in self.store.approvals(id)?.into_iter().enumerate() {
            if a.used == ApprovalUse::Unused && !cheaters.contains(&a.member) {
                let approval = self.decode::<Signed<Approval>>(&a.document)?;
                ready.push(((misses(&a.member), !answered(&a.member), i), approval));
            }
        }
        if ready.len() < t {
            return Ok(());
        }
        ready.sort_by_key(|(key, _)| *key);
        let approvals: Vec<Signed<Approval>> = ready.into_iter().take(t).map(|(_, a)| a).collect();
        let request = self.request_of(id)?;
        let packages = match build_packages(
            &self.config.group,
            &self.config.roster,
            &request,
            &approvals,
            self.config.network,
        ) {
            Ok(p) => p,
            Err(e) => {
                return self.refuse(id, &format!("cannot build the signing packages: {e}"));
            }
        };
        // Packages too large for a document (a request with thousands of
        // inputs) can never be signed: the withdrawal ends here, refused,
        // instead of failing every retry.
        let document = match format::encode(self.group_id(), &packages)
            .map_err(|e| e.to_string())
            .and_then(|bytes| Received::decode(bytes).map_err(|e| e.to_string()))
        {
            Ok(d) => d,
            Err(e) => return self.refuse(id, &format!("the signing packages cannot be sent: {e}")),
        };
        let session = sessions.iter().map(|p| p.session).max().unwrap_or(0) + 1;
        let members: Vec<_> = approvals.iter().map(|a| a.signer).collect();
        self.store.put_packages(id, session, &document, &members)?;
        {
            let mut cache = self.cache()?;
            cache.bound();
            cache.sessions.insert((*id, session), Arc::new(packages));
        }
        let now = Instant::now();
        self.started(id, session, now)?;
        self.log(CoordinatorEvent::SessionOpened {
            id: *id,
            session,
            members,
        });
        self.wake_at(now + self.session_deadline, id)
    }

    fn finalize_session(
        &self,
        id: &RequestDigest,
        session: u32,
        answered: &[&[u8]],
    ) -> Result<(), ServiceError> {
        let packages = self.session(id, session)?;
        let shares = answered
            .iter()
            .map(|bytes| self.decode::<Signed<WithdrawalShares>>(bytes))
            .collect::<Result<Vec<_>, _>>()?;
        let request = self.request_of(id)?;
        match finalize_withdrawal(
            &self.config.group,
            &self.config.roster,
            &request,
            &packages,
            &shares,
            self.config.network,
        ) {
            Ok((psbt, tx)) => {
                let notify = self.everyone(&request);
                self.store.finalize(
                    id,
                    &psbt.serialize(),
                    &bitcoin::consensus::serialize(&tx),
                    &notify,
                )?;
                self.forget(id);
                self.log(CoordinatorEvent::Finalized { id: *id, session });
                Ok(())
            }
            Err(e) => self.refuse(id, &format!("the shares do not aggregate: {e}")),
        }
    }

    /// When session `session` of `id` started (now, if this process has
    /// not seen it start).
    fn started(
        &self,
        id: &RequestDigest,
        session: u32,
        now: Instant,
    ) -> Result<Instant, ServiceError> {
        Ok(*self
            .deadlines()?
            .started
            .entry((*id, session))
            .or_insert(now))
    }

    fn wake_at(&self, at: Instant, id: &RequestDigest) -> Result<(), ServiceError> {
        let earliest = {
            let mut d = self.deadlines()?;
            let earliest = d.due.first().is_none_or(|(first, _)| at < *first);
            d.due.insert((at, *id));
            earliest
        };
        if earliest {
            self.deadline_added.notify_one();
        }
        Ok(())
    }

    /// Resolves when a deadline earlier than every other was added (a
    /// server sleeping until [`Coordinator::next_deadline`] wakes up).
    pub async fn deadline_added(&self) {
        self.deadline_added.notified().await;
    }

    fn deadlines(&self) -> Result<MutexGuard<'_, Deadlines>, ServiceError> {
        self.deadlines
            .lock()
            .map_err(|_| ServiceError::Internal("the coordinator's deadlines were poisoned".into()))
    }

    /// Drops what is kept in memory about a withdrawal that ended.
    fn forget(&self, id: &RequestDigest) {
        if let Ok(mut cache) = self.cache() {
            cache.forget(id);
        }
        if let Ok(mut d) = self.deadlines() {
            d.started.retain(|(w, _), _| w != id);
            d.due.retain(|(_, w)| w != id);
        }
    }

    /// The earliest time a session deadline needs looking at, if any.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.deadlines().ok()?.due.first().map(|(at, _)| *at)
    }

    /// Moves on every withdrawal whose session deadline has passed
    /// ([`Coordinator::advance`]); returns how many were looked at. A
    /// server calls this whenever [`Coordinator::next_deadline`] is past.
    ///
    /// # Errors
    /// The first error of any withdrawal (the others are still looked at).
    pub fn tick(&self) -> Result<usize, ServiceError> {
        let now = Instant::now();
        let due: BTreeSet<RequestDigest> = {
            let mut d = self.deadlines()?;
            let later = d
                .due
                .split_off(&(now, RequestDigest::from_bytes([0xff; 32])));
            let due = std::mem::replace(&mut d.due, later);
            due.into_iter().map(|(_, id)| id).collect()
        };
        let mut first_error = None;
        for id in &due {
            if let Err(e) = self.advance(id) {
                first_error.get_or_insert(e);
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(due.len()),
        }
    }

    fn everyone(&self, request: &Signed<WithdrawalRequest>) -> Vec<IdentityPublicKey> {
        let mut notify = self.members.clone();
        if !notify.contains(&request.signer) {
            notify.push(request.signer);
        }
        notify
    }

    /// Refuses withdrawal `id` for `reason`, telling everyone.
    ///
    /// # Errors
    /// The store's.
    pub fn refuse(&self, id: &RequestDigest, reason: &str) -> Result<(), ServiceError> {
        let request = self.request_of(id)?;
        let notify = self.everyone(&request);
        self.store.refuse(id, reason, &notify)?;
        self.forget(id);
        self.log(CoordinatorEvent::Refused {
            id: *id,
            reason: reason.to_owned(),
        });
        Ok(())
    }

    /// Continues every open withdrawal (after a restart), and refuses those
    /// whose request has expired. Returns how many are still open.
    ///
    /// # Errors
    /// The store's.
    pub fn resume(&self) -> Result<usize, ServiceError> {
        let now = (self.clock)();
        let mut open = 0;
        let mut first_error = None;
        // One withdrawal that cannot move must not stop the others.
        for record in self.store.list_open()? {
            let step = self
                .decode::<Signed<WithdrawalRequest>>(&record.request)
                .and_then(|request| {
                    // `advance` refuses it when expired (under the lock).
                    self.advance(&record.id)
                        .map(|()| request.body.expires_at > now)
                });
            match step {
                Ok(true) => open += 1,
                Ok(false) => {}
                Err(e) => {
                    open += 1;
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) if open == 0 => Err(e),
            _ => Ok(open),
        }
    }

    /// A withdrawal's status, for its requester or a member.
    ///
    /// # Errors
    /// [`ServiceError::NotFound`] (also for a requester asking about
    /// another's withdrawal); the store's.
    pub fn status(
        &self,
        caller: &Token,
        id: &RequestDigest,
    ) -> Result<WithdrawalStatus, ServiceError> {
        let record = self.store.withdrawal(id)?;
        let packages = self.store.packages(id)?;
        self.status_of(caller, &record, &packages)
    }

    /// The status of `record`, whose sessions' packages are `packages`.
    fn status_of(
        &self,
        caller: &Token,
        record: &WithdrawalRecord,
        packages: &[SessionPackages],
    ) -> Result<WithdrawalStatus, ServiceError> {
        let id = &record.id;
        let request = self.request_of(id)?;
        if caller.role == Role::Requester && request.signer != caller.member {
            return Err(ServiceError::NotFound(format!("withdrawal {id}")));
        }
        let mut approved_by: Vec<IdentityPublicKey> = Vec::new();
        for a in self.store.approvals(id)? {
            if !approved_by.contains(&a.member) {
                approved_by.push(a.member);
            }
        }
        let shares = self.store.shares(id)?;
        let mut sessions = Vec::new();
        for p in packages {
            sessions.push(SessionStatus {
                session: p.session,
                members: self.session_members(id, p.session)?,
                answered: shares
                    .iter()
                    .filter(|s| s.session == p.session)
                    .map(|s| s.member)
                    .collect(),
            });
        }
        let (mut psbt, mut tx, mut reason) = (None, None, None);
        match self.store.result(id)? {
            Some(Outcome::Finalized { psbt: p, tx: t }) => {
                use bitcoin::base64::Engine;
                psbt = Some(bitcoin::base64::engine::general_purpose::STANDARD.encode(p));
                tx = Some(hex::encode(t));
            }
            Some(Outcome::Refused { reason: r }) => reason = Some(r),
            None => {}
        }
        let set_aside = self
            .store
            .set_asides(id)?
            .into_iter()
            .map(|a| SetAsideStatus {
                session: a.session,
                member: a.member,
                reason: a.reason.into(),
                detail: a.detail,
            })
            .collect();
        Ok(WithdrawalStatus {
            id: *id,
            group: *self.group_id(),
            state: StateName::from(record.state),
            approved_by,
            sessions,
            set_aside,
            psbt,
            tx,
            reason,
        })
    }

    /// The request and every session's packages, byte for byte (members
    /// only).
    ///
    /// # Errors
    /// [`ServiceError::Forbidden`] for a requester; the store's.
    pub fn documents(
        &self,
        caller: &Token,
        id: &RequestDigest,
    ) -> Result<StoredDocuments, ServiceError> {
        if caller.role != Role::Signer {
            return Err(ServiceError::Forbidden("documents are for members".into()));
        }
        let record = self.store.withdrawal(id)?;
        let packages = self.store.packages(id)?;
        let status = self.status_of(caller, &record, &packages)?;
        let sessions = packages
            .into_iter()
            .map(|p| (p.session, p.document))
            .collect();
        Ok(StoredDocuments {
            status,
            request: record.request,
            sessions,
        })
    }

    /// A page of the caller's mailbox.
    ///
    /// # Errors
    /// The store's.
    pub fn work(&self, caller: &Token, after: u64, limit: u32) -> Result<Work, ServiceError> {
        Ok(self.store.work_for(&caller.member, after, limit)?)
    }
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        ServiceError::Store(e)
    }
}
