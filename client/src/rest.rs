//! REST calls over TLS, with the caller's token, that fail over between the peers
//! named by `--server` or the context.
//!
//! A call goes to the peer that answered last; when that peer cannot be reached or
//! answers `503` (no leader within its hold time), the next URL is tried. Any peer
//! can answer any call, so this is all a client needs for high availability.
//!
//! Writes (`put`, `delete`, [`Client::post_idempotent`]) carry a request id in the
//! `Idempotency-Key` header and are retried with it — across the servers, with
//! backoff, for up to [`WRITE_RETRY_BUDGET`] — also when the answer was lost after
//! the request was sent: the cluster applies a request id once and answers a retry
//! with the first result. A write ends with its result or a definite error; only
//! when no peer answered within the budget after one may have received it is the
//! outcome unknown, and the error names the request id to send it again with
//! (`--request-id`).

use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};

use orion_api::{ApiError, ErrorBody, RequestId};

use crate::ClientError;
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// The header a write's request id travels in (IETF draft
/// `draft-ietf-httpapi-idempotency-key-header`).
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// How long a write is retried across the servers before the client gives up.
pub const WRITE_RETRY_BUDGET: Duration = Duration::from_secs(20);

/// Longest `--request-id`: the server takes 128 bytes, and later writes of one
/// command add `.N`.
pub const MAX_REQUEST_ID_LEN: usize = 120;

/// Why one attempt at a call failed.
enum Failure {
    /// Nothing reached a peer (connection refused, DNS, TLS handshake).
    NotSent(String),
    /// A peer may have received it: the connection broke mid-request, or a `503`.
    Unknown(String),
    /// A definite answer: the call's outcome.
    Final(ClientError),
}

pub struct Client {
    urls: Vec<String>,
    http: reqwest::Client,
    /// Index of the URL that answered last.
    preferred: AtomicUsize,
    /// The request id of this client's first write; the n-th later one is `<id>.<n>`,
    /// so a command run again with the same `--request-id` sends the same ids.
    request_id: String,
    /// Writes sent so far.
    writes: AtomicU32,
}

impl Client {
    /// A client for `urls` that trusts only the cluster CA `ca_pem` and sends `token`.
    pub fn new(urls: &[String], ca_pem: &str, token: Option<String>) -> Result<Self, ClientError> {
        Self::build(urls, ca_pem, None, token)
    }

    /// A client for `urls` that trusts only the cluster CA `ca_pem` and presents
    /// `cert` (a peer's own calls, such as asking to join, where the certificate
    /// is the credential).
    pub fn with_certificate(
        urls: &[String],
        ca_pem: &str,
        cert: std::sync::Arc<orion_tls::LiveCert>,
    ) -> Result<Self, ClientError> {
        Self::build(urls, ca_pem, Some(cert), None)
    }

    fn build(
        urls: &[String],
        ca_pem: &str,
        cert: Option<std::sync::Arc<orion_tls::LiveCert>>,
        token: Option<String>,
    ) -> Result<Self, ClientError> {
        let urls: Vec<String> = urls
            .iter()
            .map(|u| u.trim().trim_end_matches('/').to_string())
            .filter(|u| !u.is_empty())
            .collect();
        if urls.is_empty() {
            return Err(ClientError::Invalid(
                "no server URL given (--server, ORION_SERVER or a context)".into(),
            ));
        }
        if let Some(bad) = urls.iter().find(|u| !u.starts_with("https://")) {
            return Err(ClientError::Invalid(format!(
                "server URL {bad:?} must start with https:// (the API is served over TLS)"
            )));
        }
        let tls = orion_tls::config::client_config(ca_pem, cert)
            .map_err(|e| ClientError::Invalid(format!("the CA certificate: {e}")))?;
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(t) = token {
            let mut v = reqwest::header::HeaderValue::from_str(&format!("Bearer {}", t.trim()))
                .map_err(|_| {
                    ClientError::Invalid("the token holds characters a header cannot".into())
                })?;
            v.set_sensitive(true);
            headers.insert(reqwest::header::AUTHORIZATION, v);
        }
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .default_headers(headers)
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(330))
            .build()
            .map_err(|e| ClientError::Invalid(e.to_string()))?;
        Ok(Client {
            urls,
            http,
            preferred: AtomicUsize::new(0),
            request_id: RequestId::random().to_string(),
            writes: AtomicU32::new(0),
        })
    }

    /// Sends this client's writes under `id` (the `--request-id` of an earlier run
    /// whose outcome was unknown) instead of a new random id.
    pub fn with_request_id(mut self, id: Option<&str>) -> Result<Self, ClientError> {
        let Some(id) = id else { return Ok(self) };
        let bad = |why: String| ClientError::Invalid(format!("--request-id {id:?}: {why}"));
        if id.len() > MAX_REQUEST_ID_LEN {
            return Err(bad(format!("longer than {MAX_REQUEST_ID_LEN} bytes")));
        }
        self.request_id = RequestId::parse(id.trim()).map_err(bad)?.to_string();
        Ok(self)
    }

    /// The request id for the next write.
    fn next_request_id(&self) -> String {
        match self.writes.fetch_add(1, Ordering::Relaxed) {
            0 => self.request_id.clone(),
            n => format!("{}.{n}", self.request_id),
        }
    }

    /// The same credentials, aimed at one other peer.
    pub fn at(&self, url: &str) -> Client {
        Client {
            urls: vec![url.trim_end_matches('/').to_string()],
            http: self.http.clone(),
            preferred: AtomicUsize::new(0),
            request_id: RequestId::random().to_string(),
            writes: AtomicU32::new(0),
        }
    }

    pub fn urls(&self) -> &[String] {
        &self.urls
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.call(Method::GET, path, None::<&()>).await
    }

    /// A write, retried under one request id (see the module docs).
    pub async fn put<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        self.write(Method::PUT, path, Some(body)).await
    }

    /// A POST the server deduplicates by its `Idempotency-Key` (`/v1/apply`),
    /// retried as writes are.
    pub async fn post_idempotent<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        self.write(Method::POST, path, Some(body)).await
    }

    /// A POST that is not retried once sent (exec runs a command; a token is minted).
    pub async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        self.call(Method::POST, path, Some(body)).await
    }

    /// A write, retried under one request id (see the module docs).
    pub async fn delete<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.write(Method::DELETE, path, None::<&()>).await
    }

    /// Sends a write under a new request id, retrying it with that id until a peer
    /// gives a definite answer or [`WRITE_RETRY_BUDGET`] is spent.
    pub async fn write<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, ClientError> {
        let request_id = self.next_request_id();
        let maybe_received = std::sync::atomic::AtomicBool::new(false);
        let (method, id, seen) = (&method, request_id.as_str(), &maybe_received);
        let round = || async move {
            let outcome = self.round(method, path, body, None, Some(id)).await;
            if matches!(outcome, Err(Failure::Unknown(_))) {
                seen.store(true, Ordering::Relaxed);
            }
            outcome
        };
        let backoff = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(100))
            .with_max_delay(Duration::from_secs(2))
            .with_jitter()
            .without_max_times()
            .with_total_delay(Some(WRITE_RETRY_BUDGET));
        let sent = round
            .retry(backoff)
            .when(|f| !matches!(f, Failure::Final(_)))
            .notify(|f, after| {
                let (Failure::NotSent(cause) | Failure::Unknown(cause)) = f else {
                    return;
                };
                eprintln!(
                    "note: {cause}; sending the write again in {} ms (request id {request_id})",
                    after.as_millis()
                );
            })
            .await;
        let (url, resp) = match sent {
            Ok(answer) => answer,
            Err(Failure::Final(e)) => return Err(e),
            Err(Failure::NotSent(cause) | Failure::Unknown(cause)) => {
                return Err(if maybe_received.load(Ordering::Relaxed) {
                    ClientError::Unknown { request_id, cause }
                } else {
                    ClientError::Unreachable(format!("{cause}; nothing was sent"))
                })
            }
        };
        resp.json()
            .await
            .map_err(|e| ClientError::Unreadable(format!("unreadable answer from {url}: {e}")))
    }

    /// Sends one call, failing over to the next URL on a connection error or a 503,
    /// and decodes the JSON answer.
    pub async fn call<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, ClientError> {
        let (url, resp) = self.send(method, path, body, None).await?;
        resp.json()
            .await
            .map_err(|e| ClientError::Unreadable(format!("unreadable answer from {url}: {e}")))
    }

    /// A GET whose body is copied to `out` as it arrives (logs), with no time limit.
    pub async fn stream(
        &self,
        path: &str,
        mut out: impl std::io::Write,
    ) -> Result<(), ClientError> {
        use futures::StreamExt;
        let forever = Duration::from_secs(365 * 24 * 3600);
        let (_, resp) = self
            .send(Method::GET, path, None::<&()>, Some(forever))
            .await?;
        let mut body = resp.bytes_stream();
        while let Some(chunk) = body.next().await {
            let chunk =
                chunk.map_err(|e| ClientError::Unreachable(format!("the stream broke: {e}")))?;
            out.write_all(&chunk)
                .and_then(|()| out.flush())
                .map_err(|e| ClientError::Output(e.to_string()))?;
        }
        Ok(())
    }

    /// A GET with no time limit whose answer is returned unread, with the URL that
    /// gave it: for streams the caller reads itself (`orion logs -f`).
    pub async fn open_stream(
        &self,
        path: &str,
    ) -> Result<(String, reqwest::Response), ClientError> {
        let forever = Duration::from_secs(365 * 24 * 3600);
        self.send(Method::GET, path, None::<&()>, Some(forever))
            .await
    }

    /// The failover loop of a read: one round over the URLs.
    async fn send<B: Serialize>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
        timeout: Option<Duration>,
    ) -> Result<(String, reqwest::Response), ClientError> {
        match self.round(&method, path, body, timeout, None).await {
            Ok(answer) => Ok(answer),
            Err(Failure::Final(e)) => Err(e),
            Err(Failure::NotSent(m) | Failure::Unknown(m)) => Err(ClientError::Unreachable(m)),
        }
    }

    /// Tries the URLs once each, starting with the one that answered last, moving on
    /// after a connection error or a 503; returns the first success or definite
    /// error. Without a request id (a read), a connection broken mid-request ends
    /// the round: the call is not known to be safe to repeat.
    async fn round<B: Serialize>(
        &self,
        method: &Method,
        path: &str,
        body: Option<&B>,
        timeout: Option<Duration>,
        request_id: Option<&str>,
    ) -> Result<(String, reqwest::Response), Failure> {
        let start = self.preferred.load(Ordering::Relaxed);
        let mut failures = Vec::new();
        let mut received = false;
        for k in 0..self.urls.len() {
            let i = (start + k) % self.urls.len();
            let url = format!("{}{path}", self.urls[i]);
            let mut req = self.http.request(method.clone(), &url);
            if let Some(b) = body {
                req = req.json(b);
            }
            if let Some(t) = timeout {
                req = req.timeout(t);
            }
            if let Some(id) = request_id {
                req = req.header(IDEMPOTENCY_KEY, id);
            }
            let resp = match req.send().await {
                Ok(r) => r,
                Err(e) if e.is_connect() => {
                    failures.push(format!("{}: {}", self.urls[i], root_cause(&e)));
                    continue;
                }
                Err(e) if request_id.is_some() => {
                    let failure = format!("{}: {}", self.urls[i], root_cause(&e));
                    if let (Some(id), true) = (request_id, k + 1 < self.urls.len()) {
                        let next = &self.urls[(start + k + 1) % self.urls.len()];
                        eprintln!(
                            "note: {failure}; sending the write again to {next} (request id {id})"
                        );
                    }
                    failures.push(failure);
                    received = true;
                    continue;
                }
                Err(e) => {
                    return Err(Failure::Final(ClientError::Unreachable(format!(
                        "{url}: {}",
                        root_cause(&e)
                    ))))
                }
            };
            let status = resp.status();
            if status.is_success() {
                self.preferred.store(i, Ordering::Relaxed);
                return Ok((url, resp));
            }
            let error = match resp.json::<ErrorBody>().await {
                Ok(b) => b.error,
                Err(_) => ApiError::internal(format!("{url} answered {status}")),
            };
            if status == StatusCode::SERVICE_UNAVAILABLE
                && (request_id.is_some() || k + 1 < self.urls.len())
            {
                let failure = format!("{}: {}", self.urls[i], error.message);
                if let (Some(id), true) = (request_id, k + 1 < self.urls.len()) {
                    let next = &self.urls[(start + k + 1) % self.urls.len()];
                    eprintln!(
                        "note: {failure}; sending the write again to {next} (request id {id})"
                    );
                }
                failures.push(failure);
                received = true;
                continue;
            }
            return Err(Failure::Final(ClientError::Api { status, error }));
        }
        let failures = failures.join("; ");
        Err(if received {
            Failure::Unknown(failures)
        } else {
            Failure::NotSent(failures)
        })
    }
}

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    let text = cur.to_string();
    if text.contains("not valid for name") {
        // Typically a load balancer's address, which the peers' certificates do
        // not carry unless they were started with it.
        return format!(
            "{text}: the server's certificate does not name the address in the URL; \
             if that is a load balancer, start every peer with --tls-san <its name or IP>"
        );
    }
    text
}

/// Percent-encodes a query value.
pub fn query_value(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
