//! [`StateMachine`]: applies committed entries through the [`Applier`] and serves snapshots.

use std::io::Cursor;
use std::marker::PhantomData;
use std::sync::Arc;

use openraft::storage::RaftStateMachine;
use openraft::{
    EntryPayload, LogId, OptionalSend, RaftTypeConfig, Snapshot, SnapshotMeta, StorageError,
    StorageIOError, StoredMembership,
};
use rocksdb::{WriteBatch, DB};

use crate::codec::{decode, encode};
use crate::db::cf;
use crate::error::{Error, Result};
use crate::keys::{CF_SM, CF_SM_META, LAST_APPLIED, LAST_MEMBERSHIP};
use crate::snapshot::{self, SnapshotBuilder, SnapshotFiles};
use crate::txn::Txn;
use crate::StoreConfig;

/// The application's deterministic apply function, supplied by the raft crate.
pub trait Applier<C: RaftTypeConfig>: Send + Sync + 'static {
    /// Apply one normal entry's payload at log index `index`. Must be deterministic and
    /// total (no panics on bad data): a command that cannot be applied is a response.
    ///
    /// `Err` is only for a broken store (a read failed, a stored value is unreadable):
    /// the whole `apply` call then fails with a storage error and openraft stops this
    /// peer, because a peer that answered differently would diverge from the others.
    fn apply(&self, txn: &mut Txn<'_>, index: u64, data: &C::D) -> Result<C::R>;

    /// The response for a blank or membership entry at `index`.
    fn non_data_response(&self, index: u64) -> C::R;
}

/// The last applied log id and the last applied membership.
type AppliedState<C> = (
    Option<LogId<u64>>,
    StoredMembership<u64, <C as RaftTypeConfig>::Node>,
);

/// Why `apply` failed, and at which entry if that is known.
struct ApplyFailure {
    at: Option<LogId<u64>>,
    error: Error,
}

/// The state machine: the `sm` and `sm_meta` column families plus the current snapshot.
pub struct StateMachine<C: RaftTypeConfig> {
    db: Arc<DB>,
    applier: Arc<dyn Applier<C>>,
    files: Arc<SnapshotFiles>,
    _config: PhantomData<fn() -> C>,
}

impl<C: StoreConfig> StateMachine<C> {
    pub(crate) fn new(
        db: Arc<DB>,
        applier: Arc<dyn Applier<C>>,
        files: Arc<SnapshotFiles>,
    ) -> Self {
        Self {
            db,
            applier,
            files,
            _config: PhantomData,
        }
    }

    /// Runs `f` on a transaction over the current state whose reads of keys under
    /// `fail_reads` fail; nothing it writes is kept. A test seam for appliers.
    #[cfg(feature = "fault-injection")]
    pub fn with_test_txn<T>(
        &self,
        fail_reads: Option<&[u8]>,
        f: impl FnOnce(&mut Txn<'_>) -> T,
    ) -> Result<T> {
        let sm = cf(&self.db, CF_SM)?;
        let mut txn = Txn::new(&self.db, sm);
        if let Some(prefix) = fail_reads {
            txn.fail_reads_under(prefix);
        }
        Ok(f(&mut txn))
    }

    fn read_applied_state(&self) -> Result<AppliedState<C>> {
        let sm_meta = cf(&self.db, CF_SM_META)?;
        // One view, so the pair is consistent even while a snapshot is being installed.
        let view = self.db.snapshot();
        let last_applied = view
            .get_cf(sm_meta, LAST_APPLIED)?
            .map(|b| decode("last applied log id", &b))
            .transpose()?;
        let membership = view
            .get_cf(sm_meta, LAST_MEMBERSHIP)?
            .map(|b| decode("last membership", &b))
            .transpose()?
            .unwrap_or_default();
        Ok((last_applied, membership))
    }

    /// Apply `entries` in one atomic write and return the responses.
    fn apply_entries<I>(&self, entries: I) -> Result<Vec<C::R>, ApplyFailure>
    where
        I: IntoIterator<Item = C::Entry>,
    {
        let db = &self.db;
        let unusable = |error| ApplyFailure { at: None, error };
        let sm = cf(db, CF_SM).map_err(unusable)?;
        let sm_meta = cf(db, CF_SM_META).map_err(unusable)?;

        let mut txn = Txn::new(db, sm);
        let mut responses = Vec::new();
        let mut last_applied = None;
        let mut membership = None;
        for entry in entries {
            let index = entry.log_id.index;
            let response = match &entry.payload {
                EntryPayload::Blank => self.applier.non_data_response(index),
                EntryPayload::Normal(data) => match self.applier.apply(&mut txn, index, data) {
                    Ok(response) => response,
                    Err(error) => {
                        return Err(ApplyFailure {
                            at: Some(entry.log_id),
                            error,
                        })
                    }
                },
                EntryPayload::Membership(m) => {
                    membership = Some(StoredMembership::new(Some(entry.log_id), m.clone()));
                    self.applier.non_data_response(index)
                }
            };
            // Also when the applier went on after a failed read.
            if let Some(cause) = txn.read_error() {
                return Err(ApplyFailure {
                    at: Some(entry.log_id),
                    error: Error::ApplyRead(cause),
                });
            }
            responses.push(response);
            last_applied = Some(entry.log_id);
        }
        let Some(last_applied) = last_applied else {
            return Ok(responses);
        };

        let mut batch = WriteBatch::default();
        txn.write_into(&mut batch);
        let fail = |error| ApplyFailure {
            at: Some(last_applied),
            error,
        };
        batch.put_cf(
            sm_meta,
            LAST_APPLIED,
            encode("last applied log id", &last_applied).map_err(&fail)?,
        );
        if let Some(membership) = membership {
            batch.put_cf(
                sm_meta,
                LAST_MEMBERSHIP,
                encode("last membership", &membership).map_err(&fail)?,
            );
        }
        // Not synced: the log still holds these entries and openraft re-applies them after
        // a crash. The sync of `purge` makes this write durable before the log entries are
        // purged (see `log.rs`).
        db.write(batch).map_err(|e| fail(e.into()))?;
        Ok(responses)
    }
}

impl<C: StoreConfig> RaftStateMachine<C> for StateMachine<C> {
    type SnapshotBuilder = SnapshotBuilder<C>;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<u64>>, StoredMembership<u64, C::Node>), StorageError<u64>> {
        Ok(self
            .read_applied_state()
            .map_err(|e| StorageIOError::read_state_machine(&e))?)
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<C::R>, StorageError<u64>>
    where
        I: IntoIterator<Item = C::Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        self.apply_entries(entries).map_err(|failure| {
            let io_error = match failure.at {
                Some(log_id) => StorageIOError::apply(log_id, &failure.error),
                None => StorageIOError::write_state_machine(&failure.error),
            };
            io_error.into()
        })
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder::new(Arc::clone(&self.db), Arc::clone(&self.files))
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<Cursor<Vec<u8>>>, StorageError<u64>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<u64, C::Node>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<u64>> {
        let db = Arc::clone(&self.db);
        let files = Arc::clone(&self.files);
        let owned_meta = meta.clone();
        let bytes = snapshot.into_inner();
        tokio::task::spawn_blocking(move || {
            snapshot::install::<C>(&db, &files, &owned_meta, &bytes)
        })
        .await
        .map_err(|e| Error::Task(e.to_string()))
        .and_then(|installed| installed)
        .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), &e))?;
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<C>>, StorageError<u64>> {
        let files = Arc::clone(&self.files);
        Ok(
            tokio::task::spawn_blocking(move || snapshot::current::<C>(&files))
                .await
                .map_err(|e| Error::Task(e.to_string()))
                .and_then(|current| current)
                .map_err(|e| StorageIOError::read_snapshot(None, &e))?,
        )
    }
}
