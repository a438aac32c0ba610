//! Register and set histories under faults, checked; and the proof that the
//! linearizability checker catches stale reads when peers are told to serve them.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use orion_jepsen::cluster::{client, Cluster};
use orion_jepsen::harness::{in_namespaces, orion_bin, runtime};
use orion_jepsen::history::{self, Op};
use orion_jepsen::hosts::{self, Net};
use orion_jepsen::linear;
use orion_jepsen::nemesis::Nemesis;
use orion_jepsen::register::{process, Recorder};
use orion_jepsen::set_workload::{adder, final_read};
use tokio::time::Instant;

/// Faults until `until`: isolate the leader, pause a peer, kill and restart a
/// peer, one at a time, each healed before the next; all healed at the end.
async fn nemesis(net: &Net, cluster: &mut Cluster, until: Instant) -> anyhow::Result<()> {
    let mut n = Nemesis::default();
    let mut round = 0usize;
    while Instant::now() + Duration::from_secs(4) < until {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let leader = cluster.leader_seen_by(1 + round % 3).await.unwrap_or(1);
        let li = usize::try_from(leader).unwrap_or(1).clamp(1, 3);
        match round % 3 {
            0 => {
                let isolated = &net.hosts[li - 1];
                let rest: Vec<&hosts::Host> = net.hosts.iter().filter(|h| h.index != li).collect();
                n.partition(net, &[isolated], &rest)?;
            }
            1 => {
                if let Some(pid) = cluster.peers[li - 1].pid() {
                    n.pause(pid)?;
                }
            }
            _ => {
                let victim = 1 + (round / 3) % 3;
                cluster.kill(victim);
                tokio::time::sleep(Duration::from_secs(2)).await;
                cluster.restart(net, victim)?;
            }
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
        n.heal(net)?;
        round += 1;
    }
    n.heal(net)
}

/// Starts a cluster and runs six client processes, pinned to the peers in turn,
/// for `seconds` while the nemesis works; returns the healed cluster.
async fn under_faults<Fut>(
    net: &Net,
    dir: &Path,
    config: &str,
    seconds: u64,
    rec: &Arc<Recorder>,
    clients: impl Fn(u64, reqwest::Client, String, Instant, Arc<Recorder>) -> Fut,
) -> anyhow::Result<Cluster>
where
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let mut cluster = Cluster::start(net, &orion_bin()?, dir, config).await?;
    let until = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for id in 0..6u64 {
        let http = client(
            &cluster.ca_pem,
            &cluster.admin_token,
            Duration::from_secs(2),
        )?;
        let base = cluster.peers[usize::try_from(id)? % cluster.peers.len()].url();
        tasks.push(tokio::spawn(clients(id, http, base, until, rec.clone())));
    }
    nemesis(net, &mut cluster, until).await?;
    for t in tasks {
        t.await?;
    }
    Ok(cluster)
}

async fn run(net: &Net, dir: &Path, config: &str, seconds: u64) -> anyhow::Result<Vec<Op>> {
    let rec = Arc::new(Recorder::default());
    let keys: Vec<String> = (0..3).map(|k| format!("r{k}")).collect();
    under_faults(
        net,
        dir,
        config,
        seconds,
        &rec,
        |id, http, base, until, rec| process(id, http, base, keys.clone(), until, rec),
    )
    .await?;
    let ops = rec.history();
    history::write_jsonl(dir.join("history.jsonl"), &ops)?;
    Ok(ops)
}

/// Keeps a run's history, verdict and peer logs in `jepsen/results/<time>-<label>/`.
fn keep(dir: &Path, label: &str, report: &impl serde::Serialize) -> anyhow::Result<()> {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let out = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("results")
        .join(format!("{secs}-{label}"));
    std::fs::create_dir_all(&out)?;
    std::fs::copy(dir.join("history.jsonl"), out.join("history.jsonl"))?;
    std::fs::write(out.join("verdict.json"), serde_json::to_vec_pretty(report)?)?;
    for i in 1..=3 {
        let log = format!("peer-{i}.log");
        let _ = std::fs::copy(dir.join(&log), out.join(&log));
    }
    eprintln!("results in {}", out.display());
    Ok(())
}

/// Runs `f` in fresh namespaces with a temp dir; panics with the peers' logs.
fn scenario<T: Send + 'static>(
    f: impl FnOnce(&Net, &Path) -> anyhow::Result<T> + Send + 'static,
) -> T {
    let dir = tempfile::tempdir().expect("temp dir");
    match in_namespaces(3, dir.path(), f) {
        Ok(v) => v,
        Err(e) => panic!("{e:#}"),
    }
}

#[test]
#[ignore = "needs root; run with `make jepsen`"]
fn register_histories_under_faults_are_linearizable() {
    let report = scenario(|net, dir| {
        let ops = runtime()?.block_on(run(net, dir, "", 30))?;
        let r = linear::check(&ops, &linear::Options::default())?;
        eprintln!(
            "{} events; verdict {:?}",
            ops.len(),
            r.verdict.is_linearizable()
        );
        keep(dir, "register", &r)?;
        Ok(r)
    });
    assert!(report.verdict.is_linearizable(), "{:#?}", report.verdict);
}

#[test]
#[ignore = "needs root; run with `make jepsen`"]
fn the_checker_catches_stale_reads_when_peers_serve_them() {
    let report = scenario(|net, dir| {
        let ops = runtime()?.block_on(run(net, dir, "debug-stale-reads = true\n", 30))?;
        let r = linear::check(&ops, &linear::Options::default())?;
        keep(dir, "register-stale-reads", &r)?;
        Ok(r)
    });
    assert!(
        matches!(report.verdict, linear::Verdict::NotLinearizable { .. }),
        "stale reads went unnoticed: {:?}",
        report.verdict
    );
}

async fn run_set(net: &Net, dir: &Path, seconds: u64) -> anyhow::Result<Vec<Op>> {
    let rec = Arc::new(Recorder::default());
    let cluster = under_faults(net, dir, "", seconds, &rec, adder).await?;
    let http = client(
        &cluster.ca_pem,
        &cluster.admin_token,
        Duration::from_secs(10),
    )?;
    let base = cluster.peers[0].url();
    final_read(&http, &base, &rec, Instant::now() + Duration::from_secs(30)).await?;
    let ops = rec.history();
    history::write_jsonl(dir.join("history.jsonl"), &ops)?;
    Ok(ops)
}

#[test]
#[ignore = "needs root; run with `make jepsen`"]
fn acknowledged_adds_survive_faults() {
    let report = scenario(|net, dir| {
        let ops = runtime()?.block_on(run_set(net, dir, 30))?;
        let r = orion_jepsen::set::check(&ops)?;
        eprintln!(
            "{} adds attempted, {} acknowledged, {} read, lost {:?}",
            r.attempted, r.acknowledged, r.read, r.lost
        );
        keep(dir, "set", &r)?;
        Ok(r)
    });
    assert!(report.valid, "{report:#?}");
}
