//! A participant's side of the ceremony mailbox ([`crate::relay`]):
//! [`MailboxClient`] posts and gathers ceremony documents, and
//! [`run_dkg`] runs a whole DKG through it.
//!
//! The mailbox is a courier and is not trusted: everything gathered is
//! handed to `wallet_core::ceremony`, which checks every signature and seal
//! against the cards this participant pinned. What the mailbox can still do
//! is withhold messages; then gathering ends at its deadline with
//! [`MailboxError::Incomplete`], naming whose messages are missing.
//!
//! ```no_run
//! # async fn dkg(url: &str, pin: kura_service::CertFingerprint,
//! #     ceremony: wallet_core::ceremony::dkg::Confirmed<wallet_core::Secp256k1Tr>,
//! #     keystore: std::sync::Arc<dyn wallet_core::Keystore>) -> Result<(), kura_service::MailboxError> {
//! use kura_service::ceremony::{run_dkg, MailboxClient};
//! let mailbox = MailboxClient::new(&[url], pin, *ceremony.id(), keystore.clone())?;
//! let done = run_dkg(&mailbox, &ceremony, &*keystore, std::time::Duration::from_secs(120)).await?;
//! println!("group fingerprint {}", done.fingerprint);
//! # Ok(()) }
//! ```

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::time::Duration;

use rand_core::OsRng;
use sha2::{Digest, Sha256};
use tokio::sync::Mutex;
use wallet_core::ceremony::dkg::{
    self, Ceremony, Confirmed, Finished, Round1Document, Round2Document,
};
use wallet_core::format::{self, DocumentBody, GroupId};
use wallet_core::frost_core::Identifier;
use wallet_core::{IdentityPublicKey, Keystore, KuraSuite};

use crate::api::{MailboxPage, MailboxPost, Posted, RoleName};
use crate::client::Client;
use crate::error::{ClientError, MailboxError};
use crate::tls::CertFingerprint;

/// How long one long poll of the mailbox waits.
const POLL: Duration = Duration::from_secs(5);
/// How long to wait before looking again when the mailbox cannot be reached.
const RETRY: Duration = Duration::from_millis(250);

/// A participant logged in (or about to log in) to one scope's mailbox.
///
/// It remembers what it posted: when the mailbox's epoch changes (it was
/// restarted and lost what it held), it posts all of it again.
pub struct MailboxClient {
    client: Client,
    scope: GroupId,
    state: Mutex<ClientState>,
}

impl std::fmt::Debug for MailboxClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MailboxClient")
            .field("client", &self.client)
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

/// A document the mailbox handed on.
#[derive(Clone, Debug)]
pub struct Delivered {
    /// Who posted it, as the mailbox says (for routing and file names
    /// only: the document's own signature says who wrote it).
    pub from: IdentityPublicKey,
    /// Its kind, from its envelope.
    pub kind: String,
    /// Its place in the mailbox (in the epoch it was read in).
    pub seq: u64,
    /// The document, byte for byte.
    pub document: Vec<u8>,
}

#[derive(Default)]
struct ClientState {
    epoch: Option<String>,
    after: u64,
    sent: Vec<(Option<IdentityPublicKey>, Vec<u8>)>,
    /// Every document received, once each (by the digest of its bytes).
    inbox: Vec<Delivered>,
    seen: HashSet<[u8; 32]>,
}

impl MailboxClient {
    /// A client of the mailbox of `scope` at `bases` (one URL, or several
    /// coordinators sharing one certificate `pin`), logging in with the
    /// identity key of `keystore`.
    ///
    /// # Errors
    /// As [`Client::new`].
    pub fn new(
        bases: &[&str],
        pin: CertFingerprint,
        scope: GroupId,
        keystore: Arc<dyn Keystore>,
    ) -> Result<Self, ClientError> {
        let client = Client::with_failover(bases, pin, scope, RoleName::Participant, keystore)?
            .with_auth_prefix(format!("/v1/ceremonies/{scope}"));
        Ok(MailboxClient {
            client,
            scope,
            state: Mutex::new(ClientState::default()),
        })
    }

    /// The scope.
    pub fn scope(&self) -> &GroupId {
        &self.scope
    }

    async fn send(
        &self,
        to: Option<&IdentityPublicKey>,
        document: &[u8],
    ) -> Result<Posted, ClientError> {
        let text = std::str::from_utf8(document).map_err(|e| ClientError::Encode(e.to_string()))?;
        let raw = serde_json::value::RawValue::from_string(text.to_owned())
            .map_err(|e| ClientError::Encode(e.to_string()))?;
        let body = serde_json::to_vec(&MailboxPost {
            to: to.copied(),
            document: raw,
        })
        .map_err(|e| ClientError::Encode(e.to_string()))?;
        let path = format!("/v1/ceremonies/{}/messages", self.scope);
        self.client
            .call(self.client.post_document(path, body))
            .await
    }

    /// Posts a ceremony document for `to`, or for everyone; posting the same
    /// document again is harmless.
    ///
    /// # Errors
    /// [`ClientError`].
    pub async fn post(
        &self,
        to: Option<&IdentityPublicKey>,
        document: Vec<u8>,
    ) -> Result<Posted, ClientError> {
        let posted = self.send(to, &document).await?;
        let mut state = self.state.lock().await;
        if !state
            .sent
            .iter()
            .any(|(t, d)| t.as_ref() == to && *d == document)
        {
            state.sent.push((to.copied(), document));
        }
        if state.epoch.is_none() {
            state.epoch = Some(posted.epoch.clone());
        }
        Ok(posted)
    }

    /// The mailbox's epoch as last seen (`None` before the first answer).
    pub async fn epoch(&self) -> Option<String> {
        self.state.lock().await.epoch.clone()
    }

    /// Everything received so far (this participant's own posts included),
    /// oldest first.
    pub async fn inbox(&self) -> Vec<Delivered> {
        self.state.lock().await.inbox.clone()
    }

    /// Waits up to `wait` for new messages and keeps them (see
    /// [`MailboxClient::inbox`]); when the mailbox was restarted, posts
    /// again what this participant posted and reads it from the start.
    ///
    /// # Errors
    /// [`ClientError`].
    pub async fn fetch(&self, wait: Duration) -> Result<(), ClientError> {
        let after = self.state.lock().await.after;
        let query = format!("after={after}&wait_ms={}", wait.as_millis());
        let path = format!("/v1/ceremonies/{}/messages?{query}", self.scope);
        let page: MailboxPage = self
            .client
            .call(|http, base| http.get(format!("{base}{path}")))
            .await?;
        let mut state = self.state.lock().await;
        if state.epoch.as_ref().is_some_and(|e| *e != page.epoch) {
            // The new epoch is taken only once everything is posted again:
            // a post that fails leaves the old one, and the next fetch
            // posts again.
            let sent = state.sent.clone();
            drop(state);
            for (to, document) in &sent {
                self.send(to.as_ref(), document).await?;
            }
            let mut state = self.state.lock().await;
            state.epoch = Some(page.epoch);
            state.after = 0;
            return Ok(());
        }
        state.epoch = Some(page.epoch);
        state.after = page.next.max(state.after);
        for m in page.messages {
            let bytes = m.document.get().as_bytes().to_vec();
            let digest: [u8; 32] = Sha256::digest(&bytes).into();
            if state.seen.insert(digest) {
                state.inbox.push(Delivered {
                    from: m.from,
                    kind: m.kind,
                    seq: m.seq,
                    document: bytes,
                });
            }
        }
        Ok(())
    }

    /// Gathers documents of kind `T` belonging to `group` (a ceremony's id)
    /// that `keep` accepts (given who posted each, as the mailbox says), until `complete` says what is missing is
    /// nothing, or `timeout` passes.
    ///
    /// # Errors
    /// [`MailboxError::Incomplete`] naming what `complete` said was still
    /// missing at the deadline; [`MailboxError::Client`].
    pub async fn gather<T: DocumentBody>(
        &self,
        group: &GroupId,
        keep: impl Fn(&IdentityPublicKey, &T) -> bool,
        complete: impl Fn(&[T]) -> Vec<String>,
        timeout: Duration,
    ) -> Result<Vec<T>, MailboxError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let found: Vec<T> = self
                .state
                .lock()
                .await
                .inbox
                .iter()
                .filter_map(|d| {
                    let doc = format::decode_for_group::<T>(&d.document, group).ok()?;
                    keep(&d.from, &doc).then_some(doc)
                })
                .collect();
            let missing = complete(&found);
            if missing.is_empty() {
                return Ok(found);
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Err(MailboxError::Incomplete {
                    what: T::KIND,
                    missing,
                    waited: timeout,
                });
            }
            match self.fetch(POLL.min(deadline - now)).await {
                Ok(()) => {}
                // The mailbox is restarting, or another coordinator is
                // taking over: look again shortly.
                Err(ClientError::Connect { .. }) => {
                    tokio::time::sleep(
                        RETRY.min(deadline.saturating_duration_since(tokio::time::Instant::now())),
                    )
                    .await;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
}

fn key_of<C: KuraSuite>(c: &Ceremony<C>, id: &Identifier<C>) -> Option<IdentityPublicKey> {
    c.members().get(id).map(|card| card.key)
}

fn missing_labels<C: KuraSuite>(
    c: &Ceremony<C>,
    have: &BTreeSet<Identifier<C>>,
    except: Option<&Identifier<C>>,
) -> Vec<String> {
    c.members()
        .iter()
        .filter(|(id, _)| !have.contains(id) && Some(*id) != except)
        .map(|(_, card)| card.label.to_string())
        .collect()
}

/// Posts this participant's round-1 broadcast.
///
/// # Errors
/// [`MailboxError`].
pub async fn post_round1<C: KuraSuite>(
    mailbox: &MailboxClient,
    c: &Ceremony<C>,
    doc: &Round1Document<C>,
) -> Result<(), MailboxError> {
    mailbox.post(None, format::encode(c.id(), doc)?).await?;
    Ok(())
}

/// Gathers a round-1 broadcast of every member (as claimed; round 2 checks
/// them).
///
/// # Errors
/// [`MailboxError::Incomplete`] naming the members none came from.
pub async fn round1_set<C: KuraSuite>(
    mailbox: &MailboxClient,
    c: &Ceremony<C>,
    timeout: Duration,
) -> Result<Vec<Round1Document<C>>, MailboxError> {
    mailbox
        .gather::<Round1Document<C>>(
            c.id(),
            // A document claiming another author than the participant who
            // posted it is not counted: one participant cannot abort the
            // ceremony in another's name.
            |from, d| key_of(c, &d.body.from).as_ref() == Some(from),
            |docs| {
                let have: BTreeSet<_> = docs.iter().map(|d| d.body.from).collect();
                missing_labels(c, &have, None)
            },
            timeout,
        )
        .await
}

/// Posts each round-2 message to its reader.
///
/// # Errors
/// [`MailboxError`]; [`MailboxError::Ceremony`] for a reader not in the
/// ceremony.
pub async fn post_round2<C: KuraSuite>(
    mailbox: &MailboxClient,
    c: &Ceremony<C>,
    messages: &[Round2Document<C>],
) -> Result<(), MailboxError> {
    for doc in messages {
        let to = key_of(c, &doc.part.to).ok_or_else(|| {
            MailboxError::Ceremony(wallet_core::ceremony::CeremonyError::Outsider {
                what: "a round-2 reader",
                who: wallet_core::group::identifier_hex(&doc.part.to),
            })
        })?;
        mailbox
            .post(Some(&to), format::encode(c.id(), doc)?)
            .await?;
    }
    Ok(())
}

/// Gathers the round-2 messages sealed to `me`, one from every other
/// member (as claimed; finishing opens and checks them).
///
/// # Errors
/// [`MailboxError::Incomplete`] naming the members none came from.
pub async fn round2_for<C: KuraSuite>(
    mailbox: &MailboxClient,
    c: &Ceremony<C>,
    me: Identifier<C>,
    timeout: Duration,
) -> Result<Vec<Round2Document<C>>, MailboxError> {
    mailbox
        .gather::<Round2Document<C>>(
            c.id(),
            |from, d| {
                d.part.to == me && d.part.from.and_then(|f| key_of(c, &f)).as_ref() == Some(from)
            },
            |docs| {
                let have: BTreeSet<_> = docs.iter().filter_map(|d| d.part.from).collect();
                missing_labels(c, &have, Some(&me))
            },
            timeout,
        )
        .await
}

/// A whole DKG through the mailbox: round 1, gather every broadcast,
/// round 2, gather the messages sealed to this participant, finish. Each
/// gathering waits up to `timeout`. The share is *not* kept: install it
/// (`wallet_core::ceremony::state::MemberState::install`) and then
/// `dkg::forget` the ceremony, as the file-based ceremony does.
///
/// # Errors
/// [`MailboxError`]: the mailbox's, the ceremony's checks (a forged or
/// altered message refused as not authentic), or missing messages.
pub async fn run_dkg<C: KuraSuite>(
    mailbox: &MailboxClient,
    c: &Confirmed<C>,
    keystore: &dyn Keystore,
    timeout: Duration,
) -> Result<Finished<C>, MailboxError> {
    let me = c.me(keystore)?;
    let round1 = dkg::round1(c, keystore, &mut OsRng)?;
    post_round1(mailbox, c, &round1).await?;
    let set = round1_set(mailbox, c, timeout).await?;
    let out = dkg::round2(c, keystore, &set, &mut OsRng)?;
    let messages: Vec<Round2Document<C>> = out.messages.into_iter().map(|(_, d)| d).collect();
    post_round2(mailbox, c, &messages).await?;
    let received = round2_for(mailbox, c, me, timeout).await?;
    Ok(dkg::finish(c, keystore, &set, &received)?)
}
