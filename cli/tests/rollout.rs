//! Rolling updates with real peers, a real agent and real processes: a changed
//! spec moves replicas in batches of `max_unavailable`, checked from the machine's
//! own process table and HTTP probes, not from what Orion reports; a leader kill in
//! the middle does not break it; an update that never becomes healthy rolls back by
//! itself; `rollout undo` restores the previous revision; with `max_unavailable: 0`
//! and `max_surge: 1` a surge replica starts first, so the count of healthy
//! processes never drops below `replicas`, through a leader kill too.

mod fixture;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fixture::TestCluster;
use orion_api::{RolloutState, ServiceObject};
use orion_client::Consistency;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A web service of `replicas` python HTTP servers whose env carries `version`
/// and a marker unique to the test, so the sampler finds exactly its processes.
fn web(marker: &str, replicas: u32, version: &str, extra_strategy: &str) -> String {
    format!(
        "kind: Service\nname: web\nreplicas: {replicas}\n\
         command: [python3, -m, http.server, '${{PORT}}', --bind, 127.0.0.1]\n\
         ports: [http]\nresources: {{cpu: 100m, memory: 32Mi}}\n\
         env: {{ROLL_MARK: {marker}, VERSION: {version}}}\n\
         health: {{http: {{port: http, path: /}}, interval: 300ms, timeout: 1s, failures: 3}}\n\
         strategy: {{max_unavailable: 1{extra_strategy}}}\n"
    )
}

async fn service(c: &TestCluster) -> Option<ServiceObject> {
    c.running_client()
        .service("web", Consistency::Linearizable)
        .await
        .ok()
        .map(|r| r.service)
}

/// One process of the service, as the machine sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    pid: u32,
    version: String,
    port: u16,
    /// `ORION_REPLICA`: the replica id the agent started it as.
    replica: String,
}

/// Live processes whose environment holds `ROLL_MARK=marker`.
fn processes(marker: &str) -> Vec<Seen> {
    let needle = format!("ROLL_MARK={marker}");
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(env) = std::fs::read(format!("/proc/{pid}/environ")) else {
            continue;
        };
        let vars: BTreeMap<String, String> = env
            .split(|b| *b == 0)
            .filter_map(|kv| std::str::from_utf8(kv).ok())
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        if vars.get("ROLL_MARK").map(|m| format!("ROLL_MARK={m}")) != Some(needle.clone()) {
            continue;
        }
        let zombie = std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |s| {
            s.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        });
        if zombie {
            continue;
        }
        if let (Some(version), Some(port)) = (
            vars.get("VERSION"),
            vars.get("PORT").and_then(|p| p.parse().ok()),
        ) {
            out.push(Seen {
                pid,
                version: version.clone(),
                port,
                replica: vars.get("ORION_REPLICA").cloned().unwrap_or_default(),
            });
        }
    }
    out
}

/// Whether `GET /` on the port answers 200 within a second (our own probe).
async fn answers(port: u16) -> bool {
    let probe = async {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()?;
        s.write_all(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
            .await
            .ok()?;
        let mut buf = [0u8; 16];
        let n = s.read(&mut buf).await.ok()?;
        Some(buf[..n].starts_with(b"HTTP/1.0 200") || buf[..n].starts_with(b"HTTP/1.1 200"))
    };
    tokio::time::timeout(Duration::from_secs(1), probe)
        .await
        .ok()
        .flatten()
        .unwrap_or(false)
}

/// Processes of the service that answer, by version.
async fn healthy_now(marker: &str) -> Vec<Seen> {
    let mut up = Vec::new();
    for p in processes(marker) {
        if answers(p.port).await {
            up.push(p);
        }
    }
    up
}

/// Samples the process table and probes until stopped; keeps the fewest healthy
/// processes seen and how many samples were taken.
struct Sampler {
    stop: Arc<AtomicBool>,
    fewest: Arc<Mutex<(usize, u64, Vec<Seen>)>>,
    /// The most replicas of the service seen running at once, and which.
    most: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Sampler {
    fn start(marker: &str) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let fewest = Arc::new(Mutex::new((usize::MAX, 0u64, Vec::new())));
        let most = Arc::new(Mutex::new(Vec::new()));
        let (s, f, m, most_seen) = (
            stop.clone(),
            fewest.clone(),
            marker.to_string(),
            most.clone(),
        );
        let task = tokio::spawn(async move {
            while !s.load(Ordering::Relaxed) {
                // Distinct replicas: a starting python forks short-lived
                // children that carry its environment.
                let mut all = processes(&m);
                all.sort_by(|a, b| a.replica.cmp(&b.replica));
                all.dedup_by(|a, b| a.replica == b.replica);
                {
                    let mut g = most_seen.lock().unwrap_or_else(|e| e.into_inner());
                    if all.len() > g.len() {
                        *g = all;
                    }
                }
                let up = healthy_now(&m).await;
                {
                    let mut g = f.lock().unwrap_or_else(|e| e.into_inner());
                    g.1 += 1;
                    if up.len() < g.0 {
                        g.0 = up.len();
                        g.2 = up;
                    }
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        Sampler {
            stop,
            fewest,
            most,
            task,
        }
    }

    async fn finish(self) -> (usize, u64, Vec<Seen>) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.task.await;
        let g = self.fewest.lock().unwrap_or_else(|e| e.into_inner());
        g.clone()
    }
}

fn unique_marker() -> String {
    format!(
        "m{}x{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default()
    )
}

async fn wait_versions(c: &TestCluster, marker: &str, n: usize, version: &str) {
    c.wait_for(
        &format!("{n} healthy processes of {version}"),
        Duration::from_secs(90),
        || async {
            let up = healthy_now(marker).await;
            let all = processes(marker);
            (up.len() == n && all.len() == n && up.iter().all(|p| p.version == version))
                .then_some(())
        },
    )
    .await;
}

async fn wait_rollout(c: &TestCluster, generation: u64, state: RolloutState) -> ServiceObject {
    c.wait_for(
        &format!("rollout of revision {generation} {state}"),
        Duration::from_secs(120),
        || async {
            service(c)
                .await
                .filter(|s| s.generation == generation && s.rollout.state == state)
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_update_keeps_three_of_four_healthy_through_a_leader_kill_and_undo_restores_it() {
    let mut c = TestCluster::start(3).await;
    c.spawn_agent("n1").await;
    let marker = unique_marker();
    c.apply_yaml(&web(&marker, 4, "v1", ", min_healthy_time: 1s"))
        .await;
    wait_versions(&c, &marker, 4, "v1").await;
    wait_rollout(&c, 1, RolloutState::Complete).await;

    let sampler = Sampler::start(&marker);
    c.apply_yaml(&web(&marker, 4, "v2", ", min_healthy_time: 1s"))
        .await;
    // Kill the leader once the rollout is under way but not done.
    c.wait_for(
        "one or two replicas on v2",
        Duration::from_secs(60),
        || async {
            let v2 = processes(&marker)
                .iter()
                .filter(|p| p.version == "v2")
                .count();
            (1..=2).contains(&v2).then_some(())
        },
    )
    .await;
    let leader = c.wait_for_leader().await;
    c.kill9(leader);
    wait_versions(&c, &marker, 4, "v2").await;
    let done = wait_rollout(&c, 2, RolloutState::Complete).await;
    let (fewest, samples, at_fewest) = sampler.finish().await;
    assert!(
        fewest >= 3,
        "only {fewest} healthy processes at one point ({at_fewest:?}) in {samples} samples"
    );
    assert_eq!(done.history.len(), 1, "{done:?}");

    // `rollout undo` through the CLI: revision 3 is v1 again, rolled the same way.
    let sampler = Sampler::start(&marker);
    let survivor = c.running()[0];
    let out = c
        .cli()
        .args(["rollout", "undo", "web", "--server", &c.url(survivor)])
        .output()
        .expect("orion rollout undo");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = c
        .cli()
        .args([
            "rollout",
            "status",
            "web",
            "--timeout",
            "120s",
            "--server",
            &c.url(survivor),
        ])
        .output()
        .expect("orion rollout status");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("revision 3") && text.contains("complete"),
        "{text}"
    );
    wait_versions(&c, &marker, 4, "v1").await;
    let (fewest, samples, at_fewest) = sampler.finish().await;
    assert!(
        fewest >= 3,
        "undo: only {fewest} healthy at one point ({at_fewest:?}) in {samples} samples"
    );
    let s = service(&c).await.expect("service");
    assert_eq!(s.spec.env.get("VERSION").map(String::as_str), Some("v1"));
    c.assert_no_unexpected_errors(&[]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_that_never_becomes_healthy_stops_and_rolls_back_by_itself() {
    let mut c = TestCluster::start(3).await;
    c.spawn_agent("n1").await;
    let marker = unique_marker();
    let strategy = ", healthy_deadline: 4s, auto_rollback: true";
    c.apply_yaml(&web(&marker, 3, "v1", strategy)).await;
    wait_versions(&c, &marker, 3, "v1").await;
    // A revision is what an automatic rollback returns to once it completed.
    wait_rollout(&c, 1, RolloutState::Complete).await;
    let before: Vec<u32> = processes(&marker).iter().map(|p| p.pid).collect();

    // v2 serves on the wrong address: its health check can never pass.
    let broken = web(&marker, 3, "v2", strategy).replace("127.0.0.1]", "127.0.0.2]");
    let out = {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("orion.yaml");
        std::fs::write(&file, &broken).expect("write spec");
        c.cli()
            .args(["apply", "-f"])
            .arg(&file)
            .args(["--wait", "--timeout", "60s", "--server", &c.url(1)])
            .output()
            .expect("orion apply --wait")
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "apply --wait must fail: {stderr}");
    assert!(
        stderr.contains("rollout of service/web failed") && stderr.contains("revision 2"),
        "{stderr}"
    );

    let back = wait_rollout(&c, 3, RolloutState::Complete).await;
    assert!(
        back.rollout
            .reason
            .as_deref()
            .is_some_and(|r| r.contains("rolled back from revision 2 to revision 1")),
        "{back:?}"
    );
    assert_eq!(back.spec.env.get("VERSION").map(String::as_str), Some("v1"));
    wait_versions(&c, &marker, 3, "v1").await;
    // Only one replica was ever moved to the broken revision: two never restarted.
    let after: Vec<u32> = processes(&marker).iter().map(|p| p.pid).collect();
    let kept = before.iter().filter(|p| after.contains(p)).count();
    assert_eq!(kept, 2, "before {before:?}, after {after:?}");
    c.assert_no_unexpected_errors(&[]);
}

/// The nodes the service's replicas are placed on, by replica id.
async fn placement(c: &TestCluster) -> BTreeMap<String, String> {
    c.running_client()
        .replicas(Consistency::Linearizable)
        .await
        .map(|l| {
            l.items
                .iter()
                .filter(|r| r.service == "web")
                .map(|r| (r.id(), r.node.clone()))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_moves_every_replica_within_max_unavailable_and_a_deleted_node_is_replaced() {
    let mut c = TestCluster::start(3).await;
    c.spawn_agent("n1").await;
    c.spawn_agent("n2").await;
    c.wait_for("both nodes registered", Duration::from_secs(30), || async {
        let nodes = c
            .running_client()
            .nodes(Consistency::Linearizable)
            .await
            .ok()?;
        (nodes.items.len() == 2).then_some(())
    })
    .await;
    let marker = unique_marker();
    c.apply_yaml(&web(&marker, 4, "v1", "")).await;
    wait_versions(&c, &marker, 4, "v1").await;
    let before = placement(&c).await;
    let on_n1 = before.values().filter(|n| *n == "n1").count();
    assert!(on_n1 > 0, "spread puts replicas on both nodes: {before:?}");

    // The drain follows until n1 is empty; the machine never has fewer than 3 of
    // the 4 answering (max_unavailable 1).
    let sampler = Sampler::start(&marker);
    let (ok, out, err) = fixture::orion(
        &c,
        &c.url(c.follower().await),
        &["node", "drain", "n1", "--deadline", "2m"],
    );
    let (fewest, samples, at) = sampler.finish().await;
    assert!(ok, "drain: {out}{err}");
    assert!(out.contains("node/n1 drained"), "{out}");
    assert!(
        fewest >= 3,
        "only {fewest} of 4 answered during the drain ({samples} samples): {at:?}"
    );
    let after = placement(&c).await;
    assert!(after.values().all(|n| n == "n2"), "all on n2: {after:?}");
    wait_versions(&c, &marker, 4, "v1").await;
    // n1 stays ineligible until uncordoned.
    let nodes = c
        .running_client()
        .nodes(Consistency::Linearizable)
        .await
        .expect("nodes");
    let n1 = nodes.items.iter().find(|n| n.name == "n1").expect("n1");
    assert!(n1.draining && n1.cordoned && !n1.schedulable(), "{n1:?}");
    let (ok, out, err) = fixture::orion(&c, &c.url(1), &["node", "uncordon", "n1"]);
    assert!(ok && out.contains("uncordoned"), "{out}{err}");

    // n2's machine is gone: its agent is killed (its processes live on, as on a
    // machine cut off), and the node is deleted: its replicas go to n1.
    c.kill_agent("n2");
    let (ok, out, err) = fixture::orion(&c, &c.url(1), &["node", "delete", "n2"]);
    assert!(ok && out.contains("deleted"), "{out}{err}");
    c.wait_for(
        "every replica placed on n1",
        Duration::from_secs(60),
        || async {
            let p = placement(&c).await;
            (p.len() == 4 && p.values().all(|n| n == "n1")).then_some(())
        },
    )
    .await;
    c.wait_for_replicas_running("web", 4).await;
    // n2 comes back: it registers anew and stops the replicas it ran before.
    c.spawn_agent("n2").await;
    wait_versions(&c, &marker, 4, "v1").await;
    let (ok, _, err) = fixture::orion(&c, &c.url(1), &["node", "delete", "no-such-node"]);
    assert!(!ok && err.contains("does not exist"), "{err}");
    c.assert_no_unexpected_errors(&[]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_surge_1_with_max_unavailable_0_never_has_fewer_than_four_healthy() {
    let mut c = TestCluster::start(3).await;
    c.spawn_agent("n1").await;
    let marker = unique_marker();
    let spec = |version: &str| {
        web(&marker, 4, version, ", max_surge: 1, min_healthy_time: 1s")
            .replace("max_unavailable: 1", "max_unavailable: 0")
    };
    c.apply_yaml(&spec("v1")).await;
    wait_versions(&c, &marker, 4, "v1").await;
    wait_rollout(&c, 1, RolloutState::Complete).await;

    let sampler = Sampler::start(&marker);
    c.apply_yaml(&spec("v2")).await;
    // The surge replica comes first: five processes, the fifth one new.
    c.wait_for("a surge replica of v2", Duration::from_secs(60), || async {
        processes(&marker)
            .iter()
            .any(|p| p.replica == "web-4" && p.version == "v2")
            .then_some(())
    })
    .await;
    // Kill the leader in the middle: the new one neither starts a second surge
    // replica nor leaves this one behind.
    c.wait_for(
        "one or two old replicas replaced",
        Duration::from_secs(60),
        || async {
            let v2 = processes(&marker)
                .iter()
                .filter(|p| p.version == "v2" && p.replica != "web-4")
                .count();
            (1..=2).contains(&v2).then_some(())
        },
    )
    .await;
    let leader = c.wait_for_leader().await;
    c.kill9(leader);
    wait_versions(&c, &marker, 4, "v2").await;
    let done = wait_rollout(&c, 2, RolloutState::Complete).await;
    let most = sampler
        .most
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let (fewest, samples, at_fewest) = sampler.finish().await;
    assert!(
        fewest >= 4,
        "only {fewest} healthy processes at one point ({at_fewest:?}) in {samples} samples"
    );
    assert!(
        most.len() <= 5,
        "{} replicas running at once, more than replicas + max_surge: {most:?}",
        most.len()
    );
    assert_eq!(done.rollout.surge, 0, "{done:?}");
    // The four in-place replicas keep their names; the surge one is gone.
    let mut names: Vec<String> = processes(&marker).into_iter().map(|p| p.replica).collect();
    names.sort();
    assert_eq!(names, ["web-0", "web-1", "web-2", "web-3"]);
    let replicas = c
        .running_client()
        .replicas(Consistency::Linearizable)
        .await
        .expect("replicas");
    let ids: Vec<String> = replicas
        .items
        .iter()
        .filter(|r| r.service == "web")
        .map(|r| r.id())
        .collect();
    assert_eq!(ids, ["web-0", "web-1", "web-2", "web-3"]);
    c.assert_no_unexpected_errors(&[]);
}
