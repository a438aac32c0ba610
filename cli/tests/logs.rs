//! `orion logs -f` survives leader changes: real peers, a real agent, a real
//! replica printing numbered lines, and the real CLI with a context of all three
//! servers; the leader is killed with `kill -9` while the streams are open.

mod fixture;

use fixture::COUNTER;

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fixture::TestCluster;
use orion::context::{Config, Context};
use orion_api::{ApplyRequest, NodeList, SourceFile};
use orion_client::{Client, Consistency};

/// A typed client of peer `via`, as the admin, each call within 20 s.
fn client(c: &TestCluster, via: u64) -> Client {
    Client::new(&[c.url(via)], &c.ca_pem, Some(c.admin_token.clone()))
        .expect("client")
        .with_timeout(Duration::from_secs(20))
}

/// A running `orion logs -f` and what it printed so far.
struct Follower {
    name: &'static str,
    child: Child,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<Vec<String>>>,
}

impl Drop for Follower {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Follower {
    /// `orion logs counter-0 -f` with a config file whose one context lists
    /// `servers` in this order (the first is where the stream starts).
    fn start(c: &TestCluster, name: &'static str, servers: Vec<String>) -> Follower {
        let config = Config {
            current_context: Some("test".into()),
            contexts: [(
                "test".to_string(),
                Context {
                    servers,
                    ca: c.ca_pem.clone(),
                    token: Some(c.admin_token.clone()),
                },
            )]
            .into(),
        };
        let path = c.dir.path().join(format!("config-{name}.yaml"));
        std::fs::write(
            &path,
            serde_norway::to_string(&config).expect("config yaml"),
        )
        .expect("write config");
        let mut child = c
            .cli()
            .env_remove("ORION_TOKEN")
            .env_remove("ORION_CA_FILE")
            .env("ORION_CONFIG", &path)
            .env("ORION_LOG", "warn")
            .args(["logs", "counter-0", "-f", "--tail", "3"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn orion logs -f");
        let collect = |pipe: Box<dyn std::io::Read + Send>| {
            let lines = Arc::new(Mutex::new(Vec::new()));
            let sink = lines.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines() {
                    let Ok(line) = line else { break };
                    if let Ok(mut v) = sink.lock() {
                        v.push(line);
                    }
                }
            });
            lines
        };
        let stdout = collect(Box::new(child.stdout.take().expect("stdout")));
        let stderr = collect(Box::new(child.stderr.take().expect("stderr")));
        Follower {
            name,
            child,
            stdout,
            stderr,
        }
    }

    /// The numbers printed so far, in order; panics on a line that is not `n K`.
    fn numbers(&self) -> Vec<u64> {
        let lines = self.stdout.lock().expect("lines").clone();
        lines
            .iter()
            .map(|l| {
                l.strip_prefix("n ")
                    .and_then(|n| n.parse().ok())
                    .unwrap_or_else(|| panic!("{}: unexpected output line {l:?}", self.name))
            })
            .collect()
    }

    fn last(&self) -> Option<u64> {
        self.numbers().last().copied()
    }

    fn stderr(&self) -> String {
        self.stderr.lock().expect("lines").join("\n")
    }

    /// Every number exactly once, in order, from the first one printed.
    fn assert_every_number_once(&self) {
        let numbers = self.numbers();
        for pair in numbers.windows(2) {
            assert_eq!(
                pair[1],
                pair[0] + 1,
                "{}: line {} follows line {} (lost or repeated across a reconnect); \
                 stderr:\n{}",
                self.name,
                pair[1],
                pair[0],
                self.stderr()
            );
        }
    }

    /// How long each reconnect took, as the CLI reported it.
    fn reconnects(&self) -> Vec<String> {
        self.stderr()
            .lines()
            .filter(|l| l.contains("log stream resumed"))
            .map(str::to_owned)
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_follow_resumes_through_leader_kills_with_every_line_exactly_once() {
    let mut c = TestCluster::start(3).await;
    c.spawn_agent("n1").await;
    c.wait_for(
        "the agent's node to be registered",
        fixture::WAIT,
        || async {
            let nodes: NodeList = client(&c, 1).nodes(Consistency::Linearizable).await.ok()?;
            (nodes.items.len() == 1).then_some(())
        },
    )
    .await;
    let request = ApplyRequest {
        files: vec![SourceFile {
            name: "counter.yaml".into(),
            content: COUNTER.into(),
        }],
    };
    let r = client(&c, 1).apply(&request).await;
    assert!(r.is_ok(), "apply: {r:?}");
    c.wait_for_replicas_running("counter", 1).await;

    for round in 1..=2 {
        let leader = c.wait_for_leader().await;
        let follower = c.follower().await;
        let ordered = |first: u64| {
            let mut ids = vec![first];
            ids.extend(c.peers.keys().filter(|id| **id != first));
            ids.iter().map(|id| c.url(*id)).collect::<Vec<_>>()
        };
        // One stream on the leader itself (its peer dies), one relayed by a
        // follower (the leader behind it dies).
        let direct = Follower::start(&c, "on the leader", ordered(leader));
        let relayed = Follower::start(&c, "through a follower", ordered(follower));
        for f in [&direct, &relayed] {
            c.wait_for(
                &format!("round {round}: 20 lines from the stream {}", f.name),
                fixture::WAIT,
                || async { (f.numbers().len() >= 20).then_some(()) },
            )
            .await;
        }

        c.kill9(leader);
        let killed_at = tokio::time::Instant::now();
        let marks: Vec<u64> = [&direct, &relayed]
            .iter()
            .map(|f| f.last().unwrap_or(0))
            .collect();
        for (f, mark) in [&direct, &relayed].into_iter().zip(marks) {
            c.wait_for(
                &format!(
                    "round {round}: the stream {} to go on 40 lines past {mark} after the \
                     leader's kill -9",
                    f.name
                ),
                Duration::from_secs(90),
                || async { (f.last().unwrap_or(0) >= mark + 40).then_some(()) },
            )
            .await;
            f.assert_every_number_once();
            let reconnects = f.reconnects();
            assert!(
                !reconnects.is_empty(),
                "{}: the CLI says it resumed; stderr:\n{}",
                f.name,
                f.stderr()
            );
            eprintln!(
                "round {round}, stream {}: {} (40 lines past the kill after {:?})",
                f.name,
                reconnects.join("; "),
                killed_at.elapsed()
            );
        }
        drop(direct);
        drop(relayed);
        c.restart(leader);
        c.wait_for_voters(&[1, 2, 3]).await;
    }
    c.assert_no_unexpected_errors(&[]);
}
