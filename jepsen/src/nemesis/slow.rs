//! Slow, lossy links. This kernel has no `netem` qdisc (`CONFIG_NET_SCH_NETEM`
//! is off), so delay comes from a token bucket (`tc … tbf`): a host's outgoing
//! traffic is held to a low rate, and what exceeds it queues for up to
//! `latency` before being dropped — latency that grows with load, as on a
//! congested link. Loss is an nftables rule dropping a random share of the
//! host's outgoing packets (`numgen random`).

use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::Rng;

use super::Faults;
use crate::cluster::Cluster;
use crate::hosts::{Host, Net};
use crate::register::Recorder;

/// Holds `host`'s outgoing traffic to `rate_kbit` with up to `latency_ms` of
/// queueing, and drops `loss_pct` percent of its packets.
pub fn slow(
    faults: &mut Faults,
    net: &Net,
    host: &Host,
    rate_kbit: u32,
    latency_ms: u32,
    loss_pct: u32,
) -> anyhow::Result<()> {
    if !faults.slowed.insert(host.ns.clone()) {
        return Ok(());
    }
    net.in_ns(
        &host.ns,
        "tc",
        &[
            "qdisc",
            "add",
            "dev",
            "eth0",
            "root",
            "tbf",
            "rate",
            &format!("{rate_kbit}kbit"),
            "burst",
            "16kbit",
            "latency",
            &format!("{latency_ms}ms"),
        ],
    )?;
    if loss_pct > 0 {
        net.in_ns(&host.ns, "nft", &["add", "table", "inet", "jepsen"])?;
        net.in_ns(
            &host.ns,
            "nft",
            &[
                "add",
                "chain",
                "inet",
                "jepsen",
                "out",
                "{ type filter hook output priority 0; }",
            ],
        )?;
        net.in_ns(
            &host.ns,
            "nft",
            &[
                "add",
                "rule",
                "inet",
                "jepsen",
                "out",
                "numgen",
                "random",
                "mod",
                "100",
                "<",
                &loss_pct.to_string(),
                "drop",
            ],
        )?;
    }
    Ok(())
}

/// Undoes [`slow`] on the host of namespace `ns`.
pub fn heal(net: &Net, ns: &str) -> anyhow::Result<()> {
    let qdisc = net.in_ns(ns, "tc", &["qdisc", "del", "dev", "eth0", "root"]);
    // The table exists only when there was loss.
    let _ = net.in_ns(ns, "nft", &["delete", "table", "inet", "jepsen"]);
    qdisc.map(|_| ())
}

/// Slows one or all peers' links by a random amount.
pub fn apply(
    faults: &mut Faults,
    net: &Net,
    cluster: &Cluster,
    rec: &Recorder,
    rng: &mut StdRng,
) -> anyhow::Result<()> {
    let rate = *[256u32, 512, 1024, 4096].choose(rng).unwrap_or(&1024);
    let latency = *[50u32, 200, 500].choose(rng).unwrap_or(&200);
    let loss = *[0u32, 1, 5, 10].choose(rng).unwrap_or(&1);
    let hosts: Vec<&Host> = if rng.random_bool(0.5) {
        cluster.peers.iter().map(|p| &p.host).collect()
    } else {
        cluster
            .peers
            .choose(rng)
            .map(|p| vec![&p.host])
            .unwrap_or_default()
    };
    for h in &hosts {
        slow(faults, net, h, rate, latency, loss)?;
    }
    let which: Vec<String> = hosts.iter().map(|h| h.index.to_string()).collect();
    faults.started(
        rec,
        format!(
            "slow links: {rate} kbit/s, up to {latency} ms queued, {loss}% loss, from [{}]",
            which.join(" ")
        ),
    );
    Ok(())
}
