//! `/v1/services/{name}/rollout/*`: steering a service's rolling update. Where a
//! rollout stands is part of the service object (`GET /v1/services/{name}`:
//! `generation`, `history`, `rollout`); these routes change it.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::Json;
use orion_api::{RolloutUndo, ServiceResponse};
use orion_raft::command::Applied;
use orion_raft::Command;

use crate::api::common::unexpected_apply as unexpected;
use crate::error::{HttpResult, JsonBody};
use crate::forward::Forwarder;
use crate::idempotency::ClientRequestId;

async fn steer(
    leader: &Forwarder,
    request_id: orion_raft::RequestId,
    command: Command,
) -> HttpResult<Json<ServiceResponse>> {
    match leader.apply_as(request_id, command).await? {
        (revision, Applied::Service(service)) => Ok(Json(ServiceResponse {
            revision,
            service: *service,
        })),
        (_, other) => Err(unexpected(&other).into()),
    }
}

/// `POST /v1/services/{name}/rollout/undo`: the previous spec (or `to_revision`)
/// becomes the current one again, as a new generation, and rolls out.
pub async fn undo(
    State(leader): State<Arc<Forwarder>>,
    ClientRequestId(request_id): ClientRequestId,
    Path(name): Path<String>,
    JsonBody(req): JsonBody<RolloutUndo>,
) -> HttpResult<Json<ServiceResponse>> {
    let reason = match req.to_revision {
        Some(g) => format!("rollout undo to revision {g}"),
        None => "rollout undo".to_string(),
    };
    let command = Command::RollBack {
        service: name,
        to: req.to_revision,
        if_generation: None,
        reason,
    };
    steer(&leader, request_id, command).await
}

/// `POST /v1/services/{name}/rollout/pause`.
pub async fn pause(
    State(leader): State<Arc<Forwarder>>,
    ClientRequestId(request_id): ClientRequestId,
    Path(service): Path<String>,
) -> HttpResult<Json<ServiceResponse>> {
    let paused = true;
    steer(
        &leader,
        request_id,
        Command::PauseRollout { service, paused },
    )
    .await
}

/// `POST /v1/services/{name}/rollout/resume`.
pub async fn resume(
    State(leader): State<Arc<Forwarder>>,
    ClientRequestId(request_id): ClientRequestId,
    Path(service): Path<String>,
) -> HttpResult<Json<ServiceResponse>> {
    let paused = false;
    steer(
        &leader,
        request_id,
        Command::PauseRollout { service, paused },
    )
    .await
}
