//! The REST API's one table: every route with the handler and the [`Access`] it
//! requires. The router, the auth middleware's policy and the route-by-credential
//! test (`cli/tests/security.rs`) are all built from it, so a route cannot exist
//! without a policy.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::http::Method;
use axum::routing::{delete, get, post, put, MethodRouter};
use axum::Router;

use crate::api::{
    certificates, cluster, health, internal, nodes, replicas, rollout, services, streams, tokens,
    ui, variables, watch,
};
use crate::auth::{self, Access, Auth};
use crate::error;
use crate::state::AppState;

/// Every REST route with the access it requires: the one table the router, the
/// auth middleware and the route-by-role test are all built from.
pub fn routes() -> Vec<(Method, &'static str, Access, MethodRouter<AppState>)> {
    use Access::*;
    vec![
        (Method::GET, "/healthz", Public, get(health::healthz)),
        (Method::GET, "/readyz", Public, get(health::readyz)),
        (Method::GET, "/v1/variables", Read, get(variables::list)),
        (
            Method::GET,
            "/v1/variables/{*path}",
            Read,
            get(variables::get),
        ),
        (
            Method::PUT,
            "/v1/variables/{*path}",
            Write,
            put(variables::put),
        ),
        (
            Method::DELETE,
            "/v1/variables/{*path}",
            Write,
            delete(variables::delete),
        ),
        (Method::POST, "/v1/apply", Write, post(services::apply)),
        (Method::GET, "/v1/services", Read, get(services::list)),
        (Method::GET, "/v1/services/{name}", Read, get(services::get)),
        (
            Method::DELETE,
            "/v1/services/{name}",
            Write,
            delete(services::delete),
        ),
        (
            Method::POST,
            "/v1/services/{name}/rollout/undo",
            Write,
            post(rollout::undo),
        ),
        (
            Method::POST,
            "/v1/services/{name}/rollout/pause",
            Write,
            post(rollout::pause),
        ),
        (
            Method::POST,
            "/v1/services/{name}/rollout/resume",
            Write,
            post(rollout::resume),
        ),
        (Method::GET, "/v1/nodes", Read, get(nodes::list)),
        (Method::PUT, "/v1/nodes/{name}", Admin, put(nodes::put)),
        (Method::GET, "/v1/replicas", Read, get(replicas::list)),
        (
            Method::GET,
            "/v1/replicas/{id}/logs",
            Sessions,
            get(streams::logs),
        ),
        (
            Method::POST,
            "/v1/replicas/{id}/exec",
            Sessions,
            post(streams::exec),
        ),
        (Method::GET, "/v1/watch", Read, get(watch::watch)),
        (Method::GET, "/v1/events", Read, get(watch::recent)),
        (
            Method::GET,
            "/v1/cluster/members",
            Read,
            get(cluster::members),
        ),
        (
            Method::POST,
            "/v1/cluster/members",
            AdminOrPeer,
            post(cluster::join),
        ),
        (
            Method::DELETE,
            "/v1/cluster/members/{id}",
            Admin,
            delete(cluster::remove),
        ),
        (
            Method::GET,
            "/v1/cluster/status",
            Read,
            get(cluster::status),
        ),
        (
            Method::GET,
            "/v1/cluster/self",
            Read,
            get(cluster::identity),
        ),
        (
            Method::GET,
            "/v1/cluster/ca",
            Public,
            get(cluster::agent_bootstrap),
        ),
        (Method::POST, "/v1/join", Public, post(certificates::join)),
        (
            Method::POST,
            "/v1/certificates/renew",
            Certified,
            post(certificates::renew),
        ),
        (Method::GET, "/v1/tokens", Admin, get(tokens::list)),
        (Method::POST, "/v1/tokens", Admin, post(tokens::create)),
        (
            Method::DELETE,
            "/v1/tokens/{id}",
            Admin,
            delete(tokens::revoke),
        ),
        // The dashboard (`api/ui.rs`): the page and its assets are public (they
        // hold no data); login exchanges a token for a session cookie.
        (Method::GET, "/", Public, get(ui::root)),
        (Method::GET, "/ui", Public, get(ui::index)),
        (Method::GET, "/ui/assets/{file}", Public, get(ui::asset)),
        (Method::POST, "/ui/login", Public, post(ui::login)),
        (Method::POST, "/ui/logout", Public, post(ui::logout)),
        (Method::GET, "/ui/session", Read, get(ui::current)),
        (
            Method::POST,
            "/v1/services/{name}/scale",
            Write,
            post(services::scale),
        ),
        (
            Method::POST,
            "/v1/internal/leader",
            Peer,
            post(internal::leader),
        ),
    ]
}

/// The route table without handlers: `(method, path, access)`.
pub fn route_table() -> Vec<(Method, &'static str, Access)> {
    routes().into_iter().map(|(m, p, a, _)| (m, p, a)).collect()
}

/// The REST API. Every peer serves all of it.
pub fn router(state: AppState, max_body_bytes: usize) -> Router {
    let mut by_path: BTreeMap<&'static str, MethodRouter<AppState>> = BTreeMap::new();
    let mut policy = HashMap::new();
    for (method, path, access, handler) in routes() {
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
    router
        .fallback(error::no_route)
        .method_not_allowed_fallback(error::wrong_method)
        .route_layer(axum::middleware::from_fn_with_state(auth, auth::enforce))
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(axum::middleware::from_fn_with_state(
            max_body_bytes,
            error::refuse_oversized,
        ))
        .with_state(state)
}
