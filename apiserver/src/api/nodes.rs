//! `/v1/nodes`: the machines replicas run on, with the usage their agents report.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method};
use axum::response::{IntoResponse, Response};
use axum::Json;
use orion_api::workload::{DrainRequest, DEFAULT_DRAIN_DEADLINE_SECS, MAX_DRAIN_DEADLINE_SECS};
use orion_api::{ApiError, NodeList, NodeObject};
use orion_raft::command::Applied;
use orion_raft::{read, Command, RaftNode};

use crate::api::common::{fresh, read_view, unexpected_apply, ReadParams};
use crate::error::{HttpResult, JsonBody};
use crate::forward::Forwarder;
use crate::gateway::registry::AgentRegistry;
use crate::idempotency::ClientRequestId;
use orion_raft::RequestId;

/// `GET /v1/nodes`, with the heartbeat usage the leader holds (a follower asks
/// the leader unless `?stale=true`).
pub async fn list(
    State(leader): State<Arc<Forwarder>>,
    State(node): State<RaftNode>,
    State(agents): State<Arc<AgentRegistry>>,
    Query(params): Query<ReadParams>,
    headers: HeaderMap,
) -> HttpResult<Response> {
    if !params.stale {
        if let Some(relayed) = leader
            .relay(&headers, Method::GET, "/v1/nodes", None)
            .await?
        {
            return Ok(relayed);
        }
    }
    fresh(&leader, params.stale).await?;
    let (revision, items) = read_view(&node, read::nodes)?;
    let usage = agents.usage();
    Ok(Json(NodeList {
        revision,
        items,
        usage,
    })
    .into_response())
}

/// `PUT /v1/nodes/{name}`: register or update a node by hand (agents register
/// themselves; this is for admins and for pre-registration, as `kubectl create node`).
pub async fn put(
    State(leader): State<Arc<Forwarder>>,
    ClientRequestId(request_id): ClientRequestId,
    Path(name): Path<String>,
    JsonBody(node): JsonBody<NodeObject>,
) -> HttpResult<Json<NodeObject>> {
    if node.name != name {
        return Err(ApiError::invalid(format!(
            "the body names node {:?} but the path names {name:?}",
            node.name
        ))
        .into());
    }
    let stored = node.clone();
    let (revision, applied) = leader
        .apply_as(request_id, Command::UpsertNode { node })
        .await?;
    if !matches!(applied, Applied::Done) {
        return Err(unexpected_apply(&applied).into());
    }
    Ok(Json(NodeObject {
        mod_revision: revision,
        ..stored
    }))
}

async fn schedule(
    leader: &Forwarder,
    request_id: RequestId,
    name: String,
    cordoned: bool,
    draining: bool,
    drain_deadline_unix_ms: Option<u64>,
) -> HttpResult<Json<NodeObject>> {
    let cmd = Command::SetNodeScheduling {
        name,
        cordoned,
        draining,
        drain_deadline_unix_ms,
    };
    match leader.apply_as(request_id, cmd).await? {
        (_, Applied::Node(node)) => Ok(Json(*node)),
        (_, other) => Err(unexpected_apply(&other).into()),
    }
}

/// `POST /v1/nodes/{name}/cordon`: no new replicas here; those it has stay.
pub async fn cordon(
    State(leader): State<Arc<Forwarder>>,
    ClientRequestId(request_id): ClientRequestId,
    Path(name): Path<String>,
) -> HttpResult<Json<NodeObject>> {
    schedule(&leader, request_id, name, true, false, None).await
}

/// `POST /v1/nodes/{name}/uncordon`: the node takes replicas again (ends a drain).
pub async fn uncordon(
    State(leader): State<Arc<Forwarder>>,
    ClientRequestId(request_id): ClientRequestId,
    Path(name): Path<String>,
) -> HttpResult<Json<NodeObject>> {
    schedule(&leader, request_id, name, false, false, None).await
}

/// `POST /v1/nodes/{name}/drain`: cordon, and move every replica elsewhere within
/// each service's `max_unavailable`; all that are left move at the deadline.
pub async fn drain(
    State(leader): State<Arc<Forwarder>>,
    ClientRequestId(request_id): ClientRequestId,
    Path(name): Path<String>,
    JsonBody(request): JsonBody<DrainRequest>,
) -> HttpResult<Json<NodeObject>> {
    let secs = request
        .deadline_seconds
        .unwrap_or(DEFAULT_DRAIN_DEADLINE_SECS);
    if secs > MAX_DRAIN_DEADLINE_SECS {
        return Err(ApiError::invalid(format!(
            "deadline_seconds {secs} is above the limit of {MAX_DRAIN_DEADLINE_SECS} (a week)"
        ))
        .into());
    }
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let deadline = now_ms.saturating_add(secs.saturating_mul(1000));
    schedule(&leader, request_id, name, true, true, Some(deadline)).await
}

/// `DELETE /v1/nodes/{name}`: forget a node that is gone; its replicas are placed
/// elsewhere. Answers the node as it was.
pub async fn delete(
    State(leader): State<Arc<Forwarder>>,
    ClientRequestId(request_id): ClientRequestId,
    Path(name): Path<String>,
) -> HttpResult<Json<NodeObject>> {
    match leader
        .apply_as(request_id, Command::DeleteNode { name })
        .await?
    {
        (_, Applied::Node(node)) => Ok(Json(*node)),
        (_, other) => Err(unexpected_apply(&other).into()),
    }
}
