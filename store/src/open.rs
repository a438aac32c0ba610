//! Opening a store: the RocksDB database, the log store, the state machine and the
//! reader, all on one database handle.

use std::io::Cursor;
use std::path::Path;
use std::sync::Arc;

use openraft::{Entry, RaftTypeConfig};

use crate::{db, snapshot, Applier, Error, LogStore, Result, StateMachine, StateReader};

/// An opened store: hand `log` and `sm` to openraft, keep `reader` for API reads.
pub struct Store<C: RaftTypeConfig> {
    /// The Raft log store.
    pub log: LogStore<C>,
    /// The state machine.
    pub sm: StateMachine<C>,
    /// Point-in-time reads of the state machine.
    pub reader: StateReader,
}

/// Open (or create) the store in `dir`.
pub fn open<C>(dir: &Path, applier: Arc<dyn Applier<C>>) -> Result<Store<C>>
where
    C: RaftTypeConfig<NodeId = u64, Entry = Entry<C>, SnapshotData = Cursor<Vec<u8>>>,
    C::D: serde::Serialize + serde::de::DeserializeOwned,
    C::Node: serde::Serialize + serde::de::DeserializeOwned,
{
    std::fs::create_dir_all(dir).map_err(|e| Error::io("create", dir, e))?;
    let db = Arc::new(db::open(&dir.join("db"))?);
    let files = Arc::new(snapshot::SnapshotFiles::open::<C::Node>(
        dir.join("snapshots"),
    )?);
    Ok(Store {
        log: LogStore::new(Arc::clone(&db))?,
        sm: StateMachine::new(Arc::clone(&db), applier, files),
        reader: StateReader::new(db),
    })
}
