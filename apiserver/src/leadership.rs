//! Leader-only work: started when this peer becomes leader, stopped — all of it,
//! before anything else — when it stops being leader or the peer shuts down.

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::info;

use crate::controllers;
use crate::leader::ClusterRef;

/// Watches leadership until `shutdown`; runs the controllers during each term led.
pub async fn run(cluster: ClusterRef, shutdown: CancellationToken) {
    let mut metrics = cluster.node.raft.metrics();
    loop {
        if cluster.node.is_leader() {
            let term = shutdown.child_token();
            let tasks = TaskTracker::new();
            tasks.spawn(controllers::replicas::run(cluster.clone(), term.clone()));
            tasks.spawn(controllers::nodes::run(cluster.clone(), term.clone()));
            tasks.close();
            info!("became leader: controllers started");
            ensure_cluster_ca(&cluster).await;
            while cluster.node.is_leader() && !shutdown.is_cancelled() {
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

/// Creates the cluster CA the first time a leader finds none.
async fn ensure_cluster_ca(cluster: &ClusterRef) {
    if matches!(
        cluster.node.reader.with_view(orion_raft::read::cluster_ca),
        Ok(Some(_))
    ) {
        return;
    }
    match crate::pki::generate_ca() {
        Ok((cert_pem, key_pem)) => {
            let cmd = orion_raft::Command::SetClusterCa { cert_pem, key_pem };
            if let Err(e) = cluster.node.propose(cmd).await {
                tracing::warn!(cause = %e, "could not record the cluster CA; the next leader will try");
            } else {
                info!("created the cluster CA");
            }
        }
        Err(e) => tracing::warn!(cause = %e, "could not create the cluster CA"),
    }
}
