//! Every REST call Orion makes goes through this crate: the CLI, the agent, peers
//! joining a cluster, the bench, the fault-injection harness and the tests.
//!
//! - [`join`]: trading a join token for a certificate (CA pinned by the token's
//!   fingerprint), and renewing it with the current certificate.

pub mod join;

/// What a call through this crate can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Building keys, certificates or TLS configs failed.
    #[error(transparent)]
    Tls(#[from] orion_tls::TlsError),
    /// The cluster said no (a used, expired or revoked token), or it is not the
    /// cluster the token was made for. Retrying will not help.
    #[error("{0}")]
    Refused(String),
    /// No peer gave a usable answer; each one's failure is in the message.
    #[error("{0}")]
    Unavailable(String),
    /// The request could not be built (a bad URL, an unreadable token).
    #[error("{0}")]
    Invalid(String),
}

pub type Result<T, E = ClientError> = std::result::Result<T, E>;
