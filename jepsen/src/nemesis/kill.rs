//! kill -9 of a random peer or of the leader; [`super::Faults::heal`] restarts it
//! on its data.

use rand::rngs::StdRng;

use super::{target, Faults};
use crate::cluster::Cluster;
use crate::register::Recorder;

pub async fn apply(
    faults: &mut Faults,
    cluster: &mut Cluster,
    rec: &Recorder,
    rng: &mut StdRng,
) -> anyhow::Result<()> {
    let (slot, leader) = target(cluster, rng).await;
    let id = cluster.peer(slot).map_or(0, |p| p.id);
    cluster.kill(slot);
    faults.killed.insert(slot);
    let who = if leader { "the leader, " } else { "" };
    faults.started(rec, format!("kill -9 {who}peer {id} (host {slot})"));
    Ok(())
}
