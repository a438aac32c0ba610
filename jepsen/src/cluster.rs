//! An Orion cluster on [`Net`] hosts: one `orion server` per peer slot (host
//! namespace), with real TLS: slot 1 bootstraps, the others join with join tokens
//! minted through the API. Every call here must run on a thread inside the client
//! namespace (see [`Net::enter_client_ns`]). Dropping the cluster kills its
//! processes.
//!
//! A slot is a host; the peer in it has an id. Membership changes replace the peer
//! of a slot by a fresh one with a new id and empty data, on the same address, so
//! clients pinned to a slot keep their URL.
//!
//! When libfaketime is installed every peer runs under it with an offset file
//! that [`crate::nemesis::clock`] rewrites, so its wall clock can be skewed while it
//! runs; its monotonic clock is left alone.

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

use anyhow::{bail, Context};
use tokio::time::Instant;

use crate::hosts::{Host, Net};

pub const API_PORT: u16 = 7400;

/// libfaketime's multi-threaded build, as Debian's `faketime` package installs it.
pub const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1";

pub struct Peer {
    /// 1-based; the host namespace `net.hosts[slot - 1]`.
    pub slot: usize,
    pub id: u64,
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
    /// The file libfaketime reads this peer's clock offset from.
    pub fn clock_file(&self) -> PathBuf {
        self.log.with_extension("faketime")
    }
}

pub struct Cluster {
    pub orion: PathBuf,
    pub dir: PathBuf,
    pub peers: Vec<Peer>,
    /// An admin client trusting the cluster CA.
    pub http: reqwest::Client,
    pub ca_pem: String,
    pub admin_token: String,
    /// The id the next fresh peer gets.
    next_id: u64,
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

/// Whether peers can have their clocks skewed here.
pub fn faketime_available() -> bool {
    Path::new(LIBFAKETIME).is_file()
}

fn spawn(net: &Net, orion: &Path, peer: &Peer, extra: &[String]) -> anyhow::Result<Child> {
    let config = peer.log.with_extension("toml");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&peer.log)?;
    let ip = &peer.host.ip;
    let mut cmd = net.command(&peer.host, &orion.to_string_lossy());
    cmd.arg("server")
        .arg("--config")
        .arg(&config)
        .args(["--id", &peer.id.to_string()])
        .arg("--data-dir")
        .arg(&peer.data)
        .args(["--api-addr", &format!("{ip}:{API_PORT}")])
        .args(["--peer-addr", &format!("{ip}:7500")])
        .args(["--agent-addr", &format!("{ip}:7600")])
        .args(extra)
        .env("ORION_LOG", "info,openraft=warn")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    if faketime_available() {
        let clock = peer.clock_file();
        if !clock.exists() {
            std::fs::write(&clock, "+0\n")?;
        }
        cmd.env("LD_PRELOAD", LIBFAKETIME)
            .env("FAKETIME_TIMESTAMP_FILE", &clock)
            .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
            .env("FAKETIME_CACHE_DURATION", "1");
    }
    cmd.spawn().context("cannot start orion server")
}

pub async fn until<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> anyhow::Result<T>
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

/// Sends the request made by `req` until it succeeds; a 503 (no leader within
/// the peer's hold time) is retried for up to 30 s, anything else fails, naming
/// `what` and the answer.
async fn retry_unavailable(
    what: &str,
    req: impl Fn() -> reqwest::RequestBuilder,
) -> anyhow::Result<reqwest::Response> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = req().send().await.with_context(|| what.to_string())?;
        let status = r.status();
        if status.is_success() {
            return Ok(r);
        }
        if status != reqwest::StatusCode::SERVICE_UNAVAILABLE || Instant::now() > deadline {
            bail!("{what}: {status} {}", r.text().await.unwrap_or_default());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

impl Cluster {
    /// Starts a peer on each of the first `n` hosts of `net`, data and logs under
    /// `dir`, each with `config_toml` as its config file (flags set the addresses
    /// and id).
    pub async fn start(
        net: &Net,
        n: usize,
        orion: &Path,
        dir: &Path,
        config_toml: &str,
    ) -> anyhow::Result<Self> {
        let hosts = net.hosts.get(..n).context("fewer hosts than peers")?;
        let mut peers: Vec<Peer> = hosts
            .iter()
            .map(|h| Peer {
                slot: h.index,
                id: h.index as u64,
                host: h.clone(),
                child: None,
                data: dir.join(format!("peer-{}", h.index)),
                log: dir.join(format!("peer-{}.log", h.index)),
            })
            .collect();
        for p in &peers {
            std::fs::write(p.log.with_extension("toml"), config_toml)?;
        }
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
            dir: dir.to_path_buf(),
            peers: Vec::new(),
            http,
            ca_pem,
            admin_token,
            next_id: n as u64 + 1,
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
        cluster.settled(Duration::from_secs(60)).await?;
        Ok(cluster)
    }

    /// Waits until every peer answers, sees every peer as a voter and names the
    /// same leader. A peer that still thinks it is a learner would not stand for
    /// election, so faults start only after this.
    pub async fn settled(&self, timeout: Duration) -> anyhow::Result<u64> {
        let mut ids: Vec<u64> = self.peers.iter().map(|p| p.id).collect();
        ids.sort_unstable();
        self.wait_for(
            "every peer to see every voter and one leader",
            timeout,
            |c| {
                let ids = ids.clone();
                async move {
                    let mut leaders = Vec::new();
                    for p in &c.peers {
                        let s = c.get(&p.url(), "/v1/cluster/status").await?;
                        let mut voters: Vec<u64> = s["voters"]
                            .as_array()?
                            .iter()
                            .filter_map(serde_json::Value::as_u64)
                            .collect();
                        voters.sort_unstable();
                        if voters != ids {
                            return None;
                        }
                        leaders.push(s["leader"].as_u64()?);
                    }
                    let first = *leaders.first()?;
                    leaders.iter().all(|l| *l == first).then_some(first)
                }
            },
        )
        .await
    }

    /// Mints a join token through `url`. A 503 (no leader within the peer's
    /// hold time, as during an election) is retried for up to 30 s.
    pub async fn mint(&self, role: &str, url: &str) -> anyhow::Result<String> {
        let body = serde_json::json!({"role": role, "ttl_seconds": 600});
        let req = || self.http.post(format!("{url}/v1/tokens")).json(&body);
        let v: serde_json::Value = retry_unavailable("minting a join token", req)
            .await?
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

    /// The leader as the peer in `slot` sees it.
    pub async fn leader_seen_by(&self, slot: usize) -> Option<u64> {
        let p = self.peer(slot)?;
        let s = self.get(&p.url(), "/v1/cluster/status").await?;
        s["leader"].as_u64()
    }

    /// The slot of the leader, as the first peer that names one sees it.
    pub async fn leader_slot(&self) -> Option<usize> {
        for p in &self.peers {
            if let Some(id) = self.leader_seen_by(p.slot).await {
                if let Some(l) = self.peers.iter().find(|q| q.id == id) {
                    return Some(l.slot);
                }
            }
        }
        None
    }

    pub fn peer(&self, slot: usize) -> Option<&Peer> {
        self.peers.get(slot.checked_sub(1)?)
    }

    fn peer_mut(&mut self, slot: usize) -> anyhow::Result<&mut Peer> {
        self.peers
            .get_mut(slot.wrapping_sub(1))
            .with_context(|| format!("no peer in slot {slot}"))
    }

    /// SIGKILL the peer in `slot`.
    pub fn kill(&mut self, slot: usize) {
        if let Some(mut c) = self.peer_mut(slot).ok().and_then(|p| p.child.take()) {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts a killed peer again on its data.
    pub fn restart(&mut self, net: &Net, slot: usize) -> anyhow::Result<()> {
        let orion = self.orion.clone();
        let p = self.peer_mut(slot)?;
        if p.child.is_none() {
            p.child = Some(spawn(net, &orion, p, &[])?);
        }
        Ok(())
    }

    /// Removes the peer in `slot` from the membership (through `via`), stops it
    /// and throws its data away. Returns the removed id.
    pub async fn remove(&mut self, slot: usize, via: usize) -> anyhow::Result<u64> {
        let id = self.peer(slot).context("no such slot")?.id;
        let url = self.peer(via).context("no such slot")?.url();
        let req = || self.http.delete(format!("{url}/v1/cluster/members/{id}"));
        retry_unavailable(&format!("removing peer {id} through slot {via}"), req).await?;
        self.kill(slot);
        let p = self.peer_mut(slot)?;
        let gone = p.data.with_extension(format!("removed-{id}"));
        std::fs::rename(&p.data, &gone)
            .with_context(|| format!("cannot move {} away", p.data.display()))?;
        Ok(id)
    }

    /// Starts a fresh peer with a new id and no data in the (emptied) `slot`,
    /// joining through `via`. Returns its id.
    pub async fn add_fresh(&mut self, net: &Net, slot: usize, via: usize) -> anyhow::Result<u64> {
        let url = self.peer(via).context("no such slot")?.url();
        let token = self.mint("server", &url).await?;
        let id = self.next_id;
        self.next_id += 1;
        let orion = self.orion.clone();
        let p = self.peer_mut(slot)?;
        anyhow::ensure!(p.child.is_none(), "slot {slot} still runs a peer");
        p.id = id;
        p.child = Some(spawn(
            net,
            &orion,
            p,
            &["--join".into(), url, "--token".into(), token],
        )?);
        Ok(id)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for p in &mut self.peers {
            if let Some(mut c) = p.child.take() {
                // SIGKILL works on stopped (paused) processes too.
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}
