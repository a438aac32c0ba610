//! What the supervisor is told to run and what it says about it: the types the
//! supervisor, the session and the tests share.

use std::collections::BTreeMap;

use orion_api::agent_proto::VariableValues;
use orion_api::spec::service::ServiceSpec;
use serde::{Deserialize, Serialize};

/// One replica this node should run: what the control plane sends for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaSpec {
    /// Unique on the node, e.g. `web-0`; names its logs, record and work folder.
    pub id: String,
    pub service: ServiceSpec,
    /// The port the agent's port book allocated for each name in `service.ports`.
    pub ports: BTreeMap<String, u16>,
    /// The service generation the leader placed this spec for, reported back with
    /// the replica's state so a rolling update knows which process a report is of.
    /// Not part of what the process is: a new generation with the same spec keeps
    /// the process running.
    #[serde(default)]
    pub generation: u64,
    /// The values of `service.env_variables`, as the leader last resolved them. Not
    /// part of what the process is either: a running replica keeps the values it
    /// started with, and takes the newest ones when it starts again (a variable
    /// referenced with `restart_on_change` gives the service a new generation
    /// instead, whose spec differs). `Debug` shows no value.
    #[serde(default)]
    pub variables: VariableValues,
}

impl ReplicaSpec {
    /// Whether `other` describes the same process (everything but the generation
    /// and the variables' values).
    pub fn same_process(&self, other: &ReplicaSpec) -> bool {
        self.id == other.id && self.service == other.service && self.ports == other.ports
    }
}

/// What `Supervisor::exec` produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecOutput {
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// What a replica is doing now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplicaState {
    /// Its task is about to spawn it (or waits for a previous instance to stop).
    Starting,
    /// The process is alive; it has no health check, or the check has not passed yet.
    Running,
    /// The health check passed `successes` times in a row.
    Healthy,
    /// The health check failed `failures` times in a row; it is being killed.
    Unhealthy,
    /// Exited and waiting to be restarted.
    Backoff,
    /// Exited and, by its restart policy, not restarted.
    Exited {
        code: Option<i32>,
        signal: Option<i32>,
    },
    /// Could not be started; retried with backoff. The reason says why.
    Failed { reason: String },
    /// Stopped on request.
    Stopped,
}

impl ReplicaState {
    /// The state as the agent protocol reports it (without its details).
    pub fn reported(&self) -> orion_api::agent_proto::ReplicaState {
        use orion_api::agent_proto::ReplicaState as Reported;
        match self {
            ReplicaState::Starting => Reported::Starting,
            ReplicaState::Running => Reported::Running,
            ReplicaState::Healthy => Reported::Healthy,
            ReplicaState::Unhealthy => Reported::Unhealthy,
            ReplicaState::Backoff => Reported::Backoff,
            ReplicaState::Exited { .. } => Reported::Exited,
            ReplicaState::Failed { .. } => Reported::Failed,
            ReplicaState::Stopped => Reported::Stopped,
        }
    }
}

/// The observed state of one replica, as reported to the control plane.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaStatus {
    pub id: String,
    pub pid: Option<u32>,
    pub state: ReplicaState,
    pub restarts: u32,
    /// How the previous process ended, e.g. `exited with code 3`.
    pub last_exit: Option<String>,
    /// Why the replica is in its state, when that needs explaining.
    pub reason: Option<String>,
}
