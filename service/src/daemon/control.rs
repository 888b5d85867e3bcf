//! The daemon's local control socket: how a person on the signer's own
//! machine sees what waits for them and answers (`kura signer pending`,
//! `kura signer approve|refuse`).
//!
//! A Unix socket at `<home>/run/control.sock`, in a directory only the
//! home's owner can enter (0700), the socket itself 0600, and every
//! connection's peer checked to be that same user (`SO_PEERCRED`). The
//! protocol is one JSON object per line each way, version 1, lines at most
//! 64 KiB:
//!
//! ```text
//! → {"v":1,"op":"pending"}
//! ← {"ok":true,"pending":[{"id":"…","review":"…","since":1764000000}]}
//! → {"v":1,"op":"approve","id":"<the full request digest>"}
//! ← {"ok":true}
//! → {"v":1,"op":"refuse","id":"…","reason":"not on the payout list"}
//! ← {"ok":false,"error":"not pending","message":"…"}
//! ```
//!
//! An approval names the full request digest, which is the review the
//! person read: a request changed since cannot be approved by it.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use wallet_core::RequestDigest;

use super::{DaemonError, SignerDaemon};

/// The longest line either side sends.
pub const MAX_LINE_BYTES: u64 = 64 * 1024;
/// The longest review the socket shows (a review lists every input and
/// output; a huge one is cut, with the cut marked).
pub const MAX_REVIEW_CHARS: usize = 16 * 1024;
/// The protocol version.
pub const CONTROL_VERSION: u32 = 1;
/// The longest path a Unix socket may have on Linux (`sun_path`).
const MAX_SOCKET_PATH: usize = 107;

/// A control request.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case", deny_unknown_fields)]
pub enum ControlRequest {
    /// What waits for a person.
    Pending {
        /// The protocol version.
        v: u32,
    },
    /// Approve a pending withdrawal.
    Approve {
        /// The protocol version.
        v: u32,
        /// Its full id.
        id: RequestDigest,
    },
    /// Refuse a pending withdrawal.
    Refuse {
        /// The protocol version.
        v: u32,
        /// Its full id.
        id: RequestDigest,
        /// Why, recorded in the audit log.
        reason: String,
    },
}

/// One pending withdrawal as the socket reports it.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PendingEntry {
    /// Its id.
    pub id: RequestDigest,
    /// The daemon's review (inert text).
    pub review: String,
    /// Unix seconds since when it waits.
    pub since: u64,
}

/// A control answer.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlResponse {
    /// Whether it was done.
    pub ok: bool,
    /// For `pending`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<Vec<PendingEntry>>,
    /// For a failure: a short kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// For a failure: what went wrong.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl ControlResponse {
    fn failed(error: &str, message: String) -> Self {
        ControlResponse {
            ok: false,
            error: Some(error.to_owned()),
            message: Some(message),
            ..Default::default()
        }
    }
}

/// Where a home's control socket is.
pub fn socket_path(run_dir: &Path) -> PathBuf {
    run_dir.join("control.sock")
}

fn check_length(path: &Path) -> Result<(), DaemonError> {
    if path.as_os_str().len() > MAX_SOCKET_PATH {
        return Err(DaemonError::Control(format!(
            "the control socket path {} is longer than a Unix socket allows ({MAX_SOCKET_PATH} bytes); use a shorter home path",
            path.display()
        )));
    }
    Ok(())
}

impl SignerDaemon {
    /// Listens on the control socket and serves it for ever. The socket
    /// file of an earlier run is replaced (the caller holds the home's
    /// daemon lock, so no other daemon is using it).
    ///
    /// # Errors
    /// [`DaemonError::Io`] when the socket cannot be made.
    pub async fn serve_control(self: Arc<Self>) -> Result<(), DaemonError> {
        let path = socket_path(&self.run_dir);
        check_length(&path)?;
        super::check_run_dir(&self.run_dir)?;
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(super::io("removing an old control socket")(e)),
        }
        let listener =
            UnixListener::bind(&path).map_err(super::io("binding the control socket"))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
            .map_err(super::io("restricting the control socket"))?;
        // The daemon's own user: the owner of the socket it just made.
        // Only that user may connect, and only if the run directory is that
        // user's too (no one else's directory to plant a socket or link in).
        let owner = std::fs::symlink_metadata(&path)
            .map_err(super::io("reading the control socket"))?
            .uid();
        let dir_owner = std::fs::symlink_metadata(&self.run_dir)
            .map_err(super::io("reading the run directory"))?
            .uid();
        if dir_owner != owner {
            return Err(DaemonError::Control(format!(
                "{} belongs to another user than this daemon's",
                self.run_dir.display()
            )));
        }
        loop {
            let (stream, _) = listener
                .accept()
                .await
                .map_err(super::io("accepting on the control socket"))?;
            let allowed = stream
                .peer_cred()
                .map(|c| c.uid() == owner)
                .unwrap_or(false);
            if !allowed {
                continue;
            }
            let daemon = self.clone();
            tokio::spawn(async move {
                let _ = daemon.control_session(stream).await;
            });
        }
    }

    async fn control_session(self: Arc<Self>, stream: UnixStream) -> Result<(), DaemonError> {
        let (read, mut write) = stream.into_split();
        let mut lines = BufReader::new(read.take(MAX_LINE_BYTES * 16));
        loop {
            let mut line = String::new();
            let n = (&mut lines)
                .take(MAX_LINE_BYTES)
                .read_line(&mut line)
                .await
                .map_err(super::io("reading the control socket"))?;
            if n == 0 {
                return Ok(());
            }
            if !line.ends_with('\n') {
                // Longer than a line may be: answered, and the connection
                // closed rather than reading its rest as requests.
                let mut out = serde_json::to_vec(&ControlResponse::failed(
                    "bad-request",
                    format!("a request line is at most {MAX_LINE_BYTES} bytes"),
                ))
                .unwrap_or_default();
                out.push(b'\n');
                let _ = write.write_all(&out).await;
                return Ok(());
            }
            let response = match serde_json::from_str::<ControlRequest>(line.trim_end()) {
                Err(_) => ControlResponse::failed(
                    "bad-request",
                    "one JSON request per line, see `kura signer --help`".into(),
                ),
                Ok(request) => self.control(request).await,
            };
            let mut out =
                serde_json::to_vec(&response).unwrap_or_else(|_| b"{\"ok\":false}".to_vec());
            out.push(b'\n');
            write
                .write_all(&out)
                .await
                .map_err(super::io("writing the control socket"))?;
        }
    }

    /// Carries out one control request.
    pub async fn control(self: &Arc<Self>, request: ControlRequest) -> ControlResponse {
        let version = match &request {
            ControlRequest::Pending { v }
            | ControlRequest::Approve { v, .. }
            | ControlRequest::Refuse { v, .. } => *v,
        };
        if version != CONTROL_VERSION {
            return ControlResponse::failed(
                "version",
                format!("this daemon speaks control version {CONTROL_VERSION}"),
            );
        }
        let done = match request {
            ControlRequest::Pending { .. } => {
                return ControlResponse {
                    ok: true,
                    pending: Some(
                        self.pending()
                            .into_iter()
                            .map(|p| PendingEntry {
                                id: p.id,
                                review: wallet_core::display::inert_bounded(
                                    &p.review,
                                    MAX_REVIEW_CHARS,
                                ),
                                since: p.since,
                            })
                            .collect(),
                    ),
                    ..Default::default()
                }
            }
            ControlRequest::Approve { id, .. } => self.approve_pending(id).await,
            ControlRequest::Refuse { id, reason, .. } => self.decline_pending(id, reason).await,
        };
        match done {
            Ok(()) => ControlResponse {
                ok: true,
                ..Default::default()
            },
            Err(e) => ControlResponse::failed("refused", super::error_text(&e)),
        }
    }
}

/// Sends one request to the daemon of the home whose run directory is
/// `run_dir` and reads its answer.
///
/// # Errors
/// [`DaemonError::Io`] when no daemon listens there.
pub async fn call(
    run_dir: &Path,
    request: &ControlRequest,
) -> Result<ControlResponse, DaemonError> {
    let path = socket_path(run_dir);
    check_length(&path)?;
    let stream = UnixStream::connect(&path).await.map_err(super::io(format!(
        "no signer daemon answers at {} (is `kura signer run` running on this home?)",
        path.display()
    )))?;
    let (read, mut write) = stream.into_split();
    let mut line = serde_json::to_vec(request).map_err(|e| DaemonError::Control(e.to_string()))?;
    line.push(b'\n');
    write
        .write_all(&line)
        .await
        .map_err(super::io("writing the control socket"))?;
    let mut answer = String::new();
    BufReader::new(read.take(MAX_LINE_BYTES * 64))
        .read_line(&mut answer)
        .await
        .map_err(super::io("reading the control socket"))?;
    serde_json::from_str(answer.trim_end())
        .map_err(|_| DaemonError::Control("the daemon's answer is malformed".into()))
}
