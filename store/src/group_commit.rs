//! The group-commit thread: makes appended log entries durable and acknowledges them.
//!
//! `LogStore::append` writes its entries into RocksDB right away without syncing (so
//! they are readable the moment `append` returns, as openraft requires) and hands the
//! acknowledgement to this thread. The thread takes every acknowledgement queued so
//! far, syncs the WAL **once** for all of them, and only then fires them, in order:
//!
//! ```text
//!  append(1..3) ─┐ write, no sync         ┌─ sync WAL ─► ack(1..3), ack(4), ack(5..9)
//!  append(4)   ──┼────► queue ────► drain ┤
//!  append(5..9) ─┘                        └─ (appends queued meanwhile wait for the next sync)
//! ```
//!
//! RocksDB has one WAL for all column families and syncs it as a whole, so the one sync
//! covers every write made before it, whatever thread made it. An entry is never
//! acknowledged before a sync that started after its write.
//!
//! Each sync's duration goes into a fixed-bucket histogram (`crate::metrics`, exported
//! by the peer as `orion_store_wal_fsync_duration_seconds`); observing it is a few
//! atomic adds on this thread, never a lock the appenders wait on.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;

use std::time::Instant;

use prometheus::Histogram;
use rocksdb::DB;

use crate::error::{Error, Result};

/// Called once the entries of one append are durable, or with the sync error.
pub(crate) type Ack = Box<dyn FnOnce(io::Result<()>) + Send>;

/// Handle to the group-commit thread; dropping it stops and joins the thread.
pub(crate) struct GroupCommit {
    /// Queue of acknowledgements waiting for a sync. `None` only while dropping.
    queue: Option<mpsc::Sender<Ack>>,
    /// The thread, joined on drop so the database is closed when the store is dropped.
    thread: Option<JoinHandle<()>>,
    /// WAL syncs done so far; shows how well appends are being grouped.
    syncs: Arc<AtomicU64>,
}

impl GroupCommit {
    /// Start the thread for `db`.
    pub(crate) fn start(db: Arc<DB>, fsync_seconds: Histogram) -> Result<Self> {
        let (queue, pending) = mpsc::channel::<Ack>();
        let syncs = Arc::new(AtomicU64::new(0));
        let thread_syncs = Arc::clone(&syncs);
        let thread_fsync = fsync_seconds.clone();
        let thread = std::thread::Builder::new()
            .name("orion-store-group-commit".to_owned())
            .spawn(move || run(&db, &pending, &thread_syncs, &thread_fsync))
            .map_err(|e| Error::io("spawn", "group-commit thread", e))?;
        Ok(Self {
            queue: Some(queue),
            thread: Some(thread),
            syncs,
        })
    }

    /// Queue `ack` to be fired after the next WAL sync.
    pub(crate) fn submit(&self, ack: Ack) -> Result<()> {
        let queue = self.queue.as_ref().ok_or(Error::GroupCommitStopped)?;
        queue.send(ack).map_err(|_| Error::GroupCommitStopped)
    }

    /// How many WAL syncs the thread has done.
    pub(crate) fn sync_count(&self) -> u64 {
        self.syncs.load(Ordering::Relaxed)
    }
}

impl Drop for GroupCommit {
    fn drop(&mut self) {
        // Closing the queue lets the thread finish the acknowledgements still queued and exit.
        drop(self.queue.take());
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!("group-commit thread panicked");
            }
        }
    }
}

fn run(db: &DB, pending: &mpsc::Receiver<Ack>, syncs: &AtomicU64, fsync_seconds: &Histogram) {
    while let Ok(first) = pending.recv() {
        let mut group = vec![first];
        group.extend(pending.try_iter());

        let started = Instant::now();
        let synced = db.flush_wal(true);
        fsync_seconds.observe(started.elapsed().as_secs_f64());
        syncs.fetch_add(1, Ordering::Relaxed);

        match synced {
            Ok(()) => group.into_iter().for_each(|ack| ack(Ok(()))),
            Err(e) => {
                // Logged here once; openraft receives the error through every ack and
                // shuts the node down.
                tracing::error!(cause = %e, appends = group.len(), "WAL sync failed");
                for ack in group {
                    ack(Err(io::Error::other(e.to_string())));
                }
            }
        }
    }
}
