//! Every REST call Orion makes goes through this crate: the CLI, the agent, peers
//! joining a cluster, the bench, the fault-injection harness and the tests.
//!
//! - [`rest`]: [`Client`], calls over TLS with the caller's token that fail over
//!   between peers, and writes retried under one request id.
//! - [`join`]: trading a join token for a certificate (CA pinned by the token's
//!   fingerprint), and renewing it with the current certificate.

pub mod join;
pub mod rest;

pub use rest::{query_value, Client, IDEMPOTENCY_KEY, MAX_REQUEST_ID_LEN, WRITE_RETRY_BUDGET};

use orion_api::ApiError;
use reqwest::StatusCode;

/// What a call through this crate can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The cluster answered with an error.
    #[error("{error} ({status})")]
    Api { status: StatusCode, error: ApiError },
    /// No peer could be reached.
    #[error("no Orion peer answered: {0}")]
    Unreachable(String),
    /// No peer answered a write within the retry budget after one may have received
    /// it: the one case where the outcome is not known.
    #[error(
        "no Orion peer answered the write within {} s of retries, after one may have \
         received it ({cause}); whether it was applied is unknown. Sending it again is \
         safe: rerun the command with --request-id {request_id} and it applies at most once",
        WRITE_RETRY_BUDGET.as_secs()
    )]
    Unknown { request_id: String, cause: String },
    /// The cluster said no to a join or renewal (a used, expired or revoked token),
    /// or it is not the cluster the token was made for. Retrying will not help.
    #[error("{0}")]
    Refused(String),
    /// A peer answered with something that is not the expected JSON.
    #[error("{0}")]
    Unreadable(String),
    /// The request could not be built (a bad URL, a token a header cannot carry,
    /// a bad request id).
    #[error("{0}")]
    Invalid(String),
    /// Writing a streamed answer to the caller's output failed.
    #[error("writing the answer: {0}")]
    Output(String),
    /// Building keys, certificates or TLS configs failed.
    #[error(transparent)]
    Tls(#[from] orion_tls::TlsError),
}

pub type Result<T, E = ClientError> = std::result::Result<T, E>;
