//! `/healthz` (the process serves) and `/readyz` (it can serve cluster calls).

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use orion_raft::RaftNode;
use serde_json::{json, Value};

pub async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// Ready when this peer belongs to a cluster and knows its leader.
pub async fn readyz(State(node): State<RaftNode>) -> (StatusCode, Json<Value>) {
    let status = node.status();
    let member = status.voters.contains(&node.id) || status.learners.contains(&node.id);
    let ready = member && status.leader.is_some();
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        code,
        Json(json!({"ready": ready, "leader": status.leader, "state": status.state})),
    )
}
