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
            tasks.spawn(finish_bootstrap(cluster.clone(), term.clone()));
            tasks.close();
            info!("became leader: controllers started");
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

/// On the bootstrapping peer: records the CA and mints the admin token, retrying
/// through this term until done.
async fn finish_bootstrap(cluster: ClusterRef, term: CancellationToken) {
    let file = crate::security::bootstrap_file(&cluster.data_dir);
    while file.exists() && !term.is_cancelled() {
        crate::security::finish_bootstrap(&cluster, &cluster.data_dir).await;
        tokio::select! {
            () = term.cancelled() => return,
            () = tokio::time::sleep(std::time::Duration::from_millis(200)) => {}
        }
    }
}
