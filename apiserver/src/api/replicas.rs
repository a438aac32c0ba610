//! `GET /v1/replicas`: placed replicas, what their agents report, and those that
//! cannot be placed. (Their logs and exec: `api/streams.rs`.)

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method};
use axum::response::{IntoResponse, Response};
use axum::Json;
use orion_api::ReplicaList;
use orion_raft::{read, RaftNode};

use crate::api::common::{fresh, read_view, ReadParams};
use crate::controllers::replicas::Unplaced;
use crate::error::HttpResult;
use crate::forward::Forwarder;
use crate::gateway::registry::AgentRegistry;

/// Agent reports and unplaced replicas live in the leader's memory, so a follower
/// asks the leader unless `?stale=true`.
pub async fn list(
    State(leader): State<Arc<Forwarder>>,
    State(node): State<RaftNode>,
    State(agents): State<Arc<AgentRegistry>>,
    State(unplaced): State<Arc<Unplaced>>,
    Query(params): Query<ReadParams>,
    headers: HeaderMap,
) -> HttpResult<Response> {
    if !params.stale {
        if let Some(relayed) = leader
            .relay(&headers, Method::GET, "/v1/replicas", None)
            .await?
        {
            return Ok(relayed);
        }
    }
    fresh(&leader, params.stale).await?;
    let (revision, items) = read_view(&node, read::replicas)?;
    let mut list = ReplicaList {
        revision,
        items,
        unplaced: Vec::new(),
        observed: Default::default(),
    };
    list.unplaced = unplaced.get();
    let placed: std::collections::BTreeSet<String> = list.items.iter().map(|r| r.id()).collect();
    list.observed = agents.reports(|id| placed.contains(id));
    Ok(Json(list).into_response())
}
