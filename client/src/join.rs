//! Getting credentials from a cluster: check its CA against a token's fingerprint,
//! trade the token and a CSR for a certificate, and renew it later. The private key
//! is made here and never leaves the machine.

use std::time::Duration;

use orion_api::security::{IssuedCert, JoinCertRequest, RenewRequest};
use orion_api::{AgentBootstrap, ErrorBody};

use orion_tls::{cert, config, token, Credentials, LiveCert};

use crate::{ClientError, Result};

fn http(tls: rustls::ClientConfig) -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| ClientError::Invalid(format!("http client: {e}")))
}

async fn error_text(resp: reqwest::Response) -> String {
    let status = resp.status();
    let reason = resp
        .json::<ErrorBody>()
        .await
        .map(|b| b.error.message)
        .unwrap_or_default();
    format!("{status}: {reason}")
}

/// Fetches the CA from the first of `urls` that answers and checks it against
/// the token's fingerprint. A CA that does not match is an error at once.
pub async fn fetch_ca(urls: &[String], tok: &str) -> Result<String> {
    let claims = token::peek(tok).map_err(|e| {
        ClientError::Invalid(format!(
            "{e} (copy the whole token, starting with \"orion.\")"
        ))
    })?;
    let insecure = http(config::insecure_client_config()?)?;
    let mut failures = Vec::new();
    for url in urls {
        let url = url.trim_end_matches('/');
        if !url.starts_with("https://") {
            failures.push(format!("{url}: the API is served over HTTPS; use https://"));
            continue;
        }
        let resp = match insecure.get(format!("{url}/v1/cluster/ca")).send().await {
            Ok(r) if r.status().is_success() => r,
            Ok(r) => {
                failures.push(format!("{url}: {}", error_text(r).await));
                continue;
            }
            Err(e) => {
                failures.push(format!("{url}: {e}"));
                continue;
            }
        };
        let boot: AgentBootstrap = match resp.json().await {
            Ok(b) => b,
            Err(e) => {
                failures.push(format!("{url}: unreadable answer: {e}"));
                continue;
            }
        };
        let got = cert::fingerprint(&boot.ca_pem)?;
        if got != claims.ca {
            return Err(ClientError::Refused(format!(
                "{url} presents a CA with fingerprint {got}, but the token was made for CA {}: \
                 refusing to trust it",
                claims.ca
            )));
        }
        return Ok(boot.ca_pem);
    }
    Err(ClientError::Unreachable(format!(
        "could not fetch the cluster CA: {}",
        failures.join("; ")
    )))
}

/// Trades a join token for credentials naming `name` (a peer id or node name).
/// A refusal (used, expired, revoked token) is an error at once; unreachable
/// peers are tried in turn.
pub async fn exchange(
    urls: &[String],
    tok: &str,
    name: &str,
    hosts: &[String],
) -> Result<Credentials> {
    let ca_pem = fetch_ca(urls, tok).await?;
    let trusted = http(config::client_config(&ca_pem, None)?)?;
    let (key_pem, csr) = cert::new_csr()?;
    let req = JoinCertRequest {
        token: tok.trim().to_string(),
        csr,
        name: name.to_string(),
        hosts: hosts.to_vec(),
    };
    let mut failures = Vec::new();
    for url in urls {
        let url = url.trim_end_matches('/');
        let resp = match trusted
            .post(format!("{url}/v1/join"))
            .json(&req)
            .send()
            .await
        {
            Ok(r) => r,
            Err(e) => {
                failures.push(format!("{url}: {e}"));
                continue;
            }
        };
        if resp.status().is_client_error() {
            return Err(ClientError::Refused(format!(
                "{url} refused the join token: {}",
                error_text(resp).await
            )));
        }
        if !resp.status().is_success() {
            failures.push(format!("{url}: {}", error_text(resp).await));
            continue;
        }
        let issued: IssuedCert = resp
            .json()
            .await
            .map_err(|e| ClientError::Unreadable(format!("{url}: unreadable certificate: {e}")))?;
        return Ok(Credentials {
            ca_pem: issued.ca_pem,
            cert_pem: issued.cert_pem,
            key_pem,
        });
    }
    Err(ClientError::Unreachable(format!(
        "no peer issued a certificate: {}",
        failures.join("; ")
    )))
}

/// Renews `live` through the API of any of `urls`, authenticating with the
/// current certificate; returns the new credentials (not yet saved).
pub async fn renew(
    urls: &[String],
    ca_pem: &str,
    live: &std::sync::Arc<LiveCert>,
) -> Result<Credentials> {
    let client = http(config::client_config(ca_pem, Some(live.clone()))?)?;
    let (key_pem, csr) = cert::new_csr()?;
    let req = RenewRequest {
        csr,
        hosts: Vec::new(),
    };
    let mut failures = Vec::new();
    for url in urls {
        let url = url.trim_end_matches('/');
        match client
            .post(format!("{url}/v1/certificates/renew"))
            .json(&req)
            .send()
            .await
        {
            Ok(r) if r.status().is_success() => {
                let issued: IssuedCert = r.json().await.map_err(|e| {
                    ClientError::Unreadable(format!("{url}: unreadable certificate: {e}"))
                })?;
                return Ok(Credentials {
                    ca_pem: issued.ca_pem,
                    cert_pem: issued.cert_pem,
                    key_pem,
                });
            }
            Ok(r) => failures.push(format!("{url}: {}", error_text(r).await)),
            Err(e) => failures.push(format!("{url}: {e}")),
        }
    }
    Err(ClientError::Unreachable(format!(
        "renewal failed: {}",
        failures.join("; ")
    )))
}
