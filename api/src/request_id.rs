//! Client request ids: what makes a retried write apply once.

use serde::{Deserialize, Serialize};

/// Longest request id the log accepts, in bytes (a client key of at most 128 bytes
/// plus the caller it is scoped by).
pub const MAX_REQUEST_ID_LEN: usize = 256;

/// A client request id: names one logical write, so that sending it again (after a
/// lost answer or a leader change) applies it once. Clients send it as the
/// `Idempotency-Key` header; the first peer makes one up when a client sends none.
/// 1 to [`MAX_REQUEST_ID_LEN`] visible ASCII characters, no quote or backslash.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RequestId(String);

impl RequestId {
    /// Checks `id`; the error says what is wrong with it.
    pub fn parse(id: &str) -> Result<Self, crate::Invalid> {
        Self::check(id).map_err(crate::Invalid)
    }

    fn check(id: &str) -> Result<Self, String> {
        if id.is_empty() {
            return Err("the request id is empty".into());
        }
        if id.len() > MAX_REQUEST_ID_LEN {
            return Err(format!(
                "the request id is {} bytes long; the limit is {MAX_REQUEST_ID_LEN}",
                id.len()
            ));
        }
        if let Some(bad) = id
            .chars()
            .find(|c| !c.is_ascii_graphic() || *c == '"' || *c == '\\')
        {
            return Err(format!(
                "the request id holds {bad:?}; only visible ASCII characters other than \
                 '\"' and '\\' are allowed"
            ));
        }
        Ok(RequestId(id.to_string()))
    }

    /// A new random id (128 bits, hex), for a write whose client sent none.
    pub fn random() -> Self {
        RequestId(format!("{:032x}", rand::random::<u128>()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for RequestId {
    type Error = crate::Invalid;
    fn try_from(s: String) -> Result<Self, crate::Invalid> {
        RequestId::parse(&s)
    }
}

impl From<RequestId> for String {
    fn from(id: RequestId) -> Self {
        id.0
    }
}

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
