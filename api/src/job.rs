//! Jobs as the API stores and returns them: the spec as applied, its runs, and
//! each run's tasks with every attempt.
//!
//! A run is started by a Raft command that names its schedule slot (or none, for
//! a manual run), so a new leader reads `last_scheduled` from the replicated state
//! and neither repeats nor skips a slot. Each task attempt runs on an agent as a
//! replica with the id [`JobTask::replica_id`], never restarted by the agent.

use serde::{Deserialize, Serialize};

use crate::spec::JobSpec;

/// Most runs of one job active at once (a schedule with `concurrency_policy:
/// allow` whose runs never end would otherwise pile up without bound). A slot
/// that finds this many running is skipped and says so.
pub const MAX_ACTIVE_RUNS: usize = 10;

/// How many skipped slots a job remembers, newest last.
pub const MAX_SKIPPED: usize = 10;

/// A stored job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct JobObject {
    #[schema(value_type = Object)]
    pub spec: JobSpec,
    pub create_revision: u64,
    pub mod_revision: u64,
    /// The newest schedule slot decided (a run started or the slot skipped),
    /// seconds since the epoch; the next slot is the first after it. `None` until
    /// the job controller first arms the schedule.
    #[serde(default)]
    pub last_scheduled: Option<i64>,
    /// The id the next run gets (runs count from 1).
    pub next_run: u64,
    /// Active runs and the finished ones kept by `history_limit`, oldest first.
    #[serde(default)]
    pub runs: Vec<JobRun>,
    /// Slots that started no run, and why, newest last (at most [`MAX_SKIPPED`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<SkippedSlot>,
}

impl JobObject {
    /// The runs not finished yet.
    pub fn active(&self) -> impl Iterator<Item = &JobRun> {
        self.runs.iter().filter(|r| r.state == RunState::Running)
    }

    /// Every task attempt its agent should run now (placed, not finished), with
    /// its replica id and node.
    pub fn placed_tasks(&self) -> impl Iterator<Item = (String, &str, &JobRun, &JobTask)> {
        self.active().flat_map(move |run| {
            run.tasks
                .iter()
                .filter_map(move |t| match (&t.node, t.state) {
                    (Some(node), TaskState::Running) => {
                        Some((t.replica_id(&self.spec.name, run.id), node.as_str(), run, t))
                    }
                    _ => None,
                })
        })
    }

    /// Every task attempt of the runs kept, placed or finished, with its replica
    /// id (what `orion logs` can read).
    pub fn all_tasks(&self) -> impl Iterator<Item = (String, &JobRun, &JobTask)> {
        self.runs.iter().flat_map(move |run| {
            run.tasks
                .iter()
                .map(move |t| (t.replica_id(&self.spec.name, run.id), run, t))
        })
    }
}

/// A slot that started no run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SkippedSlot {
    /// Seconds since the epoch.
    pub scheduled_at: i64,
    pub reason: String,
}

/// One run of a job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct JobRun {
    pub id: u64,
    /// The schedule slot it runs for (seconds since the epoch); `None`: started by
    /// hand (`orion job run`) or, for a job without a schedule, when applied.
    #[serde(default)]
    pub scheduled_at: Option<i64>,
    pub started_unix_ms: u64,
    #[serde(default)]
    pub finished_unix_ms: Option<u64>,
    pub state: RunState,
    /// Why it failed (backoff limit, deadline, replaced by a newer run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Every attempt of every task, in the order they were made.
    #[serde(default)]
    pub tasks: Vec<JobTask>,
    /// Bumped on every change: the job controller's updates name the version
    /// they were computed from, and apply ignores a stale one.
    #[serde(default)]
    pub version: u64,
}

impl JobRun {
    /// How many tasks exited 0.
    pub fn succeeded(&self) -> usize {
        self.tasks
            .iter()
            .filter(|t| t.state == TaskState::Succeeded)
            .count()
    }

    /// How many attempts failed.
    pub fn failed(&self) -> usize {
        self.tasks
            .iter()
            .filter(|t| t.state == TaskState::Failed)
            .count()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    Running,
    /// `completions` tasks exited 0.
    Succeeded,
    Failed,
}

impl std::fmt::Display for RunState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RunState::Running => "running",
            RunState::Succeeded => "succeeded",
            RunState::Failed => "failed",
        })
    }
}

/// One attempt of one task of a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct JobTask {
    /// Which completion this is, `0..completions`.
    pub index: u32,
    /// 1 for the first attempt of this index, then 2, 3, …
    pub attempt: u32,
    pub state: TaskState,
    /// Where it runs or ran; `None` while pending.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// A retry waits for its backoff: not placed before this time.
    #[serde(default)]
    pub not_before_unix_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_unix_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_unix_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl JobTask {
    /// The id its process has on the agent (and in `orion logs`):
    /// `<job>-<run>-<index>-<attempt>`, e.g. `backup-3-0-1`.
    pub fn replica_id(&self, job: &str, run: u64) -> String {
        format!("{job}-{run}-{}-{}", self.index, self.attempt)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    /// Waiting for a node (or for its retry backoff).
    Pending,
    /// Placed; its agent runs it.
    Running,
    /// Exited 0.
    Succeeded,
    /// Exited non-zero, was killed, could not start, or lost its node.
    Failed,
}

impl std::fmt::Display for TaskState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TaskState::Pending => "pending",
            TaskState::Running => "running",
            TaskState::Succeeded => "succeeded",
            TaskState::Failed => "failed",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct JobList {
    pub revision: u64,
    pub items: Vec<JobObject>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct JobResponse {
    pub revision: u64,
    pub job: JobObject,
    /// When the schedule starts its next run (seconds since the epoch), as the
    /// answering peer's clock reckons; absent without a schedule or suspended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_run_at: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DeletedJob {
    pub revision: u64,
    pub deleted: JobObject,
}

/// Answer of `POST /v1/jobs/{name}/run`: the run it started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StartedRun {
    pub revision: u64,
    pub job: String,
    pub run: JobRun,
}
