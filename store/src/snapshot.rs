//! Building, keeping and installing snapshots.
//!
//! - **Build**: read `sm` and `sm_meta` from one RocksDB snapshot (a consistent view,
//!   while `apply` goes on), serialize them ([format](crate::snapshot_format)).
//! - **Keep**: the latest snapshot is the file `snapshots/current.snap`, written to a
//!   temporary file, fsynced, renamed over the old one and the folder fsynced, so
//!   [`get_current_snapshot`](openraft::storage::RaftStateMachine::get_current_snapshot)
//!   works after a restart. Its metadata is its header. An older snapshot never
//!   replaces a newer one (openraft builds snapshots in a background task, which can
//!   finish after a newer snapshot was installed).
//! - **Install**: verify the whole buffer first, then replace the state machine in one
//!   synced `WriteBatch` (delete all of `sm`, put every pair, set `last_applied` and the
//!   membership), then keep the buffer as the current snapshot.

use std::fs::{self, File};
use std::io::Write;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use openraft::{
    LogId, Node, RaftSnapshotBuilder, Snapshot, SnapshotMeta, StorageError, StorageIOError,
};
use rocksdb::{IteratorMode, WriteBatch, WriteOptions, DB};

use crate::codec::encode;
use crate::db::cf;
use crate::error::{Error, Result};
use crate::keys::{CF_SM, CF_SM_META, LAST_APPLIED, LAST_MEMBERSHIP};
use crate::snapshot_format::{decode_snapshot, SnapshotEncoder};
use crate::StoreConfig;

const CURRENT: &str = "current.snap";
const CURRENT_TMP: &str = "current.snap.tmp";

/// The folder holding the current snapshot.
pub(crate) struct SnapshotFiles {
    dir: PathBuf,
    /// Last log id of the current snapshot file (`None` inside: no snapshot, or one of an
    /// empty state). Held while the file is replaced, so replacements are serialized.
    current: Mutex<Option<Option<LogId<u64>>>>,
}

impl SnapshotFiles {
    /// Open the folder, creating it if needed. A damaged current snapshot is moved
    /// aside (the state machine in RocksDB is the source of truth; openraft builds a new
    /// snapshot when it needs one).
    pub(crate) fn open<N: Node>(dir: PathBuf) -> Result<Self> {
        fs::create_dir_all(&dir).map_err(|e| Error::io("create", &dir, e))?;
        let files = Self {
            dir,
            current: Mutex::new(None),
        };
        let current = match files.read_current()? {
            None => None,
            Some(bytes) => match decode_snapshot::<N>(&bytes) {
                Ok(decoded) => Some(decoded.meta.last_log_id),
                Err(e) => {
                    let aside = files.dir.join("current.snap.corrupt");
                    tracing::warn!(cause = %e, moved_to = %aside.display(), "current snapshot is damaged; moved aside");
                    fs::rename(files.dir.join(CURRENT), &aside)
                        .map_err(|e| Error::io("rename", &aside, e))?;
                    None
                }
            },
        };
        *files.lock() = current;
        Ok(files)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Option<LogId<u64>>>> {
        // The guarded value is always valid, so a panic elsewhere cannot leave it broken.
        self.current
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The bytes of the current snapshot, if there is one.
    pub(crate) fn read_current(&self) -> Result<Option<Vec<u8>>> {
        let path = self.dir.join(CURRENT);
        match fs::read(&path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io("read", path, e)),
        }
    }

    /// Make `bytes` (a snapshot up to `last_log_id`) the current snapshot, durably,
    /// unless the current one is newer. Returns whether it was replaced.
    pub(crate) fn replace_current(
        &self,
        last_log_id: Option<LogId<u64>>,
        bytes: &[u8],
    ) -> Result<bool> {
        let mut current = self.lock();
        if let Some(existing) = &*current {
            if *existing > last_log_id {
                return Ok(false);
            }
        }
        let tmp = self.dir.join(CURRENT_TMP);
        let mut file = File::create(&tmp).map_err(|e| Error::io("create", &tmp, e))?;
        file.write_all(bytes)
            .map_err(|e| Error::io("write", &tmp, e))?;
        file.sync_all().map_err(|e| Error::io("fsync", &tmp, e))?;
        drop(file);
        let path = self.dir.join(CURRENT);
        fs::rename(&tmp, &path).map_err(|e| Error::io("rename to", &path, e))?;
        sync_dir(&self.dir)?;
        *current = Some(last_log_id);
        Ok(true)
    }
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io("fsync", dir, e))
}

/// Builds snapshots from a consistent view of the state machine.
pub struct SnapshotBuilder<C> {
    db: Arc<DB>,
    files: Arc<SnapshotFiles>,
    _config: PhantomData<fn() -> C>,
}

impl<C> SnapshotBuilder<C> {
    pub(crate) fn new(db: Arc<DB>, files: Arc<SnapshotFiles>) -> Self {
        Self {
            db,
            files,
            _config: PhantomData,
        }
    }
}

impl<C: StoreConfig> RaftSnapshotBuilder<C> for SnapshotBuilder<C> {
    async fn build_snapshot(&mut self) -> Result<Snapshot<C>, StorageError<u64>> {
        let db = Arc::clone(&self.db);
        let files = Arc::clone(&self.files);
        let built = tokio::task::spawn_blocking(move || build::<C>(&db, &files))
            .await
            .map_err(|e| Error::Task(e.to_string()))
            .and_then(|built| built);
        Ok(built.map_err(|e| StorageIOError::write_snapshot(None, &e))?)
    }
}

/// Serialize the state machine as of now and keep it as the current snapshot.
fn build<C: StoreConfig>(db: &DB, files: &SnapshotFiles) -> Result<Snapshot<C>> {
    let view = db.snapshot();
    let (last_log_id, last_membership): crate::db::Applied<C::Node> =
        crate::db::applied_state(db, &view)?;
    let meta = SnapshotMeta {
        snapshot_id: snapshot_id(last_log_id.as_ref()),
        last_log_id,
        last_membership,
    };

    let mut encoder = SnapshotEncoder::new(&meta)?;
    for item in view.iterator_cf(cf(db, CF_SM)?, IteratorMode::Start) {
        let (key, value) = item?;
        encoder.push(&key, &value)?;
    }
    let bytes = encoder.finish();
    files.replace_current(meta.last_log_id, &bytes)?;
    tracing::info!(snapshot_id = %meta.snapshot_id, bytes = bytes.len(), "built snapshot");
    Ok(Snapshot {
        meta,
        snapshot: Box::new(std::io::Cursor::new(bytes)),
    })
}

/// `<term>-<index>-<unix millis>`: unique per build, readable in logs.
fn snapshot_id(last_log_id: Option<&LogId<u64>>) -> String {
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default();
    match last_log_id {
        Some(id) => format!("{}-{}-{millis}", id.leader_id.term, id.index),
        None => format!("0-0-{millis}"),
    }
}

/// Replace the state machine with snapshot `bytes` taken at `meta`, then keep the
/// snapshot as current. Nothing is written unless the whole buffer is valid.
pub(crate) fn install<C: StoreConfig>(
    db: &DB,
    files: &SnapshotFiles,
    meta: &SnapshotMeta<u64, C::Node>,
    bytes: &[u8],
) -> Result<()> {
    let decoded = decode_snapshot::<C::Node>(bytes)?;
    if decoded.meta.last_log_id != meta.last_log_id
        || decoded.meta.last_membership != meta.last_membership
    {
        return Err(Error::SnapshotMismatch(format!(
            "data is of {}, metadata says {meta}",
            decoded.meta
        )));
    }
    let pairs = decoded.pairs()?;

    let sm = cf(db, CF_SM)?;
    let sm_meta = cf(db, CF_SM_META)?;
    let mut batch = WriteBatch::default();
    // Keys are arbitrary bytes, so the range that covers every existing key ends just
    // past the current last key.
    if let Some(last) = db.iterator_cf(sm, IteratorMode::End).next() {
        let (last_key, _) = last?;
        let mut end = last_key.into_vec();
        end.push(0);
        batch.delete_range_cf(sm, Vec::new(), end);
    }
    for (key, value) in pairs {
        batch.put_cf(sm, key, value);
    }
    match &meta.last_log_id {
        Some(id) => batch.put_cf(sm_meta, LAST_APPLIED, encode("last applied log id", id)?),
        None => batch.delete_cf(sm_meta, LAST_APPLIED),
    }
    batch.put_cf(
        sm_meta,
        LAST_MEMBERSHIP,
        encode("last membership", &meta.last_membership)?,
    );
    let mut opts = WriteOptions::default();
    opts.set_sync(true);
    db.write_opt(batch, &opts)?;

    files.replace_current(meta.last_log_id, bytes)?;
    tracing::info!(snapshot_id = %meta.snapshot_id, bytes = bytes.len(), "installed snapshot");
    Ok(())
}

/// The current snapshot, verified.
pub(crate) fn current<C: StoreConfig>(files: &SnapshotFiles) -> Result<Option<Snapshot<C>>> {
    let Some(bytes) = files.read_current()? else {
        return Ok(None);
    };
    let meta = decode_snapshot::<C::Node>(&bytes)?.meta;
    Ok(Some(Snapshot {
        meta,
        snapshot: Box::new(std::io::Cursor::new(bytes)),
    }))
}

#[cfg(test)]
mod tests {
    use openraft::{BasicNode, CommittedLeaderId};

    use super::*;

    fn id(index: u64) -> Option<LogId<u64>> {
        Some(LogId::new(CommittedLeaderId::new(1, 1), index))
    }

    #[test]
    fn an_older_snapshot_never_replaces_a_newer_one() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("create", "tempdir", e))?;
        let files = SnapshotFiles::open::<BasicNode>(dir.path().join("snapshots"))?;
        assert!(files.replace_current(id(5), b"five")?);
        // A background build that started earlier finishes late.
        assert!(!files.replace_current(id(3), b"three")?);
        assert_eq!(files.read_current()?, Some(b"five".to_vec()));
        // The same point again (a rebuild) and newer ones do replace it.
        assert!(files.replace_current(id(5), b"five again")?);
        assert!(files.replace_current(id(8), b"eight")?);
        assert_eq!(files.read_current()?, Some(b"eight".to_vec()));
        Ok(())
    }

    #[test]
    fn a_damaged_current_snapshot_is_moved_aside_on_open() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("create", "tempdir", e))?;
        let snapshots = dir.path().join("snapshots");
        fs::create_dir_all(&snapshots).map_err(|e| Error::io("create", &snapshots, e))?;
        fs::write(snapshots.join(CURRENT), b"garbage")
            .map_err(|e| Error::io("write", &snapshots, e))?;
        let files = SnapshotFiles::open::<BasicNode>(snapshots.clone())?;
        assert_eq!(files.read_current()?, None);
        assert!(snapshots.join("current.snap.corrupt").exists());
        Ok(())
    }
}
