//! The server side of the peer transport. Only peers call it; the apiserver never
//! exposes it to clients or agents.

use orion_store::StateReader;
use tonic::{Request, Response, Status};
use tracing::debug;

use crate::codec;
use crate::proto::peer_raft_server::PeerRaft;
use crate::proto::RaftPayload;
use crate::types::Raft;

use crate::protocol::REMOVED_HEADER;

/// Hands incoming Raft RPCs to the local Raft instance.
pub struct PeerService {
    pub raft: Raft,
    pub self_id: u64,
    /// This peer's applied state, to refuse callers whose id is retired.
    pub reader: StateReader,
}

impl PeerService {
    /// Refuses a caller whose certificate is not its claim, or whose id this
    /// peer's state says is retired and who is no longer in its membership: ids
    /// are never reused, so that is final. (A member being removed is retired
    /// just before the membership change; until that change it is still heard,
    /// so a leader removing itself can finish.)
    fn check(&self, request: &Request<RaftPayload>) -> Result<(), Status> {
        check_sender(request)?;
        let from = request.get_ref().from;
        let member = self
            .raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .get_node(&from)
            .is_some();
        let retired = !member
            && self
                .reader
                .with_view(|v| crate::read::is_retired(v, from))
                .unwrap_or(false);
        if !retired {
            return Ok(());
        }
        debug!(from, "refused a raft rpc from a removed peer");
        let mut status = Status::failed_precondition(format!(
            "peer {from} was removed from this cluster (its id is retired; member {} says so)",
            self.self_id
        ));
        status
            .metadata_mut()
            .insert(REMOVED_HEADER, tonic::metadata::MetadataValue::from(from));
        Err(status)
    }
}

/// Refuses a call whose claimed sender is not the peer its certificate names, or
/// that is in a peer protocol newer than this build's (see [`crate::protocol`]).
fn check_sender(request: &Request<RaftPayload>) -> Result<(), Status> {
    let claimed = request.get_ref().from;
    if let Err(e) = crate::protocol::check(claimed, request.get_ref().protocol) {
        tracing::warn!(from = claimed, cause = %e, "refused a raft rpc in a newer protocol");
        return Err(Status::failed_precondition(e));
    }
    match crate::tls::caller_id(request) {
        Some(id) if id == claimed => Ok(()),
        named => {
            tracing::warn!(claimed, certificate = ?named, "refused a raft rpc from a peer posing as another");
            Err(Status::permission_denied(format!(
                "the call claims to come from peer {claimed}, but the certificate names {named:?}"
            )))
        }
    }
}

fn decode<T: serde::de::DeserializeOwned>(req: &RaftPayload) -> Result<T, Status> {
    codec::decode(&req.data).map_err(|e| {
        debug!(from = req.from, cause = %e, "undecodable raft rpc");
        Status::invalid_argument(e.to_string())
    })
}

fn reply<T: serde::Serialize>(self_id: u64, result: &T) -> Result<Response<RaftPayload>, Status> {
    let data = codec::encode(result).map_err(|e| Status::internal(e.to_string()))?;
    Ok(Response::new(RaftPayload {
        from: self_id,
        data,
        chunk: Vec::new(),
        protocol: crate::protocol::RAFT_RPC,
    }))
}

#[tonic::async_trait]
impl PeerRaft for PeerService {
    async fn append_entries(
        &self,
        request: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        self.check(&request)?;
        let req = decode(request.get_ref())?;
        reply(self.self_id, &self.raft.append_entries(req).await)
    }

    async fn vote(&self, request: Request<RaftPayload>) -> Result<Response<RaftPayload>, Status> {
        self.check(&request)?;
        let req = decode(request.get_ref())?;
        reply(self.self_id, &self.raft.vote(req).await)
    }

    async fn install_snapshot(
        &self,
        request: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        self.check(&request)?;
        let payload = request.into_inner();
        let mut req: openraft::raft::InstallSnapshotRequest<crate::types::TypeConfig> =
            decode(&payload)?;
        req.data = payload.chunk;
        reply(self.self_id, &self.raft.install_snapshot(req).await)
    }

    async fn timeout_now(
        &self,
        request: Request<RaftPayload>,
    ) -> Result<Response<RaftPayload>, Status> {
        check_sender(&request)?;
        let payload = request.get_ref();
        let answer = crate::transfer::answer_timeout_now(
            &self.raft,
            self.self_id,
            payload.from,
            &payload.data,
        )
        .await;
        if let Err(reason) = &answer {
            tracing::info!(leader = payload.from, %reason, "refused to take over leadership");
        }
        reply(self.self_id, &answer)
    }
}
