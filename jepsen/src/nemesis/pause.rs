//! SIGSTOP of a random peer or of the leader; [`super::Faults::heal`] sends
//! SIGCONT. A paused leader keeps its sockets open and comes back believing it
//! still leads: the classic test of leases and stale leaders.

use rand::rngs::StdRng;
use rand::Rng;

use super::Faults;
use crate::cluster::Cluster;
use crate::register::Recorder;

pub async fn apply(
    faults: &mut Faults,
    cluster: &Cluster,
    rec: &Recorder,
    rng: &mut StdRng,
) -> anyhow::Result<()> {
    let leader = if rng.random_bool(0.5) {
        cluster.leader_slot().await
    } else {
        None
    };
    let slot = leader.unwrap_or_else(|| 1 + rng.random_range(0..cluster.peers.len()));
    let Some(peer) = cluster.peer(slot) else {
        return Ok(());
    };
    let Some(pid) = peer.pid() else {
        return Ok(());
    };
    faults.pause(pid)?;
    let who = if leader.is_some() { "the leader, " } else { "" };
    faults.started(rec, format!("pause {who}peer {} (host {slot})", peer.id));
    Ok(())
}
