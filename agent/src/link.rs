//! One QUIC link to a gateway: connect with the agent certificate, say hello,
//! follow a redirect or keep the control stream with the leader (status at once
//! and on every supervisor change, heartbeats every second, a reconcile on every
//! desired set), and serve the log and exec streams the leader opens.

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use orion_api::agent_proto::{
    write_frame, AgentMessage, FrameError, FrameReader, ReplicaReport, ServerMessage, ALPN,
};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::error::{LinkError, SessionError};
use crate::metrics::AgentMetrics;
use crate::ports::PortBook;
use crate::retry::Faults;
use crate::streams::accept_streams;
use crate::supervisor::Supervisor;
use crate::usage::usage;

/// How long a silent QUIC link lives: how fast a dead leader is noticed.
const IDLE_TIMEOUT_MS: u32 = 2_000;

/// Who this agent is, as it says hello.
pub(crate) struct Hello {
    pub name: String,
    pub labels: std::collections::BTreeMap<String, String>,
    pub capacity: orion_api::spec::Resources,
}

/// How one link ended.
pub(crate) enum Outcome {
    /// A follower named the leader's address (or knows no leader yet).
    Redirect(Option<String>),
    /// The gateway could not be reached (logged).
    Failed,
    /// A session with the leader was up and is over.
    SessionEnded,
}

/// The QUIC client side: TLS 1.3 with the agent certificate, ALPN, keep-alives.
pub(crate) fn client_config(
    ca_pem: &str,
    live: Arc<orion_tls::LiveCert>,
) -> Result<quinn::ClientConfig, SessionError> {
    let mut tls =
        orion_tls::config::client_config(ca_pem, Some(live)).map_err(SessionError::Tls)?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    let crypto =
        quinn::crypto::rustls::QuicClientConfig::try_from(tls).map_err(SessionError::Quic)?;
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    let mut transport = quinn::TransportConfig::default();
    // A dead leader is noticed after the idle timeout; keep-alives keep a live but
    // quiet link open.
    transport.keep_alive_interval(Some(Duration::from_millis(500)));
    transport.max_idle_timeout(Some(quinn::VarInt::from_u32(IDLE_TIMEOUT_MS).into()));
    config.transport_config(Arc::new(transport));
    Ok(config)
}

/// What a link drives on this node: the supervisor, and the metrics it keeps.
pub(crate) struct Local {
    pub supervisor: Arc<Supervisor>,
    pub metrics: Arc<AgentMetrics>,
}

/// Connects to the gateway at `addr` and, if it is the leader's, keeps the session
/// until it ends. Faults are logged through `faults`.
pub(crate) async fn connect_once(
    hello: &Hello,
    client: &quinn::ClientConfig,
    addr: &str,
    local: &Local,
    ports: &mut PortBook,
    shutdown: &CancellationToken,
    faults: &mut Faults,
) -> Outcome {
    let result = async {
        let sock: SocketAddr = addr
            .to_socket_addrs()
            .map_err(|source| LinkError::Resolve {
                addr: addr.to_owned(),
                source,
            })?
            .next()
            .ok_or_else(|| LinkError::NoAddress {
                addr: addr.to_owned(),
            })?;
        let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
        let bind = if sock.is_ipv4() {
            SocketAddr::from(([0, 0, 0, 0], 0))
        } else {
            SocketAddr::from(([0u16; 8], 0))
        };
        let mut endpoint = quinn::Endpoint::client(bind).map_err(LinkError::Endpoint)?;
        endpoint.set_default_client_config(client.clone());
        let conn = endpoint.connect(sock, host)?.await?;
        let (mut send, recv) = conn.open_bi().await?;
        let msg = AgentMessage::Hello {
            node: hello.name.clone(),
            labels: hello.labels.clone(),
            capacity: hello.capacity,
        };
        write_frame(&mut send, &msg).await?;
        let mut frames = FrameReader::<_, ServerMessage>::new(recv);
        match frames.next().await? {
            Some(ServerMessage::Redirect { agent_addr }) => {
                conn.close(0u32.into(), b"redirected");
                return Ok(Outcome::Redirect(agent_addr));
            }
            Some(ServerMessage::Welcome { .. }) => {}
            other => return Err(LinkError::Unexpected(format!("first answer {other:?}"))),
        }
        info!(%addr, "connected to the leader");
        faults.reset();
        let streams = tokio::spawn(accept_streams(
            conn.clone(),
            local.supervisor.clone(),
            local.metrics.clone(),
        ));
        local.metrics.connected.set(1);
        let ended = serve(send, frames, &local.supervisor, ports, shutdown).await;
        local.metrics.connected.set(0);
        streams.abort();
        conn.close(0u32.into(), b"bye");
        endpoint.wait_idle().await;
        if let Err(e) = ended {
            if is_bad_frame(&e) {
                warn!(%addr, cause = %e, "closed the session: the leader sent a bad frame");
            } else {
                faults.report("the session with the leader ended", addr, &e);
            }
        }
        Ok::<_, LinkError>(Outcome::SessionEnded)
    }
    .await;
    result.unwrap_or_else(|e| {
        if is_bad_frame(&e) {
            warn!(%addr, cause = %e, "closed the link: the gateway sent a bad frame");
        } else {
            faults.report("cannot reach an agent gateway", addr, &e);
        }
        Outcome::Failed
    })
}

/// A frame that breaks the protocol, as opposed to a stream that broke: not an
/// ordinary fault, so always worth a warning.
fn is_bad_frame(e: &LinkError) -> bool {
    matches!(e, LinkError::Frame(f) if !matches!(f, FrameError::Io(_)))
}

/// The session: heartbeats every second, status on every supervisor change, and a
/// reconcile on every desired set.
async fn serve(
    mut send: quinn::SendStream,
    mut frames: FrameReader<quinn::RecvStream, ServerMessage>,
    supervisor: &Supervisor,
    ports: &mut PortBook,
    shutdown: &CancellationToken,
) -> Result<(), LinkError> {
    let mut changes = supervisor.subscribe();
    let mut beat = tokio::time::interval(Duration::from_secs(1));
    // A new leader knows nothing of this node's replicas yet: report them at once.
    let status = AgentMessage::Status {
        replicas: reports(supervisor),
    };
    write_frame(&mut send, &status).await?;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            _ = beat.tick() => {
                let running = supervisor.statuses().iter().filter(|s| s.pid.is_some()).count() as u32;
                let msg = AgentMessage::Heartbeat { replicas_running: running, usage: usage() };
                write_frame(&mut send, &msg).await?;
            }
            changed = changes.changed() => {
                if changed.is_err() { return Ok(()) }
                let msg = AgentMessage::Status { replicas: reports(supervisor) };
                write_frame(&mut send, &msg).await?;
            }
            // Reading a frame is cancel-safe.
            frame = frames.next() => match frame? {
                Some(ServerMessage::Desired { revision, replicas }) => {
                    info!(revision, replicas = replicas.len(), "desired replica set");
                    let specs = ports.specs(replicas);
                    supervisor.reconcile(specs).await;
                }
                Some(other) => return Err(LinkError::Unexpected(format!("message {other:?}"))),
                None => return Ok(()),
            },
        }
    }
}

/// What the leader hears of each replica.
fn reports(supervisor: &Supervisor) -> Vec<ReplicaReport> {
    let mut ports = supervisor.ports();
    let generations = supervisor.generations();
    supervisor
        .statuses()
        .into_iter()
        .map(|s| ReplicaReport {
            state: s.state.reported(),
            // A replica without named ports has none.
            ports: ports.remove(&s.id).unwrap_or_default(),
            generation: generations.get(&s.id).copied().unwrap_or_default(),
            exit_code: match s.state {
                crate::replica::ReplicaState::Exited { code, .. } => code,
                _ => None,
            },
            id: s.id,
            pid: s.pid,
            restarts: s.restarts,
            reason: s.reason,
        })
        .collect()
}
