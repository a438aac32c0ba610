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
    /// A draining node keeps nothing: its replicas are placed elsewhere.
    #[serde(default)]
    pub draining: bool,
    /// Registered by its agent, whose heartbeats keep it ready. A node registered by
    /// hand (`PUT /v1/nodes`) has no agent and never times out.
    #[serde(default)]
    pub agent: bool,
    #[serde(default)]
    pub mod_revision: u64,
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
