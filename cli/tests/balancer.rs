//! The API behind a load balancer (HAProxy, TLS passthrough) whose name is no
//! peer's: certificates carry it only with `--tls-san`, and a peer issues its
//! certificate again when it restarts with new names.

mod fixture;

use std::net::SocketAddr;
use std::time::Duration;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use fixture::haproxy::{Haproxy, HaproxyOptions};
use fixture::orion;
use fixture::stream::CliStream;
use fixture::{TestCluster, COUNTER, WAIT};

/// The load balancer's IP: on loopback, but no peer's.
const LB_IP: &str = "127.0.0.100";
/// A DNS name for it, resolved by the test's client.
const LB_NAME: &str = "orion-lb.test";

/// A client of the load balancer by its DNS name: it trusts the cluster CA, sends
/// the admin token, and resolves `LB_NAME` to the load balancer (an HTTP client
/// setting, so it is built from `orion-client`'s HTTP setup and handed over).
fn client_by_name(c: &TestCluster, lb: SocketAddr) -> orion_client::Client {
    let http = orion_client::http_builder(&c.ca_pem, Some(&c.admin_token))
        .expect("client TLS config")
        .resolve(LB_NAME, lb)
        .timeout(Duration::from_secs(20))
        .build()
        .expect("http client");
    orion_client::Client::builder(&[format!("https://{LB_NAME}:{}", lb.port())])
        .http(http)
        .build()
        .expect("client")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_works_through_haproxy_once_peers_carry_its_name() {
    let mut c = TestCluster::start(3).await;
    let lb = Haproxy::start(
        &c.api_addrs(),
        HaproxyOptions {
            listen_ip: LB_IP.parse().expect("ip"),
            ..HaproxyOptions::default()
        },
    )
    .await
    .expect("start HAProxy");
    // The health check (GET /readyz over TLS) passes on every peer.
    lb.wait_for_up(3, WAIT).await.expect("every peer healthy");

    // The peers' certificates name only their own address: a clear refusal.
    let (ok, _, err) = orion(&c, &lb.url(), &["var", "put", "lb/greeting", "hello"]);
    assert!(!ok, "a certificate without the LB's name must be refused");
    assert!(
        err.contains(&format!("certificate not valid for name \"{LB_IP}\""))
            && err.contains("--tls-san"),
        "{err}"
    );

    // Each peer restarts with the names: it issues its certificate again.
    for id in [1, 2, 3] {
        c.stop(id).await;
        c.restart_with(id, &["--tls-san", LB_IP, "--tls-san", LB_NAME]);
        c.wait_for_log(id, "issued this peer's certificate again for its new names")
            .await;
        c.wait_for_voters(&[1, 2, 3]).await;
    }
    lb.wait_for_up(3, WAIT)
        .await
        .expect("every peer healthy again");

    let (ok, out, err) = orion(&c, &lb.url(), &["var", "put", "lb/greeting", "hello"]);
    assert!(ok, "put through the LB: {err}");
    assert!(out.contains("written at revision"), "{out}");
    let (ok, _, err) = orion(&c, &lb.url(), &["get", "services"]);
    assert!(ok, "get services through the LB: {err}");

    // By DNS name too (resolved by the client to HAProxy).
    let by_name = client_by_name(&c, lb.addr());
    let v = by_name
        .variable("lb/greeting", orion_client::Consistency::Linearizable)
        .await;
    let v: orion_api::VariableResponse = match v {
        Ok(v) => v,
        Err(e) => panic!("GET by the LB's DNS name: {e}"),
    };
    assert_eq!(v.variable.value, "hello");

    // Each peer's own address still verifies (the fixture's client dials them).
    for id in [1, 2, 3] {
        assert!(c.status(id).await.is_some(), "peer {id} by its own address");
    }
    c.assert_no_unexpected_errors(&[]);
}

/// The second test's load balancer address (the first one's is `LB_IP`).
const LB2_IP: &str = "127.0.0.101";

/// One `orion` command through the load balancer, as a one-shot call.
struct Call {
    done: Instant,
    ok: bool,
    what: String,
    stderr: String,
}

/// Runs `orion var put` in a loop through `lb` until `stop`, recording each call.
fn writer(
    c: &TestCluster,
    lb: String,
    stop: Arc<AtomicBool>,
    calls: Arc<Mutex<Vec<Call>>>,
) -> std::thread::JoinHandle<()> {
    let cli = c.cli();
    let program = cli.get_program().to_owned();
    let envs: Vec<(std::ffi::OsString, std::ffi::OsString)> = cli
        .get_envs()
        .filter_map(|(k, v)| Some((k.to_owned(), v?.to_owned())))
        .collect();
    std::thread::spawn(move || {
        let mut n = 0;
        while !stop.load(Ordering::Relaxed) {
            n += 1;
            let path = format!("lb/w{n}");
            let out = std::process::Command::new(&program)
                .envs(envs.iter().map(|(k, v)| (k, v)))
                .args(["var", "put", &path, &n.to_string(), "--server", &lb])
                .output();
            let (ok, stderr) = match out {
                Ok(o) => (
                    o.status.success(),
                    String::from_utf8_lossy(&o.stderr).into_owned(),
                ),
                Err(e) => (false, e.to_string()),
            };
            if let Ok(mut v) = calls.lock() {
                v.push(Call {
                    done: Instant::now(),
                    ok,
                    what: path,
                    stderr,
                });
            }
        }
    })
}

/// The numbers `n K` a `logs -f` printed, in order.
fn counter_numbers(s: &CliStream) -> Vec<u64> {
    s.lines()
        .iter()
        .filter_map(|(_, l)| l.strip_prefix("n ")?.parse().ok())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn everything_works_through_haproxy_while_the_leader_is_killed_twice() {
    let mut c = TestCluster::start_with(3, &format!("tls-san = [\"{LB2_IP}\"]\n")).await;
    let lb = Haproxy::start(
        &c.api_addrs(),
        HaproxyOptions {
            listen_ip: LB2_IP.parse().expect("ip"),
            ..HaproxyOptions::default()
        },
    )
    .await
    .expect("start HAProxy");
    lb.wait_for_up(3, WAIT).await.expect("every peer healthy");
    let url = lb.url();
    // The agent, too, knows only the load balancer.
    c.spawn_agent_with("n1", vec![url.clone()], &[]).await;

    let spec = c.dir.path().join("counter.yaml");
    std::fs::write(&spec, COUNTER).expect("write spec");
    let (ok, _, err) = orion(&c, &url, &["apply", "-f", &spec.to_string_lossy()]);
    assert!(ok, "apply through the LB: {err}");
    c.wait_for_replicas_running("counter", 1).await;

    // The two streams, through the load balancer.
    let mut logs = CliStream::spawn("orion logs -f", {
        let mut cmd = c.cli();
        cmd.env("ORION_LOG", "warn").args([
            "logs",
            "counter-0",
            "-f",
            "--tail",
            "1",
            "--server",
            &url,
        ]);
        cmd
    });
    let mut watch = CliStream::spawn("orion get services --watch", {
        let mut cmd = c.cli();
        cmd.env("ORION_LOG", "warn")
            .args(["get", "services", "--watch", "-o", "json", "--server", &url]);
        cmd
    });
    logs.wait_for_line("a counter line", WAIT, |l| l.starts_with("n "))
        .await;
    watch
        .wait_for_line("the list", WAIT, |l| l.contains("\"counter\""))
        .await;

    let (ok, _, err) = orion(&c, &url, &["var", "put", "lb/ready", "yes"]);
    assert!(ok, "var put through the LB: {err}");
    let stop = Arc::new(AtomicBool::new(false));
    let calls: Arc<Mutex<Vec<Call>>> = Arc::default();
    let writes = writer(&c, url.clone(), stop.clone(), calls.clone());
    let http = c.new_http();
    let mut one_shot_failures: Vec<String> = Vec::new();
    let mut stream_pauses = Vec::new();
    for round in 1..=2 {
        let leader = c.wait_for_leader().await;
        let before = counter_numbers(&logs).last().copied().unwrap_or(0);
        c.kill9(leader);
        let killed = Instant::now();
        let new_leader = c.wait_for_leader().await;
        assert_ne!(new_leader, leader, "a new leader after the kill");

        // One-shot commands through the load balancer, right after the failover.
        let marker = format!("marker-{round}");
        let marker_spec = c.dir.path().join(format!("{marker}.yaml"));
        std::fs::write(
            &marker_spec,
            format!("kind: Service\nname: {marker}\nreplicas: 0\ncommand: [sleep, '1']\n"),
        )
        .expect("write spec");
        let commands: Vec<Vec<String>> = vec![
            vec![
                "apply".into(),
                "-f".into(),
                marker_spec.to_string_lossy().into(),
            ],
            vec!["get".into(), "services".into()],
            vec!["var".into(), "get".into(), "lb/ready".into()],
            vec![
                "exec".into(),
                "counter-0".into(),
                "--".into(),
                "echo".into(),
                format!("exec-{round}"),
            ],
        ];
        for args in &commands {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            // `--server` before the subcommand: exec passes what follows `--` on.
            let out = c
                .cli()
                .args(["--server", &url])
                .args(&args)
                .output()
                .expect("run orion");
            let (ok, out, err) = (
                out.status.success(),
                String::from_utf8_lossy(&out.stdout).into_owned(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            );
            if !ok {
                one_shot_failures.push(format!("{args:?}: {err}"));
            }
            if args[0] == "exec" {
                assert!(
                    out.contains(&format!("exec-{round}")),
                    "exec output: {out}{err}"
                );
            }
        }
        // The dashboard's first page.
        let page = http.get(format!("{url}/ui")).send().await;
        match page {
            Ok(r) if r.status().is_success() => {
                let body = r.text().await.unwrap_or_default();
                assert!(body.contains("<html"), "the dashboard page: {body}");
            }
            other => one_shot_failures.push(format!("GET /ui: {other:?}")),
        }

        // Both streams go on: the watch prints the marker, the logs go past the kill.
        let seen = watch
            .wait_for_line(&format!("the {marker} event"), WAIT, |l| {
                l.contains(&format!("\"{marker}\""))
            })
            .await;
        let resumed = logs
            .wait_for_line("a line after the kill", WAIT, |l| {
                l.strip_prefix("n ")
                    .and_then(|n| n.parse::<u64>().ok())
                    .is_some_and(|n| n > before + 20)
            })
            .await;
        stream_pauses.push((
            seen.saturating_duration_since(killed),
            resumed.saturating_duration_since(killed),
        ));

        c.restart(leader);
        c.wait_for_voters(&[1, 2, 3]).await;
        lb.wait_for_up(3, WAIT)
            .await
            .expect("the restarted peer back in the pool");
    }
    stop.store(true, Ordering::Relaxed);
    writes.join().expect("writer thread");

    // Every write was acknowledged, and every acknowledged write is there.
    let calls = std::mem::take(&mut *calls.lock().expect("calls"));
    let failed: Vec<&Call> = calls.iter().filter(|c| !c.ok).collect();
    let longest = calls
        .windows(2)
        .map(|w| w[1].done.saturating_duration_since(w[0].done))
        .max()
        .unwrap_or_default();
    let leader = c.wait_for_leader().await;
    let present: std::collections::BTreeSet<String> = c
        .all_variables(leader)
        .await
        .into_iter()
        .map(|v| v.path)
        .collect();
    for call in calls.iter().filter(|c| c.ok) {
        assert!(
            present.contains(&call.what),
            "acknowledged {} is missing",
            call.what
        );
    }
    // The log stream printed every line once, in order, across both failovers.
    let numbers = counter_numbers(&logs);
    for pair in numbers.windows(2) {
        assert_eq!(
            pair[1],
            pair[0] + 1,
            "logs -f lost or repeated a line across a failover; stderr:\n{}",
            logs.stderr()
        );
    }
    eprintln!(
        "through HAProxy, two kill -9 of the leader: {} writes, {} failed, longest gap \
         between two acknowledged writes {longest:?}; one-shot commands failed: {}; \
         (watch, logs) first output after each kill: {stream_pauses:?}",
        calls.len(),
        failed.len(),
        one_shot_failures.len()
    );
    assert!(
        failed.is_empty(),
        "every write through the LB succeeds: {:#?}",
        failed
            .iter()
            .map(|c| (&c.what, &c.stderr))
            .collect::<Vec<_>>()
    );
    assert!(one_shot_failures.is_empty(), "{one_shot_failures:#?}");
    c.assert_no_unexpected_errors(&[]);
}
