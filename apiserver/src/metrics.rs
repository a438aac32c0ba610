//! The peer's metrics registry and the metrics the apiserver keeps itself: API
//! requests by route, method and status with their latency, calls forwarded to the
//! leader and calls held waiting for one, the scheduler's latency, and the gauges
//! read from the leader's view when `/metrics` is scraped (pending placements,
//! connected agents, replicas by state, restarts). Raft's and the store's metrics
//! (`orion_raft::metrics`) are registered in the same registry.
//!
//! One [`Registry`] per peer, passed explicitly (no process-global registry), so
//! tests that run several peers in one process keep them apart. Labels are bounded:
//! route templates (never raw paths), a fixed set of methods, status codes, member
//! ids, replica states. Histograms have fixed buckets; updating a metric is a few
//! atomic operations and no lock is held across an await.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};

/// The buckets of the API latency histogram, in seconds (to the response head:
/// a followed log or a watch counts until its stream starts).
pub const API_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The buckets of the scheduler histogram, in seconds: one reconcile round's plan,
/// microseconds for a few nodes up to a second for very large clusters.
pub const SCHEDULER_BUCKETS: &[f64] = &[
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
    0.1, 0.25, 0.5, 1.0,
];

/// What a follower forwards to the leader (`orion_forwarded_requests_total{kind}`).
#[derive(Debug, Clone, Copy)]
pub enum Forwarded {
    /// A write (a proposed command).
    Write,
    /// A linearizable read's read index.
    ReadIndex,
    /// A membership change or the members' view.
    Membership,
    /// An API call relayed whole (logs, exec, agent reports).
    Relay,
}

impl Forwarded {
    const ALL: [Forwarded; 4] = [
        Forwarded::Write,
        Forwarded::ReadIndex,
        Forwarded::Membership,
        Forwarded::Relay,
    ];
    fn label(self) -> &'static str {
        match self {
            Forwarded::Write => "write",
            Forwarded::ReadIndex => "read_index",
            Forwarded::Membership => "membership",
            Forwarded::Relay => "relay",
        }
    }
}

/// The replica states `orion_replicas{state}` has a series for: the agents'
/// states, and `unreported` for a placed replica no agent has reported yet.
fn replica_states() -> impl Iterator<Item = &'static str> {
    orion_api::agent_proto::ReplicaState::ALL
        .iter()
        .map(|s| s.as_str())
        .chain(["unreported"])
}

/// The peer's registry and the apiserver's own metrics.
pub struct PeerMetrics {
    registry: Registry,
    requests: IntCounterVec,
    request_seconds: HistogramVec,
    forwarded: IntCounterVec,
    held: IntCounter,
    scheduler_seconds: Histogram,
    /// Set when `/metrics` is scraped, from the leader's memory and state.
    pub pending_placements: IntGauge,
    pub connected_agents: IntGauge,
    pub replicas: IntGaugeVec,
    pub restarts: IntGauge,
    /// Log streams relayed by this peer now (kept by [`LogStreamGuard`]).
    log_streams: IntGauge,
}

fn metric_error(e: prometheus::Error) -> Error {
    Error::Config(format!("metrics: {e}"))
}

impl PeerMetrics {
    /// A registry with the apiserver's metrics in it; the caller adds Raft's.
    pub fn new() -> Result<Self> {
        let registry = Registry::new();
        let m = PeerMetrics {
            requests: IntCounterVec::new(
                Opts::new(
                    "orion_api_requests_total",
                    "REST API requests answered, by route template, method and status",
                ),
                &["route", "method", "status"],
            )
            .map_err(metric_error)?,
            request_seconds: HistogramVec::new(
                HistogramOpts::new(
                    "orion_api_request_duration_seconds",
                    "Time to answer a REST API request (to the response head), by route template and method",
                )
                .buckets(API_BUCKETS.to_vec()),
                &["route", "method"],
            )
            .map_err(metric_error)?,
            forwarded: IntCounterVec::new(
                Opts::new(
                    "orion_forwarded_requests_total",
                    "Calls this peer sent to the leader, by kind",
                ),
                &["kind"],
            )
            .map_err(metric_error)?,
            held: IntCounter::new(
                "orion_held_requests_total",
                "Calls that had to wait for a leader to be known (an election)",
            )
            .map_err(metric_error)?,
            scheduler_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "orion_scheduler_duration_seconds",
                    "Time to plan one replica reconcile round (placement included), on the leader",
                )
                .buckets(SCHEDULER_BUCKETS.to_vec()),
            )
            .map_err(metric_error)?,
            pending_placements: IntGauge::new(
                "orion_pending_placements",
                "Replicas no node can take now (on the leader)",
            )
            .map_err(metric_error)?,
            connected_agents: IntGauge::new(
                "orion_connected_agents",
                "Agents with a live session to this peer (only the leader keeps sessions)",
            )
            .map_err(metric_error)?,
            replicas: IntGaugeVec::new(
                Opts::new(
                    "orion_replicas",
                    "Placed replicas by the state their agents report (exported by the leader)",
                ),
                &["state"],
            )
            .map_err(metric_error)?,
            restarts: IntGauge::new(
                "orion_replica_restarts",
                "Restarts their agents report for the replicas placed now (exported by the leader)",
            )
            .map_err(metric_error)?,
            log_streams: IntGauge::new(
                "orion_log_streams",
                "Replica log streams this peer is relaying now",
            )
            .map_err(metric_error)?,
            registry,
        };
        let reg = &m.registry;
        let all: [Box<dyn prometheus::core::Collector>; 10] = [
            Box::new(m.requests.clone()),
            Box::new(m.request_seconds.clone()),
            Box::new(m.forwarded.clone()),
            Box::new(m.held.clone()),
            Box::new(m.scheduler_seconds.clone()),
            Box::new(m.pending_placements.clone()),
            Box::new(m.connected_agents.clone()),
            Box::new(m.replicas.clone()),
            Box::new(m.restarts.clone()),
            Box::new(m.log_streams.clone()),
        ];
        for c in all {
            reg.register(c).map_err(metric_error)?;
        }
        for kind in Forwarded::ALL {
            m.forwarded.with_label_values(&[kind.label()]);
        }
        Ok(m)
    }

    /// The registry, to add the Raft node's metrics to.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Every metric in the Prometheus text format (version 0.0.4).
    pub fn encode(&self) -> std::result::Result<String, prometheus::Error> {
        let mut out = String::new();
        TextEncoder::new().encode_utf8(&self.registry.gather(), &mut out)?;
        Ok(out)
    }

    /// A call of `kind` was sent to the leader.
    pub fn forwarded(&self, kind: Forwarded) {
        self.forwarded.with_label_values(&[kind.label()]).inc();
    }

    /// A call waited for a leader to be known.
    pub fn held(&self) {
        self.held.inc();
    }

    /// One reconcile round's plan took `seconds`.
    pub fn scheduled(&self, seconds: f64) {
        self.scheduler_seconds.observe(seconds);
    }

    /// Counts a log stream until the guard is dropped.
    pub fn log_stream(&self) -> LogStreamGuard {
        self.log_streams.inc();
        LogStreamGuard(self.log_streams.clone())
    }

    /// Sets `orion_replicas` from `(state, count)` pairs; every known state has a
    /// series (0 when none), so dashboards see a stable set.
    pub fn set_replicas(&self, counts: &std::collections::BTreeMap<&str, i64>) {
        for state in replica_states() {
            self.replicas
                .with_label_values(&[state])
                .set(counts.get(state).copied().unwrap_or(0));
        }
    }

    /// Drops the leader-only series (this peer does not lead).
    pub fn clear_leader_view(&self) {
        self.replicas.reset();
    }

    fn observe(&self, route: &str, method: &str, status: u16, seconds: f64) {
        let status = status.to_string();
        self.requests
            .with_label_values(&[route, method, status.as_str()])
            .inc();
        self.request_seconds
            .with_label_values(&[route, method])
            .observe(seconds);
    }
}

/// One relayed log stream, counted in `orion_log_streams` while it lives.
pub struct LogStreamGuard(IntGauge);

impl Drop for LogStreamGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// The route template a request matched, carried on its response to [`track`].
#[derive(Clone)]
struct RouteLabel(MatchedPath);

/// Route middleware (inside the router, so it sees the matched template): hands
/// the template to [`track`] on the response.
pub async fn label_route(req: Request, next: Next) -> Response {
    let matched = req.extensions().get::<MatchedPath>().cloned();
    let mut resp = next.run(req).await;
    if let Some(m) = matched {
        resp.extensions_mut().insert(RouteLabel(m));
    }
    resp
}

/// Outermost middleware: counts and times every request, with the route
/// template it matched (`unmatched` for none) and its status.
pub async fn track(State(metrics): State<Arc<PeerMetrics>>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = method_label(req.method());
    let resp = next.run(req).await;
    let route = resp
        .extensions()
        .get::<RouteLabel>()
        .map_or("unmatched", |r| r.0.as_str());
    metrics.observe(
        route,
        method,
        resp.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    resp
}

/// How [`serve_text`] gets the text to serve.
pub type Encode = Arc<dyn Fn() -> std::result::Result<String, String> + Send + Sync>;

/// Serves `GET /metrics` in plain HTTP on `listener` until `shutdown`, with the
/// text `encode` makes (for `orion agent --metrics-addr`: the agent crate serves
/// no HTTP itself). Anything else is 404.
pub async fn serve_text(
    listener: tokio::net::TcpListener,
    encode: Encode,
    shutdown: CancellationToken,
) {
    use axum::http::{header, StatusCode};
    use axum::response::IntoResponse;
    let handler = move || {
        let encode = encode.clone();
        async move {
            match encode() {
                Ok(text) => {
                    ([(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)], text).into_response()
                }
                Err(e) => (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("cannot encode the metrics: {e}\n"),
                )
                    .into_response(),
            }
        }
    };
    let app = axum::Router::new().route("/metrics", axum::routing::get(handler));
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await;
    if let Err(e) = served {
        tracing::warn!(cause = %e, "the metrics listener stopped");
    }
}

/// A bounded method label: the standard methods, and `other`.
fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::PUT => "PUT",
        Method::POST => "POST",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_is_exported_with_its_help_and_type() {
        let m = PeerMetrics::new().expect("metrics");
        m.observe("/v1/variables/{*path}", "PUT", 200, 0.002);
        m.held();
        m.set_replicas(&[("running", 2)].into_iter().collect());
        let text = m.encode().expect("encode");
        for name in [
            "orion_api_requests_total",
            "orion_api_request_duration_seconds",
            "orion_forwarded_requests_total",
            "orion_held_requests_total",
            "orion_scheduler_duration_seconds",
            "orion_pending_placements",
            "orion_connected_agents",
            "orion_replicas",
            "orion_replica_restarts",
            "orion_log_streams",
        ] {
            assert!(text.contains(&format!("# TYPE {name} ")), "{name}:\n{text}");
        }
        assert!(text.contains(
            r#"orion_api_requests_total{method="PUT",route="/v1/variables/{*path}",status="200"} 1"#
        ));
        assert!(text.contains(r#"orion_forwarded_requests_total{kind="read_index"} 0"#));
        assert!(text.contains(r#"orion_replicas{state="running"} 2"#));
        assert!(text.contains(r#"orion_replicas{state="failed"} 0"#));
    }

    #[test]
    fn unknown_methods_share_one_label() {
        let odd = Method::from_bytes(b"BREW").expect("method");
        assert_eq!(method_label(&odd), "other");
        assert_eq!(method_label(&Method::GET), "GET");
    }
}
