//! The signer daemon: one per custodian, holding its [`Signer`] open (the
//! keystore unlocked once), taking work from the coordinator as it arrives
//! and answering it with the same checks as the file flow.
//!
//! For each new withdrawal it fetches the request, runs [`Signer::review`]
//! (requester, times, its own reading of the PSBT, its pinned policy) and
//! then either approves at once — only what its policy's `[auto_approve]`
//! table covers ([`Policy::auto_approves`](wallet_core::Policy::auto_approves))
//! — or keeps it for a person, who answers through the local control
//! socket ([`control`]). For signing packages it runs [`Signer::sign`],
//! which checks everything again before any nonce is used.
//!
//! **Crash safety.** Every decision is recorded by the signer (audit log,
//! keystore anchors) before anything is sent, so a daemon killed at any
//! point and restarted reuses no nonce: a repeated package gets the shares
//! recorded the first time, an approval that never reached the coordinator
//! is superseded by a fresh one. The mailbox cursor it keeps on disk
//! (`<home>/run/cursor`) only saves work: it never moves past a withdrawal
//! still waiting for a person, and everything after it is handled again
//! idempotently (the coordinator's status says what it already has).

pub mod control;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sha2::Digest as _;
use wallet_core::format::{self, GroupId};
use wallet_core::withdrawal::signer::Decision;
use wallet_core::{
    IdentityPublicKey, Refusal, RequestDigest, Signed, Signer, WithdrawalPackages,
    WithdrawalRequest,
};

use crate::api::{EventName, WorkEntry};
use crate::client::Client;
use crate::error::ClientError;

/// What the daemon did, for whoever runs it to show or log. Texts from
/// outside are already inert.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DaemonEvent {
    /// Logged in and reading the mailbox from this cursor.
    Connected {
        /// The cursor.
        cursor: u64,
    },
    /// The coordinator could not be reached; trying again.
    Unreachable {
        /// Why, for a person.
        reason: String,
    },
    /// Approved without a person, under the policy's `[auto_approve]`.
    AutoApproved {
        /// The withdrawal.
        id: RequestDigest,
    },
    /// Approved by a person through the control socket.
    Approved {
        /// The withdrawal.
        id: RequestDigest,
    },
    /// Allowed by the policy but not covered by `[auto_approve]`: waits for
    /// `kura signer approve`.
    Waiting {
        /// The withdrawal.
        id: RequestDigest,
    },
    /// Shares released for a session.
    Signed {
        /// The withdrawal.
        id: RequestDigest,
        /// The session.
        session: u32,
    },
    /// The signer refused (recorded in its audit log).
    Refused {
        /// The withdrawal.
        id: RequestDigest,
        /// Why (the refusal's kind name).
        kind: String,
        /// The refusal, for a person.
        reason: String,
    },
    /// The withdrawal ended at the coordinator.
    Ended {
        /// The withdrawal.
        id: RequestDigest,
        /// `finalized` or `refused`.
        how: &'static str,
    },
}

/// A point in the daemon's work where a crash is most telling; a test
/// build of the binary can stop the process there
/// ([`SignerDaemon::set_checkpoint_hook`]) to prove that a restart neither
/// reuses a nonce nor loses work.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Checkpoint {
    /// The signer reviewed the request (for an auto-approval, reviewing and
    /// approving are one step: the approval is recorded too).
    Reviewed,
    /// The signer recorded its approval (nonces stored); not yet posted.
    Approved,
    /// The coordinator acknowledged the approval.
    ApprovalPosted,
    /// The signer recorded the release (nonces taken); shares not yet posted.
    Signed,
    /// The coordinator acknowledged the shares.
    SharesPosted,
}

impl Checkpoint {
    /// Its kebab-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Checkpoint::Reviewed => "reviewed",
            Checkpoint::Approved => "approved",
            Checkpoint::ApprovalPosted => "approval-posted",
            Checkpoint::Signed => "signed",
            Checkpoint::SharesPosted => "shares-posted",
        }
    }

    /// Every checkpoint, in the order a withdrawal passes them.
    pub const ALL: [Checkpoint; 5] = [
        Checkpoint::Reviewed,
        Checkpoint::Approved,
        Checkpoint::ApprovalPosted,
        Checkpoint::Signed,
        Checkpoint::SharesPosted,
    ];
}

type Hook = Arc<dyn Fn(Checkpoint) + Send + Sync>;

/// What one `documents` call brought.
struct Fetched {
    status: crate::api::WithdrawalStatus,
    request: Option<Signed<WithdrawalRequest>>,
    sessions: Vec<(u32, Vec<u8>)>,
}

/// An answer this daemon gave to a session: its withdrawal, shares and
/// next approval, as posted.
#[derive(Clone, Debug)]
struct Answer {
    id: RequestDigest,
    shares: Vec<u8>,
    next: Vec<u8>,
}

/// A withdrawal waiting for a person.
#[derive(Clone, Debug)]
pub struct Pending {
    /// Its id (the request digest).
    pub id: RequestDigest,
    /// The daemon's own review, rendered for a terminal (inert).
    pub review: String,
    /// Unix seconds since when it waits.
    pub since: u64,
    /// Its mailbox place, which the cursor does not pass while it waits.
    seq: u64,
    request: Signed<WithdrawalRequest>,
}

/// Why the daemon stopped or a step failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DaemonError {
    /// The coordinator.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// A document from the coordinator did not decode.
    #[error("a document from the coordinator is not acceptable")]
    Document(#[from] wallet_core::FormatError),
    /// The control socket or cursor file.
    #[error("{what}")]
    Io {
        /// What was being done.
        what: String,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
    /// A control request that cannot be carried out.
    #[error("{0}")]
    Control(String),
    /// A worker thread failed.
    #[error("a worker thread failed")]
    Join,
    /// The signer's lock was poisoned by a panic.
    #[error("the signer's lock was poisoned")]
    Poisoned,
}

type Sink = Arc<dyn Fn(&DaemonEvent) + Send + Sync>;

/// A running signer's state, shared by the mailbox loop and the control
/// socket.
pub struct SignerDaemon {
    client: Client,
    signer: Mutex<Signer>,
    me: IdentityPublicKey,
    group: GroupId,
    run_dir: PathBuf,
    pending: Mutex<BTreeMap<RequestDigest, Pending>>,
    /// Approvals made but not yet acknowledged by the coordinator, by
    /// withdrawal: a retry posts these same bytes instead of approving again
    /// (which would withdraw the first approval's nonces).
    unposted: Mutex<BTreeMap<RequestDigest, Vec<u8>>>,
    /// The answers given, by the SHA-256 of the packages they answer: the
    /// same packages again (an answer lost, or a coordinator replaying
    /// them) get the same answer, posted again, rather than a new next
    /// approval each time. Kept while the withdrawal is open (lost on a
    /// restart: then the signer redelivers its shares from its audit log).
    answers: Mutex<std::collections::HashMap<[u8; 32], Answer>>,
    sink: Sink,
    checkpoint: std::sync::OnceLock<Hook>,
    clock: fn() -> u64,
}

impl std::fmt::Debug for SignerDaemon {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignerDaemon")
            .field("me", &self.me)
            .field("client", &self.client)
            .finish()
    }
}

/// The run directory must be a real directory (not a symlink) that only its
/// owner can enter: whoever controls it controls the control socket.
fn check_run_dir(run_dir: &Path) -> Result<(), DaemonError> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::symlink_metadata(run_dir).map_err(io("reading the run directory"))?;
    if !meta.file_type().is_dir() || meta.permissions().mode() & 0o077 != 0 {
        return Err(DaemonError::Control(format!(
            "{} must be a directory of its own (not a link) that only its owner can open (mode 0700)",
            run_dir.display()
        )));
    }
    Ok(())
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> DaemonError {
    let what = what.into();
    move |source| DaemonError::Io { what, source }
}

impl SignerDaemon {
    /// A daemon for `signer`, talking to the coordinator through `client`
    /// (logged in as a signer with the same keystore), keeping its cursor
    /// and control socket in `run_dir` (made 0700), reporting to `sink`.
    ///
    /// # Errors
    /// [`DaemonError::Io`] when `run_dir` cannot be made private.
    pub fn new(
        signer: Signer,
        client: Client,
        run_dir: &Path,
        sink: impl Fn(&DaemonEvent) + Send + Sync + 'static,
    ) -> Result<Arc<Self>, DaemonError> {
        wallet_core::keystore::files::create_private_dir(run_dir)
            .map_err(|e| DaemonError::Control(format!("cannot make {}: {e}", run_dir.display())))?;
        check_run_dir(run_dir)?;
        let me = signer
            .roster()
            .get(signer.identifier())
            .copied()
            .ok_or_else(|| DaemonError::Control("the signer is not in its roster".into()))?;
        let group = *signer.group().id();
        Ok(Arc::new(SignerDaemon {
            client,
            signer: Mutex::new(signer),
            me,
            group,
            run_dir: run_dir.to_owned(),
            pending: Mutex::new(BTreeMap::new()),
            unposted: Mutex::new(BTreeMap::new()),
            answers: Mutex::new(std::collections::HashMap::new()),
            sink: Arc::new(sink),
            checkpoint: std::sync::OnceLock::new(),
            clock: crate::coordinator::system_clock,
        }))
    }

    /// Calls `hook` at each [`Checkpoint`] (once per daemon; later calls
    /// are ignored). Fault-injection tests stop the process there.
    pub fn set_checkpoint_hook(&self, hook: impl Fn(Checkpoint) + Send + Sync + 'static) {
        let _ = self.checkpoint.set(Arc::new(hook));
    }

    fn reached(&self, point: Checkpoint) {
        if let Some(hook) = self.checkpoint.get() {
            hook(point);
        }
    }

    fn emit(&self, event: DaemonEvent) {
        (self.sink)(&event);
    }

    fn cursor_path(&self) -> PathBuf {
        self.run_dir.join("cursor")
    }

    fn read_cursor(&self) -> u64 {
        std::fs::read_to_string(self.cursor_path())
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    }

    fn write_cursor(&self, cursor: u64) -> Result<(), DaemonError> {
        let path = self.cursor_path();
        let tmp = self.run_dir.join("cursor.tmp");
        // A fresh file, never through a link left in its place.
        match std::fs::remove_file(&tmp) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io("writing the cursor")(e)),
        }
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(io("writing the cursor"))?;
        std::io::Write::write_all(&mut file, format!("{cursor}\n").as_bytes())
            .map_err(io("writing the cursor"))?;
        std::fs::rename(&tmp, &path).map_err(io("writing the cursor"))
    }

    /// The withdrawals waiting for a person, oldest first.
    pub fn pending(&self) -> Vec<Pending> {
        let mut list: Vec<Pending> = match self.pending.lock() {
            Ok(p) => p.values().cloned().collect(),
            Err(_) => Vec::new(),
        };
        list.sort_by_key(|p| p.seq);
        list
    }

    /// Reads the mailbox and handles each item, for ever (until the task is
    /// dropped). Connection failures are reported and retried with a
    /// growing pause (up to 5 s); a step that fails is retried on the next
    /// pass from the same cursor.
    pub async fn run(self: Arc<Self>) {
        let mut cursor = self.read_cursor();
        let mut pause = Duration::from_millis(100);
        let mut connected = false;
        let mut unsaved = 0usize;
        loop {
            if !connected {
                // Log in first, so "connected" is said before the first
                // long poll (which may wait for news).
                if let Err(e) = self.client.login().await {
                    self.emit(DaemonEvent::Unreachable {
                        reason: error_text(&e),
                    });
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(5));
                    continue;
                }
                connected = true;
                self.emit(DaemonEvent::Connected { cursor });
            }
            let wait = Duration::from_millis(crate::api::MAX_WAIT_MS);
            let page = match self.client.work(cursor, wait).await {
                Ok(page) => page,
                Err(e) => {
                    connected = false;
                    self.emit(DaemonEvent::Unreachable {
                        reason: error_text(&e),
                    });
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(5));
                    continue;
                }
            };
            let mut failed = false;
            for item in &page.items {
                match self.clone().handle(*item).await {
                    Ok(()) => {}
                    // The coordinator refused what this daemon sent (4xx):
                    // trying again would get the same answer. Reported, and
                    // the mailbox goes on.
                    Err(DaemonError::Client(e))
                        if e.status().is_some_and(|s| (400..500).contains(&s)) =>
                    {
                        self.emit(DaemonEvent::Refused {
                            id: item.withdrawal,
                            kind: "coordinator-refused".into(),
                            reason: error_text(&e),
                        });
                    }
                    Err(e) => {
                        self.emit(DaemonEvent::Unreachable {
                            reason: error_text(&e),
                        });
                        failed = true;
                        break;
                    }
                }
                cursor = item.seq;
            }
            if failed {
                // Back off until an item goes through; unposted approvals
                // are posted again as they are, never re-made.
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(5));
                cursor = self.read_cursor().min(cursor);
                continue;
            }
            pause = Duration::from_millis(100);
            cursor = page.next.max(cursor);
            // The cursor only saves work after a restart: written when the
            // mailbox is idle or every 64 items, not after every item.
            unsaved += page.items.len();
            if !page.items.is_empty() && unsaved < 64 {
                continue;
            }
            unsaved = 0;
            let keep = self
                .pending()
                .first()
                .map(|p| p.seq.saturating_sub(1))
                .unwrap_or(cursor)
                .min(cursor);
            if keep != self.read_cursor() {
                if let Err(e) = self.write_cursor(keep) {
                    self.emit(DaemonEvent::Unreachable {
                        reason: error_text(&e),
                    });
                }
            }
        }
    }

    /// Handles one mailbox item.
    ///
    /// # Errors
    /// Failures to talk to the coordinator or to decode its documents; the
    /// signer's refusals are reported as [`DaemonEvent::Refused`], not
    /// errors.
    pub async fn handle(self: Arc<Self>, item: WorkEntry) -> Result<(), DaemonError> {
        let id = item.withdrawal;
        match item.kind {
            EventName::Finalized | EventName::Refused => {
                if let Ok(mut p) = self.pending.lock() {
                    p.remove(&id);
                }
                self.on_ended(id).await?;
                self.emit(DaemonEvent::Ended {
                    id,
                    how: if item.kind == EventName::Finalized {
                        "finalized"
                    } else {
                        "refused"
                    },
                });
                Ok(())
            }
            EventName::Submitted => self.on_submitted(id, item.seq).await,
            EventName::Packages => self.on_packages(id).await,
        }
    }

    /// The withdrawal's status, request and sessions' packages (bytes),
    /// in one call; the request decoded only when it is still open.
    async fn fetch(&self, id: &RequestDigest) -> Result<Fetched, DaemonError> {
        let documents = self.client.documents(id).await?;
        let request = if documents.status.state.is_final() {
            None
        } else {
            Some(format::decode_for_group(
                documents.request.get().as_bytes(),
                &self.group,
            )?)
        };
        let sessions = documents
            .sessions
            .into_iter()
            .map(|s| (s.session, s.packages.get().as_bytes().to_vec()))
            .collect();
        Ok(Fetched {
            status: documents.status,
            request,
            sessions,
        })
    }

    async fn with_signer<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&mut Signer, u64) -> T + Send + 'static,
    ) -> Result<T, DaemonError> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || {
            let now = (me.clock)();
            let mut signer = me.signer.lock().map_err(|_| DaemonError::Poisoned)?;
            Ok(f(&mut signer, now))
        })
        .await
        .map_err(|_| DaemonError::Join)?
    }

    fn refused(&self, id: RequestDigest, refusal: &Refusal) {
        self.emit(DaemonEvent::Refused {
            id,
            kind: refusal.kind().to_string(),
            reason: wallet_core::display::inert_bounded(&refusal.to_string(), 400),
        });
    }

    async fn on_submitted(self: Arc<Self>, id: RequestDigest, seq: u64) -> Result<(), DaemonError> {
        if self
            .pending
            .lock()
            .map_err(|_| DaemonError::Poisoned)?
            .contains_key(&id)
        {
            return Ok(());
        }
        let fetched = self.fetch(&id).await?;
        let status = &fetched.status;
        // Final, or approved already. A withdrawal already signing still
        // gets this member's approval: a session may fail (a member silent
        // or cheating) and the next one needs responsive members; once the
        // withdrawal ends the approval is closed (`on_ended`).
        if status.state.is_final() || status.approved_by.contains(&self.me) {
            return Ok(());
        }
        let Some(request) = fetched.request else {
            return Ok(());
        };
        if let Some(bytes) = self.unposted_approval(&id)? {
            return self.post_approval_bytes(id, bytes).await;
        }
        if request.request_digest(&self.group)? != id {
            // The coordinator served another request under this id: a
            // coordinator lying about what is being signed.
            self.emit(DaemonEvent::Refused {
                id,
                kind: "wrong-request".into(),
                reason: "the coordinator served a request whose digest is not the withdrawal's id"
                    .into(),
            });
            return Ok(());
        }
        let req = request.clone();
        let decided = self
            .with_signer(move |signer, now| {
                signer.approve_if(&req, now, |reviewed, policy| {
                    policy.auto_approves(&reviewed.summary)
                })
            })
            .await?;
        match decided {
            Err(refusal) => {
                self.refused(id, &refusal);
                Ok(())
            }
            Ok(Decision::Approved(approval)) => {
                self.reached(Checkpoint::Reviewed);
                self.post_approval(id, &approval).await?;
                self.emit(DaemonEvent::AutoApproved { id });
                Ok(())
            }
            Ok(Decision::Held(reviewed)) => {
                self.reached(Checkpoint::Reviewed);
                let pending = Pending {
                    id,
                    review: reviewed.render(),
                    since: (self.clock)(),
                    seq,
                    request,
                };
                self.pending
                    .lock()
                    .map_err(|_| DaemonError::Poisoned)?
                    .insert(id, pending);
                self.emit(DaemonEvent::Waiting { id });
                Ok(())
            }
        }
    }

    async fn post_approval(
        &self,
        id: RequestDigest,
        approval: &Signed<wallet_core::Approval>,
    ) -> Result<(), DaemonError> {
        let bytes = format::encode(&self.group, approval)?;
        self.unposted
            .lock()
            .map_err(|_| DaemonError::Poisoned)?
            .insert(id, bytes.clone());
        self.reached(Checkpoint::Approved);
        self.post_approval_bytes(id, bytes).await
    }

    fn unposted_approval(&self, id: &RequestDigest) -> Result<Option<Vec<u8>>, DaemonError> {
        Ok(self
            .unposted
            .lock()
            .map_err(|_| DaemonError::Poisoned)?
            .get(id)
            .cloned())
    }

    /// Posts an approval; forgets it once the coordinator acknowledged or
    /// refused it (a refusal is not retried).
    async fn post_approval_bytes(
        &self,
        id: RequestDigest,
        bytes: Vec<u8>,
    ) -> Result<(), DaemonError> {
        let posted = self.client.approve(&id, bytes).await;
        let settled = match &posted {
            Ok(_) => true,
            Err(e) => e.status().is_some_and(|s| (400..500).contains(&s)),
        };
        if settled {
            self.unposted
                .lock()
                .map_err(|_| DaemonError::Poisoned)?
                .remove(&id);
        }
        posted?;
        self.reached(Checkpoint::ApprovalPosted);
        Ok(())
    }

    /// Approves and posts; `Ok(false)` when the signer refused (reported).
    async fn approve_and_post(
        self: &Arc<Self>,
        id: RequestDigest,
        request: Signed<WithdrawalRequest>,
    ) -> Result<bool, DaemonError> {
        let approval = self
            .with_signer(move |signer, now| signer.approve(&request, now))
            .await?;
        let approval = match approval {
            Ok(a) => a,
            Err(refusal) => {
                self.refused(id, &refusal);
                return Ok(false);
            }
        };
        self.post_approval(id, &approval).await?;
        Ok(true)
    }

    /// A person's approval of a pending withdrawal (from the control
    /// socket): the signer checks everything again, then the approval is
    /// posted.
    ///
    /// # Errors
    /// [`DaemonError::Control`] for an id that is not pending; the
    /// signer's refusal as [`DaemonError::Control`] too.
    pub async fn approve_pending(self: &Arc<Self>, id: RequestDigest) -> Result<(), DaemonError> {
        let pending = self.pending_entry(&id)?;
        // Approved already (a first answer that was lost on the way back),
        // or made and not yet acknowledged: never approve twice, which
        // would withdraw the first approval.
        let status = self.client.status(&id).await?;
        if status.approved_by.contains(&self.me) {
            self.remove_pending(&id)?;
            self.emit(DaemonEvent::Approved { id });
            return Ok(());
        }
        if let Some(bytes) = self.unposted_approval(&id)? {
            self.post_approval_bytes(id, bytes).await?;
            self.remove_pending(&id)?;
            self.emit(DaemonEvent::Approved { id });
            return Ok(());
        }
        if !self.approve_and_post(id, pending.request).await? {
            self.remove_pending(&id)?;
            return Err(DaemonError::Control(format!(
                "the signer refused withdrawal {id} when approving; see its audit log"
            )));
        }
        self.remove_pending(&id)?;
        self.emit(DaemonEvent::Approved { id });
        Ok(())
    }

    /// A person's refusal of a pending withdrawal, recorded in the audit log.
    ///
    /// # Errors
    /// [`DaemonError::Control`] for an id that is not pending.
    pub async fn decline_pending(
        self: &Arc<Self>,
        id: RequestDigest,
        reason: String,
    ) -> Result<(), DaemonError> {
        let pending = self.pending_entry(&id)?;
        let refusal = self
            .with_signer(move |signer, now| signer.decline(&pending.request, &reason, now))
            .await?;
        self.remove_pending(&id)?;
        self.refused(id, &refusal);
        Ok(())
    }

    fn pending_entry(&self, id: &RequestDigest) -> Result<Pending, DaemonError> {
        self.pending
            .lock()
            .map_err(|_| DaemonError::Poisoned)?
            .get(id)
            .cloned()
            .ok_or_else(|| {
                DaemonError::Control(format!("withdrawal {id} is not waiting for a person"))
            })
    }

    fn remove_pending(&self, id: &RequestDigest) -> Result<(), DaemonError> {
        self.pending
            .lock()
            .map_err(|_| DaemonError::Poisoned)?
            .remove(id);
        Ok(())
    }

    async fn on_packages(self: Arc<Self>, id: RequestDigest) -> Result<(), DaemonError> {
        let fetched = self.fetch(&id).await?;
        let status = &fetched.status;
        if status.state.is_final() {
            return Ok(());
        }
        let Some(session) = status
            .sessions
            .iter()
            .rev()
            .find(|s| s.members.contains(&self.me) && !s.answered.contains(&self.me))
            .map(|s| s.session)
        else {
            return Ok(());
        };
        let (Some(request), sessions) = (fetched.request, fetched.sessions) else {
            return Ok(());
        };
        let Some((_, packages)) = sessions.into_iter().find(|(s, _)| *s == session) else {
            return Ok(());
        };
        let key: [u8; 32] = sha2::Sha256::digest(&packages).into();
        let given = self
            .answers
            .lock()
            .map_err(|_| DaemonError::Poisoned)?
            .get(&key)
            .cloned();
        if let Some(answer) = given {
            self.client
                .shares(&id, session, answer.shares, Some(answer.next))
                .await?;
            return Ok(());
        }
        let packages: WithdrawalPackages = format::decode_for_group(&packages, &self.group)?;
        // The answer carries this signer's next approval: if another member
        // of the session is silent or cheats, the coordinator can open the
        // next session at once (ROAST). A lost answer is made again: the
        // same shares (redelivered from the audit log) and a new next
        // approval that withdraws the first.
        let answer = self
            .with_signer(move |signer, now| signer.sign_session(&request, &packages, now))
            .await?;
        match answer {
            Ok(answer) => {
                self.reached(Checkpoint::Signed);
                let shares = format::encode(&self.group, &answer.shares)?;
                let next = format::encode(&self.group, &*answer.next)?;
                {
                    let mut answers = self.answers.lock().map_err(|_| DaemonError::Poisoned)?;
                    // Bounded: a coordinator cannot grow it without end.
                    if answers.len() >= 4096 {
                        answers.clear();
                    }
                    answers.insert(
                        key,
                        Answer {
                            id,
                            shares: shares.clone(),
                            next: next.clone(),
                        },
                    );
                }
                self.client.shares(&id, session, shares, Some(next)).await?;
                self.reached(Checkpoint::SharesPosted);
                self.emit(DaemonEvent::Signed { id, session });
            }
            Err(refusal) => self.refused(id, &refusal),
        }
        Ok(())
    }

    /// A withdrawal ended: the signer destroys the nonces of its approval
    /// still open for it (the next approval of its last answer, or an
    /// approval no session used), so that none waits on the token until it
    /// expires.
    async fn on_ended(self: &Arc<Self>, id: RequestDigest) -> Result<(), DaemonError> {
        let documents = self.client.documents(&id).await?;
        // Only a withdrawal that really ended (a coordinator's word is not
        // enough to make this signer give up its approval).
        if !documents.status.state.is_final() {
            return Ok(());
        }
        if let Ok(mut answers) = self.answers.lock() {
            answers.retain(|_, a| a.id != id);
        }
        if !documents.status.approved_by.contains(&self.me) {
            return Ok(());
        }
        let request: Signed<WithdrawalRequest> =
            format::decode_for_group(documents.request.get().as_bytes(), &self.group)?;
        if request.request_digest(&self.group)? != id {
            return Ok(());
        }
        let closed = self
            .with_signer(move |signer, now| signer.close(&request, now))
            .await?;
        if let Err(refusal) = closed {
            self.refused(id, &refusal);
        }
        Ok(())
    }
}

fn error_text(e: &dyn std::error::Error) -> String {
    crate::error::chain_text(e, 400)
}
