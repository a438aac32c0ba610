//! An Orion cluster on [`Net`] hosts: one `orion server` per peer slot (host
//! namespace), with real TLS: slot 1 bootstraps, the others join with join tokens
//! minted through the API. Every call here must run on a thread inside the client
//! namespace (see [`Net::enter_client_ns`]). Dropping the cluster kills its
//! processes. The processes, tokens and waits are `orion-launch`'s; what is
//! particular here is where peers run (a namespace per host, through
//! `ip netns exec`) and their clocks.
//!
//! A slot is a host; the peer in it has an id. Membership changes replace the peer
//! of a slot by a fresh one with a new id and empty data, on the same address, so
//! clients pinned to a slot keep their URL.
//!
//! When libfaketime is installed every peer runs under it with an offset file
//! that [`crate::nemesis::clock`] rewrites, so its wall clock can be skewed while it
//! runs; its monotonic clock is left alone.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use orion_launch::{Options, PeerSpec, Ports, Wrapper};

use crate::hosts::{Host, Net};

pub const API_PORT: u16 = 7400;
/// The Raft and agent-gateway ports of every peer.
pub const PEER_PORT: u16 = 7500;
pub const AGENT_PORT: u16 = 7600;

/// libfaketime's multi-threaded build, as Debian's `faketime` package installs it.
pub const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1";

pub struct Peer {
    /// 1-based; the host namespace `net.hosts[slot - 1]`.
    pub slot: usize,
    pub id: u64,
    pub host: Host,
    pub data: PathBuf,
    pub log: PathBuf,
    /// The process id while the launcher holds a process for this slot.
    process_id: Option<u32>,
}

impl Peer {
    pub fn url(&self) -> String {
        format!("https://{}:{API_PORT}", self.host.ip)
    }
    pub fn pid(&self) -> Option<i32> {
        self.process_id.and_then(|p| i32::try_from(p).ok())
    }
    /// The file libfaketime reads this peer's clock offset from.
    pub fn clock_file(&self) -> PathBuf {
        self.log.with_extension("faketime")
    }
}

pub struct Cluster {
    pub orion: PathBuf,
    pub dir: PathBuf,
    /// A view of the launcher's slots, in slot order.
    pub peers: Vec<Peer>,
    pub ca_pem: String,
    pub admin_token: String,
    launcher: orion_launch::Cluster,
}

/// Whether peers can have their clocks skewed here.
pub fn faketime_available() -> bool {
    Path::new(LIBFAKETIME).is_file()
}

/// How the peer on `host` runs: in the host's namespace, on its address, under
/// libfaketime (reading its offset from the clock file next to `log`) when
/// installed.
fn spec(host: &Host, log: &Path, config_toml: &str) -> anyhow::Result<PeerSpec> {
    let ip: IpAddr = host
        .ip
        .parse()
        .with_context(|| format!("host address {:?}", host.ip))?;
    let mut wrapper = Wrapper::default()
        .prefix(["ip", "netns", "exec", host.ns.as_str()])
        .env("ORION_LOG", "info,openraft=warn");
    if faketime_available() {
        let clock = log.with_extension("faketime");
        if !clock.exists() {
            std::fs::write(&clock, "+0\n")?;
        }
        wrapper = wrapper
            .env("LD_PRELOAD", LIBFAKETIME)
            .env("FAKETIME_TIMESTAMP_FILE", &clock)
            .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
            .env("FAKETIME_CACHE_DURATION", "1");
    }
    Ok(PeerSpec {
        ip,
        ports: Ports {
            api: API_PORT,
            peer: PEER_PORT,
            agent: AGENT_PORT,
        },
        config_toml: Some(config_toml.to_string()),
        wrapper,
    })
}

pub async fn until<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let got = orion_launch::wait::poll(timeout, || {
        let fut = f();
        async move { Ok(fut.await) }
    })
    .await?;
    match got {
        Some(v) => Ok(v),
        None => bail!("timed out after {timeout:?} waiting for {what}"),
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
        anyhow::ensure!(!hosts.is_empty(), "no hosts");
        let mut specs = Vec::new();
        let mut peers = Vec::new();
        for h in hosts {
            let log = dir.join(format!("peer-{}.log", h.index));
            specs.push((h.index as u64, spec(h, &log, config_toml)?));
            peers.push(Peer {
                slot: h.index,
                id: h.index as u64,
                host: h.clone(),
                data: dir.join(format!("peer-{}", h.index)),
                log,
                process_id: None,
            });
        }
        let mut opts = Options::new(orion, dir);
        opts.token_description = "orion-jepsen".into();
        let launcher = orion_launch::Cluster::start(opts, specs).await?;
        let (Some(ca), Some(token)) = (launcher.ca_pem(), launcher.admin_token()) else {
            bail!("the cluster has no admin credentials");
        };
        let mut cluster = Cluster {
            orion: orion.to_path_buf(),
            dir: dir.to_path_buf(),
            peers,
            ca_pem: ca.to_string(),
            admin_token: token.to_string(),
            launcher,
        };
        cluster.sync();
        cluster.settled(Duration::from_secs(60)).await?;
        Ok(cluster)
    }

    /// Refreshes the view of the slots (ids, processes) from the launcher.
    fn sync(&mut self) {
        for p in &mut self.peers {
            if let Some(l) = self.launcher.peer(p.slot as u64) {
                p.id = l.id;
                p.process_id = l.pid();
            }
        }
    }

    /// The launcher underneath, for what this wrapper does not name.
    pub fn launcher(&self) -> &orion_launch::Cluster {
        &self.launcher
    }

    /// Waits until every peer answers, sees every peer as a voter and names the
    /// same leader. A peer that still thinks it is a learner would not stand for
    /// election, so faults start only after this.
    pub async fn settled(&self, timeout: Duration) -> anyhow::Result<u64> {
        let ids: Vec<u64> = self.peers.iter().map(|p| p.id).collect();
        let m = self.launcher.wait_for_voters(&ids, timeout).await?;
        m.leader.context("the settled membership names no leader")
    }

    /// Mints a join token through `url`. A 503 (no leader within the peer's
    /// hold time, as during an election) is retried.
    pub async fn mint(&self, role: &str, url: &str) -> anyhow::Result<String> {
        let slot = self
            .peers
            .iter()
            .find(|p| p.url() == url)
            .with_context(|| format!("{url} is no peer of this cluster"))?
            .slot;
        Ok(self.launcher.mint(role, Some(slot as u64)).await?)
    }

    pub async fn get(&self, base: &str, path: &str) -> Option<serde_json::Value> {
        self.launcher.get(base, path).await.ok()
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
        self.launcher.status(slot as u64).await.ok()?.leader
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

    /// SIGKILL the peer in `slot` (works on a paused one too).
    pub fn kill(&mut self, slot: usize) {
        self.launcher.kill(slot as u64);
        self.sync();
    }

    /// Starts a killed peer again on its data.
    pub fn restart(&mut self, _net: &Net, slot: usize) -> anyhow::Result<()> {
        let running = self
            .launcher
            .peer(slot as u64)
            .with_context(|| format!("no peer in slot {slot}"))?
            .is_running();
        if !running {
            self.launcher.restart(slot as u64, &[])?;
        }
        self.sync();
        Ok(())
    }

    /// Removes the peer in `slot` from the membership (through `via`), stops it
    /// and throws its data away. Returns the removed id.
    pub async fn remove(&mut self, slot: usize, via: usize) -> anyhow::Result<u64> {
        let id = self.launcher.remove(slot as u64, via as u64).await;
        self.sync();
        Ok(id?)
    }

    /// Starts a fresh peer with a new id and no data in the (emptied) `slot`,
    /// joining through `via`. Returns its id.
    pub async fn add_fresh(&mut self, _net: &Net, slot: usize, via: usize) -> anyhow::Result<u64> {
        let id = self.launcher.replace(slot as u64, via as u64).await;
        self.sync();
        Ok(id?)
    }
}
