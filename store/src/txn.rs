//! [`Txn`]: the write transaction one `apply` call gives the applier.

use std::cell::RefCell;

use rocksdb::{ColumnFamily, Direction, IteratorMode, WriteBatch, DB};

use crate::error::{Error, Result};
use crate::scan::{scan_prefix, seek_key, Pending};

/// A state-machine write transaction given to the [`Applier`](crate::Applier) for one
/// `apply` call (possibly many entries).
///
/// Writes are buffered and committed in one atomic `WriteBatch` together with the new
/// `last_applied` (and membership). Reads observe earlier writes of the same
/// transaction (an overlay over the database).
///
/// A read error is returned to the applier *and* remembered: the whole `apply` then
/// fails with a storage error, because an applier reacting to a local disk error would
/// make this replica diverge from the others.
pub struct Txn<'a> {
    db: &'a DB,
    sm: &'a ColumnFamily,
    /// Buffered writes: `Some` puts, `None` deletes.
    pending: Pending,
    /// The first read error, which fails the `apply` call.
    read_error: RefCell<Option<String>>,
    /// Reads of keys starting with this fail (test seam, feature `fault-injection`).
    #[cfg(feature = "fault-injection")]
    fail_reads: Option<Vec<u8>>,
}

impl<'a> Txn<'a> {
    pub(crate) fn new(db: &'a DB, sm: &'a ColumnFamily) -> Self {
        Self {
            db,
            sm,
            pending: Pending::new(),
            read_error: RefCell::new(None),
            #[cfg(feature = "fault-injection")]
            fail_reads: None,
        }
    }

    /// Makes every later read of a key under `prefix` fail as a disk error would.
    #[cfg(feature = "fault-injection")]
    pub fn fail_reads_under(&mut self, prefix: &[u8]) {
        self.fail_reads = Some(prefix.to_vec());
    }

    /// The injected failure for a read of `key`, if one is set up.
    #[cfg(feature = "fault-injection")]
    fn injected(&self, key: &[u8]) -> Result<()> {
        match &self.fail_reads {
            Some(prefix) if key.starts_with(prefix) => Err(self.remember(Error::io(
                "read",
                "state machine (injected)",
                std::io::Error::other("injected read failure"),
            ))),
            _ => Ok(()),
        }
    }

    #[cfg(not(feature = "fault-injection"))]
    fn injected(&self, _key: &[u8]) -> Result<()> {
        Ok(())
    }

    /// The value of `key`, including this transaction's own writes.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.injected(key)?;
        if let Some(write) = self.pending.get(key) {
            return Ok(write.clone());
        }
        self.db
            .get_cf(self.sm, key)
            .map_err(|e| self.remember(e.into()))
    }

    /// Set `key` to `value`.
    pub fn put(&mut self, key: &[u8], value: &[u8]) {
        self.pending.insert(key.to_vec(), Some(value.to_vec()));
    }

    /// Delete `key` (a no-op if it does not exist).
    pub fn delete(&mut self, key: &[u8]) {
        self.pending.insert(key.to_vec(), None);
    }

    /// Keys starting with `prefix`, in key order, strictly after `start_after` if given,
    /// at most `limit`, merged with this transaction's pending writes/deletes.
    pub fn scan_prefix(
        &self,
        prefix: &[u8],
        start_after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        self.injected(prefix)?;
        let seek = seek_key(prefix, start_after);
        let stored = self
            .db
            .iterator_cf(self.sm, IteratorMode::From(&seek, Direction::Forward));
        scan_prefix(stored, &self.pending, prefix, start_after, limit).map_err(|e| self.remember(e))
    }

    fn remember(&self, error: Error) -> Error {
        self.read_error
            .borrow_mut()
            .get_or_insert_with(|| error.to_string());
        error
    }

    /// The first read error the applier saw, if any.
    pub(crate) fn read_error(&self) -> Option<String> {
        self.read_error.borrow().clone()
    }

    /// Add the buffered writes to `batch`.
    pub(crate) fn write_into(self, batch: &mut WriteBatch) {
        for (key, write) in self.pending {
            match write {
                Some(value) => batch.put_cf(self.sm, key, value),
                None => batch.delete_cf(self.sm, key),
            }
        }
    }
}
