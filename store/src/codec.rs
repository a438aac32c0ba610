//! Encoding of the values this crate stores (everything but the applier's own data).
//!
//! JSON via serde: the entry payload type comes from the raft crate and already derives
//! serde, and JSON keeps the on-disk values readable with `ldb` when debugging.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{Error, Result};

/// Encode `value`; `what` names it in the error.
pub(crate) fn encode<T: Serialize>(what: &'static str, value: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(|source| Error::Codec { what, source })
}

/// Decode a value read from disk; `what` names it in the error.
pub(crate) fn decode<T: DeserializeOwned>(what: &'static str, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|source| Error::Codec { what, source })
}
