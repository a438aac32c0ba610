//! `/v1/tokens` (admin): minting, listing and revoking API and join tokens.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use orion_api::security::{CreateToken, CreatedToken, TokenList};
use orion_api::ApiError;
use orion_raft::{Command, RaftNode};
use orion_tls::TokenRole;
use tracing::info;

use crate::caller::Caller;
use crate::error::{HttpResult, JsonBody};
use crate::forward::Forwarder;
use crate::security::Security;

/// Shortest and longest token lifetimes accepted.
const MIN_TTL: u64 = 1;
const MAX_TTL: u64 = 10 * 365 * 24 * 3600;

/// `POST /v1/tokens`.
pub async fn create(
    State(security): State<Arc<Security>>,
    Extension(caller): Extension<Caller>,
    JsonBody(req): JsonBody<CreateToken>,
) -> HttpResult<(StatusCode, Json<CreatedToken>)> {
    let role: TokenRole = req.role.parse().map_err(ApiError::invalid)?;
    if !(MIN_TTL..=MAX_TTL).contains(&req.ttl_seconds) {
        return Err(ApiError::invalid(format!(
            "ttl_seconds must be between {MIN_TTL} and {MAX_TTL}"
        ))
        .into());
    }
    let created = security
        .mint(role, Duration::from_secs(req.ttl_seconds), req.description)
        .await?;
    info!(id = %created.record.id, role = role.as_str(), by = %caller, "token created");
    Ok((StatusCode::CREATED, Json(created)))
}

/// `GET /v1/tokens`: records only, never the tokens.
pub async fn list(State(node): State<RaftNode>) -> HttpResult<Json<TokenList>> {
    let tokens = node
        .reader
        .with_view(orion_raft::read::tokens)
        .map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(Json(TokenList { tokens }))
}

/// `DELETE /v1/tokens/{id}`.
pub async fn revoke(
    State(leader): State<Arc<Forwarder>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> HttpResult<Json<serde_json::Value>> {
    leader
        .apply(Command::RevokeToken { id: id.clone() })
        .await?;
    info!(%id, by = %caller, "token revoked");
    Ok(Json(serde_json::json!({ "revoked": id })))
}
