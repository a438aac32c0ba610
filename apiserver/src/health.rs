//! `/healthz` (the process serves) and `/readyz` (it can serve cluster calls).

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};

use crate::leader::ClusterRef;

pub async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// Ready when this peer belongs to a cluster and knows its leader.
pub async fn readyz(State(cluster): State<ClusterRef>) -> (StatusCode, Json<Value>) {
    let status = cluster.node.status();
    let member =
        status.voters.contains(&cluster.node.id) || status.learners.contains(&cluster.node.id);
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
