//! The node controller: an agent-managed node whose heartbeats stop for longer
//! than the TTL is marked down, so the replica controller places its replicas
//! elsewhere. Heartbeats live in the leader's memory only; just the transition is
//! written to Raft. After a leader change every node gets a full TTL of grace,
//! since the new leader has heard nobody yet.

use std::sync::Arc;
use std::time::{Duration, Instant};

use orion_api::{NodeObject, NodeStatus};
use orion_raft::{read, Command, LeaderError, RaftNode};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::gateway::registry::AgentRegistry;

/// The nodes whose last sign of life is older than `ttl`.
pub fn expired(
    nodes: &[NodeObject],
    last_seen: impl Fn(&str) -> Option<Instant>,
    leading_since: Instant,
    now: Instant,
    ttl: Duration,
) -> Vec<&NodeObject> {
    nodes
        .iter()
        .filter(|n| n.agent && n.status == NodeStatus::Ready)
        .filter(|n| {
            let seen = last_seen(&n.name).map_or(leading_since, |t| t.max(leading_since));
            now.saturating_duration_since(seen) > ttl
        })
        .collect()
}

/// Marks silent nodes down until `token` is cancelled (leadership lost, or shutdown).
pub async fn run(
    node: RaftNode,
    agents: Arc<AgentRegistry>,
    ttl: Duration,
    token: CancellationToken,
) {
    let leading_since = Instant::now();
    let mut tick = tokio::time::interval((ttl / 5).max(Duration::from_millis(100)));
    loop {
        tokio::select! {
            () = token.cancelled() => return,
            _ = tick.tick() => {}
        }
        let Ok(nodes) = node.reader.with_view(read::nodes) else {
            continue;
        };
        let last_seen = agents.last_seen();
        let down: Vec<NodeObject> = expired(
            &nodes,
            |n| last_seen.get(n).copied(),
            leading_since,
            Instant::now(),
            ttl,
        )
        .into_iter()
        .cloned()
        .collect();
        for silent in down {
            info!(node = %silent.name, ttl_ms = ttl.as_millis() as u64, "node missed its heartbeats; marking it down");
            let cmd = Command::UpsertNode {
                node: NodeObject {
                    status: NodeStatus::Down,
                    ..silent
                },
            };
            match node.propose(cmd).await {
                Ok(_) => {}
                Err(LeaderError::NotLeader { .. } | LeaderError::Fatal(_)) => return,
                Err(e) => warn!(cause = %e, "could not mark a node down"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use orion_api::spec::Resources;

    use super::*;

    fn node(name: &str, agent: bool) -> NodeObject {
        NodeObject {
            name: name.into(),
            labels: BTreeMap::new(),
            capacity: Resources {
                cpu_millis: 1000,
                memory_bytes: 1 << 30,
            },
            status: NodeStatus::Ready,
            cordoned: false,
            draining: false,
            drain_deadline_unix_ms: None,
            agent,
            mod_revision: 1,
        }
    }

    #[test]
    fn only_silent_agent_nodes_past_the_ttl_and_the_grace_expire() {
        let t0 = Instant::now();
        let ttl = Duration::from_secs(5);
        let nodes = [
            node("quiet", true),
            node("chatty", true),
            node("static", false),
        ];
        let seen = |n: &str| match n {
            "chatty" => Some(t0 + Duration::from_secs(9)),
            _ => None,
        };
        // Within the grace after becoming leader: nobody expires.
        assert!(expired(&nodes, seen, t0, t0 + Duration::from_secs(4), ttl).is_empty());
        let gone: Vec<&str> = expired(&nodes, seen, t0, t0 + Duration::from_secs(10), ttl)
            .iter()
            .map(|n| n.name.as_str())
            .collect();
        assert_eq!(gone, ["quiet"]);
    }
}
