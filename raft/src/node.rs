//! One running Raft peer: storage opened, Raft started, peer service ready to serve.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{CheckIsLeaderError, ClientWriteError, RaftError};
use openraft::{ChangeMembers, Config, ServerState, SnapshotPolicy};
use orion_api::cluster::REACHABLE_WITHIN_MS;
use orion_api::{
    ClusterStatus, MemberInfo, MemberRole, MembersResponse, PeerIdentity, TransferResponse,
};
use orion_store::StateReader;
use serde::{Deserialize, Serialize};
use tracing::{debug, info, warn};

use crate::apply::OrionApplier;
use crate::command::{Command, CommandResult, Proposal};
use crate::metrics::NodeMetrics;
use crate::network::{Contacts, PeerNetwork, Removed};
use crate::proto::peer_raft_server::PeerRaftServer;
use crate::read;
use crate::read_rounds::SharedRounds;
use crate::service::PeerService;
use crate::tls::PeerTls;
use crate::transfer::{Transfer, WriteGate};
use crate::types::{Member, NodeId, Raft, RaftMetrics, TypeConfig};
use crate::write_batch::{batchable, WriteBatcher, WriteFailure};
use crate::{FatalError, InvalidSettings, LeaderError, MembershipRefusal, Result};

/// Raft timing and log-compaction settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct RaftSettings {
    /// Leader heartbeat period.
    pub heartbeat_ms: u64,
    /// A follower that hears nothing for a random time in this range starts an election.
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
    /// Build a snapshot after this many entries since the last one.
    pub snapshot_every: u64,
    /// Entries kept in the log behind the last snapshot, for followers that lag a little.
    pub logs_kept_after_snapshot: u64,
    /// Snapshot transfer chunk size.
    pub snapshot_chunk_bytes: u64,
    /// Most log entries sent in one AppendEntries call. openraft 0.9 aborts an
    /// AppendEntries call after one heartbeat interval, so a call must fit in it
    /// even when entries are large (up to `max-body-bytes` each).
    pub max_entries_per_rpc: u64,
    /// Let concurrent variable writes share one log entry (one WAL sync, one
    /// replication round; see `orion_raft::write_batch`). Turn off while a cluster is
    /// upgraded from a version that cannot read batch entries.
    pub batch_writes: bool,
}

impl Default for RaftSettings {
    fn default() -> Self {
        RaftSettings {
            heartbeat_ms: 100,
            election_timeout_min_ms: 500,
            election_timeout_max_ms: 1000,
            snapshot_every: 10_000,
            logs_kept_after_snapshot: 1_000,
            snapshot_chunk_bytes: 1 << 20,
            max_entries_per_rpc: 16,
            batch_writes: true,
        }
    }
}

impl RaftSettings {
    pub fn validate(&self) -> std::result::Result<(), InvalidSettings> {
        self.check().map_err(InvalidSettings)
    }

    fn check(&self) -> std::result::Result<(), String> {
        if self.heartbeat_ms == 0 {
            return Err("raft.heartbeat-ms must be above 0".into());
        }
        if self.election_timeout_min_ms <= self.heartbeat_ms * 2 {
            return Err(format!(
                "raft.election-timeout-min-ms ({}) must be more than twice raft.heartbeat-ms ({})",
                self.election_timeout_min_ms, self.heartbeat_ms
            ));
        }
        if self.election_timeout_max_ms <= self.election_timeout_min_ms {
            return Err(
                "raft.election-timeout-max-ms must be above raft.election-timeout-min-ms".into(),
            );
        }
        if self.snapshot_every == 0
            || self.snapshot_chunk_bytes == 0
            || self.max_entries_per_rpc == 0
        {
            return Err(
                "raft.snapshot-every, raft.snapshot-chunk-bytes and raft.max-entries-per-rpc must be above 0"
                    .into(),
            );
        }
        Ok(())
    }

    fn openraft_config(&self) -> Result<Config> {
        let config = Config {
            cluster_name: "orion".into(),
            heartbeat_interval: self.heartbeat_ms,
            election_timeout_min: self.election_timeout_min_ms,
            election_timeout_max: self.election_timeout_max_ms,
            install_snapshot_timeout: 10_000,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(self.snapshot_every),
            max_in_snapshot_log_to_keep: self.logs_kept_after_snapshot,
            snapshot_max_chunk_size: self.snapshot_chunk_bytes,
            max_payload_entries: self.max_entries_per_rpc,
            ..Default::default()
        };
        Ok(config.validate()?)
    }
}

/// One Raft peer and handles to its state.
#[derive(Clone)]
pub struct RaftNode {
    pub id: NodeId,
    pub raft: Raft,
    /// Read-only access to the state machine for API reads.
    pub reader: StateReader,
    tls: PeerTls,
    /// When each peer last answered this one's Raft calls (see [`Contacts`]).
    contacts: Arc<Contacts>,
    /// Set once a peer refused this one as removed from the cluster.
    removed: Arc<Removed>,
    /// The peer transport's client side (shares its channels with Raft's), for
    /// `TimeoutNow`.
    network: PeerNetwork,
    /// Closed while a leadership transfer runs: proposals wait at it.
    gate: WriteGate,
    /// openraft's leader lease (`election-timeout-max-ms`).
    lease: Duration,
    /// Leadership confirmations shared by concurrent linearizable reads.
    read_rounds: SharedRounds<ReadRound>,
    /// Concurrent variable writes grouped into shared entries (`None`: each write
    /// is its own entry, `raft.batch-writes = false`).
    writes: Option<WriteBatcher>,
    /// Term, indexes, lag, proposal latency (see [`crate::metrics`]).
    exported: NodeMetrics,
}

/// What one leadership confirmation found, shared by every read of its round.
#[derive(Debug, Clone)]
enum ReadRound {
    Index(u64),
    NotLeader(Option<(NodeId, Member)>),
    Fatal(openraft::error::Fatal<NodeId>),
}

/// One leadership confirmation: openraft sends a heartbeat to every voter and
/// answers once a quorum has accepted it, with `max(committed, this leader's first
/// entry)` taken when the request reached its core.
async fn confirm_leadership(raft: Raft) -> ReadRound {
    match raft.get_read_log_id().await {
        Ok((read, _)) => ReadRound::Index(read.map_or(0, |l| l.index)),
        Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f))) => {
            ReadRound::NotLeader(f.leader_id.zip(f.leader_node))
        }
        Err(RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(q))) => {
            // The caller gets 503; openraft has logged each unreachable
            // peer already, so this stays out of the way (it would print the
            // whole membership once per round during a partition).
            debug!(cause = %q, "read index: quorum not reached");
            ReadRound::NotLeader(None)
        }
        Err(RaftError::Fatal(f)) => ReadRound::Fatal(f),
    }
}

impl RaftNode {
    /// Opens (or creates) the store under `data_dir` and starts Raft. Does not
    /// initialize a cluster: see [`RaftNode::bootstrap`].
    pub async fn start(
        id: NodeId,
        data_dir: &Path,
        settings: &RaftSettings,
        tls: PeerTls,
    ) -> Result<Self> {
        let config = Arc::new(settings.openraft_config()?);
        let store = orion_store::open::<TypeConfig>(data_dir, Arc::new(OrionApplier))?;
        let exported = NodeMetrics::new(store.log.metrics())?;
        let contacts = Arc::new(Contacts::default());
        let removed = Arc::new(Removed::default());
        let network =
            PeerNetwork::new(id, tls.client.clone(), contacts.clone()).on_removed(removed.clone());
        let raft = Raft::new(id, config, network.clone(), store.log, store.sm).await?;
        Ok(RaftNode {
            id,
            reader: store.reader,
            tls,
            contacts,
            removed,
            network,
            gate: WriteGate::default(),
            lease: Duration::from_millis(settings.election_timeout_max_ms),
            read_rounds: SharedRounds::new(),
            writes: settings
                .batch_writes
                .then(|| WriteBatcher::new(raft.clone())),
            raft,
            exported,
        })
    }

    /// The gRPC service other peers call, for the server that hosts it (the
    /// apiserver). It trusts the [`crate::tls::PeerCaller`] that server puts in each
    /// request's extensions to say which peer is calling.
    pub fn peer_service(&self) -> PeerRaftServer<PeerService> {
        PeerRaftServer::new(PeerService {
            raft: self.raft.clone(),
            self_id: self.id,
            reader: self.reader.clone(),
        })
        .max_decoding_message_size(64 << 20)
        .max_encoding_message_size(64 << 20)
    }

    /// The TLS config the peer service must be served with: it requires a client
    /// certificate with role `server`.
    pub fn peer_server_tls(&self) -> Arc<rustls::ServerConfig> {
        self.tls.server.clone()
    }

    /// Makes this peer the single voter of a new cluster, unless it already belongs to one.
    pub async fn bootstrap(&self, me: Member) -> Result<bool> {
        if self.raft.is_initialized().await? {
            return Ok(false);
        }
        let members = BTreeMap::from([(self.id, me)]);
        self.raft.initialize(members).await?;
        info!(id = self.id, "bootstrapped a new cluster");
        Ok(true)
    }

    /// Resolves once another peer refused this one because its id is retired
    /// there (it was removed, or superseded by a forced new cluster), with that
    /// peer's words. A peer in that state can never take part again.
    pub async fn removed(&self) -> String {
        self.removed.wait().await
    }

    /// Why this peer must not run, from its own state: its id is retired and it
    /// is no longer in its own membership (it applied its own removal). `None`
    /// when it may (a peer retired but still a member is being removed: it
    /// runs until the change reaches it, or its peers refuse it).
    pub fn retired_here(&self) -> std::result::Result<Option<String>, read::ReadError> {
        let member = self
            .metrics()
            .membership_config
            .membership()
            .get_node(&self.id)
            .is_some();
        if member || !self.reader.with_view(|v| read::is_retired(v, self.id))? {
            return Ok(None);
        }
        Ok(Some(format!(
            "peer {} was removed from the cluster: its own state records its id as retired",
            self.id
        )))
    }

    pub async fn is_initialized(&self) -> Result<bool> {
        Ok(self.raft.is_initialized().await?)
    }

    pub fn metrics(&self) -> RaftMetrics {
        self.raft.metrics().borrow().clone()
    }

    /// This peer's metrics in Prometheus form, to register and serve.
    pub fn exported_metrics(&self) -> &NodeMetrics {
        &self.exported
    }

    /// Keeps [`RaftNode::exported_metrics`] current until `shutdown` or until Raft
    /// stops: the one task that follows openraft's metrics for them.
    pub fn follow_metrics(
        &self,
        shutdown: tokio_util::sync::CancellationToken,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        self.exported.clone().follow(self.raft.metrics(), shutdown)
    }

    /// Whether this peer is the leader right now, as far as it knows.
    pub fn is_leader(&self) -> bool {
        self.raft.metrics().borrow().state == ServerState::Leader
    }

    /// The leader this peer knows of, with its addresses.
    pub fn leader(&self) -> Option<(NodeId, Member)> {
        let m = self.raft.metrics();
        let m = m.borrow();
        let id = m.current_leader?;
        let member = m.membership_config.membership().get_node(&id)?.clone();
        Some((id, member))
    }

    /// Proposes a command, with or without a request id (leader only), and returns
    /// what applying it did — for a request id already applied, what it did then.
    /// While a leadership transfer runs, it waits (see [`crate::transfer`]).
    pub async fn propose(
        &self,
        proposal: impl Into<Proposal>,
    ) -> std::result::Result<CommandResult, LeaderError> {
        let _open = self.gate.enter().await;
        let timer = self.exported.proposal_seconds.start_timer();
        let result = self.propose_inside(proposal.into()).await;
        // Only proposals this peer led count: a refusal says nothing of latency.
        match &result {
            Ok(_) => timer.observe_duration(),
            Err(_) => {
                timer.stop_and_discard();
            }
        }
        result
    }

    /// [`RaftNode::propose`] for a caller already inside the write gate.
    async fn propose_inside(
        &self,
        proposal: Proposal,
    ) -> std::result::Result<CommandResult, LeaderError> {
        if let Some(writes) = self.writes.as_ref().filter(|_| batchable(&proposal)) {
            return writes.write(proposal).await.map_err(|e| match e {
                WriteFailure::NotLeader(leader) => LeaderError::NotLeader { leader },
                WriteFailure::Fatal(f) => FatalError::from(f).into(),
                WriteFailure::Abandoned => FatalError::from(openraft::error::Fatal::Stopped).into(),
            });
        }
        match self.raft.client_write(proposal).await {
            Ok(resp) => Ok(resp.data),
            Err(e) => Err(write_error(e)),
        }
    }

    /// Confirms leadership with a quorum and returns the index a linearizable read must
    /// wait for (leader only). Concurrent calls share one confirmation, but never one
    /// that started before they were made (see [`crate::read_rounds`]).
    pub async fn read_index(&self) -> std::result::Result<u64, LeaderError> {
        let raft = self.raft.clone();
        let round = self
            .read_rounds
            .join(move || confirm_leadership(raft.clone()))
            .await
            .map_err(|_| LeaderError::from(FatalError::from(openraft::error::Fatal::Stopped)))?;
        match round {
            ReadRound::Index(i) => Ok(i),
            ReadRound::NotLeader(leader) => Err(LeaderError::NotLeader { leader }),
            ReadRound::Fatal(f) => Err(FatalError::from(f).into()),
        }
    }

    /// How many leadership confirmations linearizable reads have needed so far.
    pub fn read_rounds(&self) -> u64 {
        self.read_rounds.rounds()
    }

    /// Waits until this peer has applied `index`, for at most `timeout`.
    pub async fn wait_applied(&self, index: u64, timeout: Duration) -> bool {
        self.raft
            .wait(Some(timeout))
            .applied_index_at_least(Some(index), "read index")
            .await
            .is_ok()
    }

    /// Adds a peer: as a learner first, waiting until it has caught up with the log,
    /// then as a voter (leader only). A peer already in the membership with the same
    /// addresses is accepted again, so a joining peer may safely retry.
    pub async fn add_peer(&self, peer: &PeerIdentity) -> std::result::Result<(), LeaderError> {
        let _open = self.gate.enter().await;
        let member = Member {
            api_addr: peer.api_addr.clone(),
            peer_addr: peer.peer_addr.clone(),
            agent_addr: peer.agent_addr.clone(),
        };
        let metrics = self.metrics();
        let membership = metrics.membership_config.membership().clone();
        if let Some(existing) = membership.get_node(&peer.id) {
            if *existing != member {
                return Err(MembershipRefusal::IdInUse {
                    id: peer.id,
                    by: existing.clone(),
                }
                .into());
            }
            if membership.voter_ids().any(|v| v == peer.id) {
                return Ok(());
            }
        } else {
            if self.is_retired(peer.id)? {
                return Err(MembershipRefusal::IdRetired { id: peer.id }.into());
            }
            if let Some((_, other)) = membership
                .nodes()
                .find(|(_, m)| m.api_addr == member.api_addr || m.peer_addr == member.peer_addr)
            {
                return Err(MembershipRefusal::AddressTaken {
                    other: other.clone(),
                }
                .into());
            }
            info!(id = peer.id, %member, "adding learner");
            self.raft
                .add_learner(peer.id, member, true)
                .await
                .map_err(write_error)?;
        }
        info!(id = peer.id, "promoting learner to voter");
        self.raft
            .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([peer.id])), false)
            .await
            .map_err(write_error)?;
        Ok(())
    }

    /// Records new addresses for a member that restarted with them (leader only):
    /// its role is unchanged. Refused for an unknown id, or addresses another member
    /// uses. Recording the addresses already there is a no-op, so callers may retry.
    pub async fn update_member(&self, peer: &PeerIdentity) -> std::result::Result<(), LeaderError> {
        let _open = self.gate.enter().await;
        let member = Member {
            api_addr: peer.api_addr.clone(),
            peer_addr: peer.peer_addr.clone(),
            agent_addr: peer.agent_addr.clone(),
        };
        let metrics = self.metrics();
        let membership = metrics.membership_config.membership();
        match membership.get_node(&peer.id) {
            None => return Err(MembershipRefusal::UnknownMember { id: peer.id }.into()),
            Some(existing) if *existing == member => return Ok(()),
            Some(_) => {}
        }
        if let Some((other, m)) = membership.nodes().find(|(id, m)| {
            **id != peer.id
                && (m.api_addr == member.api_addr
                    || m.peer_addr == member.peer_addr
                    || (!member.agent_addr.is_empty() && m.agent_addr == member.agent_addr))
        }) {
            return Err(MembershipRefusal::AddressOfOther {
                other: *other,
                id: peer.id,
                member: m.clone(),
            }
            .into());
        }
        info!(id = peer.id, %member, "recording a member's new addresses");
        self.raft
            .change_membership(
                ChangeMembers::SetNodes(BTreeMap::from([(peer.id, member)])),
                false,
            )
            .await
            .map_err(write_error)?;
        Ok(())
    }

    /// Removes a peer from the membership and retires its id (leader only).
    pub async fn remove_peer(&self, id: NodeId) -> std::result::Result<(), LeaderError> {
        let _open = self.gate.enter().await;
        let metrics = self.metrics();
        let membership = metrics.membership_config.membership();
        if membership.get_node(&id).is_none() {
            // Already removed: a retry, e.g. after the old leader removed itself.
            if self.is_retired(id)? {
                return Ok(());
            }
            return Err(MembershipRefusal::UnknownMember { id }.into());
        }
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let change = if voters.contains(&id) {
            if voters.len() == 1 {
                return Err(MembershipRefusal::LastVoter { id }.into());
            }
            ChangeMembers::RemoveVoters(BTreeSet::from([id]))
        } else {
            ChangeMembers::RemoveNodes(BTreeSet::from([id]))
        };
        info!(id, "removing member");
        // Retire the id first: a leader that removes itself is no longer leader
        // once the change commits and could not record it afterwards (found by
        // the fault-injection runs: the call hung until the client gave up). A
        // retired id that is still a member just waits for the removal to be
        // retried; it could never join again anyway.
        self.propose_inside(Command::RetireMember { id }.into())
            .await?;
        self.raft
            .change_membership(change, false)
            .await
            .map_err(write_error)?;
        Ok(())
    }

    /// Whether `id` belonged to a removed peer (ids are never reused).
    fn is_retired(&self, id: NodeId) -> std::result::Result<bool, LeaderError> {
        self.reader
            .with_view(|v| read::is_retired(v, id))
            .map_err(|e| FatalError::from(e).into())
    }

    /// The members as this peer sees them; lag figures only on the leader.
    pub fn members(&self) -> MembersResponse {
        let m = self.metrics();
        let membership = m.membership_config.membership();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let last = m.last_log_index.unwrap_or(0);
        let leading = m.state == ServerState::Leader;
        let members = membership
            .nodes()
            .map(|(id, node)| {
                // Only the leader calls every member; elsewhere health is unknown.
                let health = (leading && *id != self.id).then(|| {
                    let contact = self.contacts.get(*id);
                    let since = contact
                        .and_then(|c| c.last_answer)
                        .map(|t| u64::try_from(t.elapsed().as_millis()).unwrap_or(u64::MAX));
                    let reachable = contact.is_some_and(|c| !c.last_call_failed)
                        && since.is_some_and(|ms| ms <= REACHABLE_WITHIN_MS);
                    (since, reachable)
                });
                let matched = m
                    .replication
                    .as_ref()
                    .and_then(|r| r.get(id))
                    .map(|l| l.map_or(0, |l| l.index));
                let matched = if Some(*id) == m.current_leader && m.replication.is_some() {
                    Some(last)
                } else {
                    matched
                };
                MemberInfo {
                    id: *id,
                    api_addr: node.api_addr.clone(),
                    peer_addr: node.peer_addr.clone(),
                    agent_addr: node.agent_addr.clone(),
                    role: if voters.contains(id) {
                        MemberRole::Voter
                    } else {
                        MemberRole::Learner
                    },
                    is_leader: m.current_leader == Some(*id),
                    matched_index: matched,
                    lag: matched.map(|i| last.saturating_sub(i)),
                    last_contact_ms: health.and_then(|h| h.0),
                    reachable: health.map(|h| h.1),
                }
            })
            .collect();
        MembersResponse {
            leader: m.current_leader,
            term: m.current_term,
            last_log_index: last,
            members,
        }
    }

    /// This peer's own view of the cluster.
    pub fn status(&self) -> ClusterStatus {
        let m = self.metrics();
        let membership = m.membership_config.membership();
        ClusterStatus {
            id: self.id,
            state: match m.state {
                ServerState::Leader => "leader",
                ServerState::Follower => "follower",
                ServerState::Candidate => "candidate",
                ServerState::Learner => "learner",
                ServerState::Shutdown => "shutdown",
            }
            .into(),
            leader: m.current_leader,
            term: m.current_term,
            last_log_index: m.last_log_index.unwrap_or(0),
            last_applied: m.last_applied.map_or(0, |l| l.index),
            snapshot_index: m.snapshot.map_or(0, |l| l.index),
            purged_index: m.purged.map_or(0, |l| l.index),
            voters: membership.voter_ids().collect(),
            learners: membership.learner_ids().collect(),
            version: env!("CARGO_PKG_VERSION").into(),
        }
    }

    /// Hands leadership to voter `to`, or to the most up-to-date reachable voter
    /// (leader only): holds new proposals, waits until the target has the whole
    /// log, asks it to elect itself, waits until it leads (see [`crate::transfer`]).
    pub async fn transfer_leader(
        &self,
        to: Option<NodeId>,
    ) -> std::result::Result<TransferResponse, LeaderError> {
        Transfer {
            raft: &self.raft,
            network: &self.network,
            contacts: &self.contacts,
            gate: &self.gate,
            self_id: self.id,
            lease: self.lease,
        }
        .run(to)
        .await
    }

    /// Whether another voter could take over leadership now (this peer leads and
    /// some other voter answered it recently): what a shutdown asks before it
    /// transfers.
    pub fn has_successor(&self) -> bool {
        let m = self.metrics();
        m.state == ServerState::Leader
            && m.membership_config
                .membership()
                .voter_ids()
                .any(|v| v != self.id && self.contacts.get(v).is_some_and(|c| !c.last_call_failed))
    }

    /// Stops Raft. Storage closes when the last handle is dropped.
    pub async fn shutdown(&self) {
        if let Err(e) = self.raft.shutdown().await {
            warn!(cause = %e, "raft did not shut down cleanly");
        }
    }
}

fn write_error(e: RaftError<NodeId, ClientWriteError<NodeId, Member>>) -> LeaderError {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => LeaderError::NotLeader {
            leader: f.leader_id.zip(f.leader_node),
        },
        RaftError::APIError(ClientWriteError::ChangeMembershipError(
            openraft::error::ChangeMembershipError::InProgress(_),
        )) => LeaderError::Busy,
        RaftError::APIError(ClientWriteError::ChangeMembershipError(c)) => {
            MembershipRefusal::Refused(Box::new(c)).into()
        }
        RaftError::Fatal(f) => FatalError::from(f).into(),
    }
}
