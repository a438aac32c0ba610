//! The command set: every change to the replicated state is one of these.

use orion_api::security::TokenRecord;
use orion_api::spec::Resource;
use orion_api::{
    ApiError, ApplyResult, ErrorCode, NodeObject, ReplicaObject, ServiceObject, Variable,
};
use serde::{Deserialize, Serialize};

/// A write, as appended to the Raft log. Validated before it is proposed and again
/// in apply, so a bad command can never change state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Command {
    /// Create or replace a variable; with `expected_revision`, only if its
    /// `mod_revision` matches (`0`: only if absent).
    PutVariable {
        path: String,
        value: String,
        expected_revision: Option<u64>,
        #[serde(default)]
        secret: bool,
    },
    /// Delete a variable; with `expected_revision`, only if its `mod_revision` matches.
    DeleteVariable {
        path: String,
        expected_revision: Option<u64>,
    },
    /// Record that a member id was removed, so it is never used again.
    RetireMember { id: u64 },
    /// Create or update workload resources, all in this one entry or none.
    ApplyResources { resources: Vec<Resource> },
    /// Delete a service by name.
    DeleteService { name: String },
    /// Record the cluster CA and the token signing key. The first recorded stays;
    /// later ones are ignored.
    SetClusterCa {
        cert_pem: String,
        key_pem: String,
        token_key: String,
    },
    /// Record a newly minted token (its id, role and expiry; never the token).
    PutToken { record: TokenRecord },
    /// Revoke a token: from the apply on, no peer accepts it.
    RevokeToken { id: String },
    /// Spend a single-use join token; refused if it was used, revoked or expired
    /// at `now` (seconds since the epoch, from the proposer, so apply stays
    /// deterministic).
    UseToken { id: String, now: u64 },
    /// Register or update a node. Its scheduling (`cordoned`, `draining`, the drain
    /// deadline) is kept from the stored record: only [`Command::SetNodeScheduling`]
    /// changes it, so an agent registering again cannot undo a cordon.
    UpsertNode { node: NodeObject },
    /// Cordon, drain or uncordon a node (it must exist).
    SetNodeScheduling {
        name: String,
        cordoned: bool,
        draining: bool,
        drain_deadline_unix_ms: Option<u64>,
    },
    /// Forget a node (it must exist): its replicas are placed elsewhere, and its
    /// agent, should it come back, registers anew and is sent no old replica.
    DeleteNode { name: String },
    /// The replica controller's decisions: place new replicas, remove old ones.
    /// Idempotent: placing an existing replica or removing a missing one is a no-op.
    ReconcileReplicas {
        place: Vec<ReplicaObject>,
        remove: Vec<(String, u32)>,
    },
    /// The rollout controller moves these replicas of `service` to `generation`
    /// (their agents then replace them). Ignored unless `generation` is still the
    /// service's current one, so a late decision cannot undo a newer apply.
    RollReplicas {
        service: String,
        generation: u64,
        ordinals: Vec<u32>,
    },
    /// Record where the rollout to `generation` stands; ignored once the service
    /// has moved past `generation`.
    SetRollout {
        service: String,
        generation: u64,
        state: orion_api::RolloutState,
        reason: Option<String>,
    },
    /// `rollout pause` / `rollout resume`.
    PauseRollout { service: String, paused: bool },
    /// Make an earlier spec the current one again, as a new generation (`rollout
    /// undo`, and a failed rollout with `auto_rollback`). `to`: the generation to
    /// restore, or the one before the current when absent. With `if_generation`,
    /// only while the service is still at that generation (an automatic rollback
    /// must not undo an apply that came after the failure).
    RollBack {
        service: String,
        to: Option<u64>,
        if_generation: Option<u64>,
        reason: String,
    },
    /// Several clients' variable writes in one entry (see [`crate::write_batch`]),
    /// applied in order, each as if it were its own entry: its own request-id
    /// record and its own result or rejection. All get the entry's revision, so a
    /// batch holds at most one write per path (apply rejects a second one).
    Batch { writes: Vec<Proposal> },
    /// Start a run of `job`: for the schedule slot `scheduled_at` (seconds since
    /// the epoch; ignored unless after the job's `last_scheduled`, and subject to
    /// its `concurrency_policy`), or by hand when absent. `if_next_run`: only while
    /// the job's next run id is this. `now_unix_ms` is the proposer's clock.
    StartJobRun {
        job: String,
        scheduled_at: Option<i64>,
        #[serde(default)]
        if_next_run: Option<u64>,
        now_unix_ms: u64,
    },
    /// Move `job`'s schedule past `scheduled_at` without a run; `reason` says why
    /// the slot was skipped (absent: the schedule is only armed).
    SkipJobSlot {
        job: String,
        scheduled_at: i64,
        reason: Option<String>,
    },
    /// The job controller's decisions on one run (tasks placed, finished, retried;
    /// the run's end), computed from the run's `version`: ignored if it changed.
    UpdateJobRun {
        job: String,
        run: u64,
        version: u64,
        tasks: Vec<orion_api::JobTask>,
        state: orion_api::RunState,
        reason: Option<String>,
        now_unix_ms: u64,
    },
    /// Delete a job by name: its runs end, their tasks stop.
    DeleteJob { name: String },
    /// Record a lifecycle hook run of `service` (see [`orion_api::hook_run`]): its
    /// first attempt claims the trigger `slot` (a no-op when the slot already
    /// fired for the run's key, so two leaders never both start it); later records
    /// update the run. Ignored for a service that no longer exists.
    RecordHookRun {
        service: String,
        slot: String,
        run: orion_api::hook_run::HookRun,
    },
    /// The rollout controller opens (`surge` > 0) or closes (0) the surge slots of
    /// the rollout to `generation`: the replica controller keeps ordinals below
    /// `replicas + surge` placed. Ignored once the service has moved past
    /// `generation`; capped at the spec's `max_surge` except when closing.
    SetSurge {
        service: String,
        generation: u64,
        surge: u32,
    },
    /// A variable that `service` references with `restart_on_change` was written
    /// after its current generation was made (its `mod_revision` is newer than the
    /// one the spec records): the same spec with the newer revisions becomes a new
    /// generation, which the rollout controller rolls like any change. Ignored
    /// unless `generation` is still current and some referenced variable is newer
    /// than recorded, so a repeated or late proposal changes nothing (a new leader
    /// proposing it again does not roll twice).
    RefreshVariables { service: String, generation: u64 },
}

/// What applying a command did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Applied {
    /// The variable after a put.
    Put(Variable),
    /// The variable as it was before a delete.
    Deleted(Variable),
    /// What applying each resource did, in request order.
    Resources(Vec<ApplyResult>),
    /// The service as it was before a delete.
    DeletedService(Box<ServiceObject>),
    /// The service after a rollout command.
    Service(Box<ServiceObject>),
    /// The node after a scheduling change, or as it was before a delete.
    Node(Box<NodeObject>),
    /// A command with no object result.
    Done,
    /// What each write of a [`Command::Batch`] did, in batch order.
    Batch(Vec<CommandResult>),
    /// The run a [`Command::StartJobRun`] started.
    JobRun(Box<orion_api::JobRun>),
    /// The job as it was before a delete.
    DeletedJob(Box<orion_api::JobObject>),
}

/// Why apply refused a command. Nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejection {
    pub code: ErrorCode,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_revision: Option<u64>,
    /// On a conflict: the object as it is now (redacted), `None` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_value: Option<serde_json::Value>,
}

impl From<Rejection> for ApiError {
    fn from(r: Rejection) -> Self {
        ApiError {
            code: r.code,
            message: r.message,
            current_revision: r.current_revision,
            // A conflict always names what is there now: `null` when nothing is.
            current_value: match r.code {
                ErrorCode::Conflict => {
                    Some(Box::new(r.current_value.unwrap_or(serde_json::Value::Null)))
                }
                _ => r.current_value.map(Box::new),
            },
            leader_hint: None,
        }
    }
}

/// The result of applying one log entry, returned to the client that proposed it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandResult {
    /// The log index of the entry: the cluster revision of this write.
    pub revision: u64,
    pub outcome: Result<Applied, Rejection>,
}

pub use orion_api::request_id::{RequestId, MAX_REQUEST_ID_LEN};

/// What a log entry carries: a [`Command`] and, for writes a client may retry, the
/// request id that makes the retry apply once (see [`crate::session`]).
///
/// Entries written before request ids existed hold a bare [`Command`]; they still
/// decode, as a proposal without an id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "ProposalWire")]
pub struct Proposal {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<RequestId>,
    pub command: Command,
}

impl Proposal {
    pub fn new(request_id: RequestId, command: Command) -> Self {
        Proposal {
            request_id: Some(request_id),
            command,
        }
    }
}

impl From<Command> for Proposal {
    /// A proposal no client will retry (no request id).
    fn from(command: Command) -> Self {
        Proposal {
            request_id: None,
            command,
        }
    }
}

/// The two shapes of a log entry's payload: the envelope, or a bare command from
/// before request ids. A command never has a field named `command`, so the two
/// cannot be confused.
#[derive(Deserialize)]
#[serde(untagged)]
enum ProposalWire {
    Envelope {
        #[serde(default)]
        request_id: Option<RequestId>,
        command: Command,
    },
    Bare(Command),
}

impl From<ProposalWire> for Proposal {
    fn from(w: ProposalWire) -> Self {
        match w {
            ProposalWire::Envelope {
                request_id,
                command,
            } => Proposal {
                request_id,
                command,
            },
            ProposalWire::Bare(command) => command.into(),
        }
    }
}
