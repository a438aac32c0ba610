//! Three `orion server` peers: peer 1 bootstraps on OS-chosen ports (read back from its
//! `listen.json`), the others join it with single-use server tokens minted through its
//! API, as `orion dev` does. A restarted peer gets the ports it had, so its peers find it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use orion_api::ClusterStatus;

use super::{wait_until, SIZE};
use crate::kv::{http_client, Kv, System};
use crate::member::Member;

/// The file a peer writes its listening addresses to (`orion_apiserver::server::LISTEN_FILE`).
const LISTEN_FILE: &str = "listen.json";

pub struct OrionCluster {
    /// Peer i+1. Declared before `dir` so the processes die before their data is removed.
    pub members: Vec<Member>,
    pub kv: Kv,
    dir: tempfile::TempDir,
}

fn server_args(id: usize, data: &Path, ports: (u16, u16, u16)) -> Vec<String> {
    vec![
        "server".into(),
        "--id".into(),
        id.to_string(),
        "--data-dir".into(),
        data.display().to_string(),
        "--api-addr".into(),
        format!("127.0.0.1:{}", ports.0),
        "--peer-addr".into(),
        format!("127.0.0.1:{}", ports.1),
        "--agent-addr".into(),
        format!("127.0.0.1:{}", ports.2),
    ]
}

impl OrionCluster {
    pub async fn start(orion: &Path, clients: usize) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("orion-bench-orion-")
            .tempdir()
            .context("temp dir")?;
        let mut c = OrionCluster {
            members: Vec::new(),
            kv: Kv {
                system: System::Orion,
                http: reqwest::Client::new(),
                urls: Vec::new(),
            },
            dir,
        };
        for id in 1..=SIZE {
            c.spawn(orion, id, clients).await?;
        }
        c.wait_healthy().await?;
        Ok(c)
    }

    fn data_dir(&self, id: usize) -> PathBuf {
        self.dir.path().join(format!("peer-{id}"))
    }

    async fn spawn(&mut self, orion: &Path, id: usize, clients: usize) -> anyhow::Result<()> {
        let data = self.data_dir(id);
        let mut args = server_args(id, &data, (0, 0, 0));
        let mut member = Member::new(
            orion,
            Vec::new(),
            self.dir.path().join(format!("peer-{id}.log")),
        )
        .env("ORION_LOG", "warn");
        if id == 1 {
            args.push("--bootstrap".into());
        } else {
            // In the environment, not on the command line where `ps` shows it.
            let token = self.join_token().await?;
            member = member.env("ORION_JOIN_TOKEN", &token);
            args.extend(["--join".into(), self.kv.urls[0].clone()]);
        }
        member.set_args(args);
        member.start()?;
        self.members.push(member);
        let file = data.join(LISTEN_FILE);
        let ports = wait_until(
            &format!("orion peer {id} to write {LISTEN_FILE}"),
            &mut self.members,
            || async { read_ports(&file) },
        )
        .await?;
        let url = format!("https://127.0.0.1:{}", ports.0);
        if let Some(m) = self.members.last_mut() {
            m.url = url.clone();
            // A restart binds the same ports and neither bootstraps nor joins again.
            m.set_args(server_args(id, &data, ports));
            m.remove_env("ORION_JOIN_TOKEN");
        }
        self.kv.urls.push(url);
        if id == 1 {
            let (ca, token) = wait_until(
                "peer 1 to write its CA and admin token",
                &mut self.members,
                || async {
                    let ca = std::fs::read_to_string(data.join("tls/ca.crt")).ok()?;
                    let token = std::fs::read_to_string(data.join("admin.token")).ok()?;
                    Some((ca, token))
                },
            )
            .await?;
            self.kv.http = http_client(&ca, Some(&token), clients)?;
        }
        Ok(())
    }

    async fn join_token(&mut self) -> anyhow::Result<String> {
        let http = self.kv.http.clone();
        let url = format!("{}/v1/tokens", self.kv.urls[0]);
        wait_until("a server join token from peer 1", &mut self.members, || async {
            let r = http
                .post(&url)
                .json(&serde_json::json!({"role": "server", "ttl_seconds": 600, "description": "orion-bench"}))
                .send()
                .await
                .ok()?;
            if !r.status().is_success() {
                return None;
            }
            let v: serde_json::Value = r.json().await.ok()?;
            v["token"].as_str().map(str::to_string)
        })
        .await
    }

    /// Waits until every running peer answers, names the same running leader, sees three
    /// voters, and has applied (in a second round of asking) what the leader had logged
    /// in the first, so this also works under load; returns the leader's index.
    pub async fn wait_healthy(&mut self) -> anyhow::Result<usize> {
        let kv = self.kv.clone();
        let running: Vec<usize> = (0..self.members.len())
            .filter(|i| self.members[*i].is_running())
            .collect();
        wait_until(
            "all orion peers to agree on a leader",
            &mut self.members,
            || async {
                let first = statuses(&kv, &running).await?;
                let leader = first.first()?.leader?;
                let index = usize::try_from(leader).ok()?.checked_sub(1)?;
                let leader_log = first.iter().find(|s| s.id == leader)?.last_log_index;
                let second = statuses(&kv, &running).await?;
                let ok = running.contains(&index)
                    && first
                        .iter()
                        .chain(&second)
                        .all(|s| s.leader == Some(leader) && s.voters.len() == SIZE)
                    && second.iter().all(|s| s.last_applied >= leader_log);
                ok.then_some(index)
            },
        )
        .await
    }
}

async fn statuses(kv: &Kv, members: &[usize]) -> Option<Vec<ClusterStatus>> {
    let mut out = Vec::new();
    for &i in members {
        let r = kv
            .http
            .get(format!("{}/v1/cluster/status", kv.urls.get(i)?))
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .ok()?;
        out.push(r.json::<ClusterStatus>().await.ok()?);
    }
    Some(out)
}

fn read_ports(file: &Path) -> Option<(u16, u16, u16)> {
    let text = std::fs::read_to_string(file).ok()?;
    let map: BTreeMap<String, String> = serde_json::from_str(&text).ok()?;
    let port = |k: &str| -> Option<u16> {
        map.get(k)?
            .parse::<std::net::SocketAddr>()
            .ok()
            .map(|a| a.port())
    };
    Some((port("api")?, port("peer")?, port("agent")?))
}
