//! The workload-convergence run: agents in their own namespaces run real
//! processes; during faults a driver applies and scales services through random
//! peers; after healing, one last apply per service fixes the desired replica
//! counts, and the machine's real process table must come to hold exactly those
//! replicas — each one once, none missing, none extra — within a bound.
//!
//! Replicas are `sleep` processes carrying `JEPSEN_RUN=<run>` in their
//! environment; they are counted from `/proc`, not from Orion's own reports, and
//! killed by that marker when the run ends, since agents deliberately leave their
//! replicas running when they stop.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use orion_api::{ApplyRequest, SourceFile};
use orion_client::Client;
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
            .args(["--name", &format!("n{}", h.index)])
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

fn manifest(run: &str, name: &str, replicas: u32) -> String {
    format!(
        "kind: Service\nname: {name}\nreplicas: {replicas}\ncommand: [\"sleep\", \"3600\"]\n\
         env: {{JEPSEN_RUN: \"{run}\"}}\nresources: {{cpu: 10m, memory: 1Mi}}\n"
    )
}

/// One apply of service `name` through `client` (one peer, one attempt).
async fn apply(client: &Client, run: &str, name: &str, replicas: u32) -> OpKind {
    let request = ApplyRequest {
        files: vec![SourceFile {
            name: format!("{name}.yaml"),
            content: manifest(run, name, replicas),
        }],
    };
    change_outcome(&client.apply(&request).await)
}

/// Applies and scales services through random peers of `client` until `until`.
pub async fn driver(client: Client, run: String, until: Instant, rec: Arc<Recorder>) {
    let mut pid = DRIVER;
    while Instant::now() < until {
        let name = SERVICES[rand::random_range(0..SERVICES.len())];
        let replicas: u32 = rand::random_range(0..5);
        let peers = client.urls();
        let base = &peers[rand::random_range(0..peers.len())];
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
        let kind = apply(&client.at(base), &run, name, replicas).await;
        rec.finish(&op, kind, &mut pid);
        tokio::time::sleep(Duration::from_millis(rand::random_range(300..1500))).await;
    }
}

/// After healing: one acknowledged apply per service through the peers of
/// `client` in turn, retried until it is. Returns the desired replica count of
/// each service.
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
            let kind = apply(&client.at(&peers[i % peers.len()]), run, name, replicas).await;
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

/// The replicas of run `run` in the process table: replica id → pids.
pub fn running(run: &str) -> BTreeMap<String, Vec<i32>> {
    let marker = format!("JEPSEN_RUN={run}");
    let mut found: BTreeMap<String, Vec<i32>> = BTreeMap::new();
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
        if let Some(id) = vars
            .iter()
            .find_map(|v| v.strip_prefix(b"ORION_REPLICA=".as_slice()))
        {
            found
                .entry(String::from_utf8_lossy(id).into_owned())
                .or_default()
                .push(pid);
        }
    }
    found
}

/// Kills every replica process of run `run`.
pub fn kill_replicas(run: &str) {
    for pids in running(run).values() {
        for pid in pids {
            let _ = kill(Pid::from_raw(*pid), Signal::SIGKILL);
        }
    }
}

/// What the process table held against what was desired.
#[derive(Debug, Clone, Serialize)]
pub struct ConvergenceReport {
    pub valid: bool,
    pub desired: BTreeMap<String, u32>,
    /// Seconds from the final apply until the process table matched.
    pub converged_after_s: Option<f64>,
    pub missing: BTreeSet<String>,
    pub extra: BTreeSet<String>,
    /// Replicas running more than once, with their pids.
    pub duplicated: BTreeMap<String, Vec<i32>>,
}

/// Compares a process table with the desired counts.
pub fn compare(
    desired: &BTreeMap<String, u32>,
    table: &BTreeMap<String, Vec<i32>>,
) -> ConvergenceReport {
    let want: BTreeSet<String> = desired
        .iter()
        .flat_map(|(s, n)| (0..*n).map(move |i| format!("{s}-{i}")))
        .collect();
    let have: BTreeSet<String> = table.keys().cloned().collect();
    let duplicated: BTreeMap<String, Vec<i32>> = table
        .iter()
        .filter(|(_, p)| p.len() > 1)
        .map(|(k, p)| (k.clone(), p.clone()))
        .collect();
    let missing: BTreeSet<String> = want.difference(&have).cloned().collect();
    let extra: BTreeSet<String> = have.difference(&want).cloned().collect();
    ConvergenceReport {
        valid: missing.is_empty() && extra.is_empty() && duplicated.is_empty(),
        desired: desired.clone(),
        converged_after_s: None,
        missing,
        extra,
        duplicated,
    }
}

/// Waits up to [`BOUND`] for the process table to match `desired`.
pub async fn wait_converged(run: &str, desired: &BTreeMap<String, u32>) -> ConvergenceReport {
    let start = Instant::now();
    loop {
        let mut report = compare(desired, &running(run));
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

    #[test]
    fn compare_names_missing_extra_and_duplicated_replicas() {
        let desired = BTreeMap::from([("a".to_string(), 2), ("b".to_string(), 0)]);
        let table = BTreeMap::from([
            ("a-0".to_string(), vec![10, 11]),
            ("b-0".to_string(), vec![12]),
        ]);
        let r = compare(&desired, &table);
        assert!(!r.valid);
        assert_eq!(r.missing, BTreeSet::from(["a-1".to_string()]));
        assert_eq!(r.extra, BTreeSet::from(["b-0".to_string()]));
        assert_eq!(r.duplicated.len(), 1);
        let ok = compare(
            &desired,
            &BTreeMap::from([("a-0".into(), vec![1]), ("a-1".into(), vec![2])]),
        );
        assert!(ok.valid);
    }
}
