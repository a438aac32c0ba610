//! REST calls over TLS, with the caller's token, that fail over between the peers
//! named by `--server` or the context.
//!
//! A call goes to the peer that answered last; when that peer cannot be reached or
//! answers `503` (no leader within its hold time), the next URL is tried. Any peer
//! can answer any call, so this is all a client needs for high availability.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use orion_api::{ApiError, ErrorBody};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The cluster answered with an error.
    #[error("{error} ({status})")]
    Api { status: StatusCode, error: ApiError },
    /// No peer could be reached.
    #[error("no Orion peer answered: {0}")]
    Unreachable(String),
    #[error("{0}")]
    Other(String),
}

pub struct Client {
    urls: Vec<String>,
    http: reqwest::Client,
    /// Index of the URL that answered last.
    preferred: AtomicUsize,
}

impl Client {
    /// A client for `urls` that trusts only the cluster CA `ca_pem` and sends `token`.
    pub fn new(urls: &[String], ca_pem: &str, token: Option<String>) -> Result<Self, ClientError> {
        let urls: Vec<String> = urls
            .iter()
            .map(|u| u.trim().trim_end_matches('/').to_string())
            .filter(|u| !u.is_empty())
            .collect();
        if urls.is_empty() {
            return Err(ClientError::Other(
                "no server URL given (--server, ORION_SERVER or a context)".into(),
            ));
        }
        if let Some(bad) = urls.iter().find(|u| !u.starts_with("https://")) {
            return Err(ClientError::Other(format!(
                "server URL {bad:?} must start with https:// (the API is served over TLS)"
            )));
        }
        let tls = orion_tls::config::client_config(ca_pem, None)
            .map_err(|e| ClientError::Other(format!("the CA certificate: {e}")))?;
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(t) = token {
            let mut v = reqwest::header::HeaderValue::from_str(&format!("Bearer {}", t.trim()))
                .map_err(|_| {
                    ClientError::Other("the token holds characters a header cannot".into())
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
            .map_err(|e| ClientError::Other(e.to_string()))?;
        Ok(Client {
            urls,
            http,
            preferred: AtomicUsize::new(0),
        })
    }

    /// The same credentials, aimed at one other peer.
    pub fn at(&self, url: &str) -> Client {
        Client {
            urls: vec![url.trim_end_matches('/').to_string()],
            http: self.http.clone(),
            preferred: AtomicUsize::new(0),
        }
    }

    pub fn urls(&self) -> &[String] {
        &self.urls
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.call(Method::GET, path, None::<&()>).await
    }

    pub async fn put<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        self.call(Method::PUT, path, Some(body)).await
    }

    pub async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        self.call(Method::POST, path, Some(body)).await
    }

    pub async fn delete<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        self.call(Method::DELETE, path, None::<&()>).await
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
            .map_err(|e| ClientError::Other(format!("unreadable answer from {url}: {e}")))
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
            let chunk = chunk.map_err(|e| ClientError::Other(format!("the stream broke: {e}")))?;
            out.write_all(&chunk)
                .and_then(|()| out.flush())
                .map_err(|e| ClientError::Other(e.to_string()))?;
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

    /// The failover loop: tries the URLs starting with the one that answered last,
    /// moving on after a connection error or a 503; returns the first success.
    async fn send<B: Serialize>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
        timeout: Option<Duration>,
    ) -> Result<(String, reqwest::Response), ClientError> {
        let start = self.preferred.load(Ordering::Relaxed);
        let mut failures = Vec::new();
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
            let resp = match req.send().await {
                Ok(r) => r,
                Err(e) if e.is_connect() => {
                    failures.push(format!("{}: {}", self.urls[i], root_cause(&e)));
                    continue;
                }
                Err(e) => {
                    return Err(ClientError::Unreachable(format!(
                        "{url}: {}",
                        root_cause(&e)
                    )))
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
            if status == StatusCode::SERVICE_UNAVAILABLE && k + 1 < self.urls.len() {
                failures.push(format!("{}: {}", self.urls[i], error.message));
                continue;
            }
            return Err(ClientError::Api { status, error });
        }
        Err(ClientError::Unreachable(failures.join("; ")))
    }
}

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
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
