//! A peer's life: bind, open storage, start Raft, serve, join or bootstrap, and shut
//! down in order when `shutdown` is cancelled.
//!
//! Everything a peer runs hangs off one cancellation tree and is a task of one
//! [`TaskTracker`]:
//!
//! ```text
//! root
//!  ├─ api    the REST listener: its connections, watches, relayed logs
//!  ├─ work   leader-only work (a child token per term led), the agent gateway
//!  │         and its sessions, certificate renewal, keeping the membership current
//!  └─ peers  the Raft transport
//! ```
//!
//! When `shutdown` is cancelled (or a task hits a fatal error), the branches stop in
//! this order, each awaited before the next: a leader asked to stop first hands
//! leadership to an up-to-date voter (bounded by [`HAND_OVER_DEADLINE`]); stop
//! accepting API calls (in-flight calls get [`DRAIN_DEADLINE`]); stop leader-only
//! work and agent sessions; stop the peer service, then shut Raft down (a call
//! reaching a stopped Raft is an ERROR in openraft's log); cancel the root, wait until the tracker is empty; then
//! drop the last handles of storage, which closes RocksDB.

use std::sync::Arc;
use std::time::Duration;

use orion_api::PeerIdentity;
use orion_raft::{Member, RaftNode};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

use crate::advertise::Advertiser;
use crate::api::streams::Sessions;
use crate::api::variables::StaleReads;
use crate::config::ServerConfig;
use crate::controllers::replicas::Unplaced;
use crate::error::{Error, Result};
use crate::forward::Forwarder;
use crate::gateway::{AgentRegistry, Gateway};
use crate::https::Draining;
use crate::leadership::LeaderWork;
use crate::metrics::PeerMetrics;
use crate::security::{self, Security};
use crate::state::AppState;
use crate::{https, join};
use orion_tls::config::ClientAuth;
use orion_tls::Role;

pub use crate::routes::{route_table, router, routes};

/// How long in-flight API calls, and each later stage, get to finish at shutdown.
pub const DRAIN_DEADLINE: Duration = Duration::from_secs(5);

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

/// Waits for one stage's task, for at most `deadline`.
async fn stopped(what: &str, task: JoinHandle<()>, deadline: Duration) {
    match tokio::time::timeout(deadline, task).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => error!(cause = %e, "{what} failed while stopping"),
        Err(_) => warn!("{what} did not stop in time"),
    }
}

/// The longest a shutting-down leader spends handing leadership over.
pub const HAND_OVER_DEADLINE: Duration = Duration::from_secs(8);

/// Transfers leadership to the most up-to-date voter before this leader stops.
async fn hand_over(node: &RaftNode) {
    info!("this peer leads: handing leadership over before stopping");
    match tokio::time::timeout(HAND_OVER_DEADLINE, node.transfer_leader(None)).await {
        Ok(Ok(t)) => info!(
            to = t.to,
            term = t.term,
            took_ms = t.took_ms,
            "handed leadership over; stopping"
        ),
        Ok(Err(e)) => warn!(cause = %e,
            "could not hand leadership over; stopping anyway (the others elect a leader after an election timeout)"),
        Err(_) => warn!(
            deadline_ms = HAND_OVER_DEADLINE.as_millis() as u64,
            "handing leadership over took too long; stopping anyway"
        ),
    }
}

/// Runs one peer until `shutdown` is cancelled or a fatal error occurs.
pub async fn run(config: ServerConfig, shutdown: CancellationToken) -> Result<()> {
    config.validate()?;
    std::fs::create_dir_all(&config.data_dir)?;
    // Before anything is written there: an older binary refuses a newer directory.
    crate::data_format::open(&config.data_dir)?;

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

    let hosts = security::cert_hosts(
        &[&me.api_addr, &me.peer_addr, &me.agent_addr],
        &config.tls_san,
    );
    let creds = Arc::new(security::peer_credentials(&config, hosts).await?);
    let peer_tls = orion_raft::tls::PeerTls {
        server: Arc::new(creds.server_config(ClientAuth::Require(Role::Server), &[b"h2"])?),
        client: Arc::new(creds.client_config()?),
    };
    let api_tls = Arc::new(creds.server_config(ClientAuth::Optional, &[b"h2", b"http/1.1"])?);

    if config.force_new_cluster {
        crate::recovery::force_new_cluster(&config, &me).await?;
    }
    let node = RaftNode::start(
        config.id,
        &config.data_dir.join("raft"),
        &config.raft,
        peer_tls,
    )
    .await?;
    let metrics = Arc::new(PeerMetrics::new()?);
    node.exported_metrics().register(metrics.registry())?;
    // A peer that applied its own removal would sit as a learner nobody calls.
    let retired = node.retired_here().map_err(|e| {
        Error::Io(std::io::Error::other(format!(
            "reading this peer's state: {e}"
        )))
    })?;
    if let Some(why) = retired {
        error!(id = config.id, "{why}; stopping");
        node.shutdown().await;
        return Err(Error::Removed(why));
    }
    let leader = Arc::new(Forwarder::new(
        node.clone(),
        creds.client_config()?,
        Duration::from_millis(config.leader_hold_ms),
        metrics.clone(),
    )?);
    let security = Arc::new(Security::new(
        creds.clone(),
        node.clone(),
        leader.clone(),
        config.data_dir.clone(),
    ));
    if !security::names_current(&creds) {
        // The advertised addresses or tls-san changed since the certificate was
        // issued: issue it again before anything is served with it.
        match security.renew_self() {
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

    // The cancellation tree (see the module docs) and the one tracker.
    let root = CancellationToken::new();
    let api = root.child_token();
    let work = root.child_token();
    let peers = root.child_token();
    // Cancelled by the caller, or by a task that cannot go on: starts the shutdown.
    let stop = shutdown.child_token();
    let tasks = TaskTracker::new();

    let agents = Arc::new(AgentRegistry::default());
    let unplaced = Arc::new(Unplaced::default());
    let state = AppState {
        node: node.clone(),
        leader: leader.clone(),
        security: security.clone(),
        agents: agents.clone(),
        unplaced: unplaced.clone(),
        sessions: Sessions::default(),
        stale_reads: StaleReads(config.debug_stale_reads),
        draining: Draining(api.clone()),
        me: me.clone(),
        metrics: metrics.clone(),
    };

    let gateway = Arc::new(Gateway {
        node: node.clone(),
        leader: leader.clone(),
        creds: creds.clone(),
        agents: agents.clone(),
    });
    let advertiser = Advertiser {
        node: node.clone(),
        leader: leader.clone(),
        me: me.clone(),
    };
    let leader_work = LeaderWork {
        node: node.clone(),
        agents,
        unplaced,
        node_ttl: Duration::from_millis(config.node_ttl_ms),
        security: security.clone(),
        metrics,
        data_dir: config.data_dir.clone(),
    };
    let work_tasks = [
        (
            "the agent gateway",
            tasks.spawn(gateway.run(agent_socket, work.clone())),
        ),
        (
            "the controllers",
            tasks.spawn(leader_work.run(work.clone())),
        ),
        (
            "certificate renewal",
            tasks.spawn(security.clone().renew_loop(work.clone())),
        ),
        (
            "the membership record",
            tasks.spawn(advertiser.keep_current(work.clone())),
        ),
        (
            "the Raft metrics",
            tasks.spawn(node.follow_metrics(work.clone())),
        ),
    ];

    // A peer refused as removed by another (its id retired there) stops.
    let removed = Arc::new(std::sync::Mutex::new(None::<String>));
    {
        let node = node.clone();
        let fatal = stop.clone();
        let slot = removed.clone();
        tasks.spawn(async move {
            tokio::select! {
                why = node.removed() => {
                    error!("{why}; stopping");
                    *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(why);
                    fatal.cancel();
                }
                () = fatal.cancelled() => {}
            }
        });
    }
    let peer_task = {
        let node = node.clone();
        let token = peers.clone();
        let fatal = stop.clone();
        let handshakes = tasks.clone();
        tasks.spawn(async move {
            if let Err(e) = crate::peer_grpc::serve(&node, peer_listener, &handshakes, token).await
            {
                error!(cause = %e, "peer service stopped");
                fatal.cancel();
            }
        })
    };
    let api_task = tasks.spawn(https::serve(
        api_listener,
        api_tls,
        router(state, config.max_body_bytes),
        api.clone(),
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
        // This peer's certificate is the credential; adding a peer waits until
        // it has caught up, which may mean a large snapshot.
        let client = orion_client::Client::builder(&config.join)
            .http(leader.http().clone())
            .timeout(Duration::from_secs(300))
            .build();
        match client {
            Ok(client) => tokio::select! {
                joined = join::join(&client, &node, &me) => outcome = joined,
                () = stop.cancelled() => {}
            },
            Err(e) => outcome = Err(Error::Join(e.to_string())),
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
        stop.cancelled().await;
    }

    info!("shutting down");
    // 0. A leader asked to stop hands leadership over first, while its API still
    //    takes calls (held writes then go to the new leader), so a planned restart
    //    costs the cluster one vote round, not an election timeout.
    if shutdown.is_cancelled() && node.has_successor() {
        hand_over(&node).await;
    }
    // 1. Stop accepting API calls; in-flight ones get the drain deadline.
    api.cancel();
    // (Each connection gets the drain deadline, counted from the cancel.)
    stopped("the API", api_task, 2 * DRAIN_DEADLINE).await;
    // 2. Leader-only work, the agent gateway and its sessions, renewal.
    work.cancel();
    for (what, task) in work_tasks {
        stopped(what, task, DRAIN_DEADLINE).await;
    }
    // 3. The peer service, then Raft: a call that reached a stopped Raft would be
    //    logged by openraft as an ERROR; refused at the door it is an unreachable
    //    peer, which the leader expects after a hand-over.
    peers.cancel();
    stopped("the peer transport", peer_task, DRAIN_DEADLINE).await;
    node.shutdown().await;
    // Nothing should be left; whatever is, is cancelled with the root.
    root.cancel();
    tasks.close();
    if tokio::time::timeout(DRAIN_DEADLINE, tasks.wait())
        .await
        .is_err()
    {
        warn!(left = tasks.len(), "tasks still running at shutdown");
    }
    // 4. Storage: the last handles go here, which closes RocksDB.
    drop((security, leader, node));
    info!("storage closed; stopped");
    let removed = removed.lock().unwrap_or_else(|p| p.into_inner()).take();
    match removed {
        Some(why) => Err(Error::Removed(why)),
        None => outcome,
    }
}
