//! Control-plane membership and status, as the API reports them.

use serde::{Deserialize, Serialize};

/// Who a peer is: returned by `GET /v1/cluster/self` and sent to join a cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PeerIdentity {
    #[schema(minimum = 1)]
    pub id: u64,
    /// Address clients use for the REST API (`host:port`).
    #[schema(
        pattern = r#"^[\s\S]+:\+?0*(?:[0-9]{1,4}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])$"#
    )]
    pub api_addr: String,
    /// Address other peers use for Raft gRPC (`host:port`).
    #[schema(
        pattern = r#"^[\s\S]+:\+?0*(?:[0-9]{1,4}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])$"#
    )]
    pub peer_addr: String,
    /// QUIC address agents connect to (`host:port`).
    #[serde(default)]
    pub agent_addr: String,
}

/// Body of `POST /v1/cluster/members`.
pub type JoinRequest = PeerIdentity;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MemberRole {
    Voter,
    Learner,
}

/// One member as `GET /v1/cluster/members` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MemberInfo {
    pub id: u64,
    pub api_addr: String,
    pub peer_addr: String,
    /// Where agents reach this member's gateway (empty: not recorded).
    #[serde(default)]
    pub agent_addr: String,
    pub role: MemberRole,
    pub is_leader: bool,
    /// Last log index known to be replicated to this member (leader's view).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matched_index: Option<u64>,
    /// How many entries this member is behind the leader's last log index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag: Option<u64>,
    /// Milliseconds since the leader last got an answer from this member to a Raft
    /// call (heartbeats included); leader's view only, `None` elsewhere and for
    /// the leader itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_contact_ms: Option<u64>,
    /// Whether the leader's latest Raft call to this member was answered, and
    /// recently (within [`REACHABLE_WITHIN_MS`]); leader's view only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reachable: Option<bool>,
}

/// A member whose last answer to the leader is older than this is unreachable:
/// several heartbeat intervals, well past an election timeout.
pub const REACHABLE_WITHIN_MS: u64 = 5_000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MembersResponse {
    pub leader: Option<u64>,
    pub term: u64,
    pub last_log_index: u64,
    pub members: Vec<MemberInfo>,
}

/// `GET /v1/cluster/status`: the answering peer's own view.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ClusterStatus {
    pub id: u64,
    /// `leader`, `follower`, `candidate`, `learner` or `shutdown`.
    pub state: String,
    pub leader: Option<u64>,
    pub term: u64,
    pub last_log_index: u64,
    pub last_applied: u64,
    pub snapshot_index: u64,
    pub purged_index: u64,
    pub voters: Vec<u64>,
    pub learners: Vec<u64>,
    /// The answering peer's `orion` version (empty from peers older than this field).
    #[serde(default)]
    pub version: String,
}

/// `GET /v1/cluster/ca`: what an agent needs to find and verify the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AgentBootstrap {
    /// The cluster CA certificate (PEM) that signs every peer's agent-gateway certificate.
    pub ca_pem: String,
    /// The members' agent addresses.
    pub agent_addrs: Vec<String>,
}

/// Body of `POST /v1/cluster/transfer-leader`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TransferRequest {
    /// The voter to hand leadership to; absent: the most up-to-date reachable voter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1)]
    pub to: Option<u64>,
}

/// What `POST /v1/cluster/transfer-leader` did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TransferResponse {
    /// The member that led before.
    pub from: u64,
    /// The member asked to take over.
    pub to: u64,
    /// The member that leads now (the target: a transfer it did not win is an error).
    pub leader: u64,
    /// The new leader's term.
    pub term: u64,
    /// How long the transfer took, new writes held all along, in milliseconds.
    pub took_ms: u64,
}
