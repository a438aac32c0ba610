//! What the leader knows about connected agents, in memory only: the last
//! heartbeat and usage of each node, the replica states agents report, and each
//! agent's live connection (which log and exec streams are opened on). The gateway
//! writes it; the node controller and the node and replica endpoints read it.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use orion_api::agent_proto::{NodeUsage, ReplicaReport};

#[derive(Default)]
pub struct AgentRegistry {
    table: Mutex<Table>,
    /// Woken whenever an agent connects.
    arrived: Notify,
}

#[derive(Default)]
struct Table {
    /// Last heartbeat per node.
    last_seen: BTreeMap<String, Instant>,
    /// Last reported replica states, by replica id.
    observed: BTreeMap<String, ReplicaReport>,
    /// The node whose agent sent each of those reports: right after a replica
    /// moved, the report of its old process may still be the last one.
    reporter: BTreeMap<String, String>,
    /// The latest usage each agent reported.
    usage: BTreeMap<String, NodeUsage>,
    /// The live connection of each node's agent, for log and exec streams.
    conns: BTreeMap<String, quinn::Connection>,
}

impl AgentRegistry {
    fn table(&self) -> MutexGuard<'_, Table> {
        // A panic while holding the lock leaves plain maps behind: still usable.
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `node`'s agent connected (or reconnected) on `conn`.
    pub fn connected(&self, node: &str, conn: quinn::Connection) {
        let mut t = self.table();
        t.last_seen.insert(node.to_string(), Instant::now());
        t.conns.insert(node.to_string(), conn);
        drop(t);
        self.arrived.notify_waiters();
    }

    /// The session on `conn` ended; forgets the connection unless a newer one
    /// of the same node replaced it.
    pub fn disconnected(&self, node: &str, conn: &quinn::Connection) {
        let mut t = self.table();
        if t.conns
            .get(node)
            .is_some_and(|c| c.stable_id() == conn.stable_id())
        {
            t.conns.remove(node);
        }
    }

    /// How many agents have a live session to this peer.
    pub fn connection_count(&self) -> usize {
        self.table().conns.len()
    }

    /// A heartbeat from `node`'s agent.
    pub fn heartbeat(&self, node: &str, usage: NodeUsage) {
        let mut t = self.table();
        t.last_seen.insert(node.to_string(), Instant::now());
        t.usage.insert(node.to_string(), usage);
    }

    /// Replica states `node`'s agent reported (for replicas placed on its node).
    pub fn observed(&self, node: &str, reports: impl IntoIterator<Item = ReplicaReport>) {
        let mut t = self.table();
        for r in reports {
            t.reporter.insert(r.id.clone(), node.to_string());
            t.observed.insert(r.id.clone(), r);
        }
    }

    /// The latest report of replica `id` if `node`'s agent sent it.
    pub fn report_from(&self, node: &str, id: &str) -> Option<ReplicaReport> {
        let t = self.table();
        (t.reporter.get(id).map(String::as_str) == Some(node))
            .then(|| t.observed.get(id).cloned())
            .flatten()
    }

    /// When `node`'s agent was last heard from, for every node heard from.
    pub fn last_seen(&self) -> BTreeMap<String, Instant> {
        self.table().last_seen.clone()
    }

    /// The latest usage of every node.
    pub fn usage(&self) -> BTreeMap<String, NodeUsage> {
        self.table().usage.clone()
    }

    /// The latest reports of the replicas `wanted` accepts.
    pub fn reports(&self, wanted: impl Fn(&str) -> bool) -> BTreeMap<String, ReplicaReport> {
        self.table()
            .observed
            .iter()
            .filter(|(id, _)| wanted(id))
            .map(|(id, r)| (id.clone(), r.clone()))
            .collect()
    }

    /// The live connection of `node`'s agent.
    pub fn connection(&self, node: &str) -> Option<quinn::Connection> {
        self.table().conns.get(node).cloned()
    }

    /// The live connection of `node`'s agent, waiting up to `timeout` for one to
    /// arrive: right after this peer became leader, agents are still finding it.
    pub async fn wait_for_connection(
        &self,
        node: &str,
        timeout: Duration,
    ) -> Option<quinn::Connection> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            // Registered before the check, so a connection in between still wakes it.
            let arrived = self.arrived.notified();
            tokio::pin!(arrived);
            arrived.as_mut().enable();
            if let Some(conn) = self.connection(node) {
                return Some(conn);
            }
            if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                return None;
            }
        }
    }
}
