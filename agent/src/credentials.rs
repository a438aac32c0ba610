//! The agent's certificate: loaded from `<data-dir>/tls`, or traded once for a join
//! token (the token carries the CA fingerprint, so the cluster is verified before it
//! is trusted), then renewed two thirds into its life without a restart. The
//! exchanges themselves are `orion_client::join`.

use std::path::Path;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::error::SessionError;
use crate::retry::{self, Faults};

/// How long a failed renewal waits before it is tried again.
const RENEW_RETRY: Duration = Duration::from_secs(10);

/// Loads the credentials in `dir`, or trades `token` for them. The cluster may still
/// be starting: it retries until the cluster answers, but gives up at once on a
/// refusal (a used, expired or revoked token).
pub(crate) async fn load_or_join(
    dir: &Path,
    servers: &[String],
    node: &str,
    token: Option<&str>,
) -> Result<orion_tls::Credentials, SessionError> {
    let tls = |source| SessionError::Credentials {
        dir: dir.to_owned(),
        source,
    };
    if let Some(c) = orion_tls::Credentials::load(dir).map_err(tls)? {
        return Ok(c);
    }
    let Some(token) = token else {
        return Err(SessionError::NoCredentials {
            dir: dir.to_owned(),
        });
    };
    let mut delays = retry::delays();
    let mut faults = Faults::default();
    let never = CancellationToken::new();
    loop {
        match orion_client::join::exchange(servers, token, node, &[]).await {
            Ok(c) => {
                c.save(dir).map_err(tls)?;
                info!(%node, "joined the cluster with the token");
                return Ok(c);
            }
            Err(e @ orion_client::ClientError::Refused(_)) => {
                return Err(SessionError::JoinRefused(e))
            }
            Err(e) => {
                faults.report("cannot join the cluster yet", &servers.join(","), &e);
                // The caller's shutdown ends this future.
                retry::pause(&mut delays, &never).await;
            }
        }
    }
}

/// Renews the agent certificate two thirds into its life, in place, until `shutdown`.
pub(crate) async fn renew_loop(
    dir: std::path::PathBuf,
    servers: Vec<String>,
    ca_pem: String,
    live: std::sync::Arc<orion_tls::LiveCert>,
    shutdown: CancellationToken,
) {
    loop {
        let wait = orion_tls::cert::until_renewal(&live.cert_pem());
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
        }
        let renewed = orion_client::join::renew(&servers, &ca_pem, &live).await;
        let saved = renewed.and_then(|c| {
            c.save(&dir)?;
            Ok(live.replace(&c.cert_pem, &c.key_pem)?)
        });
        match saved {
            Ok(()) => info!("renewed the agent certificate"),
            Err(e) => {
                warn!(cause = %e, "could not renew the agent certificate; retrying in {RENEW_RETRY:?}");
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(RENEW_RETRY) => {}
                }
            }
        }
    }
}
