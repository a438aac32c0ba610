//! Joining an existing cluster at start-up (`orion server --join URL`).

use std::time::Duration;

use orion_api::PeerIdentity;
use orion_client::ClientError;
use orion_raft::RaftNode;
use tracing::{debug, info, warn};

use crate::error::{Error, Result};

/// Asks the members behind `client` (this peer's certificate is the credential)
/// to add `me`, retrying with backoff while the cluster is unreachable or has no
/// leader. A refusal (such as a reused id) is final. Done as soon as this peer sees
/// itself as a voter, even if the answer to its request was lost.
pub async fn join(client: &orion_client::Client, node: &RaftNode, me: &PeerIdentity) -> Result<()> {
    let mut backoff = Duration::from_millis(200);
    let mut warned = false;
    loop {
        if node.status().voters.contains(&me.id) {
            info!("joined the cluster (found this peer among the voters)");
            return Ok(());
        }
        match client.add_member(me).await {
            Ok(_) => {
                info!(via = ?client.urls(), "joined the cluster");
                return Ok(());
            }
            Err(ClientError::Api { status, error }) if status.is_client_error() => {
                return Err(Error::Join(format!(
                    "the cluster refused ({status}): {}",
                    error.message
                )));
            }
            Err(e) if !warned => {
                warn!(via = ?client.urls(), cause = %e, "cannot join the cluster yet; retrying");
                warned = true;
            }
            Err(e) => debug!(via = ?client.urls(), cause = %e, "cannot join the cluster yet"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}
