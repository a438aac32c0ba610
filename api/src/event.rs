//! Change records kept in a bounded window so clients can watch from a revision.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    Put,
    Delete,
}

/// One change, as stored in the event window and sent on `GET /v1/watch`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// The revision of the write that made this change.
    pub revision: u64,
    pub kind: EventKind,
    /// The kind of object: `Variable`, `Service`.
    pub resource: String,
    /// The object's key within its kind (a variable's path, a service's name).
    pub key: String,
    /// The object after a put, or as it was just before a delete.
    pub object: serde_json::Value,
}
