//! A cluster on real host addresses, started exactly as README "Running a cluster"
//! says: three peers on 127.0.0.11–13 (each its own address, as on three machines),
//! given only `--api-addr` and `--peer-addr`, so the agent gateway's address is the
//! default; an agent given the three API URLs; a service applied and running. Then
//! every peer restarts with another `--agent-addr`, and the membership, `GET
//! /v1/cluster/ca` and the agent follow.
//!
//! Ports are the OS's (port 0; each peer writes the ones it got to its listen file)
//! and kept across restarts, as fixed ports would be on real machines.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;
use orion_api::{AgentBootstrap, MemberRole, MembersResponse};
use serde_json::Value;
use tokio::time::Instant;

const WAIT: Duration = Duration::from_secs(60);
const HOSTS: [&str; 3] = ["127.0.0.11", "127.0.0.12", "127.0.0.13"];
/// Where each peer's agent gateway moves when it restarts.
const NEW_AGENT_HOSTS: [&str; 3] = ["127.0.0.31", "127.0.0.32", "127.0.0.33"];
/// The agent's machine: its replicas serve here.
const AGENT_HOST: &str = "127.0.0.21";

fn service(replicas: u32) -> String {
    format!(
        "kind: Service\nname: web\nreplicas: {replicas}\n\
         command: [\"python3\", \"-m\", \"http.server\", \"--bind\", \"{AGENT_HOST}\", \"${{PORT}}\"]\n\
         ports: [http]\n"
    )
}

/// The processes of one test; dropping it kills them and the replicas, also when
/// the test fails.
struct Hosts {
    dir: tempfile::TempDir,
    peers: BTreeMap<u64, Child>,
    agent: Option<Child>,
}

impl Hosts {
    fn new() -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        Hosts {
            dir: tempfile::tempdir().expect("temp dir"),
            peers: BTreeMap::new(),
            agent: None,
        }
    }

    fn data_dir(&self, id: u64) -> PathBuf {
        self.dir.path().join(format!("peer-{id}"))
    }

    fn agent_dir(&self) -> PathBuf {
        self.dir.path().join("agent")
    }

    fn log(&self, name: &str) -> std::fs::File {
        std::fs::File::options()
            .create(true)
            .append(true)
            .open(self.dir.path().join(format!("{name}.log")))
            .expect("log file")
    }

    /// The `orion` binary with the config file in the temp dir (for `context add`).
    fn orion(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_orion"));
        cmd.env("ORION_CONFIG", self.dir.path().join("config.yaml"))
            .env_remove("ORION_SERVER")
            .env_remove("ORION_TOKEN")
            .env_remove("ORION_CA_FILE")
            .env_remove("ORION_CONTEXT")
            .env("ORION_LOG", "info,openraft=warn")
            .stdin(Stdio::null());
        cmd
    }

    /// Runs a CLI command to completion; panics with its stderr if it fails.
    fn run(&self, args: &[&str]) -> String {
        let out: Output = self.orion().args(args).output().expect("run orion");
        let stderr = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() {
            self.dump_logs();
            panic!("orion {args:?} failed: {stderr}");
        }
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    // The child is kept in `self.peers` and reaped by `stop` or `Drop`.
    #[allow(clippy::zombie_processes)]
    fn spawn_peer(&mut self, id: u64, args: &[&str]) {
        let log = self.log(&format!("peer-{id}"));
        let child = self
            .orion()
            .args(["server", "--id", &id.to_string(), "--data-dir"])
            .arg(self.data_dir(id))
            .args(args)
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn orion server");
        self.peers.insert(id, child);
    }

    /// SIGTERM and wait for a clean exit.
    async fn stop(&mut self, id: u64) {
        let Some(mut child) = self.peers.remove(&id) else {
            return;
        };
        if let Ok(pid) = i32::try_from(child.id()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
        let exited = self
            .wait_for(&format!("peer {id} to exit on SIGTERM"), || {
                let done = child.try_wait().ok().flatten();
                async move { done }
            })
            .await;
        assert!(exited.success(), "peer {id} exited with {exited}");
    }

    /// The addresses peer `id` listens on, from its listen file.
    async fn listening(&self, id: u64) -> BTreeMap<String, SocketAddr> {
        let file = self.data_dir(id).join(orion_apiserver::server::LISTEN_FILE);
        self.wait_for(&format!("peer {id}'s listen file"), || async {
            let text = std::fs::read_to_string(&file).ok()?;
            let map: BTreeMap<String, String> = serde_json::from_str(&text).ok()?;
            map.into_iter()
                .map(|(k, v)| Some((k, v.parse().ok()?)))
                .collect()
        })
        .await
    }

    async fn wait_for<T, F, Fut>(&self, what: &str, mut cond: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(v) = cond().await {
                return v;
            }
            if Instant::now() > deadline {
                self.dump_logs();
                panic!("timed out after {WAIT:?} waiting for {what}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn dump_logs(&self) {
        let Ok(entries) = std::fs::read_dir(self.dir.path()) else {
            return;
        };
        for e in entries.filter_map(|e| e.ok()) {
            let name = e.file_name().to_string_lossy().into_owned();
            if !name.ends_with(".log") {
                continue;
            }
            let text = std::fs::read_to_string(e.path()).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(30).collect();
            eprintln!("----- {name} (last {} lines) -----", tail.len());
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
        }
    }

    fn replica_groups(&self) -> Vec<i32> {
        let dir = self.agent_dir().join("supervisor").join("replicas");
        std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok())
            .filter_map(|e| std::fs::read(e.path()).ok())
            .filter_map(|b| serde_json::from_slice::<Value>(&b).ok())
            .filter_map(|v| v.get("pgid").and_then(Value::as_i64))
            .filter_map(|g| i32::try_from(g).ok())
            .collect()
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.dump_logs();
        }
        for child in self.peers.values_mut().chain(self.agent.as_mut()) {
            let _ = child.kill();
            let _ = child.wait();
        }
        // Replicas outlive their agent by design; end them here.
        for group in self.replica_groups() {
            let _ = killpg(Pid::from_raw(group), Signal::SIGKILL);
        }
    }
}

/// The `orion.…` token in a `token create` answer.
fn token_in(out: &str) -> String {
    out.split_whitespace()
        .find(|w| w.starts_with("orion."))
        .unwrap_or_else(|| panic!("no token in {out:?}"))
        .to_string()
}

/// The CA in the context file's folder, which clients of these peers trust.
struct Trust(String);

/// The agent gateways peer `api` announces (`GET /v1/cluster/ca`), sorted.
async fn agent_addrs(trust: &Trust, api: SocketAddr) -> Option<Vec<String>> {
    let client = orion_client::Client::new(&[format!("https://{api}")], &trust.0, None)
        .ok()?
        .with_timeout(Duration::from_secs(10));
    let boot: AgentBootstrap = client.bootstrap().await.ok()?;
    let mut addrs = boot.agent_addrs;
    addrs.sort();
    Some(addrs)
}

/// Replicas of `web` the agent reports running, per the CLI.
fn running_replicas(h: &Hosts) -> Option<usize> {
    let out = h
        .orion()
        .args(["get", "replicas", "-o", "json"])
        .output()
        .ok()?;
    let v: Value = serde_json::from_slice(&out.stdout).ok()?;
    let observed = v["observed"].as_object()?;
    Some(
        observed
            .iter()
            .filter(|(id, _)| id.starts_with("web-"))
            .filter(|(_, r)| matches!(r["state"].as_str(), Some("running" | "healthy")))
            .count(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_peers_on_their_own_addresses_run_a_service_and_follow_a_moved_gateway() {
    let mut h = Hosts::new();
    let data1 = h.data_dir(1);
    let mut ports = start_three(&mut h).await;
    let members = h
        .wait_for("three voters", || async {
            let out = h
                .orion()
                .args(["cluster", "members", "-o", "json"])
                .output()
                .ok()?;
            let m: MembersResponse = serde_json::from_slice(&out.stdout).ok()?;
            let voters = m
                .members
                .iter()
                .filter(|x| x.role == MemberRole::Voter)
                .count();
            (voters == 3).then_some(m)
        })
        .await;
    // Every address is the peer's own host, none loopback's 127.0.0.1.
    for m in &members.members {
        let host = HOSTS[m.id as usize - 1];
        assert!(
            m.api_addr.starts_with(&format!("{host}:"))
                && m.peer_addr.starts_with(&format!("{host}:")),
            "{m:?}"
        );
    }
    let ca_pem = std::fs::read_to_string(data1.join("tls/ca.crt")).expect("CA");
    let trust = Trust(ca_pem.to_string());
    let mut gateways: Vec<String> = (1..=3u64)
        .map(|id| ports[&id]["agent"].to_string())
        .collect();
    gateways.sort();
    for id in 1..=3u64 {
        let host = HOSTS[id as usize - 1];
        assert_eq!(
            ports[&id]["agent"].ip().to_string(),
            host,
            "the gateway defaults to the API host"
        );
    }
    let seen = h
        .wait_for("GET /v1/cluster/ca to list the three gateways", || async {
            agent_addrs(&trust, ports[&2]["api"]).await
        })
        .await;
    assert_eq!(seen, gateways);

    // agents
    let token = token_in(&h.run(&["token", "create", "--role", "agent", "--ttl", "1h"]));
    let servers: Vec<String> = (1..=3u64)
        .map(|id| format!("https://{}", ports[&id]["api"]))
        .collect();
    let log = h.log("agent");
    let agent = h
        .orion()
        .args(["agent", "--servers", &servers.join(","), "--token", &token])
        .args(["--name", "node-21", "--data-dir"])
        .arg(h.agent_dir())
        .args(["--cpu-millis", "2000", "--memory-bytes", "1073741824"])
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("spawn orion agent");
    h.agent = Some(agent);

    let spec = h.dir.path().join("web.yaml");
    std::fs::write(&spec, service(2)).expect("write spec");
    let spec_path = spec.to_str().expect("utf-8 path");
    h.run(&["apply", "-f", spec_path]);
    h.wait_for("2 replicas of web running", || async {
        (running_replicas(&h)? == 2).then_some(())
    })
    .await;

    // Every peer restarts, one at a time, with its gateway on another address.
    // API and Raft ports stay, as fixed ports would on real machines.
    for id in 1..=3u64 {
        h.stop(id).await;
        let api = ports[&id]["api"].to_string();
        let peer = ports[&id]["peer"].to_string();
        let agent_addr = format!("{}:0", NEW_AGENT_HOSTS[id as usize - 1]);
        h.spawn_peer(
            id,
            &[
                "--api-addr",
                &api,
                "--peer-addr",
                &peer,
                "--agent-addr",
                &agent_addr,
            ],
        );
        let now = h
            .wait_for(&format!("peer {id}'s new gateway"), || async {
                let l = h.listening(id).await;
                (l["agent"].ip().to_string() == NEW_AGENT_HOSTS[id as usize - 1]).then_some(l)
            })
            .await;
        ports.insert(id, now);
        let mut want: Vec<String> = (1..=3u64).map(|i| ports[&i]["agent"].to_string()).collect();
        want.sort();
        // Every peer's answer follows, the restarted one's included.
        for via in 1..=3u64 {
            let api = ports[&via]["api"];
            h.wait_for(
                &format!("GET /v1/cluster/ca via peer {via} to list {want:?}"),
                || async { (agent_addrs(&trust, api).await? == want).then_some(()) },
            )
            .await;
        }
    }
    // The members' other addresses did not move.
    let after: MembersResponse =
        serde_json::from_str(&h.run(&["cluster", "members", "-o", "json"])).expect("members");
    let addrs = |m: &MembersResponse| -> Vec<(u64, String, String)> {
        m.members
            .iter()
            .map(|x| (x.id, x.api_addr.clone(), x.peer_addr.clone()))
            .collect()
    };
    assert_eq!(addrs(&after), addrs(&members));
    for m in &after.members {
        assert_eq!(m.agent_addr, ports[&m.id]["agent"].to_string(), "{m:?}");
    }

    // The agent lost every gateway it knew and found the new ones: it runs a
    // scale-up placed after the last restart.
    std::fs::write(&spec, service(3)).expect("write spec");
    h.run(&["apply", "-f", spec_path]);
    h.wait_for("3 replicas of web running", || async {
        (running_replicas(&h)? == 3).then_some(())
    })
    .await;
    let agent_log = std::fs::read_to_string(h.dir.path().join("agent.log")).unwrap_or_default();
    let last = agent_log
        .lines()
        .rev()
        .find(|l| l.contains("connected to the leader"))
        .unwrap_or_default();
    assert!(
        NEW_AGENT_HOSTS.iter().any(|host| last.contains(host)),
        "the agent's session is with a moved gateway: {last:?}"
    );
}

#[test]
fn a_peer_on_every_interface_refuses_to_start_without_an_advertised_address() {
    let h = Hosts::new();
    let out = h
        .orion()
        .args([
            "server",
            "--id",
            "1",
            "--api-addr",
            "0.0.0.0:0",
            "--bootstrap",
        ])
        .arg("--data-dir")
        .arg(h.data_dir(1))
        .output()
        .expect("run orion server");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "must refuse: {err}");
    assert!(
        err.contains("listens on every interface") && err.contains("advertise-api-addr"),
        "{err}"
    );
    assert!(!h.data_dir(1).exists(), "nothing is created: {err}");
}

/// Starts three peers as README "Running a cluster" says; returns their listen
/// addresses by id.
async fn start_three(h: &mut Hosts) -> BTreeMap<u64, BTreeMap<String, SocketAddr>> {
    let api1 = format!("{}:0", HOSTS[0]);
    h.spawn_peer(
        1,
        &["--api-addr", &api1, "--peer-addr", &api1, "--bootstrap"],
    );
    let mut ports = BTreeMap::new();
    ports.insert(1, h.listening(1).await);
    let token_file = h.data_dir(1).join("admin.token");
    let admin = h
        .wait_for("the bootstrap admin token", || async {
            std::fs::read_to_string(&token_file).ok()
        })
        .await;
    let url1 = format!("https://{}", ports[&1]["api"]);
    h.run(&[
        "context",
        "add",
        "prod",
        "--server",
        &url1,
        "--token",
        admin.trim(),
    ]);
    for id in [2u64, 3] {
        let token = token_in(&h.run(&["token", "create", "--role", "server", "--ttl", "1h"]));
        let api = format!("{}:0", HOSTS[id as usize - 1]);
        h.spawn_peer(
            id,
            &[
                "--api-addr",
                &api,
                "--peer-addr",
                &api,
                "--join",
                &url1,
                "--token",
                &token,
            ],
        );
        ports.insert(id, h.listening(id).await);
    }
    ports
}

/// The members once they are three voters, every one of them caught up.
async fn three_voters(h: &Hosts) -> MembersResponse {
    h.wait_for("three voters, all caught up", || async {
        let out = h
            .orion()
            .args(["cluster", "members", "-o", "json"])
            .output()
            .ok()?;
        let m: MembersResponse = serde_json::from_slice(&out.stdout).ok()?;
        let ok = m.members.len() == 3
            && m.members
                .iter()
                .all(|x| x.role == MemberRole::Voter && x.lag == Some(0));
        ok.then_some(m)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_restarted_with_another_raft_address_is_reached_there() {
    let mut h = Hosts::new();
    let ports = start_three(&mut h).await;
    three_voters(&h).await;
    // Peer 3 moves its Raft listener; its API stays where clients know it.
    const MOVED: &str = "127.0.0.43";
    h.stop(3).await;
    let api = ports[&3]["api"].to_string();
    let peer = format!("{MOVED}:0");
    h.spawn_peer(3, &["--api-addr", &api, "--peer-addr", &peer]);
    let moved = h
        .wait_for("peer 3's new Raft listener", || async {
            let l = h.listening(3).await;
            (l["peer"].ip().to_string() == MOVED).then_some(l["peer"])
        })
        .await;
    // The membership records it, and the leader replicates to it there: a write
    // made now reaches peer 3 (lag 0 on every member).
    h.run(&["var", "put", "moved/peer", "3"]);
    let m = three_voters(&h).await;
    let three = m.members.iter().find(|x| x.id == 3).expect("member 3");
    assert_eq!(three.peer_addr, moved.to_string());
    assert_eq!(three.api_addr, api);
    // Peer 3 has applied it (answered from its own state).
    let url3 = format!("https://{api}");
    let out = h.run(&["var", "get", "moved/peer", "--stale", "--server", &url3]);
    assert!(out.contains('3'), "{out}");
}
