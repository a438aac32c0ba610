//! `/v1/apply` and `/v1/services`: desired workloads.
//!
//! `apply` takes the files as text and parses them here, so every client gets the
//! same validation and every error names file, line and column. All resources of
//! all files go into one Raft entry: a request with one bad document applies nothing.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::Json;
use orion_api::spec::{parse_documents, Resource, SpecErrors};
use orion_api::{
    ApiError, ApplyRequest, ApplyResponse, DeletedService, ServiceList, ServiceResponse,
};
use orion_raft::command::Applied;
use orion_raft::{read, Command, RaftNode};

use crate::api::common::{fresh, read_view, storage, unexpected_apply as unexpected, ReadParams};
use crate::error::{HttpResult, JsonBody};
use crate::forward::Forwarder;
use crate::idempotency::ClientRequestId;

/// Parses every file; reports every problem of every file at once.
pub fn parse_files(req: &ApplyRequest) -> Result<Vec<Resource>, ApiError> {
    if req.files.is_empty() {
        return Err(ApiError::invalid("no files to apply"));
    }
    let mut resources = Vec::new();
    let mut errors = Vec::new();
    let mut first_seen: BTreeMap<(&'static str, String), &str> = BTreeMap::new();
    for file in &req.files {
        match parse_documents(&file.name, &file.content) {
            Ok(parsed) => {
                for r in parsed {
                    let key = (r.kind(), r.name().to_string());
                    if let Some(other) = first_seen.insert(key, &file.name) {
                        errors.push(format!(
                            "{}: {} {:?} is also defined in {other}",
                            file.name,
                            r.kind(),
                            r.name()
                        ));
                    }
                    resources.push(r);
                }
            }
            Err(SpecErrors(list)) => errors.extend(list.iter().map(ToString::to_string)),
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::invalid(format!(
            "nothing was applied:\n{}",
            errors.join("\n")
        )));
    }
    if resources.is_empty() {
        return Err(ApiError::invalid("the files hold no resources"));
    }
    orion_api::spec::check_apply_size(resources.len()).map_err(ApiError::invalid)?;
    Ok(resources)
}

/// `POST /v1/apply`.
pub async fn apply(
    State(leader): State<Arc<Forwarder>>,
    ClientRequestId(request_id): ClientRequestId,
    JsonBody(req): JsonBody<ApplyRequest>,
) -> HttpResult<Json<ApplyResponse>> {
    let resources = parse_files(&req)?;
    match leader
        .apply_as(request_id, Command::ApplyResources { resources })
        .await?
    {
        (revision, Applied::Resources(results)) => Ok(Json(ApplyResponse { revision, results })),
        (_, other) => Err(unexpected(&other).into()),
    }
}

/// `GET /v1/services`.
pub async fn list(
    State(leader): State<Arc<Forwarder>>,
    State(node): State<RaftNode>,
    Query(params): Query<ReadParams>,
) -> HttpResult<Json<ServiceList>> {
    fresh(&leader, params.stale).await?;
    let (revision, items) = read_view(&node, read::services)?;
    Ok(Json(ServiceList { revision, items }))
}

/// `GET /v1/services/{name}`.
pub async fn get(
    State(leader): State<Arc<Forwarder>>,
    State(node): State<RaftNode>,
    Path(name): Path<String>,
    Query(params): Query<ReadParams>,
) -> HttpResult<Json<ServiceResponse>> {
    fresh(&leader, params.stale).await?;
    let (revision, found) = read_view(&node, |view| read::service(view, &name))?;
    let service =
        found.ok_or_else(|| ApiError::not_found(format!("service {name:?} does not exist")))?;
    Ok(Json(ServiceResponse { revision, service }))
}

/// `DELETE /v1/services/{name}`.
pub async fn delete(
    State(leader): State<Arc<Forwarder>>,
    ClientRequestId(request_id): ClientRequestId,
    Path(name): Path<String>,
) -> HttpResult<Json<DeletedService>> {
    match leader
        .apply_as(request_id, Command::DeleteService { name })
        .await?
    {
        (revision, Applied::DeletedService(deleted)) => Ok(Json(DeletedService {
            revision,
            deleted: *deleted,
        })),
        (_, other) => Err(unexpected(&other).into()),
    }
}

/// Body of `POST /v1/services/{name}/scale`.
#[derive(Debug, serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScaleRequest {
    /// At most `orion_api::spec::MAX_REPLICAS`.
    #[schema(maximum = 1000)]
    pub replicas: u32,
}

/// `POST /v1/services/{name}/scale`: the service's spec as stored, with another
/// replica count, applied as `orion apply` would (so the count's bound and the
/// rollout are the same). The spec is read after a linearizable barrier; a spec
/// change applied between that read and this write is overwritten, as with a
/// second `orion apply` of an older file.
pub async fn scale(
    State(leader): State<Arc<Forwarder>>,
    State(node): State<RaftNode>,
    ClientRequestId(request_id): ClientRequestId,
    Path(name): Path<String>,
    JsonBody(req): JsonBody<ScaleRequest>,
) -> HttpResult<Json<ApplyResponse>> {
    if req.replicas > orion_api::spec::MAX_REPLICAS {
        return Err(ApiError::invalid(format!(
            "replicas: {} is above the limit of {} replicas per service",
            req.replicas,
            orion_api::spec::MAX_REPLICAS
        ))
        .into());
    }
    fresh(&leader, false).await?;
    let found = node
        .reader
        .with_view(|view| read::service(view, &name).map_err(storage))?;
    let mut spec = found
        .ok_or_else(|| ApiError::not_found(format!("service {name:?} does not exist")))?
        .spec;
    spec.replicas = req.replicas;
    let resources = vec![Resource::Service(spec)];
    match leader
        .apply_as(request_id, Command::ApplyResources { resources })
        .await?
    {
        (revision, Applied::Resources(results)) => Ok(Json(ApplyResponse { revision, results })),
        (_, other) => Err(unexpected(&other).into()),
    }
}

#[cfg(test)]
mod tests {
    use orion_api::SourceFile;

    use super::*;

    fn req(files: &[(&str, &str)]) -> ApplyRequest {
        ApplyRequest {
            files: files
                .iter()
                .map(|(n, c)| SourceFile {
                    name: n.to_string(),
                    content: c.to_string(),
                })
                .collect(),
        }
    }

    #[test]
    fn one_bad_document_applies_nothing_and_names_its_place() {
        let text = "kind: Service\nname: a\ncommand: [x]\n---\nkind: Service\nname: b\nreplicas: -1\ncommand: [x]\n";
        let err = parse_files(&req(&[("orion.yaml", text)])).expect_err("bad doc");
        assert!(err.message.contains("orion.yaml:7:"), "{}", err.message);
        assert!(err.message.contains("replicas"), "{}", err.message);
    }

    #[test]
    fn a_name_defined_in_two_files_is_an_error() {
        let doc = "kind: Service\nname: web\ncommand: [x]\n";
        let err = parse_files(&req(&[("a.yaml", doc), ("b.yaml", doc)])).expect_err("dup");
        assert!(
            err.message.contains("also defined in a.yaml"),
            "{}",
            err.message
        );
    }
}
