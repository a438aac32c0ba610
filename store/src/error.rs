//! The crate's error type.
//!
//! Everything here is fatal for the node that sees it: the store is broken or its
//! files are damaged. openraft receives these wrapped in a `StorageError` (with the
//! subject and verb of the failed operation) and shuts the Raft node down.

use std::path::PathBuf;

/// Result of a store operation.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// RocksDB reported an error (I/O, corruption, lock held by another process...).
    #[error("rocksdb: {0}")]
    RocksDb(#[from] rocksdb::Error),

    /// A value could not be encoded, or a stored value could not be decoded.
    #[error("cannot encode or decode {what}: {source}")]
    Codec {
        /// What was being encoded or decoded, e.g. "log entry".
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },

    /// A file-system operation on the store's folder failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// The operation, e.g. "write".
        op: &'static str,
        /// The file or folder it was applied to.
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The database lacks a column family this crate creates on open.
    #[error("column family `{0}` is missing from the database")]
    MissingColumnFamily(&'static str),

    /// A key on disk does not have the shape this crate writes.
    #[error("corrupt key in column family `{cf}`: {detail}")]
    CorruptKey {
        /// The column family holding the key.
        cf: &'static str,
        /// What is wrong with it.
        detail: String,
    },

    /// A snapshot buffer is damaged or not a snapshot of this format; it was refused.
    #[error("corrupt snapshot: {0}")]
    CorruptSnapshot(String),

    /// A snapshot's own header disagrees with the metadata it was installed with.
    #[error("snapshot data does not match its metadata: {0}")]
    SnapshotMismatch(String),

    /// The group-commit thread is gone, so appends can no longer be made durable.
    #[error("the group-commit thread has stopped")]
    GroupCommitStopped,

    /// A metric could not be made (an invalid name or bucket list: a bug).
    #[error("cannot make a metric: {0}")]
    Metrics(String),

    /// The applier saw a read error; the `apply` call fails rather than let this replica
    /// compute a different result from the others.
    #[error("state-machine read failed during apply: {0}")]
    ApplyRead(String),

    /// A blocking task running store work panicked or was cancelled.
    #[error("blocking store task failed: {0}")]
    Task(String),
}

impl Error {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }
}
