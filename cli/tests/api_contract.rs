//! The API as a contract: the committed `docs/openapi.json` is what every peer
//! serves at `/v1/openapi.json`, and schemathesis (from PyPI, installed by
//! `scripts/schemathesis/run.sh`) finds no answer that breaks the document and no
//! 5xx in a bounded run against a real 3-peer cluster, after which the cluster
//! still serves, its peers agree, and no acknowledged write is missing.

mod fixture;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fixture::{TestCluster, WAIT};
use orion_api::{ListResponse, PutVariable};
use orion_client::api::{Consistency, VariableQuery};
use serde_json::Value;

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace root")
        .to_path_buf()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_committed_document_is_what_every_peer_serves() {
    let c = TestCluster::start(3).await;
    let committed_path = repo_root().join("docs/openapi.json");
    let committed = std::fs::read_to_string(&committed_path).expect("docs/openapi.json");
    let anonymous = fixture::http_client(&c.ca_pem, None);
    for id in c.running() {
        let r = anonymous
            .get(format!("{}/v1/openapi.json", c.url(id)))
            .send()
            .await
            .expect("the peer answered");
        assert_eq!(r.status(), 200, "peer {id}");
        let served: Value = r.json().await.expect("JSON");
        assert_eq!(
            orion_apiserver::openapi::document_text(&served),
            committed,
            "peer {id} serves another document than docs/openapi.json; \
             regenerate it with `orion openapi > docs/openapi.json` (or `make openapi`)"
        );
    }
}

/// What the run may not break: values written (and acknowledged) before and
/// during the run, under a prefix the hooks keep schemathesis away from.
const GUARD: &str = "contract-guard";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_answer_that_breaks_the_document() {
    let seconds: u64 = std::env::var("ORION_SCHEMATHESIS_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let c = TestCluster::start(3).await;
    let via = c.follower().await;
    let client = c.client(via);

    let mut acknowledged: BTreeMap<String, String> = BTreeMap::new();
    for i in 0..20 {
        let (path, value) = (format!("{GUARD}/before-{i}"), format!("v{i}"));
        c.must_put(via, &path, &value).await;
        acknowledged.insert(path, value);
    }
    // Peer ids and token ids are what the run must not delete (see hooks.py).
    let tokens = client.tokens().await.expect("token list");
    let mut protected: Vec<String> = c.running().iter().map(u64::to_string).collect();
    protected.extend(tokens.tokens.iter().map(|t| t.id.clone()));

    // A valid "add this member" is sent as a real member joining again (hooks.py).
    let members: Value = client
        .members(Consistency::Linearizable)
        .await
        .expect("members")
        .members
        .iter()
        .map(|m| {
            serde_json::json!({
                "id": m.id, "api_addr": m.api_addr, "peer_addr": m.peer_addr, "agent_addr": m.agent_addr
            })
        })
        .collect();
    // Writes go on while schemathesis runs, through another peer.
    let writer_via = *c.running().iter().find(|id| **id != via).expect("3 peers");
    let writer = c.client(writer_via);
    let stop = Arc::new(AtomicBool::new(false));
    let writes = tokio::spawn({
        let stop = stop.clone();
        async move {
            let mut done = BTreeMap::new();
            let mut i = 0u32;
            while !stop.load(Ordering::Relaxed) {
                let (path, value) = (format!("{GUARD}/during-{i}"), format!("d{i}"));
                let body = PutVariable {
                    value: value.clone(),
                    expected_revision: None,
                    secret: false,
                };
                if writer.put_variable(&path, &body).await.is_ok() {
                    done.insert(path, value);
                }
                i += 1;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            done
        }
    });

    let report = c.dir.path().join("schemathesis");
    let ca = c.dir.path().join("schemathesis-ca.pem");
    std::fs::write(&ca, &c.ca_pem).expect("CA file");
    let started = Instant::now();
    let mut run = tokio::process::Command::new(repo_root().join("scripts/schemathesis/run.sh"));
    run.arg(c.url(via))
        .arg(&ca)
        .arg(&c.admin_token)
        .arg(seconds.to_string())
        .arg(&report)
        .env("ORION_PROTECTED_IDS", protected.join(","))
        .env("ORION_PROTECTED_PREFIX", GUARD)
        .env("ORION_MEMBERS", members.to_string())
        .kill_on_drop(true);
    // Installing schemathesis the first time takes a minute or two.
    let out = tokio::time::timeout(Duration::from_secs(seconds + 240), run.output())
        .await
        .expect("schemathesis ended in time")
        .expect("scripts/schemathesis/run.sh started");
    let took = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let during = writes.await.expect("writer task");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // The figures for the record: operations, cases, duration.
    let summary: Vec<&str> = stdout
        .lines()
        .skip_while(|l| !l.contains("SUMMARY"))
        .filter(|l| !l.trim().is_empty())
        .collect();
    eprintln!(
        "schemathesis ran {:.0} s ({} s of tests):\n{}",
        took.as_secs_f64(),
        seconds,
        summary.join("\n")
    );
    assert!(
        out.status.success(),
        "schemathesis found problems ({}):\n{stdout}\n{stderr}",
        out.status
    );
    acknowledged.extend(during);
    assert!(
        acknowledged.len() > 20,
        "no write was acknowledged during the run"
    );

    // Every peer still answers, and all agree once they applied the same entries.
    let ids = c.running();
    let mut states = Vec::new();
    for id in &ids {
        c.wait_for("the peer to be ready", WAIT, || async {
            let r = c
                .http
                .get(format!("{}/readyz", c.url(*id)))
                .send()
                .await
                .ok()?;
            r.status().is_success().then_some(())
        })
        .await;
    }
    let target = c
        .status(c.wait_for_leader().await)
        .await
        .expect("leader status")
        .last_log_index;
    for id in &ids {
        c.wait_for("the peer to catch up", WAIT, || async {
            let s = c.status(*id).await?;
            (s.last_applied >= target).then_some(())
        })
        .await;
    }
    for id in &ids {
        states.push((*id, stale_state(&c, *id).await));
    }
    for (id, state) in &states[1..] {
        // A peer may be ahead by entries committed after `target`; compare what
        // every peer had applied by then.
        let first = &states[0].1;
        let upto = |s: &BTreeMap<String, (u64, String)>| -> BTreeMap<String, (u64, String)> {
            s.iter()
                .filter(|(_, (rev, _))| *rev <= target)
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        };
        assert_eq!(
            upto(first),
            upto(state),
            "peer {id} disagrees with peer {}",
            states[0].0
        );
    }
    let after = client
        .members(Consistency::Linearizable)
        .await
        .expect("members after the run");
    let mut ids_after: Vec<u64> = after.members.iter().map(|m| m.id).collect();
    ids_after.sort_unstable();
    assert_eq!(ids_after, ids, "the membership changed during the run");
    for (path, value) in &acknowledged {
        let found = c.get(via, path).await;
        assert_eq!(
            found.as_ref().map(|v| v.value.as_str()),
            Some(value.as_str()),
            "acknowledged write {path} is missing or changed"
        );
    }
    eprintln!(
        "after the run: {} peers agree on {} variables; {} acknowledged writes all present",
        ids.len(),
        states[0].1.len(),
        acknowledged.len()
    );
    c.assert_no_unexpected_errors(&[]);
}

/// Every variable as peer `id` has it applied: path -> (mod_revision, value).
async fn stale_state(c: &TestCluster, id: u64) -> BTreeMap<String, (u64, String)> {
    let client = c.client(id);
    let mut out = BTreeMap::new();
    let mut query = VariableQuery {
        limit: Some(10_000),
        consistency: Consistency::Stale,
        ..Default::default()
    };
    loop {
        let page: ListResponse = client.variables(&query).await.expect("stale list");
        for v in page.items {
            out.insert(v.path, (v.mod_revision, v.value));
        }
        match page.next {
            Some(next) => query.start_after = Some(next),
            None => return out,
        }
    }
}
