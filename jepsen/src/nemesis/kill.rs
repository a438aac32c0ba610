//! kill -9 of a random peer or of the leader; [`super::Faults::heal`] restarts it
//! on its data.

use rand::rngs::StdRng;
use rand::Rng;

use super::Faults;
use crate::cluster::Cluster;
use crate::register::Recorder;

/// Kills the leader (half the time) or a random peer.
pub async fn apply(
    faults: &mut Faults,
    cluster: &mut Cluster,
    rec: &Recorder,
    rng: &mut StdRng,
) -> anyhow::Result<()> {
    let leader = if rng.random_bool(0.5) {
        cluster.leader_slot().await
    } else {
        None
    };
    let slot = leader.unwrap_or_else(|| 1 + rng.random_range(0..cluster.peers.len()));
    let id = cluster.peer(slot).map_or(0, |p| p.id);
    cluster.kill(slot);
    faults.killed.insert(slot);
    let who = if leader.is_some() { "the leader, " } else { "" };
    faults.started(rec, format!("kill -9 {who}peer {id} (host {slot})"));
    Ok(())
}
