//! Network partitions: for every cut pair of hosts, an nftables rule in each
//! one's namespace silently dropping what arrives from the other, as a real
//! partition does (connections hang and time out; nothing is refused), while
//! both still reach the client namespace. Cuts need not be transitive: a
//! bridge or a ring leaves some peers talking to two sides that cannot talk to
//! each other.

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::Rng;

use super::Faults;
use crate::cluster::Cluster;
use crate::hosts::{Host, Net};
use crate::register::Recorder;

/// The nftables table holding a host's cuts.
const TABLE: &str = "jepsen_partition";

/// Which partition to make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// A random minority against the rest.
    Halves,
    /// The leader alone.
    Leader,
    /// Every peer sees only its ring neighbours: a different majority each (5+ peers).
    Ring,
    /// Two halves that cannot talk, and one peer that talks to both.
    Bridge,
    /// One agent cut off from every peer (the workload-convergence run).
    Agent,
}

/// The shapes that mean something for `peers` peers and `agents` agents.
pub fn shapes(peers: usize, agents: usize) -> Vec<Shape> {
    let mut s = vec![Shape::Halves, Shape::Leader, Shape::Bridge];
    if peers >= 5 {
        s.push(Shape::Ring);
    }
    if agents > 0 {
        s.push(Shape::Agent);
    }
    s
}

/// Cuts every link between `a` and `b`: each drops what comes from the other.
pub fn cut(faults: &mut Faults, net: &Net, a: &Host, b: &Host) -> anyhow::Result<()> {
    for (at, from) in [(a, b), (b, a)] {
        if faults.partitioned.insert(at.ns.clone()) {
            net.in_ns(&at.ns, "nft", &["add", "table", "inet", TABLE])?;
            net.in_ns(
                &at.ns,
                "nft",
                &[
                    "add",
                    "chain",
                    "inet",
                    TABLE,
                    "in",
                    "{ type filter hook input priority 0; }",
                ],
            )?;
        }
        if faults.cuts.insert((at.ns.clone(), from.ip.clone())) {
            net.in_ns(
                &at.ns,
                "nft",
                &[
                    "add", "rule", "inet", TABLE, "in", "ip", "saddr", &from.ip, "drop",
                ],
            )?;
        }
    }
    Ok(())
}

/// Undoes every cut in the host of namespace `ns`.
pub fn heal(net: &Net, ns: &str) -> anyhow::Result<()> {
    net.in_ns(ns, "nft", &["delete", "table", "inet", TABLE])
        .map(|_| ())
}

/// Cuts every link between the `a` side and the `b` side.
pub fn sides(faults: &mut Faults, net: &Net, a: &[&Host], b: &[&Host]) -> anyhow::Result<()> {
    for x in a {
        for y in b {
            cut(faults, net, x, y)?;
        }
    }
    Ok(())
}

/// Makes a partition of `shape` among the peers (and, for `Agent`, one of
/// `agents`), and notes it in `faults`.
pub async fn apply(
    faults: &mut Faults,
    net: &Net,
    cluster: &Cluster,
    agents: &[Host],
    rec: &Recorder,
    rng: &mut StdRng,
    shape: Shape,
) -> anyhow::Result<()> {
    let mut peers: Vec<&Host> = cluster.peers.iter().map(|p| &p.host).collect();
    peers.shuffle(rng);
    let n = peers.len();
    let name = |hs: &[&Host]| {
        let v: Vec<String> = hs.iter().map(|h| h.index.to_string()).collect();
        format!("[{}]", v.join(" "))
    };
    let label = match shape {
        Shape::Halves => {
            let (a, b) = peers.split_at(n / 2);
            sides(faults, net, a, b)?;
            format!("partition halves {} | {}", name(a), name(b))
        }
        Shape::Leader => {
            let Some(slot) = cluster.leader_slot().await else {
                return Ok(());
            };
            let (a, b): (Vec<&Host>, Vec<&Host>) = peers.iter().partition(|h| h.index == slot);
            sides(faults, net, &a, &b)?;
            format!("partition leader {} | {}", name(&a), name(&b))
        }
        Shape::Ring => {
            let keep = (n / 4).max(1);
            let mut cuts = Vec::new();
            for i in 0..n {
                for j in i + 1..n {
                    let d = (j - i).min(n - (j - i));
                    if d > keep {
                        cut(faults, net, peers[i], peers[j])?;
                        cuts.push(format!("{}-{}", peers[i].index, peers[j].index));
                    }
                }
            }
            format!("partition ring {} (cut {})", name(&peers), cuts.join(" "))
        }
        Shape::Bridge => {
            let bridge = peers[0];
            let rest = &peers[1..];
            let (a, b) = rest.split_at(rest.len() / 2);
            sides(faults, net, a, b)?;
            format!(
                "partition bridge {} | {} | {}",
                name(a),
                bridge.index,
                name(b)
            )
        }
        Shape::Agent => {
            let Some(agent) = agents.get(rng.random_range(0..agents.len().max(1))) else {
                return Ok(());
            };
            sides(faults, net, &[agent], &peers)?;
            format!("partition agent host {} from every peer", agent.index)
        }
    };
    faults.started(rec, label);
    Ok(())
}
