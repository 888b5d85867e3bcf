//! The ceremony mailbox: the coordinator relays the documents of DKG,
//! refresh and repair ceremonies between their participants, and can learn
//! nothing from them and forge nothing in them.
//!
//! Every document a ceremony exchanges is defined in `wallet_core::ceremony`
//! and is signed by its author's identity key (secret parts signed, then
//! sealed to their reader), and every participant checks each one against
//! the cards it pinned. The mailbox therefore does not need to be trusted:
//! it reads a document's envelope only (a Kura document of a ceremony kind,
//! [`crate::api::CEREMONY_KINDS`]), keeps it, and hands it to the readers
//! it is addressed to. What it can do is what any courier can: delay or
//! drop messages (the ceremony then stops, naming whose are missing), or
//! hand on altered or forged ones (refused by every reader as not
//! authentic, naming the claimed author and not blaming it).
//!
//! A mailbox has a **scope** (a ceremony id, or a group's id for its
//! maintenance ceremonies) and the identity keys of the scope's
//! participants; only they log in (a `service-login` document signed in the
//! scope, role `participant`, naming the mailbox's certificate) and only
//! they post and read. A reader sees the broadcasts, the messages addressed
//! to it and its own.
//!
//! What the mailbox does learn is what any courier of the files would:
//! who takes part, when, and the public parts — the round-1 commitments,
//! and so the group's public key, before the participants have it. Secret
//! parts (round-2 shares, refresh and repair pieces) are sealed to their
//! readers.
//!
//! The mailbox is kept in memory, bounded ([`RelayLimits`]; a
//! participant's newest messages push out its own oldest): a ceremony
//! takes seconds and every participant holds what it posted, so a restarted
//! mailbox is filled again by its running participants, who see its
//! [`MailboxPage::epoch`] change and post again ([`crate::ceremony`] does).
//! A one-shot poster (`kura mailbox send`) posts again by hand.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, FromRequestParts, State};
use axum::http::request::Parts;
use axum::response::IntoResponse;
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use wallet_core::format::{self, GroupId};
use wallet_core::{IdentityPublicKey, Signed};

use crate::api::{
    self, ChallengeRequest, ChallengeResponse, LoginResponse, MailboxMessage, MailboxPage,
    MailboxPost, Posted, RoleName, ServiceLogin, CEREMONY_KINDS,
};
use crate::coordinator::{random_32, system_clock, token_hash};
use crate::error::ServiceError;
use crate::server::{Body, Params, QueryParams};
use crate::tls::CertFingerprint;

/// How much one mailbox holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RelayLimits {
    /// Messages of one participant one scope holds (past it, the
    /// participant's oldest are dropped for its newest).
    pub messages_per_participant: usize,
    /// Bytes of one participant's messages one scope holds (likewise).
    pub bytes_per_participant: usize,
    /// The largest message.
    pub max_message_bytes: usize,
}

impl RelayLimits {
    /// The limits for a scope of `participants`: a DKG posts `1 + (n-1)`
    /// messages per participant and a refresh or repair a few, so
    /// `4n + 16` messages, 8 MiB, and 1 MiB per message.
    pub fn for_participants(participants: usize) -> Self {
        RelayLimits {
            messages_per_participant: participants.saturating_mul(4).saturating_add(16),
            bytes_per_participant: 8 * 1024 * 1024,
            max_message_bytes: 1024 * 1024,
        }
    }
}

/// One scope the mailbox serves: its id and who may use it.
#[derive(Clone, Debug)]
pub struct Scope {
    /// The ceremony's (or group's) id.
    pub id: GroupId,
    /// The participants' identity keys.
    pub participants: Vec<IdentityPublicKey>,
}

impl Scope {
    /// The scope of a DKG ceremony: its id, every member's (and the
    /// dealer's) key.
    pub fn of_ceremony<C: wallet_core::KuraSuite>(
        ceremony: &wallet_core::ceremony::dkg::Ceremony<C>,
    ) -> Self {
        Scope {
            id: *ceremony.id(),
            participants: ceremony
                .members()
                .values()
                .chain(ceremony.dealer())
                .map(|card| card.key)
                .collect(),
        }
    }
}

struct Message {
    seq: u64,
    from: IdentityPublicKey,
    to: Option<IdentityPublicKey>,
    kind: String,
    digest: [u8; 32],
    document: Arc<str>,
}

struct Mailbox {
    participants: Vec<IdentityPublicKey>,
    limits: RelayLimits,
    /// Oldest first; `seq` rises strictly.
    messages: Vec<Message>,
    last_seq: u64,
}

impl Mailbox {
    fn posted_by(&self, key: &IdentityPublicKey) -> (usize, usize) {
        self.messages
            .iter()
            .filter(|m| m.from == *key)
            .fold((0, 0), |(n, bytes), m| (n + 1, bytes + m.document.len()))
    }

    /// Makes room for `caller`'s next message of `len` bytes by dropping
    /// its own oldest messages: a participant's newest posts push out its
    /// oldest, and never anyone else's. (A group's mailbox serves its
    /// maintenance ceremonies for as long as the coordinator runs; a
    /// ceremony posts far fewer than the limit.)
    fn make_room(&mut self, caller: &IdentityPublicKey, len: usize) {
        let (mut count, mut held) = self.posted_by(caller);
        let limits = self.limits;
        self.messages.retain(|m| {
            let over = count >= limits.messages_per_participant
                || held.saturating_add(len) > limits.bytes_per_participant;
            if over && m.from == *caller {
                count -= 1;
                held -= m.document.len();
                false
            } else {
                true
            }
        });
    }
}

#[derive(Clone, Copy)]
struct Grant {
    scope: GroupId,
    key: IdentityPublicKey,
    expires_at: u64,
}

#[derive(Default)]
struct Inner {
    mailboxes: HashMap<GroupId, Mailbox>,
    challenges: HashMap<[u8; 32], Grant>,
    tokens: HashMap<[u8; 32], Grant>,
}

impl Inner {
    /// At most this many open challenges, and as many tokens, for one
    /// participant of one scope: one participant cannot use up what the
    /// others need to log in.
    const MAX_GRANTS_PER_KEY: usize = 16;

    /// Drops the expired grants, then refuses a new one for `grant`'s
    /// participant and scope when it already holds
    /// [`Inner::MAX_GRANTS_PER_KEY`]. (Grants are issued only to
    /// participants, so the map holds at most that many per participant.)
    fn admit(
        map: &mut HashMap<[u8; 32], Grant>,
        grant: &Grant,
        now: u64,
    ) -> Result<(), ServiceError> {
        map.retain(|_, g| g.expires_at > now);
        let held = map
            .values()
            .filter(|g| g.key == grant.key && g.scope == grant.scope)
            .count();
        if held >= Self::MAX_GRANTS_PER_KEY {
            return Err(ServiceError::Full(
                "this participant has too many logins in progress; try again later".into(),
            ));
        }
        Ok(())
    }
}

/// The ceremony mailbox of one server: its scopes and what they hold.
pub struct Relay {
    fingerprint: CertFingerprint,
    epoch: String,
    clock: fn() -> u64,
    inner: Mutex<Inner>,
    news: tokio::sync::watch::Sender<u64>,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("fingerprint", &self.fingerprint)
            .field("epoch", &self.epoch)
            .finish_non_exhaustive()
    }
}

impl Relay {
    /// A mailbox for `scopes`, behind the certificate `fingerprint` (which
    /// logins must name).
    pub fn new(fingerprint: CertFingerprint, scopes: Vec<Scope>) -> Self {
        let mut inner = Inner::default();
        for scope in scopes {
            let limits = RelayLimits::for_participants(scope.participants.len());
            inner.mailboxes.insert(
                scope.id,
                Mailbox {
                    participants: scope.participants,
                    limits,
                    messages: Vec::new(),
                    last_seq: 0,
                },
            );
        }
        // An epoch only has to differ between runs: the start time and
        // the process.
        let started = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let mut h = Sha256::new();
        h.update(started.to_be_bytes());
        h.update(std::process::id().to_be_bytes());
        h.update((&inner as *const Inner as usize).to_be_bytes());
        let epoch: [u8; 32] = h.finalize().into();
        Relay {
            fingerprint,
            epoch: hex::encode(epoch.get(..16).unwrap_or_default()),
            clock: system_clock,
            inner: Mutex::new(inner),
            news: tokio::sync::watch::channel(0).0,
        }
    }

    /// Reads time from `clock` (Unix seconds) instead of the system's.
    pub fn with_clock(mut self, clock: fn() -> u64) -> Self {
        self.clock = clock;
        self
    }

    /// Sets the limits of `scope`'s mailbox.
    ///
    /// # Errors
    /// [`ServiceError::NotFound`] for a scope it does not serve.
    pub fn set_limits(&self, scope: &GroupId, limits: RelayLimits) -> Result<(), ServiceError> {
        self.lock()?
            .mailboxes
            .get_mut(scope)
            .map(|m| m.limits = limits)
            .ok_or_else(no_scope)
    }

    fn lock(&self) -> Result<MutexGuard<'_, Inner>, ServiceError> {
        self.inner
            .lock()
            .map_err(|_| ServiceError::Internal("the mailbox was poisoned".into()))
    }

    /// Issues a login challenge to a participant of `scope`.
    ///
    /// # Errors
    /// [`ServiceError::NotFound`] for a scope it does not serve,
    /// [`ServiceError::Forbidden`] for a key that is not a participant.
    pub fn challenge(
        &self,
        scope: &GroupId,
        key: &IdentityPublicKey,
    ) -> Result<ChallengeResponse, ServiceError> {
        let now = (self.clock)();
        let mut inner = self.lock()?;
        let mailbox = inner.mailboxes.get(scope).ok_or_else(no_scope)?;
        if !mailbox.participants.contains(key) {
            return Err(ServiceError::Forbidden(
                "this key is not a participant of this ceremony".into(),
            ));
        }
        let grant = Grant {
            scope: *scope,
            key: *key,
            expires_at: now.saturating_add(api::CHALLENGE_LIFETIME_SECS),
        };
        Inner::admit(&mut inner.challenges, &grant, now)?;
        let challenge = random_32()?;
        inner.challenges.insert(challenge, grant);
        let expires_at = grant.expires_at;
        Ok(ChallengeResponse {
            challenge: hex::encode(challenge),
            expires_at,
        })
    }

    /// Checks a signed login to `scope` and issues a token.
    ///
    /// # Errors
    /// [`ServiceError::BadDocument`] for a malformed document,
    /// [`ServiceError::Unauthenticated`] for a bad signature, an unknown,
    /// used or expired challenge, another certificate, scope or role.
    pub fn login(&self, scope: &GroupId, document: &[u8]) -> Result<LoginResponse, ServiceError> {
        let unauthenticated = |why: &str| ServiceError::Unauthenticated(why.to_owned());
        let login: Signed<ServiceLogin> =
            format::decode_for_group(document, scope).map_err(ServiceError::BadDocument)?;
        let body = login
            .verify(scope)
            .map_err(|_| unauthenticated("the login's signature does not verify"))?;
        if body.coordinator != self.fingerprint {
            return Err(unauthenticated("the login names another server"));
        }
        if body.role != RoleName::Participant {
            return Err(unauthenticated(
                "a ceremony's mailbox takes logins of role participant",
            ));
        }
        let mut challenge = [0u8; 32];
        hex::decode_to_slice(&body.challenge, &mut challenge)
            .map_err(|_| unauthenticated("the challenge is not 32 bytes of hex"))?;
        let now = (self.clock)();
        let mut inner = self.lock()?;
        match inner.challenges.remove(&challenge) {
            Some(g) if g.key == login.signer && g.scope == *scope && g.expires_at > now => {}
            _ => return Err(unauthenticated("unknown, used or expired challenge")),
        }
        let grant = Grant {
            scope: *scope,
            key: login.signer,
            expires_at: now.saturating_add(api::TOKEN_LIFETIME_SECS),
        };
        Inner::admit(&mut inner.tokens, &grant, now)?;
        let token = random_32()?;
        inner.tokens.insert(token_hash(&token), grant);
        let expires_at = grant.expires_at;
        Ok(LoginResponse {
            token: hex::encode(token),
            expires_at,
        })
    }

    /// The participant of `scope` holding this bearer token.
    fn authenticate(
        &self,
        scope: &GroupId,
        bearer: &str,
    ) -> Result<IdentityPublicKey, ServiceError> {
        let mut token = [0u8; 32];
        hex::decode_to_slice(bearer, &mut token)
            .map_err(|_| ServiceError::Unauthenticated("malformed token".into()))?;
        let now = (self.clock)();
        match self.lock()?.tokens.get(&token_hash(&token)) {
            Some(g) if g.scope == *scope && g.expires_at > now => Ok(g.key),
            _ => Err(ServiceError::Unauthenticated(
                "unknown or expired token for this ceremony".into(),
            )),
        }
    }

    /// Records `caller`'s post to `scope`'s mailbox.
    ///
    /// # Errors
    /// [`ServiceError::BadDocument`] for what is not a Kura document of a
    /// ceremony kind; [`ServiceError::BadRequest`] for a reader who is not
    /// a participant (or the caller itself); [`ServiceError::TooLarge`] for
    /// a message over [`RelayLimits::max_message_bytes`]. Past the caller's
    /// count or bytes, its own oldest messages are dropped to make room.
    pub fn post(
        &self,
        scope: &GroupId,
        caller: &IdentityPublicKey,
        post: MailboxPost,
    ) -> Result<Posted, ServiceError> {
        let bytes = post.document.get().as_bytes();
        let envelope = format::peek(bytes).map_err(ServiceError::BadDocument)?;
        if !CEREMONY_KINDS.contains(&envelope.kind.as_str()) {
            return Err(ServiceError::BadRequest(
                "the mailbox carries ceremony documents only".into(),
            ));
        }
        let digest: [u8; 32] = Sha256::digest(bytes).into();
        let mut inner = self.lock()?;
        let mailbox = inner.mailboxes.get_mut(scope).ok_or_else(no_scope)?;
        if let Some(to) = &post.to {
            if !mailbox.participants.contains(to) || to == caller {
                return Err(ServiceError::BadRequest(
                    "a message is for another participant of the ceremony, or for all".into(),
                ));
            }
        }
        if let Some(m) = mailbox
            .messages
            .iter()
            .find(|m| m.from == *caller && m.to == post.to && m.digest == digest)
        {
            return Ok(Posted {
                epoch: self.epoch.clone(),
                seq: m.seq,
                duplicate: true,
            });
        }
        let limits = mailbox.limits;
        if bytes.len() > limits.max_message_bytes || bytes.len() > limits.bytes_per_participant {
            return Err(ServiceError::TooLarge {
                limit: limits.max_message_bytes.min(limits.bytes_per_participant),
            });
        }
        mailbox.make_room(caller, bytes.len());
        mailbox.last_seq = mailbox.last_seq.saturating_add(1);
        let seq = mailbox.last_seq;
        mailbox.messages.push(Message {
            seq,
            from: *caller,
            to: post.to,
            kind: envelope.kind,
            digest,
            document: Arc::from(post.document.get()),
        });
        drop(inner);
        self.news.send_modify(|n| *n = n.wrapping_add(1));
        Ok(Posted {
            epoch: self.epoch.clone(),
            seq,
            duplicate: false,
        })
    }

    /// What `caller` may read of `scope`'s mailbox after `after`: the
    /// broadcasts, the messages to it and its own, at most `limit` of them
    /// and at most [`MAX_PAGE_BYTES`] of documents (but always the first
    /// one there is).
    ///
    /// # Errors
    /// [`ServiceError::NotFound`] for a scope it does not serve.
    pub fn messages(
        &self,
        scope: &GroupId,
        caller: &IdentityPublicKey,
        after: u64,
        limit: usize,
    ) -> Result<MailboxPage, ServiceError> {
        let inner = self.lock()?;
        let mailbox = inner.mailboxes.get(scope).ok_or_else(no_scope)?;
        let start = mailbox.messages.partition_point(|m| m.seq <= after);
        let mut messages = Vec::new();
        let mut bytes = 0usize;
        let mut next = after.min(mailbox.last_seq);
        for m in mailbox.messages.iter().skip(start) {
            if m.to.is_some_and(|to| to != *caller) && m.from != *caller {
                next = m.seq;
                continue;
            }
            if messages.len() >= limit
                || (!messages.is_empty() && bytes.saturating_add(m.document.len()) > MAX_PAGE_BYTES)
            {
                break;
            }
            next = m.seq;
            bytes = bytes.saturating_add(m.document.len());
            let document = serde_json::value::RawValue::from_string(m.document.to_string())
                .map_err(|_| ServiceError::Internal("a stored message is not JSON".into()))?;
            messages.push(MailboxMessage {
                seq: m.seq,
                from: m.from,
                to: m.to,
                kind: m.kind.clone(),
                document,
            });
        }
        Ok(MailboxPage {
            epoch: self.epoch.clone(),
            messages,
            next,
        })
    }
}

fn no_scope() -> ServiceError {
    ServiceError::NotFound("no such ceremony on this server".into())
}

fn scope_of(text: &str) -> Result<GroupId, ServiceError> {
    text.parse()
        .map_err(|_| ServiceError::BadRequest("a ceremony id is 64 lowercase hex digits".into()))
}

/// The most messages one page carries.
pub const MAX_PAGE_MESSAGES: usize = 256;

/// The most bytes of documents one page carries (a client reads an answer
/// of twice [`api::MAX_BODY_BYTES`] at most; one message is at most
/// [`RelayLimits::max_message_bytes`], 1 MiB by default).
pub const MAX_PAGE_BYTES: usize = api::MAX_BODY_BYTES;

/// A logged-in participant of the scope in the path.
struct Participant {
    scope: GroupId,
    key: IdentityPublicKey,
}

impl FromRequestParts<Arc<Relay>> for Participant {
    type Rejection = ServiceError;

    async fn from_request_parts(
        parts: &mut Parts,
        relay: &Arc<Relay>,
    ) -> Result<Self, Self::Rejection> {
        let Params(scope) = Params::<String>::from_request_parts(parts, relay).await?;
        let scope = scope_of(&scope)?;
        let key = relay.authenticate(&scope, crate::server::bearer(parts)?)?;
        Ok(Participant { scope, key })
    }
}

/// The mailbox's routes ([`crate::api`]), without the server-wide limits
/// ([`crate::server::relay_router`] adds them).
pub fn routes(relay: Arc<Relay>) -> Router {
    let auth = Router::new()
        .route("/v1/ceremonies/{scope}/auth/challenge", post(challenge))
        .route("/v1/ceremonies/{scope}/auth/login", post(login))
        .layer(DefaultBodyLimit::max(api::MAX_AUTH_BODY_BYTES));
    let rest = Router::new()
        .route(
            "/v1/ceremonies/{scope}/messages",
            post(post_message).get(messages),
        )
        .layer(DefaultBodyLimit::max(api::MAX_BODY_BYTES));
    Router::new().merge(auth).merge(rest).with_state(relay)
}

async fn challenge(
    State(relay): State<Arc<Relay>>,
    Params(scope): Params<String>,
    Body(body): Body,
) -> Result<impl IntoResponse, ServiceError> {
    let scope = scope_of(&scope)?;
    let request: ChallengeRequest = serde_json::from_slice(&body)
        .map_err(|_| ServiceError::BadRequest("expected {\"key\": <identity key>}".into()))?;
    Ok(Json(relay.challenge(&scope, &request.key)?))
}

async fn login(
    State(relay): State<Arc<Relay>>,
    Params(scope): Params<String>,
    Body(body): Body,
) -> Result<impl IntoResponse, ServiceError> {
    let scope = scope_of(&scope)?;
    Ok(Json(relay.login(&scope, &body)?))
}

async fn post_message(
    State(relay): State<Arc<Relay>>,
    caller: Participant,
    Body(body): Body,
) -> Result<impl IntoResponse, ServiceError> {
    let post: MailboxPost = serde_json::from_slice(&body).map_err(|_| {
        ServiceError::BadRequest("expected {\"to\": <identity key>?, \"document\": {…}}".into())
    })?;
    Ok(Json(relay.post(&caller.scope, &caller.key, post)?))
}

/// `GET …/messages`'s query.
#[derive(Debug, Deserialize)]
struct MessagesQuery {
    #[serde(default)]
    after: u64,
    #[serde(default)]
    wait_ms: u64,
}

async fn messages(
    State(relay): State<Arc<Relay>>,
    caller: Participant,
    QueryParams(query): QueryParams<MessagesQuery>,
) -> Result<impl IntoResponse, ServiceError> {
    let deadline =
        tokio::time::Instant::now() + Duration::from_millis(query.wait_ms.min(api::MAX_WAIT_MS));
    let mut news = relay.news.subscribe();
    loop {
        news.borrow_and_update();
        let page = relay.messages(&caller.scope, &caller.key, query.after, MAX_PAGE_MESSAGES)?;
        if !page.messages.is_empty()
            || tokio::time::timeout_at(deadline, news.changed())
                .await
                .is_err()
        {
            return Ok(Json(page));
        }
    }
}
