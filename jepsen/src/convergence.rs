//! The workload-convergence run: agents in their own namespaces run real
//! processes; during faults a driver, through random peers, applies services
//! (scaling them, and rolling them to a new version: a changed env value, under a
//! random `max_unavailable` / `max_surge`), drains nodes and uncordons them. After
//! healing every node is uncordoned and one last apply per service fixes the
//! replica count and a final version; the machine's real process table must then
//! come to hold exactly those replicas — each one once, at the final version,
//! none missing, none extra (no surge replica left) — and every node must be
//! schedulable again, within a bound.
//!
//! Replicas are `sleep` processes carrying `JEPSEN_RUN=<run>` and their version
//! (`JEPSEN_VERSION`) in their environment; they are counted from `/proc`, not from
//! Orion's own reports, and killed by that marker when the run ends, since agents
//! deliberately leave their replicas running when they stop.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use orion_api::{ApplyRequest, SourceFile};
use orion_client::{Client, Consistency, NodeAction};
use serde::Serialize;
use tokio::time::Instant;

use crate::cluster::Cluster;
use crate::history::{Op, OpKind, F};
use crate::hosts::{Host, Net};
use crate::register::{change_outcome, Recorder};

pub const SERVICES: [&str; 3] = ["jc0", "jc1", "jc2"];
/// Key prefix of the driver's ops in the history.
pub const KEY_PREFIX: &str = "service/";
/// How long the fleet may take to converge after the final apply.
pub const BOUND: Duration = Duration::from_secs(60);
/// Process ids of the driver and of the final apply.
pub const DRIVER: u64 = 500;
pub const FINAL_APPLIER: u64 = 499;

/// The agents of a run; killed on drop (their replicas are killed by
/// [`kill_replicas`]).
pub struct Agents {
    pub children: Vec<Child>,
}

impl Drop for Agents {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Starts one `orion agent` per host in `hosts`, joined with agent tokens.
pub async fn start_agents(
    net: &Net,
    cluster: &Cluster,
    hosts: &[Host],
    dir: &Path,
) -> anyhow::Result<Agents> {
    let servers = urls(cluster);
    let mut agents = Agents {
        children: Vec::new(),
    };
    for h in hosts {
        let token = cluster.mint("agent", &servers[0]).await?;
        let log = std::fs::File::create(dir.join(format!("agent-{}.log", h.index)))?;
        let child = net
            .command(h, &cluster.orion.to_string_lossy())
            .arg("agent")
            .args(["--servers", &servers.join(",")])
            .args(["--name", &node_name(h)])
            .arg("--data-dir")
            .arg(dir.join(format!("agent-{}", h.index)))
            .env("ORION_JOIN_TOKEN", token)
            .env("ORION_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("cannot start orion agent")?;
        agents.children.push(child);
    }
    let want = hosts.len();
    cluster
        .wait_for("every agent to register", Duration::from_secs(60), |c| {
            let url = servers[0].clone();
            async move {
                let v = c.get(&url, "/v1/nodes").await?;
                let ready = v["items"]
                    .as_array()?
                    .iter()
                    .filter(|n| n["status"].as_str() == Some("ready"))
                    .count();
                (ready >= want).then_some(())
            }
        })
        .await?;
    Ok(agents)
}

/// The version the final apply gives every service; the driver's are `v0` ..
pub const FINAL_VERSION: &str = "final";
/// Key prefix of the driver's drains and uncordons in the history.
pub const NODE_PREFIX: &str = "node/";

/// How a service rolls: `max_unavailable` and `max_surge` (never both 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Strategy {
    pub max_unavailable: u32,
    pub max_surge: u32,
}

impl Strategy {
    /// A random strategy: each of 0, 1 or 2, not both 0.
    fn random() -> Self {
        let max_unavailable = rand::random_range(0..3);
        let least = u32::from(max_unavailable == 0);
        Strategy {
            max_unavailable,
            max_surge: rand::random_range(least..3),
        }
    }
}

/// The name the agent on `host` registers its node under.
pub fn node_name(host: &Host) -> String {
    format!("n{}", host.index)
}

fn manifest(run: &str, name: &str, replicas: u32, version: &str, strategy: Strategy) -> String {
    format!(
        "kind: Service\nname: {name}\nreplicas: {replicas}\ncommand: [\"sleep\", \"3600\"]\n\
         env: {{JEPSEN_RUN: \"{run}\", JEPSEN_VERSION: \"{version}\"}}\n\
         resources: {{cpu: 10m, memory: 1Mi}}\n\
         strategy: {{max_unavailable: {}, max_surge: {}}}\n",
        strategy.max_unavailable, strategy.max_surge
    )
}

/// One apply of service `name` through `client` (one peer, one attempt).
async fn apply(
    client: &Client,
    run: &str,
    name: &str,
    replicas: u32,
    version: &str,
    strategy: Strategy,
) -> OpKind {
    let request = ApplyRequest {
        files: vec![SourceFile {
            name: format!("{name}.yaml"),
            content: manifest(run, name, replicas, version, strategy),
        }],
    };
    change_outcome(&client.apply(&request).await)
}

/// Applies, scales and rolls services, drains and uncordons `nodes`, through
/// random peers of `client`, until `until`.
pub async fn driver(
    client: Client,
    run: String,
    nodes: Vec<String>,
    until: Instant,
    rec: Arc<Recorder>,
) {
    let mut pid = DRIVER;
    while Instant::now() < until {
        let peers = client.urls();
        let at = client.at(&peers[rand::random_range(0..peers.len())]);
        let pick = rand::random_range(0..10);
        if pick < 7 || nodes.is_empty() {
            // Scale, roll to another version, or both.
            let name = SERVICES[rand::random_range(0..SERVICES.len())];
            let replicas: u32 = rand::random_range(0..5);
            let version = format!("v{}", rand::random_range(0..3));
            let op = rec.invoke(
                Op::new(
                    pid,
                    OpKind::Invoke,
                    F::Write,
                    format!("{KEY_PREFIX}{name}"),
                    0,
                )
                .with_value(Some(i64::from(replicas))),
            );
            let kind = apply(&at, &run, name, replicas, &version, Strategy::random()).await;
            rec.finish(&op, kind, &mut pid);
        } else {
            // Drain (value 1, with a deadline of a few seconds) or uncordon (0).
            let node = &nodes[rand::random_range(0..nodes.len())];
            let drain = pick < 9;
            let op = rec.invoke(
                Op::new(
                    pid,
                    OpKind::Invoke,
                    F::Write,
                    format!("{NODE_PREFIX}{node}"),
                    0,
                )
                .with_value(Some(i64::from(drain))),
            );
            let action = if drain {
                NodeAction::Drain {
                    deadline_seconds: rand::random_range(3..15),
                }
            } else {
                NodeAction::Uncordon
            };
            let kind = change_outcome(&at.schedule_node(node, action).await);
            rec.finish(&op, kind, &mut pid);
        }
        tokio::time::sleep(Duration::from_millis(rand::random_range(300..1500))).await;
    }
}

/// After healing: every node in `nodes` uncordoned, each through the peers of
/// `client` in turn and retried until acknowledged.
pub async fn final_uncordon(
    client: &Client,
    nodes: &[String],
    rec: &Recorder,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    for (i, node) in nodes.iter().enumerate() {
        loop {
            let op = rec.invoke(
                Op::new(
                    FINAL_APPLIER,
                    OpKind::Invoke,
                    F::Write,
                    format!("{NODE_PREFIX}{node}"),
                    0,
                )
                .with_value(Some(0)),
            );
            let peers = client.urls();
            let r = client
                .at(&peers[i % peers.len()])
                .schedule_node(node, NodeAction::Uncordon)
                .await;
            let kind = change_outcome(&r);
            rec.complete(&op, kind, None);
            if kind == OpKind::Ok {
                break;
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "the final uncordon of {node} never succeeded: {r:?}"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    Ok(())
}

/// After healing: one acknowledged apply per service through the peers of
/// `client` in turn, retried until it is, at [`FINAL_VERSION`]. Returns the
/// desired replica count of each service.
pub async fn final_apply(
    client: &Client,
    run: &str,
    rec: &Recorder,
) -> anyhow::Result<BTreeMap<String, u32>> {
    let mut desired = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    for (i, name) in SERVICES.iter().enumerate() {
        let replicas = u32::try_from(i + 1).unwrap_or(1);
        loop {
            let op = rec.invoke(
                Op::new(
                    FINAL_APPLIER,
                    OpKind::Invoke,
                    F::Write,
                    format!("{KEY_PREFIX}{name}"),
                    0,
                )
                .with_value(Some(i64::from(replicas))),
            );
            let peers = client.urls();
            let strategy = Strategy {
                max_unavailable: 1,
                max_surge: 1,
            };
            let at = client.at(&peers[i % peers.len()]);
            let kind = apply(&at, run, name, replicas, FINAL_VERSION, strategy).await;
            rec.complete(&op, kind, None);
            if kind == OpKind::Ok {
                break;
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "the final apply of {name} never succeeded"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        desired.insert((*name).to_string(), replicas);
    }
    Ok(desired)
}

/// One replica process of a run, as the machine sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Proc {
    pub pid: i32,
    /// Its `JEPSEN_VERSION`.
    pub version: String,
}

/// The replicas of run `run` in the process table: replica id → its processes.
pub fn running(run: &str) -> BTreeMap<String, Vec<Proc>> {
    let marker = format!("JEPSEN_RUN={run}");
    let mut found: BTreeMap<String, Vec<Proc>> = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(env) = std::fs::read(e.path().join("environ")) else {
            continue;
        };
        let vars: Vec<&[u8]> = env.split(|b| *b == 0).collect();
        if !vars.contains(&marker.as_bytes()) {
            continue;
        }
        // A zombie is not a running replica.
        let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
        if stat
            .rsplit(')')
            .next()
            .is_some_and(|s| s.trim_start().starts_with('Z'))
        {
            continue;
        }
        let var = |name: &[u8]| {
            vars.iter()
                .find_map(|v| v.strip_prefix(name))
                .map(|v| String::from_utf8_lossy(v).into_owned())
        };
        if let Some(id) = var(b"ORION_REPLICA=") {
            found.entry(id).or_default().push(Proc {
                pid,
                version: var(b"JEPSEN_VERSION=").unwrap_or_default(),
            });
        }
    }
    found
}

/// Kills every replica process of run `run`.
pub fn kill_replicas(run: &str) {
    for procs in running(run).values() {
        for p in procs {
            let _ = kill(Pid::from_raw(p.pid), Signal::SIGKILL);
        }
    }
}

/// What the process table held against what was desired.
#[derive(Debug, Clone, Serialize)]
pub struct ConvergenceReport {
    pub valid: bool,
    pub desired: BTreeMap<String, u32>,
    /// The version every replica must run at the end.
    pub version: String,
    /// Seconds from the final apply until the process table matched.
    pub converged_after_s: Option<f64>,
    pub missing: BTreeSet<String>,
    pub extra: BTreeSet<String>,
    /// Replicas running more than once, with their pids.
    pub duplicated: BTreeMap<String, Vec<i32>>,
    /// Replicas running another version than the final one: id → version.
    pub stale: BTreeMap<String, String>,
    /// Nodes still cordoned or draining after the final uncordon (or whose
    /// state could not be read).
    pub unschedulable: BTreeSet<String>,
}

impl ConvergenceReport {
    /// What is wrong, in one line (empty when valid).
    pub fn problems(&self) -> String {
        let mut parts = Vec::new();
        if !self.missing.is_empty() {
            parts.push(format!("missing {:?}", self.missing));
        }
        if !self.extra.is_empty() {
            parts.push(format!("extra {:?}", self.extra));
        }
        if !self.duplicated.is_empty() {
            parts.push(format!("duplicated {:?}", self.duplicated));
        }
        if !self.stale.is_empty() {
            parts.push(format!(
                "not at version {:?}: {:?}",
                self.version, self.stale
            ));
        }
        if !self.unschedulable.is_empty() {
            parts.push(format!("not uncordoned {:?}", self.unschedulable));
        }
        parts.join(", ")
    }
}

/// Compares a process table with the desired counts and `version`.
pub fn compare(
    desired: &BTreeMap<String, u32>,
    version: &str,
    table: &BTreeMap<String, Vec<Proc>>,
) -> ConvergenceReport {
    let want: BTreeSet<String> = desired
        .iter()
        .flat_map(|(s, n)| (0..*n).map(move |i| format!("{s}-{i}")))
        .collect();
    let have: BTreeSet<String> = table.keys().cloned().collect();
    let duplicated: BTreeMap<String, Vec<i32>> = table
        .iter()
        .filter(|(_, p)| p.len() > 1)
        .map(|(k, p)| (k.clone(), p.iter().map(|p| p.pid).collect()))
        .collect();
    let stale: BTreeMap<String, String> = table
        .iter()
        .filter(|(id, _)| want.contains(*id))
        .filter_map(|(id, p)| {
            p.iter()
                .find(|p| p.version != version)
                .map(|p| (id.clone(), p.version.clone()))
        })
        .collect();
    let missing: BTreeSet<String> = want.difference(&have).cloned().collect();
    let extra: BTreeSet<String> = have.difference(&want).cloned().collect();
    ConvergenceReport {
        valid: missing.is_empty() && extra.is_empty() && duplicated.is_empty() && stale.is_empty(),
        desired: desired.clone(),
        version: version.to_string(),
        converged_after_s: None,
        missing,
        extra,
        duplicated,
        stale,
        unschedulable: BTreeSet::new(),
    }
}

/// The nodes of `nodes` that are not schedulable (cordoned or draining) by
/// `client`'s linearizable read; all of them when it fails.
async fn unschedulable(client: &Client, nodes: &[String]) -> BTreeSet<String> {
    match client.nodes(Consistency::Linearizable).await {
        Ok(list) => nodes
            .iter()
            .filter(|n| {
                list.items
                    .iter()
                    .find(|o| &o.name == *n)
                    .is_none_or(|o| o.cordoned || o.draining)
            })
            .cloned()
            .collect(),
        Err(_) => nodes.iter().cloned().collect(),
    }
}

/// Waits up to [`BOUND`] for the process table to match `desired` at
/// [`FINAL_VERSION`] and for every node of `nodes` to be schedulable.
pub async fn wait_converged(
    run: &str,
    desired: &BTreeMap<String, u32>,
    client: &Client,
    nodes: &[String],
) -> ConvergenceReport {
    let start = Instant::now();
    let mut checked_nodes = Instant::now() - Duration::from_secs(1);
    let mut not_ready = nodes.iter().cloned().collect::<BTreeSet<String>>();
    loop {
        let mut report = compare(desired, FINAL_VERSION, &running(run));
        if checked_nodes.elapsed() >= Duration::from_secs(1) || report.valid {
            not_ready = unschedulable(client, nodes).await;
            checked_nodes = Instant::now();
        }
        report.unschedulable = not_ready.clone();
        report.valid &= report.unschedulable.is_empty();
        if report.valid {
            report.converged_after_s = Some(start.elapsed().as_secs_f64());
            return report;
        }
        if start.elapsed() > BOUND {
            return report;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The API URLs of `cluster`'s peers.
pub fn urls(cluster: &Cluster) -> Vec<String> {
    cluster
        .peers
        .iter()
        .map(crate::cluster::Peer::url)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn procs(versions: &[&str]) -> Vec<Proc> {
        versions
            .iter()
            .enumerate()
            .map(|(i, v)| Proc {
                pid: 10 + i as i32,
                version: (*v).to_string(),
            })
            .collect()
    }

    #[test]
    fn compare_names_missing_extra_duplicated_and_stale_replicas() {
        let desired = BTreeMap::from([("a".to_string(), 3), ("b".to_string(), 0)]);
        let table = BTreeMap::from([
            ("a-0".to_string(), procs(&["final", "final"])),
            ("a-2".to_string(), procs(&["v1"])),
            ("a-3".to_string(), procs(&["final"])),
            ("b-0".to_string(), procs(&["final"])),
        ]);
        let r = compare(&desired, "final", &table);
        assert!(!r.valid);
        assert_eq!(r.missing, BTreeSet::from(["a-1".to_string()]));
        assert_eq!(
            r.extra,
            BTreeSet::from(["a-3".to_string(), "b-0".to_string()]),
            "a surge replica left over is extra"
        );
        assert_eq!(r.duplicated, BTreeMap::from([("a-0".into(), vec![10, 11])]));
        assert_eq!(r.stale, BTreeMap::from([("a-2".into(), "v1".into())]));
        let text = r.problems();
        assert!(text.contains("a-1") && text.contains("\"v1\""), "{text}");
        let ok = compare(
            &desired,
            "final",
            &BTreeMap::from([
                ("a-0".into(), procs(&["final"])),
                ("a-1".into(), procs(&["final"])),
                ("a-2".into(), procs(&["final"])),
            ]),
        );
        assert!(ok.valid, "{}", ok.problems());
    }

    #[test]
    fn random_strategies_never_have_both_budgets_at_zero() {
        for _ in 0..1000 {
            let s = Strategy::random();
            assert!(s.max_unavailable + s.max_surge > 0, "{s:?}");
            assert!(s.max_unavailable <= 2 && s.max_surge <= 2, "{s:?}");
        }
    }
}
