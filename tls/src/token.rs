//! Tokens: `orion.<claims>.<signature>`, both parts base64url without padding; the
//! signature is HMAC-SHA256 over the claims part with the cluster's token key.
//!
//! A token is valid only if its signature checks, it has not expired, and the
//! replicated state holds an unrevoked record of its id (checked by the API server),
//! so revoking is one Raft write and takes effect on every peer as it applies.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};

/// What a token lets its bearer do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum TokenRole {
    /// Read only: no logs, no exec, no secret values.
    Readonly,
    /// Workloads and variables: apply, delete, logs, exec; reads everything.
    Developer,
    /// Everything, including membership and tokens.
    Admin,
    /// Single use: a new control-plane peer exchanges it for a server certificate.
    Server,
    /// Single use: a new agent exchanges it for an agent certificate.
    Agent,
}

impl TokenRole {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenRole::Readonly => "readonly",
            TokenRole::Developer => "developer",
            TokenRole::Admin => "admin",
            TokenRole::Server => "server",
            TokenRole::Agent => "agent",
        }
    }

    /// Join tokens are spent by their first use.
    pub fn is_join(self) -> bool {
        matches!(self, TokenRole::Server | TokenRole::Agent)
    }
}

impl std::str::FromStr for TokenRole {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "readonly" => TokenRole::Readonly,
            "developer" => TokenRole::Developer,
            "admin" => TokenRole::Admin,
            "server" => TokenRole::Server,
            "agent" => TokenRole::Agent,
            other => {
                return Err(format!(
                    "unknown role {other:?}: use admin, developer, readonly, server or agent"
                ))
            }
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Claims {
    /// Unique id; the replicated record of the token is kept under it.
    pub id: String,
    pub role: TokenRole,
    /// Expiry, in seconds since the Unix epoch.
    pub exp: u64,
    /// SHA-256 of the cluster CA certificate (hex).
    pub ca: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token is malformed: {0}")]
    Malformed(String),
    #[error("the token's signature is not valid for this cluster")]
    BadSignature,
    #[error("the token expired")]
    Expired,
}

const PREFIX: &str = "orion.";

/// A new random token id.
pub fn new_id() -> String {
    let bytes: [u8; 12] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A new random signing key (hex).
pub fn new_key() -> String {
    let bytes: [u8; 32] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn hmac_key(key: &str) -> ring::hmac::Key {
    ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key.as_bytes())
}

pub fn sign(claims: &Claims, key: &str) -> String {
    // Serializing a plain struct of strings and integers cannot fail.
    let json = serde_json::to_vec(claims).unwrap_or_default();
    sign_claims_json(&json, key)
}

/// A token for these claims bytes, as they are (the fuzz checks sign bad claims).
pub(crate) fn sign_claims_json(json: &[u8], key: &str) -> String {
    let body = URL_SAFE_NO_PAD.encode(json);
    let tag = ring::hmac::sign(&hmac_key(key), body.as_bytes());
    format!("{PREFIX}{body}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
}

/// Longest token accepted, in bytes. Real tokens are under 300; the bound keeps
/// an unauthenticated caller from making the server decode and hash megabytes.
pub const MAX_TOKEN_LEN: usize = 4096;

fn split(token: &str) -> Result<(&str, &str), TokenError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(TokenError::Malformed(format!(
            "it is {} bytes long; at most {MAX_TOKEN_LEN}",
            token.len()
        )));
    }
    let rest = token
        .trim()
        .strip_prefix(PREFIX)
        .ok_or_else(|| TokenError::Malformed("it does not start with \"orion.\"".into()))?;
    rest.split_once('.')
        .ok_or_else(|| TokenError::Malformed("it has no signature part".into()))
}

fn decode_claims(body: &str) -> Result<Claims, TokenError> {
    let json = URL_SAFE_NO_PAD
        .decode(body)
        .map_err(|e| TokenError::Malformed(format!("claims: {e}")))?;
    serde_json::from_slice(&json).map_err(|e| TokenError::Malformed(format!("claims: {e}")))
}

/// The claims, without checking the signature: only for reading the CA
/// fingerprint before the cluster is trusted. Never for authorization.
pub fn peek(token: &str) -> Result<Claims, TokenError> {
    decode_claims(split(token)?.0)
}

/// Checks signature and expiry; `now` in seconds since the epoch. The signature
/// is compared in constant time (`ring::hmac::verify`), before the claims are read.
pub fn verify(token: &str, key: &str, now: u64) -> Result<Claims, TokenError> {
    let (body, sig) = split(token)?;
    let sig = URL_SAFE_NO_PAD
        .decode(sig)
        .map_err(|_| TokenError::BadSignature)?;
    ring::hmac::verify(&hmac_key(key), body.as_bytes(), &sig)
        .map_err(|_| TokenError::BadSignature)?;
    let claims = decode_claims(body)?;
    if claims.exp <= now {
        return Err(TokenError::Expired);
    }
    Ok(claims)
}

/// The CSRF token of a browser session that carries the token with id `token_id`:
/// an HMAC under the cluster's token key, so every peer can check it and nobody
/// without the key (or the session) can make one. Sent by the page as a header on
/// every write; a cross-site form cannot set headers.
pub fn csrf_token(token_id: &str, key: &str) -> String {
    let tag = ring::hmac::sign(
        &hmac_key(key),
        format!("orion-ui-csrf\0{token_id}").as_bytes(),
    );
    URL_SAFE_NO_PAD.encode(tag.as_ref())
}

/// Whether `csrf` is the CSRF token of sessions of token `token_id` (constant time).
pub fn csrf_matches(csrf: &str, token_id: &str, key: &str) -> bool {
    let Ok(tag) = URL_SAFE_NO_PAD.decode(csrf.trim()) else {
        return false;
    };
    ring::hmac::verify(
        &hmac_key(key),
        format!("orion-ui-csrf\0{token_id}").as_bytes(),
        &tag,
    )
    .is_ok()
}

/// Seconds since the Unix epoch.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csrf_tokens_are_bound_to_the_token_and_the_key() {
        let key = new_key();
        let csrf = csrf_token("abc", &key);
        assert!(csrf_matches(&csrf, "abc", &key));
        assert!(!csrf_matches(&csrf, "abd", &key));
        assert!(!csrf_matches(&csrf, "abc", &new_key()));
        assert!(!csrf_matches("", "abc", &key));
        assert!(!csrf_matches("not base64!", "abc", &key));
    }

    fn claims(exp: u64) -> Claims {
        Claims {
            id: new_id(),
            role: TokenRole::Developer,
            exp,
            ca: "ab".into(),
        }
    }

    #[test]
    fn a_signed_token_verifies_and_peeks() {
        let key = new_key();
        let c = claims(now() + 60);
        let t = sign(&c, &key);
        assert_eq!(verify(&t, &key, now()), Ok(c.clone()));
        assert_eq!(peek(&t), Ok(c));
    }

    #[test]
    fn wrong_key_expiry_and_tampering_are_refused() {
        let key = new_key();
        let t = sign(&claims(now() + 60), &key);
        assert_eq!(verify(&t, &new_key(), now()), Err(TokenError::BadSignature));
        assert_eq!(
            verify(&sign(&claims(now() - 1), &key), &key, now()),
            Err(TokenError::Expired)
        );
        // Swap in other claims under the old signature.
        let admin = Claims {
            role: TokenRole::Admin,
            ..claims(now() + 60)
        };
        let forged_body = sign(&admin, &new_key());
        let (_, sig) = t.rsplit_once('.').expect("sig");
        let (body, _) = forged_body.rsplit_once('.').expect("body");
        assert_eq!(
            verify(&format!("{body}.{sig}"), &key, now()),
            Err(TokenError::BadSignature)
        );
        assert!(matches!(
            verify("Bearer xyz", &key, now()),
            Err(TokenError::Malformed(_))
        ));
    }
}
