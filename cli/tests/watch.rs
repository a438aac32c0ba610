//! The watch is lossless and survives failures (issue [I], items 3 and 5): every
//! change of a write is its own event, resuming from a cursor gives every later event
//! exactly once and in order, `orion get --watch` reconnects by itself across a
//! `kill -9` of the peer it reads from (the leader), and a watch away for longer
//! than the event window is told so and lists again. Real peers, agents and CLI
//! processes; every wait has a deadline.

mod fixture;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use fixture::{TestCluster, WAIT};
use orion_api::{ApplyRequest, ErrorBody, ErrorCode, Event, EventCursor, NodeStatus, SourceFile};
use orion_client::{ClientError, Consistency, EventQuery};
use serde_json::Value;
use tokio::time::Instant;

/// The events of kind Service still in `via`'s window, oldest first.
async fn service_events(c: &TestCluster, via: u64, limit: usize) -> Vec<Event> {
    c.client(via)
        .events(&EventQuery {
            resource: Some("Service".into()),
            prefix: String::new(),
            limit: Some(limit),
        })
        .await
        .expect("event list")
}

/// A client without a total time limit, for streams (the fixture's has 20 s).
/// Raw HTTP on purpose: these tests check the watch's wire format itself (SSE
/// ids, `from=`, the `Last-Event-ID` header, malformed positions).
fn stream_client(c: &TestCluster) -> reqwest::Client {
    let tls = orion_tls::config::client_config(&c.ca_pem, None).expect("client TLS config");
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {}", c.admin_token).parse().expect("header"),
    );
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .default_headers(headers)
        .connect_timeout(Duration::from_secs(5))
        .build()
        .expect("http client")
}

/// One open `GET /v1/watch`, parsed as server-sent events.
struct Watch {
    resp: reqwest::Response,
    buf: String,
}

/// One SSE message: `id`, `event` and the `data` as JSON.
#[derive(Debug, Clone)]
struct Message {
    id: Option<String>,
    event: String,
    data: Value,
}

impl Watch {
    async fn open(
        http: &reqwest::Client,
        url: &str,
        from: Option<&str>,
        last_event_id: Option<&str>,
    ) -> Watch {
        let mut req = http.get(format!(
            "{url}/v1/watch{}",
            from.map(|f| format!("?from={f}")).unwrap_or_default()
        ));
        if let Some(id) = last_event_id {
            req = req.header("Last-Event-ID", id);
        }
        let resp = req.send().await.expect("watch reached the peer");
        assert_eq!(
            resp.status(),
            200,
            "watch from {from:?} / {last_event_id:?}"
        );
        Watch {
            resp,
            buf: String::new(),
        }
    }

    async fn next(&mut self, deadline: Instant) -> Message {
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let raw: String = self.buf.drain(..end + 2).collect();
                let (mut id, mut event, mut data) = (None, String::new(), String::new());
                for line in raw.lines() {
                    if let Some(v) = line.strip_prefix("id:") {
                        id = Some(v.trim().to_string());
                    } else if let Some(v) = line.strip_prefix("event:") {
                        event = v.trim().to_string();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim_start());
                    }
                }
                if event.is_empty() {
                    continue; // a keep-alive comment
                }
                let data = serde_json::from_str(&data).expect("event data is JSON");
                return Message { id, event, data };
            }
            let chunk = tokio::time::timeout_at(deadline, self.resp.chunk())
                .await
                .expect("a watch event before the deadline")
                .expect("a chunk")
                .expect("the watch stream is open");
            self.buf.push_str(&String::from_utf8_lossy(&chunk));
        }
    }

    /// Events until `n` of the resources in `kinds` have arrived.
    async fn collect(&mut self, kinds: &[&str], n: usize) -> Vec<Event> {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut out = Vec::new();
        while out.len() < n {
            let m = self.next(deadline).await;
            assert_ne!(m.event, "error", "the watch ended with {:?}", m.data);
            let e: Event = serde_json::from_value(m.data).expect("an event");
            assert_eq!(
                m.id,
                Some(e.cursor().to_string()),
                "the SSE id is the cursor"
            );
            if rollout_status(&e) {
                continue;
            }
            if kinds.contains(&e.resource.as_str()) {
                out.push(e);
            }
        }
        out
    }
}

/// A service put by the rollout controller (its rollout completed or failed),
/// not by an apply: every apply starts a rollout, `progressing`.
fn rollout_status(e: &Event) -> bool {
    e.resource == "Service"
        && e.object["rollout"]["state"]
            .as_str()
            .is_some_and(|s| s != "progressing")
}

fn service_yaml(name: &str, replicas: u32, arg: &str) -> String {
    format!(
        "kind: Service\nname: {name}\nreplicas: {replicas}\ncommand: [\"sleep\", \"{arg}\"]\nresources: {{cpu: 10m, memory: 8Mi}}\n"
    )
}

/// One `POST /v1/apply` of `docs` (one file), sent once; its revision.
async fn apply(c: &TestCluster, via: u64, docs: &[String]) -> Result<u64, ClientError> {
    let request = ApplyRequest {
        files: vec![SourceFile {
            name: "orion.yaml".into(),
            content: docs.join("---\n"),
        }],
    };
    Ok(c.client(via).apply(&request).await?.revision)
}

fn show(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .map(|e| format!("{} {:?} {}/{}", e.cursor(), e.kind, e.resource, e.key))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_change_of_a_write_reaches_watchers_in_order_and_resumes_from_a_cursor() {
    let mut c = TestCluster::start(3).await;
    c.spawn_agent("n1").await;
    c.wait_for("node n1 ready", WAIT, || async {
        let nodes = c.client(1).nodes(Consistency::Linearizable).await.ok()?;
        let ready = nodes
            .items
            .iter()
            .any(|n| n.name == "n1" && n.status == NodeStatus::Ready);
        ready.then_some(())
    })
    .await;
    let http = stream_client(&c);
    // Started before the writes, on a follower.
    let follower = c.follower().await;
    let mut before = Watch::open(&http, &c.url(follower), None, None).await;

    let three: Vec<String> = ["a", "b", "c"]
        .iter()
        .map(|n| service_yaml(n, 0, "600"))
        .collect();
    let r1 = apply(&c, 1, &three).await.expect("apply of 3 services");
    let r2 = apply(&c, 2, &[service_yaml("a", 5, "600")])
        .await
        .expect("scale a 0→5");
    c.wait_for_replicas_running("a", 5).await;

    let kinds = ["Service", "Replica"];
    // 3 services, 1 reconfigured, 5 replicas placed.
    let seen = before.collect(&kinds, 9).await;
    let services: Vec<(String, &str)> = seen[..4]
        .iter()
        .map(|e| (e.cursor().to_string(), e.key.as_str()))
        .collect();
    assert_eq!(
        services,
        [
            (format!("{r1}.0"), "a"),
            (format!("{r1}.1"), "b"),
            (format!("{r1}.2"), "c"),
            (format!("{r2}.0"), "a"),
        ],
        "{:#?}",
        show(&seen)
    );
    let replicas: BTreeSet<&str> = seen[4..].iter().map(|e| e.key.as_str()).collect();
    assert_eq!(
        replicas,
        (0..5)
            .map(|o| format!("a-{o}"))
            .collect::<BTreeSet<_>>()
            .iter()
            .map(String::as_str)
            .collect(),
        "{:#?}",
        show(&seen)
    );
    assert!(
        seen.windows(2).all(|w| w[0].cursor() < w[1].cursor()),
        "in order: {:#?}",
        show(&seen)
    );
    let placed_in: BTreeSet<u64> = seen[4..].iter().map(|e| e.revision).collect();
    eprintln!("the 5 replicas were placed in {} write(s)", placed_in.len());

    // Resuming from a cursor in the middle of the apply (after b), on other peers,
    // by `from=` and by `Last-Event-ID`: the rest, exactly once, in the same order.
    let middle = seen[1].cursor().to_string();
    let rest: Vec<String> = show(&seen[2..]);
    for (via, from, header) in [
        (1, Some(middle.as_str()), None),
        (3, None, Some(middle.as_str())),
    ] {
        let mut resumed = Watch::open(&http, &c.url(via), from, header).await;
        let got = resumed.collect(&kinds, rest.len()).await;
        assert_eq!(show(&got), rest, "resumed on peer {via} after {middle}");
    }
    // A bare revision starts at its first event.
    let mut from_rev = Watch::open(&http, &c.url(2), Some(&r1.to_string()), None).await;
    assert_eq!(show(&from_rev.collect(&kinds, 9).await), show(&seen));

    // `/v1/events` (and so `describe`) shows every one of them too.
    let recent: Vec<Event> = service_events(&c, 3, 100)
        .await
        .into_iter()
        .filter(|e| !rollout_status(e))
        .collect();
    assert_eq!(show(&recent), show(&seen[..4]));
    // openraft logs a read-index round that missed its 100 ms at ERROR; on this
    // loaded machine that happens and is retried.
    c.assert_no_unexpected_errors(&["timeout while confirming leadership"]);
}

/// A CLI process whose stdout is read as JSON values and stderr as lines, each
/// stamped with when it arrived; killed when dropped.
struct Cli {
    child: Child,
    out: mpsc::Receiver<(std::time::Instant, Value)>,
    err: mpsc::Receiver<String>,
    stderr: Vec<String>,
}

impl Cli {
    fn spawn(c: &TestCluster, args: &[&str]) -> Cli {
        let mut child = c
            .cli()
            .args(args)
            .env("ORION_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn orion");
        let stdout = child.stdout.take().expect("stdout");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, out) = mpsc::channel();
        std::thread::spawn(move || {
            let values = serde_json::Deserializer::from_reader(stdout).into_iter::<Value>();
            for v in values.map_while(Result::ok) {
                if tx.send((std::time::Instant::now(), v)).is_err() {
                    return;
                }
            }
        });
        let (etx, err) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if etx.send(line).is_err() {
                    return;
                }
            }
        });
        Cli {
            child,
            out,
            err,
            stderr: Vec::new(),
        }
    }

    /// The next value printed, within `timeout`.
    async fn next(&mut self, timeout: Duration) -> (std::time::Instant, Value) {
        let deadline = Instant::now() + timeout;
        loop {
            self.drain_stderr();
            match self.out.try_recv() {
                Ok(v) => return v,
                Err(mpsc::TryRecvError::Disconnected) => {
                    panic!("the CLI's stdout closed; stderr: {:#?}", self.stderr)
                }
                Err(mpsc::TryRecvError::Empty) => {}
            }
            assert!(
                Instant::now() < deadline,
                "no output from the CLI within {timeout:?}; stderr: {:#?}",
                self.stderr
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn drain_stderr(&mut self) {
        while let Ok(line) = self.err.try_recv() {
            self.stderr.push(line);
        }
    }
}

impl Drop for Cli {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn is_list(v: &Value) -> bool {
    v.get("items").is_some() && v.get("revision").is_some()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_watch_survives_a_kill9_of_the_leader_it_reads_from() {
    let mut c = TestCluster::start(3).await;
    let leader = c.wait_for_leader().await;
    let survivors: Vec<u64> = c.running().into_iter().filter(|id| *id != leader).collect();
    // The leader first: the CLI lists and watches through it.
    let servers: Vec<String> = std::iter::once(leader)
        .chain(survivors.iter().copied())
        .map(|id| c.url(id))
        .collect();
    let servers = servers.join(",");
    let mut cli = Cli::spawn(
        &c,
        &[
            "get", "services", "--watch", "-o", "json", "--server", &servers,
        ],
    );
    let (_, list) = cli.next(WAIT).await;
    assert!(is_list(&list), "the list comes first: {list}");

    // Writes through the survivors only, before, during and after the kill.
    let mut acked: Vec<String> = Vec::new();
    let mut last_acked = 0;
    let mut printed: Vec<Event> = Vec::new();
    for n in 0..10 {
        let name = format!("s{n}");
        let via = survivors[n % survivors.len()];
        last_acked = apply(&c, via, &[service_yaml(&name, 0, "1")])
            .await
            .expect("a write before the kill");
        acked.push(name);
    }
    // The watch is live through the leader before it dies.
    while printed.len() < 10 {
        let (_, v) = cli.next(WAIT).await;
        printed.push(serde_json::from_value(v).expect("an event"));
    }

    c.kill9(leader);
    let killed_at = std::time::Instant::now();
    let mut failed_writes = 0;
    let mut n = acked.len();
    while acked.len() < 40 {
        let name = format!("s{n}");
        let via = survivors[n % survivors.len()];
        n += 1;
        match apply(&c, via, &[service_yaml(&name, 0, "1")]).await {
            Ok(revision) => {
                last_acked = revision;
                acked.push(name);
            }
            Err(_) => {
                failed_writes += 1;
                assert!(
                    failed_writes < 200,
                    "writes through the survivors never resumed"
                );
            }
        }
    }
    // Everything the cluster committed is printed, once, in order.
    let survivor = survivors[0];
    c.wait_for("the survivor to apply every write", WAIT, || async {
        let s = c.status(survivor).await?;
        (s.last_applied >= last_acked).then_some(())
    })
    .await;
    let committed: Vec<Event> = service_events(&c, survivor, 1000).await;
    let mut first_after_kill = None;
    while printed.len() < committed.len() {
        let (at, v) = cli.next(Duration::from_secs(60)).await;
        assert!(!is_list(&v), "relisted during a short outage: {v}");
        if at > killed_at && first_after_kill.is_none() {
            first_after_kill = Some(at.duration_since(killed_at));
        }
        printed.push(serde_json::from_value(v).expect("an event"));
    }
    assert_eq!(show(&printed), show(&committed), "printed = committed");
    let names: BTreeSet<&str> = printed.iter().map(|e| e.key.as_str()).collect();
    for name in &acked {
        assert!(
            names.contains(name.as_str()),
            "acknowledged {name} not printed"
        );
    }
    // Nothing more (no repeats) was printed: the next event is a marker written now.
    apply(&c, survivor, &[service_yaml("marker", 0, "1")])
        .await
        .expect("the marker write");
    // Rollouts that completed after the list above may come first: new events
    // (past the last printed), status changes only; never a repeat.
    let last_printed = printed.last().map(Event::cursor);
    let next = loop {
        let (_, v) = cli.next(WAIT).await;
        let e: Event = serde_json::from_value(v).expect("an event");
        if e.key == "marker" || !(rollout_status(&e) && Some(e.cursor()) > last_printed) {
            break e;
        }
    };
    assert_eq!(next.key, "marker", "an extra event was printed: {next:?}");
    cli.drain_stderr();
    let resumed = cli
        .stderr
        .iter()
        .find(|l| l.contains("resumed after"))
        .cloned();
    eprintln!(
        "kill -9 of leader {leader}: {} writes acknowledged, {failed_writes} refused during the \
         failover; first event printed {:?} after the kill; the CLI says {:?}",
        acked.len(),
        first_after_kill,
        resumed
    );
    assert!(
        cli.stderr.iter().any(|l| l.contains("reconnecting")),
        "the CLI says it reconnects: {:#?}",
        cli.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_from_before_the_window_is_told_to_relist_and_the_cli_lists_again() {
    let c = TestCluster::start(3).await;
    let follower = c.follower().await;
    // 101 writes of 100 events each push the first events out of the 10,000 window.
    let names: Vec<String> = (0..100).map(|i| format!("w{i}")).collect();
    let mut last = 0;
    for round in 0..101 {
        let docs: Vec<String> = names
            .iter()
            .map(|n| service_yaml(n, 0, &round.to_string()))
            .collect();
        last = apply(&c, 1 + round % 3, &docs)
            .await
            .expect("apply of 100 services");
    }
    // Every peer's window has moved (each compacts as it applies).
    for id in c.running() {
        c.wait_for(
            &format!("peer {id} to apply revision {last}"),
            WAIT,
            || async {
                let s = c.status(id).await?;
                (s.last_applied >= last).then_some(())
            },
        )
        .await;
    }
    let http = stream_client(&c);
    for (from, header) in [(Some("1"), None), (Some("2.0"), None), (None, Some("1.0"))] {
        let mut req = http.get(format!(
            "{}/v1/watch{}",
            c.url(follower),
            from.map(|f| format!("?from={f}")).unwrap_or_default()
        ));
        if let Some(h) = header {
            req = req.header("Last-Event-ID", h);
        }
        let r = req.send().await.expect("watch reached the peer");
        assert_eq!(r.status(), 410, "from {from:?} / Last-Event-ID {header:?}");
        let body: ErrorBody = r.json().await.expect("a JSON error");
        assert_eq!(body.error.code, ErrorCode::RelistRequired);
        assert!(
            body.error.message.contains("list again"),
            "{}",
            body.error.message
        );
    }
    // A bad position is a 400 that names it.
    let r = http
        .get(format!("{}/v1/watch?from=1.x", c.url(follower)))
        .send()
        .await
        .expect("watch");
    assert_eq!(r.status(), 400);
    let body: ErrorBody = r.json().await.expect("a JSON error");
    assert!(body.error.message.contains("1.x"), "{}", body.error.message);

    // The CLI told to resume from a position before the window says so on stderr,
    // lists again, and watches from the list's revision.
    let servers: Vec<String> = c.running().iter().map(|id| c.url(*id)).collect();
    let mut cli = Cli::spawn(
        &c,
        &[
            "get",
            "services",
            "--watch",
            "-o",
            "json",
            "--from",
            "2.0",
            "--server",
            &servers.join(","),
        ],
    );
    let (_, list) = cli.next(WAIT).await;
    assert!(is_list(&list), "a fresh list: {list}");
    assert_eq!(list["items"].as_array().map(Vec::len), Some(100));
    let listed_at = list["revision"].as_u64().expect("revision");
    let after = apply(&c, follower, &[service_yaml("after", 0, "1")])
        .await
        .expect("apply");
    // The 100 services' rollouts completing may come first: status changes only.
    let e = loop {
        let (_, v) = cli.next(WAIT).await;
        let e: Event = serde_json::from_value(v).expect("an event");
        if e.key == "after" {
            break e;
        }
        assert!(
            rollout_status(&e),
            "only rollout status changes of the listed services come before: {e:?}"
        );
    };
    assert_eq!(
        (e.key.as_str(), e.cursor()),
        (
            "after",
            EventCursor {
                revision: after,
                seq: 0
            }
        )
    );
    assert!(e.revision > listed_at);
    cli.drain_stderr();
    assert!(
        cli.stderr
            .iter()
            .any(|l| l.contains("event window") && l.contains("listing again")),
        "{:#?}",
        cli.stderr
    );
}
