//! `/v1/cluster`: members, join, remove, status, this peer's identity, and
//! backups (`GET /v1/cluster/snapshot`).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, Method};
use axum::response::{IntoResponse, Response};
use axum::Json;
use orion_api::{
    AgentBootstrap, ApiError, ClusterStatus, JoinRequest, MembersResponse, PeerIdentity,
    TransferRequest, TransferResponse,
};
use orion_raft::{Member, RaftNode};
use tokio::sync::Semaphore;

use crate::api::common::ReadParams;
use crate::error::{HttpResult, JsonBody};
use crate::forward::{unexpected, Forwarder, LeaderReply, LeaderRequest};
use crate::security::PeerCreds;

fn members_reply(reply: LeaderReply) -> HttpResult<Json<MembersResponse>> {
    match reply {
        LeaderReply::Members(m) => Ok(Json(m)),
        other => Err(unexpected(&other).into()),
    }
}

/// `GET /v1/cluster/members`: from the leader (with replication lag) unless `?stale=true`.
pub async fn members(
    State(leader): State<Arc<Forwarder>>,
    State(node): State<RaftNode>,
    Query(params): Query<ReadParams>,
) -> HttpResult<Json<MembersResponse>> {
    if params.stale {
        return Ok(Json(node.members()));
    }
    members_reply(leader.on_leader(LeaderRequest::Members).await?)
}

/// `POST /v1/cluster/members`: add a running peer as a learner, wait until it has
/// caught up, then promote it to voter.
pub async fn join(
    State(leader): State<Arc<Forwarder>>,
    JsonBody(peer): JsonBody<JoinRequest>,
) -> HttpResult<Json<MembersResponse>> {
    if peer.id == 0 {
        return Err(ApiError::invalid("member id must be above 0").into());
    }
    for (name, addr) in [("api_addr", &peer.api_addr), ("peer_addr", &peer.peer_addr)] {
        if addr
            .rsplit_once(':')
            .is_none_or(|(h, p)| h.is_empty() || p.parse::<u16>().is_err())
        {
            return Err(ApiError::invalid(format!("{name} {addr:?} must be host:port")).into());
        }
    }
    members_reply(leader.on_leader(LeaderRequest::AddPeer { peer }).await?)
}

/// `DELETE /v1/cluster/members/{id}`.
pub async fn remove(
    State(leader): State<Arc<Forwarder>>,
    Path(id): Path<String>,
) -> HttpResult<Json<MembersResponse>> {
    let id: u64 = id
        .parse()
        .map_err(|_| ApiError::invalid(format!("member id {id:?} is not a number")))?;
    members_reply(leader.on_leader(LeaderRequest::RemovePeer { id }).await?)
}

/// `POST /v1/cluster/transfer-leader`: the leader holds new writes, waits until the
/// target has its whole log, has it start an election and answers once it leads
/// (`orion_raft::transfer`). Forwarded to the leader like every leader-only call.
pub async fn transfer_leader(
    State(leader): State<Arc<Forwarder>>,
    JsonBody(body): JsonBody<TransferRequest>,
) -> HttpResult<Json<TransferResponse>> {
    // `{}`: the most up-to-date voter.
    let to = body.to;
    if to == Some(0) {
        return Err(ApiError::invalid("member id must be above 0").into());
    }
    match leader
        .on_leader(LeaderRequest::TransferLeader { to })
        .await?
    {
        LeaderReply::Transferred(t) => Ok(Json(t)),
        other => Err(unexpected(&other).into()),
    }
}

/// `GET /v1/cluster/status`: this peer's own view, never forwarded.
pub async fn status(State(node): State<RaftNode>) -> Json<ClusterStatus> {
    Json(node.status())
}

/// `GET /v1/cluster/self`: who this peer is, so `orion cluster join URL` can add it.
pub async fn identity(State(me): State<PeerIdentity>) -> Json<PeerIdentity> {
    Json(me)
}

/// `GET /v1/cluster/ca`: the CA certificate agents verify the gateway with, and
/// where the gateways are. Public material only.
pub async fn agent_bootstrap(
    State(node): State<RaftNode>,
    State(creds): State<Arc<PeerCreds>>,
) -> HttpResult<Json<AgentBootstrap>> {
    // The membership this peer has applied: a member that restarted with another
    // agent address shows it once its record is updated (`advertise.rs`).
    let agent_addrs = node
        .members()
        .members
        .into_iter()
        .map(|m| m.agent_addr)
        .filter(|a| !a.is_empty())
        .collect();
    Ok(Json(AgentBootstrap {
        ca_pem: creds.ca_pem.clone(),
        agent_addrs,
    }))
}

/// Backups taken at once on one peer; more get 429 (each reads the whole state).
pub const MAX_EXPORTS: usize = 2;
/// Pieces of a backup are about this big; at most [`EXPORT_QUEUE`] wait to be sent,
/// so a backup of any size holds about 1 MiB of memory.
const EXPORT_PIECE_BYTES: usize = 256 << 10;
const EXPORT_QUEUE: usize = 4;

static EXPORTS: Semaphore = Semaphore::const_new(MAX_EXPORTS);

/// `GET /v1/cluster/snapshot`: a backup of the replicated state, taken on the
/// leader (a follower relays the call) after a linearizable read barrier, from one
/// RocksDB point in time, and streamed as it is read: the snapshot format
/// (`orion_store::backup`), whose header carries the revision and term it was
/// taken at and whose last four bytes are its CRC-32C.
pub async fn snapshot(
    State(leader): State<Arc<Forwarder>>,
    State(node): State<RaftNode>,
    headers: HeaderMap,
) -> HttpResult<Response> {
    if let Some(relayed) = leader
        .relay(&headers, Method::GET, "/v1/cluster/snapshot", None)
        .await?
    {
        return Ok(relayed);
    }
    let permit = EXPORTS.try_acquire().map_err(|_| {
        ApiError::new(
            orion_api::ErrorCode::TooManyRequests,
            format!("{MAX_EXPORTS} backups are being taken already; retry later"),
        )
    })?;
    // Everything acknowledged before the call is in the backup.
    leader.linearizable_barrier().await?;
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Vec<u8>>>(EXPORT_QUEUE);
    let reader = node.reader.clone();
    tokio::task::spawn_blocking(move || {
        // Held until the export ends (a `'static` permit of the static semaphore).
        let _permit = permit;
        let sent = orion_store::backup::export::<Member>(&reader, EXPORT_PIECE_BYTES, |piece| {
            tx.blocking_send(Ok(piece)).is_ok()
        });
        match sent {
            Ok(Some(info)) => tracing::info!(
                revision = info.revision(),
                bytes = info.bytes,
                pairs = info.pairs,
                "sent a backup"
            ),
            Ok(None) => tracing::debug!("a backup's receiver went away"),
            Err(e) => {
                tracing::warn!(cause = %e, "a backup failed");
                // Break the body, so the client sees it was cut.
                let _ = tx.blocking_send(Err(std::io::Error::other(e.to_string())));
            }
        }
    });
    let body = Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx));
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], body).into_response())
}
