//! Wire encoding of openraft RPCs inside the gRPC [`RaftPayload`](crate::proto::RaftPayload).
//!
//! openraft's request and response types are serde types; JSON keeps them readable
//! in a packet capture and needs no schema of its own. A remote Raft error is
//! encoded inside the payload so the caller sees the exact error, not a status string.

use serde::{de::DeserializeOwned, Serialize};

/// A payload that could not be encoded, or that does not decode as the expected
/// openraft message.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("encode: {0}")]
    Encode(serde_json::Error),
    #[error("decode: {0}")]
    Decode(serde_json::Error),
}

pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, CodecError> {
    serde_json::to_vec(value).map_err(CodecError::Encode)
}

pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    serde_json::from_slice(bytes).map_err(CodecError::Decode)
}
