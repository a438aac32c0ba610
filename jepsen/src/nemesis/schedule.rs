//! The schedule: until the time limit, pick a fault kind at random (seeded),
//! apply it, sometimes put a second one of another kind on top, hold them for
//! two to six seconds, heal, and rest a moment. Membership changes run alone on
//! a settled cluster. Everything is healed when the schedule ends.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use tokio::time::Instant;

use super::{clock, kill, membership, partition, pause, slow, Faults, Kind};
use crate::cluster::Cluster;
use crate::hosts::{Host, Net};
use crate::register::Recorder;

pub struct Plan {
    pub kinds: Vec<Kind>,
    pub seed: u64,
    /// Agent hosts, which partitions may cut off too.
    pub agents: Vec<Host>,
}

async fn one(
    kind: Kind,
    faults: &mut Faults,
    net: &Net,
    cluster: &mut Cluster,
    plan: &Plan,
    rec: &Recorder,
    rng: &mut StdRng,
) -> anyhow::Result<()> {
    match kind {
        Kind::Partition => {
            let shapes = partition::shapes(cluster.peers.len(), plan.agents.len());
            let shape = *shapes.choose(rng).unwrap_or(&partition::Shape::Leader);
            partition::apply(faults, net, cluster, &plan.agents, rec, rng, shape).await
        }
        Kind::Slow => slow::apply(faults, net, cluster, rec, rng),
        Kind::Kill => kill::apply(faults, cluster, rec, rng).await,
        Kind::Pause => pause::apply(faults, cluster, rec, rng).await,
        Kind::Clock => clock::apply(faults, cluster, rec, rng),
        Kind::Membership => {
            cluster.settled(Duration::from_secs(60)).await?;
            membership::apply(faults, net, cluster, rec, rng).await
        }
    }
}

/// Runs faults until `until`, then heals everything.
pub async fn run(
    net: &Net,
    cluster: &mut Cluster,
    rec: &Recorder,
    plan: &Plan,
    until: Instant,
    faults: &mut Faults,
) -> anyhow::Result<()> {
    let mut rng = StdRng::seed_from_u64(plan.seed);
    let outcome = async {
        while Instant::now() + Duration::from_secs(7) < until && !plan.kinds.is_empty() {
            tokio::time::sleep(Duration::from_millis(rng.random_range(500..2000))).await;
            let Some(&kind) = plan.kinds.choose(&mut rng) else {
                break;
            };
            one(kind, faults, net, cluster, plan, rec, &mut rng).await?;
            if kind == Kind::Membership {
                continue;
            }
            let extras: Vec<Kind> = plan
                .kinds
                .iter()
                .copied()
                .filter(|k| *k != kind && *k != Kind::Membership)
                .collect();
            if rng.random_bool(0.3) {
                if let Some(&extra) = extras.choose(&mut rng) {
                    one(extra, faults, net, cluster, plan, rec, &mut rng).await?;
                }
            }
            tokio::time::sleep(Duration::from_millis(rng.random_range(2000..6000))).await;
            faults.heal(net, cluster, rec)?;
        }
        anyhow::Ok(())
    }
    .await;
    let healed = faults.heal(net, cluster, rec);
    let left = until.saturating_duration_since(Instant::now());
    tokio::time::sleep(left).await;
    outcome.and(healed)
}
