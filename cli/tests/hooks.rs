//! Lifecycle hooks with real peers, a real agent, real processes and a real HTTP
//! listener: `before_start` runs before every start of a replica's process and a
//! failing one blocks the start, visibly in `describe`; `after_deploy` runs on a
//! node once the rollout completes; a failing webhook is retried, then shown as
//! failed in `describe` and on the watch; `on_failure` fires for a replica that
//! exits non-zero under policy `never`.

mod fixture;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use fixture::{orion, TestCluster};
use orion_api::ServiceObject;
use orion_client::Consistency;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const WAIT: Duration = Duration::from_secs(60);

async fn service(c: &TestCluster, name: &str) -> Option<ServiceObject> {
    c.running_client()
        .service(name, Consistency::Linearizable)
        .await
        .ok()
        .map(|r| r.service)
}

/// `orion describe service NAME` through the first running peer.
fn describe(c: &TestCluster, name: &str) -> String {
    let server = c.url(c.running()[0]);
    let (ok, out, err) = orion(c, &server, &["describe", "service", name]);
    assert!(ok, "describe {name}: {err}");
    out
}

fn lines(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn before_start_runs_before_every_start_blocks_on_failure_and_after_deploy_runs_after_the_rollout(
) {
    let mut c = TestCluster::start(3).await;
    c.spawn_agent("n1").await;
    let dir = tempfile::tempdir().expect("temp dir");
    let trace = dir.path().join("trace.log");
    let t = trace.display();
    // The first two runs exit at once (the policy restarts them); the third stays
    // and turns healthy. Every start is preceded by the hook, which sees the port.
    let web = format!(
        "kind: Service\nname: web\nreplicas: 1\nports: [http]\n\
         command: [sh, -c, 'echo main >> {t}; [ $(grep -c main {t}) -ge 3 ] && exec sleep 60; exit 1']\n\
         restart: {{policy: always, backoff: {{initial: 100ms, max: 200ms}}}}\n\
         health: {{exec: {{command: [sh, -c, 'test $(grep -c main {t}) -ge 3']}}, interval: 200ms}}\n\
         hooks:\n\
         \x20 before_start: {{command: [sh, -c, 'echo \"before $PORT $ORION_REPLICA\" >> {t}'], timeout: 5s}}\n\
         \x20 after_deploy: {{command: [sh, -c, 'echo \"after $ORION_SERVICE $ORION_GENERATION\" >> {t}'], node: n1}}\n"
    );
    let blocked_trace = dir.path().join("blocked.log");
    let blocked = format!(
        "kind: Service\nname: blocked\nreplicas: 1\n\
         command: [sh, -c, 'echo started >> {}; exec sleep 60']\n\
         restart: {{backoff: {{initial: 100ms, max: 300ms}}}}\n\
         hooks:\n\
         \x20 before_start: {{command: [sh, -c, 'echo checking; echo no database here >&2; exit 3']}}\n",
        blocked_trace.display()
    );
    c.apply_yaml(&format!("{web}---\n{blocked}")).await;

    let got = c
        .wait_for("after_deploy's line in the trace", WAIT, || async {
            let l = lines(&trace);
            l.iter().any(|l| l.starts_with("after ")).then_some(l)
        })
        .await;
    assert_eq!(got.len(), 7, "{got:#?}");
    for (i, line) in got.iter().enumerate() {
        match i {
            0 | 2 | 4 => {
                let parts: Vec<&str> = line.split(' ').collect();
                assert_eq!(parts.len(), 3, "{line}");
                assert_eq!(parts[0], "before");
                assert!(
                    parts[1].parse::<u16>().is_ok_and(|p| p > 0),
                    "the hook knows the port: {line}"
                );
                assert_eq!(parts[2], "web-0");
            }
            1 | 3 | 5 => assert_eq!(line, "main", "{got:#?}"),
            _ => assert_eq!(line, "after web 1", "{got:#?}"),
        }
    }
    // Recorded once, as succeeded, and shown by describe.
    let svc = c
        .wait_for("after_deploy recorded as succeeded", WAIT, || async {
            let s = service(&c, "web").await?;
            let run = s.hooks.run("after_deploy/1")?.clone();
            (run.outcome == orion_api::hook_run::HookOutcome::Succeeded).then_some(s)
        })
        .await;
    assert_eq!(svc.hooks.runs.len(), 1, "{:?}", svc.hooks.runs);
    assert_eq!(svc.hooks.runs[0].exit_code, Some(0));
    let text = describe(&c, "web");
    assert!(
        text.contains("Hook runs:") && text.contains("after_deploy") && text.contains("succeeded"),
        "{text}"
    );

    // The failing hook blocks its replica's start, with the reason shown.
    let url = format!("{}/v1/replicas", c.url(c.running()[0]));
    let http = c.new_http();
    let reason = c
        .wait_for("blocked-0 failed by its hook", WAIT, || async {
            let v: Value = http.get(&url).send().await.ok()?.json().await.ok()?;
            let r = &v["observed"]["blocked-0"];
            (r["state"] == "failed" && r["restarts"].as_u64() >= Some(2))
                .then(|| r["reason"].as_str().unwrap_or_default().to_string())
        })
        .await;
    assert!(
        reason.starts_with("before_start hook failed: exit 3: no database here"),
        "{reason}"
    );
    assert!(!blocked_trace.exists(), "the process never started");
    let text = describe(&c, "blocked");
    assert!(
        text.contains("before_start hook failed: exit 3: no database here"),
        "{text}"
    );
    // Its output went to the replica's logs.
    let (ok, logs, err) = orion(&c, &c.url(c.running()[0]), &["logs", "blocked-0"]);
    assert!(ok && logs.contains("checking"), "{logs} {err}");
}

/// What the test's webhook listener was sent: path and JSON body.
type Calls = Arc<Mutex<Vec<(String, Value)>>>;

/// A plain HTTP/1.1 listener: `/ok` answers 200, anything else 500.
async fn webhook_listener() -> (u16, Calls) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let calls: Calls = Arc::default();
    let sink = calls.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let sink = sink.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let (head, body_start) = loop {
                    let Ok(n) = s.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        break (String::from_utf8_lossy(&buf[..i]).into_owned(), i + 4);
                    }
                };
                let length = head
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse::<usize>().ok())
                            .flatten()
                    })
                    .unwrap_or(0);
                while buf.len() < body_start + length {
                    let Ok(n) = s.read(&mut chunk).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                }
                let path = head
                    .lines()
                    .next()
                    .and_then(|l| l.split(' ').nth(1))
                    .unwrap_or_default()
                    .to_string();
                let body = serde_json::from_slice(&buf[body_start..body_start + length])
                    .unwrap_or(Value::Null);
                let ok = path == "/ok";
                if let Ok(mut v) = sink.lock() {
                    v.push((path, body));
                }
                let answer = if ok {
                    "HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok"
                } else {
                    "HTTP/1.1 500 Internal Server Error\r\ncontent-length: 12\r\nconnection: close\r\n\r\nbroken today"
                };
                let _ = s.write_all(answer.as_bytes()).await;
                let _ = s.shutdown().await;
            });
        }
    });
    (port, calls)
}

fn calls_to(calls: &Calls, path: &str) -> Vec<Value> {
    calls
        .lock()
        .map(|v| {
            v.iter()
                .filter(|(p, _)| p == path)
                .map(|(_, b)| b.clone())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failing_webhook_is_retried_then_shown_failed_and_on_failure_fires_under_never() {
    let mut c = TestCluster::start(3).await;
    c.spawn_agent("n1").await;
    let (port, calls) = webhook_listener().await;
    let deploy = format!(
        "kind: Service\nname: deploy\nreplicas: 1\ncommand: [sleep, '60']\n\
         hooks:\n\
         \x20 after_deploy: {{webhook: {{url: 'http://127.0.0.1:{port}/fail', headers: {{X-Test: deploy}}}}, retries: 2, timeout: 5s}}\n"
    );
    let crash = format!(
        "kind: Service\nname: crash\nreplicas: 1\ncommand: [sh, -c, 'sleep 0.3; exit 7']\n\
         restart: {{policy: never}}\n\
         hooks:\n\
         \x20 on_failure: {{webhook: {{url: 'http://127.0.0.1:{port}/ok'}}, timeout: 5s}}\n"
    );
    // Follow the watch from the start, to see the hook runs as Service events.
    let leader = c.wait_for_leader().await;
    let http = c.new_http();
    let mut watch = http
        .get(format!("{}/v1/watch?from=0&prefix=deploy", c.url(leader)))
        .send()
        .await
        .expect("watch");
    assert_eq!(watch.status(), 200);
    c.apply_yaml(&format!("{deploy}---\n{crash}")).await;

    // after_deploy: three attempts (one and two retries), then failed.
    let svc = c
        .wait_for("after_deploy failed after its retries", WAIT, || async {
            let s = service(&c, "deploy").await?;
            let run = s.hooks.run("after_deploy/1")?;
            (run.outcome == orion_api::hook_run::HookOutcome::Failed).then_some(s)
        })
        .await;
    let run = svc.hooks.run("after_deploy/1").cloned().expect("the run");
    assert_eq!((run.attempt, run.http_status), (3, Some(500)), "{run:?}");
    assert!(run.output.contains("broken today"), "{run:?}");
    let sent = calls_to(&calls, "/fail");
    assert_eq!(sent.len(), 3, "{sent:?}");
    for (i, body) in sent.iter().enumerate() {
        assert_eq!(body["service"], "deploy");
        assert_eq!(body["hook"], "after_deploy");
        assert_eq!(body["generation"], 1);
        assert_eq!(body["attempt"], i as u64 + 1);
    }
    let text = describe(&c, "deploy");
    assert!(
        text.contains("after_deploy") && text.contains("failed") && text.contains("HTTP 500"),
        "{text}"
    );

    // The watch carried the run: retrying, then failed.
    let mut seen = Vec::new();
    let mut buf = String::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    while !seen.contains(&"failed".to_string()) {
        let chunk = tokio::time::timeout_at(deadline, watch.chunk())
            .await
            .expect("watch events before the deadline")
            .expect("the watch stream")
            .expect("a chunk");
        buf.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buf.find("\n\n") {
            let raw: String = buf.drain(..end + 2).collect();
            for data in raw.lines().filter_map(|l| l.strip_prefix("data:")) {
                let Ok(e) = serde_json::from_str::<Value>(data.trim()) else {
                    continue;
                };
                if e["resource"] != "Service" || e["key"] != "deploy" {
                    continue;
                }
                if let Some(runs) = e["object"]["hooks"]["runs"].as_array() {
                    for r in runs {
                        let outcome = r["outcome"].as_str().unwrap_or_default().to_string();
                        if seen.last() != Some(&outcome) {
                            seen.push(outcome);
                        }
                    }
                }
            }
        }
    }
    assert!(
        seen.contains(&"retrying".to_string()) && seen.last() == Some(&"failed".to_string()),
        "{seen:?}"
    );

    // on_failure: the replica that exited with 7 under `never`, once.
    let body = c
        .wait_for("on_failure's webhook call", WAIT, || async {
            calls_to(&calls, "/ok").first().cloned()
        })
        .await;
    assert_eq!(body["hook"], "on_failure");
    assert_eq!(body["replica"], "crash-0");
    assert!(
        body["trigger"]
            .as_str()
            .is_some_and(|t| t.contains("exited with code 7")),
        "{body}"
    );
    let svc = c
        .wait_for("on_failure recorded as succeeded", WAIT, || async {
            let s = service(&c, "crash").await?;
            let done = s.hooks.runs.iter().any(|r| {
                r.hook == orion_api::hook_run::HookName::OnFailure
                    && r.outcome == orion_api::hook_run::HookOutcome::Succeeded
            });
            done.then_some(s)
        })
        .await;
    assert_eq!(svc.hooks.runs.len(), 1, "{:?}", svc.hooks.runs);
    assert_eq!(svc.hooks.runs[0].http_status, Some(200));
    let text = describe(&c, "crash");
    assert!(
        text.contains("on_failure")
            && text.contains("HTTP 200")
            && text.contains("exited with code 7"),
        "{text}"
    );
    assert_eq!(calls_to(&calls, "/ok").len(), 1, "on_failure fired once");
}
