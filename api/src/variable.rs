//! The `Variable` kind: a small value at a path, versioned by cluster revision.

use serde::{Deserialize, Serialize};

/// Longest accepted variable path, in bytes.
pub const MAX_PATH_LEN: usize = 512;

/// A stored variable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Variable {
    pub path: String,
    pub value: String,
    /// Revision of the write that created this variable (unchanged by updates).
    pub create_revision: u64,
    /// Revision of the last write to this variable.
    pub mod_revision: u64,
    /// Number of writes since creation (1 after create).
    pub version: u64,
    /// A secret's value is never put in events, and `readonly` callers never see it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub secret: bool,
    /// Set when `value` was withheld from this caller.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub redacted: bool,
}

impl Variable {
    /// The variable without its value if it is a secret.
    pub fn redacted(mut self) -> Self {
        if self.secret {
            self.value = String::new();
            self.redacted = true;
        }
        self
    }
}

/// Body of `PUT /v1/variables/{path}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutVariable {
    pub value: String,
    /// Compare-and-set: the write applies only if the variable's `mod_revision`
    /// equals this. `0` means "only if it does not exist yet".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_revision: Option<u64>,
    /// Mark the value secret: kept out of events, hidden from `readonly` callers.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub secret: bool,
}

/// How a read was served.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ReadMeta {
    /// The cluster revision the read observed (last applied log index on the answering peer).
    pub revision: u64,
    /// `true` when answered from the local peer without confirming leadership (`?stale=true`).
    #[serde(default)]
    pub stale: bool,
    /// For stale reads: how many committed entries the answering peer had not applied yet,
    /// as far as it knew when it answered. Absent for linearizable reads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub behind_by: Option<u64>,
    /// Id of the peer that answered.
    pub served_by: u64,
}

/// Answer to a read of one variable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct VariableResponse {
    #[serde(flatten)]
    pub meta: ReadMeta,
    pub variable: Variable,
}

/// Answer to a prefix listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ListResponse {
    #[serde(flatten)]
    pub meta: ReadMeta,
    pub items: Vec<Variable>,
    /// Set when the listing was cut at `limit`: pass it as `start_after` to continue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// Answer to a successful put.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WriteResponse {
    pub revision: u64,
    pub variable: Variable,
}

/// Answer to a successful delete.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DeleteResponse {
    pub revision: u64,
    pub deleted: Variable,
}

/// Checks a variable path: 1..=512 bytes of `[A-Za-z0-9._-]` segments separated by
/// single `/`, no leading or trailing `/`, no `.` or `..` segment.
pub fn validate_path(path: &str) -> Result<(), crate::Invalid> {
    validate_path_text(path).map_err(crate::Invalid)
}

fn validate_path_text(path: &str) -> Result<(), String> {
    if path.is_empty() {
        return Err("variable path is empty".into());
    }
    if path.len() > MAX_PATH_LEN {
        return Err(format!(
            "variable path is {} bytes long; the limit is {MAX_PATH_LEN}",
            path.len()
        ));
    }
    for (i, segment) in path.split('/').enumerate() {
        if segment.is_empty() {
            return Err(format!(
                "variable path {path:?} has an empty segment (segment {}): use single '/' between names and none at either end",
                i + 1
            ));
        }
        if segment == "." || segment == ".." {
            return Err(format!("variable path {path:?} has a {segment:?} segment"));
        }
        if let Some(c) = segment
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
        {
            return Err(format!(
                "variable path {path:?} contains {c:?}: allowed are letters, digits, '.', '_', '-' and '/'"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::validate_path;

    #[test]
    fn accepts_ordinary_paths() {
        for p in ["a", "app/db/url", "x.y-z_1/2"] {
            assert_eq!(validate_path(p), Ok(()), "{p}");
        }
    }

    #[test]
    fn rejects_bad_paths_with_a_reason() {
        for (p, needle) in [
            ("", "empty"),
            ("/a", "empty segment"),
            ("a/", "empty segment"),
            ("a//b", "empty segment"),
            ("a/../b", "\"..\""),
            ("a b", "' '"),
            ("ä", "'ä'"),
        ] {
            let err = validate_path(p).expect_err(p);
            assert!(err.contains(needle), "{p}: {err}");
        }
        assert!(validate_path(&"a".repeat(513)).is_err());
    }
}
