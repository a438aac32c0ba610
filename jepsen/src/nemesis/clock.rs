//! Clock skew: every peer runs under libfaketime (see `cluster.rs`) reading its
//! wall-clock offset from a file; this rewrites it. Only the wall clock moves
//! (`FAKETIME_DONT_FAKE_MONOTONIC`), as when NTP is wrong or a VM resumes: Raft
//! timers run on the monotonic clock, while token expiry, certificate validity
//! and log timestamps follow the wall clock. Offsets stay within the five
//! minutes certificates are backdated by, so TLS keeps working, as it would on a
//! machine whose clock is off by a minute.

use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::Rng;

use super::Faults;
use crate::cluster::{self, Cluster};
use crate::register::Recorder;

/// Skews one peer's wall clock by a random offset.
pub fn apply(
    faults: &mut Faults,
    cluster: &Cluster,
    rec: &Recorder,
    rng: &mut StdRng,
) -> anyhow::Result<()> {
    if !cluster::faketime_available() {
        anyhow::bail!("clock skew needs libfaketime (apt-get install faketime)");
    }
    let slot = 1 + rng.random_range(0..cluster.peers.len());
    let offset = *[-120i64, -30, -2, 2, 30, 120].choose(rng).unwrap_or(&30);
    let Some(peer) = cluster.peer(slot) else {
        return Ok(());
    };
    std::fs::write(peer.clock_file(), format!("{offset:+}s\n"))?;
    faults.skewed.insert(slot);
    faults.started(
        rec,
        format!("clock of peer {} (host {slot}) {offset:+}s", peer.id),
    );
    Ok(())
}

/// Puts `slot`'s clock back.
pub fn reset(cluster: &Cluster, slot: usize) -> anyhow::Result<()> {
    if let Some(p) = cluster.peer(slot) {
        std::fs::write(p.clock_file(), "+0\n")?;
    }
    Ok(())
}
