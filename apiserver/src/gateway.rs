//! The QUIC agent gateway. Every peer listens; only the leader keeps sessions.
//!
//! A follower answers an agent's hello with the leader's agent address and closes.
//! The leader registers the node (a Raft write only when its labels, capacity or
//! status change), keeps its heartbeat in memory, and pushes the node's full
//! desired replica set whenever the applied state changes it. When this peer stops
//! leading, every session is closed so agents reconnect to the new leader.
//!
//! The gateway owns the [`AgentRegistry`] (`registry`): what connected agents said,
//! and their connections, which log and exec streams are opened on ([`open_stream`]).
//! Every session is a task of the gateway's, and [`Gateway::run`] returns only when
//! all of them have ended.

pub mod desired;
pub mod registry;

use std::collections::BTreeMap;
use std::net::UdpSocket;
use std::sync::Arc;
use std::time::Duration;

use orion_api::agent_proto::{
    AgentMessage, DesiredReplica, FrameError, FrameReader, ReplicaReport, ServerMessage,
    StreamRequest, VariableValues,
};
use orion_api::{NodeObject, NodeStatus};
use orion_raft::{read, Command, RaftNode};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use crate::forward::Forwarder;
use crate::security::PeerCreds;
pub use desired::DesiredIndex;
pub use registry::AgentRegistry;

/// What the gateway works with: the Raft node (who leads, the desired replicas),
/// the way to the leader (registering nodes), this peer's certificate, and the
/// registry it fills.
pub struct Gateway {
    pub node: RaftNode,
    pub leader: Arc<Forwarder>,
    pub creds: Arc<PeerCreds>,
    pub agents: Arc<AgentRegistry>,
}

/// Why an agent's session ended, or never started. Logged at DEBUG when the
/// session ends (a bad frame or a node posing as another is WARNed where it
/// happens); none of these stops the gateway.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("the QUIC connection: {0}")]
    Connection(#[from] quinn::ConnectionError),
    #[error("writing to the agent: {0}")]
    Write(#[from] quinn::WriteError),
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The agent broke the protocol (no hello first, a second hello).
    #[error("the agent broke the protocol: {0}")]
    Protocol(&'static str),
    /// NodeRestriction: the agent claimed a node its certificate does not name.
    #[error("agent claimed node {claimed:?} with certificate {certificate}")]
    PosingAsAnother {
        claimed: String,
        certificate: String,
    },
    #[error("no longer the leader")]
    NotLeader,
    #[error("reading the replicated state: {0}")]
    State(String),
    #[error("registering the node: {0}")]
    Register(orion_api::ApiError),
}

/// The gateway's QUIC endpoint could not be configured.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("TLS: {0}")]
    Tls(#[from] Box<crate::error::Error>),
    #[error("QUIC crypto: {0}")]
    Crypto(#[from] quinn::crypto::rustls::NoInitialCipherSuite),
    #[error("idle timeout: {0}")]
    IdleTimeout(#[from] quinn::VarIntBoundsExceeded),
}

/// An agent's control stream, read frame by frame (cancel-safe).
type Frames = FrameReader<quinn::RecvStream, AgentMessage>;

/// Reads one frame of the `node`'s control stream; `None` when it ended cleanly.
/// A bad frame is logged with what was wrong and ends the session.
async fn read_frame(frames: &mut Frames, node: &str) -> Result<Option<AgentMessage>, SessionError> {
    frames.next().await.map_err(|e| {
        if !matches!(e, FrameError::Io(_)) {
            warn!(node = %node, cause = %e, "closing the session of an agent that sent a bad frame");
        }
        SessionError::Frame(e)
    })
}

async fn write_frame(
    send: &mut quinn::SendStream,
    msg: &ServerMessage,
) -> Result<(), SessionError> {
    Ok(orion_api::agent_proto::write_frame(send, msg).await?)
}

/// Opens a new stream on an agent's connection and sends `request` on it (logs
/// and exec; the control stream stays free).
pub async fn open_stream(
    conn: &quinn::Connection,
    request: &StreamRequest,
) -> Result<(quinn::SendStream, quinn::RecvStream), SessionError> {
    let (mut send, recv) = conn.open_bi().await?;
    orion_api::agent_proto::write_frame(&mut send, request).await?;
    Ok((send, recv))
}

/// The gateway's QUIC config: TLS 1.3, ALPN `orion/2`, agent certificates only,
/// at most 8 concurrent streams per agent, 2 s idle timeout.
fn quic_config(creds: &PeerCreds) -> Result<quinn::ServerConfig, SetupError> {
    let tls = creds
        .server_config(
            orion_tls::config::ClientAuth::Require(orion_tls::Role::Agent),
            &[orion_api::agent_proto::ALPN],
        )
        .map_err(Box::new)?;
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls)?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    let mut transport = quinn::TransportConfig::default();
    transport.max_concurrent_bidi_streams(8u32.into());
    transport.max_concurrent_uni_streams(0u32.into());
    transport.max_idle_timeout(Some(Duration::from_secs(2).try_into()?));
    config.transport_config(Arc::new(transport));
    Ok(config)
}

impl Gateway {
    /// Serves the gateway on `socket` until `shutdown`; returns when every session
    /// has ended and the endpoint is idle.
    pub async fn run(self: Arc<Self>, socket: UdpSocket, shutdown: CancellationToken) {
        let config = match quic_config(&self.creds) {
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
        let sessions = TaskTracker::new();
        let index = Arc::new(DesiredIndex::new(self.node.clone()));
        sessions.spawn(index.clone().run(shutdown.clone()));
        loop {
            let incoming = tokio::select! {
                () = shutdown.cancelled() => break,
                i = endpoint.accept() => match i { Some(i) => i, None => break },
            };
            let gw = self.clone();
            let index = index.clone();
            let token = shutdown.clone();
            sessions.spawn(async move {
                let conn = tokio::select! {
                    c = incoming => c,
                    () = token.cancelled() => return,
                };
                match conn {
                    Ok(conn) => {
                        if let Err(e) = session(&gw, &index, conn.clone(), token).await {
                            debug!(cause = %e, "agent session ended");
                        }
                        conn.close(0u32.into(), b"bye");
                    }
                    Err(e) => debug!(cause = %e, "agent handshake failed"),
                }
            });
        }
        sessions.close();
        sessions.wait().await;
        endpoint.close(0u32.into(), b"shutting down");
        endpoint.wait_idle().await;
    }
}

async fn session(
    gw: &Gateway,
    index: &DesiredIndex,
    conn: quinn::Connection,
    shutdown: CancellationToken,
) -> Result<(), SessionError> {
    let (mut send, recv) = conn.accept_bi().await?;
    let mut frames = Frames::new(recv);
    let remote = conn.remote_address().to_string();
    let Some(AgentMessage::Hello {
        node,
        labels,
        capacity,
    }) = read_frame(&mut frames, &remote).await?
    else {
        return Err(SessionError::Protocol("the first message must be hello"));
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
            return Err(SessionError::PosingAsAnother {
                claimed: node,
                certificate: format!("{other:?}"),
            });
        }
    }
    if !gw.node.is_leader() {
        let agent_addr = gw
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
    register(gw, &node, labels, capacity).await?;
    write_frame(&mut send, &ServerMessage::Welcome { node: node.clone() }).await?;
    info!(node = %node, "agent connected");
    gw.agents.connected(&node, conn.clone());
    let result = control_loop(gw, index, &node, &mut send, frames, &shutdown).await;
    gw.agents.disconnected(&node, &conn);
    index.release(&node);
    result
}

/// Sends the node's desired set whenever its channel in the index changes, and
/// handles what the agent reports. The session ends when the channel closes (this
/// peer stopped leading) or the agent goes away.
async fn control_loop(
    gw: &Gateway,
    index: &DesiredIndex,
    node: &str,
    send: &mut quinn::SendStream,
    mut frames: Frames,
    shutdown: &CancellationToken,
) -> Result<(), SessionError> {
    let node = node.to_string();
    let (first, mut desired) = index.subscribe(&node)?;
    write_frame(
        send,
        &ServerMessage::Desired {
            revision: first.revision,
            replicas: first.replicas.to_vec(),
        },
    )
    .await?;
    let mut last_sent: Arc<Vec<DesiredReplica>> = first.replicas;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break Ok(()),
            changed = desired.changed() => {
                if changed.is_err() || !gw.node.is_leader() {
                    break Err(SessionError::NotLeader);
                }
                let now = desired.borrow_and_update().clone();
                if *now.replicas != *last_sent {
                    let msg = ServerMessage::Desired {
                        revision: now.revision,
                        replicas: now.replicas.to_vec(),
                    };
                    write_frame(send, &msg).await?;
                    last_sent = now.replicas;
                }
            }
            // Reading a frame is cancel-safe.
            msg = read_frame(&mut frames, &node) => match msg {
                Ok(None) => break Ok(()),
                Err(e) => break Err(e),
                Ok(Some(AgentMessage::Heartbeat { usage, .. })) => {
                    gw.agents.heartbeat(&node, usage);
                }
                Ok(Some(AgentMessage::Status { replicas })) => {
                    let mine: std::collections::BTreeSet<&str> =
                        last_sent.iter().map(|d| d.id.as_str()).collect();
                    let (own, strays): (Vec<_>, Vec<_>) =
                        replicas.into_iter().partition(|r| mine.contains(r.id.as_str()));
                    gw.agents.observed(&node, own);
                    if !strays.is_empty() {
                        refuse_strays(&gw.node, &node, &strays);
                    }
                }
                Ok(Some(AgentMessage::Hello { .. })) => {
                    break Err(SessionError::Protocol("hello sent twice"))
                }
            },
        }
    }
}

/// Reports about replicas not in the node's desired set are dropped: logged as
/// refused when the replica is placed on another node (NodeRestriction), quietly
/// when it was just removed. Only this unusual case reads the placements.
fn refuse_strays(raft: &RaftNode, node: &str, strays: &[ReplicaReport]) {
    let placed: BTreeMap<String, String> = raft
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
    gw: &Gateway,
    name: &str,
    labels: BTreeMap<String, String>,
    capacity: orion_api::spec::Resources,
) -> Result<(), SessionError> {
    let current = gw
        .node
        .reader
        .with_view(read::nodes)
        .map_err(|e| SessionError::State(e.to_string()))?
        .into_iter()
        .find(|n| n.name == name);
    let wanted = NodeObject {
        name: name.to_string(),
        labels,
        capacity,
        status: NodeStatus::Ready,
        // Kept from the stored record by apply whatever is sent here.
        cordoned: false,
        draining: false,
        drain_deadline_unix_ms: None,
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
        gw.leader
            .apply(Command::UpsertNode { node: wanted })
            .await
            .map_err(SessionError::Register)?;
    }
    Ok(())
}

/// The values of `spec`'s variable-backed env as the state holds them now, and the
/// paths of those that do not exist. This is the one place a variable's value
/// joins a replica: the stored spec holds only the references.
fn resolve_variables(
    view: &orion_store::View<'_>,
    spec: &orion_api::spec::ServiceSpec,
) -> Result<VariableValues, orion_store::Error> {
    let mut out = VariableValues::default();
    for (name, r) in &spec.env_variables {
        match read::variable(view, &r.variable)
            .map_err(|e| orion_store::Error::ApplyRead(e.to_string()))?
        {
            Some(variable) => {
                out.values.insert(name.clone(), variable.value);
            }
            None if !out.missing.contains(&r.variable) => out.missing.push(r.variable.clone()),
            None => {}
        }
    }
    Ok(out)
}
