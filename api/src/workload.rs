//! Workload objects as the API stores and returns them, and the `apply` exchange.

use serde::{Deserialize, Serialize};

use crate::spec::ServiceSpec;

/// A stored service: the spec as applied, with its revisions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceObject {
    pub spec: ServiceSpec,
    pub create_revision: u64,
    pub mod_revision: u64,
    /// Bumped on every change of the spec; replicas record the generation they run.
    pub generation: u64,
}

/// One file of an `orion apply`, sent as text so the server parses and validates it
/// with file, line and column in every error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceFile {
    pub name: String,
    pub content: String,
}

/// Body of `POST /v1/apply`: every resource of every file is applied in one Raft
/// entry, or none is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApplyRequest {
    pub files: Vec<SourceFile>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    Created,
    Configured,
    Unchanged,
}

/// What applying one resource did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplyResult {
    pub kind: String,
    pub name: String,
    pub change: Change,
    /// The object's `mod_revision` after the apply.
    pub mod_revision: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplyResponse {
    pub revision: u64,
    pub results: Vec<ApplyResult>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceList {
    pub revision: u64,
    pub items: Vec<ServiceObject>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceResponse {
    pub revision: u64,
    pub service: ServiceObject,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeletedService {
    pub revision: u64,
    pub deleted: ServiceObject,
}
