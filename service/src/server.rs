//! The coordinator's HTTPS server: [`router`] maps [`crate::api`]'s routes
//! onto a [`Coordinator`], [`serve`] runs it over rustls with the limits a
//! server facing the network needs.
//!
//! Limits: at most [`ServerLimits::max_connections`] connections (1,024),
//! TLS handshake 5 s, first request 5 s, request head 5 s (which
//! also ends idle keep-alive connections), 16 KiB of head, bodies up to a
//! Kura document's size ([`api::MAX_BODY_BYTES`], 413 beyond), 10 s for a
//! whole request (slow bodies included) except the long poll, which ends
//! itself after at most [`api::MAX_WAIT_MS`].

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequestParts, Path, Query, Request, State};
use axum::http::{header, request::Parts, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use wallet_core::RequestDigest;

use crate::api::{
    self, Accepted, ChallengeRequest, ErrorBody, SubmitResponse, WorkEntry, WorkPage,
};
use crate::coordinator::Coordinator;
use crate::error::ServiceError;
use crate::relay::{self, Relay, Scope};
use crate::store::{Added, Store, Submitted, Token};
use crate::tls::TlsIdentity;

/// The shared state of every handler: the coordinator, and a counter bumped
/// after every change so long polls wake.
pub struct AppState<S> {
    coordinator: Coordinator<S>,
    news: tokio::sync::watch::Sender<u64>,
    /// The mailbox of the group's maintenance ceremonies (scope: the
    /// group's id; participants: the roster).
    relay: Arc<Relay>,
}

impl<S> std::fmt::Debug for AppState<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("coordinator", &self.coordinator)
            .finish()
    }
}

impl<S: Store> AppState<S> {
    /// The state around `coordinator`, with the mailbox of its group's
    /// maintenance ceremonies (refresh, repair) for the roster.
    pub fn new(coordinator: Coordinator<S>) -> Arc<Self> {
        let config = coordinator.config();
        let scope = Scope {
            id: *config.group.id(),
            participants: config.roster.values().copied().collect(),
        };
        let relay = Arc::new(Relay::new(config.fingerprint, vec![scope]));
        Arc::new(AppState {
            coordinator,
            news: tokio::sync::watch::channel(0).0,
            relay,
        })
    }

    /// The coordinator.
    pub fn coordinator(&self) -> &Coordinator<S> {
        &self.coordinator
    }

    /// The group's ceremony mailbox.
    pub fn relay(&self) -> &Arc<Relay> {
        &self.relay
    }

    fn changed(&self) {
        self.news.send_modify(|n| *n = n.wrapping_add(1));
    }
}

impl IntoResponse for ServiceError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        // Internal details stay in the coordinator; the caller gets the kind.
        let message = if status.is_server_error() {
            "the coordinator failed; see its log".to_owned()
        } else {
            crate::error::chain_text(&self, 400)
        };
        let body = ErrorBody {
            error: self.kind().to_owned(),
            message,
        };
        (status, Json(body)).into_response()
    }
}

/// The `Authorization: Bearer <token>` of a request (the coordinator's
/// routes and the ceremony mailbox's).
pub(crate) fn bearer(parts: &Parts) -> Result<&str, ServiceError> {
    parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| ServiceError::Unauthenticated("no bearer token".into()))
}

/// The logged-in caller of a route.
#[derive(Debug)]
pub struct Caller(pub Token);

impl<S: Store + Send + Sync + 'static> FromRequestParts<Arc<AppState<S>>> for Caller {
    type Rejection = ServiceError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState<S>>,
    ) -> Result<Self, Self::Rejection> {
        let bearer = bearer(parts)?.to_owned();
        let state = state.clone();
        let token = blocking(move || state.coordinator.authenticate(&bearer)).await?;
        Ok(Caller(token))
    }
}

/// A request body, at most [`api::MAX_BODY_BYTES`]; the extractor's
/// rejections become [`ServiceError`]s, so every answer has an
/// [`ErrorBody`].
#[derive(Debug)]
pub struct Body(pub Bytes);

impl<S: Send + Sync> axum::extract::FromRequest<S> for Body {
    type Rejection = ServiceError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Bytes::from_request(request, state).await {
            Ok(bytes) => Ok(Body(bytes)),
            Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => Err(ServiceError::TooLarge {
                limit: api::MAX_BODY_BYTES,
            }),
            Err(_) => Err(ServiceError::BadRequest(
                "the body could not be read".into(),
            )),
        }
    }
}

/// Path parameters, with a typed error for ones that do not parse.
#[derive(Debug)]
pub struct Params<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned + Send> FromRequestParts<S> for Params<T> {
    type Rejection = ServiceError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(t)| Params(t))
            .map_err(|_| ServiceError::BadRequest("a path parameter does not parse".into()))
    }
}

/// Query parameters, with a typed error for ones that do not parse.
#[derive(Debug)]
pub struct QueryParams<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned + Send> FromRequestParts<S> for QueryParams<T> {
    type Rejection = ServiceError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(t)| QueryParams(t))
            .map_err(|_| ServiceError::BadRequest("the query does not parse".into()))
    }
}

/// Runs store work off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ServiceError> + Send + 'static,
) -> Result<T, ServiceError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|_| ServiceError::Internal("a worker thread failed".into()))?
}

fn withdrawal_id(id: &str) -> Result<RequestDigest, ServiceError> {
    id.parse()
        .map_err(|_| ServiceError::BadRequest("a withdrawal id is 64 lowercase hex digits".into()))
}

/// The routes of [`crate::api`] over `state`, the group's ceremony mailbox
/// ([`crate::relay`]) included.
pub fn router<S: Store + Send + Sync + 'static>(state: Arc<AppState<S>>) -> Router {
    // Anyone may call the two login routes: their bodies are small.
    let auth = Router::new()
        .route("/v1/auth/challenge", post(challenge::<S>))
        .route("/v1/auth/login", post(login::<S>))
        .layer(DefaultBodyLimit::max(api::MAX_AUTH_BODY_BYTES));
    let rest = Router::new()
        .route("/v1/withdrawals", post(submit::<S>))
        .route("/v1/withdrawals/{id}", get(status::<S>))
        .route("/v1/withdrawals/{id}/documents", get(documents::<S>))
        .route("/v1/withdrawals/{id}/approvals", post(approve::<S>))
        .route(
            "/v1/withdrawals/{id}/sessions/{session}/shares",
            post(shares::<S>),
        )
        .route("/v1/work", get(work::<S>))
        .layer(DefaultBodyLimit::max(api::MAX_BODY_BYTES));
    let relay = relay::routes(state.relay.clone());
    limited(
        Router::new()
            .merge(auth)
            .merge(rest)
            .with_state(state)
            .merge(relay),
    )
}

/// A ceremony mailbox alone ([`crate::relay`]), for a DKG before any
/// coordinator exists, with the limits of this module.
pub fn relay_router(relay: Arc<Relay>) -> Router {
    limited(relay::routes(relay))
}

fn limited(router: Router) -> Router {
    router
        .fallback(|| async { ServiceError::NotFound("no such route".into()) })
        .layer(middleware::from_fn(time_limit))
}

/// Whether a request is a long poll (its time limit is its wait plus 5 s).
fn is_long_poll(request: &Request) -> bool {
    let path = request.uri().path();
    path == "/v1/work"
        || (request.method() == axum::http::Method::GET
            && path.starts_with("/v1/ceremonies/")
            && path.ends_with("/messages"))
}

/// A whole request gets 10 s (its body included), the long poll its wait
/// plus 5 s.
async fn time_limit(request: Request, next: Next) -> Response {
    let limit = if is_long_poll(&request) {
        Duration::from_millis(api::MAX_WAIT_MS) + Duration::from_secs(5)
    } else {
        Duration::from_secs(10)
    };
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => (
            StatusCode::REQUEST_TIMEOUT,
            Json(ErrorBody {
                error: "timeout".into(),
                message: "the request took too long".into(),
            }),
        )
            .into_response(),
    }
}

async fn challenge<S: Store + Send + Sync + 'static>(
    State(state): State<Arc<AppState<S>>>,
    Body(body): Body,
) -> Result<impl IntoResponse, ServiceError> {
    let request: ChallengeRequest = serde_json::from_slice(&body)
        .map_err(|_| ServiceError::BadRequest("expected {\"key\": <identity key>}".into()))?;
    let response = blocking(move || state.coordinator.challenge(&request.key)).await?;
    Ok(Json(response))
}

async fn login<S: Store + Send + Sync + 'static>(
    State(state): State<Arc<AppState<S>>>,
    Body(body): Body,
) -> Result<impl IntoResponse, ServiceError> {
    let response = blocking(move || state.coordinator.login(&body)).await?;
    Ok(Json(response))
}

async fn submit<S: Store + Send + Sync + 'static>(
    State(state): State<Arc<AppState<S>>>,
    Caller(caller): Caller,
    Body(body): Body,
) -> Result<impl IntoResponse, ServiceError> {
    let st = state.clone();
    let submitted = blocking(move || st.coordinator.submit(&caller, body.to_vec())).await?;
    state.changed();
    let (status, duplicate) = match submitted {
        Submitted::New(_) => (StatusCode::CREATED, false),
        Submitted::Duplicate(_) => (StatusCode::OK, true),
    };
    Ok((
        status,
        Json(SubmitResponse {
            id: submitted.id(),
            duplicate,
        }),
    ))
}

async fn status<S: Store + Send + Sync + 'static>(
    State(state): State<Arc<AppState<S>>>,
    Caller(caller): Caller,
    Params(id): Params<String>,
) -> Result<impl IntoResponse, ServiceError> {
    let id = withdrawal_id(&id)?;
    let status = blocking(move || state.coordinator.status(&caller, &id)).await?;
    Ok(Json(status))
}

async fn documents<S: Store + Send + Sync + 'static>(
    State(state): State<Arc<AppState<S>>>,
    Caller(caller): Caller,
    Params(id): Params<String>,
) -> Result<Response, ServiceError> {
    let id = withdrawal_id(&id)?;
    let crate::coordinator::StoredDocuments {
        status,
        request,
        sessions,
    } = blocking(move || state.coordinator.documents(&caller, &id)).await?;
    // The stored bytes are embedded as they are: each is one JSON document
    // (the store only keeps what decoded as one).
    let status = serde_json::to_vec(&status).map_err(|e| ServiceError::Internal(e.to_string()))?;
    let mut out = Vec::with_capacity(request.len() + status.len() + 64);
    out.extend_from_slice(b"{\"status\":");
    out.extend_from_slice(&status);
    out.extend_from_slice(b",\"request\":");
    out.extend_from_slice(&request);
    out.extend_from_slice(b",\"sessions\":[");
    for (i, (session, packages)) in sessions.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(format!("{{\"session\":{session},\"packages\":").as_bytes());
        out.extend_from_slice(packages);
        out.push(b'}');
    }
    out.extend_from_slice(b"]}");
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        out,
    )
        .into_response())
}

fn accepted(added: Added) -> (StatusCode, Json<Accepted>) {
    match added {
        Added::New => (StatusCode::CREATED, Json(Accepted { duplicate: false })),
        Added::Duplicate => (StatusCode::OK, Json(Accepted { duplicate: true })),
    }
}

async fn approve<S: Store + Send + Sync + 'static>(
    State(state): State<Arc<AppState<S>>>,
    Caller(caller): Caller,
    Params(id): Params<String>,
    Body(body): Body,
) -> Result<impl IntoResponse, ServiceError> {
    let id = withdrawal_id(&id)?;
    let st = state.clone();
    let added = blocking(move || st.coordinator.approve(&caller, &id, body.to_vec())).await?;
    state.changed();
    Ok(accepted(added))
}

async fn shares<S: Store + Send + Sync + 'static>(
    State(state): State<Arc<AppState<S>>>,
    Caller(caller): Caller,
    Params((id, session)): Params<(String, u32)>,
    Body(body): Body,
) -> Result<impl IntoResponse, ServiceError> {
    let id = withdrawal_id(&id)?;
    let answer: api::SessionAnswer = serde_json::from_slice(&body)
        .map_err(|e| ServiceError::BadRequest(format!("a session answer: {e}")))?;
    let shares = answer.shares.get().as_bytes().to_vec();
    let next = answer.next.map(|n| n.get().as_bytes().to_vec());
    let st = state.clone();
    let added = blocking(move || {
        st.coordinator
            .add_shares(&caller, &id, session, shares, next)
    })
    .await?;
    state.changed();
    Ok(accepted(added))
}

/// `GET /v1/work` parameters.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkQuery {
    /// The cursor.
    #[serde(default)]
    pub after: u64,
    /// How long to wait for news, at most [`api::MAX_WAIT_MS`].
    #[serde(default)]
    pub wait_ms: u64,
}

async fn work<S: Store + Send + Sync + 'static>(
    State(state): State<Arc<AppState<S>>>,
    Caller(caller): Caller,
    QueryParams(query): QueryParams<WorkQuery>,
) -> Result<impl IntoResponse, ServiceError> {
    let deadline =
        tokio::time::Instant::now() + Duration::from_millis(query.wait_ms.min(api::MAX_WAIT_MS));
    let mut news = state.news.subscribe();
    let caller = Arc::new(caller);
    loop {
        news.borrow_and_update();
        let (st, who) = (state.clone(), caller.clone());
        let page =
            blocking(move || st.coordinator.work(&who, query.after, api::MAX_WORK_ITEMS)).await?;
        if !page.items.is_empty() {
            return Ok(Json(WorkPage {
                items: page
                    .items
                    .iter()
                    .map(|i| WorkEntry {
                        seq: i.seq,
                        withdrawal: i.withdrawal,
                        kind: i.kind.into(),
                    })
                    .collect(),
                next: page.next,
            }));
        }
        if tokio::time::timeout_at(deadline, news.changed())
            .await
            .is_err()
        {
            return Ok(Json(WorkPage {
                items: Vec::new(),
                next: page.next,
            }));
        }
    }
}

/// Continues every open withdrawal and refuses the expired ones
/// ([`Coordinator::resume`]), then wakes the long polls.
async fn sweep<S: Store + Send + Sync + 'static>(
    state: &Arc<AppState<S>>,
) -> Result<(), ServiceError> {
    let st = state.clone();
    blocking(move || st.coordinator.resume().map(|_| ())).await?;
    state.changed();
    Ok(())
}

/// Serves `state` over HTTPS on `listener` until `shutdown` resolves;
/// first continues every open withdrawal ([`Coordinator::resume`]) and
/// then, every 5 s, refuses those whose request expired; moves on the
/// withdrawals whose signing session passed its deadline
/// ([`Coordinator::tick`]) as the deadlines pass.
///
/// # Errors
/// TLS configuration or the listener's I/O.
pub async fn serve<S: Store + Send + Sync + 'static>(
    state: Arc<AppState<S>>,
    tls: &TlsIdentity,
    listener: std::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServiceError> {
    // Another coordinator sharing the store may add events for the long
    // polls waiting here.
    {
        // Weak: the listener must not keep the state (and its store) alive.
        let st = Arc::downgrade(&state);
        state.coordinator.store().watch(Box::new(move || {
            if let Some(st) = st.upgrade() {
                st.changed();
            }
        }))?;
    }
    sweep(&state).await?;
    let sweeper = {
        let state = state.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            loop {
                tick.tick().await;
                let _ = sweep(&state).await;
            }
        })
    };
    let deadlines = {
        let state = state.clone();
        tokio::spawn(async move {
            // Sleeps until the next session deadline (or an earlier one is
            // added), then a worker thread moves on what is due.
            loop {
                match state.coordinator.next_deadline() {
                    Some(at) if at <= std::time::Instant::now() => {
                        let st = state.clone();
                        let _ = blocking(move || st.coordinator.tick()).await;
                        state.changed();
                    }
                    Some(at) => {
                        tokio::select! {
                            _ = tokio::time::sleep_until(tokio::time::Instant::from_std(at)) => {}
                            _ = state.coordinator.deadline_added() => {}
                        }
                    }
                    None => state.coordinator.deadline_added().await,
                }
            }
        })
    };
    let result = serve_router(router(state), tls, listener, shutdown).await;
    sweeper.abort();
    deadlines.abort();
    result
}

/// How many connections the server holds at once (the rest are closed as
/// they arrive, until some end).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerLimits {
    /// Open connections at most (TLS handshakes included).
    pub max_connections: usize,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            max_connections: 1024,
        }
    }
}

/// Takes a TCP connection only while fewer than the limit are open; the
/// permit lives in the stream, so it is given back when the connection
/// ends, however it ends. Sets `TCP_NODELAY` (small JSON answers should not
/// wait for Nagle's algorithm).
#[derive(Clone, Debug)]
struct Limited {
    permits: Arc<tokio::sync::Semaphore>,
}

/// A TCP stream holding one of [`Limited`]'s permits.
#[derive(Debug)]
struct LimitedStream {
    inner: tokio::net::TcpStream,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl<S: Send + 'static> axum_server::accept::Accept<tokio::net::TcpStream, S> for Limited {
    type Stream = LimitedStream;
    type Service = S;
    type Future = std::future::Ready<std::io::Result<(LimitedStream, S)>>;

    fn accept(&self, stream: tokio::net::TcpStream, service: S) -> Self::Future {
        let Ok(permit) = self.permits.clone().try_acquire_owned() else {
            // Dropping the stream closes it at once.
            return std::future::ready(Err(std::io::Error::other("too many connections")));
        };
        let _ = stream.set_nodelay(true);
        std::future::ready(Ok((
            LimitedStream {
                inner: stream,
                _permit: permit,
            },
            service,
        )))
    }
}

impl tokio::io::AsyncRead for LimitedStream {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for LimitedStream {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Serves any router over HTTPS with the limits of this module (what
/// [`serve`] does after its start-up; tests wrap [`router`] with layers
/// that play a dishonest coordinator).
///
/// # Errors
/// TLS configuration or the listener's I/O.
pub async fn serve_router(
    router: Router,
    tls: &TlsIdentity,
    listener: std::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServiceError> {
    serve_router_with(router, tls, listener, shutdown, ServerLimits::default()).await
}

/// [`serve_router`] with other [`ServerLimits`].
///
/// # Errors
/// TLS configuration or the listener's I/O.
pub async fn serve_router_with(
    router: Router,
    tls: &TlsIdentity,
    listener: std::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
    limits: ServerLimits,
) -> Result<(), ServiceError> {
    let config = tls
        .server_config()
        .map_err(|e| ServiceError::Internal(e.to_string()))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| ServiceError::Internal(format!("listener: {e}")))?;
    let handle = axum_server::Handle::new();
    let acceptor = axum_server::tls_rustls::RustlsAcceptor::new(
        axum_server::tls_rustls::RustlsConfig::from_config(Arc::new(config)),
    )
    .handshake_timeout(Duration::from_secs(5))
    .acceptor(Limited {
        permits: Arc::new(tokio::sync::Semaphore::new(limits.max_connections)),
    });
    let mut server = axum_server::from_tcp(listener)
        .map_err(|e| ServiceError::Internal(format!("listener: {e}")))?
        .acceptor(acceptor)
        .handle(handle.clone())
        .http1_only()
        .first_request_timeout(Duration::from_secs(5));
    server
        .http_builder()
        .http1()
        .header_read_timeout(Duration::from_secs(5))
        .max_buf_size(16 * 1024);
    {
        let handle = handle.clone();
        tokio::spawn(async move {
            shutdown.await;
            // Everything acknowledged is already durable and clients retry,
            // so connections are closed at once (a long poll would hold a
            // graceful shutdown for its whole wait).
            handle.shutdown();
        });
    }
    server
        .serve(router.into_make_service())
        .await
        .map_err(|e| ServiceError::Internal(format!("server: {e}")))
}
