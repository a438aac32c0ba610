//! Leader-only operations, done here when this peer leads and forwarded otherwise.
//!
//! Any peer accepts any call. A write, a linearizable read's read-index, or a
//! membership change is a [`LeaderRequest`]. [`Cluster::on_leader`] runs it locally
//! when this peer is the leader, or sends it to the leader's
//! `POST /v1/internal/leader`, which only ever executes locally (one hop, no loops).
//! While no leader is known (an election), the call is held until one is, for at
//! most `leader-hold-ms`; only then does the client get `503`.
//!
//! Every write carries a request id (the client's `Idempotency-Key`, or one made up
//! here), and the state machine applies an id once. So when the leader dies after a
//! write was sent to it, the write is sent again, with the same id, to the next
//! leader: the answer is the write's one result, never "it may have been applied".
//! Only when no leader answers within the hold time is the outcome unknown; the
//! `503` then names the request id, which is safe to send again.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use orion_api::{ApiError, ErrorBody, MembersResponse, PeerIdentity};
use orion_raft::command::Applied;
use orion_raft::{Command, CommandResult, LeaderError, Member, Proposal, RaftNode, RequestId};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use crate::error::{HttpResult, JsonBody};

/// Work only the leader can do.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum LeaderRequest {
    Propose {
        /// Absent only from peers older than request ids.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        request_id: Option<RequestId>,
        command: Command,
    },
    ReadIndex,
    AddPeer {
        peer: PeerIdentity,
    },
    UpdateMember {
        peer: PeerIdentity,
    },
    RemovePeer {
        id: u64,
    },
    Members,
}

impl LeaderRequest {
    /// Whether sending it twice is harmless, so a lost answer can be retried
    /// (removing a member already removed succeeds).
    /// A write with a request id is: the state machine applies an id once.
    fn idempotent(&self) -> bool {
        match self {
            LeaderRequest::Propose { request_id, .. } => request_id.is_some(),
            LeaderRequest::ReadIndex
            | LeaderRequest::Members
            | LeaderRequest::AddPeer { .. }
            | LeaderRequest::UpdateMember { .. }
            | LeaderRequest::RemovePeer { .. } => true,
        }
    }

    /// The request id of a write.
    fn request_id(&self) -> Option<&RequestId> {
        match self {
            LeaderRequest::Propose { request_id, .. } => request_id.as_ref(),
            _ => None,
        }
    }

    /// How long the leader may take to answer.
    fn budget(&self, hold: Duration) -> Duration {
        match self {
            // Adding a peer waits until it has caught up, which may mean a large snapshot.
            LeaderRequest::AddPeer { .. } => Duration::from_secs(300),
            _ => hold.max(Duration::from_secs(10)),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeaderReply {
    Applied(CommandResult),
    ReadIndex(u64),
    Members(MembersResponse),
    Done,
}

/// Status the internal endpoint uses for "I am not the leader".
const NOT_LEADER: StatusCode = StatusCode::MISDIRECTED_REQUEST;

/// Everything a handler needs: the Raft node, how to reach the leader, and when to stop.
pub struct Cluster {
    pub node: RaftNode,
    /// This peer's identity as the cluster sees it.
    pub me: PeerIdentity,
    /// Used to forward to the leader.
    pub http: reqwest::Client,
    /// How long a call waits for a leader.
    pub hold: Duration,
    /// Cancelled when the peer shuts down; ends long-running streams.
    pub shutdown: CancellationToken,
    /// The replica controller's latest unplaced replicas and why (leader only).
    pub unplaced: std::sync::Mutex<Vec<orion_api::UnplacedReplicas>>,
    /// How long an agent may stay silent before its node is marked down.
    pub node_ttl: Duration,
    /// Connected agents' heartbeats and reports (leader only, memory only).
    pub agents: std::sync::Mutex<crate::gateway::AgentTable>,
    /// This peer's certificate, the CA, and what renewal needs.
    pub creds: Arc<crate::security::PeerCreds>,
    /// Where this peer keeps its data.
    pub data_dir: std::path::PathBuf,
    /// Bounds the log and exec sessions relayed at once.
    pub sessions: Arc<tokio::sync::Semaphore>,
    /// `debug-stale-reads`: variable reads skip the read-index barrier.
    pub debug_stale_reads: bool,
    /// The token signing key, once the replicated state has it.
    pub token_key: std::sync::OnceLock<Arc<str>>,
}

pub type ClusterRef = Arc<Cluster>;

enum Attempt {
    Done(Result<LeaderReply, ApiError>),
    /// Nothing reached a leader; try again.
    Retry,
    /// The leader stopped answering after the request reached it (it may have been
    /// applied); only an idempotent request is retried.
    Lost,
}

impl Cluster {
    /// Runs `req` on the leader, holding through elections for up to `self.hold`.
    /// A write whose leader was lost after it was sent is sent again (with the same
    /// request id) for up to one more hold time from that loss.
    pub async fn on_leader(&self, req: LeaderRequest) -> Result<LeaderReply, ApiError> {
        let mut deadline = Instant::now() + self.hold;
        let mut metrics = self.node.raft.metrics();
        let mut last_leader = None;
        let mut lost_once = false;
        loop {
            let leader = self.node.leader();
            last_leader = leader.as_ref().map(|(id, _)| *id).or(last_leader);
            let attempt = match leader {
                Some((id, _)) if id == self.node.id => self.local(req.clone()).await,
                Some((id, member)) => self.forward(id, &member, &req).await,
                None => Attempt::Retry,
            };
            match attempt {
                Attempt::Done(result) => return result,
                Attempt::Retry => {}
                Attempt::Lost => {
                    if let Some(id) = req.request_id() {
                        if !lost_once {
                            // Once per write: the leader's death is logged by Raft.
                            info!(request_id = %id, leader = ?last_leader,
                                "the leader was lost mid-write; sending it again with the same request id");
                            deadline = deadline.max(Instant::now() + self.hold);
                        }
                    }
                    lost_once = true;
                }
            }
            let now = Instant::now();
            if now >= deadline {
                let mut e = ApiError::unavailable(match (req.request_id(), lost_once) {
                    (Some(id), true) => format!(
                        "no leader answered within {} ms after the leader was lost mid-write, \
                         so whether the write was applied is unknown; sending it again with \
                         Idempotency-Key {} applies it at most once",
                        self.hold.as_millis(),
                        crate::idempotency::client_key(id)
                    ),
                    (Some(_), false) => format!(
                        "no leader could be reached within {} ms; the cluster may have lost its \
                         quorum (the write was not applied)",
                        self.hold.as_millis()
                    ),
                    (None, _) => format!(
                        "no leader could be reached within {} ms; the cluster may have lost its \
                         quorum",
                        self.hold.as_millis()
                    ),
                });
                e.leader_hint = last_leader;
                return Err(e);
            }
            // Wait for news about the leader, but retry at least every 100 ms
            // and never spin faster than every 20 ms.
            let wait = (deadline - now).min(Duration::from_millis(100));
            let _ = tokio::time::timeout(wait, metrics.changed()).await;
            tokio::time::sleep_until((Instant::now() + Duration::from_millis(20)).min(deadline))
                .await;
        }
    }

    /// Executes `req` on this peer, which must be the leader.
    pub async fn execute_local(&self, req: LeaderRequest) -> Result<LeaderReply, LeaderError> {
        match req {
            LeaderRequest::Propose {
                request_id,
                command,
            } => self
                .node
                .propose(Proposal {
                    request_id,
                    command,
                })
                .await
                .map(LeaderReply::Applied),
            LeaderRequest::ReadIndex => self.node.read_index().await.map(LeaderReply::ReadIndex),
            LeaderRequest::AddPeer { peer } => {
                self.node.add_peer(&peer).await?;
                Ok(LeaderReply::Members(self.node.members()))
            }
            // A member restarted with other addresses (`crate::advertise`).
            LeaderRequest::UpdateMember { peer } => {
                self.node.update_member(&peer).await?;
                Ok(LeaderReply::Members(self.node.members()))
            }
            LeaderRequest::RemovePeer { id } => {
                self.node.remove_peer(id).await?;
                Ok(LeaderReply::Members(self.node.members()))
            }
            LeaderRequest::Members => {
                // Confirm leadership so the view is not from a deposed leader.
                self.node.read_index().await?;
                Ok(LeaderReply::Members(self.node.members()))
            }
        }
    }

    async fn local(&self, req: LeaderRequest) -> Attempt {
        let idempotent = req.idempotent();
        match self.execute_local(req).await {
            Ok(reply) => Attempt::Done(Ok(reply)),
            // Lost leadership while the entry was in flight: it may commit under the
            // next leader, and the retry with the same id then returns its result.
            Err(LeaderError::NotLeader { .. }) if idempotent => Attempt::Lost,
            Err(LeaderError::NotLeader { .. } | LeaderError::Busy) => Attempt::Retry,
            Err(LeaderError::Rejected(e)) => {
                Attempt::Done(Err(crate::error::membership_refusal(e)))
            }
            Err(LeaderError::Fatal(m)) => Attempt::Done(Err(ApiError::unavailable(format!(
                "this peer is shutting down: {m}"
            )))),
        }
    }

    async fn forward(&self, leader: u64, member: &Member, req: &LeaderRequest) -> Attempt {
        let url = format!("https://{}/v1/internal/leader", member.api_addr);
        let sent = self
            .http
            .post(&url)
            .timeout(req.budget(self.hold))
            .json(req)
            .send()
            .await;
        let resp = match sent {
            Ok(resp) => resp,
            Err(e) if e.is_connect() => {
                debug!(leader, cause = %e, "leader not reachable; will retry");
                return Attempt::Retry;
            }
            Err(e) if req.idempotent() => {
                debug!(leader, cause = %e, "leader stopped answering; will retry");
                return Attempt::Lost;
            }
            Err(e) => {
                return Attempt::Done(Err(ApiError::unavailable(format!(
                    "the leader (member {leader}) stopped answering after the request was sent \
                     ({e}); the write carried no request id (it came from an older peer), so \
                     whether it was applied is unknown"
                ))))
            }
        };
        let status = resp.status();
        if status == NOT_LEADER {
            return Attempt::Retry;
        }
        // The leader is shutting down: a write may be in its log already.
        if status == StatusCode::SERVICE_UNAVAILABLE && req.idempotent() {
            return Attempt::Lost;
        }
        if status.is_success() {
            return match resp.json::<LeaderReply>().await {
                Ok(reply) => Attempt::Done(Ok(reply)),
                Err(e) => Attempt::Done(Err(ApiError::internal(format!(
                    "unreadable answer from the leader: {e}"
                )))),
            };
        }
        match resp.json::<ErrorBody>().await {
            Ok(body) => Attempt::Done(Err(body.error)),
            Err(e) => Attempt::Done(Err(ApiError::internal(format!(
                "leader answered {status} with an unreadable body: {e}"
            )))),
        }
    }

    /// The cluster CA key and token key from the replicated state.
    pub fn secrets(&self) -> Result<orion_raft::read::ClusterSecrets, ApiError> {
        self.node
            .reader
            .with_view(orion_raft::read::cluster_ca)
            .map_err(|e| ApiError::internal(e.to_string()))?
            .ok_or_else(|| {
                ApiError::unavailable(
                    "the cluster is still being bootstrapped (no CA recorded yet)",
                )
            })
    }

    /// The key tokens are signed with. It never changes once recorded, so it is
    /// read from the state machine once, not on every authenticated request.
    pub fn token_key(&self) -> Result<Arc<str>, ApiError> {
        if let Some(k) = self.token_key.get() {
            return Ok(k.clone());
        }
        let key: Arc<str> = self.secrets()?.token_key.into();
        Ok(self.token_key.get_or_init(|| key).clone())
    }

    /// Waits until this peer has applied everything the leader had committed when
    /// asked, so a read from the local state machine is linearizable.
    pub async fn linearizable_barrier(&self) -> Result<(), ApiError> {
        let started = Instant::now();
        let index = match self.on_leader(LeaderRequest::ReadIndex).await? {
            LeaderReply::ReadIndex(i) => i,
            other => return Err(unexpected(&other)),
        };
        let left = self
            .hold
            .saturating_sub(started.elapsed())
            .max(Duration::from_millis(100));
        if self.node.wait_applied(index, left).await {
            Ok(())
        } else {
            Err(ApiError::unavailable(format!(
                "this peer did not catch up to revision {index} within {} ms",
                left.as_millis()
            )))
        }
    }

    /// Proposes a command through the leader under a new request id; returns the
    /// revision that applied it and what it did, or why apply refused it.
    pub async fn apply(&self, command: Command) -> Result<(u64, Applied), ApiError> {
        self.apply_as(RequestId::random(), command).await
    }

    /// As [`Cluster::apply`], under the client's request id: a second call with the
    /// same id returns the first one's revision and result and changes nothing.
    pub async fn apply_as(
        &self,
        request_id: RequestId,
        command: Command,
    ) -> Result<(u64, Applied), ApiError> {
        let req = LeaderRequest::Propose {
            request_id: Some(request_id),
            command,
        };
        match self.on_leader(req).await? {
            LeaderReply::Applied(r) => Ok((r.revision, r.outcome?)),
            other => Err(unexpected(&other)),
        }
    }
}

pub fn unexpected(reply: &LeaderReply) -> ApiError {
    ApiError::internal(format!("unexpected answer from the leader: {reply:?}"))
}

/// `POST /v1/internal/leader`: runs a forwarded request if, and only if, this peer leads.
pub async fn internal_leader(
    State(cluster): State<ClusterRef>,
    JsonBody(req): JsonBody<LeaderRequest>,
) -> HttpResult<Response> {
    Ok(match cluster.execute_local(req).await {
        Ok(reply) => Json(reply).into_response(),
        Err(LeaderError::NotLeader { leader }) => (
            NOT_LEADER,
            Json(ErrorBody {
                error: ApiError {
                    leader_hint: leader.map(|(id, _)| id),
                    ..ApiError::unavailable("not the leader")
                },
            }),
        )
            .into_response(),
        // The forwarding peer retries a busy leader within its hold time, as it does
        // a peer that is not the leader.
        Err(LeaderError::Busy) => (
            NOT_LEADER,
            Json(ErrorBody {
                error: ApiError::unavailable("another membership change is in progress"),
            }),
        )
            .into_response(),
        Err(LeaderError::Rejected(e)) => return Err(e.into()),
        Err(LeaderError::Fatal(m)) => return Err(ApiError::unavailable(m.to_string()).into()),
    })
}
