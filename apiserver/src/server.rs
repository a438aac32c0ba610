//! A peer's life: bind, open storage, start Raft, serve, join or bootstrap, and shut
//! down in order when `shutdown` is cancelled.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;
use orion_api::PeerIdentity;
use orion_raft::{Member, RaftNode};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::config::ServerConfig;
use crate::leader::{internal_leader, Cluster, ClusterRef};
use crate::{cluster, error, health, join, variables, watch, workloads, Error, Result};

/// How long in-flight API calls get to finish at shutdown.
const DRAIN_DEADLINE: Duration = Duration::from_secs(5);

/// The REST API routes. Every peer serves all of them.
pub fn router(cluster: ClusterRef, max_body_bytes: usize) -> Router {
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/v1/variables", get(variables::list))
        .route(
            "/v1/variables/{*path}",
            get(variables::get)
                .put(variables::put)
                .delete(variables::delete),
        )
        .route("/v1/apply", post(workloads::apply))
        .route("/v1/services", get(workloads::list))
        .route(
            "/v1/services/{name}",
            get(workloads::get).delete(workloads::delete),
        )
        .route("/v1/nodes", get(workloads::nodes))
        .route("/v1/nodes/{name}", axum::routing::put(workloads::put_node))
        .route("/v1/replicas", get(workloads::replicas))
        .route("/v1/replicas/{id}/logs", get(crate::streams::logs))
        .route("/v1/replicas/{id}/exec", post(crate::streams::exec))
        .route("/v1/watch", get(watch::watch))
        .route("/v1/events", get(watch::recent))
        .route(
            "/v1/cluster/members",
            get(cluster::members).post(cluster::join),
        )
        .route(
            "/v1/cluster/members/{id}",
            axum::routing::delete(cluster::remove),
        )
        .route("/v1/cluster/status", get(cluster::status))
        .route("/v1/cluster/self", get(cluster::identity))
        .route("/v1/cluster/ca", get(cluster::agent_bootstrap))
        .route("/v1/internal/leader", post(internal_leader))
        .fallback(error::no_route)
        .method_not_allowed_fallback(error::wrong_method)
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .with_state(cluster)
}

async fn bind(addr: &str) -> Result<TcpListener> {
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

    let api_listener = bind(&config.api_addr).await?;
    let peer_listener = bind(&config.peer_addr).await?;
    let agent_socket =
        std::net::UdpSocket::bind(&config.agent_addr).map_err(|source| Error::Bind {
            addr: config.agent_addr.clone(),
            source,
        })?;
    write_listen_file(
        &config.data_dir,
        &[
            ("api", api_listener.local_addr()?),
            ("peer", peer_listener.local_addr()?),
            ("agent", agent_socket.local_addr()?),
        ],
    )?;
    let me = PeerIdentity {
        id: config.id,
        api_addr: config
            .advertise_api_addr
            .clone()
            .unwrap_or(api_listener.local_addr()?.to_string()),
        peer_addr: config
            .advertise_peer_addr
            .clone()
            .unwrap_or(peer_listener.local_addr()?.to_string()),
        agent_addr: config
            .advertise_agent_addr
            .clone()
            .unwrap_or(agent_socket.local_addr()?.to_string()),
    };

    let node = RaftNode::start(config.id, &config.data_dir.join("raft"), &config.raft).await?;
    let http = reqwest::Client::builder()
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
    });
    let gateway_shutdown = CancellationToken::new();
    let advertised_host = me
        .agent_addr
        .rsplit_once(':')
        .map_or_else(|| me.agent_addr.clone(), |(h, _)| h.to_string());
    let gateway = tokio::spawn(crate::gateway::run(
        cluster.clone(),
        agent_socket,
        advertised_host,
        gateway_shutdown.clone(),
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
            if let Err(e) = node.serve_peers(peer_listener, token).await {
                error!(cause = %e, "peer service stopped");
                fatal.cancel();
            }
        })
    };
    let api_task = {
        let app = router(cluster.clone(), config.max_body_bytes);
        let token = api_shutdown.clone();
        let fatal = shutdown.clone();
        tokio::spawn(async move {
            let served = axum::serve(api_listener, app)
                .with_graceful_shutdown(token.cancelled_owned())
                .await;
            if let Err(e) = served {
                error!(cause = %e, "API server stopped");
                fatal.cancel();
            }
        })
    };

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
    if tokio::time::timeout(DRAIN_DEADLINE, api_task)
        .await
        .is_err()
    {
        warn!("API calls still running after the drain deadline; stopping anyway");
    }
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
