//! The openraft type configuration.

use std::fmt;
use std::io::Cursor;

use serde::{Deserialize, Serialize};

use crate::command::{CommandResult, Proposal};

/// A control-plane member as recorded in Raft membership: where to reach it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// REST API address (`host:port`), used to forward client calls to the leader.
    pub api_addr: String,
    /// Raft gRPC address (`host:port`).
    pub peer_addr: String,
    /// QUIC address agents connect to (`host:port`); empty for peers from before agents.
    #[serde(default)]
    pub agent_addr: String,
}

impl fmt::Display for Member {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "api={} peer={}", self.api_addr, self.peer_addr)?;
        if !self.agent_addr.is_empty() {
            write!(f, " agent={}", self.agent_addr)?;
        }
        Ok(())
    }
}

openraft::declare_raft_types!(
    /// Orion's Raft types: node ids are `u64`, entries carry [`Proposal`]s (a
    /// [`Command`](crate::Command) and its client request id).
    pub TypeConfig:
        D = Proposal,
        R = CommandResult,
        Node = Member,
);

pub type NodeId = u64;
pub type Raft = openraft::Raft<TypeConfig>;
pub type LogId = openraft::LogId<NodeId>;
pub type RaftMetrics = openraft::RaftMetrics<NodeId, Member>;
