//! `/metrics` on peers and agents: a real 3-peer cluster, one agent running a
//! replica, writes and reads through the leader and a follower; then the leader's,
//! a follower's and the agent's metrics are scraped and parsed with a strict
//! Prometheus text-format parser. Every metric the issue lists must be there, with
//! sensible values, and the Grafana dashboard may only chart metrics that exist.

mod fixture;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use fixture::TestCluster;
use orion_api::{ApplyRequest, SourceFile};
use orion_client::{Client, Consistency};
use prom_text_format_parser::{Metric, Scrape, Type, ValueType};

/// Exported by every peer: Raft term, leader changes, commit/applied index,
/// proposal and fsync latency, API requests by route/status/latency, forwarded
/// and held requests, scheduler latency, pending placements, connected agents,
/// restarts, log streams.
const PEER_METRICS: &[&str] = &[
    "orion_raft_term",
    "orion_raft_leader_changes_total",
    "orion_raft_commit_index",
    "orion_raft_applied_index",
    "orion_raft_last_log_index",
    "orion_raft_is_leader",
    "orion_raft_proposal_duration_seconds",
    "orion_store_wal_fsync_duration_seconds",
    "orion_api_requests_total",
    "orion_api_request_duration_seconds",
    "orion_forwarded_requests_total",
    "orion_held_requests_total",
    "orion_scheduler_duration_seconds",
    "orion_pending_placements",
    "orion_connected_agents",
    "orion_replica_restarts",
    "orion_log_streams",
];

/// Exported by the leader only: per-peer replication lag, replicas by state (from
/// the leader's view of the replicated state and its agents' reports).
const LEADER_METRICS: &[&str] = &["orion_raft_replication_lag_entries", "orion_replicas"];

/// Exported by an agent on `--metrics-addr`.
const AGENT_METRICS: &[&str] = &[
    "orion_agent_connected",
    "orion_agent_replicas",
    "orion_agent_replica_restarts_total",
    "orion_agent_log_streams",
];

const SLEEPER: &str = "kind: Service\nname: sleeper\nreplicas: 1\ncommand: [\"sleep\", \"3600\"]\nresources: {cpu: 100m, memory: 16Mi}\n";

/// One scrape, by metric name.
struct Scraped(BTreeMap<String, Metric>);

impl Scraped {
    fn parse(text: &str) -> Self {
        let scrape = Scrape::parse(text)
            .unwrap_or_else(|e| panic!("not the Prometheus text format: {e:?}\n{text}"));
        Scraped(
            scrape
                .metrics
                .into_iter()
                .map(|m| (m.name.clone(), m))
                .collect(),
        )
    }

    fn metric(&self, name: &str) -> &Metric {
        self.0
            .get(name)
            .unwrap_or_else(|| panic!("{name} is missing; have {:?}", self.0.keys()))
    }

    /// The values of `name`'s plain samples whose labels include `labels`.
    fn values(&self, name: &str, labels: &[(&str, &str)]) -> Vec<f64> {
        self.metric(name)
            .samples
            .iter()
            .filter(|s| s.value.value_type == ValueType::Sample)
            .filter(|s| {
                labels
                    .iter()
                    .all(|(k, v)| s.labels.iter().any(|l| l.key == *k && l.value == *v))
            })
            .map(|s| s.value.value.as_f64())
            .collect()
    }

    /// The one value of an unlabelled gauge or counter.
    fn value(&self, name: &str) -> f64 {
        let v = self.values(name, &[]);
        assert_eq!(v.len(), 1, "{name}: one sample expected, got {v:?}");
        v[0]
    }

    /// A histogram's observation count (summed over its label sets).
    fn count(&self, name: &str) -> f64 {
        let m = self.metric(name);
        assert_eq!(m.kind, Type::Histogram, "{name} is a histogram");
        m.samples
            .iter()
            .filter(|s| s.value.value_type == ValueType::Count)
            .map(|s| s.value.value.as_f64())
            .sum()
    }

    fn assert_has(&self, names: &[&str], who: &str) {
        let missing: Vec<&&str> = names.iter().filter(|n| !self.0.contains_key(**n)).collect();
        assert!(missing.is_empty(), "{who} lacks {missing:?}");
    }
}

async fn scrape_peer(c: &TestCluster, http: &reqwest::Client, id: u64) -> Scraped {
    let resp = http
        .get(format!("{}/metrics", c.url(id)))
        .send()
        .await
        .expect("scrape");
    assert_eq!(resp.status(), 200, "peer {id}'s /metrics");
    let content_type = resp
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    Scraped::parse(&resp.text().await.expect("body"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_and_agents_export_every_listed_metric() {
    let mut c = TestCluster::start(3).await;
    c.spawn_agent_with("n1", Vec::new(), &["--metrics-addr", "127.0.0.1:0"])
        .await;
    let leader = c.wait_for_leader().await;
    let follower = c.follower().await;
    let admin = Client::new(&[c.url(leader)], &c.ca_pem, Some(c.admin_token.clone()))
        .expect("client")
        .with_timeout(Duration::from_secs(20));
    let applied = admin
        .apply(&ApplyRequest {
            files: vec![SourceFile {
                name: "orion.yaml".into(),
                content: SLEEPER.into(),
            }],
        })
        .await;
    assert!(applied.is_ok(), "apply: {applied:?}");
    c.wait_for_replicas_running("sleeper", 1).await;

    // Writes and reads on the leader; a forwarded write and a linearizable read
    // (a forwarded read index) through the follower.
    c.must_put(leader, "metrics/a", "1").await;
    assert!(c.get(leader, "metrics/a").await.is_some());
    c.must_put(follower, "metrics/b", "2").await;
    assert!(c.get(follower, "metrics/b").await.is_some());
    let via_follower =
        Client::new(&[c.url(follower)], &c.ca_pem, Some(c.admin_token.clone())).expect("client");
    assert!(via_follower
        .variable("metrics/a", Consistency::Linearizable)
        .await
        .is_ok());

    // Any API token may scrape (a readonly one here); none at all may not.
    let readonly = c.token("readonly", 600).await;
    let scraper = fixture::http_client(&c.ca_pem, Some(&readonly));
    let anonymous = fixture::http_client(&c.ca_pem, None)
        .get(format!("{}/metrics", c.url(leader)))
        .send()
        .await
        .expect("scrape");
    assert_eq!(anonymous.status(), 401);

    // The agent's report reaches the leader's view within a heartbeat or two.
    let lead = c
        .wait_for(
            "the leader's metrics to show the agent and its replica",
            fixture::WAIT,
            || async {
                let m = scrape_peer(&c, &scraper, leader).await;
                let running: f64 = ["running", "healthy"]
                    .iter()
                    .flat_map(|s| m.values("orion_replicas", &[("state", s)]))
                    .sum();
                (m.value("orion_connected_agents") == 1.0 && running >= 1.0).then_some(m)
            },
        )
        .await;
    lead.assert_has(PEER_METRICS, "the leader");
    lead.assert_has(LEADER_METRICS, "the leader");
    assert!(lead.value("orion_raft_term") >= 1.0);
    assert!(lead.value("orion_raft_leader_changes_total") >= 1.0);
    assert_eq!(lead.value("orion_raft_is_leader"), 1.0);
    assert!(lead.value("orion_raft_applied_index") > 0.0);
    assert!(lead.value("orion_raft_commit_index") > 0.0);
    assert!(lead.count("orion_raft_proposal_duration_seconds") > 0.0);
    assert!(lead.count("orion_store_wal_fsync_duration_seconds") > 0.0);
    assert!(lead.count("orion_scheduler_duration_seconds") > 0.0);
    assert_eq!(lead.value("orion_pending_placements"), 0.0);
    assert_eq!(lead.value("orion_replica_restarts"), 0.0);
    let lagging: BTreeSet<String> = lead
        .metric("orion_raft_replication_lag_entries")
        .samples
        .iter()
        .flat_map(|s| s.labels.iter().filter(|l| l.key == "peer"))
        .map(|l| l.value.clone())
        .collect();
    let others: BTreeSet<String> = c
        .running()
        .into_iter()
        .filter(|id| *id != leader)
        .map(|id| id.to_string())
        .collect();
    assert_eq!(lagging, others, "one lag series per other member");
    // Requests are counted by route template, method and status, never raw paths.
    let puts = lead.values(
        "orion_api_requests_total",
        &[
            ("route", "/v1/variables/{*path}"),
            ("method", "PUT"),
            ("status", "200"),
        ],
    );
    assert!(
        puts.iter().sum::<f64>() >= 1.0,
        "PUTs on the leader: {puts:?}"
    );
    let applies = lead.values(
        "orion_api_requests_total",
        &[("route", "/v1/apply"), ("status", "200")],
    );
    assert!(applies.iter().sum::<f64>() >= 1.0);
    assert!(lead.count("orion_api_request_duration_seconds") >= 2.0);
    let routes: BTreeSet<String> = lead
        .metric("orion_api_requests_total")
        .samples
        .iter()
        .flat_map(|s| s.labels.iter().filter(|l| l.key == "route"))
        .map(|l| l.value.clone())
        .collect();
    assert!(
        routes.iter().all(|r| !r.contains("metrics/")),
        "raw paths as labels: {routes:?}"
    );

    let fol = scrape_peer(&c, &scraper, follower).await;
    fol.assert_has(PEER_METRICS, "a follower");
    assert!(fol.value("orion_raft_term") >= 1.0);
    assert_eq!(fol.value("orion_raft_is_leader"), 0.0);
    assert!(fol.value("orion_raft_applied_index") > 0.0);
    assert!(fol.value("orion_raft_commit_index") > 0.0);
    assert!(fol.count("orion_store_wal_fsync_duration_seconds") > 0.0);
    assert!(fol.values("orion_forwarded_requests_total", &[("kind", "write")])[0] >= 1.0);
    assert!(fol.values("orion_forwarded_requests_total", &[("kind", "read_index")])[0] >= 1.0);
    assert_eq!(fol.value("orion_connected_agents"), 0.0);
    let forwarded_puts = fol.values(
        "orion_api_requests_total",
        &[("route", "/v1/variables/{*path}"), ("method", "PUT")],
    );
    assert!(forwarded_puts.iter().sum::<f64>() >= 1.0);

    let agent_addr = c.agent_metrics_addr("n1").await;
    let agent = c
        .wait_for(
            "the agent's metrics to show its session and replica",
            fixture::WAIT,
            || async {
                let resp = reqwest::get(format!("http://{agent_addr}/metrics"))
                    .await
                    .ok()?;
                let m = Scraped::parse(&resp.text().await.ok()?);
                let running: f64 = ["running", "healthy"]
                    .iter()
                    .flat_map(|s| m.values("orion_agent_replicas", &[("state", s)]))
                    .sum();
                (m.value("orion_agent_connected") == 1.0 && running >= 1.0).then_some(m)
            },
        )
        .await;
    agent.assert_has(AGENT_METRICS, "the agent");
    assert_eq!(agent.value("orion_agent_replica_restarts_total"), 0.0);
    assert_eq!(agent.value("orion_agent_log_streams"), 0.0);

    c.assert_no_unexpected_errors(&[]);
}

/// Every `orion_…` name in the dashboard's queries, without histogram suffixes.
fn dashboard_metrics(dashboard: &serde_json::Value) -> BTreeSet<String> {
    fn exprs(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(map) => {
                for (k, v) in map {
                    match (k.as_str(), v) {
                        ("expr" | "query", serde_json::Value::String(s)) => out.push(s.clone()),
                        _ => exprs(v, out),
                    }
                }
            }
            serde_json::Value::Array(items) => items.iter().for_each(|i| exprs(i, out)),
            _ => {}
        }
    }
    let mut all = Vec::new();
    exprs(dashboard, &mut all);
    assert!(!all.is_empty(), "the dashboard has no queries");
    let mut names = BTreeSet::new();
    for expr in all {
        let mut rest = expr.as_str();
        while let Some(at) = rest.find("orion_") {
            let tail = &rest[at..];
            let end = tail
                .find(|ch: char| !(ch.is_ascii_lowercase() || ch == '_'))
                .unwrap_or(tail.len());
            let name = &tail[..end];
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .unwrap_or(name);
            names.insert(base.to_string());
            rest = &tail[end..];
        }
    }
    names
}

#[test]
fn the_grafana_dashboard_charts_exactly_the_exported_metrics() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/grafana-orion.json");
    let text = std::fs::read_to_string(path).expect("deploy/grafana-orion.json");
    let dashboard: serde_json::Value = serde_json::from_str(&text).expect("dashboard JSON");
    assert!(dashboard["schemaVersion"].as_u64().is_some_and(|v| v >= 36));
    let variables = dashboard["templating"]["list"]
        .as_array()
        .expect("variables");
    assert!(
        variables
            .iter()
            .any(|v| v["name"] == "datasource" && v["query"] == "prometheus"),
        "a ${{datasource}} Prometheus variable"
    );
    let exported: BTreeSet<String> = PEER_METRICS
        .iter()
        .chain(LEADER_METRICS)
        .chain(AGENT_METRICS)
        .map(|s| s.to_string())
        .collect();
    let charted = dashboard_metrics(&dashboard);
    let unknown: Vec<&String> = charted.difference(&exported).collect();
    assert!(
        unknown.is_empty(),
        "the dashboard queries metrics nobody exports: {unknown:?}"
    );
    let uncharted: Vec<&String> = exported.difference(&charted).collect();
    assert!(
        uncharted.is_empty(),
        "exported but not charted: {uncharted:?}"
    );
    // Every panel queries through the variable, not a fixed data source.
    for panel in dashboard["panels"].as_array().expect("panels") {
        if panel["type"] == "row" {
            continue;
        }
        assert_eq!(
            panel["datasource"]["uid"], "${datasource}",
            "panel {:?}",
            panel["title"]
        );
    }
}
