//! `GET /metrics`: every metric of this peer in the Prometheus text format. The
//! gauges that describe the leader's view (pending placements, replicas by state,
//! their restarts) are read from the replicated state and the agents' reports at
//! scrape time, as `GET /v1/replicas` reads them; a follower exports none of those
//! (its agents' reports are on the leader) but every peer-level metric.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use orion_api::ApiError;
use orion_raft::{read, RaftNode};

use crate::api::common::storage;
use crate::controllers::replicas::Unplaced;
use crate::error::HttpResult;
use crate::gateway::registry::AgentRegistry;
use crate::metrics::PeerMetrics;

pub async fn metrics(
    State(metrics): State<Arc<PeerMetrics>>,
    State(node): State<RaftNode>,
    State(agents): State<Arc<AgentRegistry>>,
    State(unplaced): State<Arc<Unplaced>>,
) -> HttpResult<Response> {
    refresh(&metrics, &node, &agents, &unplaced)?;
    let text = metrics
        .encode()
        .map_err(|e| ApiError::internal(format!("cannot encode the metrics: {e}")))?;
    Ok((
        [(axum::http::header::CONTENT_TYPE, prometheus::TEXT_FORMAT)],
        text,
    )
        .into_response())
}

/// Sets the scrape-time gauges from the leader's view.
fn refresh(
    metrics: &PeerMetrics,
    node: &RaftNode,
    agents: &AgentRegistry,
    unplaced: &Unplaced,
) -> Result<(), ApiError> {
    metrics
        .connected_agents
        .set(i64::try_from(agents.connection_count()).unwrap_or(i64::MAX));
    if !node.is_leader() {
        metrics.pending_placements.set(0);
        metrics.restarts.set(0);
        metrics.clear_leader_view();
        return Ok(());
    }
    let pending: u64 = unplaced.get().iter().map(|u| u64::from(u.count)).sum();
    metrics
        .pending_placements
        .set(i64::try_from(pending).unwrap_or(i64::MAX));
    let placed = node
        .reader
        .with_view(read::replicas)
        .map_err(storage)?
        .into_iter()
        .map(|r| r.id())
        .collect::<BTreeSet<String>>();
    let reports = agents.reports(|id| placed.contains(id));
    let mut counts: BTreeMap<&str, i64> = BTreeMap::new();
    let mut restarts: i64 = 0;
    for id in &placed {
        let state = match reports.get(id) {
            Some(r) => {
                restarts = restarts.saturating_add(i64::from(r.restarts));
                r.state.as_str()
            }
            None => "unreported",
        };
        *counts.entry(state).or_default() += 1;
    }
    metrics.set_replicas(&counts);
    metrics.restarts.set(restarts);
    Ok(())
}
