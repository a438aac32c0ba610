//! The one way to the leader: [`Forwarder`], which runs leader-only work here when
//! this peer leads and sends it to the leader otherwise, holding through elections.
//!
//! Any peer accepts any call. A write, a linearizable read's read-index, or a
//! membership change is a [`LeaderRequest`]. [`Forwarder::on_leader`] runs it
//! locally when this peer is the leader, or sends it to the leader's
//! `POST /v1/internal/leader` (`api/internal.rs`), which only ever executes
//! locally (one hop, no loops). While no leader is known (an election), the call is
//! held until one is, for at most `leader-hold-ms`; only then does the client get `503`.
//!
//! Calls whose answer only the leader has (logs, exec, and the agents' reports in
//! `GET /v1/nodes` and `GET /v1/replicas`) are relayed whole by
//! [`Forwarder::relay`], with the caller's credentials, under the same hold.
//!
//! Every write carries a request id (the client's `Idempotency-Key`, or one made up
//! here), and the state machine applies an id once. So when the leader dies after a
//! write was sent to it, the write is sent again, with the same id, to the next
//! leader: the answer is the write's one result, never "it may have been applied".
//! Only when no leader answers within the hold time is the outcome unknown; the
//! `503` then names the request id, which is safe to send again.
//!
//! Linearizable reads share read indexes: [`Forwarder::linearizable_barrier`] joins
//! the next round of [`SharedRounds`], so concurrent reads on a follower send one
//! read-index request to the leader per round, not one each, and the leader in turn
//! confirms its leadership once per round for all the reads (of every peer) that
//! reached it meanwhile. A round is never shared with a read that arrived after it
//! started.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use orion_api::{ApiError, ErrorBody, MembersResponse, PeerIdentity};
use orion_raft::command::Applied;
use orion_raft::read_rounds::SharedRounds;
use orion_raft::types::RaftMetrics;
use orion_raft::{Command, CommandResult, LeaderError, Member, Proposal, RaftNode, RequestId};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{debug, info};

use crate::error::{Error, Result};
use crate::metrics::{Forwarded, PeerMetrics};

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
    /// Hand leadership to `to`, or to the most up-to-date voter.
    TransferLeader {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        to: Option<u64>,
    },
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
            // A second transfer after a lost answer would move leadership again.
            LeaderRequest::TransferLeader { .. } => false,
        }
    }

    /// The request id of a write.
    fn request_id(&self) -> Option<&RequestId> {
        match self {
            LeaderRequest::Propose { request_id, .. } => request_id.as_ref(),
            _ => None,
        }
    }

    /// Its kind, as `orion_forwarded_requests_total` counts it.
    fn kind(&self) -> Forwarded {
        match self {
            LeaderRequest::Propose { .. } => Forwarded::Write,
            LeaderRequest::ReadIndex => Forwarded::ReadIndex,
            LeaderRequest::AddPeer { .. }
            | LeaderRequest::UpdateMember { .. }
            | LeaderRequest::RemovePeer { .. }
            | LeaderRequest::Members
            | LeaderRequest::TransferLeader { .. } => Forwarded::Membership,
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
    Transferred(orion_api::TransferResponse),
    Done,
}

/// Status the internal endpoint uses for "I am not the leader".
pub const NOT_LEADER: StatusCode = StatusCode::MISDIRECTED_REQUEST;

/// The header a relayed call carries, so it is relayed once at most.
const FORWARDED: &str = "x-orion-forwarded";

/// The leader-forwarding client: this peer's Raft node, the HTTP client that
/// reaches other peers' `POST /v1/internal/leader`, and how long a call waits for
/// a leader. Clones share the client and the read-index rounds.
#[derive(Clone)]
pub struct Forwarder {
    node: RaftNode,
    http: reqwest::Client,
    hold: Duration,
    /// Read indexes shared by concurrent linearizable reads on this peer.
    read_rounds: SharedRounds<Result<u64, ApiError>>,
    /// Forwarded and held calls are counted here.
    metrics: Arc<PeerMetrics>,
}

enum Attempt {
    Done(Result<LeaderReply, ApiError>),
    /// Nothing reached a leader; try again.
    Retry,
    /// The leader stopped answering after the request reached it (it may have been
    /// applied); only an idempotent request is retried.
    Lost,
}

/// What one member made of a request sent to its `POST /v1/internal/leader`.
pub enum Sent {
    /// It ran it.
    Done(LeaderReply),
    /// It does not lead, or could not take it now (another membership change);
    /// the reason.
    NotLeader(String),
    /// It answered with an error.
    Failed { status: StatusCode, error: ApiError },
    /// Nothing reached it (the connection was refused or timed out).
    NotSent(String),
    /// It stopped answering after the request was sent: it may have run it.
    Lost(String),
}

/// Waits for news about the leader, but at most 100 ms, and never returns sooner
/// than 20 ms (no spinning); both bounded by `deadline`.
async fn wait_for_news(metrics: &mut watch::Receiver<RaftMetrics>, deadline: Instant) {
    let wait = deadline
        .saturating_duration_since(Instant::now())
        .min(Duration::from_millis(100));
    let _ = tokio::time::timeout(wait, metrics.changed()).await;
    tokio::time::sleep_until((Instant::now() + Duration::from_millis(20)).min(deadline)).await;
}

impl Forwarder {
    /// The forwarder of `node`, reaching other peers with `tls` (this peer's
    /// certificate: the internal endpoint takes peers only). This is the
    /// apiserver's one HTTP client.
    pub fn new(
        node: RaftNode,
        tls: rustls::ClientConfig,
        hold: Duration,
        metrics: Arc<PeerMetrics>,
    ) -> Result<Self> {
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .connect_timeout(Duration::from_millis(500))
            .pool_idle_timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| Error::Config(format!("http client: {e}")))?;
        Ok(Forwarder {
            node,
            http,
            hold,
            read_rounds: SharedRounds::new(),
            metrics,
        })
    }

    /// How long a call waits for a leader.
    pub fn hold(&self) -> Duration {
        self.hold
    }

    /// The HTTP client this peer calls other peers with, presenting its own
    /// certificate (joining a cluster goes through `orion_client` on it).
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// Runs `req` on the leader, holding through elections for up to the hold time.
    /// A write whose leader was lost after it was sent is sent again (with the same
    /// request id) for up to one more hold time from that loss.
    pub async fn on_leader(&self, req: LeaderRequest) -> Result<LeaderReply, ApiError> {
        let mut deadline = Instant::now() + self.hold;
        let mut metrics = self.node.raft.metrics();
        let mut last_leader = None;
        let mut lost_once = false;
        let mut counted = Counted::default();
        loop {
            let leader = self.node.leader();
            last_leader = leader.as_ref().map(|(id, _)| *id).or(last_leader);
            let attempt = match leader {
                Some((id, _)) if id == self.node.id => self.local(req.clone()).await,
                Some((id, member)) => {
                    counted.forwarded(&self.metrics, req.kind());
                    self.forward(id, &member, &req).await
                }
                None => {
                    counted.held(&self.metrics);
                    Attempt::Retry
                }
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
            if Instant::now() >= deadline {
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
            wait_for_news(&mut metrics, deadline).await;
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
            // A member restarted with other addresses (`advertise.rs`).
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
            LeaderRequest::TransferLeader { to } => self
                .node
                .transfer_leader(to)
                .await
                .map(LeaderReply::Transferred),
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
            Err(LeaderError::Transfer(e)) => Attempt::Done(Err(crate::error::transfer_refusal(e))),
            Err(LeaderError::Fatal(m)) => Attempt::Done(Err(ApiError::unavailable(format!(
                "this peer is shutting down: {m}"
            )))),
        }
    }

    async fn forward(&self, leader: u64, member: &Member, req: &LeaderRequest) -> Attempt {
        match self
            .send_to(&member.api_addr, req, req.budget(self.hold))
            .await
        {
            Sent::Done(reply) => Attempt::Done(Ok(reply)),
            Sent::NotLeader(_) => Attempt::Retry,
            Sent::NotSent(cause) => {
                debug!(leader, %cause, "leader not reachable; will retry");
                Attempt::Retry
            }
            Sent::Lost(cause) if req.idempotent() => {
                debug!(leader, %cause, "leader stopped answering; will retry");
                Attempt::Lost
            }
            Sent::Lost(cause) if matches!(req, LeaderRequest::TransferLeader { .. }) => {
                Attempt::Done(Err(ApiError::unavailable(format!(
                    "the leader (member {leader}) stopped answering during the transfer \
                     ({cause}); `orion cluster status` shows who leads now"
                ))))
            }
            Sent::Lost(cause) => Attempt::Done(Err(ApiError::unavailable(format!(
                "the leader (member {leader}) stopped answering after the request was sent \
                 ({cause}); the write carried no request id (it came from an older peer), so \
                 whether it was applied is unknown"
            )))),
            // The leader is shutting down: a write may be in its log already.
            Sent::Failed { status, .. }
                if status == StatusCode::SERVICE_UNAVAILABLE && req.idempotent() =>
            {
                Attempt::Lost
            }
            Sent::Failed { error, .. } => Attempt::Done(Err(error)),
        }
    }

    /// Sends `req` to the `POST /v1/internal/leader` of the member at `api_addr`,
    /// which runs it only if it leads.
    pub async fn send_to(&self, api_addr: &str, req: &LeaderRequest, timeout: Duration) -> Sent {
        let url = format!("https://{api_addr}/v1/internal/leader");
        let resp = match self.http.post(&url).timeout(timeout).json(req).send().await {
            Ok(resp) => resp,
            Err(e) if e.is_connect() => return Sent::NotSent(e.to_string()),
            Err(e) => return Sent::Lost(e.to_string()),
        };
        let status = resp.status();
        if status.is_success() {
            return match resp.json::<LeaderReply>().await {
                Ok(reply) => Sent::Done(reply),
                Err(e) => Sent::Failed {
                    status: StatusCode::BAD_GATEWAY,
                    error: ApiError::internal(format!("unreadable answer from the leader: {e}")),
                },
            };
        }
        let error = match resp.json::<ErrorBody>().await {
            Ok(body) => body.error,
            Err(e) => ApiError::internal(format!(
                "leader answered {status} with an unreadable body: {e}"
            )),
        };
        if status == NOT_LEADER {
            return Sent::NotLeader(error.message);
        }
        Sent::Failed { status, error }
    }

    /// Waits until this peer has applied everything the leader had committed when
    /// asked, so a read from the local state machine is linearizable.
    /// Concurrent calls share one read index, from a round started after they were
    /// made.
    pub async fn linearizable_barrier(&self) -> Result<(), ApiError> {
        let started = Instant::now();
        let me = self.clone();
        let index = self
            .read_rounds
            .join(move || {
                let me = me.clone();
                async move { me.read_index().await }
            })
            .await
            .map_err(|e| ApiError::unavailable(e.to_string()))??;
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

    /// One read index from the leader (this peer or another), for one round.
    async fn read_index(&self) -> Result<u64, ApiError> {
        match self.on_leader(LeaderRequest::ReadIndex).await? {
            LeaderReply::ReadIndex(i) => Ok(i),
            other => Err(unexpected(&other)),
        }
    }

    /// Proposes a command through the leader under a new request id; returns the
    /// revision that applied it and what it did, or why apply refused it.
    pub async fn apply(&self, command: Command) -> Result<(u64, Applied), ApiError> {
        self.apply_as(RequestId::random(), command).await
    }

    /// As [`Forwarder::apply`], under the client's request id: a second call with
    /// the same id returns the first one's revision and result and changes nothing.
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

    /// Relays an API call to the leader, whole, when another peer leads: `None`
    /// when this peer leads (the caller serves it). Holds through an election as
    /// [`Forwarder::on_leader`] does; a call relayed once is never relayed again.
    /// The caller's `Authorization` goes along, so the leader authorizes the
    /// original caller, not this peer.
    pub async fn relay(
        &self,
        headers: &HeaderMap,
        method: Method,
        path_and_query: &str,
        body: Option<serde_json::Value>,
    ) -> Result<Option<Response>, ApiError> {
        let deadline = Instant::now() + self.hold;
        let mut metrics = self.node.raft.metrics();
        let mut counted = Counted::default();
        loop {
            let leader = self.node.leader();
            match &leader {
                Some((id, _)) if *id != self.node.id && !headers.contains_key(FORWARDED) => {
                    counted.forwarded(&self.metrics, Forwarded::Relay)
                }
                None => counted.held(&self.metrics),
                _ => {}
            }
            let cause = match leader {
                Some((id, _)) if id == self.node.id => return Ok(None),
                _ if headers.contains_key(FORWARDED) => {
                    return Err(ApiError::unavailable(
                        "leadership moved while the call was forwarded; retry",
                    ))
                }
                Some((id, member)) => {
                    match self
                        .proxy(&member, headers, &method, path_and_query, &body)
                        .await
                    {
                        // Nothing was sent: safe to try again, at the next leader too.
                        Err(e) if e.is_connect() => format!("the leader (member {id}): {e}"),
                        Err(e) => {
                            return Err(ApiError::unavailable(format!(
                                "the leader did not answer: {e}"
                            )))
                        }
                        Ok(resp) => return Ok(Some(resp)),
                    }
                }
                None => "no leader is known".to_string(),
            };
            if Instant::now() >= deadline {
                return Err(ApiError::unavailable(format!(
                    "{cause} within {} ms; retry",
                    self.hold.as_millis()
                )));
            }
            wait_for_news(&mut metrics, deadline).await;
        }
    }

    async fn proxy(
        &self,
        leader: &Member,
        headers: &HeaderMap,
        method: &Method,
        path_and_query: &str,
        body: &Option<serde_json::Value>,
    ) -> std::result::Result<Response, reqwest::Error> {
        let url = format!("https://{}{path_and_query}", leader.api_addr);
        let mut req = self
            .http
            .request(method.clone(), url)
            .header(FORWARDED, "1");
        if let Some(auth) = headers.get(axum::http::header::AUTHORIZATION) {
            req = req.header(reqwest::header::AUTHORIZATION, auth.as_bytes());
        }
        if let Some(body) = body {
            req = req.json(body);
        }
        let resp = req.send().await?;
        let status =
            StatusCode::from_u16(resp.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
        let content_type = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("application/octet-stream")
            .to_string();
        let body = Body::from_stream(resp.bytes_stream());
        Ok((
            status,
            [(axum::http::header::CONTENT_TYPE, content_type)],
            body,
        )
            .into_response())
    }
}

/// What one call has been counted as already: each call counts once as forwarded
/// and once as held, however many attempts it takes.
#[derive(Default)]
struct Counted {
    forwarded: bool,
    held: bool,
}

impl Counted {
    fn forwarded(&mut self, metrics: &PeerMetrics, kind: Forwarded) {
        if !std::mem::replace(&mut self.forwarded, true) {
            metrics.forwarded(kind);
        }
    }
    fn held(&mut self, metrics: &PeerMetrics) {
        if !std::mem::replace(&mut self.held, true) {
            metrics.held();
        }
    }
}

pub fn unexpected(reply: &LeaderReply) -> ApiError {
    ApiError::internal(format!("unexpected answer from the leader: {reply:?}"))
}
