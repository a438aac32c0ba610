//! This peer's Raft metrics, in Prometheus form: term, leader changes, commit,
//! applied and last log index, whether it leads, each follower's replication lag
//! (on the leader), and the proposal latency; plus the store's WAL sync histogram
//! and commit index ([`orion_store::StoreMetrics`]).
//!
//! The gauges follow openraft's metrics watch ([`NodeMetrics::follow`], one task per
//! peer) rather than being read at scrape time, so leader changes between two
//! scrapes are still counted. Nothing here serves HTTP: the apiserver registers
//! these in the peer's registry and serves `/metrics`.

use std::collections::BTreeSet;

use prometheus::{Histogram, HistogramOpts, IntCounter, IntGauge, IntGaugeVec, Opts, Registry};
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};
use crate::types::{NodeId, RaftMetrics};

/// The buckets of the proposal latency histogram, in seconds: a proposal waits for
/// one WAL sync on a quorum and one apply (sub-millisecond on tmpfs, tens of
/// milliseconds on disks), up to an election's worth of waiting.
pub const PROPOSAL_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The metrics of one Raft peer; clones share their values.
#[derive(Clone)]
pub struct NodeMetrics {
    /// `orion_raft_term`.
    pub term: IntGauge,
    /// `orion_raft_leader_changes_total`: each time this peer learned of a leader
    /// other than the one it knew (the first leader it sees counts too).
    pub leader_changes: IntCounter,
    /// `orion_raft_applied_index`.
    pub applied_index: IntGauge,
    /// `orion_raft_last_log_index`.
    pub last_log_index: IntGauge,
    /// `orion_raft_is_leader`: 1 while this peer leads.
    pub is_leader: IntGauge,
    /// `orion_raft_replication_lag_entries{peer}`: how many entries each other
    /// member's log is behind the leader's (on the leader only).
    pub replication_lag: IntGaugeVec,
    /// `orion_raft_proposal_duration_seconds`: from a proposal to its applied result.
    pub proposal_seconds: Histogram,
    /// The store's: `orion_store_wal_fsync_duration_seconds`, `orion_raft_commit_index`.
    pub store: orion_store::StoreMetrics,
}

fn metric_error(e: prometheus::Error) -> Error {
    Error::Metrics(e.to_string())
}

fn as_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl NodeMetrics {
    pub(crate) fn new(store: orion_store::StoreMetrics) -> Result<Self> {
        let gauge = |name: &str, help: &str| IntGauge::new(name, help).map_err(metric_error);
        Ok(NodeMetrics {
            term: gauge("orion_raft_term", "The Raft term this peer is in")?,
            leader_changes: IntCounter::new(
                "orion_raft_leader_changes_total",
                "Leader changes this peer has observed since it started",
            )
            .map_err(metric_error)?,
            applied_index: gauge(
                "orion_raft_applied_index",
                "The last Raft log index applied to this peer's state machine",
            )?,
            last_log_index: gauge(
                "orion_raft_last_log_index",
                "The last index in this peer's Raft log",
            )?,
            is_leader: gauge("orion_raft_is_leader", "1 while this peer is the leader")?,
            replication_lag: IntGaugeVec::new(
                Opts::new(
                    "orion_raft_replication_lag_entries",
                    "Log entries each member is behind the leader (exported by the leader)",
                ),
                &["peer"],
            )
            .map_err(metric_error)?,
            proposal_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "orion_raft_proposal_duration_seconds",
                    "Time from proposing a command on the leader to its applied result",
                )
                .buckets(PROPOSAL_BUCKETS.to_vec()),
            )
            .map_err(metric_error)?,
            store,
        })
    }

    /// Adds every metric of this peer's Raft and store to `registry`.
    pub fn register(&self, registry: &Registry) -> Result<()> {
        let reg = |c: Box<dyn prometheus::core::Collector>| registry.register(c);
        reg(Box::new(self.term.clone())).map_err(metric_error)?;
        reg(Box::new(self.leader_changes.clone())).map_err(metric_error)?;
        reg(Box::new(self.applied_index.clone())).map_err(metric_error)?;
        reg(Box::new(self.last_log_index.clone())).map_err(metric_error)?;
        reg(Box::new(self.is_leader.clone())).map_err(metric_error)?;
        reg(Box::new(self.replication_lag.clone())).map_err(metric_error)?;
        reg(Box::new(self.proposal_seconds.clone())).map_err(metric_error)?;
        self.store.register(registry).map_err(Error::Store)
    }

    /// Keeps the gauges current with openraft's metrics until `shutdown` or until
    /// Raft stops.
    pub async fn follow(
        self,
        mut watch: tokio::sync::watch::Receiver<RaftMetrics>,
        shutdown: CancellationToken,
    ) {
        let mut known = Known::default();
        loop {
            // Copy what is needed out of the borrow: it holds the channel's lock.
            let seen = Seen::of(&watch.borrow_and_update());
            self.update(&seen, &mut known);
            tokio::select! {
                () = shutdown.cancelled() => return,
                changed = watch.changed() => if changed.is_err() { return },
            }
        }
    }

    fn update(&self, seen: &Seen, known: &mut Known) {
        self.term.set(as_i64(seen.term));
        self.applied_index.set(as_i64(seen.applied));
        self.last_log_index.set(as_i64(seen.last_log));
        self.is_leader.set(i64::from(seen.lag.is_some()));
        if seen.leader.is_some() && seen.leader != known.leader {
            self.leader_changes.inc();
            known.leader = seen.leader;
        }
        let lags = seen.lag.as_deref().unwrap_or_default();
        let now: BTreeSet<NodeId> = lags.iter().map(|(peer, _)| *peer).collect();
        // A member removed since, or every member once this peer stops leading.
        for gone in known.lagging.difference(&now) {
            let _ = self
                .replication_lag
                .remove_label_values(&[gone.to_string().as_str()]);
        }
        for (peer, lag) in lags {
            self.replication_lag
                .with_label_values(&[peer.to_string().as_str()])
                .set(as_i64(*lag));
        }
        known.lagging = now;
    }
}

/// What the follower of the metrics remembers between two changes.
#[derive(Default)]
struct Known {
    /// The last leader seen.
    leader: Option<NodeId>,
    /// The peers with a replication lag series.
    lagging: BTreeSet<NodeId>,
}

/// What the gauges take from one openraft metrics value.
struct Seen {
    term: u64,
    applied: u64,
    last_log: u64,
    leader: Option<NodeId>,
    /// On the leader: each other member's lag behind the leader's last log index.
    lag: Option<Vec<(NodeId, u64)>>,
}

impl Seen {
    fn of(m: &RaftMetrics) -> Self {
        let last_log = m.last_log_index.unwrap_or(0);
        let lag = m.replication.as_ref().map(|r| {
            r.iter()
                .filter(|(id, _)| **id != m.id)
                .map(|(id, matched)| (*id, last_log.saturating_sub(matched.map_or(0, |l| l.index))))
                .collect()
        });
        Seen {
            term: m.current_term,
            applied: m.last_applied.map_or(0, |l| l.index),
            last_log,
            leader: m.current_leader,
            lag,
        }
    }
}
