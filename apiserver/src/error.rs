//! Errors. Every API failure leaves as `{"error": {"code", "message", ...}}` with
//! the status its code maps to; request bodies are parsed with errors that name the
//! problem. [`Error`] is what stops a peer (API errors are [`orion_api::ApiError`]).

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use orion_api::{ApiError, ErrorBody, ErrorCode};
use orion_raft::{MembershipRefusal, TransferRefusal};
use serde::de::DeserializeOwned;

/// An [`ApiError`] on its way out as an HTTP response.
#[derive(Debug)]
pub struct HttpError(pub ApiError);

impl From<ApiError> for HttpError {
    fn from(e: ApiError) -> Self {
        HttpError(e)
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.0.code.http_status())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, Json(ErrorBody { error: self.0 })).into_response()
    }
}

pub type HttpResult<T> = std::result::Result<T, HttpError>;

/// A refused membership change as the API reports it: `409` when an id or address
/// is already taken, `404` for an unknown member, `400` for an impossible change.
pub fn membership_refusal(r: MembershipRefusal) -> ApiError {
    match r {
        MembershipRefusal::UnknownMember { .. } => ApiError::not_found(r.to_string()),
        r if r.is_conflict() => ApiError::conflict(r.to_string(), 0, None),
        r => ApiError::invalid(r.to_string()),
    }
}

/// A leadership transfer that was refused or did not complete: `404` for an
/// unknown member, otherwise `409`: the request is well formed but the cluster's
/// state does not allow it (the target leads already, is a learner, is down or
/// behind). Not `503`: a client would try the next peer, which would start another
/// transfer.
pub fn transfer_refusal(r: TransferRefusal) -> ApiError {
    if r.is_not_found() {
        ApiError::not_found(r.to_string())
    } else {
        ApiError::new(ErrorCode::Conflict, r.to_string())
    }
}

impl From<MembershipRefusal> for HttpError {
    fn from(r: MembershipRefusal) -> Self {
        HttpError(membership_refusal(r))
    }
}

/// A JSON request body. Unlike axum's `Json`, every failure is a JSON error body:
/// 413 over the size limit, 400 with line and column for malformed JSON or a wrong field.
pub struct JsonBody<T>(pub T);

impl<S, T> FromRequest<S> for JsonBody<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = HttpError;

    async fn from_request(req: Request, state: &S) -> std::result::Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                too_large()
            } else {
                ApiError::invalid(format!(
                    "cannot read request body: {}",
                    rejection.body_text()
                ))
            }
        })?;
        if bytes.is_empty() {
            return Err(
                ApiError::invalid("request body is empty; a JSON object is expected").into(),
            );
        }
        match serde_json::from_slice(&bytes) {
            Ok(value) => Ok(JsonBody(value)),
            Err(e) => integral_floats_as_integers(&bytes)
                .map(JsonBody)
                .ok_or_else(|| ApiError::invalid(format!("invalid JSON body: {e}")).into()),
        }
    }
}

/// The body again, with every whole-number float (`300.0`, `1e3`) read as the
/// integer it is: JSON has one number type, and JSON Schema's `integer` includes
/// them, so a client that sends `"ttl_seconds": 300.0` is understood (found by
/// schemathesis). `None` when that changes nothing or does not help.
fn integral_floats_as_integers<T: DeserializeOwned>(bytes: &[u8]) -> Option<T> {
    fn fix(v: &mut serde_json::Value) -> bool {
        match v {
            serde_json::Value::Number(n) if n.is_f64() => {
                let f = n.as_f64().unwrap_or(f64::NAN);
                // Exactly representable whole numbers only (below 2^53).
                if f.fract() == 0.0 && f.abs() < 9_007_199_254_740_992.0 {
                    *v = if f < 0.0 {
                        serde_json::Value::from(f as i64)
                    } else {
                        serde_json::Value::from(f as u64)
                    };
                    return true;
                }
                false
            }
            serde_json::Value::Array(items) => items.iter_mut().fold(false, |c, i| fix(i) | c),
            serde_json::Value::Object(map) => map.values_mut().fold(false, |c, i| fix(i) | c),
            _ => false,
        }
    }
    let mut value: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    if !fix(&mut value) {
        return None;
    }
    serde_json::from_value(value).ok()
}

/// What an oversized body is read (and dropped) up to before the 413 is sent.
const DRAIN_CAP: u64 = 16 << 20;
/// How long that reading may take.
const DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(10);

fn too_large() -> ApiError {
    ApiError::new(
        ErrorCode::PayloadTooLarge,
        "request body is over the size limit (max-body-bytes)",
    )
}

/// Refuses a request whose `Content-Length` is over `limit` with 413 — after
/// reading and dropping its body (up to 16 MiB, for up to 10 s). Answering at once
/// and closing the connection while the client is still sending makes the client
/// fail on a broken pipe instead of reading the 413 (seen in the test suite).
pub async fn refuse_oversized(
    axum::extract::State(limit): axum::extract::State<usize>,
    req: Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let declared = req
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let Some(len) = declared.filter(|len| *len > limit as u64) else {
        return next.run(req).await;
    };
    if len <= DRAIN_CAP {
        let mut body = req.into_body().into_data_stream();
        let drain = async { while let Some(Ok(_)) = futures::StreamExt::next(&mut body).await {} };
        let _ = tokio::time::timeout(DRAIN_TIME, drain).await;
    }
    HttpError(too_large()).into_response()
}

/// Answer for any path no route matches: `no_such_route`, never `not_found`, so a
/// wrong URL is not taken for a missing object.
pub async fn no_route(req: Request) -> HttpError {
    HttpError(ApiError::no_such_route(format!(
        "no such route: {} {} (the API is described at GET /v1/openapi.json)",
        req.method(),
        req.uri().path()
    )))
}

/// Gives every error answer the JSON error body. Most already have it; what axum
/// itself answers (a query string or a path segment that does not parse) is
/// plain text, and is rewritten here with the code its status maps to and the
/// text as the message (which names the parameter).
pub async fn json_errors(req: Request, next: axum::middleware::Next) -> Response {
    let response = next.run(req).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let is_json = response
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if is_json {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = match axum::body::to_bytes(body, 64 << 10).await {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(_) => String::new(),
    };
    let code = code_for_status(status);
    let message = if text.trim().is_empty() {
        status
            .canonical_reason()
            .unwrap_or("request refused")
            .to_string()
    } else {
        text
    };
    let mut out = HttpError(ApiError::new(code, message)).into_response();
    *out.status_mut() = parts.status;
    out
}

/// The error code of an answer that came without one, by its status.
fn code_for_status(status: StatusCode) -> ErrorCode {
    match status.as_u16() {
        401 => ErrorCode::Unauthenticated,
        403 => ErrorCode::PermissionDenied,
        404 => ErrorCode::NotFound,
        405 => ErrorCode::MethodNotAllowed,
        409 => ErrorCode::Conflict,
        410 => ErrorCode::RelistRequired,
        413 => ErrorCode::PayloadTooLarge,
        429 => ErrorCode::TooManyRequests,
        503 => ErrorCode::Unavailable,
        s if s >= 500 => ErrorCode::Internal,
        _ => ErrorCode::InvalidArgument,
    }
}

/// Answer for a known path with a method it does not take.
pub async fn wrong_method(req: Request) -> HttpError {
    HttpError(ApiError::new(
        ErrorCode::MethodNotAllowed,
        format!("{} is not allowed on {}", req.method(), req.uri().path()),
    ))
}

/// Fatal errors that stop a peer (API errors are [`orion_api::ApiError`]).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("cannot listen on {addr}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("joining the cluster failed: {0}")]
    Join(String),
    /// This peer was removed from its cluster (or superseded by a forced new
    /// cluster): it must not run with this data again.
    #[error("{0}; it cannot take part again with this data: start a fresh peer with a new id and an empty data directory (README: Backup, restore and recovery)")]
    Removed(String),
    #[error(transparent)]
    Raft(#[from] orion_raft::Error),
    #[error("peer transport: {0}")]
    PeerTransport(#[from] tonic::transport::Error),
    #[error(transparent)]
    DataFormat(#[from] crate::data_format::FormatError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_number_floats_are_integers_and_others_are_not() {
        let token: Option<orion_api::security::CreateToken> =
            integral_floats_as_integers(br#"{"role":"admin","ttl_seconds":21687.0}"#);
        assert_eq!(token.map(|t| t.ttl_seconds), Some(21687));
        let half: Option<orion_api::security::CreateToken> =
            integral_floats_as_integers(br#"{"role":"admin","ttl_seconds":1.5}"#);
        assert!(half.is_none());
        let plain: Option<orion_api::security::CreateToken> =
            integral_floats_as_integers(br#"{"role":"admin","ttl_seconds":3}"#);
        assert!(
            plain.is_none(),
            "nothing to fix: the first parse's error stands"
        );
    }

    #[test]
    fn answers_without_a_code_get_one_by_status() {
        assert_eq!(
            code_for_status(StatusCode::BAD_REQUEST),
            ErrorCode::InvalidArgument
        );
        assert_eq!(code_for_status(StatusCode::NOT_FOUND), ErrorCode::NotFound);
        assert_eq!(
            code_for_status(StatusCode::INTERNAL_SERVER_ERROR),
            ErrorCode::Internal
        );
    }
}
