//! The agent ↔ leader protocol carried on the QUIC control stream (ALPN `orion/1`).
//!
//! Each message is one frame: a 4-byte big-endian length, then the message as JSON.
//! The agent speaks first ([`AgentMessage::Hello`]); a follower answers
//! [`ServerMessage::Redirect`] and closes, the leader answers
//! [`ServerMessage::Welcome`] and from then on sends the node's full desired replica
//! set ([`ServerMessage::Desired`]) whenever it changes: level-triggered, never deltas.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::spec::{Resources, ServiceSpec};

/// ALPN protocol id of the agent link.
pub const ALPN: &[u8] = b"orion/1";

/// Largest frame either side accepts.
pub const MAX_FRAME: usize = 16 << 20;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AgentMessage {
    Hello {
        node: String,
        labels: BTreeMap<String, String>,
        capacity: Resources,
    },
    /// Sent every second; liveness is kept in the leader's memory, never in Raft.
    Heartbeat {
        replicas_running: u32,
        #[serde(default)]
        usage: NodeUsage,
    },
    /// The state of every replica the agent runs.
    Status { replicas: Vec<ReplicaReport> },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    /// Not the leader: connect to `agent_addr` instead (absent while no leader is known).
    Redirect {
        agent_addr: Option<String>,
    },
    Welcome {
        node: String,
    },
    /// Everything this node should run, as of `revision`.
    Desired {
        revision: u64,
        replicas: Vec<DesiredReplica>,
    },
}

/// One replica the node should run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DesiredReplica {
    /// `service-ordinal`.
    pub id: String,
    pub generation: u64,
    pub service: ServiceSpec,
}

/// How busy the node is, as the agent measured it for this heartbeat.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeUsage {
    /// One-minute load average, in thousandths (1000 = one busy core).
    pub load_milli: u64,
    pub memory_total_bytes: u64,
    pub memory_available_bytes: u64,
}

/// What the agent observes of one replica.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaReport {
    pub id: String,
    pub pid: Option<u32>,
    /// `running`, `healthy`, `unhealthy`, `backoff`, `exited`, `failed`, ...
    pub state: String,
    pub restarts: u32,
    pub reason: Option<String>,
}

/// A request the leader sends on a new bidirectional stream of an agent's
/// connection, so a busy log never delays the control stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum StreamRequest {
    /// Answered with raw log bytes (stdout and stderr merged by line) until the
    /// stream ends; with `follow`, new lines keep coming until the reader goes away.
    Logs {
        replica: String,
        tail: usize,
        follow: bool,
    },
    /// Answered with one [`ExecResult`] frame.
    Exec {
        replica: String,
        command: Vec<String>,
    },
}

/// The outcome of an exec. `error` is set when the command could not run at all.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecResult {
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The body length a frame header announces, refused above [`MAX_FRAME`].
pub fn frame_len(header: [u8; 4]) -> Result<usize, String> {
    let len = u32::from_be_bytes(header) as usize;
    if len > MAX_FRAME {
        return Err(format!(
            "frame of {len} bytes is over the {MAX_FRAME}-byte limit"
        ));
    }
    Ok(len)
}

/// Decodes a frame body.
pub fn decode_frame<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, String> {
    serde_json::from_slice(body).map_err(|e| format!("undecodable frame: {e}"))
}

/// Encodes one frame.
pub fn encode_frame<T: Serialize>(msg: &T) -> Vec<u8> {
    let body = serde_json::to_vec(msg).unwrap_or_default();
    let mut out = Vec::with_capacity(body.len() + 4);
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&body);
    out
}
