//! RocksDB storage for Orion's Raft: the openraft log store ([`LogStore`]), the state
//! machine ([`StateMachine`]) and snapshots. This is the only crate that knows RocksDB.
//!
//! The raft crate supplies the deterministic apply function as an [`Applier`]; this crate
//! turns each `apply` call into one atomic RocksDB write and answers API reads through
//! [`StateReader`] views.
//!
//! ```text
//!  openraft ──append──► LogStore ──write (no sync)──► RocksDB ◄── group-commit thread
//!     ▲                                                 │          (one WAL sync for all
//!     └──────────── ack after sync ─────────────────────┼────────── queued appends)
//!  openraft ──apply───► StateMachine ──Txn──► Applier   │
//!                            └── one WriteBatch ────────┘
//!  API ──► StateReader::with_view ──► RocksDB snapshot
//! ```
//!
//! On disk, `dir/db` is the RocksDB database and `dir/snapshots/current.snap` the
//! latest snapshot. The `keys` module lists the column families.
//!
//! # Layout
//!
//! - `keys`: column families and the keys this crate owns.
//! - `db`: opening RocksDB with those column families.
//! - `open`: [`open`], the one way in: database, log store, state machine and reader.
//! - `codec`: JSON encoding of log entries and metadata.
//! - `log`: [`LogStore`] — log entries, vote, committed; durability rules.
//! - `group_commit`: the thread that syncs the WAL once per group of appends and only
//!   then acknowledges them.
//! - `state_machine`: [`StateMachine`] and the [`Applier`] trait.
//! - `txn`: [`Txn`], the write transaction one `apply` call gives the applier.
//! - `scan`: prefix scans merged with a transaction's pending writes.
//! - `reader`: [`StateReader`] and [`View`], point-in-time reads for the API.
//! - `snapshot`: building, keeping (`current.snap`) and installing snapshots.
//! - `snapshot_format`: the snapshot byte format (magic, version, header, pairs, CRC).
//! - `backup`: backups in that format: streamed out of one RocksDB snapshot, checked
//!   and read back from a file in bounded pieces, and a new store seeded from one.
//! - `checksum`: CRC-32C.
//! - `metrics`: [`StoreMetrics`], the WAL sync histogram and the commit index, made
//!   here and registered by the peer.
//! - `error`: [`Error`] and [`Result`].
//!
//! Feature `fault-injection` (tests only) adds seams that make state-machine reads
//! fail, so an applier's handling of a broken disk can be tested.

pub mod backup;
mod checksum;
mod codec;
mod db;
mod error;
mod group_commit;
mod keys;
mod log;
mod metrics;
mod open;
mod reader;
mod scan;
mod snapshot;
mod snapshot_format;
mod state_machine;
mod txn;

use std::io::Cursor;

use openraft::{Entry, RaftTypeConfig};

pub use crate::error::{Error, Result};
pub use crate::log::LogStore;
pub use crate::metrics::{StoreMetrics, FSYNC_BUCKETS};
pub use crate::open::{open, Store};
pub use crate::reader::{StateReader, View};
pub use crate::snapshot::SnapshotBuilder;
pub use crate::state_machine::{Applier, StateMachine};
pub use crate::txn::Txn;

/// The openraft type configs this store works with: `u64` node ids, the default entry
/// type and in-memory snapshot data. Implemented for every such config.
pub trait StoreConfig:
    RaftTypeConfig<NodeId = u64, Entry = Entry<Self>, SnapshotData = Cursor<Vec<u8>>>
{
}

impl<C> StoreConfig for C where
    C: RaftTypeConfig<NodeId = u64, Entry = Entry<C>, SnapshotData = Cursor<Vec<u8>>>
{
}
