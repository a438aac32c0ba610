//! `/v1/nodes`: the machines replicas run on, with the usage their agents report.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method};
use axum::response::{IntoResponse, Response};
use axum::Json;
use orion_api::{ApiError, NodeList, NodeObject};
use orion_raft::command::Applied;
use orion_raft::{read, Command, RaftNode};

use crate::api::common::{fresh, storage, unexpected_apply, ReadParams};
use crate::error::{HttpResult, JsonBody};
use crate::forward::Forwarder;
use crate::gateway::registry::AgentRegistry;
use crate::idempotency::ClientRequestId;

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
    let mut list = node.reader.with_view(|view| {
        Ok::<_, ApiError>(NodeList {
            revision: view.last_applied_index().map_err(storage)?,
            items: read::nodes(view).map_err(storage)?,
            usage: Default::default(),
        })
    })?;
    list.usage = agents.usage();
    Ok(Json(list).into_response())
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
