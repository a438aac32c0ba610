//! Every REST call Orion makes goes through this crate: the CLI, the agent, peers
//! joining a cluster, the bench, the fault-injection harness and the tests.
//!
//! - [`api`]: one typed call per endpoint on [`Client`] (variables, apply,
//!   services, nodes, replicas, logs, exec, watch, events, members, status,
//!   tokens, join), with the request and answer types of `orion-api`; the paths
//!   and query strings live there only.
//! - [`rest`]: [`Client`] itself, calls over TLS with the caller's token that fail
//!   over between peers, writes retried under one request id, and the builder of
//!   its timeouts and retry policy.
//! - [`join`]: trading a join token for a certificate (CA pinned by the token's
//!   fingerprint), and renewing it with the current certificate.

pub mod api;
pub mod join;
pub mod rest;

pub use api::{Consistency, EventQuery, LogQuery, NodeAction, VariableQuery, WatchQuery};
pub use reqwest::StatusCode;
pub use rest::{
    http_builder, Client, ClientBuilder, NoteHook, Stream, WriteRetry, CALL_TIMEOUT,
    CONNECT_TIMEOUT, IDEMPOTENCY_KEY, MAX_REQUEST_ID_LEN, WRITE_RETRY_BUDGET,
};

use std::time::Duration;

use orion_api::{ApiError, ErrorCode};

/// What a call through this crate can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The cluster answered with an error.
    #[error("{error} ({status})")]
    Api { status: StatusCode, error: ApiError },
    /// No peer could be reached.
    #[error("no Orion peer answered: {0}")]
    Unreachable(String),
    /// No peer answered a write (within the retry budget, if it was retried) after
    /// one may have received it: the one case where the outcome is not known.
    #[error(
        "no Orion peer answered the write{}, after one may have received it ({cause}); \
         whether it was applied is unknown. Sending it again is safe: rerun the command \
         with --request-id {request_id} and it applies at most once",
        retried(*budget)
    )]
    Unknown {
        request_id: String,
        cause: String,
        /// How long it was retried; `None` for a client that does not retry.
        budget: Option<Duration>,
    },
    /// The cluster said no to a join or renewal (a used, expired or revoked token),
    /// or it is not the cluster the token was made for. Retrying will not help.
    #[error("{0}")]
    Refused(String),
    /// A peer answered success with something that is not the expected JSON, or
    /// the answer broke off while it was read.
    #[error("{0}")]
    Unreadable(String),
    /// A stream the caller reads ([`Stream`]) broke after it opened.
    #[error("the stream broke: {0}")]
    Broken(String),
    /// The request could not be built (a bad URL, a token a header cannot carry,
    /// a bad request id, an empty name).
    #[error("{0}")]
    Invalid(String),
    /// Writing a streamed answer to the caller's output failed.
    #[error("writing the answer: {0}")]
    Output(String),
    /// Building keys, certificates or TLS configs failed.
    #[error(transparent)]
    Tls(#[from] orion_tls::TlsError),
}

fn retried(budget: Option<Duration>) -> String {
    budget.map_or(String::new(), |b| {
        format!(" within {} s of retries", b.as_secs())
    })
}

impl ClientError {
    /// The status of the cluster's answer, if it gave one.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            ClientError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The API error the cluster answered with, if it did.
    pub fn api_error(&self) -> Option<&ApiError> {
        match self {
            ClientError::Api { error, .. } => Some(error),
            _ => None,
        }
    }

    /// The cluster answered `404` for a missing object (variable, service, member…).
    /// A URL no route has is not that: see [`ClientError::is_no_such_route`].
    pub fn is_not_found(&self) -> bool {
        self.status() == Some(StatusCode::NOT_FOUND) && !self.is_no_such_route()
    }

    /// The cluster has no route for the URL (`404`, code `no_such_route`): a wrong
    /// path, or a server older than this client.
    pub fn is_no_such_route(&self) -> bool {
        self.api_error()
            .is_some_and(|e| e.code == ErrorCode::NoSuchRoute)
    }

    /// A compare-and-set (or create-only write) found another revision: `409`.
    pub fn is_conflict(&self) -> bool {
        self.status() == Some(StatusCode::CONFLICT)
    }

    /// The position of a watch left the event window: list again.
    pub fn is_relist_required(&self) -> bool {
        self.api_error()
            .is_some_and(|e| e.code == ErrorCode::RelistRequired)
    }
}

pub type Result<T, E = ClientError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_outcome_names_the_request_id_and_the_budget_only_if_retried() {
        let e = ClientError::Unknown {
            request_id: "w-1".into(),
            cause: "https://a:1: connection reset".into(),
            budget: Some(WRITE_RETRY_BUDGET),
        };
        let text = e.to_string();
        assert!(text.contains("within 20 s of retries"), "{text}");
        assert!(text.contains("--request-id w-1"), "{text}");
        let once = ClientError::Unknown {
            request_id: "w-2".into(),
            cause: "x".into(),
            budget: None,
        };
        assert!(
            once.to_string()
                .starts_with("no Orion peer answered the write, after one may"),
            "{once}"
        );
    }

    #[test]
    fn status_helpers_read_the_api_answer() {
        let conflict = ClientError::Api {
            status: StatusCode::CONFLICT,
            error: ApiError::conflict("revision 3, not 2", 3, Some(serde_json::json!({"v": 1}))),
        };
        assert!(conflict.is_conflict() && !conflict.is_not_found());
        assert_eq!(
            conflict.api_error().and_then(|e| e.current_revision),
            Some(3)
        );
        assert_eq!(
            conflict
                .api_error()
                .and_then(|e| e.current_value.as_deref().cloned()),
            Some(serde_json::json!({"v": 1}))
        );
        assert_eq!(conflict.to_string(), "revision 3, not 2 (409 Conflict)");
        let no_route = ClientError::Api {
            status: StatusCode::NOT_FOUND,
            error: ApiError::no_such_route("no such route: GET /v1/nope"),
        };
        assert!(no_route.is_no_such_route() && !no_route.is_not_found());
        let missing = ClientError::Api {
            status: StatusCode::NOT_FOUND,
            error: ApiError::not_found("variable \"a\" does not exist"),
        };
        assert!(missing.is_not_found() && !missing.is_no_such_route());
        let gone = ClientError::Api {
            status: StatusCode::GONE,
            error: ApiError::new(ErrorCode::RelistRequired, "compacted"),
        };
        assert!(gone.is_relist_required());
        assert_eq!(ClientError::Unreachable("x".into()).status(), None);
    }
}
