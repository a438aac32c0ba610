//! `/v1/jobs`: batch and cron jobs. They are created and changed by `POST
//! /v1/apply` (`kind: Job`); these routes list, show, trigger and delete them.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::Json;
use orion_api::{ApiError, DeletedJob, JobList, JobResponse, StartedRun};
use orion_raft::command::Applied;
use orion_raft::{read, Command, RaftNode};

use crate::api::common::{fresh, read_view, unexpected_apply as unexpected, ReadParams};
use crate::controllers::jobs::next_run_at;
use crate::error::HttpResult;
use crate::forward::Forwarder;
use crate::idempotency::ClientRequestId;

fn now_unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// `GET /v1/jobs`.
pub async fn list(
    State(leader): State<Arc<Forwarder>>,
    State(node): State<RaftNode>,
    Query(params): Query<ReadParams>,
) -> HttpResult<Json<JobList>> {
    fresh(&leader, params.stale).await?;
    let (revision, items) = read_view(&node, read::jobs)?;
    Ok(Json(JobList { revision, items }))
}

/// `GET /v1/jobs/{name}`: the job, its runs with their tasks, and when the
/// schedule runs next.
pub async fn get(
    State(leader): State<Arc<Forwarder>>,
    State(node): State<RaftNode>,
    Path(name): Path<String>,
    Query(params): Query<ReadParams>,
) -> HttpResult<Json<JobResponse>> {
    fresh(&leader, params.stale).await?;
    let (revision, found) = read_view(&node, |view| read::job(view, &name))?;
    let job = found.ok_or_else(|| ApiError::not_found(format!("job {name:?} does not exist")))?;
    let now = i64::try_from(now_unix_ms() / 1000).unwrap_or(i64::MAX);
    Ok(Json(JobResponse {
        revision,
        next_run_at: next_run_at(&job.spec, job.last_scheduled, now),
        job,
    }))
}

/// `DELETE /v1/jobs/{name}`: the job and its runs; running tasks are stopped.
pub async fn delete(
    State(leader): State<Arc<Forwarder>>,
    ClientRequestId(request_id): ClientRequestId,
    Path(name): Path<String>,
) -> HttpResult<Json<DeletedJob>> {
    match leader
        .apply_as(request_id, Command::DeleteJob { name })
        .await?
    {
        (revision, Applied::DeletedJob(deleted)) => Ok(Json(DeletedJob {
            revision,
            deleted: *deleted,
        })),
        (_, other) => Err(unexpected(&other).into()),
    }
}

/// `POST /v1/jobs/{name}/run`: starts a run now (`orion job run`). A retry with
/// the same `Idempotency-Key` answers the run the first call started.
pub async fn run(
    State(leader): State<Arc<Forwarder>>,
    ClientRequestId(request_id): ClientRequestId,
    Path(name): Path<String>,
) -> HttpResult<Json<StartedRun>> {
    let command = Command::StartJobRun {
        job: name.clone(),
        scheduled_at: None,
        if_next_run: None,
        now_unix_ms: now_unix_ms(),
    };
    match leader.apply_as(request_id, command).await? {
        (revision, Applied::JobRun(run)) => Ok(Json(StartedRun {
            revision,
            job: name,
            run: *run,
        })),
        (_, other) => Err(unexpected(&other).into()),
    }
}
