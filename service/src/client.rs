//! A client of the coordinator: HTTPS to a pinned certificate, login with
//! an identity key held by any [`Keystore`], and the calls of
//! [`crate::api`]. Requesters and the signer daemon use it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use tokio::sync::Mutex;
use wallet_core::format::GroupId;
use wallet_core::{Keystore, RequestDigest, Signed};

use crate::api::{
    Accepted, ChallengeRequest, ChallengeResponse, ErrorBody, LoginResponse, RoleName,
    ServiceLogin, SubmitResponse, WithdrawalDocuments, WithdrawalStatus, WorkPage,
};
use crate::error::ClientError;
use crate::tls::{client_config, CertFingerprint};

/// A logged-in (or about to log in) client of a coordinator: one URL, or
/// several coordinators sharing one database (and one certificate), tried
/// in turn when the one in use cannot be reached.
pub struct Client {
    http: reqwest::Client,
    bases: Vec<String>,
    current: AtomicUsize,
    pin: CertFingerprint,
    group: GroupId,
    role: RoleName,
    keystore: Arc<dyn Keystore>,
    token: Mutex<Option<String>>,
    /// Where the `auth` routes are: `/v1` for the coordinator's,
    /// `/v1/ceremonies/{scope}` for a ceremony mailbox's.
    auth_prefix: String,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("bases", &self.bases)
            .field("pin", &self.pin)
            .field("role", &self.role)
            .finish()
    }
}

impl Client {
    /// A client of the coordinator at `base` (`https://host:port`) whose
    /// certificate has fingerprint `pin`, logging in to `group` as `role`
    /// with the identity key of `keystore`.
    ///
    /// # Errors
    /// [`ClientError::Tls`] or [`ClientError::Connect`] when the HTTP client
    /// cannot be built.
    pub fn new(
        base: &str,
        pin: CertFingerprint,
        group: GroupId,
        role: RoleName,
        keystore: Arc<dyn Keystore>,
    ) -> Result<Self, ClientError> {
        Self::with_failover(&[base], pin, group, role, keystore)
    }

    /// A client of several coordinators sharing one database and one
    /// certificate (`pin`): calls go to the first until it cannot be
    /// reached, then to the next, and so on round.
    ///
    /// # Errors
    /// As [`Client::new`]; [`ClientError::Encode`] for an empty list.
    pub fn with_failover(
        bases: &[&str],
        pin: CertFingerprint,
        group: GroupId,
        role: RoleName,
        keystore: Arc<dyn Keystore>,
    ) -> Result<Self, ClientError> {
        let bases: Vec<String> = bases
            .iter()
            .map(|b| b.trim_end_matches('/').to_owned())
            .collect();
        let base = bases
            .first()
            .cloned()
            .ok_or_else(|| ClientError::Encode("no coordinator URL".into()))?;
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(client_config(pin)?)
            // The pin only holds over TLS, and a redirect could lead a
            // login elsewhere.
            .https_only(true)
            .redirect(reqwest::redirect::Policy::none())
            .http1_only()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_millis(crate::api::MAX_WAIT_MS + 10_000))
            .pool_idle_timeout(Duration::from_secs(4))
            .build()
            .map_err(|source| ClientError::Connect {
                url: base.clone(),
                source,
            })?;
        Ok(Client {
            http,
            bases,
            current: AtomicUsize::new(0),
            pin,
            group,
            role,
            keystore,
            token: Mutex::new(None),
            auth_prefix: "/v1".to_owned(),
        })
    }

    /// Logs in at the `auth` routes under `prefix` instead of the
    /// coordinator's (a ceremony mailbox: [`crate::ceremony`]).
    pub(crate) fn with_auth_prefix(mut self, prefix: String) -> Self {
        self.auth_prefix = prefix;
        self
    }

    /// The URL of the coordinator in use.
    pub fn base(&self) -> &str {
        let i = self.current.load(Ordering::Relaxed) % self.bases.len().max(1);
        self.bases.get(i).map_or("", String::as_str)
    }

    fn connect_error(&self, source: reqwest::Error) -> ClientError {
        ClientError::Connect {
            url: self.base().to_owned(),
            source,
        }
    }

    /// Sends what `build` makes for the coordinator in use; when it cannot
    /// be reached (no connection, or the connection broke before an
    /// answer), the same to the next coordinator, each tried once.
    async fn send(
        &self,
        build: &(dyn Fn(&reqwest::Client, &str) -> reqwest::RequestBuilder + Send + Sync),
    ) -> Result<reqwest::Response, ClientError> {
        let mut last = None;
        for _ in 0..self.bases.len() {
            let base = self.base().to_owned();
            match build(&self.http, &base).send().await {
                Ok(response) => return Ok(response),
                Err(e) if e.is_connect() || e.is_request() => {
                    last = Some(ClientError::Connect {
                        url: base,
                        source: e,
                    });
                    self.current.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => return Err(self.connect_error(e)),
            }
        }
        Err(last.unwrap_or_else(|| ClientError::Encode("no coordinator URL".into())))
    }

    async fn answer<T: DeserializeOwned>(
        &self,
        response: reqwest::Response,
    ) -> Result<T, ClientError> {
        let status = response.status();
        // Read at most twice a document's size (an answer embeds one, with
        // the status beside it), whatever the coordinator sends.
        let cap = crate::api::MAX_BODY_BYTES * 2;
        let too_large = || ClientError::Malformed("the answer is too large".into());
        if response.content_length().is_some_and(|n| n > cap as u64) {
            return Err(too_large());
        }
        let mut response = response;
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| self.connect_error(e))? {
            if body.len() + chunk.len() > cap {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        if status.is_success() {
            return serde_json::from_slice(&body)
                .map_err(|e| ClientError::Malformed(inert(&e.to_string())));
        }
        let (kind, message) = match serde_json::from_slice::<ErrorBody>(&body) {
            Ok(e) => (inert(&e.error), inert(&e.message)),
            Err(_) => ("unknown".to_owned(), String::new()),
        };
        Err(ClientError::Refused {
            status: status.as_u16(),
            kind,
            message,
        })
    }

    /// Logs in: a challenge, signed as a `service-login` document naming
    /// this coordinator's fingerprint, exchanged for a token.
    ///
    /// # Errors
    /// [`ClientError`].
    pub async fn login(&self) -> Result<(), ClientError> {
        let key = self.keystore.identity_public_key()?;
        let ask = ChallengeRequest { key };
        let prefix = &self.auth_prefix;
        let response = self
            .send(&|http, base| {
                http.post(format!("{base}{prefix}/auth/challenge"))
                    .json(&ask)
            })
            .await?;
        let challenge: ChallengeResponse = self.answer(response).await?;
        let login = ServiceLogin {
            challenge: challenge.challenge,
            coordinator: self.pin,
            role: self.role,
        };
        let signed = Signed::sign(&self.group, login, &*self.keystore)?;
        let document = wallet_core::format::encode(&self.group, &signed)
            .map_err(|e| ClientError::Malformed(e.to_string()))?;
        // The same coordinator that issued the challenge (or, if it is
        // gone, another sharing its database).
        let response = self
            .send(&|http, base| {
                http.post(format!("{base}{prefix}/auth/login"))
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(document.clone())
            })
            .await?;
        let login: LoginResponse = self.answer(response).await?;
        *self.token.lock().await = Some(login.token);
        Ok(())
    }

    async fn bearer(&self) -> Result<String, ClientError> {
        if let Some(token) = self.token.lock().await.clone() {
            return Ok(token);
        }
        self.login().await?;
        self.token
            .lock()
            .await
            .clone()
            .ok_or_else(|| ClientError::Malformed("no token after login".into()))
    }

    /// Sends a request with the token, logging in again once on a 401 (an
    /// expired token, or a coordinator that lost it).
    pub(crate) async fn call<T: DeserializeOwned>(
        &self,
        build: impl Fn(&reqwest::Client, &str) -> reqwest::RequestBuilder + Send + Sync,
    ) -> Result<T, ClientError> {
        for attempt in 0..2 {
            let token = self.bearer().await?;
            let response = self
                .send(&|http, base| build(http, base).bearer_auth(&token))
                .await?;
            if response.status() == reqwest::StatusCode::UNAUTHORIZED && attempt == 0 {
                *self.token.lock().await = None;
                continue;
            }
            return self.answer(response).await;
        }
        Err(ClientError::Malformed("login did not hold".into()))
    }

    pub(crate) fn post_document(
        &self,
        path: String,
        document: Vec<u8>,
    ) -> impl Fn(&reqwest::Client, &str) -> reqwest::RequestBuilder + Send + Sync {
        move |http, base| {
            http.post(format!("{base}{path}"))
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(document.clone())
        }
    }

    /// Submits a signed withdrawal request (its document bytes).
    ///
    /// # Errors
    /// [`ClientError`].
    pub async fn submit(&self, request: Vec<u8>) -> Result<SubmitResponse, ClientError> {
        self.call(self.post_document("/v1/withdrawals".into(), request))
            .await
    }

    /// A withdrawal's status.
    ///
    /// # Errors
    /// [`ClientError`].
    pub async fn status(&self, id: &RequestDigest) -> Result<WithdrawalStatus, ClientError> {
        self.call(|http, base| http.get(format!("{base}/v1/withdrawals/{id}")))
            .await
    }

    /// A withdrawal's request and packages (members).
    ///
    /// # Errors
    /// [`ClientError`].
    pub async fn documents(&self, id: &RequestDigest) -> Result<WithdrawalDocuments, ClientError> {
        self.call(|http, base| http.get(format!("{base}/v1/withdrawals/{id}/documents")))
            .await
    }

    /// Posts this member's approval (document bytes).
    ///
    /// # Errors
    /// [`ClientError`].
    pub async fn approve(
        &self,
        id: &RequestDigest,
        approval: Vec<u8>,
    ) -> Result<Accepted, ClientError> {
        self.call(self.post_document(format!("/v1/withdrawals/{id}/approvals"), approval))
            .await
    }

    /// Posts this member's answer to `session`: its shares and its next
    /// approval (document bytes), as one [`crate::api::SessionAnswer`].
    ///
    /// # Errors
    /// [`ClientError`]; [`ClientError::Encode`] for documents that are not
    /// JSON.
    pub async fn shares(
        &self,
        id: &RequestDigest,
        session: u32,
        shares: Vec<u8>,
        next: Option<Vec<u8>>,
    ) -> Result<Accepted, ClientError> {
        let raw = |bytes: Vec<u8>| {
            String::from_utf8(bytes)
                .map_err(|e| e.to_string())
                .and_then(|text| {
                    serde_json::value::RawValue::from_string(text).map_err(|e| e.to_string())
                })
                .map_err(ClientError::Encode)
        };
        let answer = crate::api::SessionAnswer {
            shares: raw(shares)?,
            next: next.map(raw).transpose()?,
        };
        let body = serde_json::to_vec(&answer).map_err(|e| ClientError::Encode(e.to_string()))?;
        self.call(self.post_document(
            format!("/v1/withdrawals/{id}/sessions/{session}/shares"),
            body,
        ))
        .await
    }

    /// Waits up to `wait` for mailbox items after `after`.
    ///
    /// # Errors
    /// [`ClientError`].
    pub async fn work(&self, after: u64, wait: Duration) -> Result<WorkPage, ClientError> {
        let query = format!("after={after}&wait_ms={}", wait.as_millis());
        self.call(|http, base| http.get(format!("{base}/v1/work?{query}")))
            .await
    }
}

fn inert(text: &str) -> String {
    wallet_core::display::inert_bounded(text, 400)
}
