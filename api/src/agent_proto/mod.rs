//! The agent ↔ leader protocol carried on the QUIC streams (ALPN [`ALPN`]).
//!
//! The wire schema is `api/proto/agent.proto` (protobuf, package `orion.agent.v1`,
//! generated into [`wire`]); the types here are what the code on both ends handles.
//! [`codec`] is the one place frames are read and written: each is a 4-byte
//! big-endian length, then one protobuf message, at most [`MAX_FRAME`] bytes. A
//! decoded frame is checked while it becomes one of these types, so a frame the
//! peer got wrong is a [`FrameError`] that names the problem, never a default.
//!
//! The agent speaks first ([`AgentMessage::Hello`]); a follower answers
//! [`ServerMessage::Redirect`] and closes, the leader answers
//! [`ServerMessage::Welcome`] and from then on sends the node's full desired replica
//! set ([`ServerMessage::Desired`]) whenever it changes: level-triggered, never deltas.
//!
//! [`ReplicaReport`], [`NodeUsage`], [`ExecResult`], [`LogCursor`] and [`LogRecord`]
//! are also part of the REST API (as JSON), so they keep their serde forms.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::spec::{Resources, ServiceSpec};

pub mod codec;
mod convert;

pub use codec::{write_frame, Frame, FrameCodec, FrameError, FrameReader};

/// The messages as protobuf generates them from `api/proto/agent.proto`. Only the
/// codec and the conversions use them.
pub mod wire {
    #![allow(clippy::all, missing_docs)]
    include!(concat!(env!("OUT_DIR"), "/orion.agent.v1.rs"));
}

/// ALPN protocol id of the agent link: `orion/1` spoke JSON frames, `orion/2` the
/// protobuf frames of `agent.proto`.
pub const ALPN: &[u8] = b"orion/2";

/// The version of `agent.proto` this build speaks, sent in hello and welcome.
///
/// Version policy: an agent and a leader each announce theirs; a message or
/// enum value added in version N is sent only to a side that announced N or more,
/// so a newer side works with an older one (upgrade servers first, then agents,
/// or the other way round). A side refuses a peer below [`MIN_PROTOCOL_VERSION`]
/// with a frame error naming both. An incompatible change is a new package and a
/// new [`ALPN`] (`orion/3`), which an older side refuses at the TLS handshake.
pub const PROTOCOL_VERSION: u32 = 1;

/// The oldest `agent.proto` version this build still speaks.
pub const MIN_PROTOCOL_VERSION: u32 = 1;

/// Largest frame either side accepts or sends, in bytes (without the length prefix).
pub const MAX_FRAME: usize = 16 << 20;

/// What an agent sends on its control stream (`AgentFrame` on the wire).
#[derive(Debug, Clone, PartialEq)]
pub enum AgentMessage {
    Hello {
        node: String,
        labels: BTreeMap<String, String>,
        capacity: Resources,
    },
    /// Sent every second; liveness is kept in the leader's memory, never in Raft.
    Heartbeat {
        replicas_running: u32,
        usage: NodeUsage,
    },
    /// The state of every replica the agent runs.
    Status { replicas: Vec<ReplicaReport> },
}

/// What the gateway sends on an agent's control stream (`ServerFrame` on the wire).
#[derive(Debug, Clone, PartialEq)]
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
#[derive(Debug, Clone, PartialEq)]
pub struct DesiredReplica {
    /// `service-ordinal`.
    pub id: String,
    pub generation: u64,
    pub service: ServiceSpec,
    /// The values of `service.env_variables`, resolved by the leader.
    pub variables: VariableValues,
}

/// The values of a replica's variable-backed env, as the leader resolved them.
/// They may be secrets: `Debug` shows the names only, so no log line carries one.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VariableValues {
    /// Env name → the variable's value.
    #[serde(default)]
    pub values: BTreeMap<String, String>,
    /// Paths of referenced variables that do not exist: the replica waits for them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing: Vec<String>,
}

impl std::fmt::Debug for VariableValues {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VariableValues")
            .field("names", &self.values.keys().collect::<Vec<_>>())
            .field("missing", &self.missing)
            .finish()
    }
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
    pub state: ReplicaState,
    pub restarts: u32,
    pub reason: Option<String>,
    /// The port allocated for each named port of the service (`ORION_PORT_<NAME>`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub ports: BTreeMap<String, u16>,
    /// The generation of the desired replica this state belongs to (0: unknown).
    #[serde(default)]
    pub generation: u64,
    /// The exit code of a replica that exited and is not restarted (a job's
    /// task); `None` while it runs, after a signal, or from an older agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
}

/// What a replica is doing, as its agent reports it (in JSON, the snake_case name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplicaState {
    /// About to be spawned (or waiting for a previous instance to stop).
    Starting,
    /// Alive; no health check, or the check has not passed yet.
    Running,
    /// The health check passed.
    Healthy,
    /// The health check failed; it is being killed.
    Unhealthy,
    /// Exited and waiting to be restarted.
    Backoff,
    /// Exited and, by its restart policy, not restarted. The report's reason
    /// starts with how it exited: `exited with code 3`, `killed by signal 9
    /// (SIGKILL)`, `exited (status unknown)` (the leader's `on_failure` hook reads it).
    Exited,
    /// Could not be started; retried with backoff.
    Failed,
    /// Stopped on request.
    Stopped,
}

impl ReplicaState {
    /// Every state, in lifecycle order (metrics give each its own series).
    pub const ALL: [ReplicaState; 8] = [
        ReplicaState::Starting,
        ReplicaState::Running,
        ReplicaState::Healthy,
        ReplicaState::Unhealthy,
        ReplicaState::Backoff,
        ReplicaState::Exited,
        ReplicaState::Failed,
        ReplicaState::Stopped,
    ];

    /// The name shown by the API and the CLI, e.g. `healthy`.
    pub fn as_str(&self) -> &'static str {
        match self {
            ReplicaState::Starting => "starting",
            ReplicaState::Running => "running",
            ReplicaState::Healthy => "healthy",
            ReplicaState::Unhealthy => "unhealthy",
            ReplicaState::Backoff => "backoff",
            ReplicaState::Exited => "exited",
            ReplicaState::Failed => "failed",
            ReplicaState::Stopped => "stopped",
        }
    }
}

impl fmt::Display for ReplicaState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A request the leader sends on a new bidirectional stream of an agent's
/// connection, so a busy log never delays the control stream.
#[derive(Debug, Clone, PartialEq, Eq)]
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
        from: Option<LogCursor>,
        records: bool,
    },
    /// Answered with one [`ExecResult`] frame. An empty `replica` runs the command
    /// on the node itself (a lifecycle hook); `timeout_ms` 0 is the agent's default;
    /// `env` is added to the command's environment.
    Exec {
        replica: String,
        command: Vec<String>,
        timeout_ms: u64,
        env: BTreeMap<String, String>,
    },
    /// Stop the replica's process (SIGTERM, SIGKILL after the agent's stop grace)
    /// and start it again, whatever its restart policy; answered with one
    /// [`RestartResult`] frame once the new process runs. An agent older than this
    /// request resets the stream instead.
    Restart { replica: String },
}

/// The outcome of a [`StreamRequest::Restart`]: the new process and the replica's
/// restart count, or `error` when it could not be restarted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestartResult {
    pub pid: Option<u32>,
    pub restarts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
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
