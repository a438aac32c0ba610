//! Workload objects as the API stores and returns them, and the `apply` exchange.

use serde::{Deserialize, Serialize};

use crate::spec::ServiceSpec;

/// A stored service: the spec as applied, with its revisions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ServiceObject {
    #[schema(value_type = Object)]
    pub spec: ServiceSpec,
    pub create_revision: u64,
    pub mod_revision: u64,
    /// Bumped on every change of the spec; replicas record the generation they run.
    pub generation: u64,
    /// Earlier specs, oldest first, at most [`MAX_SERVICE_HISTORY`]: what replicas
    /// not yet rolled still run, and what `rollout undo` can restore.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<ServiceRevision>,
    /// Where the rolling update to `generation` stands.
    #[serde(default)]
    pub rollout: Rollout,
    /// The `after_deploy` and `on_failure` hook runs (see [`crate::hook_run`]).
    #[serde(default, skip_serializing_if = "crate::hook_run::HookRuns::is_empty")]
    #[schema(value_type = Object)]
    pub hooks: crate::hook_run::HookRuns,
}

/// Body of `POST /v1/services/{name}/rollout/undo`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RolloutUndo {
    /// The generation to restore; the one before the current when absent.
    #[serde(default)]
    pub to_revision: Option<u64>,
}

/// How many earlier specs a service keeps (Kubernetes' `revisionHistoryLimit`).
pub const MAX_SERVICE_HISTORY: usize = 10;

impl ServiceObject {
    /// How many replica ordinals the service keeps placed now: `replicas`, plus
    /// the surge slots of a rollout in progress (ordinals `replicas ..`).
    pub fn slots(&self) -> u32 {
        self.spec.replicas.saturating_add(self.rollout.surge)
    }

    /// The spec of `generation`: the current one, or one kept in the history.
    pub fn spec_of(&self, generation: u64) -> Option<&ServiceSpec> {
        if generation == self.generation {
            return Some(&self.spec);
        }
        self.history
            .iter()
            .find(|r| r.generation == generation)
            .map(|r| &r.spec)
    }
}

/// One earlier spec of a service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ServiceRevision {
    pub generation: u64,
    #[schema(value_type = Object)]
    pub spec: ServiceSpec,
    /// The store revision at which this spec was applied.
    pub revision: u64,
    /// Its rollout had completed when the next spec replaced it: what an automatic
    /// rollback returns to.
    #[serde(default)]
    pub stable: bool,
}

/// The state of a service's rolling update, replicated so a new leader carries on
/// where the old one stopped.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Rollout {
    pub state: RolloutState,
    /// Set by `rollout pause`: no replica is moved to the new revision until resumed.
    #[serde(default)]
    pub paused: bool,
    /// Why it failed, or which revision a rollback came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Set when this generation is a rollback: the generation it replaced. A
    /// rollback that fails is not rolled back again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rolled_back_from: Option<u64>,
    /// Surge slots the rollout holds open: the replica controller keeps ordinals
    /// `replicas .. replicas + surge` placed (at most `strategy.max_surge`), so new
    /// replicas can start before old ones stop. Back to 0 when the rollout ends.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub surge: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RolloutState {
    /// Replicas are being moved to the current revision.
    #[default]
    Progressing,
    /// Every replica runs the current revision and is available.
    Complete,
    /// A new replica was not available within `healthy_deadline`; nothing more is
    /// moved until a new apply, `rollout undo`, or (with `auto_rollback`) the
    /// automatic return to the last revision that completed. It still becomes
    /// `Complete` if every replica turns out available after all.
    Failed,
}

impl std::fmt::Display for RolloutState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RolloutState::Progressing => "progressing",
            RolloutState::Complete => "complete",
            RolloutState::Failed => "failed",
        })
    }
}

/// One file of an `orion apply`, sent as text so the server parses and validates it
/// with file, line and column in every error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SourceFile {
    pub name: String,
    pub content: String,
}

/// Body of `POST /v1/apply`: every resource of every file is applied in one Raft
/// entry, or none is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApplyRequest {
    pub files: Vec<SourceFile>,
}

/// Body of `POST /v1/replicas/{id}/exec`: the program and its arguments.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ExecRequest {
    pub command: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    Created,
    Configured,
    Unchanged,
}

/// What applying one resource did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ApplyResult {
    pub kind: String,
    pub name: String,
    pub change: Change,
    /// The object's `mod_revision` after the apply.
    pub mod_revision: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ApplyResponse {
    pub revision: u64,
    pub results: Vec<ApplyResult>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ServiceList {
    pub revision: u64,
    pub items: Vec<ServiceObject>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ServiceResponse {
    pub revision: u64,
    pub service: ServiceObject,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DeletedService {
    pub revision: u64,
    pub deleted: ServiceObject,
}

/// Whether a node takes and keeps replicas.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum NodeStatus {
    #[default]
    Ready,
    Down,
}

/// A machine that runs replicas (registered by its agent, or by an admin).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NodeObject {
    pub name: String,
    #[serde(default)]
    pub labels: std::collections::BTreeMap<String, String>,
    pub capacity: crate::spec::Resources,
    #[serde(default)]
    pub status: NodeStatus,
    /// Takes no new replicas and keeps those it has (`orion node cordon`).
    #[serde(default)]
    pub cordoned: bool,
    /// Being drained (`orion node drain`): it takes no new replicas, and its
    /// replicas move elsewhere, never more of a service at once than its
    /// `strategy.max_unavailable` allows. It stays ineligible once empty, until
    /// `orion node uncordon`.
    #[serde(default)]
    pub draining: bool,
    /// When a drain stops waiting for replicas to be healthy elsewhere and moves
    /// every one left (milliseconds since the Unix epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drain_deadline_unix_ms: Option<u64>,
    /// Registered by its agent, whose heartbeats keep it ready. A node registered by
    /// hand (`PUT /v1/nodes`) has no agent and never times out.
    #[serde(default)]
    pub agent: bool,
    #[serde(default)]
    pub mod_revision: u64,
}

/// The longest drain deadline accepted (a week) and the default (an hour, as Nomad's).
pub const MAX_DRAIN_DEADLINE_SECS: u64 = 7 * 24 * 3600;
pub const DEFAULT_DRAIN_DEADLINE_SECS: u64 = 3600;

/// `POST /v1/nodes/{name}/drain`: how long the drain may wait for replicas to be
/// healthy elsewhere before it moves the rest at once.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DrainRequest {
    /// Seconds (default 3600, at most 604800).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(maximum = 604800)]
    pub deadline_seconds: Option<u64>,
}

impl NodeObject {
    /// Whether new replicas may be placed here: ready, not cordoned, not draining.
    pub fn schedulable(&self) -> bool {
        self.status == NodeStatus::Ready && !self.cordoned && !self.draining
    }
}

/// One placed instance of a service. Intent (`node`, `generation`) is written by the
/// leader's replica controller; what the agent observes lives in other fields later.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ReplicaObject {
    pub service: String,
    pub ordinal: u32,
    pub node: String,
    /// The service generation this replica was placed for.
    pub generation: u64,
    pub resources: crate::spec::Resources,
    #[serde(default)]
    pub create_revision: u64,
}

impl ReplicaObject {
    /// `service-ordinal`, e.g. `web-0`.
    pub fn id(&self) -> String {
        format!("{}-{}", self.service, self.ordinal)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NodeList {
    pub revision: u64,
    pub items: Vec<NodeObject>,
    /// The latest heartbeat usage per node (answered by the leader only).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    #[schema(value_type = Object)]
    pub usage: std::collections::BTreeMap<String, crate::agent_proto::NodeUsage>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ReplicaList {
    pub revision: u64,
    pub items: Vec<ReplicaObject>,
    /// Replicas that could not be placed: one entry per (service, reason), with a
    /// count, however many replicas share it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unplaced: Vec<UnplacedReplicas>,
    /// What the agents last reported, by replica id (answered by the leader only).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    #[schema(value_type = Object)]
    pub observed: std::collections::BTreeMap<String, crate::agent_proto::ReplicaReport>,
}

/// Answer of `POST /v1/replicas/{id}/restart`: the replica's new process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RestartedReplica {
    pub replica: String,
    pub node: String,
    /// The new process, as the agent started it.
    pub pid: Option<u32>,
    /// The replica's restart count, this restart included.
    pub restarts: u32,
}

/// Replicas of one service that no node can take now, all for the same reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct UnplacedReplicas {
    pub service: String,
    /// Per-node failures counted by kind, e.g.
    /// `0/3 nodes: 2 insufficient memory, 1 constraint mismatch (zone == a)`.
    pub reason: String,
    /// How many replicas of the service this reason holds back.
    pub count: u32,
    /// The lowest ordinal among them (`web-<first_ordinal>`).
    pub first_ordinal: u32,
}

impl std::fmt::Display for UnplacedReplicas {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = if self.count == 1 {
            format!("{}-{}", self.service, self.first_ordinal)
        } else {
            format!(
                "{} replicas of {} (from {}-{})",
                self.count, self.service, self.service, self.first_ordinal
            )
        };
        write!(f, "{what}: {}", self.reason)
    }
}
