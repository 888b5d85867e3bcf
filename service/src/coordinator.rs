//! What the coordinator does with what it is sent, independent of HTTP:
//! it checks each document as far as it can without keys, records it, and
//! moves the withdrawal on (packages once `t` approvals are in, the final
//! transaction once a session's shares are). Every step reads its inputs
//! from the store, so a restarted coordinator continues each withdrawal
//! with [`Coordinator::resume`].
//!
//! The coordinator is untrusted: the signers verify everything again. Its
//! checks only keep garbage out of the store and name culprits early.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use sha2::{Digest, Sha256};
use wallet_core::format::{self, GroupId};
use wallet_core::frost_core::Identifier;
use wallet_core::withdrawal::signer::verify_approvals;
use wallet_core::{
    bitcoin, build_packages, finalize_withdrawal, Approval, IdentityPublicKey, PublicGroup,
    RequestDigest, Secp256k1Tr, Signed, WithdrawalPackages, WithdrawalRequest, WithdrawalShares,
};

use crate::api::{
    ChallengeResponse, LoginResponse, ServiceLogin, SessionStatus, StateName, WithdrawalStatus,
    CHALLENGE_LIFETIME_SECS, TOKEN_LIFETIME_SECS,
};
use crate::error::{ServiceError, StoreError};
use crate::store::{
    Added, Outcome, Received, Role, SessionPackages, Store, Submitted, Token, WithdrawalRecord,
    WithdrawalState, Work,
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
    sighashes: std::collections::HashMap<RequestDigest, Arc<Vec<wallet_core::SigningDigest>>>,
    /// The members of each session (the signers of its packages' approvals).
    sessions: std::collections::HashMap<(RequestDigest, u32), Arc<Vec<IdentityPublicKey>>>,
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

/// The coordinator's logic over a [`Store`].
pub struct Coordinator<S> {
    config: CoordinatorConfig,
    store: S,
    members: Vec<IdentityPublicKey>,
    cache: Mutex<Cache>,
    /// One withdrawal moves on at a time: two approvals arriving together
    /// must not build two different first sessions.
    drive: Mutex<()>,
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

fn random_32() -> Result<[u8; 32], ServiceError> {
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
            clock: system_clock,
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
        let role = Role::from(body.role);
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

    /// The members of session `session` of `id`.
    fn session_members(
        &self,
        id: &RequestDigest,
        session: u32,
    ) -> Result<Arc<Vec<IdentityPublicKey>>, ServiceError> {
        if let Some(m) = self.cache()?.sessions.get(&(*id, session)) {
            return Ok(m.clone());
        }
        let packages = self.session_packages(id, session)?;
        let members = Arc::new(
            packages
                .approvals
                .iter()
                .map(|a| a.signer)
                .collect::<Vec<_>>(),
        );
        let mut cache = self.cache()?;
        cache.bound();
        cache.sessions.insert((*id, session), members.clone());
        Ok(members)
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
            &sighashes,
            std::slice::from_ref(approval),
        )
        .map_err(|e| ServiceError::Forbidden(e.to_string()))?;
        let added = self.store.add_approval(id, &received)?;
        self.advance(id)?;
        Ok(added)
    }

    fn sighashes(
        &self,
        id: &RequestDigest,
    ) -> Result<Arc<Vec<wallet_core::SigningDigest>>, ServiceError> {
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
            &self.config.group.taproot(),
            self.config.network,
        )
        .map_err(|e| ServiceError::BadRequest(e.to_string()))?;
        let sighashes = Arc::new(summary.sighashes());
        let mut cache = self.cache()?;
        cache.bound();
        cache.sighashes.insert(*id, sighashes.clone());
        Ok(sighashes)
    }

    /// Records a member's shares for a session, then moves the withdrawal on.
    ///
    /// # Errors
    /// [`ServiceError::Forbidden`] for shares not the caller's or from a
    /// member outside the session; the store's.
    pub fn add_shares(
        &self,
        caller: &Token,
        id: &RequestDigest,
        session: u32,
        document: Vec<u8>,
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
        if !self.session_members(id, session)?.contains(&shares.signer) {
            return Err(ServiceError::Forbidden(format!(
                "this member is not in session {session}"
            )));
        }
        let added = self.store.add_shares(id, session, &received)?;
        self.advance(id)?;
        Ok(added)
    }

    fn session_packages(
        &self,
        id: &RequestDigest,
        session: u32,
    ) -> Result<WithdrawalPackages, ServiceError> {
        let stored = self
            .store
            .packages(id)?
            .into_iter()
            .find(|p| p.session == session)
            .ok_or_else(|| ServiceError::NotFound(format!("session {session}")))?;
        self.decode(&stored.document)
    }

    /// Moves withdrawal `id` on as far as what is recorded allows: builds
    /// the first session's packages from the first `t` approvals, and
    /// finalizes (or refuses, naming the culprits) once the session's shares
    /// are all in. Idempotent; what it does is recorded before it returns.
    ///
    /// # Errors
    /// The store's.
    pub fn advance(&self, id: &RequestDigest) -> Result<(), ServiceError> {
        let _one_at_a_time = self
            .drive
            .lock()
            .map_err(|_| ServiceError::Internal("the coordinator's lock was poisoned".into()))?;
        let record = self.store.withdrawal(id)?;
        match record.state {
            WithdrawalState::Submitted | WithdrawalState::Approving => self.open_session(id),
            WithdrawalState::Signing => self.try_finalize(id),
            WithdrawalState::Finalized | WithdrawalState::Refused => Ok(()),
        }
    }

    fn open_session(&self, id: &RequestDigest) -> Result<(), ServiceError> {
        let t = usize::from(self.config.group.min_signers());
        let stored = self.store.approvals(id)?;
        if stored.len() < t {
            return Ok(());
        }
        let request = self.request_of(id)?;
        let approvals = stored
            .iter()
            .take(t)
            .map(|a| self.decode::<Signed<Approval>>(&a.document))
            .collect::<Result<Vec<_>, _>>()?;
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
        let members: Vec<_> = approvals.iter().map(|a| a.signer).collect();
        self.store.put_packages(id, 1, &document, &members)?;
        let mut cache = self.cache()?;
        cache.bound();
        cache.sessions.insert((*id, 1), Arc::new(members));
        Ok(())
    }

    fn try_finalize(&self, id: &RequestDigest) -> Result<(), ServiceError> {
        let Some(last) = self
            .store
            .packages(id)?
            .into_iter()
            .max_by_key(|p| p.session)
        else {
            return Ok(());
        };
        let packages: WithdrawalPackages = self.decode(&last.document)?;
        let shares = self
            .store
            .shares(id)?
            .into_iter()
            .filter(|s| s.session == last.session)
            .map(|s| self.decode::<Signed<WithdrawalShares>>(&s.document))
            .collect::<Result<Vec<_>, _>>()?;
        if shares.len() < packages.approvals.len() {
            return Ok(());
        }
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
                self.cache()?.forget(id);
                Ok(())
            }
            Err(e) => self.refuse(id, &format!("the shares do not aggregate: {e}")),
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
        self.cache()?.forget(id);
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
                    if request.body.expires_at <= now {
                        self.refuse(&record.id, "the request expired before it was signed")
                            .map(|()| false)
                    } else {
                        self.advance(&record.id).map(|()| true)
                    }
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
        let approved_by = self
            .store
            .approvals(id)?
            .into_iter()
            .map(|a| a.member)
            .collect();
        let shares = self.store.shares(id)?;
        let mut sessions = Vec::new();
        for p in packages {
            sessions.push(SessionStatus {
                session: p.session,
                members: self.session_members(id, p.session)?.to_vec(),
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
        Ok(WithdrawalStatus {
            id: *id,
            group: *self.group_id(),
            state: StateName::from(record.state),
            approved_by,
            sessions,
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
