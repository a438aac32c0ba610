//! The clusters a scenario measures: three Orion peers started from the `orion` binary,
//! or three etcd members, on loopback, client TLS on, data in a temp dir that is removed
//! (and every process killed) when the cluster is dropped — at the end of a run, on an
//! error and on Ctrl-C alike.

mod etcd;
mod orion;

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::bail;
use tokio::time::Instant;

use crate::kv::{Kv, System};
use crate::member::Member;

pub use etcd::EtcdCluster;
pub use orion::OrionCluster;

/// Members per cluster.
pub const SIZE: usize = 3;
/// How long a cluster may take to form, or to recover after a member restarts.
const FORM_TIMEOUT: Duration = Duration::from_secs(60);

/// Where the programs are.
#[derive(Debug, Clone)]
pub struct Programs {
    pub orion: PathBuf,
    /// The config file every Orion peer gets (`--orion-config`), if any.
    pub orion_config: Option<String>,
    pub etcd: PathBuf,
}

pub enum Cluster {
    Orion(OrionCluster),
    Etcd(EtcdCluster),
}

impl Cluster {
    /// Starts a fresh 3-member cluster of `system`; returns once it has a leader that
    /// every member agrees on. `clients` sizes the connection pool.
    pub async fn start(
        system: System,
        programs: &Programs,
        clients: usize,
    ) -> anyhow::Result<Self> {
        Ok(match system {
            System::Orion => Cluster::Orion(OrionCluster::start(programs, clients).await?),
            System::Etcd => Cluster::Etcd(EtcdCluster::start(&programs.etcd, clients).await?),
        })
    }

    pub fn kv(&self) -> Kv {
        match self {
            Cluster::Orion(c) => c.kv.clone(),
            Cluster::Etcd(c) => c.kv.clone(),
        }
    }

    /// Index (0-based) of the member every running member names as leader.
    pub async fn wait_for_leader(&mut self) -> anyhow::Result<usize> {
        match self {
            Cluster::Orion(c) => c.wait_healthy().await,
            Cluster::Etcd(c) => c.wait_healthy().await,
        }
    }

    pub fn kill9(&mut self, member: usize) {
        match self {
            Cluster::Orion(c) => c.kill9(member),
            Cluster::Etcd(c) => {
                if let Some(m) = c.members.get_mut(member) {
                    m.kill9();
                }
            }
        }
    }

    /// Starts a killed member again on its ports and data.
    pub fn restart(&mut self, member: usize) -> anyhow::Result<()> {
        match self {
            Cluster::Orion(c) => c.restart(member),
            Cluster::Etcd(c) => match c.members.get_mut(member) {
                Some(m) => m.start(),
                None => bail!("no member {member}"),
            },
        }
    }
}

/// Polls `cond` every 50 ms until it gives `Some`; fails naming `what` at the deadline,
/// or as soon as a running member exits.
async fn wait_until<T, F, Fut>(what: &str, members: &mut [Member], mut cond: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + FORM_TIMEOUT;
    loop {
        if let Some(v) = cond().await {
            return Ok(v);
        }
        for m in members.iter_mut() {
            m.check_alive()?;
        }
        if Instant::now() > deadline {
            let logs: Vec<String> = members
                .iter()
                .map(|m| m.log.display().to_string())
                .collect();
            bail!(
                "timed out after {FORM_TIMEOUT:?} waiting for {what}; see {}",
                logs.join(", ")
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
