//! [`LogStore`]: the Raft log, the vote and the committed log id.
//!
//! # Durability
//!
//! - `append` writes without syncing, then the [group-commit thread](crate::group_commit)
//!   syncs the WAL and only then acknowledges the append to openraft.
//! - `save_vote`, `truncate` and `purge` are synced writes: they are durable when they
//!   return.
//! - `save_committed` is not synced. It is only written after the entries it points at,
//!   and RocksDB recovers a prefix of its WAL, so a recovered `committed` never points
//!   past the recovered log; losing the latest value only means re-applying a little.
//!
//! RocksDB keeps one WAL for all column families, so any synced write also makes every
//! earlier write durable — including the unsynced state-machine writes of `apply`.
//! `purge` relies on this: openraft purges only entries that are already applied, so
//! the sync of the purge first makes those applied state-machine writes durable. After
//! a crash the state machine is therefore never behind a purged log.

use std::fmt::Debug;
use std::io;
use std::marker::PhantomData;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{LogId, LogState, OptionalSend, RaftLogReader, StorageError, StorageIOError, Vote};
use rocksdb::{Direction, IteratorMode, WriteBatch, WriteOptions, DB};

use crate::codec::{decode, encode};
use crate::db::cf;
use crate::error::Result;
use crate::group_commit::GroupCommit;
use crate::keys::{log_index, log_key, CF_LOG, CF_META, COMMITTED, LAST_PURGED, VOTE};
use crate::metrics::StoreMetrics;
use crate::StoreConfig;

/// The Raft log storage. Clones share the database and the group-commit thread.
pub struct LogStore<C> {
    inner: Arc<Inner>,
    _config: PhantomData<fn() -> C>,
}

struct Inner {
    db: Arc<DB>,
    /// Syncs appends in groups; declared after `db` only for readability — it owns its
    /// own `Arc<DB>` and is joined when the last clone of the store is dropped.
    group_commit: GroupCommit,
    metrics: StoreMetrics,
}

impl<C> Clone for LogStore<C> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
            _config: PhantomData,
        }
    }
}

impl<C: StoreConfig> LogStore<C> {
    pub(crate) fn new(db: Arc<DB>) -> Result<Self> {
        let metrics = StoreMetrics::new()?;
        let group_commit = GroupCommit::start(Arc::clone(&db), metrics.fsync_seconds.clone())?;
        Ok(Self {
            inner: Arc::new(Inner {
                db,
                group_commit,
                metrics,
            }),
            _config: PhantomData,
        })
    }

    /// Number of WAL syncs done to acknowledge appends so far. Lower than the number of
    /// appends when several appends shared one sync (group commit).
    pub fn sync_count(&self) -> u64 {
        self.inner.group_commit.sync_count()
    }

    /// The WAL sync histogram and the commit index, for the peer to register in
    /// its metrics registry.
    pub fn metrics(&self) -> StoreMetrics {
        self.inner.metrics.clone()
    }

    /// Append `entries` and call `on_durable` once they are synced to disk (or with the
    /// error that prevented it). The entries are readable when this returns.
    ///
    /// This is what [`RaftLogStorage::append`] does with openraft's callback; it is public
    /// so tools and tests can append without a running Raft node.
    pub fn append_entries<I>(
        &self,
        entries: I,
        on_durable: impl FnOnce(io::Result<()>) + Send + 'static,
    ) -> Result<()>
    where
        I: IntoIterator<Item = C::Entry>,
    {
        let db = &self.inner.db;
        let log = cf(db, CF_LOG)?;
        let mut batch = WriteBatch::default();
        for entry in entries {
            batch.put_cf(
                log,
                log_key(entry.log_id.index),
                encode("log entry", &entry)?,
            );
        }
        // Not synced here: the group-commit thread syncs once for many appends.
        db.write(batch)?;
        self.inner.group_commit.submit(Box::new(on_durable))
    }

    fn synced_write(&self, batch: WriteBatch) -> Result<()> {
        let mut opts = WriteOptions::default();
        opts.set_sync(true);
        self.inner.db.write_opt(batch, &opts)?;
        Ok(())
    }

    fn read_meta<T: serde::de::DeserializeOwned>(
        &self,
        key: &[u8],
        what: &'static str,
    ) -> Result<Option<T>> {
        let db = &self.inner.db;
        db.get_cf(cf(db, CF_META)?, key)?
            .map(|bytes| decode(what, &bytes))
            .transpose()
    }

    fn read_entries<RB: RangeBounds<u64>>(&self, range: RB) -> Result<Vec<C::Entry>> {
        let start = match range.start_bound() {
            Bound::Included(i) => *i,
            Bound::Excluded(i) => match i.checked_add(1) {
                Some(i) => i,
                None => return Ok(Vec::new()),
            },
            Bound::Unbounded => 0,
        };
        let db = &self.inner.db;
        let from = log_key(start);
        let iter = db.iterator_cf(
            cf(db, CF_LOG)?,
            IteratorMode::From(&from, Direction::Forward),
        );
        let mut entries = Vec::new();
        for item in iter {
            let (key, value) = item?;
            if !range.contains(&log_index(&key)?) {
                break;
            }
            entries.push(decode("log entry", &value)?);
        }
        Ok(entries)
    }

    fn log_state(&self) -> Result<LogState<C>> {
        let last_purged_log_id: Option<LogId<u64>> =
            self.read_meta(LAST_PURGED, "last purged log id")?;
        let db = &self.inner.db;
        let last = match db.iterator_cf(cf(db, CF_LOG)?, IteratorMode::End).next() {
            Some(item) => {
                let (_, value) = item?;
                let entry: C::Entry = decode("log entry", &value)?;
                Some(entry.log_id)
            }
            None => None,
        };
        Ok(LogState {
            last_log_id: last.or(last_purged_log_id),
            last_purged_log_id,
        })
    }

    fn save_vote_synced(&self, vote: &Vote<u64>) -> Result<()> {
        let mut batch = WriteBatch::default();
        batch.put_cf(cf(&self.inner.db, CF_META)?, VOTE, encode("vote", vote)?);
        self.synced_write(batch)
    }

    fn write_committed(&self, committed: Option<LogId<u64>>) -> Result<()> {
        let db = &self.inner.db;
        let meta = cf(db, CF_META)?;
        match committed {
            Some(id) => db.put_cf(meta, COMMITTED, encode("committed log id", &id)?)?,
            None => db.delete_cf(meta, COMMITTED)?,
        }
        let index = committed.map_or(0, |id| id.index);
        self.inner
            .metrics
            .commit_index
            .set(i64::try_from(index).unwrap_or(i64::MAX));
        Ok(())
    }

    /// Delete entries with index >= `index`.
    fn truncate_from(&self, index: u64) -> Result<()> {
        let log = cf(&self.inner.db, CF_LOG)?;
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(log, log_key(index), log_key(u64::MAX));
        // The range end is exclusive.
        batch.delete_cf(log, log_key(u64::MAX));
        self.synced_write(batch)
    }

    /// Delete entries up to and including `upto`, and remember it as the last purged id.
    fn purge_upto(&self, upto: &LogId<u64>) -> Result<()> {
        let db = &self.inner.db;
        let log = cf(db, CF_LOG)?;
        let mut batch = WriteBatch::default();
        batch.put_cf(
            cf(db, CF_META)?,
            LAST_PURGED,
            encode("last purged log id", upto)?,
        );
        match upto.index.checked_add(1) {
            Some(end) => batch.delete_range_cf(log, log_key(0), log_key(end)),
            None => {
                batch.delete_range_cf(log, log_key(0), log_key(u64::MAX));
                batch.delete_cf(log, log_key(u64::MAX));
            }
        }
        // Synced, and the WAL is shared by all column families: this also makes every
        // state-machine write made before it durable, so after a crash the state machine
        // is never behind the purged log (see the module docs).
        self.synced_write(batch)
    }
}

impl<C: StoreConfig> RaftLogReader<C> for LogStore<C> {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<C::Entry>, StorageError<u64>> {
        Ok(self
            .read_entries(range)
            .map_err(|e| StorageIOError::read_logs(&e))?)
    }
}

impl<C: StoreConfig> RaftLogStorage<C> for LogStore<C> {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<C>, StorageError<u64>> {
        Ok(self
            .log_state()
            .map_err(|e| StorageIOError::read_logs(&e))?)
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<u64>) -> Result<(), StorageError<u64>> {
        Ok(self
            .save_vote_synced(vote)
            .map_err(|e| StorageIOError::write_vote(&e))?)
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<u64>>, StorageError<u64>> {
        Ok(self
            .read_meta(VOTE, "vote")
            .map_err(|e| StorageIOError::read_vote(&e))?)
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId<u64>>,
    ) -> Result<(), StorageError<u64>> {
        Ok(self
            .write_committed(committed)
            .map_err(|e| StorageIOError::write(&e))?)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<u64>>, StorageError<u64>> {
        Ok(self
            .read_meta(COMMITTED, "committed log id")
            .map_err(|e| StorageIOError::read(&e))?)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<C>,
    ) -> Result<(), StorageError<u64>>
    where
        I: IntoIterator<Item = C::Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        Ok(self
            .append_entries(entries, move |synced| callback.log_io_completed(synced))
            .map_err(|e| StorageIOError::write_logs(&e))?)
    }

    async fn truncate(&mut self, log_id: LogId<u64>) -> Result<(), StorageError<u64>> {
        tracing::debug!(%log_id, "truncate log");
        Ok(self
            .truncate_from(log_id.index)
            .map_err(|e| StorageIOError::write_logs(&e))?)
    }

    async fn purge(&mut self, log_id: LogId<u64>) -> Result<(), StorageError<u64>> {
        tracing::debug!(%log_id, "purge log");
        Ok(self
            .purge_upto(&log_id)
            .map_err(|e| StorageIOError::write_logs(&e))?)
    }
}
