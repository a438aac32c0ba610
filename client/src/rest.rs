//! REST calls over TLS, with the caller's token, that fail over between the peers
//! named by `--server` or the context.
//!
//! A call goes to the peer that answered last; when that peer cannot be reached or
//! answers `503` (no leader within its hold time), the next URL is tried. Any peer
//! can answer any call, so this is all a client needs for high availability.
//!
//! Writes (variable put and delete, apply, service delete, node put) carry a request
//! id in the `Idempotency-Key` header and are retried with it — across the servers, with
//! backoff, for up to [`WRITE_RETRY_BUDGET`] — also when the answer was lost after
//! the request was sent: the cluster applies a request id once and answers a retry
//! with the first result. A write ends with its result or a definite error; only
//! when no peer answered within the budget after one may have received it is the
//! outcome unknown, and the error names the request id to send it again with
//! (`--request-id`). A client built with [`WriteRetry::Never`] makes one round over
//! its URLs and leaves retrying to its caller.

use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;
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

/// How long a peer gets to accept a connection, by default.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// How long one call may take, by default (longer than any hold time on the server).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(330);

/// No time limit, for streams.
const FOREVER: Duration = Duration::from_secs(365 * 24 * 3600);

/// What a client does with a write no peer gave a definite answer to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteRetry {
    /// Send it again under its request id, across the servers with backoff, for
    /// this long ([`WRITE_RETRY_BUDGET`] by default).
    For(Duration),
    /// One round over the URLs, no retry: the caller decides (a benchmark, the
    /// fault-injection harness, which each record what one attempt did).
    Never,
}

/// A hook for the client's notes: a write sent again, and why. A library does not
/// print; the CLI prints them as `note: …` lines on stderr.
pub type NoteHook = Arc<dyn Fn(&str) + Send + Sync>;

/// Why one attempt at a call failed.
enum Failure {
    /// Nothing reached a peer (connection refused, DNS, TLS handshake).
    NotSent(String),
    /// A peer may have received it: the connection broke mid-request, or a `503`.
    Unknown(String),
    /// A definite answer: the call's outcome.
    Final(ClientError),
}

/// What a client does besides sending: shared by [`Client::at`].
#[derive(Clone)]
struct Policy {
    /// Time limit of each call, unless a stream's.
    timeout: Option<Duration>,
    write_retry: WriteRetry,
    notes: Option<NoteHook>,
}

impl Policy {
    fn note(&self, text: &str) {
        if let Some(hook) = &self.notes {
            hook(text);
        }
    }
}

/// Builds a [`Client`]: the URLs, the trust (a CA or a ready HTTP client), the
/// token and the timeouts and retry policy.
#[must_use]
pub struct ClientBuilder {
    urls: Vec<String>,
    ca_pem: Option<String>,
    token: Option<String>,
    http: Option<reqwest::Client>,
    request_id: Option<String>,
    connect_timeout: Duration,
    timeout: Option<Duration>,
    write_retry: WriteRetry,
    notes: Option<NoteHook>,
}

impl ClientBuilder {
    /// Trust only the cluster CA `ca_pem`.
    pub fn ca(mut self, ca_pem: &str) -> Self {
        self.ca_pem = Some(ca_pem.to_string());
        self
    }

    /// Send `token` as the bearer token (blank means none).
    pub fn token(mut self, token: Option<String>) -> Self {
        self.token = token.filter(|t| !t.trim().is_empty());
        self
    }

    /// Use this HTTP client (its TLS, default headers, pool, timeouts) instead of
    /// building one: [`ClientBuilder::ca`], [`ClientBuilder::token`] and
    /// [`ClientBuilder::connect_timeout`] are then not used. [`http_builder`] is
    /// the setup to start it from; [`ClientBuilder::timeout`] still limits each call.
    pub fn http(mut self, http: reqwest::Client) -> Self {
        self.http = Some(http);
        self
    }

    /// Send the writes under `id` (see [`Client::with_request_id`]).
    pub fn request_id(mut self, id: Option<&str>) -> Self {
        self.request_id = id.map(str::to_string);
        self
    }

    /// How long a peer gets to accept a connection ([`CONNECT_TIMEOUT`] by default).
    pub fn connect_timeout(mut self, limit: Duration) -> Self {
        self.connect_timeout = limit;
        self
    }

    /// How long each call may take ([`CALL_TIMEOUT`] by default); streams have none.
    pub fn timeout(mut self, limit: Duration) -> Self {
        self.timeout = Some(limit);
        self
    }

    /// What to do with a write no peer answered ([`WriteRetry::For`]`(`[`WRITE_RETRY_BUDGET`]`)`
    /// by default).
    pub fn write_retry(mut self, retry: WriteRetry) -> Self {
        self.write_retry = retry;
        self
    }

    /// Called with each note (a write sent again, and why).
    pub fn on_note(mut self, hook: impl Fn(&str) + Send + Sync + 'static) -> Self {
        self.notes = Some(Arc::new(hook));
        self
    }

    pub fn build(self) -> Result<Client, ClientError> {
        let urls = checked_urls(&self.urls)?;
        let http = match self.http {
            Some(http) => http,
            None => {
                let ca_pem = self.ca_pem.as_deref().ok_or_else(|| {
                    ClientError::Invalid(format!(
                        "no CA certificate to trust {} with",
                        urls.join(",")
                    ))
                })?;
                http_builder(ca_pem, self.token.as_deref())?
                    .connect_timeout(self.connect_timeout)
                    .timeout(self.timeout.unwrap_or(CALL_TIMEOUT))
                    .build()
                    .map_err(|e| ClientError::Invalid(format!("http client: {e}")))?
            }
        };
        let client = Client {
            urls,
            http,
            preferred: AtomicUsize::new(0),
            request_id: RequestId::random().to_string(),
            writes: AtomicU32::new(0),
            policy: Policy {
                timeout: self.timeout,
                write_retry: self.write_retry,
                notes: self.notes,
            },
        };
        client.with_request_id(self.request_id.as_deref())
    }
}

/// The one HTTP client setup every Orion call starts from: TLS that trusts only the
/// cluster CA `ca_pem`, and `token` as the bearer token. Callers add their timeouts
/// and pool settings (the bench builds its etcd client with it too).
pub fn http_builder(
    ca_pem: &str,
    token: Option<&str>,
) -> Result<reqwest::ClientBuilder, ClientError> {
    let tls = orion_tls::config::client_config(ca_pem, None)
        .map_err(|e| ClientError::Invalid(format!("the CA certificate: {e}")))?;
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(t) = token {
        headers.insert(reqwest::header::AUTHORIZATION, bearer(t)?);
    }
    Ok(reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .default_headers(headers))
}

/// The `Authorization` value for `token`, marked sensitive (kept out of logs).
fn bearer(token: &str) -> Result<reqwest::header::HeaderValue, ClientError> {
    let mut v = reqwest::header::HeaderValue::from_str(&format!("Bearer {}", token.trim()))
        .map_err(|_| ClientError::Invalid("the token holds characters a header cannot".into()))?;
    v.set_sensitive(true);
    Ok(v)
}

/// The server URLs without blanks and trailing slashes; each must be `https://`.
fn checked_urls(urls: &[String]) -> Result<Vec<String>, ClientError> {
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
    Ok(urls)
}

/// Checks a `--request-id`: within [`MAX_REQUEST_ID_LEN`] and a valid request id.
fn checked_request_id(id: &str) -> Result<String, ClientError> {
    let bad = |why: orion_api::Invalid| ClientError::Invalid(format!("--request-id {id:?}: {why}"));
    if id.len() > MAX_REQUEST_ID_LEN {
        return Err(bad(format!("longer than {MAX_REQUEST_ID_LEN} bytes").into()));
    }
    Ok(RequestId::parse(id.trim()).map_err(bad)?.to_string())
}

/// The request id of the `n`-th write (from 0) of a client whose first is `first`.
fn nth_request_id(first: &str, n: u32) -> String {
    match n {
        0 => first.to_string(),
        n => format!("{first}.{n}"),
    }
}

/// Whether an answer of `status` moves the call on to the next peer: a `503` (no
/// leader within the peer's hold time) does, for a write (sent again under its
/// request id) or while another peer is left to ask.
fn next_peer_on(status: StatusCode, write: bool, more: bool) -> bool {
    status == StatusCode::SERVICE_UNAVAILABLE && (write || more)
}

/// The error a peer's refusal carries: its JSON error body, or, when the body is
/// not one, an internal error naming the URL and status.
pub(crate) fn refusal(url: &str, status: StatusCode, body: &[u8]) -> ApiError {
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(b) => b.error,
        Err(_) => ApiError::internal(format!("{url} answered {status}")),
    }
}

/// The calls to one cluster: see the module docs. Typed calls, one per endpoint,
/// are in [`crate::api`]; the methods here are the lower level they are built on
/// (only [`Client::get`] and [`Client::post`] on a raw path are public, for
/// callers not yet moved to the typed calls).
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
    policy: Policy,
}

/// An answer whose body is read as it arrives (`orion logs -f`).
pub struct Stream {
    url: String,
    resp: reqwest::Response,
}

impl Stream {
    /// The URL that answered.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The next bytes of the body; `None` once it ended. A broken connection is
    /// [`ClientError::Broken`].
    pub async fn chunk(&mut self) -> Result<Option<Vec<u8>>, ClientError> {
        match self.resp.chunk().await {
            Ok(c) => Ok(c.map(|b| b.to_vec())),
            Err(e) => Err(ClientError::Broken(root_cause(&e))),
        }
    }
}

impl Client {
    /// A client for `urls` that trusts only the cluster CA `ca_pem` and sends `token`.
    pub fn new(urls: &[String], ca_pem: &str, token: Option<String>) -> Result<Self, ClientError> {
        Client::builder(urls).ca(ca_pem).token(token).build()
    }

    /// A client for `urls`, set up step by step.
    pub fn builder(urls: &[String]) -> ClientBuilder {
        ClientBuilder {
            urls: urls.to_vec(),
            ca_pem: None,
            token: None,
            http: None,
            request_id: None,
            connect_timeout: CONNECT_TIMEOUT,
            timeout: None,
            write_retry: WriteRetry::For(WRITE_RETRY_BUDGET),
            notes: None,
        }
    }

    /// Sends this client's writes under `id` (the `--request-id` of an earlier run
    /// whose outcome was unknown) instead of a new random id.
    pub fn with_request_id(mut self, id: Option<&str>) -> Result<Self, ClientError> {
        let Some(id) = id else { return Ok(self) };
        self.request_id = checked_request_id(id)?;
        Ok(self)
    }

    /// The same client with each call limited to `limit` (streams have no limit).
    pub fn with_timeout(mut self, limit: Duration) -> Self {
        self.policy.timeout = Some(limit);
        self
    }

    /// The request id for the next write.
    fn next_request_id(&self) -> String {
        nth_request_id(
            &self.request_id,
            self.writes.fetch_add(1, Ordering::Relaxed),
        )
    }

    /// The same credentials and policy, aimed at one other peer, with no failover.
    pub fn at(&self, url: &str) -> Client {
        Client {
            urls: vec![url.trim().trim_end_matches('/').to_string()],
            http: self.http.clone(),
            preferred: AtomicUsize::new(0),
            request_id: RequestId::random().to_string(),
            writes: AtomicU32::new(0),
            policy: self.policy.clone(),
        }
    }

    pub fn urls(&self) -> &[String] {
        &self.urls
    }

    /// A GET of `path` (lower level: prefer the typed calls).
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.call(Method::GET, path, None::<&()>).await
    }

    /// A write, retried under one request id (see the module docs).
    pub(crate) async fn put<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        self.write(Method::PUT, path, Some(body)).await
    }

    /// A POST the server deduplicates by its `Idempotency-Key` (`/v1/apply`),
    /// retried as writes are.
    pub(crate) async fn post_idempotent<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        self.write(Method::POST, path, Some(body)).await
    }

    /// A POST that is not retried once sent (exec runs a command; a token is
    /// minted). Lower level: prefer the typed calls.
    pub async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        self.call(Method::POST, path, Some(body)).await
    }

    /// A write, retried under one request id (see the module docs).
    pub(crate) async fn delete<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.write(Method::DELETE, path, None::<&()>).await
    }

    /// Sends a write under a new request id, retrying it with that id until a peer
    /// gives a definite answer or the retry budget is spent.
    async fn write<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, ClientError> {
        let request_id = self.next_request_id();
        let maybe_received = std::sync::atomic::AtomicBool::new(false);
        let (method, id, seen) = (&method, request_id.as_str(), &maybe_received);
        let timeout = self.policy.timeout;
        let round = || async move {
            let outcome = self.round(method, path, body, timeout, Some(id)).await;
            if matches!(outcome, Err(Failure::Unknown(_))) {
                seen.store(true, Ordering::Relaxed);
            }
            outcome
        };
        let (sent, budget) = match self.policy.write_retry {
            WriteRetry::Never => (round().await, None),
            WriteRetry::For(budget) => {
                let backoff = ExponentialBuilder::default()
                    .with_min_delay(Duration::from_millis(100))
                    .with_max_delay(Duration::from_secs(2))
                    .with_jitter()
                    .without_max_times()
                    .with_total_delay(Some(budget));
                let sent = round
                    .retry(backoff)
                    .when(|f| !matches!(f, Failure::Final(_)))
                    .notify(|f, after| {
                        let (Failure::NotSent(cause) | Failure::Unknown(cause)) = f else {
                            return;
                        };
                        self.policy.note(&format!(
                            "{cause}; sending the write again in {} ms (request id {request_id})",
                            after.as_millis()
                        ));
                    })
                    .await;
                (sent, Some(budget))
            }
        };
        let (url, resp) = match sent {
            Ok(answer) => answer,
            Err(Failure::Final(e)) => return Err(e),
            Err(Failure::NotSent(cause) | Failure::Unknown(cause)) => {
                return Err(if maybe_received.load(Ordering::Relaxed) {
                    ClientError::Unknown {
                        request_id,
                        cause,
                        budget,
                    }
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
    pub(crate) async fn call<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, ClientError> {
        let (url, resp) = self.send(method, path, body, self.policy.timeout).await?;
        resp.json()
            .await
            .map_err(|e| ClientError::Unreadable(format!("unreadable answer from {url}: {e}")))
    }

    /// A GET whose body is copied to `out` as it arrives (logs, the watch), with no
    /// time limit.
    pub(crate) async fn stream(
        &self,
        path: &str,
        mut out: impl std::io::Write,
    ) -> Result<(), ClientError> {
        use futures::StreamExt;
        let (_, resp) = self
            .send(Method::GET, path, None::<&()>, Some(FOREVER))
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

    /// A GET with no time limit whose answer the caller reads itself.
    pub(crate) async fn open_stream(&self, path: &str) -> Result<Stream, ClientError> {
        let (url, resp) = self
            .send(Method::GET, path, None::<&()>, Some(FOREVER))
            .await?;
        Ok(Stream { url, resp })
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
            let more = k + 1 < self.urls.len();
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
                    if let (Some(id), true) = (request_id, more) {
                        self.note_resend(&failure, start + k + 1, id);
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
            let body = resp.bytes().await.unwrap_or_default();
            let error = refusal(&url, status, &body);
            if next_peer_on(status, request_id.is_some(), more) {
                let failure = format!("{}: {}", self.urls[i], error.message);
                if let (Some(id), true) = (request_id, more) {
                    self.note_resend(&failure, start + k + 1, id);
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

    /// Notes that a write goes on to the URL at `next` (modulo their number).
    fn note_resend(&self, failure: &str, next: usize, id: &str) {
        let next = &self.urls[next % self.urls.len()];
        self.policy.note(&format!(
            "{failure}; sending the write again to {next} (request id {id})"
        ));
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

/// Percent-encodes `s` for a URL: unreserved characters stay, and so does `/`
/// when `keep_slash` (a variable path spans segments; a name is one).
fn encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'_' | b'.' | b'~')
            || (keep_slash && b == b'/')
        {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Percent-encodes a query value or a variable path (`/` kept).
pub(crate) fn query_value(s: &str) -> String {
    encode(s, true)
}

/// Percent-encodes one path segment (a service name, a replica or token id): `/`
/// is encoded too, so the name stays one segment.
pub(crate) fn segment(s: &str) -> String {
    encode(s, false)
}

#[cfg(test)]
mod tests {
    use orion_api::ErrorCode;

    use super::*;

    #[test]
    fn urls_are_trimmed_and_must_be_https() {
        let urls = checked_urls(&[" https://a:1/ ".into(), String::new(), "https://b:2".into()]);
        assert_eq!(
            urls.ok(),
            Some(vec!["https://a:1".to_string(), "https://b:2".to_string()])
        );
        match checked_urls(&["http://a:1".into()]) {
            Err(ClientError::Invalid(m)) => assert!(m.contains("must start with https://"), "{m}"),
            other => panic!("plain http accepted: {other:?}"),
        }
        match checked_urls(&[" ".into()]) {
            Err(ClientError::Invalid(m)) => assert!(m.starts_with("no server URL given"), "{m}"),
            other => panic!("no URL accepted: {other:?}"),
        }
    }

    #[test]
    fn a_client_needs_a_ca_and_a_token_a_header_can_carry() {
        let urls = ["https://a:1".to_string()];
        assert!(matches!(
            Client::builder(&urls).build(),
            Err(ClientError::Invalid(m)) if m.contains("no CA certificate")
        ));
        assert!(matches!(
            Client::new(&urls, "not a pem", None),
            Err(ClientError::Invalid(m)) if m.starts_with("the CA certificate")
        ));
        assert!(matches!(
            bearer("bad\ntoken"),
            Err(ClientError::Invalid(m)) if m.contains("header")
        ));
        assert!(bearer("orion.abc").is_ok_and(|v| v.is_sensitive()));
    }

    #[test]
    fn request_ids_are_checked_and_numbered() {
        assert_eq!(checked_request_id(" w-1 ").ok().as_deref(), Some("w-1"));
        let long = "x".repeat(MAX_REQUEST_ID_LEN + 1);
        assert!(matches!(
            checked_request_id(&long),
            Err(ClientError::Invalid(m)) if m.contains("longer than 120 bytes")
        ));
        for bad in ["has space", "quo\"te", ""] {
            assert!(
                matches!(checked_request_id(bad), Err(ClientError::Invalid(m)) if m.starts_with("--request-id")),
                "{bad:?}"
            );
        }
        assert_eq!(nth_request_id("w-1", 0), "w-1");
        assert_eq!(nth_request_id("w-1", 2), "w-1.2");
    }

    #[test]
    fn a_503_moves_on_for_a_write_or_while_peers_are_left() {
        let busy = StatusCode::SERVICE_UNAVAILABLE;
        assert!(next_peer_on(busy, true, false), "a write is sent again");
        assert!(next_peer_on(busy, false, true), "a read asks the next peer");
        assert!(
            !next_peer_on(busy, false, false),
            "the last peer's 503 is the answer"
        );
        assert!(!next_peer_on(StatusCode::CONFLICT, true, true));
        assert!(!next_peer_on(StatusCode::INTERNAL_SERVER_ERROR, true, true));
    }

    #[test]
    fn refusals_carry_the_error_body_or_name_the_status() {
        let body =
            br#"{"error":{"code":"conflict","message":"revision 4, not 3","current_revision":4}}"#;
        let e = refusal("https://a:1/v1/variables/x", StatusCode::CONFLICT, body);
        assert_eq!(e.code, ErrorCode::Conflict);
        assert_eq!(e.current_revision, Some(4));
        let body = br#"{"error":{"code":"unavailable","message":"no leader","leader_hint":2}}"#;
        let e = refusal("https://a:1/v1/x", StatusCode::SERVICE_UNAVAILABLE, body);
        assert_eq!((e.code, e.leader_hint), (ErrorCode::Unavailable, Some(2)));
        let e = refusal(
            "https://a:1/v1/x",
            StatusCode::BAD_GATEWAY,
            b"<html>proxy</html>",
        );
        assert_eq!(e.code, ErrorCode::Internal);
        assert_eq!(e.message, "https://a:1/v1/x answered 502 Bad Gateway");
    }

    /// A port nothing listens on: a write that was never sent is unreachable,
    /// not unknown, and a client that does not retry says so at once.
    #[tokio::test]
    async fn a_write_that_reached_no_peer_is_not_an_unknown_outcome() {
        let (ca_pem, _key) = match orion_tls::cert::generate_ca() {
            Ok(ca) => ca,
            Err(e) => panic!("a CA: {e}"),
        };
        let urls = ["https://127.0.0.1:1".to_string()];
        let client = Client::builder(&urls)
            .ca(&ca_pem)
            .write_retry(WriteRetry::Never)
            .build();
        let Ok(client) = client else {
            panic!("client: {:?}", client.err());
        };
        let body = orion_api::PutVariable {
            value: "v".into(),
            expected_revision: None,
            secret: false,
        };
        match client.put_variable("x", &body).await {
            Err(ClientError::Unreachable(m)) => assert!(m.ends_with("nothing was sent"), "{m}"),
            other => panic!("expected unreachable, got {other:?}"),
        }
    }
}
