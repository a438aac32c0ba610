//! The client request id of a write: the `Idempotency-Key` header (named as in the
//! IETF draft `draft-ietf-httpapi-idempotency-key-header`), or a random one when the
//! client sent none.
//!
//! The id goes into the Raft entry with the command, and the state machine applies a
//! given id once (see `orion_raft::session`), so this peer can retry the write at a
//! new leader, and a client can send it again, without applying it twice. The key is
//! scoped by the caller (`<caller>/<key>`): two callers' keys never meet.
//!
//! Bounds: 1 to [`MAX_KEY_LEN`] visible ASCII characters other than `"` and `\`; the
//! draft's quoted form (`"abc"`) is accepted too. Anything else is a 400 naming the
//! problem, before anything is proposed.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use orion_api::ApiError;
use orion_raft::command::MAX_REQUEST_ID_LEN;
use orion_raft::RequestId;

use crate::caller::Caller;
use crate::error::HttpError;

/// The header clients send the id in.
pub const HEADER: &str = "idempotency-key";

/// Longest key a client may send, in bytes (the caller scope is added on top).
pub const MAX_KEY_LEN: usize = 128;

/// A write's request id, scoped by its caller. Extracting it never fails for a
/// request without the header (a random id is made); a bad header is a 400.
#[derive(Debug, Clone)]
pub struct ClientRequestId(pub RequestId);

impl<S: Send + Sync> FromRequestParts<S> for ClientRequestId {
    type Rejection = HttpError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, HttpError> {
        let mut values = parts.headers.get_all(HEADER).iter();
        let Some(value) = values.next() else {
            return Ok(ClientRequestId(RequestId::random()));
        };
        if values.next().is_some() {
            return Err(bad("the header is sent more than once").into());
        }
        let text = value
            .to_str()
            .map_err(|_| bad("the header holds bytes that are not visible ASCII"))?;
        let key = parse_key(text).map_err(|m| bad(&m))?;
        let scope = match parts.extensions.get::<Caller>() {
            Some(Caller::Token { id, .. }) => format!("token:{id}"),
            Some(Caller::Cert(identity)) => {
                format!("cert:{}:{}", identity.role.as_str(), identity.name)
            }
            Some(Caller::Anonymous) | None => "anonymous".to_string(),
        };
        RequestId::parse(&format!("{scope}/{key}"))
            .map(ClientRequestId)
            .map_err(|m| bad(&m).into())
    }
}

/// The client's key in a scoped request id (a made-up id is all key).
pub fn client_key(id: &RequestId) -> &str {
    id.as_str()
        .split_once('/')
        .map_or(id.as_str(), |(_, key)| key)
}

/// Checks a client's key: the bare or quoted form, within [`MAX_KEY_LEN`].
pub fn parse_key(text: &str) -> Result<String, orion_api::Invalid> {
    let text = text.trim();
    let key = match text.strip_prefix('"') {
        Some(rest) => rest
            .strip_suffix('"')
            .ok_or("the quoted key has no closing '\"'")?,
        None => text,
    };
    if key.len() > MAX_KEY_LEN {
        return Err(orion_api::Invalid(format!(
            "the key is {} bytes long; the limit is {MAX_KEY_LEN}",
            key.len()
        )));
    }
    RequestId::parse(key).map(|_| key.to_string())
}

fn bad(why: &str) -> ApiError {
    ApiError::invalid(format!("Idempotency-Key: {why}"))
}

// The scoped id must fit what the state machine accepts, whatever the caller's name.
const _: () = assert!(MAX_KEY_LEN + 128 <= MAX_REQUEST_ID_LEN);

#[cfg(test)]
mod tests {
    use super::parse_key;

    #[test]
    fn keys_are_bounded_and_checked() {
        assert_eq!(parse_key("abc-123").as_deref(), Ok("abc-123"));
        assert_eq!(parse_key("\"abc\"").as_deref(), Ok("abc"));
        assert!(parse_key("").is_err());
        assert!(parse_key("\"abc").is_err());
        assert!(parse_key("a b").is_err());
        assert!(parse_key(&"x".repeat(129)).is_err_and(|e| e.contains("limit is 128")));
        assert!(parse_key(&"x".repeat(128)).is_ok());
    }
}
