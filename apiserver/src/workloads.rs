//! `/v1/apply` and `/v1/services`: desired workloads.
//!
//! `apply` takes the files as text and parses them here, so every client gets the
//! same validation and every error names file, line and column. All resources of
//! all files go into one Raft entry: a request with one bad document applies nothing.

use std::collections::BTreeMap;

use axum::extract::{Path, Query, State};
use axum::Json;
use orion_api::spec::{parse_documents, Resource, SpecErrors};
use orion_api::{
    ApiError, ApplyRequest, ApplyResponse, DeletedService, NodeList, NodeObject, ReplicaList,
    ServiceList, ServiceResponse,
};
use orion_raft::command::Applied;
use orion_raft::{read, Command};

use crate::error::{HttpResult, JsonBody};
use crate::idempotency::ClientRequestId;
use crate::leader::{Cluster, ClusterRef};
use crate::variables::ReadParams;

fn unexpected(applied: &Applied) -> ApiError {
    ApiError::internal(format!("unexpected apply result {applied:?}"))
}

fn storage(e: impl std::fmt::Display) -> ApiError {
    ApiError::internal(format!("reading the state machine failed: {e}"))
}

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
    State(cluster): State<ClusterRef>,
    ClientRequestId(request_id): ClientRequestId,
    JsonBody(req): JsonBody<ApplyRequest>,
) -> HttpResult<Json<ApplyResponse>> {
    let resources = parse_files(&req)?;
    match cluster
        .apply_as(request_id, Command::ApplyResources { resources })
        .await?
    {
        (revision, Applied::Resources(results)) => Ok(Json(ApplyResponse { revision, results })),
        (_, other) => Err(unexpected(&other).into()),
    }
}

async fn fresh(cluster: &Cluster, stale: bool) -> Result<(), ApiError> {
    if stale {
        Ok(())
    } else {
        cluster.linearizable_barrier().await
    }
}

/// `GET /v1/services`.
pub async fn list(
    State(cluster): State<ClusterRef>,
    Query(params): Query<ReadParams>,
) -> HttpResult<Json<ServiceList>> {
    fresh(&cluster, params.stale).await?;
    let list = cluster.node.reader.with_view(|view| {
        Ok::<_, ApiError>(ServiceList {
            revision: view.last_applied_index().map_err(storage)?,
            items: read::services(view).map_err(storage)?,
        })
    })?;
    Ok(Json(list))
}

/// `GET /v1/services/{name}`.
pub async fn get(
    State(cluster): State<ClusterRef>,
    Path(name): Path<String>,
    Query(params): Query<ReadParams>,
) -> HttpResult<Json<ServiceResponse>> {
    fresh(&cluster, params.stale).await?;
    let (revision, found) = cluster.node.reader.with_view(|view| {
        Ok::<_, ApiError>((
            view.last_applied_index().map_err(storage)?,
            read::service(view, &name).map_err(storage)?,
        ))
    })?;
    let service =
        found.ok_or_else(|| ApiError::not_found(format!("service {name:?} does not exist")))?;
    Ok(Json(ServiceResponse { revision, service }))
}

/// `DELETE /v1/services/{name}`.
pub async fn delete(
    State(cluster): State<ClusterRef>,
    ClientRequestId(request_id): ClientRequestId,
    Path(name): Path<String>,
) -> HttpResult<Json<DeletedService>> {
    match cluster
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

/// `GET /v1/nodes`, with the heartbeat usage the leader holds (a follower asks
/// the leader unless `?stale=true`).
pub async fn nodes(
    State(cluster): State<ClusterRef>,
    Query(params): Query<ReadParams>,
    headers: axum::http::HeaderMap,
) -> HttpResult<axum::response::Response> {
    use axum::response::IntoResponse;
    if !params.stale && !cluster.node.is_leader() {
        let url = crate::streams::leader_url(&cluster, &headers, "/v1/nodes")?;
        return Ok(crate::streams::proxied(cluster.http.get(url), &headers).await?);
    }
    fresh(&cluster, params.stale).await?;
    let mut list = cluster.node.reader.with_view(|view| {
        Ok::<_, ApiError>(NodeList {
            revision: view.last_applied_index().map_err(storage)?,
            items: read::nodes(view).map_err(storage)?,
            usage: Default::default(),
        })
    })?;
    if let Ok(agents) = cluster.agents.lock() {
        list.usage = agents.usage.clone();
    }
    Ok(Json(list).into_response())
}

/// `PUT /v1/nodes/{name}`: register or update a node by hand (agents register
/// themselves; this is for admins and for pre-registration, as `kubectl create node`).
pub async fn put_node(
    State(cluster): State<ClusterRef>,
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
    let (revision, applied) = cluster
        .apply_as(request_id, Command::UpsertNode { node })
        .await?;
    if !matches!(applied, Applied::Done) {
        return Err(unexpected(&applied).into());
    }
    Ok(Json(NodeObject {
        mod_revision: revision,
        ..stored
    }))
}

/// `GET /v1/replicas`: placed replicas, what their agents report, and those that
/// cannot be placed. Agent reports live in the leader's memory, so a follower asks
/// the leader unless `?stale=true`.
pub async fn replicas(
    State(cluster): State<ClusterRef>,
    Query(params): Query<ReadParams>,
    headers: axum::http::HeaderMap,
) -> HttpResult<axum::response::Response> {
    use axum::response::IntoResponse;
    if !params.stale && !cluster.node.is_leader() {
        let url = crate::streams::leader_url(&cluster, &headers, "/v1/replicas")?;
        return Ok(crate::streams::proxied(cluster.http.get(url), &headers).await?);
    }
    fresh(&cluster, params.stale).await?;
    let mut list = cluster.node.reader.with_view(|view| {
        Ok::<_, ApiError>(ReplicaList {
            revision: view.last_applied_index().map_err(storage)?,
            items: read::replicas(view).map_err(storage)?,
            unplaced: Vec::new(),
            observed: Default::default(),
        })
    })?;
    if let Ok(u) = cluster.unplaced.lock() {
        list.unplaced.clone_from(&u);
    }
    if let Ok(agents) = cluster.agents.lock() {
        list.observed = agents
            .observed
            .iter()
            .filter(|(id, _)| list.items.iter().any(|r| &r.id() == *id))
            .map(|(id, r)| (id.clone(), r.clone()))
            .collect();
    }
    Ok(Json(list).into_response())
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
