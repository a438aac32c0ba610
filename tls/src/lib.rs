//! Orion's cluster PKI, shared by peers, agents and the CLI. Pure PKI: no network
//! calls live here (the join and renew exchanges are in `orion-client`).
//!
//! - [`cert`]: the cluster CA, and leaf certificates that name a [`Role`] and an
//!   identity (peer id or node name) in a URI SAN `orion://<role>/<name>`.
//! - [`token`]: HMAC-signed bearer and join tokens that carry the CA's fingerprint.
//! - [`config`]: rustls configs that check the chain *and* the role on every link,
//!   with certificates that can be replaced while the process runs.
//! - [`files`]: credentials on disk (`ca.crt`, `node.crt`, `node.key`, mode 0600).
//! - [`fuzz`]: fuzz checks of the token and CSR parsers (`fuzz/`, `make fuzz`).

pub mod cert;
pub mod config;
pub mod files;
pub mod fuzz;
pub mod token;

pub use cert::{Identity, Role};
pub use config::LiveCert;
pub use files::Credentials;
pub use token::{Claims, TokenRole};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("certificate: {0}")]
    Cert(#[from] rcgen::Error),
    #[error("tls: {0}")]
    Tls(#[from] rustls::Error),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Invalid(String),
    /// The cluster said no (a used, expired or revoked token), or it is not the
    /// cluster the token was made for. Retrying will not help.
    #[error("{0}")]
    Refused(String),
}

pub type Result<T, E = TlsError> = std::result::Result<T, E>;

/// The crypto provider everything here uses.
pub fn provider() -> std::sync::Arc<rustls::crypto::CryptoProvider> {
    std::sync::Arc::new(rustls::crypto::ring::default_provider())
}
