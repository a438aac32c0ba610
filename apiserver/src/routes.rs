//! The REST API's one table: every route with the handler and the [`Access`] it
//! requires. The router, the auth middleware's policy and the route-by-credential
//! test (`cli/tests/security.rs`) and the OpenAPI document (`crate::openapi`,
//! served at `/v1/openapi.json`) are all built from it, so a route cannot exist
//! without a policy or a document entry.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::http::Method;
use axum::routing::{delete, get, post, put, MethodRouter};
use axum::Router;

use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use crate::api::common::ReadParams;
use crate::api::{
    certificates, cluster, health, internal, jobs, metrics, nodes, overview, replicas, rollout,
    services, streams, tokens, ui, variables, watch,
};
use crate::auth::{self, Access, Auth};
use crate::error;
use crate::openapi::{self, Answer, Doc, HeaderDoc, PathSchema, SchemaFn};
use crate::state::AppState;

/// One row of the table: method, path, access, handler, and what the OpenAPI
/// document says about it ([`Doc`]). Rows are built with [`Route::new`] and the
/// builder methods; every row must declare its answer (a JSON schema, or
/// [`Route::html`]/[`Route::asset`]/… for what is not JSON), which a test checks.
pub struct Route {
    pub method: Method,
    pub path: &'static str,
    pub access: Access,
    pub handler: MethodRouter<AppState>,
    pub doc: Doc,
}

impl Route {
    pub fn new(
        method: Method,
        path: &'static str,
        access: Access,
        handler: MethodRouter<AppState>,
        summary: &'static str,
    ) -> Self {
        Route {
            method,
            path,
            access,
            handler,
            doc: Doc {
                summary,
                ..Doc::default()
            },
        }
    }
    /// A JSON answer of type `T`.
    pub fn answers<T: ToSchema>(mut self) -> Self {
        self.doc.answer = Some(Answer::Json(openapi::schema_of::<T>));
        self
    }
    /// A JSON answer described by `f` (an array, an ad hoc object).
    pub fn answers_with(mut self, f: SchemaFn) -> Self {
        self.doc.answer = Some(Answer::Json(f));
        self
    }
    /// A JSON request body of type `T`.
    pub fn body<T: ToSchema>(mut self) -> Self {
        self.doc.body = Some(openapi::schema_of::<T>);
        self
    }
    /// A JSON request body described by `f`.
    pub fn body_with(mut self, f: SchemaFn) -> Self {
        self.doc.body = Some(f);
        self
    }
    /// The query parameters of `T`.
    pub fn query<T: IntoParams>(mut self) -> Self {
        self.doc.query = Some(openapi::query_of::<T>);
        self
    }
    pub fn status(mut self, status: u16) -> Self {
        self.doc.status = Some(status);
        self
    }
    pub fn errors(mut self, extra: &'static [u16]) -> Self {
        self.doc.extra_errors = extra;
        self
    }
    pub fn path_schemas(mut self, schemas: &'static [PathSchema]) -> Self {
        self.doc.path_schemas = schemas;
        self
    }
    pub fn headers(mut self, headers: &'static [HeaderDoc]) -> Self {
        self.doc.headers = headers;
        self
    }
    /// Server-sent events.
    pub fn event_stream(mut self) -> Self {
        self.doc.answer = Some(Answer::EventStream);
        self
    }
    /// Streamed plain text.
    pub fn text(mut self) -> Self {
        self.doc.answer = Some(Answer::Text);
        self
    }
    /// An HTML page: listed in the document as `text/html`, `x-orion-content: html`.
    pub fn html(mut self) -> Self {
        self.doc.answer = Some(Answer::Html);
        self
    }
    /// No body: `204 No Content`.
    pub fn no_content(mut self) -> Self {
        self.doc.status = Some(204);
        self.doc.answer = Some(Answer::Empty);
        self
    }
    /// A static file: listed as `application/octet-stream`, `x-orion-content: asset`.
    pub fn asset(mut self) -> Self {
        self.doc.answer = Some(Answer::Asset);
        self
    }
}

fn service_name() -> Value {
    serde_json::json!({
        "type": "string", "minLength": 1, "maxLength": 63,
        "pattern": "^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"
    })
}

fn variable_path() -> Value {
    // What `orion_api::validate_path` accepts: segments of letters, digits, '.',
    // '_', '-' (never "." or ".."), joined by single '/'.
    let segment =
        r"(?:[A-Za-z0-9_-][A-Za-z0-9._-]*|\.[A-Za-z0-9_-][A-Za-z0-9._-]*|\.\.[A-Za-z0-9._-]+)";
    serde_json::json!({
        "type": "string", "minLength": 1, "maxLength": orion_api::MAX_PATH_LEN,
        "pattern": format!("^{segment}(?:/{segment})*$")
    })
}

fn numeric_id() -> Value {
    serde_json::json!({ "type": "string", "pattern": "^[0-9]{1,19}$" })
}

fn health_answer(_: &mut openapi::Schemas) -> Value {
    serde_json::json!({
        "type": "object", "required": ["status"],
        "properties": { "status": { "type": "string", "const": "ok" } }
    })
}

fn ready_answer(_: &mut openapi::Schemas) -> Value {
    serde_json::json!({
        "type": "object", "required": ["ready", "state"],
        "properties": {
            "ready": { "type": "boolean" },
            "leader": { "type": ["integer", "null"], "minimum": 0 },
            "state": { "type": "string" }
        }
    })
}

fn any_object(_: &mut openapi::Schemas) -> Value {
    serde_json::json!({ "type": "object" })
}

const IDEMPOTENCY: &[HeaderDoc] = &[(
    "Idempotency-Key",
    "the write's request id: a retry under the same key is applied once and answered with the first result",
    idempotency_key,
)];

/// 1 to 128 visible ASCII characters but `"` and `\`, bare or quoted.
fn idempotency_key() -> Value {
    serde_json::json!({
        "type": "string",
        "pattern": r#"^(?:[!#-\[\]-~]{1,128}|"[!#-\[\]-~]{1,128}")$"#
    })
}

/// An event cursor, `REV.SEQ`.
fn event_cursor() -> Value {
    // Empty is no position (what a browser sends before it saw an id).
    serde_json::json!({ "type": "string", "pattern": r"^(?:[0-9]{1,19}\.[0-9]{1,9})?$" })
}

/// `POST /v1/replicas/{id}/exec`: the program first, then its arguments.
fn exec_body(_: &mut openapi::Schemas) -> Value {
    serde_json::json!({
        "type": "object", "additionalProperties": false, "required": ["command"],
        "properties": { "command": {
            "type": "array", "minItems": 1,
            "prefixItems": [{ "type": "string", "minLength": 1 }],
            "items": { "type": "string" },
            "description": "the program and its arguments; no shell is involved"
        } }
    })
}

/// Every REST route with the access it requires: the one table the router, the
/// auth middleware, the route-by-role test and the OpenAPI document are built from.
pub fn routes() -> Vec<Route> {
    use Access::*;
    use Method as M;
    let r = Route::new;
    vec![
        r(
            M::GET,
            "/healthz",
            Public,
            get(health::healthz),
            "Liveness: the process answers",
        )
        .answers_with(health_answer),
        r(
            M::GET,
            "/readyz",
            Public,
            get(health::readyz),
            "Readiness: a member that knows a leader (503 when not)",
        )
        .answers_with(ready_answer),
        r(
            M::GET,
            "/metrics",
            Read,
            get(metrics::metrics),
            "This peer's metrics in the Prometheus text format (any API token: readonly suffices)",
        )
        .text(),
        r(
            M::GET,
            "/v1/openapi.json",
            Public,
            get(openapi_document),
            "This document",
        )
        .answers_with(any_object),
        r(
            M::GET,
            "/v1/variables",
            Read,
            get(variables::list),
            "List variables under a prefix, one page",
        )
        .query::<variables::ListParams>()
        .answers::<orion_api::ListResponse>(),
        r(
            M::GET,
            "/v1/variables/{*path}",
            Read,
            get(variables::get),
            "Read a variable",
        )
        .path_schemas(&[("path", variable_path)])
        .query::<ReadParams>()
        .answers::<orion_api::VariableResponse>(),
        r(
            M::PUT,
            "/v1/variables/{*path}",
            Write,
            put(variables::put),
            "Write a variable; compare-and-set with expected_revision (0: create only)",
        )
        .path_schemas(&[("path", variable_path)])
        .headers(IDEMPOTENCY)
        .body::<orion_api::PutVariable>()
        .answers::<orion_api::WriteResponse>(),
        r(
            M::DELETE,
            "/v1/variables/{*path}",
            Write,
            delete(variables::delete),
            "Delete a variable, only at expected_revision if given",
        )
        .path_schemas(&[("path", variable_path)])
        .headers(IDEMPOTENCY)
        .query::<variables::DeleteParams>()
        .answers::<orion_api::DeleteResponse>(),
        r(
            M::POST,
            "/v1/apply",
            Write,
            post(services::apply),
            "Apply orion.yaml files: every resource in one write, or none",
        )
        .headers(IDEMPOTENCY)
        .body::<orion_api::ApplyRequest>()
        .answers::<orion_api::ApplyResponse>(),
        r(
            M::GET,
            "/v1/services",
            Read,
            get(services::list),
            "List services",
        )
        .query::<ReadParams>()
        .answers::<orion_api::ServiceList>(),
        r(
            M::GET,
            "/v1/services/{name}",
            Read,
            get(services::get),
            "Read a service",
        )
        .path_schemas(&[("name", service_name)])
        .query::<ReadParams>()
        .answers::<orion_api::ServiceResponse>(),
        r(
            M::DELETE,
            "/v1/services/{name}",
            Write,
            delete(services::delete),
            "Delete a service and, by the controllers, its replicas",
        )
        .path_schemas(&[("name", service_name)])
        .headers(IDEMPOTENCY)
        .answers::<orion_api::DeletedService>(),
        r(
            M::POST,
            "/v1/services/{name}/rollout/undo",
            Write,
            post(rollout::undo),
            "Restore an earlier spec (the previous one, or to_revision) as a new revision, which rolls out",
        )
        .path_schemas(&[("name", service_name)])
        .headers(IDEMPOTENCY)
        .body::<orion_api::RolloutUndo>()
        .answers::<orion_api::ServiceResponse>(),
        r(
            M::POST,
            "/v1/services/{name}/rollout/pause",
            Write,
            post(rollout::pause),
            "Stop moving replicas to the new revision",
        )
        .path_schemas(&[("name", service_name)])
        .headers(IDEMPOTENCY)
        .answers::<orion_api::ServiceResponse>(),
        r(
            M::POST,
            "/v1/services/{name}/rollout/resume",
            Write,
            post(rollout::resume),
            "Carry on moving replicas to the new revision",
        )
        .path_schemas(&[("name", service_name)])
        .headers(IDEMPOTENCY)
        .answers::<orion_api::ServiceResponse>(),
        r(
            M::POST,
            "/v1/services/{name}/scale",
            Write,
            post(services::scale),
            "Change a service's replica count, applied as orion apply would",
        )
        .path_schemas(&[("name", service_name)])
        .headers(IDEMPOTENCY)
        .body::<services::ScaleRequest>()
        .answers::<orion_api::ApplyResponse>(),
        r(M::GET, "/v1/jobs", Read, get(jobs::list), "List jobs with their runs")
            .query::<ReadParams>()
            .answers::<orion_api::JobList>(),
        r(
            M::GET,
            "/v1/jobs/{name}",
            Read,
            get(jobs::get),
            "Read a job: its spec, its runs with their tasks' exit codes, its next scheduled run",
        )
        .path_schemas(&[("name", service_name)])
        .query::<ReadParams>()
        .answers::<orion_api::JobResponse>(),
        r(
            M::DELETE,
            "/v1/jobs/{name}",
            Write,
            delete(jobs::delete),
            "Delete a job; its running tasks are stopped",
        )
        .path_schemas(&[("name", service_name)])
        .headers(IDEMPOTENCY)
        .answers::<orion_api::DeletedJob>(),
        r(
            M::POST,
            "/v1/jobs/{name}/run",
            Write,
            post(jobs::run),
            "Start a run of a job now (once per Idempotency-Key)",
        )
        .path_schemas(&[("name", service_name)])
        .headers(IDEMPOTENCY)
        .answers::<orion_api::StartedRun>(),
        r(
            M::GET,
            "/v1/nodes",
            Read,
            get(nodes::list),
            "List nodes with the usage their agents report",
        )
        .query::<ReadParams>()
        .answers::<orion_api::NodeList>(),
        r(
            M::PUT,
            "/v1/nodes/{name}",
            Admin,
            put(nodes::put),
            "Register or update a node by hand",
        )
        .path_schemas(&[("name", service_name)])
        .headers(IDEMPOTENCY)
        .body::<orion_api::NodeObject>()
        .answers::<orion_api::NodeObject>(),
        r(
            M::DELETE,
            "/v1/nodes/{name}",
            Admin,
            delete(nodes::delete),
            "Forget a node that is gone; its replicas are placed elsewhere",
        )
        .path_schemas(&[("name", service_name)])
        .headers(IDEMPOTENCY)
        .answers::<orion_api::NodeObject>(),
        r(
            M::POST,
            "/v1/nodes/{name}/cordon",
            Admin,
            post(nodes::cordon),
            "Cordon a node: no new replicas; those it has stay",
        )
        .path_schemas(&[("name", service_name)])
        .headers(IDEMPOTENCY)
        .answers::<orion_api::NodeObject>(),
        r(
            M::POST,
            "/v1/nodes/{name}/uncordon",
            Admin,
            post(nodes::uncordon),
            "Uncordon a node (also ends a drain): it takes replicas again",
        )
        .path_schemas(&[("name", service_name)])
        .headers(IDEMPOTENCY)
        .answers::<orion_api::NodeObject>(),
        r(
            M::POST,
            "/v1/nodes/{name}/drain",
            Admin,
            post(nodes::drain),
            "Drain a node: its replicas move elsewhere within each service's max_unavailable",
        )
        .path_schemas(&[("name", service_name)])
        .headers(IDEMPOTENCY)
        .body::<orion_api::workload::DrainRequest>()
        .answers::<orion_api::NodeObject>(),
        r(
            M::GET,
            "/v1/replicas",
            Read,
            get(replicas::list),
            "List placed replicas, their agents' reports and the unplaced",
        )
        .query::<ReadParams>()
        .answers::<orion_api::ReplicaList>(),
        r(
            M::GET,
            "/v1/replicas/{id}/logs",
            Sessions,
            get(streams::logs),
            "A replica's log, as text or JSON records, optionally followed",
        )
        .query::<streams::LogParams>()
        .text(),
        r(
            M::POST,
            "/v1/replicas/{id}/exec",
            Sessions,
            post(streams::exec),
            "Run a command in a replica",
        )
        .body_with(exec_body)
        .answers_with(any_object),
        r(
            M::POST,
            "/v1/replicas/{id}/restart",
            Write,
            post(streams::restart),
            "Restart a replica's process (stop with its grace, start again), whatever its restart policy",
        )
        .answers::<orion_api::RestartedReplica>(),
        r(
            M::GET,
            "/v1/watch",
            Read,
            get(watch::watch),
            "Changes as server-sent events, resumable from a cursor",
        )
        .query::<watch::WatchParams>()
        .headers(&[(
            "Last-Event-ID",
            "resume after this cursor (REV.SEQ); wins over `from`",
            event_cursor,
        )])
        .errors(&[410])
        .event_stream(),
        r(
            M::GET,
            "/v1/events",
            Read,
            get(watch::recent),
            "The most recent events still in the window",
        )
        .query::<watch::EventQuery>()
        .errors(&[410])
        .answers_with(openapi::list_of::<orion_api::Event>),
        r(
            M::GET,
            "/v1/cluster/members",
            Read,
            get(cluster::members),
            "Control-plane members, with replication lag from the leader",
        )
        .query::<ReadParams>()
        .answers::<orion_api::MembersResponse>(),
        r(
            M::POST,
            "/v1/cluster/members",
            AdminOrPeer,
            post(cluster::join),
            "Add a running peer: a learner, then a voter once caught up",
        )
        .body::<orion_api::PeerIdentity>()
        .answers::<orion_api::MembersResponse>(),
        r(
            M::DELETE,
            "/v1/cluster/members/{id}",
            Admin,
            delete(cluster::remove),
            "Remove a member and retire its id",
        )
        .path_schemas(&[("id", numeric_id)])
        .answers::<orion_api::MembersResponse>(),
        r(
            M::POST,
            "/v1/cluster/transfer-leader",
            Admin,
            post(cluster::transfer_leader),
            "Hand leadership to a voter (or the most up-to-date one), writes held meanwhile",
        )
        .body::<orion_api::TransferRequest>()
        .errors(&[404, 409])
        .answers::<orion_api::TransferResponse>(),
        r(
            M::GET,
            "/v1/cluster/status",
            Read,
            get(cluster::status),
            "This peer's own view: leader, term, log",
        )
        .answers::<orion_api::ClusterStatus>(),
        r(
            M::GET,
            "/v1/cluster/snapshot",
            Admin,
            get(cluster::snapshot),
            "A backup of the replicated state: taken on the leader after a read barrier, streamed; the header holds its revision, the last 4 bytes its CRC-32C",
        )
        .errors(&[429])
        .asset(),
        r(
            M::GET,
            "/v1/cluster/self",
            Read,
            get(cluster::identity),
            "Who this peer is",
        )
        .answers::<orion_api::PeerIdentity>(),
        r(
            M::GET,
            "/v1/cluster/ca",
            Public,
            get(cluster::agent_bootstrap),
            "The cluster CA and the agent gateways",
        )
        .answers::<orion_api::AgentBootstrap>(),
        r(
            M::POST,
            "/v1/join",
            Public,
            post(certificates::join),
            "Trade a join token (spent once) and a CSR for a certificate",
        )
        .body::<orion_api::security::JoinCertRequest>()
        .answers::<orion_api::security::IssuedCert>(),
        r(
            M::POST,
            "/v1/certificates/renew",
            Certified,
            post(certificates::renew),
            "A new certificate for the caller's identity",
        )
        .body::<orion_api::security::RenewRequest>()
        .answers::<orion_api::security::IssuedCert>(),
        r(
            M::GET,
            "/v1/tokens",
            Admin,
            get(tokens::list),
            "Token records (never the tokens)",
        )
        .answers::<orion_api::security::TokenList>(),
        r(
            M::POST,
            "/v1/tokens",
            Admin,
            post(tokens::create),
            "Mint a token",
        )
        .body::<orion_api::security::CreateToken>()
        .status(201)
        .answers::<orion_api::security::CreatedToken>(),
        r(
            M::DELETE,
            "/v1/tokens/{id}",
            Admin,
            delete(tokens::revoke),
            "Revoke a token by its id",
        )
        .answers::<orion_api::security::RevokedToken>(),
        // The dashboard (`api/ui.rs`): the page and its assets are public (they
        // hold no data); login exchanges a token for a session cookie.
        r(M::GET, "/", Public, get(ui::root), "Redirects to the dashboard").html(),
        r(M::GET, "/ui", Public, get(ui::index), "The dashboard").html(),
        r(
            M::GET,
            "/ui/assets/{file}",
            Public,
            get(ui::asset),
            "The dashboard's scripts, styles and icons",
        )
        .asset(),
        r(
            M::POST,
            "/ui/login",
            Public,
            post(ui::login),
            "Exchange a token for a session cookie (needs the X-Orion-CSRF header)",
        )
        .body::<ui::Login>()
        .answers::<ui::SessionInfo>(),
        r(
            M::POST,
            "/ui/logout",
            Public,
            post(ui::logout),
            "End this browser's session",
        )
        .no_content(),
        r(
            M::GET,
            "/v1/overview",
            Read,
            get(overview::overview),
            "The dashboard's first view at one revision: services, nodes, replicas, the first 1000 variables, the last 200 events, members",
        )
        .query::<ReadParams>()
        .answers::<orion_api::Overview>(),
        r(
            M::GET,
            "/ui/session",
            Read,
            get(ui::current),
            "The session's role, expiry and CSRF token",
        )
        .answers::<ui::SessionInfo>(),
        r(
            M::POST,
            "/v1/internal/leader",
            Peer,
            post(internal::leader),
            "Peer to leader: a request only the leader can answer",
        )
        .body_with(any_object)
        .answers_with(any_object),
    ]
}

/// `GET /v1/openapi.json`: the document of this table.
async fn openapi_document() -> axum::Json<Value> {
    axum::Json(openapi())
}

/// The OpenAPI document of [`routes`].
pub fn openapi() -> Value {
    let rows = routes();
    openapi::document(rows.iter().map(|r| (&r.method, r.path, r.access, &r.doc)))
}

/// The route table without handlers: `(method, path, access)`.
pub fn route_table() -> Vec<(Method, &'static str, Access)> {
    routes()
        .into_iter()
        .map(|r| (r.method, r.path, r.access))
        .collect()
}

/// The REST API. Every peer serves all of it.
pub fn router(state: AppState, max_body_bytes: usize) -> Router {
    let mut by_path: BTreeMap<&'static str, MethodRouter<AppState>> = BTreeMap::new();
    let mut policy = HashMap::new();
    for Route {
        method,
        path,
        access,
        handler,
        ..
    } in routes()
    {
        policy.insert((method, path), access);
        let merged = match by_path.remove(path) {
            Some(existing) => existing.merge(handler),
            None => handler,
        };
        by_path.insert(path, merged);
    }
    let mut router = Router::new();
    for (path, handler) in by_path {
        router = router.route(path, handler);
    }
    let auth = Auth {
        tokens: state.tokens(),
        policy: Arc::new(policy),
    };
    let metrics = state.metrics.clone();
    router
        .layer(axum::middleware::from_fn(error::json_errors))
        .fallback(error::no_route)
        .method_not_allowed_fallback(error::wrong_method)
        .route_layer(axum::middleware::from_fn_with_state(auth, auth::enforce))
        // Outside the auth check, so refused calls are counted with their route.
        .route_layer(axum::middleware::from_fn(crate::metrics::label_route))
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(axum::middleware::from_fn_with_state(
            max_body_bytes,
            error::refuse_oversized,
        ))
        .layer(axum::middleware::from_fn_with_state(
            metrics,
            crate::metrics::track,
        ))
        .with_state(state)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every row of the table is an operation of the document, with its access
    /// level, an answer, and every error answer with the JSON error body.
    #[test]
    fn every_route_is_in_the_document_with_access_and_error_answers() {
        let doc = openapi();
        for route in routes() {
            let what = format!("{} {}", route.method, route.path);
            assert!(route.doc.answer.is_some(), "{what} declares no answer");
            let path = route.path.replace("{*", "{");
            let op = &doc["paths"][&path][route.method.as_str().to_ascii_lowercase()];
            assert!(op.is_object(), "{what} is not in the document");
            assert_eq!(
                op["x-orion-access"],
                openapi::access_name(route.access),
                "{what}"
            );
            assert!(op["security"].is_array(), "{what}");
            for status in openapi::ERROR_STATUSES {
                let answer = &op["responses"][status.to_string()];
                let target = answer["$ref"].as_str().unwrap_or_default();
                let name = target.rsplit('/').next().unwrap_or_default();
                let schema = &doc["components"]["responses"][name]["content"]["application/json"]
                    ["schema"]["$ref"];
                assert_eq!(
                    schema, "#/components/schemas/ErrorBody",
                    "{what}: {status} lacks the error body"
                );
            }
        }
        let paths = doc["paths"].as_object().map_or(0, |p| {
            p.values()
                .map(|ops| ops.as_object().map_or(0, |o| o.len()))
                .sum()
        });
        assert_eq!(paths, routes().len(), "one operation per row");
        let codes = &doc["components"]["schemas"]["ErrorCode"];
        assert!(
            codes.to_string().contains("no_such_route"),
            "the error codes are listed: {codes}"
        );
    }
}
