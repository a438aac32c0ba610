//! What the control-plane scenarios share: services of real `sleep` processes
//! marked with the run's own environment variable, waits on what the leader's
//! agents report, the machine's own process table, and resident memory.
//!
//! Every replica process carries `ORION_BENCH_RUN=<marker>`; [`Marked`] kills
//! them all when dropped, since agents leave their replicas running when they
//! stop (also on an error or Ctrl-C of the run).

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context;
use orion_api::agent_proto::ReplicaState;
use orion_api::{ApplyRequest, NodeStatus, SourceFile};
use orion_client::{Client, Consistency};
use tokio::time::Instant;

/// The environment variable that marks a run's replica processes.
pub const MARK_VAR: &str = "ORION_BENCH_RUN";

/// The replica processes of one run; killed (SIGKILL) when dropped.
pub struct Marked {
    pub marker: String,
}

impl Marked {
    pub fn new(scenario: &str) -> Self {
        Marked {
            marker: format!("{scenario}-{}", std::process::id()),
        }
    }

    /// A service of `replicas` `sleep` processes carrying the marker, small enough
    /// that a hundred fit on one node.
    pub fn service(&self, name: &str, replicas: u32) -> String {
        format!(
            "kind: Service\nname: {name}\nreplicas: {replicas}\n\
             command: [sleep, '86400']\nenv: {{{MARK_VAR}: {}}}\n\
             resources: {{cpu: 10m, memory: 8Mi}}\n",
            self.marker
        )
    }

    /// The process ids in the machine's process table that carry the marker.
    pub fn pids(&self) -> Vec<u32> {
        let needle = format!("{MARK_VAR}={}", self.marker);
        let Ok(dir) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        dir.flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
            .filter(|pid| {
                std::fs::read(format!("/proc/{pid}/environ"))
                    .is_ok_and(|env| env.split(|b| *b == 0).any(|kv| kv == needle.as_bytes()))
            })
            .collect()
    }

    /// SIGKILLs every marked process.
    pub fn kill_all(&self) {
        kill9(&self.pids());
    }
}

impl Drop for Marked {
    fn drop(&mut self) {
        self.kill_all();
    }
}

/// SIGKILLs each of `pids` (gone ones are skipped).
pub fn kill9(pids: &[u32]) {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    for pid in pids {
        if let Ok(pid) = i32::try_from(*pid) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
}

/// Applies `texts` as one file each, in one request each.
pub async fn apply(client: &Client, texts: impl IntoIterator<Item = String>) -> anyhow::Result<()> {
    for (i, content) in texts.into_iter().enumerate() {
        client
            .apply(&ApplyRequest {
                files: vec![SourceFile {
                    name: format!("bench-{i}.yaml"),
                    content,
                }],
            })
            .await
            .context("apply")?;
    }
    Ok(())
}

/// How many replicas of `service` the leader's agents report running, by node.
pub async fn running_by_node(
    leader: &Client,
    service: &str,
) -> anyhow::Result<BTreeMap<String, usize>> {
    let list = leader.replicas(Consistency::Linearizable).await?;
    let mut by_node = BTreeMap::new();
    for r in list.items.iter().filter(|r| r.service == service) {
        let up = list
            .observed
            .get(&r.id())
            .is_some_and(|o| matches!(o.state, ReplicaState::Running | ReplicaState::Healthy));
        if up {
            *by_node.entry(r.node.clone()).or_insert(0) += 1;
        }
    }
    Ok(by_node)
}

/// Polls (every 10 ms) until `n` replicas of `service` run, on `node` when given;
/// returns how long that took from `since`.
pub async fn wait_running(
    leader: &Client,
    service: &str,
    n: usize,
    node: Option<&str>,
    since: Instant,
    limit: Duration,
) -> anyhow::Result<Duration> {
    loop {
        let by_node = running_by_node(leader, service).await.unwrap_or_default();
        let count = match node {
            Some(name) => by_node.get(name).copied().unwrap_or(0),
            None => by_node.values().sum(),
        };
        if count >= n {
            return Ok(since.elapsed());
        }
        anyhow::ensure!(
            since.elapsed() < limit,
            "only {count} of {n} replicas of {service} running{} after {limit:?}",
            node.map(|n| format!(" on {n}")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Polls until node `name` is registered and ready.
pub async fn wait_node_ready(leader: &Client, name: &str, limit: Duration) -> anyhow::Result<()> {
    wait_node(leader, name, true, limit).await
}

/// Polls until node `name` is ready (`ready`), or is not (any other status, or
/// gone).
pub async fn wait_node(
    leader: &Client,
    name: &str,
    ready: bool,
    limit: Duration,
) -> anyhow::Result<()> {
    let start = Instant::now();
    loop {
        let is_ready = leader.nodes(Consistency::Linearizable).await.map(|l| {
            l.items
                .iter()
                .any(|n| n.name == name && n.status == NodeStatus::Ready)
        });
        if is_ready.is_ok_and(|r| r == ready) {
            return Ok(());
        }
        anyhow::ensure!(
            start.elapsed() < limit,
            "node {name} still {} after {limit:?}",
            if ready { "not ready" } else { "ready" }
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Resident memory of process `pid` in MiB (`VmRSS` of `/proc/<pid>/status`).
pub fn rss_mib(pid: u32) -> anyhow::Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("process {pid} is gone"))?;
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("no VmRSS for process {pid}"))?;
    Ok(kib / 1024.0)
}

/// The median of `values` (NaN when empty).
pub fn median(mut values: Vec<f64>) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}
