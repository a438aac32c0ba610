//! The supervisor against real child processes (`sleep`, `sh`, `python3`).
//!
//! Every replica id starts with a token unique to the test, and every process gets
//! `ORION_REPLICA=<id>`, so [`Fixture`]'s `Drop` finds and kills whatever a failed
//! test left behind by scanning `/proc/*/environ`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;
use orion_agent::{
    LogConfig, LogStream, ReplicaSpec, ReplicaState, ReplicaStatus, Supervisor, SupervisorConfig,
};
use orion_api::spec::service::{
    Backoff, HealthCheck, Placement, Probe, Resources, RestartMode, RestartPolicy, ServiceSpec,
    UpdateStrategy,
};
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(15);

struct Fixture {
    dir: tempfile::TempDir,
    token: String,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let token: String = dir
            .path()
            .file_name()
            .map(|n| n.to_string_lossy().to_ascii_lowercase())
            .unwrap_or_default()
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .collect();
        Fixture { dir, token }
    }

    fn root(&self) -> PathBuf {
        self.dir.path().to_owned()
    }

    fn id(&self, name: &str) -> String {
        format!("{}-{name}", self.token)
    }

    fn supervisor(&self) -> Supervisor {
        Supervisor::with_config(self.root(), CancellationToken::new(), test_config())
    }

    fn replica(&self, name: &str, service: ServiceSpec) -> ReplicaSpec {
        ReplicaSpec {
            id: self.id(name),
            service,
            ports: BTreeMap::new(),
            generation: 1,
            variables: Default::default(),
        }
    }

    /// Pids of live processes started for this test's replicas.
    fn processes(&self) -> Vec<u32> {
        processes_with_env(&format!("ORION_REPLICA={}-", self.token))
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        for pid in self.processes() {
            if let Ok(raw) = i32::try_from(pid) {
                let _ = killpg(Pid::from_raw(raw), Signal::SIGKILL);
                let _ = kill(Pid::from_raw(raw), Signal::SIGKILL);
            }
        }
    }
}

fn test_config() -> SupervisorConfig {
    SupervisorConfig {
        logs: LogConfig {
            max_bytes: 4096,
            keep: 2,
            check_every: Duration::from_millis(50),
        },
        stop_grace: Duration::from_secs(2),
        backoff_reset: Duration::from_secs(10),
        adopted_poll: Duration::from_millis(50),
    }
}

fn service(command: &[&str], policy: RestartMode, initial_ms: u64) -> ServiceSpec {
    ServiceSpec {
        name: "svc".into(),
        replicas: 1,
        command: command.iter().map(|s| (*s).to_owned()).collect(),
        args: Vec::new(),
        env: BTreeMap::new(),
        working_dir: None,
        ports: Vec::new(),
        resources: Resources::default(),
        health: None,
        restart: RestartPolicy {
            policy,
            backoff: Backoff {
                initial_ms,
                max_ms: initial_ms * 20,
            },
        },
        placement: Placement::default(),
        strategy: UpdateStrategy::default(),
        hooks: Default::default(),
        env_variables: BTreeMap::new(),
        variable_revisions: BTreeMap::new(),
    }
}

/// `/proc/<pid>/stat` → (state, pgrp).
fn stat(pid: u32) -> Option<(char, u32)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Some((
        fields.first()?.chars().next()?,
        fields.get(2)?.parse().ok()?,
    ))
}

/// Alive and not a zombie.
fn alive(pid: u32) -> bool {
    matches!(stat(pid), Some((s, _)) if s != 'Z' && s != 'X')
}

fn processes_with_env(needle: &str) -> Vec<u32> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(environ) = std::fs::read(entry.path().join("environ")) else {
            continue;
        };
        let hit = environ
            .split(|&b| b == 0)
            .any(|var| var.starts_with(needle.as_bytes()));
        if hit && alive(pid) {
            found.push(pid);
        }
    }
    found
}

fn status_of<'a>(statuses: &'a [ReplicaStatus], id: &str) -> Option<&'a ReplicaStatus> {
    statuses.iter().find(|s| s.id == id)
}

/// Waits until `check` on the statuses gives a value; panics naming `what` after `timeout`.
async fn wait_status<T>(
    sup: &Supervisor,
    what: &str,
    timeout: Duration,
    mut check: impl FnMut(&[ReplicaStatus]) -> Option<T>,
) -> T {
    let mut changes = sup.subscribe();
    let deadline = Instant::now() + timeout;
    loop {
        let statuses = sup.statuses();
        if let Some(v) = check(&statuses) {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}; statuses: {statuses:#?}"
        );
        let _ = tokio::time::timeout(Duration::from_millis(50), changes.changed()).await;
    }
}

/// Waits until `check` holds; panics naming `what` after `timeout`.
async fn wait_until(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn running_pid(sup: &Supervisor, id: &str) -> u32 {
    wait_status(sup, &format!("{id} running"), WAIT, |st| {
        status_of(st, id)
            .filter(|s| s.state == ReplicaState::Running)
            .and_then(|s| s.pid)
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn replicas_run_in_own_groups_and_are_stopped_by_reconcile() {
    let fx = Fixture::new();
    let sup = fx.supervisor();
    let sleep = service(&["sleep", "1000"], RestartMode::Always, 200);
    let (a, b) = (
        fx.replica("a", sleep.clone()),
        fx.replica("b", sleep.clone()),
    );
    sup.reconcile(vec![a.clone(), b.clone()]).await;
    let pa = running_pid(&sup, &a.id).await;
    let pb = running_pid(&sup, &b.id).await;
    assert_ne!(pa, pb);
    for pid in [pa, pb] {
        assert!(alive(pid));
        assert_eq!(
            stat(pid).map(|(_, pgrp)| pgrp),
            Some(pid),
            "leads its own group"
        );
    }
    let env_a = std::fs::read(format!("/proc/{pa}/environ")).unwrap_or_default();
    let env_a = String::from_utf8_lossy(&env_a);
    assert!(
        env_a.contains(&format!("ORION_REPLICA={}", a.id)),
        "{env_a}"
    );

    // A changed spec replaces the process; an unchanged one is left alone.
    let mut b2 = b.clone();
    b2.service.env.insert("VERSION".into(), "2".into());
    sup.reconcile(vec![a.clone(), b2.clone()]).await;
    let pb2 = wait_status(&sup, "b replaced", WAIT, |st| {
        status_of(st, &b.id)
            .filter(|s| s.state == ReplicaState::Running)
            .and_then(|s| s.pid)
            .filter(|p| *p != pb)
    })
    .await;
    wait_until("old b gone", WAIT, || !alive(pb)).await;
    assert!(alive(pa));
    assert_eq!(
        status_of(&sup.statuses(), &a.id).and_then(|s| s.pid),
        Some(pa)
    );

    sup.reconcile(Vec::new()).await;
    wait_until("all replicas gone", WAIT, || !alive(pa) && !alive(pb2)).await;
    assert!(sup.statuses().is_empty());
    wait_until("no leftover processes", WAIT, || fx.processes().is_empty()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_replica_is_restarted_with_backoff() {
    let fx = Fixture::new();
    let sup = fx.supervisor();
    let r = fx.replica("k", service(&["sleep", "1000"], RestartMode::Always, 300));
    sup.reconcile(vec![r.clone()]).await;
    let first = running_pid(&sup, &r.id).await;
    let killed_at = Instant::now();
    kill(Pid::from_raw(first as i32), Signal::SIGKILL).expect("kill -9");
    let status = wait_status(&sup, "restart after kill -9", WAIT, |st| {
        status_of(st, &r.id)
            .filter(|s| s.state == ReplicaState::Running && s.pid.is_some_and(|p| p != first))
            .cloned()
    })
    .await;
    assert!(
        killed_at.elapsed() >= Duration::from_millis(250),
        "restarted after the backoff"
    );
    assert_eq!(status.restarts, 1);
    let last = status.last_exit.unwrap_or_default();
    assert!(last.contains("signal 9"), "{last}");
    sup.stop_all(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn restart_policies_follow_exit_status() {
    let fx = Fixture::new();
    let sup = fx.supervisor();
    let ok = fx.replica(
        "ok",
        service(&["sh", "-c", "exit 0"], RestartMode::OnFailure, 100),
    );
    let bad = fx.replica(
        "bad",
        service(&["sh", "-c", "exit 3"], RestartMode::OnFailure, 100),
    );
    let never = fx.replica(
        "never",
        service(&["sh", "-c", "exit 3"], RestartMode::Never, 100),
    );
    sup.reconcile(vec![ok.clone(), bad.clone(), never.clone()])
        .await;

    // `Exited` is only set once the policy decided not to restart.
    let ok_status = wait_status(&sup, "ok exited", WAIT, |st| {
        status_of(st, &ok.id)
            .filter(|s| matches!(s.state, ReplicaState::Exited { .. }))
            .cloned()
    })
    .await;
    assert_eq!(
        ok_status.state,
        ReplicaState::Exited {
            code: Some(0),
            signal: None
        }
    );
    assert_eq!(ok_status.restarts, 0);

    let never_status = wait_status(&sup, "never exited", WAIT, |st| {
        status_of(st, &never.id)
            .filter(|s| matches!(s.state, ReplicaState::Exited { .. }))
            .cloned()
    })
    .await;
    assert_eq!(
        never_status.state,
        ReplicaState::Exited {
            code: Some(3),
            signal: None
        }
    );
    assert_eq!(never_status.restarts, 0);

    wait_status(&sup, "bad restarted twice", WAIT, |st| {
        status_of(st, &bad.id)
            .filter(|s| s.restarts >= 2)
            .map(|_| ())
    })
    .await;
    let bad_status = status_of(&sup.statuses(), &bad.id)
        .cloned()
        .expect("bad status");
    assert_eq!(bad_status.last_exit.as_deref(), Some("exited with code 3"));
    sup.stop_all(Duration::from_secs(1)).await;
    assert!(sup.statuses().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_command_fails_with_backoff_not_a_hot_loop() {
    let fx = Fixture::new();
    let sup = fx.supervisor();
    let r = fx.replica(
        "missing",
        service(&["orion-no-such-command"], RestartMode::Always, 500),
    );
    let started = Instant::now();
    sup.reconcile(vec![r.clone()]).await;
    let reason = wait_status(&sup, "failed state", WAIT, |st| {
        match &status_of(st, &r.id)?.state {
            ReplicaState::Failed { reason } => Some(reason.clone()),
            _ => None,
        }
    })
    .await;
    assert_eq!(reason, "command \"orion-no-such-command\" not found");
    let visible = status_of(&sup.statuses(), &r.id).and_then(|s| s.reason.clone());
    assert!(visible.is_some_and(|v| v.contains("orion-no-such-command")));

    // Measuring a rate needs a fixed window: attempts at ~0, 0.5, 1.5 s (then 3.5 s).
    tokio::time::sleep(Duration::from_secs(2).saturating_sub(started.elapsed())).await;
    let status = status_of(&sup.statuses(), &r.id).cloned().expect("status");
    let attempts = status.restarts + 1;
    assert!(
        (2..5).contains(&attempts),
        "{attempts} attempts in 2 s: {status:?}"
    );
    sup.stop_all(Duration::from_secs(1)).await;
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

#[tokio::test(flavor = "multi_thread")]
async fn http_health_check_marks_healthy() {
    let fx = Fixture::new();
    let sup = fx.supervisor();
    let mut svc = service(
        &[
            "python3",
            "-m",
            "http.server",
            "${PORT}",
            "--bind",
            "127.0.0.1",
        ],
        RestartMode::Always,
        200,
    );
    svc.ports = vec!["http".into()];
    svc.health = Some(HealthCheck {
        probe: Probe::Http {
            port: "http".into(),
            path: "/".into(),
        },
        interval_ms: 100,
        timeout_ms: 1_000,
        failures: 50,
        successes: 2,
        initial_delay_ms: 0,
        startup_grace_ms: 0,
    });
    let mut r = fx.replica("web", svc);
    r.ports.insert("http".into(), free_port());
    sup.reconcile(vec![r.clone()]).await;
    let status = wait_status(&sup, "web healthy", WAIT, |st| {
        status_of(st, &r.id)
            .filter(|s| s.state == ReplicaState::Healthy)
            .cloned()
    })
    .await;
    assert_eq!(status.restarts, 0);
    sup.stop_all(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn failing_exec_check_restarts_replica() {
    let fx = Fixture::new();
    let sup = fx.supervisor();
    let mut svc = service(&["sleep", "1000"], RestartMode::Always, 100);
    svc.health = Some(HealthCheck {
        probe: Probe::Exec {
            command: vec!["false".into()],
        },
        interval_ms: 100,
        timeout_ms: 1_000,
        failures: 2,
        successes: 1,
        initial_delay_ms: 0,
        startup_grace_ms: 0,
    });
    let r = fx.replica("sick", svc);
    sup.reconcile(vec![r.clone()]).await;
    let first = running_pid(&sup, &r.id).await;
    let status = wait_status(&sup, "restart after failed checks", WAIT, |st| {
        status_of(st, &r.id)
            .filter(|s| s.restarts >= 1 && s.pid.is_some_and(|p| p != first))
            .cloned()
    })
    .await;
    let last = status.last_exit.unwrap_or_default();
    assert!(last.contains("unhealthy"), "{last}");
    wait_until("unhealthy process killed", WAIT, || !alive(first)).await;
    sup.stop_all(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn stop_escalates_to_sigkill_after_grace() {
    let fx = Fixture::new();
    let sup = fx.supervisor();
    let r = fx.replica(
        "stubborn",
        service(
            &["sh", "-c", "trap '' TERM; sleep 1000"],
            RestartMode::Always,
            100,
        ),
    );
    sup.reconcile(vec![r.clone()]).await;
    let pid = running_pid(&sup, &r.id).await;
    // The trap must be in place before we stop it: wait for the `sleep` in its group.
    wait_until("sleep child started", WAIT, || fx.processes().len() >= 2).await;
    let grace = Duration::from_millis(800);
    let t0 = Instant::now();
    sup.stop_all(grace).await;
    let took = t0.elapsed();
    assert!(
        took >= grace,
        "stopped after {took:?}, before the grace period"
    );
    assert!(took < grace + Duration::from_secs(5), "took {took:?}");
    wait_until("stubborn process gone", WAIT, || !alive(pid)).await;
    wait_until("its whole group gone", WAIT, || fx.processes().is_empty()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn logs_rotate_and_stay_bounded() {
    let fx = Fixture::new();
    let sup = fx.supervisor();
    // ~40 KB in bursts of ~2 KB, ten times the 4 KiB limit.
    let script = "i=0; while [ $i -lt 400 ]; do \
                  echo \"line $i xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"; \
                  i=$((i+1)); [ $((i % 20)) -eq 0 ] && sleep 0.05; done; echo done >&2; sleep 1000";
    let r = fx.replica(
        "chatty",
        service(&["sh", "-c", script], RestartMode::Always, 100),
    );
    sup.reconcile(vec![r.clone()]).await;
    let dir = sup.log_dir(&r.id);
    let size = |name: &str| std::fs::metadata(dir.join(name)).map(|m| m.len()).ok();
    wait_until("all lines written and rotated", WAIT, || {
        let last = sup.tail(&r.id, LogStream::Stdout, 1).unwrap_or_default();
        last.first().is_some_and(|l| l.starts_with("line 399 "))
            && size("stdout.log").is_some_and(|s| s <= 4096)
            && size("stderr.log").is_some_and(|s| s > 0)
    })
    .await;
    assert_eq!(
        sup.tail(&r.id, LogStream::Stderr, 5).expect("tail"),
        vec!["done"]
    );
    let rotated: Vec<u64> = ["stdout.log.1", "stdout.log.2"]
        .iter()
        .map(|n| size(n).unwrap_or_else(|| panic!("{n} exists")))
        .collect();
    assert!(rotated.iter().all(|s| *s <= 4096 && *s > 0), "{rotated:?}");
    assert!(size("stdout.log.3").is_none(), "only `keep` rotated files");
    let total: u64 = rotated.iter().sum::<u64>() + size("stdout.log").unwrap_or(0);
    assert!(total <= 3 * 4096, "total {total}");
    // The newest lines are in order across the live and rotated files.
    let last = sup.tail(&r.id, LogStream::Stdout, 3).expect("tail");
    assert!(
        last[2].starts_with("line 399 ") && last[1].starts_with("line 398 "),
        "{last:?}"
    );
    sup.stop_all(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn restarted_agent_adopts_running_replica() {
    let fx = Fixture::new();
    let r = fx.replica(
        "adopt",
        service(&["sleep", "1000"], RestartMode::Always, 200),
    );
    let needle = format!("ORION_REPLICA={}", r.id);

    let a = fx.supervisor();
    a.reconcile(vec![r.clone()]).await;
    let pid = running_pid(&a, &r.id).await;
    // The agent "crashes": supervision ends, the process and its record stay.
    a.detach();
    drop(a);
    assert!(fx
        .root()
        .join("replicas")
        .join(format!("{}.json", r.id))
        .exists());
    assert!(alive(pid));

    let b = fx.supervisor();
    let adopted = status_of(&b.statuses(), &r.id)
        .cloned()
        .expect("adopted status");
    assert_eq!(adopted.pid, Some(pid));
    assert_eq!(adopted.state, ReplicaState::Running);
    // The same desired set keeps the adopted process: no second one.
    b.reconcile(vec![r.clone()]).await;
    assert_eq!(
        status_of(&b.statuses(), &r.id).and_then(|s| s.pid),
        Some(pid)
    );
    assert_eq!(processes_with_env(&needle), vec![pid]);

    // B notices the adopted process dying (by polling /proc) and restarts it.
    kill(Pid::from_raw(pid as i32), Signal::SIGKILL).expect("kill -9");
    let new_pid = wait_status(&b, "adopted replica restarted", WAIT, |st| {
        status_of(st, &r.id)
            .filter(|s| s.state == ReplicaState::Running)
            .and_then(|s| s.pid)
            .filter(|p| *p != pid)
    })
    .await;
    let status = status_of(&b.statuses(), &r.id).cloned().expect("status");
    assert_eq!(status.restarts, 1);
    assert_eq!(processes_with_env(&needle), vec![new_pid]);

    b.stop_all(Duration::from_secs(2)).await;
    wait_until("replica gone", WAIT, || !alive(new_pid)).await;
    assert!(processes_with_env(&needle).is_empty());
    let records = std::fs::read_dir(fx.root().join("replicas"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(records, 0, "records removed after stop_all");
}

#[tokio::test(flavor = "multi_thread")]
async fn stale_record_is_not_adopted() {
    let fx = Fixture::new();
    let r = fx.replica(
        "stale",
        service(&["sleep", "1000"], RestartMode::Always, 200),
    );
    let a = fx.supervisor();
    a.reconcile(vec![r.clone()]).await;
    let pid = running_pid(&a, &r.id).await;
    a.detach();
    drop(a);
    kill(Pid::from_raw(pid as i32), Signal::SIGKILL).expect("kill -9");
    wait_until("process dead", WAIT, || !alive(pid)).await;
    let b = fx.supervisor();
    assert!(b.statuses().is_empty(), "{:?}", b.statuses());
    assert!(!fx
        .root()
        .join("replicas")
        .join(format!("{}.json", r.id))
        .exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn restart_stops_gracefully_and_starts_again_whatever_the_policy() {
    let fx = Fixture::new();
    let sup = fx.supervisor();
    // Exits cleanly on SIGTERM: a graceful stop shows as code 0.
    let polite = fx.replica(
        "polite",
        service(
            &[
                "sh",
                "-c",
                "trap 'exit 0' TERM; while :; do sleep 0.05; done",
            ],
            RestartMode::Never,
            100,
        ),
    );
    let done = fx.replica(
        "done",
        service(&["sh", "-c", "exit 3"], RestartMode::Never, 100),
    );
    sup.reconcile(vec![polite.clone(), done.clone()]).await;
    let pid = running_pid(&sup, &polite.id).await;
    // The trap is set once its loop has a `sleep` child.
    let own = format!("ORION_REPLICA={}", polite.id);
    wait_until("the trap's loop running", WAIT, || {
        processes_with_env(&own).len() >= 2
    })
    .await;

    let after = sup.restart(&polite.id, WAIT).await.expect("restart");
    assert_eq!(after.restarts, 1, "{after:?}");
    assert!(after.pid.is_some_and(|p| p != pid), "{after:?}");
    assert_eq!(
        after.last_exit.as_deref(),
        Some("exited with code 0 (restarted on request)"),
        "stopped with SIGTERM, not killed"
    );
    wait_until("the old process gone", WAIT, || !alive(pid)).await;

    // `never` and already exited: a restart runs it again all the same.
    wait_status(&sup, "done exited", WAIT, |st| {
        status_of(st, &done.id)
            .filter(|s| matches!(s.state, ReplicaState::Exited { .. }))
            .map(|_| ())
    })
    .await;
    let again = sup.restart(&done.id, WAIT).await.expect("restart");
    assert_eq!(again.restarts, 1, "{again:?}");
    wait_status(&sup, "done exited once more", WAIT, |st| {
        status_of(st, &done.id)
            .filter(|s| matches!(s.state, ReplicaState::Exited { .. }) && s.restarts == 1)
            .map(|_| ())
    })
    .await;

    let err = sup
        .restart(&fx.id("nothing"), WAIT)
        .await
        .expect_err("no such replica");
    assert!(
        err.to_string().contains("does not run on this node"),
        "{err}"
    );
    sup.stop_all(Duration::from_secs(1)).await;
}
