//! Orion's resource types and wire shapes, shared by the peers, the agent and the CLI.
//!
//! This crate does no I/O. It defines what the REST API accepts and returns and
//! how input is validated, so every caller rejects bad input the same way.
//!
//! # Layout
//! - [`agent_proto`]: the agent ↔ leader protocol on the QUIC link (`proto/agent.proto`)
//!   and its one framed codec.
//! - [`variable`]: the `Variable` kind (small CAS-able config values) and path rules.
//! - [`event`]: the change records kept in the watch window, and watch cursors.
//! - [`spec`]: `orion.yaml` — parsing with `file:line:column` errors, the typed
//!   `ServiceSpec`, and the JSON Schema editors use.
//! - [`cluster`]: control-plane members and cluster status as the API shows them.
//! - [`workload`]: stored workload objects and the `apply` exchange.
//! - [`job`]: stored jobs, their runs and task attempts.
//! - [`hook_run`]: the replicated record of a service's lifecycle hook runs.
//! - [`overview`]: the dashboard's first view in one answer (`GET /v1/overview`).
//! - [`request_id`]: client request ids, which make a retried write apply once.
//! - [`error`]: the JSON error body every endpoint returns, and its machine-readable codes.
//! - [`fuzz`]: fuzz checks of the parsers above that take outside input (`fuzz/`, `make fuzz`).

pub mod agent_proto;
pub mod cluster;
pub mod error;
pub mod event;
pub mod fuzz;
pub mod hook_run;
pub mod job;
pub mod overview;
pub mod request_id;
pub mod security;
pub mod spec;
pub mod variable;
pub mod workload;

pub use cluster::{
    AgentBootstrap, ClusterStatus, JoinRequest, MemberInfo, MemberRole, MembersResponse,
    PeerIdentity, TransferRequest, TransferResponse,
};
pub use error::{ApiError, ErrorBody, ErrorCode, Invalid};
pub use event::{Event, EventCursor, EventKind, WatchStart};
pub use job::{
    DeletedJob, JobList, JobObject, JobResponse, JobRun, JobTask, RunState, SkippedSlot,
    StartedRun, TaskState,
};
pub use overview::{Overview, OVERVIEW_EVENTS, OVERVIEW_VARIABLES};
pub use request_id::RequestId;
pub use variable::{
    validate_path, DeleteResponse, ListResponse, PutVariable, ReadMeta, Variable, VariableResponse,
    WriteResponse, MAX_PATH_LEN,
};
pub use workload::{
    ApplyRequest, ApplyResponse, ApplyResult, Change, DeletedService, ExecRequest, NodeList,
    NodeObject, NodeStatus, ReplicaList, ReplicaObject, RestartedReplica, Rollout, RolloutState,
    RolloutUndo, ServiceList, ServiceObject, ServiceResponse, ServiceRevision, SourceFile,
    UnplacedReplicas, MAX_SERVICE_HISTORY,
};
