//! Wire encoding of openraft RPCs inside the gRPC [`RaftPayload`](crate::proto::RaftPayload).
//!
//! openraft's request and response types are serde types; JSON keeps them readable
//! in a packet capture and needs no schema of its own. A remote Raft error is
//! encoded inside the payload so the caller sees the exact error, not a status string.

use serde::{de::DeserializeOwned, Serialize};

pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, String> {
    serde_json::to_vec(value).map_err(|e| format!("encode: {e}"))
}

pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    serde_json::from_slice(bytes).map_err(|e| format!("decode: {e}"))
}
