//! Agents over QUIC run real processes placed by the leader, and keep them through
//! a leader failover. Real peers, real agents, real child processes.

mod fixture;

use std::collections::BTreeMap;
use std::time::Duration;

use fixture::TestCluster;
use orion_api::agent_proto::ReplicaState;
use orion_api::{ApplyRequest, NodeList, ReplicaList, SourceFile};
use orion_client::{Client, Consistency, LogQuery};

/// A typed client of `url`, as the admin, each call within 20 s.
fn client(c: &TestCluster, url: &str) -> Client {
    Client::new(&[url.to_string()], &c.ca_pem, Some(c.admin_token.clone()))
        .expect("client")
        .with_timeout(Duration::from_secs(20))
}

const WEB: &str = "kind: Service\nname: web\nreplicas: 3\ncommand: [\"python3\", \"-m\", \"http.server\", \"${PORT}\", \"--bind\", \"127.0.0.1\"]\nports: [http]\nresources: {cpu: 100m, memory: 32Mi}\nhealth: {http: {port: http, path: /}, interval: 500ms, timeout: 1s, failures: 3}\n";

async fn apply(c: &TestCluster, via: u64, text: &str) {
    let request = ApplyRequest {
        files: vec![SourceFile {
            name: "orion.yaml".into(),
            content: text.to_string(),
        }],
    };
    let r = client(c, &c.url(via)).apply(&request).await;
    assert!(r.is_ok(), "apply: {r:?}");
}

/// The leader's replica list, with what the agents report.
async fn replica_list(c: &TestCluster) -> Option<ReplicaList> {
    let leader = c.wait_for_leader().await;
    client(c, &c.url(leader))
        .replicas(Consistency::Linearizable)
        .await
        .ok()
}

/// Replica id → (node, pid) for replicas the leader reports healthy.
async fn healthy(c: &TestCluster) -> Option<BTreeMap<String, (String, u32)>> {
    let list = replica_list(c).await?;
    let mut out = BTreeMap::new();
    for item in &list.items {
        let seen = list.observed.get(&item.id())?;
        if seen.state != ReplicaState::Healthy {
            return None;
        }
        out.insert(item.id(), (item.node.clone(), seen.pid?));
    }
    Some(out)
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        !s.rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z')
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_run_replicas_across_nodes_and_keep_them_through_a_leader_failover() {
    let mut c = TestCluster::start(3).await;
    c.spawn_agent("n1").await;
    c.spawn_agent("n2").await;
    c.wait_for(
        "both agents registered and heartbeating with usage",
        fixture::WAIT,
        || async {
            let nodes: NodeList = client(&c, &c.url(1))
                .nodes(Consistency::Linearizable)
                .await
                .ok()?;
            let reporting = nodes
                .usage
                .values()
                .filter(|u| u.memory_total_bytes > 0)
                .count();
            (nodes.items.len() == 2 && reporting == 2).then_some(())
        },
    )
    .await;

    apply(&c, 2, WEB).await;
    let running = c
        .wait_for("3 healthy replicas", Duration::from_secs(60), || async {
            healthy(&c).await.filter(|m| m.len() == 3)
        })
        .await;
    let nodes: std::collections::BTreeSet<&str> =
        running.values().map(|(n, _)| n.as_str()).collect();
    assert_eq!(nodes.len(), 2, "placed across both nodes: {running:?}");
    for (id, (_, pid)) in &running {
        assert!(alive(*pid), "{id}'s process {pid} runs");
    }

    // Logs and exec through a follower, with the exit code passed back.
    let follower = c.url(c.follower().await);
    let out = c
        .cli()
        .args(["exec", "web-1", "--server", &follower, "--"])
        .args(["sh", "-c", "echo replica=$ORION_REPLICA; exit 7"])
        .output()
        .expect("orion exec");
    assert_eq!(out.status.code(), Some(7), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "replica=web-1");
    let logs = c
        .wait_for(
            "a health-check request in web-0's log",
            fixture::WAIT,
            || async {
                let query = LogQuery {
                    tail: 50,
                    ..LogQuery::default()
                };
                let mut out = Vec::new();
                client(&c, &follower)
                    .logs("web-0", &query, &mut out)
                    .await
                    .ok()?;
                let text = String::from_utf8(out).ok()?;
                text.contains("GET / HTTP/1.1").then_some(text)
            },
        )
        .await;
    assert!(logs.lines().count() >= 1, "{logs}");

    // Leader failover: agents reconnect to the new leader; no process restarts.
    let leader = c.wait_for_leader().await;
    c.kill9(leader);
    let after = c
        .wait_for(
            "agents to report to the new leader",
            Duration::from_secs(60),
            || async { healthy(&c).await.filter(|m| m.len() == 3) },
        )
        .await;
    assert_eq!(after, running, "the same processes, on the same nodes");

    // Scale 3 -> 1 -> 0: the extra processes stop, then all of them, on every node.
    let survivor = c.running()[0];
    apply(&c, survivor, &WEB.replace("replicas: 3", "replicas: 1")).await;
    c.wait_for("web-1 and web-2 to stop", fixture::WAIT, || async {
        running
            .iter()
            .filter(|(id, _)| id.as_str() != "web-0")
            .all(|(_, (_, pid))| !alive(*pid))
            .then_some(())
    })
    .await;
    assert!(alive(running["web-0"].1), "web-0 keeps running");
    apply(&c, survivor, &WEB.replace("replicas: 3", "replicas: 0")).await;
    c.wait_for("every replica process to stop", fixture::WAIT, || async {
        running.values().all(|(_, pid)| !alive(*pid)).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_of_a_dead_agent_are_placed_on_the_other_node() {
    let mut c = TestCluster::start(3).await;
    c.spawn_agent("n1").await;
    c.spawn_agent("n2").await;
    apply(&c, 1, WEB).await;
    let running = c
        .wait_for("3 healthy replicas", Duration::from_secs(60), || async {
            healthy(&c).await.filter(|m| m.len() == 3)
        })
        .await;
    let victim = running
        .values()
        .next()
        .map(|(n, _)| n.clone())
        .expect("a node");
    let survivor = if victim == "n1" { "n2" } else { "n1" };

    let killed_at = tokio::time::Instant::now();
    c.kill_agent(&victim);
    let moved = c
        .wait_for(
            "every replica healthy on the surviving node",
            Duration::from_secs(60),
            || async {
                healthy(&c)
                    .await
                    .filter(|m| m.len() == 3 && m.values().all(|(n, _)| n == survivor))
            },
        )
        .await;
    eprintln!(
        "replicas of {victim} healthy on {survivor} {:?} after kill -9 of its agent",
        killed_at.elapsed()
    );
    assert_eq!(moved.len(), 3);
}

async fn observed(c: &TestCluster, id: &str) -> Option<orion_api::agent_proto::ReplicaReport> {
    replica_list(c).await?.observed.get(id).cloned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_replica_restarts_and_a_missing_command_says_why() {
    let mut c = TestCluster::start(3).await;
    c.spawn_agent("n1").await;
    let one = WEB.replace("replicas: 3", "replicas: 1");
    let broken = "kind: Service\nname: broken\ncommand: [orion-no-such-program]\nrestart: {backoff: {initial: 1s, max: 10s}}\n";
    apply(&c, 2, &format!("{one}---\n{broken}")).await;

    let first = c
        .wait_for("web-0 healthy", Duration::from_secs(60), || async {
            observed(&c, "web-0")
                .await
                .filter(|r| r.state == ReplicaState::Healthy && r.pid.is_some())
        })
        .await;
    let pid = first.pid.expect("pid");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill the replica");
    let again = c
        .wait_for(
            "web-0 restarted and healthy",
            Duration::from_secs(60),
            || async {
                observed(&c, "web-0").await.filter(|r| {
                    r.state == ReplicaState::Healthy
                        && r.restarts >= 1
                        && r.pid.is_some_and(|p| p != pid)
                })
            },
        )
        .await;
    assert_eq!(again.restarts, 1, "{again:?}");

    let failed = c
        .wait_for("broken-0 failed with a reason", fixture::WAIT, || async {
            observed(&c, "broken-0")
                .await
                .filter(|r| r.state == ReplicaState::Failed)
        })
        .await;
    let reason = failed.reason.unwrap_or_default();
    assert!(
        reason.contains("orion-no-such-program") && reason.contains("not found"),
        "{reason}"
    );
    let out = c
        .cli()
        .args(["describe", "service", "broken", "--server", &c.url(3)])
        .output()
        .expect("orion describe");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("not found"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_failing_its_health_check_is_restarted() {
    let mut c = TestCluster::start(3).await;
    c.spawn_agent("n1").await;
    let sick = "kind: Service\nname: sick\ncommand: [sleep, '1000']\nhealth: {exec: {command: ['false']}, interval: 300ms, timeout: 1s, failures: 2, startup_grace: 1s}\nrestart: {backoff: {initial: 200ms, max: 1s}}\n";
    apply(&c, 3, sick).await;
    let r = c
        .wait_for(
            "sick-0 restarted by its failing health check",
            Duration::from_secs(60),
            || async { observed(&c, "sick-0").await.filter(|r| r.restarts >= 1) },
        )
        .await;
    assert!(r.restarts >= 1, "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orion_restart_replaces_the_process_whatever_the_policy_and_counts_it() {
    let mut c = TestCluster::start(3).await;
    c.spawn_agent("n1").await;
    // `never`: the restart policy would not bring it back; `orion restart` does.
    let sleeper = "kind: Service\nname: sleeper\ncommand: [sleep, '3600']\nrestart: {policy: never}\nresources: {cpu: 10m, memory: 8Mi}\n";
    apply(&c, 1, sleeper).await;
    let first = c
        .wait_for("sleeper-0 running", Duration::from_secs(60), || async {
            observed(&c, "sleeper-0")
                .await
                .filter(|r| r.state == ReplicaState::Running && r.pid.is_some())
        })
        .await;
    let old_pid = first.pid.expect("pid");
    assert!(alive(old_pid));

    // Through a follower: relayed to the leader, which asks the agent.
    let follower = c.url(c.follower().await);
    let out = c
        .cli()
        .args(["restart", "sleeper-0", "--server", &follower])
        .output()
        .expect("orion restart");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "orion restart: {text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("restarted sleeper-0 on node n1") && text.contains(", 1 restarts"),
        "{text}"
    );
    let again = c
        .wait_for(
            "sleeper-0 running again under a new pid",
            Duration::from_secs(60),
            || async {
                observed(&c, "sleeper-0").await.filter(|r| {
                    r.state == ReplicaState::Running
                        && r.restarts == first.restarts + 1
                        && r.pid.is_some_and(|p| p != old_pid)
                })
            },
        )
        .await;
    assert!(
        text.contains(&format!("pid {}", again.pid.unwrap_or(0))),
        "the CLI names the new process: {text} {again:?}"
    );
    c.wait_for(
        "the old process to be gone",
        Duration::from_secs(30),
        || async { (!alive(old_pid)).then_some(()) },
    )
    .await;

    // A readonly token may not; an unknown replica is named.
    let readonly = c.token("readonly", 600).await;
    let out = c
        .cli()
        .env("ORION_TOKEN", &readonly)
        .args(["restart", "sleeper-0", "--server", &c.url(1)])
        .output()
        .expect("orion restart");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("readonly"),
        "readonly is refused: {err}"
    );
    let out = c
        .cli()
        .args(["restart", "nothing-0", "--server", &c.url(1)])
        .output()
        .expect("orion restart");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("nothing-0") && err.contains("does not exist"),
        "{err}"
    );
    let now = observed(&c, "sleeper-0").await.expect("sleeper-0");
    assert_eq!(now.restarts, first.restarts + 1, "one restart: {now:?}");
    c.assert_no_unexpected_errors(&["timeout while confirming leadership"]);
}
