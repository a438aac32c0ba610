//! A peer's credentials and the API endpoints of the cluster PKI.
//!
//! - `--bootstrap` creates the CA, a token signing key and this peer's certificate;
//!   the first leadership term records CA and key in the replicated state and
//!   writes an admin token to `<data-dir>/admin.token`.
//! - `--join URL --token T` reads the CA fingerprint from the token, fetches the CA
//!   from URL and checks it, then exchanges the token and a CSR for a certificate.
//! - Later starts load `<data-dir>/tls/`. Certificates are renewed two thirds into
//!   their life, in place, and at once when the names they must carry (the
//!   advertised addresses' hosts and `tls-san`) are not the ones they carry.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use orion_api::security::{
    CreateToken, CreatedToken, IssuedCert, JoinCertRequest, RenewRequest, TokenList, TokenRecord,
};
use orion_api::ApiError;
use orion_raft::Command;
use orion_tls::token::{self, Claims};
use orion_tls::{Credentials, Identity, LiveCert, Role, TokenRole};
use tracing::{info, warn};

use crate::auth::{verify_token, Caller};
use crate::config::ServerConfig;
use crate::error::{HttpResult, JsonBody};
use crate::leader::ClusterRef;
use crate::{Error, Result};

/// This peer's TLS material, shared by every listener and client.
pub struct PeerCreds {
    pub ca_pem: String,
    pub fingerprint: String,
    pub live: Arc<LiveCert>,
    pub hosts: Vec<String>,
    pub lifetime: Duration,
    pub dir: PathBuf,
}

impl PeerCreds {
    pub fn client_config(&self) -> Result<rustls::ClientConfig> {
        orion_tls::config::client_config(&self.ca_pem, Some(self.live.clone()))
            .map_err(|e| Error::Config(format!("TLS: {e}")))
    }

    pub fn server_config(
        &self,
        auth: orion_tls::config::ClientAuth,
        alpn: &[&[u8]],
    ) -> Result<rustls::ServerConfig> {
        let mut c = orion_tls::config::server_config(&self.ca_pem, self.live.clone(), auth)
            .map_err(|e| Error::Config(format!("TLS: {e}")))?;
        c.alpn_protocols = alpn.iter().map(|a| a.to_vec()).collect();
        Ok(c)
    }
}

/// Secrets the bootstrapping peer holds until the replicated state has them.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct BootstrapSecrets {
    pub ca_key_pem: String,
    pub token_key: String,
}

pub fn tls_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("tls")
}

pub fn bootstrap_file(data_dir: &Path) -> PathBuf {
    tls_dir(data_dir).join("bootstrap.json")
}

pub fn admin_token_file(data_dir: &Path) -> PathBuf {
    data_dir.join("admin.token")
}

fn tls_err(e: orion_tls::TlsError) -> Error {
    Error::Config(format!("TLS: {e}"))
}

/// The host part of each `host:port`, plus the configured extra names, as
/// certificate names compare ([`orion_tls::cert::normalize_hosts`]).
pub fn cert_hosts(addrs: &[&str], extra: &[String]) -> Vec<String> {
    let hosts: Vec<String> = addrs
        .iter()
        .filter_map(|a| a.rsplit_once(':').map(|(h, _)| h))
        .map(|h| h.trim_start_matches('[').trim_end_matches(']').to_string())
        .chain(extra.iter().cloned())
        .collect();
    orion_tls::cert::normalize_hosts(&hosts)
}

/// Whether this peer's certificate names exactly the hosts it must (an unreadable
/// certificate does not).
pub fn names_current(creds: &PeerCreds) -> bool {
    orion_tls::cert::hosts_of(&creds.live.cert_pem()).is_ok_and(|names| names == creds.hosts)
}

/// Loads, creates (bootstrap) or obtains (join) this peer's credentials.
pub async fn peer_credentials(config: &ServerConfig, hosts: Vec<String>) -> Result<PeerCreds> {
    let dir = tls_dir(&config.data_dir);
    let lifetime = Duration::from_secs(config.cert_lifetime_secs);
    let me = Identity::server(config.id);
    let creds = match Credentials::load(&dir).map_err(tls_err)? {
        Some(c) => c,
        None if config.bootstrap => {
            let (ca_pem, ca_key_pem) = orion_tls::cert::generate_ca().map_err(tls_err)?;
            let (cert_pem, key_pem) =
                orion_tls::cert::issue(&ca_key_pem, &me, &hosts, lifetime).map_err(tls_err)?;
            let c = Credentials {
                ca_pem,
                cert_pem,
                key_pem,
            };
            c.save(&dir).map_err(tls_err)?;
            let secrets = BootstrapSecrets {
                ca_key_pem,
                token_key: token::new_key(),
            };
            let json = serde_json::to_vec(&secrets).map_err(std::io::Error::other)?;
            orion_tls::files::write_private(&bootstrap_file(&config.data_dir), &json)
                .map_err(tls_err)?;
            info!("created the cluster CA");
            c
        }
        None => {
            let Some(tok) = &config.token else {
                return Err(Error::Config(format!(
                    "{} holds no credentials: start the first peer with --bootstrap, or join \
                     with --join URL --token TOKEN (an admin makes one with \
                     `orion token create --role server`)",
                    dir.display()
                )));
            };
            let c = orion_client::join::exchange(&config.join, tok, &me.name, &hosts)
                .await
                .map_err(|e| Error::Join(e.to_string()))?;
            info!("exchanged the join token for a certificate");
            c.save(&dir).map_err(tls_err)?;
            c
        }
    };
    let live = creds
        .live_for(&me)
        .map_err(|e| Error::Config(format!("{}: {e}", dir.display())))?;
    Ok(PeerCreds {
        fingerprint: orion_tls::cert::fingerprint(&creds.ca_pem).map_err(tls_err)?,
        ca_pem: creds.ca_pem,
        live,
        hosts,
        lifetime,
        dir,
    })
}

/// Renews this peer's certificate two thirds into its life, or at once while it
/// does not carry the names it must, signing it with the replicated CA key, and
/// swaps it in without a restart.
pub async fn renew_loop(cluster: ClusterRef, shutdown: tokio_util::sync::CancellationToken) {
    let mut warned = false;
    loop {
        let creds = &cluster.creds;
        let wait = if names_current(creds) {
            orion_tls::cert::until_renewal(&creds.live.cert_pem())
        } else {
            Duration::ZERO
        };
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
        }
        match renew_self(&cluster) {
            Ok(()) => {
                warned = false;
                info!(names = ?creds.hosts, "renewed this peer's certificate");
            }
            Err(e) => {
                if warned {
                    tracing::debug!(cause = %e, "could not renew this peer's certificate");
                } else {
                    warn!(cause = %e, "could not renew this peer's certificate; retrying every 10 s");
                    warned = true;
                }
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(Duration::from_secs(10)) => {}
                }
            }
        }
    }
}

/// Issues this peer a new certificate for `creds.hosts`, saves it and swaps it in.
pub fn renew_self(cluster: &ClusterRef) -> Result<(), String> {
    let secrets = cluster.secrets().map_err(|e| e.message)?;
    let creds = &cluster.creds;
    let me = Identity::server(cluster.node.id);
    let (cert_pem, key_pem) =
        orion_tls::cert::issue(&secrets.key_pem, &me, &creds.hosts, creds.lifetime)
            .map_err(|e| e.to_string())?;
    let c = Credentials {
        ca_pem: creds.ca_pem.clone(),
        cert_pem,
        key_pem,
    };
    c.save(&creds.dir).map_err(|e| e.to_string())?;
    creds
        .live
        .replace(&c.cert_pem, &c.key_pem)
        .map_err(|e| e.to_string())
}

/// Run by the leader: records the bootstrap secrets, then mints the first admin
/// token into `<data-dir>/admin.token`. Idempotent across crashes.
pub async fn finish_bootstrap(cluster: &ClusterRef, data_dir: &Path) {
    let file = bootstrap_file(data_dir);
    let Ok(bytes) = std::fs::read(&file) else {
        return;
    };
    let Ok(secrets) = serde_json::from_slice::<BootstrapSecrets>(&bytes) else {
        warn!(path = %file.display(), "unreadable bootstrap secrets");
        return;
    };
    if cluster.secrets().is_err() {
        let cmd = Command::SetClusterCa {
            cert_pem: cluster.creds.ca_pem.clone(),
            key_pem: secrets.ca_key_pem.clone(),
            token_key: secrets.token_key.clone(),
        };
        if let Err(e) = cluster.node.propose(cmd).await {
            warn!(cause = %e, "could not record the cluster CA yet");
            return;
        }
    }
    let minted = mint(
        cluster,
        TokenRole::Admin,
        Duration::from_secs(365 * 24 * 3600),
        "created at bootstrap".into(),
    )
    .await;
    match minted {
        Ok(created) => {
            let path = admin_token_file(data_dir);
            if let Err(e) = orion_tls::files::write_private(&path, created.token.as_bytes()) {
                warn!(cause = %e, "could not write the admin token");
                return;
            }
            let _ = std::fs::remove_file(&file);
            info!(path = %path.display(), "wrote an admin token (valid one year)");
        }
        Err(e) => warn!(cause = %e.message, "could not mint the admin token yet"),
    }
}

/// Signs and records a new token.
async fn mint(
    cluster: &ClusterRef,
    role: TokenRole,
    ttl: Duration,
    description: String,
) -> Result<CreatedToken, ApiError> {
    let secrets = cluster.secrets()?;
    let now = token::now();
    let claims = Claims {
        id: token::new_id(),
        role,
        exp: now + ttl.as_secs(),
        ca: cluster.creds.fingerprint.clone(),
    };
    let record = TokenRecord {
        id: claims.id.clone(),
        role: role.as_str().into(),
        expires_at: claims.exp,
        created_at: now,
        description,
        used: false,
        revoked: false,
    };
    cluster
        .apply(Command::PutToken {
            record: record.clone(),
        })
        .await?;
    Ok(CreatedToken {
        token: token::sign(&claims, &secrets.token_key),
        record,
    })
}

/// Shortest and longest token lifetimes accepted.
const MIN_TTL: u64 = 1;
const MAX_TTL: u64 = 10 * 365 * 24 * 3600;

/// `POST /v1/tokens` (admin).
pub async fn create_token(
    State(cluster): State<ClusterRef>,
    Extension(caller): Extension<Caller>,
    JsonBody(req): JsonBody<CreateToken>,
) -> HttpResult<(StatusCode, Json<CreatedToken>)> {
    let role: TokenRole = req.role.parse().map_err(ApiError::invalid)?;
    if !(MIN_TTL..=MAX_TTL).contains(&req.ttl_seconds) {
        return Err(ApiError::invalid(format!(
            "ttl_seconds must be between {MIN_TTL} and {MAX_TTL}"
        ))
        .into());
    }
    let created = mint(
        &cluster,
        role,
        Duration::from_secs(req.ttl_seconds),
        req.description,
    )
    .await?;
    info!(id = %created.record.id, role = role.as_str(), by = %caller, "token created");
    Ok((StatusCode::CREATED, Json(created)))
}

/// `GET /v1/tokens` (admin): records only, never the tokens.
pub async fn list_tokens(State(cluster): State<ClusterRef>) -> HttpResult<Json<TokenList>> {
    let tokens = cluster
        .node
        .reader
        .with_view(orion_raft::read::tokens)
        .map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(Json(TokenList { tokens }))
}

/// `DELETE /v1/tokens/{id}` (admin).
pub async fn revoke_token(
    State(cluster): State<ClusterRef>,
    Extension(caller): Extension<Caller>,
    UrlPath(id): UrlPath<String>,
) -> HttpResult<Json<serde_json::Value>> {
    cluster
        .apply(Command::RevokeToken { id: id.clone() })
        .await?;
    info!(%id, by = %caller, "token revoked");
    Ok(Json(serde_json::json!({ "revoked": id })))
}

/// `POST /v1/join` (public): a join token, spent once, for a certificate.
pub async fn join(
    State(cluster): State<ClusterRef>,
    JsonBody(req): JsonBody<JoinCertRequest>,
) -> HttpResult<Json<IssuedCert>> {
    let claims = verify_token(&cluster, &req.token).await?;
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
        refuse_taken_member_id(&cluster, &identity).await?;
    }
    // Sign first (it can fail on a bad CSR), spend the token second: a refusal
    // before this point leaves the token usable and no certificate issued.
    let cert_pem = sign(&cluster, &req.csr, &identity, &req.hosts)?;
    cluster
        .apply(Command::UseToken {
            id: claims.id.clone(),
            now: token::now(),
        })
        .await?;
    info!(token = %claims.id, %identity, "issued a certificate for a join token");
    Ok(Json(IssuedCert {
        cert_pem,
        ca_pem: cluster.creds.ca_pem.clone(),
    }))
}

/// 409 for a peer id that is a member already or belonged to a removed peer: the
/// membership would refuse the peer later anyway (`orion_raft::RaftNode::add_peer`),
/// and a second certificate for a member's id must never be issued.
async fn refuse_taken_member_id(cluster: &ClusterRef, identity: &Identity) -> Result<(), ApiError> {
    let Some(id) = identity.name.parse::<u64>().ok() else {
        return Ok(());
    };
    // Up to date with the leader, so a member added or removed a moment ago counts.
    cluster.linearizable_barrier().await?;
    let metrics = cluster.node.metrics();
    if let Some(member) = metrics.membership_config.membership().get_node(&id) {
        return Err(ApiError::conflict(
            format!("member id {id} is already in use by {member}; ids are never reused, pick another --id"),
            0,
        ));
    }
    let retired = cluster
        .node
        .reader
        .with_view(|v| orion_raft::read::is_retired(v, id))
        .map_err(|e| ApiError::internal(e.to_string()))?;
    if retired {
        return Err(ApiError::conflict(
            format!("member id {id} belonged to a removed peer; ids are never reused, pick another --id"),
            0,
        ));
    }
    Ok(())
}

/// `POST /v1/certificates/renew` (any certificate of this cluster): a new
/// certificate for the caller's own identity.
pub async fn renew(
    State(cluster): State<ClusterRef>,
    Extension(caller): Extension<Caller>,
    JsonBody(req): JsonBody<RenewRequest>,
) -> HttpResult<Json<IssuedCert>> {
    let Caller::Cert(identity) = caller else {
        return Err(ApiError::denied("renewal needs the certificate being renewed").into());
    };
    let cert_pem = sign(&cluster, &req.csr, &identity, &req.hosts)?;
    info!(%identity, "renewed a certificate");
    Ok(Json(IssuedCert {
        cert_pem,
        ca_pem: cluster.creds.ca_pem.clone(),
    }))
}

fn sign(
    cluster: &ClusterRef,
    csr: &str,
    identity: &Identity,
    hosts: &[String],
) -> Result<String, ApiError> {
    let secrets = cluster.secrets()?;
    let hosts = if identity.role == Role::Server {
        hosts
    } else {
        &[]
    };
    orion_tls::cert::sign_csr(
        &secrets.key_pem,
        csr,
        identity,
        hosts,
        cluster.creds.lifetime,
    )
    .map_err(|e| ApiError::invalid(e.to_string()))
}
