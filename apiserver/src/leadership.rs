//! Leader-only work: started when this peer becomes leader, stopped — all of it,
//! before anything else — when it stops being leader or the peer shuts down.

use std::sync::Arc;
use std::time::Duration;

use orion_raft::RaftNode;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::info;

use crate::controllers;
use crate::controllers::replicas::Unplaced;
use crate::gateway::registry::AgentRegistry;
use crate::metrics::PeerMetrics;
use crate::security::Security;

/// What the leader-only work needs.
pub struct LeaderWork {
    pub node: RaftNode,
    /// Heartbeats, for the node controller.
    pub agents: Arc<AgentRegistry>,
    /// Where the replica controller says what it cannot place.
    pub unplaced: Arc<Unplaced>,
    /// How long an agent may stay silent before its node is marked down.
    pub node_ttl: Duration,
    /// Finishing a bootstrap: recording the CA, minting the admin token.
    pub security: Arc<Security>,
    /// The scheduler's latency.
    pub metrics: Arc<PeerMetrics>,
    /// This peer's data directory: where a forced new cluster left the ids to retire.
    pub data_dir: std::path::PathBuf,
}

impl LeaderWork {
    /// Watches leadership until `shutdown`; runs the controllers during each term
    /// led, and returns only once they have stopped.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut metrics = self.node.raft.metrics();
        loop {
            if self.node.is_leader() {
                let term = shutdown.child_token();
                let tasks = TaskTracker::new();
                tasks.spawn(controllers::replicas::run(
                    self.node.clone(),
                    self.agents.clone(),
                    self.unplaced.clone(),
                    self.metrics.clone(),
                    term.clone(),
                ));
                let unplaced = self.unplaced.clone();
                tasks.spawn(controllers::rollout::run(
                    self.node.clone(),
                    self.agents.clone(),
                    Arc::new(move || unplaced.get()),
                    term.clone(),
                ));
                tasks.spawn(controllers::hooks::run(
                    self.node.clone(),
                    self.agents.clone(),
                    term.clone(),
                ));
                tasks.spawn(controllers::variables::run(self.node.clone(), term.clone()));
                tasks.spawn(controllers::nodes::run(
                    self.node.clone(),
                    self.agents.clone(),
                    self.node_ttl,
                    term.clone(),
                ));
                tasks.spawn(controllers::jobs::run(
                    self.node.clone(),
                    self.agents.clone(),
                    term.clone(),
                ));
                tasks.spawn(finish_bootstrap(self.security.clone(), term.clone()));
                tasks.spawn(crate::recovery::finish_force_new_cluster(
                    self.node.clone(),
                    self.data_dir.clone(),
                    term.clone(),
                ));
                tasks.close();
                info!("became leader: controllers started");
                while self.node.is_leader() && !shutdown.is_cancelled() {
                    tokio::select! {
                        () = shutdown.cancelled() => {}
                        changed = metrics.changed() => if changed.is_err() { break },
                    }
                }
                term.cancel();
                tasks.wait().await;
                info!("controllers stopped");
            }
            if shutdown.is_cancelled() {
                return;
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                changed = metrics.changed() => if changed.is_err() { return },
            }
        }
    }
}

/// On the bootstrapping peer: records the CA and mints the admin token, retrying
/// through this term until done.
async fn finish_bootstrap(security: Arc<Security>, term: CancellationToken) {
    while security.bootstrap_pending() && !term.is_cancelled() {
        security.finish_bootstrap().await;
        tokio::select! {
            () = term.cancelled() => return,
            () = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
    }
}
