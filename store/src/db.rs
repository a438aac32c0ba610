//! Opening RocksDB with the store's column families.

use std::path::Path;

use rocksdb::{ColumnFamily, ColumnFamilyDescriptor, DBRecoveryMode, Options, DB};

use crate::error::{Error, Result};
use crate::keys::ALL_CFS;

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
