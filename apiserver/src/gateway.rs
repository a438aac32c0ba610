//! The QUIC agent gateway. Every peer listens; only the leader keeps sessions.
//!
//! A follower answers an agent's hello with the leader's agent address and closes.
//! The leader registers the node (a Raft write only when its labels, capacity or
//! status change), keeps its heartbeat in memory, and pushes the node's full
//! desired replica set whenever the applied state changes it. When this peer stops
//! leading, every session is closed so agents reconnect to the new leader.

use std::collections::BTreeMap;
use std::net::UdpSocket;
use std::sync::Arc;
use std::time::{Duration, Instant};

use orion_api::agent_proto::{
    AgentMessage, DesiredReplica, FrameError, FrameReader, ReplicaReport, ServerMessage,
};
use orion_api::{NodeObject, NodeStatus};
use orion_raft::{read, Command};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::leader::ClusterRef;

/// What the leader knows about connected agents, in memory only.
#[derive(Default)]
pub struct AgentTable {
    /// Last heartbeat per node.
    pub last_seen: BTreeMap<String, Instant>,
    /// Last reported replica states, by replica id.
    pub observed: BTreeMap<String, ReplicaReport>,
    /// The latest usage each agent reported.
    pub usage: BTreeMap<String, orion_api::agent_proto::NodeUsage>,
    /// The live connection of each node's agent, for log and exec streams.
    pub conns: BTreeMap<String, quinn::Connection>,
}

/// An agent's control stream, read frame by frame (cancel-safe).
type Frames = FrameReader<quinn::RecvStream, AgentMessage>;

/// Reads one frame of the `node`'s control stream; `None` when it ended cleanly.
/// A bad frame is logged with what was wrong and ends the session.
async fn read_frame(frames: &mut Frames, node: &str) -> Result<Option<AgentMessage>, String> {
    frames.next().await.map_err(|e| {
        if !matches!(e, FrameError::Io(_)) {
            warn!(node = %node, cause = %e, "closing the session of an agent that sent a bad frame");
        }
        e.to_string()
    })
}

async fn write_frame(send: &mut quinn::SendStream, msg: &ServerMessage) -> Result<(), String> {
    orion_api::agent_proto::write_frame(send, msg)
        .await
        .map_err(|e| e.to_string())
}

/// The gateway's QUIC config: TLS 1.3, ALPN `orion/2`, agent certificates only,
/// at most 8 concurrent streams per agent, 2 s idle timeout.
fn quic_config(cluster: &ClusterRef) -> Result<quinn::ServerConfig, String> {
    let tls = cluster
        .creds
        .server_config(
            orion_tls::config::ClientAuth::Require(orion_tls::Role::Agent),
            &[orion_api::agent_proto::ALPN],
        )
        .map_err(|e| e.to_string())?;
    let crypto =
        quinn::crypto::rustls::QuicServerConfig::try_from(tls).map_err(|e| e.to_string())?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    let mut transport = quinn::TransportConfig::default();
    transport.max_concurrent_bidi_streams(8u32.into());
    transport.max_concurrent_uni_streams(0u32.into());
    transport.max_idle_timeout(Some(
        Duration::from_secs(2)
            .try_into()
            .map_err(|e| format!("{e}"))?,
    ));
    config.transport_config(Arc::new(transport));
    Ok(config)
}

/// Serves the gateway on `socket` until `shutdown`.
pub async fn run(cluster: ClusterRef, socket: UdpSocket, shutdown: CancellationToken) {
    let config = match quic_config(&cluster) {
        Ok(c) => c,
        Err(e) => {
            warn!(cause = %e, "agent gateway cannot be configured; agents cannot connect");
            return;
        }
    };
    let endpoint = match quinn::Endpoint::new(
        quinn::EndpointConfig::default(),
        Some(config),
        socket,
        Arc::new(quinn::TokioRuntime),
    ) {
        Ok(e) => e,
        Err(e) => {
            warn!(cause = %e, "agent gateway cannot start");
            return;
        }
    };
    info!(addr = ?endpoint.local_addr().ok(), "agent gateway listening");
    loop {
        let incoming = tokio::select! {
            () = shutdown.cancelled() => break,
            i = endpoint.accept() => match i { Some(i) => i, None => break },
        };
        let cluster = cluster.clone();
        let token = shutdown.clone();
        tokio::spawn(async move {
            match incoming.await {
                Ok(conn) => {
                    if let Err(e) = session(cluster, conn.clone(), token).await {
                        debug!(cause = %e, "agent session ended");
                    }
                    conn.close(0u32.into(), b"bye");
                }
                Err(e) => debug!(cause = %e, "agent handshake failed"),
            }
        });
    }
    endpoint.close(0u32.into(), b"shutting down");
}

async fn session(
    cluster: ClusterRef,
    conn: quinn::Connection,
    shutdown: CancellationToken,
) -> Result<(), String> {
    let (mut send, recv) = conn.accept_bi().await.map_err(|e| e.to_string())?;
    let mut frames = Frames::new(recv);
    let remote = conn.remote_address().to_string();
    let Some(AgentMessage::Hello {
        node,
        labels,
        capacity,
    }) = read_frame(&mut frames, &remote).await?
    else {
        return Err("the first message must be hello".into());
    };
    // NodeRestriction: an agent speaks only for the node its certificate names.
    let certified = conn
        .peer_identity()
        .and_then(|any| {
            any.downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>()
                .ok()
        })
        .and_then(|chain| orion_tls::config::peer_identity(Some(&chain)));
    match &certified {
        Some(id) if id.role == orion_tls::Role::Agent && id.name == node => {}
        other => {
            warn!(claimed = %node, certificate = ?other, remote = %conn.remote_address(),
                "refused an agent posing as another node");
            conn.close(1u32.into(), b"the certificate is for another node");
            return Err(format!(
                "agent claimed node {node:?} with certificate {other:?}"
            ));
        }
    }
    if !cluster.node.is_leader() {
        let agent_addr = cluster
            .node
            .leader()
            .map(|(_, m)| m.agent_addr)
            .filter(|a| !a.is_empty());
        write_frame(&mut send, &ServerMessage::Redirect { agent_addr }).await?;
        let _ = send.finish();
        // Let the agent read the redirect before the connection goes away.
        let _ = tokio::time::timeout(Duration::from_secs(2), conn.closed()).await;
        return Ok(());
    }
    register(&cluster, &node, labels, capacity).await?;
    write_frame(&mut send, &ServerMessage::Welcome { node: node.clone() }).await?;
    info!(node = %node, "agent connected");
    if let Ok(mut t) = cluster.agents.lock() {
        t.last_seen.insert(node.clone(), Instant::now());
        t.conns.insert(node.clone(), conn.clone());
    }
    let result = control_loop(&cluster, &node, &mut send, frames, &shutdown).await;
    if let Ok(mut t) = cluster.agents.lock() {
        if t.conns
            .get(&node)
            .is_some_and(|c| c.stable_id() == conn.stable_id())
        {
            t.conns.remove(&node);
        }
    }
    result
}

async fn control_loop(
    cluster: &ClusterRef,
    node: &str,
    send: &mut quinn::SendStream,
    mut frames: Frames,
    shutdown: &CancellationToken,
) -> Result<(), String> {
    let node = node.to_string();
    let mut metrics = cluster.node.raft.metrics();
    let mut last_sent: Option<Vec<DesiredReplica>> = None;
    loop {
        if !cluster.node.is_leader() {
            break Err("no longer the leader".into());
        }
        let (revision, desired) = match desired_for(cluster, &node) {
            Ok(d) => d,
            Err(e) => break Err(e),
        };
        if last_sent.as_ref() != Some(&desired) {
            let msg = ServerMessage::Desired {
                revision,
                replicas: desired.clone(),
            };
            if let Err(e) = write_frame(send, &msg).await {
                break Err(e);
            }
            last_sent = Some(desired);
        }
        tokio::select! {
            () = shutdown.cancelled() => break Ok(()),
            changed = metrics.changed() => if changed.is_err() { break Ok(()) },
            // Reading a frame is cancel-safe.
            msg = read_frame(&mut frames, &node) => match msg {
                Ok(None) => break Ok(()),
                Err(e) => break Err(e),
                Ok(Some(AgentMessage::Heartbeat { usage, .. })) => {
                    if let Ok(mut t) = cluster.agents.lock() {
                        t.last_seen.insert(node.clone(), Instant::now());
                        t.usage.insert(node.clone(), usage);
                    }
                }
                Ok(Some(AgentMessage::Status { replicas })) => {
                    let mine: std::collections::BTreeSet<&str> =
                        last_sent.iter().flatten().map(|d| d.id.as_str()).collect();
                    let (own, strays): (Vec<_>, Vec<_>) =
                        replicas.into_iter().partition(|r| mine.contains(r.id.as_str()));
                    if let Ok(mut t) = cluster.agents.lock() {
                        for r in own {
                            t.observed.insert(r.id.clone(), r);
                        }
                    }
                    if !strays.is_empty() {
                        refuse_strays(cluster, &node, &strays);
                    }
                }
                Ok(Some(AgentMessage::Hello { .. })) => break Err("hello sent twice".into()),
            },
        }
    }
}

/// Reports about replicas not in the node's desired set are dropped: logged as
/// refused when the replica is placed on another node (NodeRestriction), quietly
/// when it was just removed. Only this unusual case reads the placements.
fn refuse_strays(cluster: &ClusterRef, node: &str, strays: &[ReplicaReport]) {
    let placed: BTreeMap<String, String> = cluster
        .node
        .reader
        .with_view(read::replicas)
        .map(|all| all.into_iter().map(|r| (r.id(), r.node)).collect())
        .unwrap_or_default();
    for r in strays {
        match placed.get(&r.id) {
            Some(other) if other != node => {
                warn!(node = %node, replica = %r.id, placed_on = %other,
                "refused a status report for another node's replica")
            }
            _ => {
                debug!(node = %node, replica = %r.id, "report for a replica no longer placed here")
            }
        }
    }
}

/// Writes the node through Raft only when what the agent says differs from the record.
async fn register(
    cluster: &ClusterRef,
    name: &str,
    labels: BTreeMap<String, String>,
    capacity: orion_api::spec::Resources,
) -> Result<(), String> {
    let current = cluster
        .node
        .reader
        .with_view(read::nodes)
        .map_err(|e| e.to_string())?
        .into_iter()
        .find(|n| n.name == name);
    let wanted = NodeObject {
        name: name.to_string(),
        labels,
        capacity,
        status: NodeStatus::Ready,
        draining: current.as_ref().is_some_and(|n| n.draining),
        agent: true,
        mod_revision: 0,
    };
    let same = current.as_ref().is_some_and(|c| {
        c.labels == wanted.labels
            && c.capacity == wanted.capacity
            && c.status == wanted.status
            && c.agent
    });
    if !same {
        cluster
            .apply(Command::UpsertNode { node: wanted })
            .await
            .map_err(|e| e.message)?;
    }
    Ok(())
}

/// The spec as one replica sees it: the service's replica count is not part of
/// it, so scaling a service never restarts the replicas that stay.
fn per_replica(spec: &orion_api::spec::ServiceSpec) -> orion_api::spec::ServiceSpec {
    orion_api::spec::ServiceSpec {
        replicas: 1,
        ..spec.clone()
    }
}

fn desired_for(cluster: &ClusterRef, node: &str) -> Result<(u64, Vec<DesiredReplica>), String> {
    cluster
        .node
        .reader
        .with_view(|v| {
            let revision = v.last_applied_index()?;
            let services: BTreeMap<String, orion_api::ServiceObject> = read::services(v)
                .map_err(|e| orion_store::Error::ApplyRead(e.to_string()))?
                .into_iter()
                .map(|s| (s.spec.name.clone(), s))
                .collect();
            let replicas =
                read::replicas(v).map_err(|e| orion_store::Error::ApplyRead(e.to_string()))?;
            let desired = replicas
                .into_iter()
                .filter(|r| r.node == node)
                .filter_map(|r| {
                    services.get(&r.service).map(|s| DesiredReplica {
                        id: r.id(),
                        generation: s.generation,
                        service: per_replica(&s.spec),
                    })
                })
                .collect();
            Ok::<_, orion_store::Error>((revision, desired))
        })
        .map_err(|e| e.to_string())
}
