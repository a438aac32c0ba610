//! `POST /v1/internal/leader`: where a follower's [`Forwarder`] sends leader-only
//! work. Runs it if, and only if, this peer leads (one hop, never forwarded on).

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use orion_api::{ApiError, ErrorBody};
use orion_raft::LeaderError;

use crate::error::{HttpResult, JsonBody};
use crate::forward::{Forwarder, LeaderRequest, NOT_LEADER};

pub async fn leader(
    State(leader): State<Arc<Forwarder>>,
    JsonBody(req): JsonBody<LeaderRequest>,
) -> HttpResult<Response> {
    Ok(match leader.execute_local(req).await {
        Ok(reply) => Json(reply).into_response(),
        Err(LeaderError::NotLeader { leader }) => (
            NOT_LEADER,
            Json(ErrorBody {
                error: ApiError {
                    leader_hint: leader.map(|(id, _)| id),
                    ..ApiError::unavailable("not the leader")
                },
            }),
        )
            .into_response(),
        // The forwarding peer retries a busy leader within its hold time, as it does
        // a peer that is not the leader.
        Err(LeaderError::Busy) => (
            NOT_LEADER,
            Json(ErrorBody {
                error: ApiError::unavailable("another membership change is in progress"),
            }),
        )
            .into_response(),
        Err(LeaderError::Rejected(e)) => return Err(e.into()),
        Err(LeaderError::Transfer(e)) => return Err(crate::error::transfer_refusal(e).into()),
        Err(LeaderError::Fatal(m)) => return Err(ApiError::unavailable(m.to_string()).into()),
    })
}
