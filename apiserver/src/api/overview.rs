//! `GET /v1/overview`: the dashboard's first view in one request (`orion_api::overview`
//! says what it holds and how each list is bounded).
//!
//! The replicated lists come from one RocksDB point-in-time view, so they share one
//! revision and the page's watch resumes right after it. Agent reports, usage,
//! unplaced replicas and replication progress live in the leader's memory, so a
//! follower relays the call to the leader (unless `?stale=true`) and then puts its
//! own status into the answer: the page shows the peer it talks to.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use orion_api::{ApiError, Overview, WatchStart, OVERVIEW_EVENTS, OVERVIEW_VARIABLES};
use orion_raft::{read, RaftNode};

use crate::api::common::{fresh, storage, ReadParams};
use crate::api::variables::for_caller;
use crate::caller::Caller;
use crate::controllers::replicas::Unplaced;
use crate::error::HttpResult;
use crate::forward::{unexpected, Forwarder, LeaderReply, LeaderRequest};
use crate::gateway::registry::AgentRegistry;

/// Largest relayed answer a follower reads back to put its status in (1,000
/// services of the largest spec and their replicas fit many times over).
const MAX_RELAYED_BYTES: usize = 256 << 20;

pub async fn overview(
    State(leader): State<Arc<Forwarder>>,
    State(node): State<RaftNode>,
    State(agents): State<Arc<AgentRegistry>>,
    State(unplaced): State<Arc<Unplaced>>,
    Extension(caller): Extension<Caller>,
    Query(params): Query<ReadParams>,
    headers: HeaderMap,
) -> HttpResult<Response> {
    if !params.stale {
        if let Some(relayed) = leader
            .relay(&headers, Method::GET, "/v1/overview", None)
            .await?
        {
            return with_own_status(&node, relayed).await;
        }
    }
    fresh(&leader, params.stale).await?;
    let members = if params.stale {
        node.members()
    } else {
        match leader.on_leader(LeaderRequest::Members).await? {
            LeaderReply::Members(m) => m,
            other => return Err(unexpected(&other).into()),
        }
    };
    let mut overview = node.reader.with_view(|view| {
        let (variables, variables_next) =
            read::variables(view, "", None, OVERVIEW_VARIABLES).map_err(storage)?;
        let mut events =
            read::events(view, WatchStart::Revision(0), usize::MAX).map_err(storage)?;
        events.drain(..events.len().saturating_sub(OVERVIEW_EVENTS));
        Ok::<_, ApiError>(Overview {
            revision: view.last_applied_index().map_err(storage)?,
            services: read::services(view).map_err(storage)?,
            nodes: read::nodes(view).map_err(storage)?,
            usage: Default::default(),
            replicas: read::replicas(view).map_err(storage)?,
            observed: Default::default(),
            unplaced: Vec::new(),
            variables,
            variables_next,
            events,
            members,
            status: node.status(),
        })
    })?;
    overview.variables = std::mem::take(&mut overview.variables)
        .into_iter()
        .map(|v| for_caller(&caller, v))
        .collect();
    overview.usage = agents.usage();
    overview.unplaced = unplaced.get();
    let placed: std::collections::BTreeSet<String> =
        overview.replicas.iter().map(|r| r.id()).collect();
    overview.observed = agents.reports(|id| placed.contains(id));
    Ok(Json(overview).into_response())
}

/// The leader's answer with this peer's status in it; errors pass unchanged.
async fn with_own_status(node: &RaftNode, relayed: Response) -> HttpResult<Response> {
    if relayed.status() != StatusCode::OK {
        return Ok(relayed);
    }
    let body = axum::body::to_bytes(relayed.into_body(), MAX_RELAYED_BYTES)
        .await
        .map_err(|e| ApiError::unavailable(format!("the leader's overview: {e}")))?;
    let mut overview: Overview = serde_json::from_slice(&body)
        .map_err(|e| ApiError::internal(format!("the leader's overview is unreadable: {e}")))?;
    overview.status = node.status();
    Ok(Json(overview).into_response())
}
