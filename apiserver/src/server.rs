//! A peer's life: bind, open storage, start Raft, serve, join or bootstrap, and shut
//! down in order when `shutdown` is cancelled.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::http::Method;
use axum::routing::{delete, get, post, put, MethodRouter};
use axum::Router;
use orion_api::PeerIdentity;
use orion_raft::{Member, RaftNode};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::auth::Access;
use crate::config::ServerConfig;
use crate::leader::{internal_leader, Cluster, ClusterRef};
use crate::{cluster, error, health, join, variables, watch, workloads, Error, Result};
use orion_tls::config::ClientAuth;
use orion_tls::Role;

/// How long in-flight API calls get to finish at shutdown.
const DRAIN_DEADLINE: Duration = Duration::from_secs(5);

/// Every REST route with the access it requires: the one table the router, the
/// auth middleware and the route-by-role test are all built from.
pub fn routes() -> Vec<(Method, &'static str, Access, MethodRouter<ClusterRef>)> {
    use crate::security;
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
        (Method::POST, "/v1/apply", Write, post(workloads::apply)),
        (Method::GET, "/v1/services", Read, get(workloads::list)),
        (
            Method::GET,
            "/v1/services/{name}",
            Read,
            get(workloads::get),
        ),
        (
            Method::DELETE,
            "/v1/services/{name}",
            Write,
            delete(workloads::delete),
        ),
        (Method::GET, "/v1/nodes", Read, get(workloads::nodes)),
        (
            Method::PUT,
            "/v1/nodes/{name}",
            Admin,
            put(workloads::put_node),
        ),
        (Method::GET, "/v1/replicas", Read, get(workloads::replicas)),
        (
            Method::GET,
            "/v1/replicas/{id}/logs",
            Sessions,
            get(crate::streams::logs),
        ),
        (
            Method::POST,
            "/v1/replicas/{id}/exec",
            Sessions,
            post(crate::streams::exec),
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
        (Method::POST, "/v1/join", Public, post(security::join)),
        (
            Method::POST,
            "/v1/certificates/renew",
            Certified,
            post(security::renew),
        ),
        (Method::GET, "/v1/tokens", Admin, get(security::list_tokens)),
        (
            Method::POST,
            "/v1/tokens",
            Admin,
            post(security::create_token),
        ),
        (
            Method::DELETE,
            "/v1/tokens/{id}",
            Admin,
            delete(security::revoke_token),
        ),
        (
            Method::POST,
            "/v1/internal/leader",
            Peer,
            post(internal_leader),
        ),
    ]
}

/// The route table without handlers: `(method, path, access)`.
pub fn route_table() -> Vec<(Method, &'static str, Access)> {
    routes().into_iter().map(|(m, p, a, _)| (m, p, a)).collect()
}

/// The REST API. Every peer serves all of it.
pub fn router(cluster: ClusterRef, max_body_bytes: usize) -> Router {
    let mut by_path: std::collections::BTreeMap<&'static str, MethodRouter<ClusterRef>> =
        std::collections::BTreeMap::new();
    let mut policy = std::collections::HashMap::new();
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
    let policy: crate::auth::Policy = Arc::new(policy);
    router
        .fallback(error::no_route)
        .method_not_allowed_fallback(error::wrong_method)
        .route_layer(axum::middleware::from_fn_with_state(
            (cluster.clone(), policy),
            crate::auth::enforce,
        ))
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(axum::middleware::from_fn_with_state(
            max_body_bytes,
            error::refuse_oversized,
        ))
        .with_state(cluster)
}

async fn bind(addr: std::net::SocketAddr) -> Result<TcpListener> {
    TcpListener::bind(addr).await.map_err(|source| Error::Bind {
        addr: addr.to_string(),
        source,
    })
}

/// Name of the file, in the data directory, that holds the addresses this peer is
/// listening on. Useful when a configured port is 0 and the OS picked one.
pub const LISTEN_FILE: &str = "listen.json";

/// Writes `{"api": "ip:port", ...}` atomically (temp file, then rename).
fn write_listen_file(dir: &std::path::Path, addrs: &[(&str, std::net::SocketAddr)]) -> Result<()> {
    let map: std::collections::BTreeMap<&str, String> =
        addrs.iter().map(|(k, a)| (*k, a.to_string())).collect();
    let body = serde_json::to_vec_pretty(&map).map_err(std::io::Error::other)?;
    let tmp = dir.join(format!("{LISTEN_FILE}.tmp"));
    std::fs::write(&tmp, body)?;
    std::fs::rename(&tmp, dir.join(LISTEN_FILE))?;
    Ok(())
}

/// Runs one peer until `shutdown` is cancelled or a fatal error occurs.
pub async fn run(config: ServerConfig, shutdown: CancellationToken) -> Result<()> {
    config.validate()?;
    std::fs::create_dir_all(&config.data_dir)?;

    let listen = config.listen_addrs()?;
    let api_listener = bind(listen.api).await?;
    let peer_listener = bind(listen.peer).await?;
    let agent_socket = std::net::UdpSocket::bind(listen.agent).map_err(|source| Error::Bind {
        addr: listen.agent.to_string(),
        source,
    })?;
    let bound = crate::config::Listeners {
        api: api_listener.local_addr()?,
        peer: peer_listener.local_addr()?,
        agent: agent_socket.local_addr()?,
    };
    write_listen_file(
        &config.data_dir,
        &[
            ("api", bound.api),
            ("peer", bound.peer),
            ("agent", bound.agent),
        ],
    )?;
    let advertised = config.advertised(&bound)?;
    let me = PeerIdentity {
        id: config.id,
        api_addr: advertised.api,
        peer_addr: advertised.peer,
        agent_addr: advertised.agent,
    };

    let hosts = crate::security::cert_hosts(
        &[&me.api_addr, &me.peer_addr, &me.agent_addr],
        &config.tls_san,
    );
    let creds = Arc::new(crate::security::peer_credentials(&config, hosts).await?);
    let peer_tls = orion_raft::tls::PeerTls {
        server: Arc::new(creds.server_config(ClientAuth::Require(Role::Server), &[b"h2"])?),
        client: Arc::new(creds.client_config()?),
    };
    let api_tls = Arc::new(creds.server_config(ClientAuth::Optional, &[b"h2", b"http/1.1"])?);

    let node = RaftNode::start(
        config.id,
        &config.data_dir.join("raft"),
        &config.raft,
        peer_tls,
    )
    .await?;
    let http = reqwest::Client::builder()
        .use_preconfigured_tls(creds.client_config()?)
        .connect_timeout(Duration::from_millis(500))
        .pool_idle_timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| Error::Config(format!("http client: {e}")))?;
    let api_shutdown = CancellationToken::new();
    let cluster = Arc::new(Cluster {
        node: node.clone(),
        me: me.clone(),
        http: http.clone(),
        hold: Duration::from_millis(config.leader_hold_ms),
        shutdown: api_shutdown.clone(),
        unplaced: std::sync::Mutex::new(Vec::new()),
        node_ttl: Duration::from_millis(config.node_ttl_ms),
        agents: std::sync::Mutex::new(crate::gateway::AgentTable::default()),
        creds: creds.clone(),
        data_dir: config.data_dir.clone(),
        sessions: Arc::new(tokio::sync::Semaphore::new(crate::streams::MAX_SESSIONS)),
        debug_stale_reads: config.debug_stale_reads,
        token_key: std::sync::OnceLock::new(),
    });
    if !crate::security::names_current(&creds) {
        // The advertised addresses or tls-san changed since the certificate was
        // issued: issue it again before anything is served with it.
        match crate::security::renew_self(&cluster) {
            Ok(()) => {
                info!(names = ?creds.hosts, "issued this peer's certificate again for its new names")
            }
            Err(e) => warn!(cause = %e, names = ?creds.hosts,
                "this peer's certificate does not carry its current names yet; retrying in the background"),
        }
    }
    if config.debug_stale_reads {
        warn!("debug-stale-reads is on: variable reads may be stale (jepsen harness only)");
    }
    let renewal = tokio::spawn(crate::security::renew_loop(
        cluster.clone(),
        api_shutdown.clone(),
    ));
    let gateway_shutdown = CancellationToken::new();
    let gateway = tokio::spawn(crate::gateway::run(
        cluster.clone(),
        agent_socket,
        gateway_shutdown.clone(),
    ));
    let advertise = tokio::spawn(crate::advertise::keep_current(
        cluster.clone(),
        api_shutdown.clone(),
    ));
    let leader_work_shutdown = CancellationToken::new();
    let leader_work = tokio::spawn(crate::leadership::run(
        cluster.clone(),
        leader_work_shutdown.clone(),
    ));

    let peer_shutdown = CancellationToken::new();
    let peer_task = {
        let node = node.clone();
        let token = peer_shutdown.clone();
        let fatal = shutdown.clone();
        tokio::spawn(async move {
            if let Err(e) = crate::peer_grpc::serve(&node, peer_listener, token).await {
                error!(cause = %e, "peer service stopped");
                fatal.cancel();
            }
        })
    };
    let api_task = tokio::spawn(crate::https::serve(
        api_listener,
        api_tls,
        router(cluster.clone(), config.max_body_bytes),
        api_shutdown.clone(),
        DRAIN_DEADLINE,
    ));
    let member = Member {
        api_addr: me.api_addr.clone(),
        peer_addr: me.peer_addr.clone(),
        agent_addr: me.agent_addr.clone(),
    };
    let mut outcome = Ok(());
    if config.bootstrap {
        if let Err(e) = node.bootstrap(member).await {
            outcome = Err(e.into());
        }
    } else if !config.join.is_empty() && !node.is_initialized().await? {
        // Joining waits until the cluster has added us; a refusal is fatal.
        tokio::select! {
            joined = join::join(&http, &node, &config.join, &me) => outcome = joined,
            () = shutdown.cancelled() => {}
        }
    }
    if outcome.is_ok() {
        info!(
            id = me.id,
            api = %me.api_addr,
            peer = %me.peer_addr,
            data_dir = %config.data_dir.display(),
            "peer serving"
        );
        shutdown.cancelled().await;
    }

    // Shut down in order: API first (in-flight calls get a deadline), then the
    // leader-only controllers, then Raft, then the peer transport; storage closes
    // when the last handle drops.
    info!("shutting down");
    api_shutdown.cancel();
    let _ = api_task.await;
    renewal.abort();
    advertise.abort();
    gateway_shutdown.cancel();
    if tokio::time::timeout(DRAIN_DEADLINE, gateway).await.is_err() {
        warn!("agent gateway did not stop in time");
    }
    leader_work_shutdown.cancel();
    if tokio::time::timeout(DRAIN_DEADLINE, leader_work)
        .await
        .is_err()
    {
        warn!("controllers did not stop in time");
    }
    node.shutdown().await;
    peer_shutdown.cancel();
    if tokio::time::timeout(DRAIN_DEADLINE, peer_task)
        .await
        .is_err()
    {
        warn!("peer transport did not stop in time");
    }
    drop(cluster);
    info!("stopped");
    outcome
}
