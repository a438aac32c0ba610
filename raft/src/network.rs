//! The client side of the peer transport: one lazily connected gRPC channel per target.
//!
//! The channel (one HTTP/2 connection over mutual TLS) is made once per target and
//! address and shared by every client openraft asks for: its replication stream,
//! votes, and the heartbeats that confirm leadership for linearizable reads. openraft
//! asks for a new client for each of those confirmations; a new channel each time
//! meant a TCP connect and a TLS handshake per follower per read.
//!
//! tonic reconnects a lazy channel on its own; openraft backs off from a target that
//! returns [`Unreachable`], so a dead peer costs a failed connect now and then, not a
//! busy loop. Every call is bounded by the deadline openraft passes in [`RPCOption`].
//! Each answer (or its absence) is recorded in [`Contacts`], which is how the
//! leader reports every member's health in `GET /v1/cluster/members`.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::{de::DeserializeOwned, Serialize};
use tonic::transport::{Channel, Endpoint};

use crate::codec;
use crate::proto::peer_raft_client::PeerRaftClient;
use crate::proto::RaftPayload;
use crate::types::{Member, NodeId, TypeConfig};

/// How long to wait for a TCP connection to a peer.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

/// When each target last answered a Raft call of this peer, heartbeats included.
/// openraft 0.9's metrics hold only the matched log index per follower, which
/// stands still in an idle cluster; this says whether a member is alive.
#[derive(Debug, Default)]
pub struct Contacts(Mutex<BTreeMap<NodeId, Contact>>);

/// What [`Contacts`] knows of one target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Contact {
    /// When it last answered (any answer, a refusal included: it is up).
    pub last_answer: Option<Instant>,
    /// Whether the latest call got no answer (unreachable, timed out).
    pub last_call_failed: bool,
    /// Since when every call has failed (the first failure of the streak).
    pub failing_since: Option<Instant>,
    /// Whether this streak of failures has been logged at WARN.
    pub warned: bool,
}

/// How long a peer must fail every call before it is logged at WARN. Single
/// calls time out under load (openraft gives an AppendEntries one heartbeat
/// interval) and are retried at once; only a peer that stays silent is news.
pub const SILENT_WARN_AFTER: Duration = Duration::from_secs(2);

impl Contacts {
    /// Records one call's outcome: `None` when it was answered. A peer that fails every call for
    /// [`SILENT_WARN_AFTER`] is logged once at WARN, and once at INFO when it
    /// answers again; each failure between is DEBUG (openraft's own ERROR line
    /// for it is dropped by the binary's log filter).
    fn record(&self, target: NodeId, failure: Option<&str>) {
        let Ok(mut map) = self.0.lock() else {
            return;
        };
        let now = Instant::now();
        let answered = failure.is_none();
        let c = map.entry(target).or_insert(Contact {
            last_answer: None,
            last_call_failed: false,
            failing_since: None,
            warned: false,
        });
        if answered {
            if c.warned {
                let silent = c.failing_since.map(|t| now - t).unwrap_or_default();
                tracing::info!(
                    peer = target,
                    "peer {target} answers again after {silent:.1?}"
                );
            }
            c.last_answer = Some(now);
            c.failing_since = None;
            c.warned = false;
        } else {
            let since = *c.failing_since.get_or_insert(now);
            let why = failure.unwrap_or_default();
            if !c.warned && now - since >= SILENT_WARN_AFTER {
                c.warned = true;
                tracing::warn!(
                    peer = target,
                    "peer {target} has not answered for {:.1?}: {why}",
                    now - since
                );
            } else {
                tracing::debug!(peer = target, "no answer from peer {target}: {why}");
            }
        }
        c.last_call_failed = !answered;
    }

    /// What is known of `target`; `None` before the first call to it.
    pub fn get(&self, target: NodeId) -> Option<Contact> {
        self.0.lock().ok().and_then(|m| m.get(&target).copied())
    }
}

/// Whether a peer refused this one as removed from the cluster: its id is
/// retired there ([`crate::protocol::REMOVED_HEADER`]). Retired ids are never
/// reused, so one such answer is final; the peer process stops on it.
#[derive(Debug, Default)]
pub struct Removed {
    told: tokio_util::sync::CancellationToken,
    why: Mutex<Option<String>>,
}

impl Removed {
    fn mark(&self, why: String) {
        let mut slot = self.why.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_none() {
            *slot = Some(why);
        }
        self.told.cancel();
    }

    /// Resolves once a peer said so, with its words.
    pub async fn wait(&self) -> String {
        self.told.cancelled().await;
        self.why
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .unwrap_or_default()
    }
}

/// Makes one [`PeerClient`] per replication target.
#[derive(Debug, Clone)]
pub struct PeerNetwork {
    /// This peer's id, sent with every call.
    pub self_id: NodeId,
    /// Mutual TLS with this peer's server certificate.
    pub tls: std::sync::Arc<rustls::ClientConfig>,
    /// Shared with [`crate::RaftNode`], which reports it in `members()`.
    pub contacts: Arc<Contacts>,
    /// The channel to each target, by id and peer address (a member that moved
    /// gets a new one).
    pub channels: Arc<Mutex<Channels>>,
    /// Told when a target refuses this peer as removed.
    pub removed: Arc<Removed>,
}

/// The channel to each target, by id and peer address.
type Channels = BTreeMap<(NodeId, String), PeerRaftClient<Channel>>;

impl PeerNetwork {
    pub fn new(self_id: NodeId, tls: Arc<rustls::ClientConfig>, contacts: Arc<Contacts>) -> Self {
        PeerNetwork {
            self_id,
            tls,
            contacts,
            channels: Arc::default(),
            removed: Arc::default(),
        }
    }

    /// Reports refusals as removed to `removed`.
    pub fn on_removed(mut self, removed: Arc<Removed>) -> Self {
        self.removed = removed;
        self
    }

    fn channel(&self, target: NodeId, node: &Member) -> Result<PeerRaftClient<Channel>, String> {
        let key = (target, node.peer_addr.clone());
        let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(client) = channels.get(&key) {
            return Ok(client.clone());
        }
        // TLS is done by the connector, so tonic sees a plain `http` URI.
        let client = Endpoint::from_shared(format!("http://{}", node.peer_addr))
            .map(|e| {
                PeerRaftClient::new(
                    e.connect_timeout(CONNECT_TIMEOUT)
                        .http2_keep_alive_interval(Duration::from_secs(10))
                        .connect_with_connector_lazy(crate::tls::connector(
                            self.tls.clone(),
                            CONNECT_TIMEOUT,
                        )),
                )
                .max_decoding_message_size(64 << 20)
                .max_encoding_message_size(64 << 20)
            })
            .map_err(|e| format!("bad peer address {:?}: {e}", node.peer_addr))?;
        // Addresses a member no longer has are dropped with their channels.
        channels.retain(|(id, _), _| *id != target);
        channels.insert(key, client.clone());
        Ok(client)
    }
}

impl PeerNetwork {
    /// Sends `TimeoutNow` (peer protocol 2) to `target`, with `data` the encoded
    /// request; the encoded answer, or the gRPC status (`UNIMPLEMENTED` from a peer
    /// older than leadership transfer).
    pub async fn timeout_now(
        &self,
        target: NodeId,
        node: &Member,
        data: Vec<u8>,
        ttl: Duration,
    ) -> Result<Vec<u8>, tonic::Status> {
        let mut client = self
            .channel(target, node)
            .map_err(tonic::Status::invalid_argument)?;
        let payload = RaftPayload {
            from: self.self_id,
            data,
            chunk: Vec::new(),
            protocol: crate::protocol::TIMEOUT_NOW,
        };
        let reply = bounded(ttl, async move { client.timeout_now(payload).await }).await?;
        Ok(reply.into_inner().data)
    }
}

impl RaftNetworkFactory<TypeConfig> for PeerNetwork {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &Member) -> PeerClient {
        let client = self.channel(target, node);
        PeerClient {
            self_id: self.self_id,
            target,
            client,
            contacts: self.contacts.clone(),
            removed: self.removed.clone(),
        }
    }
}

/// A connection to one peer.
pub struct PeerClient {
    self_id: NodeId,
    target: NodeId,
    /// The channel, or why the peer's address could not even be parsed.
    client: Result<PeerRaftClient<Channel>, String>,
    contacts: Arc<Contacts>,
    removed: Arc<Removed>,
}

#[derive(Clone, Copy)]
enum Rpc {
    Append,
    Vote,
    Snapshot,
}

impl PeerClient {
    async fn call<Req, Resp, E>(
        &mut self,
        rpc: Rpc,
        req: &Req,
        chunk: Vec<u8>,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<NodeId, Member, RaftError<NodeId, E>>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let client = match &self.client {
            Ok(c) => c.clone(),
            Err(e) => return Err(unreachable(e)),
        };
        let data = codec::encode(req).map_err(|e| network(&e.to_string()))?;
        let payload = RaftPayload {
            from: self.self_id,
            data,
            chunk,
            protocol: crate::protocol::RAFT_RPC,
        };
        let reply = bounded(option.hard_ttl(), send(client, rpc, payload)).await;
        self.contacts
            .record(self.target, reply.as_ref().err().map(|s| s.message()));
        let reply = reply.map_err(|status| {
            if status.code() == tonic::Code::FailedPrecondition
                && status
                    .metadata()
                    .get(crate::protocol::REMOVED_HEADER)
                    .is_some()
            {
                self.removed.mark(status.message().to_string());
            }
            if status.code() == tonic::Code::Unavailable {
                unreachable(&format!(
                    "peer {} unreachable: {}",
                    self.target,
                    status.message()
                ))
            } else {
                network(&format!("peer {}: {status}", self.target))
            }
        })?;
        let result: Result<Resp, RaftError<NodeId, E>> =
            codec::decode(&reply.data).map_err(|e| network(&e.to_string()))?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

async fn send(
    mut client: PeerRaftClient<Channel>,
    rpc: Rpc,
    payload: RaftPayload,
) -> Result<RaftPayload, tonic::Status> {
    let reply = match rpc {
        Rpc::Append => client.append_entries(payload).await?,
        Rpc::Vote => client.vote(payload).await?,
        Rpc::Snapshot => client.install_snapshot(payload).await?,
    };
    Ok(reply.into_inner())
}

async fn bounded<T>(
    ttl: Duration,
    fut: impl Future<Output = Result<T, tonic::Status>>,
) -> Result<T, tonic::Status> {
    match tokio::time::timeout(ttl, fut).await {
        Ok(r) => r,
        Err(_) => Err(tonic::Status::deadline_exceeded(format!(
            "no answer within {ttl:?}"
        ))),
    }
}

fn unreachable<E: std::error::Error>(msg: &str) -> RPCError<NodeId, Member, E> {
    RPCError::Unreachable(Unreachable::new(&std::io::Error::other(msg.to_string())))
}

fn network<E: std::error::Error>(msg: &str) -> RPCError<NodeId, Member, E> {
    RPCError::Network(NetworkError::new(&std::io::Error::other(msg.to_string())))
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, Member, RaftError<NodeId>>> {
        self.call(Rpc::Append, &rpc, Vec::new(), &option).await
    }

    async fn install_snapshot(
        &mut self,
        mut rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, Member, RaftError<NodeId, InstallSnapshotError>>,
    > {
        let chunk = std::mem::take(&mut rpc.data);
        self.call(Rpc::Snapshot, &rpc, chunk, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, Member, RaftError<NodeId>>> {
        self.call(Rpc::Vote, &rpc, Vec::new(), &option).await
    }
}
