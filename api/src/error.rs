//! The error body every endpoint returns: `{"error": {"code": ..., "message": ...}}`.

use serde::{Deserialize, Serialize};

/// Machine-readable error codes; each maps to one HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Malformed request: bad JSON, bad path, bad parameter. 400.
    InvalidArgument,
    /// The object does not exist (the route is known). 404.
    NotFound,
    /// No route has this path: a typo in the URL, or a server older than the
    /// client. Told apart from [`ErrorCode::NotFound`] so a client never takes a
    /// wrong URL for a missing object. 404.
    NoSuchRoute,
    /// Compare-and-set mismatch or an already-existing id. 409.
    Conflict,
    /// The method is not allowed on this route. 405.
    MethodNotAllowed,
    /// A watch asked to resume from a position that has left the event window: the
    /// client must list again and watch from the list's revision (Kubernetes'
    /// "410 Gone"). 410.
    RelistRequired,
    /// The body is over the size limit. 413.
    PayloadTooLarge,
    /// No credentials, or credentials that are expired, revoked or badly signed. 401.
    Unauthenticated,
    /// The credentials are good but their role may not do this. 403.
    PermissionDenied,
    /// Too many concurrent sessions of this kind. 429.
    TooManyRequests,
    /// No leader could be reached within the hold time. 503.
    Unavailable,
    /// Something broke inside the peer. 500.
    Internal,
}

impl ErrorCode {
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::InvalidArgument => 400,
            ErrorCode::NotFound | ErrorCode::NoSuchRoute => 404,
            ErrorCode::Conflict => 409,
            ErrorCode::MethodNotAllowed => 405,
            ErrorCode::RelistRequired => 410,
            ErrorCode::PayloadTooLarge => 413,
            ErrorCode::Unauthenticated => 401,
            ErrorCode::PermissionDenied => 403,
            ErrorCode::TooManyRequests => 429,
            ErrorCode::Unavailable => 503,
            ErrorCode::Internal => 500,
        }
    }
}

/// An API error with everything a client needs to act on it.
#[derive(
    Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error, utoipa::ToSchema,
)]
#[error("{message}")]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    /// On a conflict: the object's current `mod_revision` (0 if it does not exist).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_revision: Option<u64>,
    /// On a conflict: the object as it is now (`null` when it does not exist; a
    /// secret variable's value redacted), so a compare-and-set can be retried
    /// without another read. Absent on other errors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub current_value: Option<Box<serde_json::Value>>,
    /// On unavailability: the leader this peer last knew of.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader_hint: Option<u64>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError {
            code,
            message: message.into(),
            current_revision: None,
            current_value: None,
            leader_hint: None,
        }
    }
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidArgument, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, message)
    }
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unavailable, message)
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Internal, message)
    }
    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unauthenticated, message)
    }
    pub fn denied(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::PermissionDenied, message)
    }
    /// A conflict with what is there now: its revision (0 if absent) and the
    /// object itself (`None`: absent, sent as `null`).
    pub fn conflict(
        message: impl Into<String>,
        current_revision: u64,
        current_value: Option<serde_json::Value>,
    ) -> Self {
        ApiError {
            current_revision: Some(current_revision),
            current_value: Some(Box::new(current_value.unwrap_or(serde_json::Value::Null))),
            ..Self::new(ErrorCode::Conflict, message)
        }
    }
    pub fn no_such_route(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NoSuchRoute, message)
    }
}

/// Input that breaks a rule. The message names the input and the rule, ready to
/// show; `orion.yaml` errors add the file, line and column around it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

impl Invalid {
    pub fn message(&self) -> &str {
        &self.0
    }
}

/// The message, so an `Invalid` reads like the text it carries.
impl std::ops::Deref for Invalid {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl From<String> for Invalid {
    fn from(m: String) -> Self {
        Invalid(m)
    }
}

impl From<&str> for Invalid {
    fn from(m: &str) -> Self {
        Invalid(m.to_string())
    }
}

impl From<Invalid> for String {
    fn from(e: Invalid) -> Self {
        e.0
    }
}

/// The JSON envelope: `{"error": {...}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ApiError,
}
