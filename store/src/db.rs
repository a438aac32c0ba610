//! Opening RocksDB with the store's column families.

use std::path::Path;

use rocksdb::{ColumnFamily, ColumnFamilyDescriptor, DBRecoveryMode, Options, DB};

use openraft::{LogId, StoredMembership};

use crate::codec::decode;
use crate::error::{Error, Result};
use crate::keys::{ALL_CFS, CF_SM_META, LAST_APPLIED, LAST_MEMBERSHIP};

/// Open (or create) the database at `path` with every column family in [`ALL_CFS`].
pub(crate) fn open(path: &Path) -> Result<DB> {
    let mut opts = Options::default();
    opts.create_if_missing(true);
    opts.create_missing_column_families(true);
    // After a crash RocksDB replays the WAL up to the first damaged record and stops:
    // the recovered state is always a prefix of the write order. The durability argument
    // in `log.rs` (a synced write makes every earlier write durable) relies on this.
    opts.set_wal_recovery_mode(DBRecoveryMode::PointInTime);
    let cfs = ALL_CFS
        .iter()
        .map(|name| ColumnFamilyDescriptor::new(*name, Options::default()));
    let db = DB::open_cf_descriptors(&opts, path, cfs)?;
    for name in ALL_CFS {
        cf(&db, name)?;
    }
    Ok(db)
}

/// The handle of column family `name`.
pub(crate) fn cf<'a>(db: &'a DB, name: &'static str) -> Result<&'a ColumnFamily> {
    db.cf_handle(name).ok_or(Error::MissingColumnFamily(name))
}

/// What the state machine had applied: the last log id and the last membership.
pub(crate) type Applied<N> = (Option<LogId<u64>>, StoredMembership<u64, N>);

/// What the state machine had applied at `view` (the default membership before
/// anything was applied).
pub(crate) fn applied_state<N>(db: &DB, view: &rocksdb::Snapshot<'_>) -> Result<Applied<N>>
where
    N: openraft::Node + serde::de::DeserializeOwned,
{
    let sm_meta = cf(db, CF_SM_META)?;
    let last_log_id = view
        .get_cf(sm_meta, LAST_APPLIED)?
        .map(|b| decode("last applied log id", &b))
        .transpose()?;
    let last_membership = view
        .get_cf(sm_meta, LAST_MEMBERSHIP)?
        .map(|b| decode("last membership", &b))
        .transpose()?
        .unwrap_or_default();
    Ok((last_log_id, last_membership))
}
