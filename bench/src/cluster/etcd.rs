//! Three etcd members on loopback with TLS on both the client and the peer URLs, from
//! a CA and certificates made here (rcgen, through `orion_tls::cert`). etcd cannot
//! report OS-chosen ports, so each port is taken from the OS (bind 127.0.0.1:0) and
//! released just before etcd binds it.

use std::net::TcpListener;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use serde::Deserialize;

use super::{wait_until, SIZE};
use crate::kv::{http_client, Kv, System};
use crate::member::Member;

pub struct EtcdCluster {
    /// Declared before `dir` so the processes die before their data is removed.
    pub members: Vec<Member>,
    pub kv: Kv,
    dir: tempfile::TempDir,
}

/// What `POST /v3/maintenance/status` answers (uint64s are JSON strings in the gateway).
#[derive(Debug, Deserialize)]
struct Status {
    header: Header,
    #[serde(default)]
    leader: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Header {
    member_id: String,
}

fn free_port() -> anyhow::Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0").context("cannot get a port from the OS")?;
    Ok(l.local_addr()?.port())
}

impl EtcdCluster {
    pub async fn start(etcd: &Path, clients: usize) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("orion-bench-etcd-")
            .tempdir()
            .context("temp dir")?;
        let (ca_pem, ca_key) = orion_tls::cert::generate_ca().context("etcd CA")?;
        let ca_file = dir.path().join("ca.crt");
        std::fs::write(&ca_file, &ca_pem)?;
        let mut ports = Vec::new();
        for _ in 0..SIZE {
            ports.push((free_port()?, free_port()?));
        }
        let initial: Vec<String> = ports
            .iter()
            .enumerate()
            .map(|(i, (_, peer))| format!("e{}=https://127.0.0.1:{peer}", i + 1))
            .collect();
        let mut members = Vec::new();
        for (i, &(client, peer)) in ports.iter().enumerate() {
            let name = format!("e{}", i + 1);
            let hosts = ["127.0.0.1".to_string(), "localhost".to_string()];
            let (cert, key) = orion_tls::cert::issue(
                &ca_key,
                &orion_tls::Identity::server(i as u64 + 1),
                &hosts,
                Duration::from_secs(7 * 24 * 3600),
            )
            .context("etcd member certificate")?;
            let cert_file = dir.path().join(format!("{name}.crt"));
            let key_file = dir.path().join(format!("{name}.key"));
            std::fs::write(&cert_file, cert)?;
            std::fs::write(&key_file, key)?;
            let client_url = format!("https://127.0.0.1:{client}");
            let peer_url = format!("https://127.0.0.1:{peer}");
            let f = |p: &Path| p.display().to_string();
            let args = vec![
                format!("--name={name}"),
                format!("--data-dir={}", f(&dir.path().join(&name))),
                format!("--listen-client-urls={client_url}"),
                format!("--advertise-client-urls={client_url}"),
                format!("--listen-peer-urls={peer_url}"),
                format!("--initial-advertise-peer-urls={peer_url}"),
                format!("--initial-cluster={}", initial.join(",")),
                "--initial-cluster-state=new".into(),
                "--initial-cluster-token=orion-bench".into(),
                format!("--cert-file={}", f(&cert_file)),
                format!("--key-file={}", f(&key_file)),
                format!("--peer-cert-file={}", f(&cert_file)),
                format!("--peer-key-file={}", f(&key_file)),
                format!("--peer-trusted-ca-file={}", f(&ca_file)),
                "--peer-client-cert-auth".into(),
                "--logger=zap".into(),
                "--log-level=warn".into(),
            ];
            let mut m = Member::new(etcd, args, dir.path().join(format!("{name}.log")));
            m.url = client_url;
            m.start()?;
            members.push(m);
        }
        let kv = Kv {
            system: System::Etcd,
            http: http_client(&ca_pem, None, clients)?,
            urls: members.iter().map(|m| m.url.clone()).collect(),
        };
        let mut c = EtcdCluster { members, kv, dir };
        c.wait_healthy().await?;
        Ok(c)
    }

    /// Waits until every running member answers and names the same leader, one of the
    /// running members; returns the leader's index.
    pub async fn wait_healthy(&mut self) -> anyhow::Result<usize> {
        let kv = self.kv.clone();
        let running: Vec<usize> = (0..self.members.len())
            .filter(|i| self.members[*i].is_running())
            .collect();
        let what = format!(
            "all etcd members to agree on a leader (data in {})",
            self.dir.path().display()
        );
        wait_until(&what, &mut self.members, || async {
            let mut ids = Vec::new();
            let mut leader = None;
            for &i in &running {
                let r = kv
                    .http
                    .post(format!("{}/v3/maintenance/status", kv.urls[i]))
                    .json(&serde_json::json!({}))
                    .timeout(Duration::from_secs(2))
                    .send()
                    .await
                    .ok()?;
                let s: Status = r.json().await.ok()?;
                let l = s.leader.filter(|l| l != "0")?;
                if leader.as_ref().is_some_and(|x| *x != l) {
                    return None;
                }
                leader = Some(l);
                ids.push((i, s.header.member_id));
            }
            let leader = leader?;
            ids.iter().find(|(_, id)| *id == leader).map(|(i, _)| *i)
        })
        .await
    }
}
