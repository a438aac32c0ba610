//! The certificate endpoints: `POST /v1/join` trades a join token (spent once)
//! and a CSR for a certificate; `POST /v1/certificates/renew` gives any
//! certificate of this cluster a new one for the same identity.

use std::sync::Arc;

use axum::extract::State;
use axum::{Extension, Json};
use orion_api::security::{IssuedCert, JoinCertRequest, RenewRequest};
use orion_api::ApiError;
use orion_raft::{Command, RaftNode};
use orion_tls::{token, Identity, Role, TokenRole};
use tracing::info;

use crate::auth::Tokens;
use crate::caller::Caller;
use crate::error::{HttpResult, JsonBody};
use crate::forward::Forwarder;
use crate::security::Security;

/// `POST /v1/join` (public): a join token, spent once, for a certificate.
pub async fn join(
    State(tokens): State<Tokens>,
    State(node): State<RaftNode>,
    JsonBody(req): JsonBody<JoinCertRequest>,
) -> HttpResult<Json<IssuedCert>> {
    let claims = tokens.verify(&req.token).await?;
    let identity = match claims.role {
        TokenRole::Server => {
            let id: u64 = req.name.parse().map_err(|_| {
                ApiError::invalid(format!("a server's name must be its peer id, not {:?}", req.name))
            })?;
            Identity::server(id)
        }
        TokenRole::Agent => {
            orion_api::spec::service::validate_name(&req.name)
                .map_err(|m| ApiError::invalid(format!("node name {:?}: {m}", req.name)))?;
            Identity::agent(&req.name)
        }
        other => {
            return Err(ApiError::denied(format!(
                "a {} token cannot join; make a join token with `orion token create --role server|agent`",
                other.as_str()
            ))
            .into())
        }
    };
    if let Role::Server = identity.role {
        refuse_taken_member_id(&tokens.leader, &node, &identity).await?;
    }
    // Sign first (it can fail on a bad CSR), spend the token second: a refusal
    // before this point leaves the token usable and no certificate issued.
    let cert_pem = tokens.security.sign(&req.csr, &identity, &req.hosts)?;
    tokens
        .leader
        .apply(Command::UseToken {
            id: claims.id.clone(),
            now: token::now(),
        })
        .await?;
    info!(token = %claims.id, %identity, "issued a certificate for a join token");
    Ok(Json(IssuedCert {
        cert_pem,
        ca_pem: tokens.security.creds().ca_pem.clone(),
    }))
}

/// 409 for a peer id that is a member already or belonged to a removed peer: the
/// membership would refuse the peer later anyway (`orion_raft::RaftNode::add_peer`),
/// and a second certificate for a member's id must never be issued.
async fn refuse_taken_member_id(
    leader: &Forwarder,
    node: &RaftNode,
    identity: &Identity,
) -> Result<(), ApiError> {
    let Some(id) = identity.name.parse::<u64>().ok() else {
        return Ok(());
    };
    // Up to date with the leader, so a member added or removed a moment ago counts.
    leader.linearizable_barrier().await?;
    let metrics = node.metrics();
    if let Some(member) = metrics.membership_config.membership().get_node(&id) {
        return Err(ApiError::conflict(
            format!("member id {id} is already in use by {member}; ids are never reused, pick another --id"),
            0,
            None,
        ));
    }
    let retired = node
        .reader
        .with_view(|v| orion_raft::read::is_retired(v, id))
        .map_err(|e| ApiError::internal(e.to_string()))?;
    if retired {
        return Err(ApiError::conflict(
            format!("member id {id} belonged to a removed peer; ids are never reused, pick another --id"),
            0,
            None,
        ));
    }
    Ok(())
}

/// `POST /v1/certificates/renew` (any certificate of this cluster): a new
/// certificate for the caller's own identity.
pub async fn renew(
    State(security): State<Arc<Security>>,
    Extension(caller): Extension<Caller>,
    JsonBody(req): JsonBody<RenewRequest>,
) -> HttpResult<Json<IssuedCert>> {
    let Caller::Cert(identity) = caller else {
        return Err(ApiError::denied("renewal needs the certificate being renewed").into());
    };
    let cert_pem = security.sign(&req.csr, &identity, &req.hosts)?;
    info!(%identity, "renewed a certificate");
    Ok(Json(IssuedCert {
        cert_pem,
        ca_pem: security.creds().ca_pem.clone(),
    }))
}
