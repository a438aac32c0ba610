//! SIGSTOP of a random peer or of the leader; [`super::Faults::heal`] sends
//! SIGCONT. A paused leader keeps its sockets open and comes back believing it
//! still leads: the classic test of leases and stale leaders.

use rand::rngs::StdRng;

use super::{target, Faults};
use crate::cluster::Cluster;
use crate::register::Recorder;

pub async fn apply(
    faults: &mut Faults,
    cluster: &Cluster,
    rec: &Recorder,
    rng: &mut StdRng,
) -> anyhow::Result<()> {
    let (slot, leader) = target(cluster, rng).await;
    let Some((id, Some(pid))) = cluster.peer(slot).map(|p| (p.id, p.pid())) else {
        return Ok(());
    };
    faults.pause(pid)?;
    let who = if leader { "the leader, " } else { "" };
    faults.started(rec, format!("pause {who}peer {id} (host {slot})"));
    Ok(())
}
