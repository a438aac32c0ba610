//! An Orion cluster on [`Net`] hosts: one `orion server` per host namespace, with
//! real TLS: host 1 bootstraps, the others join with join tokens minted through the
//! API. Every call here must run on a thread inside the client namespace (see
//! [`Net::enter_client_ns`]). Dropping the cluster kills its processes.

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

use anyhow::{bail, Context};
use tokio::time::Instant;

use crate::hosts::{Host, Net};

pub const API_PORT: u16 = 7400;

pub struct Peer {
    pub host: Host,
    pub child: Option<Child>,
    pub data: PathBuf,
    pub log: PathBuf,
}

impl Peer {
    pub fn url(&self) -> String {
        format!("https://{}:{API_PORT}", self.host.ip)
    }
    pub fn pid(&self) -> Option<i32> {
        self.child.as_ref().and_then(|c| i32::try_from(c.id()).ok())
    }
}

pub struct Cluster {
    pub orion: PathBuf,
    pub peers: Vec<Peer>,
    /// An admin client trusting the cluster CA.
    pub http: reqwest::Client,
    pub ca_pem: String,
    pub admin_token: String,
}

/// A client that trusts `ca_pem` and sends `token`.
pub fn client(ca_pem: &str, token: &str, timeout: Duration) -> anyhow::Result<reqwest::Client> {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {}", token.trim()).parse()?,
    );
    Ok(reqwest::Client::builder()
        .use_preconfigured_tls(orion_tls::config::client_config(ca_pem, None)?)
        .default_headers(headers)
        .connect_timeout(Duration::from_millis(500))
        .timeout(timeout)
        .build()?)
}

fn spawn(net: &Net, orion: &Path, peer: &Peer, extra: &[String]) -> anyhow::Result<Child> {
    let config = peer.data.with_extension("toml");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&peer.log)?;
    let ip = &peer.host.ip;
    let child = net
        .command(&peer.host, &orion.to_string_lossy())
        .arg("server")
        .arg("--config")
        .arg(&config)
        .args(["--id", &peer.host.index.to_string()])
        .arg("--data-dir")
        .arg(&peer.data)
        .args(["--api-addr", &format!("{ip}:{API_PORT}")])
        .args(["--peer-addr", &format!("{ip}:7500")])
        .args(["--agent-addr", &format!("{ip}:7600")])
        .args(extra)
        .env("ORION_LOG", "info,openraft=warn")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("cannot start orion server")?;
    Ok(child)
}

async fn until<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return Ok(v);
        }
        if Instant::now() > deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

impl Cluster {
    /// Starts a peer on every host of `net`, data and logs under `dir`, each with
    /// `config_toml` as its config file (flags set the addresses and id).
    pub async fn start(
        net: &Net,
        orion: &Path,
        dir: &Path,
        config_toml: &str,
    ) -> anyhow::Result<Self> {
        for h in &net.hosts {
            std::fs::write(dir.join(format!("peer-{}.toml", h.index)), config_toml)?;
        }
        let mut peers: Vec<Peer> = net
            .hosts
            .iter()
            .map(|h| Peer {
                host: h.clone(),
                child: None,
                data: dir.join(format!("peer-{}", h.index)),
                log: dir.join(format!("peer-{}.log", h.index)),
            })
            .collect();
        let first = peers.first().context("no hosts")?;
        let child = spawn(net, orion, first, &["--bootstrap".into()])?;
        let data = first.data.clone();
        if let Some(p) = peers.first_mut() {
            p.child = Some(child);
        }
        let (ca_pem, admin_token) =
            until("the bootstrap admin token", Duration::from_secs(30), || {
                let data = data.clone();
                async move {
                    let ca = std::fs::read_to_string(data.join("tls/ca.crt")).ok()?;
                    let token = std::fs::read_to_string(data.join("admin.token")).ok()?;
                    Some((ca, token.trim().to_string()))
                }
            })
            .await?;
        let http = client(&ca_pem, &admin_token, Duration::from_secs(10))?;
        let mut cluster = Cluster {
            orion: orion.to_path_buf(),
            peers: Vec::new(),
            http,
            ca_pem,
            admin_token,
        };
        let join = peers[0].url();
        for p in peers.iter_mut().skip(1) {
            let token = cluster.mint("server", &join).await?;
            p.child = Some(spawn(
                net,
                orion,
                p,
                &["--join".into(), join.clone(), "--token".into(), token],
            )?);
        }
        cluster.peers = peers;
        let n = cluster.peers.len();
        // Every peer, not just the leader, must know the final membership and the
        // same leader before faults start: a peer that still thinks it is a learner
        // would not stand for election.
        cluster
            .wait_for(
                "every peer to see every voter",
                Duration::from_secs(60),
                |c| async move {
                    let mut leaders = Vec::new();
                    for p in &c.peers {
                        let s = c.get(&p.url(), "/v1/cluster/status").await?;
                        if s["voters"].as_array()?.len() != n {
                            return None;
                        }
                        leaders.push(s["leader"].as_u64()?);
                    }
                    leaders.windows(2).all(|w| w[0] == w[1]).then_some(())
                },
            )
            .await?;
        Ok(cluster)
    }

    async fn mint(&self, role: &str, url: &str) -> anyhow::Result<String> {
        let body = serde_json::json!({"role": role, "ttl_seconds": 600});
        let v: serde_json::Value = self
            .http
            .post(format!("{url}/v1/tokens"))
            .json(&body)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        v["token"]
            .as_str()
            .map(str::to_string)
            .context("no token in the answer")
    }

    pub async fn get(&self, base: &str, path: &str) -> Option<serde_json::Value> {
        let r = self
            .http
            .get(format!("{base}{path}"))
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .ok()?;
        if !r.status().is_success() {
            return None;
        }
        r.json().await.ok()
    }

    pub async fn wait_for<'a, T, F, Fut>(
        &'a self,
        what: &str,
        timeout: Duration,
        mut f: F,
    ) -> anyhow::Result<T>
    where
        F: FnMut(&'a Self) -> Fut,
        Fut: std::future::Future<Output = Option<T>> + 'a,
    {
        until(what, timeout, || f(self)).await
    }

    /// The leader as peer `index` sees it.
    pub async fn leader_seen_by(&self, index: usize) -> Option<u64> {
        let p = self.peers.get(index.checked_sub(1)?)?;
        let s = self.get(&p.url(), "/v1/cluster/status").await?;
        s["leader"].as_u64()
    }

    /// SIGKILL one peer.
    pub fn kill(&mut self, index: usize) {
        if let Some(mut c) = self
            .peers
            .get_mut(index.wrapping_sub(1))
            .and_then(|p| p.child.take())
        {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts a killed peer again on its data.
    pub fn restart(&mut self, net: &Net, index: usize) -> anyhow::Result<()> {
        let orion = self.orion.clone();
        let p = self
            .peers
            .get_mut(index.wrapping_sub(1))
            .context("no such peer")?;
        if p.child.is_none() {
            p.child = Some(spawn(net, &orion, p, &[])?);
        }
        Ok(())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for p in &mut self.peers {
            if let Some(mut c) = p.child.take() {
                // A paused process must be continued to die promptly on SIGKILL's
                // heels; SIGKILL works on stopped processes anyway.
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}
