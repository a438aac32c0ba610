//! `/v1/variables`: put, get, delete and list by prefix, with compare-and-set.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::Extension;
use axum::Json;
use orion_api::Variable;
use orion_api::{
    validate_path, ApiError, DeleteResponse, ListResponse, PutVariable, ReadMeta, VariableResponse,
    WriteResponse,
};
use orion_raft::command::Applied;
use orion_raft::{read, Command, RaftNode};
use orion_tls::TokenRole;
use serde::Deserialize;

use crate::api::common::{read_view, unexpected_apply, ReadParams};
use crate::caller::Caller;
use crate::error::{HttpResult, JsonBody};
use crate::forward::Forwarder;
use crate::idempotency::ClientRequestId;

/// Largest page a listing returns.
const MAX_LIST_LIMIT: usize = 10_000;

/// `debug-stale-reads`: variable reads skip the read-index barrier (the jepsen
/// harness only, to show the checker catches stale reads).
#[derive(Debug, Clone, Copy)]
pub struct StaleReads(pub bool);

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Only paths that start with this.
    #[serde(default)]
    pub prefix: String,
    /// Start after this path (the `next` of the previous page).
    pub start_after: Option<String>,
    /// Page size (1000 when absent).
    #[param(minimum = 1, maximum = 10000)]
    pub limit: Option<usize>,
    #[serde(default)]
    pub stale: bool,
}

#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeleteParams {
    /// Delete only if the variable's mod_revision is this.
    pub expected_revision: Option<u64>,
}

fn checked(path: &str) -> Result<(), ApiError> {
    validate_path(path).map_err(ApiError::invalid)
}

/// Makes the local state fresh enough for the read.
async fn prepare_read(leader: &Forwarder, debug: StaleReads, stale: bool) -> Result<(), ApiError> {
    if !stale && !debug.0 {
        leader.linearizable_barrier().await?;
    }
    Ok(())
}

/// Describes how a read was served.
fn read_meta(node: &RaftNode, revision: u64, stale: bool) -> ReadMeta {
    let behind_by = stale.then(|| {
        let m = node.metrics();
        m.last_log_index
            .unwrap_or(0)
            .saturating_sub(m.last_applied.map_or(0, |l| l.index))
    });
    ReadMeta {
        revision,
        stale,
        behind_by,
        served_by: node.id,
    }
}

pub async fn put(
    State(leader): State<Arc<Forwarder>>,
    ClientRequestId(request_id): ClientRequestId,
    Path(path): Path<String>,
    JsonBody(body): JsonBody<PutVariable>,
) -> HttpResult<Json<WriteResponse>> {
    checked(&path)?;
    let command = Command::PutVariable {
        path,
        value: body.value,
        expected_revision: body.expected_revision,
        secret: body.secret,
    };
    match leader.apply_as(request_id, command).await? {
        (revision, Applied::Put(variable)) => Ok(Json(WriteResponse {
            revision,
            variable: variable.redacted(),
        })),
        (_, other) => Err(unexpected_apply(&other).into()),
    }
}

pub async fn delete(
    State(leader): State<Arc<Forwarder>>,
    ClientRequestId(request_id): ClientRequestId,
    Path(path): Path<String>,
    Query(params): Query<DeleteParams>,
) -> HttpResult<Json<DeleteResponse>> {
    checked(&path)?;
    let command = Command::DeleteVariable {
        path,
        expected_revision: params.expected_revision,
    };
    match leader.apply_as(request_id, command).await? {
        (revision, Applied::Deleted(deleted)) => Ok(Json(DeleteResponse {
            revision,
            deleted: deleted.redacted(),
        })),
        (_, other) => Err(unexpected_apply(&other).into()),
    }
}

/// Secret values are for roles that can write them; `readonly` gets them redacted.
pub(crate) fn for_caller(caller: &Caller, v: Variable) -> Variable {
    match caller {
        Caller::Token {
            role: TokenRole::Admin | TokenRole::Developer,
            ..
        } => v,
        _ => v.redacted(),
    }
}

pub async fn get(
    State(leader): State<Arc<Forwarder>>,
    State(node): State<RaftNode>,
    State(debug): State<StaleReads>,
    Extension(caller): Extension<Caller>,
    Path(path): Path<String>,
    Query(params): Query<ReadParams>,
) -> HttpResult<Json<VariableResponse>> {
    checked(&path)?;
    prepare_read(&leader, debug, params.stale).await?;
    let (revision, found) = read_view(&node, |view| read::variable(view, &path))?;
    let variable =
        found.ok_or_else(|| ApiError::not_found(format!("variable {path:?} does not exist")))?;
    Ok(Json(VariableResponse {
        meta: read_meta(&node, revision, params.stale),
        variable: for_caller(&caller, variable),
    }))
}

pub async fn list(
    State(leader): State<Arc<Forwarder>>,
    State(node): State<RaftNode>,
    State(debug): State<StaleReads>,
    Extension(caller): Extension<Caller>,
    Query(params): Query<ListParams>,
) -> HttpResult<Json<ListResponse>> {
    let limit = params.limit.unwrap_or(1_000);
    if limit == 0 || limit > MAX_LIST_LIMIT {
        return Err(
            ApiError::invalid(format!("limit must be between 1 and {MAX_LIST_LIMIT}")).into(),
        );
    }
    prepare_read(&leader, debug, params.stale).await?;
    let (revision, (items, next)) = read_view(&node, |view| {
        read::variables(view, &params.prefix, params.start_after.as_deref(), limit)
    })?;
    Ok(Json(ListResponse {
        meta: read_meta(&node, revision, params.stale),
        items: items.into_iter().map(|v| for_caller(&caller, v)).collect(),
        next,
    }))
}
