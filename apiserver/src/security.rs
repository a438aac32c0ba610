//! A peer's credentials and the cluster PKI: [`PeerCreds`] (this peer's CA,
//! certificate and key, shared by every listener and client) and [`Security`]
//! (the replicated CA and token keys: signing certificates, minting tokens,
//! renewing this peer's certificate). The endpoints are in `api/tokens.rs`
//! and `api/certificates.rs`.
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

use std::sync::OnceLock;

use orion_api::security::{CreatedToken, TokenRecord};
use orion_api::ApiError;
use orion_raft::read::ClusterSecrets;
use orion_raft::{Command, RaftNode};
use orion_tls::token::{self, Claims};
use orion_tls::{Credentials, Identity, LiveCert, Role, TokenRole};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::config::ServerConfig;
use crate::error::{Error, Result};
use crate::forward::Forwarder;

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

/// The cluster PKI as this peer uses it: its own credentials, and the CA and
/// token keys the replicated state holds.
pub struct Security {
    creds: Arc<PeerCreds>,
    node: RaftNode,
    leader: Arc<Forwarder>,
    data_dir: PathBuf,
    /// The token signing key, once the replicated state has it.
    token_key: OnceLock<Arc<str>>,
}

impl Security {
    pub fn new(
        creds: Arc<PeerCreds>,
        node: RaftNode,
        leader: Arc<Forwarder>,
        data_dir: PathBuf,
    ) -> Self {
        Security {
            creds,
            node,
            leader,
            data_dir,
            token_key: OnceLock::new(),
        }
    }

    /// This peer's credentials.
    pub fn creds(&self) -> &Arc<PeerCreds> {
        &self.creds
    }

    /// The cluster CA key and token key from the replicated state.
    pub fn secrets(&self) -> Result<ClusterSecrets, ApiError> {
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

    /// The record of token `id` in this peer's applied state.
    pub fn token_record(&self, id: &str) -> Result<Option<TokenRecord>, ApiError> {
        self.node
            .reader
            .with_view(|v| orion_raft::read::token(v, id))
            .map_err(|e| ApiError::internal(e.to_string()))
    }

    /// Issues this peer a new certificate for `creds.hosts`, saves it and swaps it in.
    pub fn renew_self(&self) -> Result<(), String> {
        let secrets = self.secrets().map_err(|e| e.message)?;
        let creds = &self.creds;
        let me = Identity::server(self.node.id);
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

    /// Renews this peer's certificate two thirds into its life, or at once while it
    /// does not carry the names it must, signing it with the replicated CA key, and
    /// swaps it in without a restart. Runs until `shutdown`.
    pub async fn renew_loop(self: Arc<Self>, shutdown: CancellationToken) {
        let mut warned = false;
        loop {
            let creds = &self.creds;
            let wait = if names_current(creds) {
                orion_tls::cert::until_renewal(&creds.live.cert_pem())
            } else {
                Duration::ZERO
            };
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(wait) => {}
            }
            match self.renew_self() {
                Ok(()) => {
                    warned = false;
                    info!(names = ?creds.hosts, "renewed this peer's certificate");
                }
                Err(e) => {
                    if warned {
                        debug!(cause = %e, "could not renew this peer's certificate");
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

    /// Whether this peer bootstrapped the cluster and has not yet recorded its
    /// secrets and minted the admin token.
    pub fn bootstrap_pending(&self) -> bool {
        bootstrap_file(&self.data_dir).exists()
    }

    /// Run by the leader: records the bootstrap secrets, then mints the first admin
    /// token into `<data-dir>/admin.token`. Idempotent across crashes.
    pub async fn finish_bootstrap(&self) {
        let file = bootstrap_file(&self.data_dir);
        let Ok(bytes) = std::fs::read(&file) else {
            return;
        };
        let Ok(secrets) = serde_json::from_slice::<BootstrapSecrets>(&bytes) else {
            warn!(path = %file.display(), "unreadable bootstrap secrets");
            return;
        };
        if self.secrets().is_err() {
            let cmd = Command::SetClusterCa {
                cert_pem: self.creds.ca_pem.clone(),
                key_pem: secrets.ca_key_pem.clone(),
                token_key: secrets.token_key.clone(),
            };
            if let Err(e) = self.node.propose(cmd).await {
                warn!(cause = %e, "could not record the cluster CA yet");
                return;
            }
        }
        let minted = self
            .mint(
                TokenRole::Admin,
                Duration::from_secs(365 * 24 * 3600),
                "created at bootstrap".into(),
            )
            .await;
        match minted {
            Ok(created) => {
                let path = admin_token_file(&self.data_dir);
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
    pub async fn mint(
        &self,
        role: TokenRole,
        ttl: Duration,
        description: String,
    ) -> Result<CreatedToken, ApiError> {
        let secrets = self.secrets()?;
        let now = token::now();
        let claims = Claims {
            id: token::new_id(),
            role,
            exp: now + ttl.as_secs(),
            ca: self.creds.fingerprint.clone(),
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
        self.leader
            .apply(Command::PutToken {
                record: record.clone(),
            })
            .await?;
        Ok(CreatedToken {
            token: token::sign(&claims, &secrets.token_key),
            record,
        })
    }

    /// Signs a CSR for `identity` with the cluster CA; only a server's
    /// certificate carries `hosts`.
    pub fn sign(
        &self,
        csr: &str,
        identity: &Identity,
        hosts: &[String],
    ) -> Result<String, ApiError> {
        let secrets = self.secrets()?;
        let hosts = if identity.role == Role::Server {
            hosts
        } else {
            &[]
        };
        orion_tls::cert::sign_csr(&secrets.key_pem, csr, identity, hosts, self.creds.lifetime)
            .map_err(|e| ApiError::invalid(e.to_string()))
    }
}
