//! The one client stack both systems are measured with: reqwest over rustls (the
//! cluster CA, TLS 1.3, HTTP/1.1, one pooled connection per client, built by
//! [`orion_client::http_builder`]), JSON bodies. Orion is spoken to through
//! `orion-client`'s typed calls, one attempt at one member (no failover, no retry:
//! the bench measures what one request does); etcd through its v3 JSON gateway
//! (`/v3/kv/put`, `/v3/kv/range`, base64 keys and values) on the same TLS port.

use std::time::Duration;

use anyhow::Context;
use base64::Engine;
use orion_client::{Consistency, WriteRetry};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum System {
    Orion,
    Etcd,
}

impl System {
    pub fn name(self) -> &'static str {
        match self {
            System::Orion => "orion",
            System::Etcd => "etcd",
        }
    }
}

/// How a read is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadMode {
    /// Orion's default read; etcd's default (linearizable) range.
    Linearizable,
    /// Orion's `?stale=true`; etcd's `serializable` range.
    Stale,
}

/// A client of one cluster: the shared HTTP client and the members' URLs.
#[derive(Clone)]
pub struct Kv {
    pub system: System,
    pub http: reqwest::Client,
    pub urls: Vec<String>,
}

/// The same builder for both systems: trusts only `ca_pem`, sends `token` if given.
pub fn http_client(
    ca_pem: &str,
    token: Option<&str>,
    clients: usize,
) -> anyhow::Result<reqwest::Client> {
    orion_client::http_builder(ca_pem, token)
        .context("client TLS config")?
        .pool_max_idle_per_host(clients)
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(10))
        .build()
        .context("http client")
}

fn b64(s: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// A value of `size` bytes, the same for both systems.
pub fn value_of(size: usize) -> String {
    "x".repeat(size)
}

impl Kv {
    /// Writes `value` at `key` through member `member`; `Ok` only when acknowledged.
    pub async fn put(
        &self,
        member: usize,
        key: &str,
        value: &str,
        timeout: Option<Duration>,
    ) -> anyhow::Result<()> {
        let url = self.url(member)?;
        let req = match self.system {
            System::Orion => {
                let body = orion_api::PutVariable {
                    value: value.to_string(),
                    expected_revision: None,
                    secret: false,
                };
                self.orion(url, timeout)?.put_variable(key, &body).await?;
                return Ok(());
            }
            System::Etcd => self.http.post(format!("{url}/v3/kv/put")).json(
                &serde_json::json!({ "key": b64(key.as_bytes()), "value": b64(value.as_bytes()) }),
            ),
        };
        send(req, timeout).await
    }

    /// Reads `key` through member `member`.
    pub async fn get(
        &self,
        member: usize,
        key: &str,
        mode: ReadMode,
        timeout: Option<Duration>,
    ) -> anyhow::Result<()> {
        let url = self.url(member)?;
        let req = match (self.system, mode) {
            (System::Orion, mode) => {
                let consistency = match mode {
                    ReadMode::Linearizable => Consistency::Linearizable,
                    ReadMode::Stale => Consistency::Stale,
                };
                self.orion(url, timeout)?.variable(key, consistency).await?;
                return Ok(());
            }
            (System::Etcd, mode) => {
                self.http
                    .post(format!("{url}/v3/kv/range"))
                    .json(&serde_json::json!({
                        "key": b64(key.as_bytes()),
                        "serializable": mode == ReadMode::Stale,
                    }))
            }
        };
        send(req, timeout).await
    }

    /// The Raft term member `member` is in: Orion's `GET /v1/cluster/status`,
    /// etcd's `POST /v3/maintenance/status` (its header's `raft_term`). Every
    /// election, won or not, raises it.
    pub async fn term(&self, member: usize) -> anyhow::Result<u64> {
        let url = self.url(member)?;
        match self.system {
            System::Orion => Ok(self.orion(url, None)?.status().await?.term),
            System::Etcd => {
                let resp = self
                    .http
                    .post(format!("{url}/v3/maintenance/status"))
                    .json(&serde_json::json!({}))
                    .send()
                    .await?
                    .error_for_status()?;
                let v: serde_json::Value = resp.json().await?;
                let term = &v["header"]["raft_term"];
                term.as_u64()
                    .or_else(|| term.as_str().and_then(|t| t.parse().ok()))
                    .with_context(|| format!("no raft_term in etcd's status answer: {v}"))
            }
        }
    }

    /// An Orion client of member `url` over the shared HTTP client: one attempt,
    /// no failover, no retry, within `timeout` if given.
    fn orion(&self, url: &str, timeout: Option<Duration>) -> anyhow::Result<orion_client::Client> {
        let mut b = orion_client::Client::builder(&[url.to_string()])
            .http(self.http.clone())
            .write_retry(WriteRetry::Never);
        if let Some(t) = timeout {
            b = b.timeout(t);
        }
        Ok(b.build()?)
    }

    fn url(&self, member: usize) -> anyhow::Result<&str> {
        self.urls
            .get(member)
            .map(String::as_str)
            .with_context(|| format!("no member {member} (the cluster has {})", self.urls.len()))
    }
}

async fn send(mut req: reqwest::RequestBuilder, timeout: Option<Duration>) -> anyhow::Result<()> {
    if let Some(t) = timeout {
        req = req.timeout(t);
    }
    let resp = req.send().await?;
    let status = resp.status();
    // Read the whole body, as a real client would.
    let body = resp.bytes().await?;
    if !status.is_success() {
        let text = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
        anyhow::bail!("{status}: {text}");
    }
    Ok(())
}
