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
    /// The port allocated for each named port of the service (`ORION_PORT_<NAME>`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub ports: BTreeMap<String, u16>,
}

/// A request the leader sends on a new bidirectional stream of an agent's
/// connection, so a busy log never delays the control stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum StreamRequest {
    /// Answered with raw log bytes (stdout and stderr merged by line) until the
    /// stream ends; with `follow`, new lines keep coming until the reader goes away.
    /// With `records`, each line is a JSON [`LogRecord`] instead, which says how
    /// far into each live file the reader got, so a broken stream can resume.
    Logs {
        replica: String,
        tail: usize,
        follow: bool,
        /// Resume after these offsets of the live files (no tail is sent then).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        from: Option<LogCursor>,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        records: bool,
    },
    /// Answered with one [`ExecResult`] frame.
    Exec {
        replica: String,
        command: Vec<String>,
    },
}

/// How far a reader got in each live log file of a replica, in bytes from its
/// start: where the next line it has not seen begins.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogCursor {
    pub stdout: u64,
    pub stderr: u64,
}

/// Which output of a replica a [`LogRecord`] comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogStreamName {
    Stdout,
    Stderr,
}

/// One line of a replica's log in record form (`GET …/logs?records=true`, one JSON
/// object per line).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogRecord {
    pub stream: LogStreamName,
    /// Where the reader stands in the stream's live file after this record: pass
    /// it back as the cursor to resume right after it.
    pub offset: u64,
    /// The line, without its newline; for a notice, what Orion says about the
    /// stream; empty for a mark.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub text: String,
    #[serde(default, skip_serializing_if = "LogRecordKind::is_line")]
    pub kind: LogRecordKind,
}

/// What a [`LogRecord`] carries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogRecordKind {
    /// A line the replica wrote.
    #[default]
    Line,
    /// The stream was rotated or truncated: some lines may be missing.
    Notice,
    /// No line, only where the reader stands: sent for each stream once its tail
    /// is sent, so a reader knows its cursor even in a stream with no lines yet.
    Mark,
}

impl LogRecordKind {
    pub fn is_line(&self) -> bool {
        *self == LogRecordKind::Line
    }
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
