//! Variables as configuration (issue [H], item 5) with real peers, a real agent and
//! real processes: an env value taken from a variable reaches the process (read
//! from `/proc/<pid>/environ`); a secret's value stays out of watch events,
//! `describe`, `get -o json/yaml`, the overview, metrics and every peer and agent
//! log; a changed variable restarts nothing by itself, while one referenced with
//! `restart_on_change` rolls the service under `max_unavailable: 1` (sampled from
//! the process table); a replica whose variable does not exist waits, saying
//! which, and starts once it does; a variable-backed env in the command line is
//! refused at apply.

mod fixture;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fixture::{orion, TestCluster};
use orion_api::{PutVariable, RolloutState, ServiceObject};
use orion_client::Consistency;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(90);

async fn put_secret(c: &TestCluster, path: &str, value: &str) {
    let r = c
        .http
        .put(format!("{}/v1/variables/{path}", c.url(c.running()[0])))
        .json(&PutVariable {
            value: value.into(),
            expected_revision: None,
            secret: true,
        })
        .send()
        .await
        .expect("put reached the peer");
    assert!(r.status().is_success(), "put secret {path}: {}", r.status());
}

async fn service(c: &TestCluster, name: &str) -> Option<ServiceObject> {
    c.running_client()
        .service(name, Consistency::Linearizable)
        .await
        .ok()
        .map(|r| r.service)
}

fn unique(prefix: &str) -> String {
    format!(
        "{prefix}{}x{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default()
    )
}

/// A live process of a service, as the machine sees it: its pid and environment.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    pid: u32,
    env: BTreeMap<String, String>,
}

/// Live (not zombie) processes whose environment holds `MARK=marker`.
fn processes(marker: &str) -> Vec<Seen> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(raw) = std::fs::read(format!("/proc/{pid}/environ")) else {
            continue;
        };
        let env: BTreeMap<String, String> = raw
            .split(|b| *b == 0)
            .filter_map(|kv| std::str::from_utf8(kv).ok())
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        if env.get("MARK").map(String::as_str) != Some(marker) {
            continue;
        }
        let zombie = std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |s| {
            s.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        });
        if !zombie {
            out.push(Seen { pid, env });
        }
    }
    out.sort_by_key(|s| s.pid);
    out
}

/// Waits until exactly `n` processes of `marker` run, all with `key=value`.
async fn wait_values(c: &TestCluster, marker: &str, n: usize, key: &str, value: &str) -> Vec<Seen> {
    c.wait_for(
        &format!("{n} processes of {marker} with {key}={value}"),
        WAIT,
        || async {
            let all = processes(marker);
            (all.len() == n
                && all
                    .iter()
                    .all(|p| p.env.get(key).map(String::as_str) == Some(value)))
            .then_some(all)
        },
    )
    .await
}

async fn wait_rollout(c: &TestCluster, name: &str, generation: u64) -> ServiceObject {
    c.wait_for(
        &format!("rollout of {name} revision {generation} complete"),
        WAIT,
        || async {
            service(c, name)
                .await
                .filter(|s| s.generation == generation && s.rollout.state == RolloutState::Complete)
        },
    )
    .await
}

/// Samples the process table until stopped: the fewest processes of `marker`
/// seen at once (whatever value they hold), and every sample's values of `key`.
struct Sampler {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<(usize, Vec<Vec<String>>)>>,
    task: tokio::task::JoinHandle<()>,
}

impl Sampler {
    fn start(marker: &str, key: &str) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new((usize::MAX, Vec::new())));
        let (s, g, m, k) = (
            stop.clone(),
            seen.clone(),
            marker.to_string(),
            key.to_string(),
        );
        let task = tokio::spawn(async move {
            while !s.load(Ordering::Relaxed) {
                let now = processes(&m);
                let values: Vec<String> = now
                    .iter()
                    .map(|p| p.env.get(&k).cloned().unwrap_or_default())
                    .collect();
                {
                    let mut g = g.lock().unwrap_or_else(|e| e.into_inner());
                    g.0 = g.0.min(now.len());
                    g.1.push(values);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        Sampler { stop, seen, task }
    }

    async fn finish(self) -> (usize, Vec<Vec<String>>) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.task.await;
        let g = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        g.clone()
    }
}

fn assert_absent(what: &str, text: &str, secret: &str) {
    assert!(
        !text.contains(secret),
        "the secret's value appears in {what}:\n{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn variables_reach_processes_secrets_stay_hidden_and_only_restart_on_change_rolls() {
    let mut c = TestCluster::start(3).await;
    c.spawn_agent_logging("n1", "debug").await;
    let secret = unique("s3cr3t-");
    put_secret(&c, "app/token", &secret).await;
    c.must_put(1, "app/greeting", "hello-1").await;
    let (keep, roll) = (unique("keep"), unique("roll"));
    c.apply_yaml(
        &format!(
            "kind: Service\nname: keep\nreplicas: 2\ncommand: [sleep, '100000']\n\
             resources: {{cpu: 10m, memory: 8Mi}}\n\
             env:\n  MARK: {keep}\n  TOKEN: {{variable: app/token}}\n  GREETING: {{variable: app/greeting}}\n\
             ---\n\
             kind: Service\nname: roll\nreplicas: 3\ncommand: [sleep, '100000']\n\
             resources: {{cpu: 10m, memory: 8Mi}}\n\
             env:\n  MARK: {roll}\n  GREETING: {{variable: app/greeting, restart_on_change: true}}\n\
             strategy: {{max_unavailable: 1, min_healthy_time: 1s}}\n"
        ),
    )
    .await;

    // The values reach the processes' environments, never their command lines.
    let kept = wait_values(&c, &keep, 2, "GREETING", "hello-1").await;
    for p in &kept {
        assert_eq!(p.env.get("TOKEN"), Some(&secret), "{p:?}");
        let cmdline = std::fs::read(format!("/proc/{}/cmdline", p.pid)).unwrap_or_default();
        assert_absent(
            "a command line",
            &String::from_utf8_lossy(&cmdline),
            &secret,
        );
    }
    wait_values(&c, &roll, 3, "GREETING", "hello-1").await;
    wait_rollout(&c, "roll", 1).await;

    // A change: `roll` rolls one replica at a time, `keep` restarts nothing.
    let sampler = Sampler::start(&roll, "GREETING");
    c.must_put(2, "app/greeting", "hello-2").await;
    wait_values(&c, &roll, 3, "GREETING", "hello-2").await;
    let rolled = wait_rollout(&c, "roll", 2).await;
    let (fewest, samples) = sampler.finish().await;
    assert!(
        fewest >= 2,
        "only {fewest} of 3 processes at one point: {samples:?}"
    );
    assert!(
        samples.iter().any(|s| s.iter().any(|v| v == "hello-1") && s.iter().any(|v| v == "hello-2")),
        "never old and new values side by side: the replicas were not rolled one by one ({} samples)",
        samples.len()
    );
    assert!(
        rolled
            .rollout
            .reason
            .as_deref()
            .is_some_and(|r| r.contains("app/greeting")),
        "{rolled:?}"
    );
    assert_eq!(
        processes(&keep),
        kept,
        "a variable without restart_on_change restarted a replica"
    );
    let keep_service = service(&c, "keep").await.expect("keep");
    assert_eq!(keep_service.generation, 1, "{keep_service:?}");

    // A replica that starts again takes the newest value.
    let (ok, _, err) = orion(&c, &c.url(1), &["restart", "keep-0"]);
    assert!(ok, "orion restart: {err}");
    c.wait_for("keep-0 restarted with hello-2", WAIT, || async {
        let now = processes(&keep);
        (now.len() == 2
            && now
                .iter()
                .any(|p| p.env.get("GREETING").map(String::as_str) == Some("hello-2"))
            && now
                .iter()
                .any(|p| p.env.get("GREETING").map(String::as_str) == Some("hello-1")))
        .then_some(())
    })
    .await;

    // The secret's value is nowhere a person or a scraper can read it.
    let url = c.url(c.running()[0]);
    let watch = c
        .http
        .get(format!("{url}/v1/watch?from=0&timeout_seconds=2"))
        .send()
        .await
        .expect("watch")
        .text()
        .await
        .expect("watch body");
    assert!(watch.contains("app/token"), "the watch shows the reference");
    assert_absent("the watch", &watch, &secret);
    for path in ["/v1/overview", "/v1/services", "/v1/replicas", "/metrics"] {
        let body = c
            .http
            .get(format!("{url}{path}"))
            .send()
            .await
            .expect(path)
            .text()
            .await
            .expect("body");
        if path == "/v1/overview" {
            // An admin's overview lists the variables with their values, as
            // `GET /v1/variables` does: the secret is there as itself and nowhere
            // else (not in a spec, an event or a replica).
            let mut v: Value = serde_json::from_str(&body).expect("overview json");
            let listed = v["variables"].to_string();
            assert!(listed.contains(&secret), "{listed}");
            v["variables"] = Value::Null;
            assert_absent(path, &v.to_string(), &secret);
        } else {
            assert_absent(path, &body, &secret);
        }
    }
    // A readonly caller's overview has no secret value at all.
    let readonly = c.token("readonly", 600).await;
    let body = fixture::http_client(&c.ca_pem, Some(&readonly))
        .get(format!("{url}/v1/overview"))
        .send()
        .await
        .expect("overview")
        .text()
        .await
        .expect("body");
    assert!(body.contains("app/token"), "{body}");
    assert_absent("a readonly overview", &body, &secret);
    let (ok, described, err) = orion(&c, &url, &["describe", "service", "keep"]);
    assert!(ok && described.contains("app/token"), "{described}{err}");
    assert_absent("orion describe", &described, &secret);
    for format in ["json", "yaml"] {
        for kind in ["services", "replicas"] {
            let (ok, out, err) = orion(&c, &url, &["get", kind, "-o", format]);
            assert!(ok, "{err}");
            assert_absent(&format!("orion get {kind} -o {format}"), &out, &secret);
        }
    }
    let metrics = c.agent_metrics_addr("n1").await;
    let body = reqwest::get(format!("http://{metrics}/metrics"))
        .await
        .expect("agent metrics")
        .text()
        .await
        .unwrap_or_default();
    assert!(body.contains("orion_agent"), "{body}");
    assert_absent("the agent's metrics", &body, &secret);
    for id in c.peers.keys() {
        let log = std::fs::read_to_string(c.log_path(*id)).unwrap_or_default();
        assert_absent(&format!("peer {id}'s log"), &log, &secret);
    }
    let agent_log = std::fs::read_to_string(c.dir.path().join("agent-n1.log")).expect("agent log");
    assert!(
        agent_log.contains("DEBUG"),
        "the agent logged at debug level"
    );
    assert_absent("the agent's log", &agent_log, &secret);
    c.assert_no_unexpected_errors(&[]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_variable_holds_the_replica_until_it_exists_and_argv_use_is_refused() {
    let mut c = TestCluster::start(3).await;
    c.spawn_agent("n1").await;
    let marker = unique("late");
    c.apply_yaml(&format!(
        "kind: Service\nname: late\ncommand: [sleep, '100000']\n\
             resources: {{cpu: 10m, memory: 8Mi}}\n\
             env:\n  MARK: {marker}\n  DB_URL: {{variable: app/db_url}}\n"
    ))
    .await;
    // Not started, and saying why, naming the variable.
    let url = c.url(c.running()[0]);
    c.wait_for("late-0 waiting for app/db_url", WAIT, || async {
        let v: Value = c
            .http
            .get(format!("{url}/v1/replicas"))
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        let reason = v["observed"]["late-0"]["reason"].as_str()?.to_string();
        reason.contains("`app/db_url`").then_some(())
    })
    .await;
    assert!(processes(&marker).is_empty());
    let (ok, described, err) = orion(&c, &url, &["describe", "service", "late"]);
    assert!(ok && described.contains("app/db_url"), "{described}{err}");

    // It starts once the variable exists.
    c.must_put(1, "app/db_url", "postgres://db-1").await;
    let seen = wait_values(&c, &marker, 1, "DB_URL", "postgres://db-1").await;

    // A delete does not stop it: it keeps the value it started with.
    let r = c
        .http
        .delete(format!("{url}/v1/variables/app/db_url"))
        .send()
        .await
        .expect("delete");
    assert!(r.status().is_success(), "{}", r.status());
    // An apply after the delete (a no-op for the running process) is in the log
    // after the delete; once it is applied everywhere, the process is still there.
    c.apply_yaml(&format!(
        "kind: Service\nname: other\ncommand: [sleep, '100000']\n\
             resources: {{cpu: 10m, memory: 8Mi}}\nenv: {{MARK: {marker}-other}}\n"
    ))
    .await;
    wait_values(
        &c,
        &format!("{marker}-other"),
        1,
        "MARK",
        &format!("{marker}-other"),
    )
    .await;
    assert_eq!(processes(&marker), seen, "the delete restarted the replica");

    // `${DB_URL}` in the command line is refused at apply, naming the problem.
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("argv.yaml");
    std::fs::write(
        &file,
        "kind: Service\nname: argv\ncommand: [sh, -c, 'connect ${DB_URL}']\n\
         env:\n  DB_URL: {variable: app/db_url}\n",
    )
    .expect("write spec");
    let (ok, out, err) = orion(&c, &url, &["apply", "-f", &file.to_string_lossy()]);
    assert!(!ok, "{out}");
    assert!(
        err.contains("command[2]") && err.contains("app/db_url") && err.contains("ps"),
        "{err}"
    );
    assert!(service(&c, "argv").await.is_none(), "nothing was applied");
    c.assert_no_unexpected_errors(&[]);
}
