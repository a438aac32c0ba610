//! The agent's metrics, in Prometheus form: whether its session with the leader is
//! up, its replicas by state, restarts, and open log streams. This crate serves no
//! HTTP: `orion agent --metrics-addr` (the CLI) serves [`AgentMetrics::encode`].
//!
//! One [`Registry`] per agent, passed explicitly. The replica gauges are read from
//! the supervisor when scraped (its statuses are in memory); the session and log
//! stream gauges are set where those begin and end. Updating any of them is an
//! atomic operation; no lock is held across an await.

use std::sync::{Arc, OnceLock};

use prometheus::{IntCounter, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder};

use crate::supervisor::Supervisor;

/// The states `orion_agent_replicas{state}` has a series for: every state.
fn replica_states() -> impl Iterator<Item = &'static str> {
    orion_api::agent_proto::ReplicaState::ALL
        .iter()
        .map(|s| s.as_str())
}

/// The agent's registry and metrics.
pub struct AgentMetrics {
    registry: Registry,
    /// `orion_agent_connected`: 1 while a session with the leader is up.
    pub(crate) connected: IntGauge,
    replicas: IntGaugeVec,
    restarts: IntCounter,
    log_streams: IntGauge,
    /// The supervisor, once the session has made it.
    supervisor: OnceLock<Arc<Supervisor>>,
}

impl std::fmt::Debug for AgentMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentMetrics").finish_non_exhaustive()
    }
}

impl AgentMetrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let m = AgentMetrics {
            connected: IntGauge::new(
                "orion_agent_connected",
                "1 while this agent has a session with the leader",
            )?,
            replicas: IntGaugeVec::new(
                Opts::new("orion_agent_replicas", "Replicas this agent runs, by state"),
                &["state"],
            )?,
            restarts: IntCounter::new(
                "orion_agent_replica_restarts_total",
                "Replica restarts this agent made since it started",
            )?,
            log_streams: IntGauge::new(
                "orion_agent_log_streams",
                "Log streams this agent is sending to the leader now",
            )?,
            supervisor: OnceLock::new(),
            registry,
        };
        m.registry.register(Box::new(m.connected.clone()))?;
        m.registry.register(Box::new(m.replicas.clone()))?;
        m.registry.register(Box::new(m.restarts.clone()))?;
        m.registry.register(Box::new(m.log_streams.clone()))?;
        for state in replica_states() {
            m.replicas.with_label_values(&[state]);
        }
        Ok(m)
    }

    /// Reads the replica gauges from `supervisor` from now on.
    pub(crate) fn watch(&self, supervisor: Arc<Supervisor>) {
        let _ = self.supervisor.set(supervisor);
    }

    /// Counts a log stream until the guard is dropped.
    pub(crate) fn log_stream(&self) -> LogStreamGuard {
        self.log_streams.inc();
        LogStreamGuard(self.log_streams.clone())
    }

    /// Every metric in the Prometheus text format (version 0.0.4).
    pub fn encode(&self) -> Result<String, prometheus::Error> {
        self.refresh();
        let mut out = String::new();
        TextEncoder::new().encode_utf8(&self.registry.gather(), &mut out)?;
        Ok(out)
    }

    fn refresh(&self) {
        let Some(supervisor) = self.supervisor.get() else {
            return;
        };
        let statuses = supervisor.statuses();
        for state in replica_states() {
            let n = statuses
                .iter()
                .filter(|s| s.state.reported().as_str() == state)
                .count();
            self.replicas
                .with_label_values(&[state])
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
        // The supervisor's count only grows; the counter follows it.
        let total = supervisor.restarts_total();
        let counted = self.restarts.get();
        if total > counted {
            self.restarts.inc_by(total - counted);
        }
    }
}

/// One log stream, counted in `orion_agent_log_streams` while it lives.
pub(crate) struct LogStreamGuard(IntGauge);

impl Drop for LogStreamGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}
