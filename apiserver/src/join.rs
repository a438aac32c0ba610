//! Joining an existing cluster at start-up (`orion server --join URL`).

use std::time::Duration;

use orion_api::{ErrorBody, PeerIdentity};
use orion_raft::RaftNode;
use tracing::{info, warn};

use crate::{Error, Result};

/// Asks the members at `urls` to add `me`, retrying with backoff while the cluster
/// is unreachable or has no leader. A refusal (such as a reused id) is final. Done as
/// soon as this peer sees itself as a voter, even if the answer to its request was lost.
pub async fn join(
    http: &reqwest::Client,
    node: &RaftNode,
    urls: &[String],
    me: &PeerIdentity,
) -> Result<()> {
    let mut backoff = Duration::from_millis(200);
    loop {
        for url in urls {
            if node.status().voters.contains(&me.id) {
                info!("joined the cluster (found this peer among the voters)");
                return Ok(());
            }
            let endpoint = format!("{}/v1/cluster/members", url.trim_end_matches('/'));
            let sent = http
                .post(&endpoint)
                .timeout(Duration::from_secs(300))
                .json(me)
                .send()
                .await;
            match sent {
                Ok(resp) if resp.status().is_success() => {
                    info!(via = %url, "joined the cluster");
                    return Ok(());
                }
                Ok(resp) if resp.status().is_client_error() => {
                    let status = resp.status();
                    let reason = resp
                        .json::<ErrorBody>()
                        .await
                        .map(|b| b.error.message)
                        .unwrap_or_else(|e| format!("unreadable answer: {e}"));
                    return Err(Error::Join(format!("{url} refused ({status}): {reason}")));
                }
                Ok(resp) => {
                    warn!(via = %url, status = %resp.status(), "join not accepted yet; retrying")
                }
                Err(e) => {
                    warn!(via = %url, cause = %e, "cannot reach the cluster to join; retrying")
                }
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}
