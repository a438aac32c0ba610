//! Three `orion server` peers started by `orion-launch`: peer 1 bootstraps on
//! OS-chosen ports (read back from its `listen.json`), the others join it with
//! single-use server tokens minted through its API, as `orion dev` does. A restarted
//! peer gets the ports it had, so its peers find it.

use std::path::Path;

use anyhow::Context;
use orion_launch::{Options, PeerSpec, Wrapper};

use super::{Programs, FORM_TIMEOUT, SIZE};
use crate::kv::{http_client, Kv, System};

pub struct OrionCluster {
    pub kv: Kv,
    /// Declared before `dir` so the processes die before their data is removed.
    launcher: Box<orion_launch::Cluster>,
    dir: tempfile::TempDir,
}

impl OrionCluster {
    pub async fn start(programs: &Programs, clients: usize) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("orion-bench-orion-")
            .tempdir()
            .context("temp dir")?;
        let mut opts = Options::new(&programs.orion, dir.path());
        opts.timeout = FORM_TIMEOUT;
        opts.token_description = "orion-bench".into();
        let mut spec = PeerSpec::loopback().wrapper(Wrapper::default().env("ORION_LOG", "warn"));
        if let Some(toml) = &programs.orion_config {
            spec = spec.config(toml);
        }
        let launcher =
            orion_launch::Cluster::start(opts, (1..=SIZE as u64).map(|id| (id, spec.clone())))
                .await?;
        let (Some(ca), Some(token)) = (launcher.ca_pem(), launcher.admin_token()) else {
            anyhow::bail!("the orion cluster has no admin credentials");
        };
        let kv = Kv {
            system: System::Orion,
            http: http_client(ca, Some(token), clients)?,
            urls: launcher.urls(),
        };
        let mut c = OrionCluster {
            kv,
            launcher: Box::new(launcher),
            dir,
        };
        c.wait_healthy().await?;
        Ok(c)
    }

    /// Waits until every running peer answers, names the same running leader, sees
    /// three voters, and has applied what the leader had logged, so this also works
    /// under load; returns the leader's index.
    pub async fn wait_healthy(&mut self) -> anyhow::Result<usize> {
        let ids: Vec<u64> = (1..=SIZE as u64).collect();
        let m = self.launcher.wait_for_voters(&ids, FORM_TIMEOUT).await?;
        let leader = m.leader.context("no leader in the membership answer")?;
        let slot = self
            .launcher
            .slot_of(leader)
            .with_context(|| format!("the leader {leader} is not a peer of this cluster"))?;
        Ok(usize::try_from(slot - 1)?)
    }

    /// `kill -9` member `member` (0-based).
    pub fn kill9(&mut self, member: usize) {
        self.launcher.kill(member as u64 + 1);
    }

    /// Starts a killed member again on its ports and data.
    pub fn restart(&mut self, member: usize) -> anyhow::Result<()> {
        Ok(self.launcher.restart(member as u64 + 1, &[])?)
    }

    /// Where the data and logs are.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Starts a real `orion agent` named `name` (node `name`), joined with a fresh
    /// agent token; does not wait for it to register.
    pub async fn spawn_agent(&mut self, name: &str) -> anyhow::Result<()> {
        let mut spec = orion_launch::AgentSpec::named(self.dir.path(), name);
        spec.wrapper = Wrapper::default().env("ORION_LOG", "warn");
        Ok(self.launcher.spawn_agent(name, spec).await?)
    }

    /// `kill -9` agent `name` (its replicas keep running, as after a crash of
    /// the agent alone).
    pub fn kill_agent(&mut self, name: &str) {
        self.launcher.kill_agent(name);
    }

    pub fn agent_pid(&self, name: &str) -> Option<u32> {
        self.launcher.agent(name).and_then(|a| a.pid())
    }

    /// The process id of every running peer, by member index (0-based).
    pub fn peer_pids(&self) -> Vec<(usize, u32)> {
        (1..=SIZE as u64)
            .filter_map(|slot| {
                let pid = self.launcher.peer(slot)?.pid()?;
                Some((slot as usize - 1, pid))
            })
            .collect()
    }

    /// A client of member `member` (0-based) alone, with the admin token.
    pub fn client_of(&self, member: usize) -> anyhow::Result<orion_client::Client> {
        let url = self
            .kv
            .urls
            .get(member)
            .with_context(|| format!("no member {member}"))?;
        let (Some(ca), Some(token)) = (self.launcher.ca_pem(), self.launcher.admin_token()) else {
            anyhow::bail!("the orion cluster has no admin credentials");
        };
        Ok(orion_client::Client::new(
            std::slice::from_ref(url),
            ca,
            Some(token.to_string()),
        )?)
    }
}
