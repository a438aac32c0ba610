//! A cluster of `orion server` peers (and `orion agent`s) as child processes.
//!
//! Peers live in *slots*: slot `n` keeps its data in `<dir>/peer-n`, its log in
//! `<dir>/peer-n.log` and its config in `<dir>/peer-n.toml`. A slot's peer has a
//! Raft id, which is the slot's number unless the slot got a fresh peer
//! ([`Cluster::replace`]). The first peer bootstraps; later ones join with a
//! single-use `server` token minted through a live peer (passed in the
//! environment, never on the command line). Ports that a [`PeerSpec`] leaves at 0
//! are picked by the OS, read back from the peer's `listen.json`, and kept for
//! its restarts, so its peers find it again.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::Duration;

use orion_api::security::{CreateToken, CreatedToken};
use orion_api::{ClusterStatus, MemberRole, MembersResponse};
use orion_client::{Client, ClientError, Consistency};
use serde::de::DeserializeOwned;

use crate::error::{io, LaunchError, Result};
use crate::process::{self, Process, Wrapper};
use crate::wait::poll;

/// The file a peer writes its listening addresses to, in its data directory
/// (`orion_apiserver::server::LISTEN_FILE`; the CLI's tests check they agree).
pub const LISTEN_FILE: &str = "listen.json";

/// The three listeners of a peer; 0 lets the OS pick.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ports {
    pub api: u16,
    pub peer: u16,
    /// UDP: the agent gateway (QUIC).
    pub agent: u16,
}

/// Where a peer listens and how its process is started.
#[derive(Debug, Clone)]
pub struct PeerSpec {
    /// The address it listens on and is reached at: loopback, or a network
    /// namespace's address.
    pub ip: IpAddr,
    pub ports: Ports,
    /// The peer's config file (written to `<dir>/peer-<slot>.toml`), if any.
    pub config_toml: Option<String>,
    pub wrapper: Wrapper,
}

impl PeerSpec {
    /// On 127.0.0.1, ports picked by the OS, no config file.
    pub fn loopback() -> Self {
        PeerSpec {
            ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            ports: Ports::default(),
            config_toml: None,
            wrapper: Wrapper::default(),
        }
    }

    pub fn ports(mut self, ports: Ports) -> Self {
        self.ports = ports;
        self
    }

    pub fn config(mut self, toml: &str) -> Self {
        self.config_toml = Some(toml.to_string());
        self
    }

    pub fn wrapper(mut self, wrapper: Wrapper) -> Self {
        self.wrapper = wrapper;
        self
    }
}

/// An `orion agent`: its name, folders and flags.
#[derive(Debug, Clone)]
pub struct AgentSpec {
    /// `--name` (the node name); the agent's default (the host name) if `None`.
    pub name: Option<String>,
    pub data_dir: PathBuf,
    pub log: PathBuf,
    /// `--servers`; the running peers' API URLs if empty.
    pub servers: Vec<String>,
    pub wrapper: Wrapper,
}

impl AgentSpec {
    /// Node `name`, data in `<dir>/agent-<name>`, log `<dir>/agent-<name>.log`.
    pub fn named(dir: &Path, name: &str) -> Self {
        AgentSpec {
            name: Some(name.to_string()),
            data_dir: dir.join(format!("agent-{name}")),
            log: dir.join(format!("agent-{name}.log")),
            servers: Vec::new(),
            wrapper: Wrapper::default(),
        }
    }
}

/// What every peer of a cluster shares.
#[derive(Debug, Clone)]
pub struct Options {
    /// The `orion` binary.
    pub program: PathBuf,
    /// Data folders, logs and config files.
    pub dir: PathBuf,
    /// Deadline of each readiness wait (a peer's `listen.json`, the bootstrap
    /// credentials, a join token, the voters at start).
    pub timeout: Duration,
    /// How long one status or membership call may take before it counts as no answer.
    pub call_timeout: Duration,
    /// How long a join token is valid.
    pub token_ttl: Duration,
    /// The description join tokens get (shown by `orion token list`).
    pub token_description: String,
}

impl Options {
    pub fn new(program: impl Into<PathBuf>, dir: impl Into<PathBuf>) -> Self {
        Options {
            program: program.into(),
            dir: dir.into(),
            timeout: Duration::from_secs(60),
            call_timeout: Duration::from_secs(2),
            token_ttl: Duration::from_secs(600),
            token_description: "orion-launch".into(),
        }
    }
}

/// One slot of the cluster and the peer in it.
pub struct Peer {
    pub slot: u64,
    /// The peer's Raft id.
    pub id: u64,
    pub spec: PeerSpec,
    pub data: PathBuf,
    pub log: PathBuf,
    process: Option<Process>,
}

impl Peer {
    pub fn url(&self) -> String {
        format!("https://{}", self.api_addr())
    }

    pub fn api_addr(&self) -> SocketAddr {
        SocketAddr::new(self.spec.ip, self.spec.ports.api)
    }

    pub fn ports(&self) -> Ports {
        self.spec.ports
    }

    /// The process id while one is started (also if it has exited since).
    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().map(Process::pid)
    }

    pub fn is_running(&self) -> bool {
        self.process.as_ref().is_some_and(Process::is_running)
    }

    /// Whether this slot holds credentials (it bootstrapped or joined before).
    pub fn has_credentials(&self) -> bool {
        self.data.join("tls").exists()
    }

    pub fn config_path(&self) -> PathBuf {
        self.log.with_extension("toml")
    }
}

/// An agent the cluster started.
pub struct Agent {
    pub spec: AgentSpec,
    process: Option<Process>,
}

impl Agent {
    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().map(Process::pid)
    }
    pub fn is_running(&self) -> bool {
        self.process.as_ref().is_some_and(Process::is_running)
    }
}

/// The cluster's admin credentials (from the bootstrap peer's data) and a client.
struct Admin {
    ca_pem: String,
    token: String,
    client: Client,
}

/// Peers and agents started by this launcher. Dropping it kills every process.
pub struct Cluster {
    opts: Options,
    peers: BTreeMap<u64, Peer>,
    agents: BTreeMap<String, Agent>,
    admin: Option<Admin>,
}

/// A process that exited while it was expected to run.
#[derive(Debug, Clone)]
pub struct Exit {
    pub what: String,
    pub pid: u32,
    pub status: ExitStatus,
    pub log: PathBuf,
}

impl Cluster {
    /// A cluster with no process yet.
    pub fn new(opts: Options) -> Self {
        Cluster {
            opts,
            peers: BTreeMap::new(),
            agents: BTreeMap::new(),
            admin: None,
        }
    }

    /// Starts (or resumes) a cluster of `specs` and returns once every peer is a
    /// voter that has applied the membership. See [`Cluster::open`].
    pub async fn start(
        opts: Options,
        specs: impl IntoIterator<Item = (u64, PeerSpec)>,
    ) -> Result<Self> {
        let mut c = Cluster::new(opts);
        c.open(specs).await?;
        Ok(c)
    }

    /// Starts the peers of `specs` (slot, spec): slots whose data holds credentials
    /// restart on it, all at once; then, if none did, the first bootstraps; the
    /// rest join. Returns once every peer is a voter and has applied that.
    pub async fn open(&mut self, specs: impl IntoIterator<Item = (u64, PeerSpec)>) -> Result<()> {
        let specs: Vec<(u64, PeerSpec)> = specs.into_iter().collect();
        let mut fresh = Vec::new();
        for (slot, spec) in specs.iter().cloned() {
            self.insert(slot, spec)?;
            if self.peer_ref(slot)?.has_credentials() {
                self.spawn(slot, &[], None)?;
            } else {
                fresh.push(slot);
            }
        }
        let resumed: Vec<u64> = self.running();
        for slot in &resumed {
            self.wait_listening(*slot).await?;
        }
        if !resumed.is_empty() {
            self.load_admin().await?;
        }
        for slot in fresh {
            if self.admin.is_none() {
                self.start_bootstrap(slot).await?;
            } else {
                self.start_join(slot, None).await?;
            }
        }
        let ids: Vec<u64> = self.peers.values().map(|p| p.id).collect();
        self.wait_for_voters(&ids, self.opts.timeout).await?;
        self.refresh_admin()
    }

    /// Aims the admin client at every peer (it fails over between them).
    fn refresh_admin(&mut self) -> Result<()> {
        let urls = self.urls();
        if let Some(a) = &mut self.admin {
            a.client = Client::new(&urls, &a.ca_pem, Some(a.token.clone())).map_err(|source| {
                LaunchError::Http {
                    what: "the admin client".into(),
                    source,
                }
            })?;
        }
        Ok(())
    }

    /// Adds a peer in a new `slot`: it bootstraps a new cluster if this one has no
    /// peer yet, else it joins through the first running peer. Returns once it
    /// listens (and, bootstrapping, wrote its admin credentials); joining, it may
    /// still be a learner.
    pub async fn add(&mut self, slot: u64, spec: PeerSpec) -> Result<()> {
        self.insert(slot, spec)?;
        if self.admin.is_none() {
            self.start_bootstrap(slot).await
        } else {
            self.start_join(slot, None).await
        }
    }

    /// Adds a peer in a new `slot` that joins through the peer in slot `via` (the
    /// first running one if `None`).
    pub async fn join(&mut self, slot: u64, spec: PeerSpec, via: Option<u64>) -> Result<()> {
        self.insert(slot, spec)?;
        self.start_join(slot, via).await
    }

    fn insert(&mut self, slot: u64, spec: PeerSpec) -> Result<()> {
        if self.peers.contains_key(&slot) {
            return Err(LaunchError::Usage(format!(
                "slot {slot} already has a peer"
            )));
        }
        let dir = &self.opts.dir;
        self.peers.insert(
            slot,
            Peer {
                slot,
                id: slot,
                spec,
                data: dir.join(format!("peer-{slot}")),
                log: dir.join(format!("peer-{slot}.log")),
                process: None,
            },
        );
        Ok(())
    }

    async fn start_bootstrap(&mut self, slot: u64) -> Result<()> {
        self.spawn(slot, &["--bootstrap".into()], None)?;
        self.wait_listening(slot).await?;
        self.load_admin().await
    }

    async fn start_join(&mut self, slot: u64, via: Option<u64>) -> Result<()> {
        let via = match via {
            Some(v) => v,
            None => self
                .running()
                .into_iter()
                .find(|s| *s != slot)
                .ok_or_else(|| LaunchError::Usage("no running peer to join through".into()))?,
        };
        let url = self.peer_ref(via)?.url();
        let token = self.mint("server", Some(via)).await?;
        self.spawn(slot, &["--join".into(), url.into()], Some(token))?;
        self.wait_listening(slot).await?;
        Ok(())
    }

    /// Starts the process of `slot` with `flags` after the launcher's own.
    fn spawn(&mut self, slot: u64, flags: &[OsString], token: Option<String>) -> Result<()> {
        let program = self.opts.program.clone();
        let p = self.peer_mut(slot)?;
        if p.is_running() {
            return Err(LaunchError::Usage(format!(
                "peer {} (slot {slot}) is still running",
                p.id
            )));
        }
        let ip = p.spec.ip;
        let addr = |port| OsString::from(SocketAddr::new(ip, port).to_string());
        let mut args: Vec<OsString> = vec!["server".into()];
        if let Some(toml) = &p.spec.config_toml {
            let path = p.config_path();
            std::fs::write(&path, toml).map_err(io(&path))?;
            args.extend(["--config".into(), path.into()]);
        }
        args.extend([
            "--id".into(),
            p.id.to_string().into(),
            "--data-dir".into(),
            p.data.clone().into(),
            "--api-addr".into(),
            addr(p.spec.ports.api),
            "--peer-addr".into(),
            addr(p.spec.ports.peer),
            "--agent-addr".into(),
            addr(p.spec.ports.agent),
        ]);
        args.extend(flags.iter().cloned());
        // A stale file from an earlier run would pass for this run's.
        let listen = p.data.join(LISTEN_FILE);
        if listen.exists() {
            std::fs::remove_file(&listen).map_err(io(&listen))?;
        }
        let env: Vec<(String, String)> = token
            .into_iter()
            .map(|t| ("ORION_JOIN_TOKEN".to_string(), t))
            .collect();
        let what = format!("peer {} (slot {slot})", p.id);
        p.process = None;
        p.process = Some(Process::spawn(
            &what,
            &program,
            &args,
            &env,
            &p.spec.wrapper,
            &p.log,
        )?);
        Ok(())
    }

    /// Waits until the peer of `slot` has written its `listen.json`, and records
    /// the ports it bound (kept for its restarts).
    pub async fn wait_listening(&mut self, slot: u64) -> Result<Ports> {
        let p = self.peer_ref(slot)?;
        let file = p.data.join(LISTEN_FILE);
        let what = format!("peer {} (slot {slot}) to write {}", p.id, file.display());
        let ports = self
            .wait_until(&what, self.opts.timeout, || async { read_ports(&file) })
            .await?;
        self.peer_mut(slot)?.spec.ports = ports;
        Ok(ports)
    }

    /// Reads the CA and admin token written at bootstrap (by whichever peer holds
    /// them), waiting for them, and makes the admin client.
    async fn load_admin(&mut self) -> Result<()> {
        let dirs: Vec<PathBuf> = self.peers.values().map(|p| p.data.clone()).collect();
        let (ca_pem, token) = self
            .wait_until(
                "the bootstrap CA and admin token",
                self.opts.timeout,
                || async {
                    dirs.iter().find_map(|d| {
                        let token = std::fs::read_to_string(d.join("admin.token")).ok()?;
                        let ca = std::fs::read_to_string(d.join("tls/ca.crt")).ok()?;
                        Some((ca, token.trim().to_string()))
                    })
                },
            )
            .await?;
        let urls = self.urls();
        let client = Client::new(&urls, &ca_pem, Some(token.clone())).map_err(|source| {
            LaunchError::Http {
                what: "the admin client".into(),
                source,
            }
        })?;
        self.admin = Some(Admin {
            ca_pem,
            token,
            client,
        });
        Ok(())
    }

    /// Starts the stopped peer of `slot` again on its data and ports, with `extra`
    /// flags; it neither bootstraps nor joins. Does not wait.
    pub fn restart(&mut self, slot: u64, extra: &[&str]) -> Result<()> {
        let flags: Vec<OsString> = extra.iter().map(OsString::from).collect();
        self.spawn(slot, &flags, None)
    }

    /// `kill -9` the peer of `slot`, as a machine crash would, and reap it.
    pub fn kill(&mut self, slot: u64) {
        if let Some(p) = self.peers.get_mut(&slot).and_then(|p| p.process.take()) {
            p.kill();
        }
    }

    /// SIGTERM the peer of `slot` and wait up to `grace` for its exit status;
    /// after that it is killed and this fails.
    pub async fn stop(&mut self, slot: u64, grace: Duration) -> Result<Option<ExitStatus>> {
        let Some(p) = self.peer_mut(slot)?.process.take() else {
            return Ok(None);
        };
        p.stop(grace).await.map(Some)
    }

    /// SIGTERM every peer and agent at once; those that have not exited within
    /// `grace` are killed. Returns what failed to stop in time.
    pub async fn stop_all(&mut self, grace: Duration) -> Vec<LaunchError> {
        let procs: Vec<Process> = self
            .agents
            .values_mut()
            .filter_map(|a| a.process.take())
            .chain(self.peers.values_mut().filter_map(|p| p.process.take()))
            .collect();
        process::stop_all(procs, grace)
            .await
            .into_iter()
            .filter_map(Result::err)
            .collect()
    }

    /// `kill -9` every process.
    pub fn kill_all(&mut self) {
        for a in self.agents.values_mut() {
            a.process = None;
        }
        for p in self.peers.values_mut() {
            p.process = None;
        }
    }

    /// Removes the peer of `slot` from the membership (through the peer of `via`),
    /// kills it and moves its data away (to `peer-<slot>.removed-<id>`). Returns
    /// the removed id.
    pub async fn remove(&mut self, slot: u64, via: u64) -> Result<u64> {
        let id = self.peer_ref(slot)?.id;
        let url = self.peer_ref(via)?.url();
        let what = format!("removing peer {id} through slot {via}");
        let admin = self.admin()?;
        self.retry(&what, || async { admin.at(&url).remove_member(id).await })
            .await?;
        self.kill(slot);
        let p = self.peer_ref(slot)?;
        let gone = p.data.with_extension(format!("removed-{id}"));
        std::fs::rename(&p.data, &gone).map_err(io(&p.data))?;
        Ok(id)
    }

    /// Starts a fresh peer, with a new id (one above every id used so far) and no
    /// data, in the stopped (and emptied) `slot`, joining through `via`. Returns
    /// its id once it listens.
    pub async fn replace(&mut self, slot: u64, via: u64) -> Result<u64> {
        let next = self
            .peers
            .values()
            .map(|p| p.id.max(p.slot))
            .max()
            .unwrap_or(0)
            + 1;
        let next = next.max(self.retired_max() + 1);
        let p = self.peer_mut(slot)?;
        if p.is_running() {
            return Err(LaunchError::Usage(format!("slot {slot} still runs a peer")));
        }
        p.id = next;
        self.start_join(slot, Some(via)).await?;
        Ok(next)
    }

    /// The highest id whose data was moved away by [`Cluster::remove`].
    fn retired_max(&self) -> u64 {
        std::fs::read_dir(&self.opts.dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                name.rsplit_once(".removed-")?.1.parse::<u64>().ok()
            })
            .max()
            .unwrap_or(0)
    }

    /// Starts an `orion agent` as `key`; a new agent (no credentials in its data
    /// folder) gets an `agent` join token. Does not wait for it to register.
    pub async fn spawn_agent(&mut self, key: &str, spec: AgentSpec) -> Result<()> {
        if self.agents.get(key).is_some_and(Agent::is_running) {
            return Err(LaunchError::Usage(format!("agent {key} is still running")));
        }
        let servers = if spec.servers.is_empty() {
            self.running()
                .iter()
                .filter_map(|s| self.peers.get(s).map(Peer::url))
                .collect()
        } else {
            spec.servers.clone()
        };
        let mut env = Vec::new();
        if !spec.data_dir.join("tls").exists() {
            env.push((
                "ORION_JOIN_TOKEN".to_string(),
                self.mint("agent", None).await?,
            ));
        }
        let mut args: Vec<OsString> =
            vec!["agent".into(), "--servers".into(), servers.join(",").into()];
        if let Some(name) = &spec.name {
            args.extend(["--name".into(), name.into()]);
        }
        args.extend(["--data-dir".into(), spec.data_dir.clone().into()]);
        let process = Process::spawn(
            &format!("agent {key}"),
            &self.opts.program,
            &args,
            &env,
            &spec.wrapper,
            &spec.log,
        )?;
        self.agents.insert(
            key.to_string(),
            Agent {
                spec,
                process: Some(process),
            },
        );
        Ok(())
    }

    /// `kill -9` agent `key`; its replicas keep running, as on a real machine.
    pub fn kill_agent(&mut self, key: &str) {
        if let Some(a) = self.agents.get_mut(key) {
            a.process = None;
        }
    }

    pub fn agent(&self, key: &str) -> Option<&Agent> {
        self.agents.get(key)
    }

    pub fn agents(&self) -> impl Iterator<Item = (&String, &Agent)> {
        self.agents.iter()
    }

    // ----- what there is -----

    pub fn options(&self) -> &Options {
        &self.opts
    }

    pub fn dir(&self) -> &Path {
        &self.opts.dir
    }

    pub fn peer(&self, slot: u64) -> Option<&Peer> {
        self.peers.get(&slot)
    }

    fn peer_ref(&self, slot: u64) -> Result<&Peer> {
        self.peers
            .get(&slot)
            .ok_or_else(|| LaunchError::Usage(format!("no peer in slot {slot}")))
    }

    fn peer_mut(&mut self, slot: u64) -> Result<&mut Peer> {
        self.peers
            .get_mut(&slot)
            .ok_or_else(|| LaunchError::Usage(format!("no peer in slot {slot}")))
    }

    pub fn peers(&self) -> impl Iterator<Item = &Peer> {
        self.peers.values()
    }

    /// The slot of the peer with Raft id `id`.
    pub fn slot_of(&self, id: u64) -> Option<u64> {
        self.peers.values().find(|p| p.id == id).map(|p| p.slot)
    }

    /// Slots whose peer is running.
    pub fn running(&self) -> Vec<u64> {
        self.peers
            .values()
            .filter(|p| p.is_running())
            .map(|p| p.slot)
            .collect()
    }

    /// Every peer's API URL, by slot.
    pub fn urls(&self) -> Vec<String> {
        self.peers.values().map(Peer::url).collect()
    }

    /// The cluster CA (PEM), once a peer bootstrapped.
    pub fn ca_pem(&self) -> Option<&str> {
        self.admin.as_ref().map(|a| a.ca_pem.as_str())
    }

    /// The admin token written at bootstrap.
    pub fn admin_token(&self) -> Option<&str> {
        self.admin.as_ref().map(|a| a.token.as_str())
    }

    /// An admin client, once a peer bootstrapped: it fails over between the peers
    /// there were when [`Cluster::open`] returned (or the bootstrap peer); aim it
    /// at one peer with [`Client::at`].
    pub fn admin(&self) -> Result<&Client> {
        self.admin
            .as_ref()
            .map(|a| &a.client)
            .ok_or_else(|| LaunchError::Usage("the cluster has not bootstrapped".into()))
    }

    /// Every log file: the peers', then the agents'.
    pub fn log_paths(&self) -> Vec<PathBuf> {
        self.peers
            .values()
            .map(|p| p.log.clone())
            .chain(self.agents.values().map(|a| a.spec.log.clone()))
            .collect()
    }

    /// Processes that have exited although nobody stopped them.
    pub fn exits(&self) -> Vec<Exit> {
        let procs = self
            .peers
            .values()
            .filter_map(|p| p.process.as_ref())
            .chain(self.agents.values().filter_map(|a| a.process.as_ref()));
        procs
            .filter_map(|p| {
                Some(Exit {
                    what: p.what().to_string(),
                    pid: p.pid(),
                    status: p.exited()?,
                    log: p.log().to_path_buf(),
                })
            })
            .collect()
    }

    /// Fails with [`LaunchError::Exited`] if a peer that was started has exited.
    pub fn check_alive(&self) -> Result<()> {
        for p in self.peers.values() {
            if let Some(proc) = &p.process {
                proc.check_alive()?;
            }
        }
        Ok(())
    }

    // ----- calls -----

    /// `GET path` on the peer at `url` as admin, within the call timeout.
    pub async fn get<T: DeserializeOwned>(&self, url: &str, path: &str) -> Result<T> {
        let what = format!("GET {url}{path}");
        let after = self.opts.call_timeout;
        match tokio::time::timeout(after, self.admin()?.at(url).get::<T>(path)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(source)) => Err(LaunchError::Http { what, source }),
            Err(_) => Err(LaunchError::HttpTimeout { what, after }),
        }
    }

    /// `call` on the peer at `url` as admin, within the call timeout.
    async fn within<T, Fut>(&self, what: String, call: Fut) -> Result<T>
    where
        Fut: std::future::Future<Output = std::result::Result<T, ClientError>>,
    {
        let after = self.opts.call_timeout;
        match tokio::time::timeout(after, call).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(source)) => Err(LaunchError::Http { what, source }),
            Err(_) => Err(LaunchError::HttpTimeout { what, after }),
        }
    }

    /// The status of the peer of `slot`, as it answers it.
    pub async fn status(&self, slot: u64) -> Result<ClusterStatus> {
        let url = self.peer_ref(slot)?.url();
        let admin = self.admin()?.at(&url);
        self.within(format!("the status of {url}"), admin.status())
            .await
    }

    /// The membership, as the peer of `slot` reports it.
    pub async fn members(&self, slot: u64) -> Result<MembersResponse> {
        let url = self.peer_ref(slot)?.url();
        let admin = self.admin()?.at(&url);
        self.within(
            format!("the members seen by {url}"),
            admin.members(Consistency::Linearizable),
        )
        .await
    }

    /// Mints a single-use join token for `role` through the peer of `via` (or the
    /// running peers in turn), retrying until the timeout: right after a start or
    /// during an election there may be no leader to mint it.
    pub async fn mint(&self, role: &str, via: Option<u64>) -> Result<String> {
        self.mint_for(role, self.opts.token_ttl, via).await
    }

    /// [`Cluster::mint`] with a lifetime.
    pub async fn mint_for(&self, role: &str, ttl: Duration, via: Option<u64>) -> Result<String> {
        let req = CreateToken {
            role: role.into(),
            ttl_seconds: ttl.as_secs(),
            description: self.opts.token_description.clone(),
        };
        let admin = self.admin()?;
        let what = format!("a {role} token");
        let created: CreatedToken = self
            .retry(&what, || {
                let urls: Vec<String> = match via {
                    Some(v) => self.peer(v).map(Peer::url).into_iter().collect(),
                    None => self
                        .running()
                        .iter()
                        .filter_map(|s| self.peer(*s).map(Peer::url))
                        .collect(),
                };
                let req = &req;
                async move {
                    let mut last = ClientError::Unreachable("no running peer".into());
                    for url in urls {
                        match admin.at(&url).create_token(req).await {
                            Ok(v) => return Ok(v),
                            Err(e) => last = e,
                        }
                    }
                    Err(last)
                }
            })
            .await?;
        Ok(created.token)
    }

    /// Runs `call` until it succeeds, for up to the timeout; fails early when a
    /// started peer exits.
    async fn retry<T, F, Fut>(&self, what: &str, mut call: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, ClientError>>,
    {
        let after = self.opts.timeout;
        let deadline = tokio::time::Instant::now() + after;
        let last = loop {
            self.check_alive()?;
            let last = match tokio::time::timeout(self.opts.call_timeout * 5, call()).await {
                Ok(Ok(v)) => return Ok(v),
                Ok(Err(e)) => e.to_string(),
                Err(_) => "no answer".to_string(),
            };
            if tokio::time::Instant::now() > deadline {
                break last;
            }
            tokio::time::sleep(crate::wait::POLL * 4).await;
        };
        Err(LaunchError::Timeout {
            what: what.to_string(),
            after,
            last: Some(last),
            dir: self.opts.dir.clone(),
        })
    }

    // ----- waits -----

    /// Polls `cond` until it gives `Some`, for up to `timeout`; fails early, naming
    /// the process and its log, when a started peer exits.
    pub async fn wait_until<T, F, Fut>(
        &self,
        what: &str,
        timeout: Duration,
        mut cond: F,
    ) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        let got = poll(timeout, || {
            let fut = cond();
            async move {
                if let Some(v) = fut.await {
                    return Ok(Some(v));
                }
                self.check_alive().map(|()| None)
            }
        })
        .await?;
        got.ok_or_else(|| LaunchError::Timeout {
            what: what.to_string(),
            after: timeout,
            last: None,
            dir: self.opts.dir.clone(),
        })
    }

    /// One look: the leader's id if every running peer names the same one and it
    /// is running too.
    pub async fn agreed_leader(&self) -> Option<u64> {
        let running = self.running();
        let ids: Vec<u64> = running
            .iter()
            .filter_map(|s| self.peer(*s))
            .map(|p| p.id)
            .collect();
        let mut leader = None;
        for slot in &running {
            let l = self.status(*slot).await.ok()?.leader?;
            if leader.is_some_and(|x| x != l) || !ids.contains(&l) {
                return None;
            }
            leader = Some(l);
        }
        leader
    }

    /// Waits until every running peer names the same running leader; returns its id.
    pub async fn wait_for_leader(&self, timeout: Duration) -> Result<u64> {
        self.wait_until("all running peers to agree on a leader", timeout, || {
            self.agreed_leader()
        })
        .await
    }

    /// One look: the membership if it has exactly the voters `ids` (and no learner)
    /// as the agreed leader reports it, and every running peer has applied it.
    pub async fn voters_settled(&self, ids: &[u64]) -> Option<MembersResponse> {
        let mut want = ids.to_vec();
        want.sort_unstable();
        let leader = self.agreed_leader().await?;
        let m = self.members(self.slot_of(leader)?).await.ok()?;
        let mut got: Vec<u64> = m
            .members
            .iter()
            .filter(|x| x.role == MemberRole::Voter)
            .map(|x| x.id)
            .collect();
        got.sort_unstable();
        if got != want || m.members.len() != want.len() {
            return None;
        }
        for slot in self.running() {
            let s = self.status(slot).await.ok()?;
            let mut voters = s.voters.clone();
            voters.sort_unstable();
            if voters != want || !s.learners.is_empty() || s.last_applied < m.last_log_index {
                return None;
            }
        }
        Some(m)
    }

    /// Waits until the membership has exactly the voters `ids`, as the leader
    /// reports it and as every running peer has applied it: the change is
    /// committed everywhere, so losing any minority afterwards cannot strand the
    /// cluster in a joint configuration.
    pub async fn wait_for_voters(&self, ids: &[u64], timeout: Duration) -> Result<MembersResponse> {
        let mut want = ids.to_vec();
        want.sort_unstable();
        let what = format!("voters {want:?} committed and applied on every running peer");
        self.wait_until(&what, timeout, || self.voters_settled(&want))
            .await
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.kill_all();
    }
}

/// The ports in a peer's `listen.json`, once it is complete.
pub fn read_ports(file: &Path) -> Option<Ports> {
    let text = std::fs::read_to_string(file).ok()?;
    let map: BTreeMap<String, String> = serde_json::from_str(&text).ok()?;
    let port =
        |k: &str| -> Option<u16> { map.get(k)?.parse::<SocketAddr>().ok().map(|a| a.port()) };
    Some(Ports {
        api: port("api")?,
        peer: port("peer")?,
        agent: port("agent")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_read_from_a_complete_listen_file_only() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join(LISTEN_FILE);
        assert_eq!(read_ports(&file), None);
        std::fs::write(&file, r#"{"api": "127.0.0.1:7401"}"#).expect("write");
        assert_eq!(read_ports(&file), None);
        std::fs::write(
            &file,
            r#"{"agent": "10.77.0.11:7600", "api": "10.77.0.11:7400", "peer": "10.77.0.11:7500"}"#,
        )
        .expect("write");
        assert_eq!(
            read_ports(&file),
            Some(Ports {
                api: 7400,
                peer: 7500,
                agent: 7600
            })
        );
    }

    #[test]
    fn a_peer_is_reached_at_its_address_and_api_port() {
        let mut c = Cluster::new(Options::new("/bin/false", "/tmp/none"));
        let spec = PeerSpec {
            ip: "10.77.0.12".parse().expect("ip"),
            ports: Ports {
                api: 7400,
                peer: 7500,
                agent: 7600,
            },
            config_toml: None,
            wrapper: Wrapper::default(),
        };
        c.insert(2, spec).expect("insert");
        let p = c.peer(2).expect("peer");
        assert_eq!(p.url(), "https://10.77.0.12:7400");
        assert_eq!(p.data, Path::new("/tmp/none/peer-2"));
        assert_eq!(p.config_path(), Path::new("/tmp/none/peer-2.toml"));
        assert!(c.insert(2, PeerSpec::loopback()).is_err());
        assert!(c.running().is_empty());
    }
}
