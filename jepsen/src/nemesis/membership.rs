//! Membership changes: remove a random peer (sometimes the leader) from the
//! cluster, wipe it, and add a fresh peer with a new id and an empty disk in its
//! place, as an operator replacing a machine would. The step is over when every
//! peer sees the new membership and one leader.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::Rng;

use super::Faults;
use crate::cluster::Cluster;
use crate::hosts::Net;
use crate::register::Recorder;

pub async fn apply(
    faults: &mut Faults,
    net: &Net,
    cluster: &mut Cluster,
    rec: &Recorder,
    rng: &mut StdRng,
) -> anyhow::Result<()> {
    let start = rec.now_ns();
    let n = cluster.peers.len();
    let slot = 1 + rng.random_range(0..n);
    // Go through another peer: the removed one stops answering.
    let via = 1 + (slot % n);
    let old = cluster.remove(slot, via).await?;
    let new = cluster.add_fresh(net, slot, via).await?;
    let label = format!("replace peer {old} by fresh peer {new} (host {slot})");
    super::log(&label);
    let settled = cluster.settled(Duration::from_secs(60)).await;
    faults.span(rec, label, start);
    settled.map(|_| ())
}
