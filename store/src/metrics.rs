//! What the store measures, as Prometheus metrics the peer registers and serves:
//! the duration of each group-commit WAL sync and the Raft commit index (the store
//! is told it by `save_committed`; openraft's own metrics do not carry it).
//!
//! The metrics are made here, unregistered; the peer adds them to its one registry
//! ([`StoreMetrics::register`]), so several stores in one process never collide.
//! Histograms have fixed buckets, and observing one is a few atomic adds.

use prometheus::{Histogram, HistogramOpts, IntGauge, Registry};

use crate::error::{Error, Result};

/// The buckets of the WAL sync histogram, in seconds: 100 µs (a fast NVMe or tmpfs)
/// to 2.5 s (a disk in trouble).
pub const FSYNC_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// The store's metrics; clones share their values.
#[derive(Clone)]
pub struct StoreMetrics {
    /// `orion_store_wal_fsync_duration_seconds`: one observation per WAL sync.
    pub fsync_seconds: Histogram,
    /// `orion_raft_commit_index`: the last committed log index this peer knows.
    pub commit_index: IntGauge,
}

fn metric_error(e: prometheus::Error) -> Error {
    Error::Metrics(e.to_string())
}

impl StoreMetrics {
    pub(crate) fn new() -> Result<Self> {
        Ok(StoreMetrics {
            fsync_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "orion_store_wal_fsync_duration_seconds",
                    "Time to sync the RocksDB WAL once for a group of Raft log appends",
                )
                .buckets(FSYNC_BUCKETS.to_vec()),
            )
            .map_err(metric_error)?,
            commit_index: IntGauge::new(
                "orion_raft_commit_index",
                "The last Raft log index this peer knows to be committed",
            )
            .map_err(metric_error)?,
        })
    }

    /// Adds these metrics to `registry` (once per store).
    pub fn register(&self, registry: &Registry) -> Result<()> {
        registry
            .register(Box::new(self.fsync_seconds.clone()))
            .map_err(metric_error)?;
        registry
            .register(Box::new(self.commit_index.clone()))
            .map_err(metric_error)
    }
}
