//! [`StateReader`] and [`View`]: read-only, point-in-time access for API reads.

use std::sync::Arc;

use openraft::LogId;
use rocksdb::{Direction, IteratorMode, SnapshotWithThreadMode, DB};

use crate::codec::decode;
use crate::db::cf;
use crate::error::Result;
use crate::keys::{CF_SM, CF_SM_META, LAST_APPLIED};
use crate::scan::{scan_prefix, seek_key, Pending};

/// Read-only access to the state machine for API reads; cheap to clone.
#[derive(Clone)]
pub struct StateReader {
    db: Arc<DB>,
}

impl StateReader {
    pub(crate) fn new(db: Arc<DB>) -> Self {
        Self { db }
    }

    /// The database, for exports ([`crate::backup`]).
    pub(crate) fn db(&self) -> &Arc<DB> {
        &self.db
    }

    /// Run `f` against one consistent point-in-time view (a RocksDB snapshot).
    pub fn with_view<T>(&self, f: impl FnOnce(&View<'_>) -> T) -> T {
        let view = View {
            db: &self.db,
            snapshot: self.db.snapshot(),
        };
        f(&view)
    }
}

/// A consistent point-in-time view of the state machine.
pub struct View<'a> {
    db: &'a DB,
    snapshot: SnapshotWithThreadMode<'a, DB>,
}

impl View<'_> {
    /// The value of `key`.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.snapshot.get_cf(cf(self.db, CF_SM)?, key)?)
    }

    /// Keys starting with `prefix`, in key order, strictly after `start_after` if given,
    /// at most `limit`.
    pub fn scan_prefix(
        &self,
        prefix: &[u8],
        start_after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let seek = seek_key(prefix, start_after);
        let stored = self.snapshot.iterator_cf(
            cf(self.db, CF_SM)?,
            IteratorMode::From(&seek, Direction::Forward),
        );
        scan_prefix(stored, &Pending::new(), prefix, start_after, limit)
    }

    /// Index of the last applied log entry (0 if none).
    pub fn last_applied_index(&self) -> Result<u64> {
        let stored = self
            .snapshot
            .get_cf(cf(self.db, CF_SM_META)?, LAST_APPLIED)?;
        let last_applied: Option<LogId<u64>> = stored
            .map(|bytes| decode("last applied log id", &bytes))
            .transpose()?;
        Ok(last_applied.map_or(0, |id| id.index))
    }
}
