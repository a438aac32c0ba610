//! Batch and cron jobs with real peers, a real agent and real processes. What ran
//! is counted from the processes' own output (each task appends a line to a file
//! of the test's), not only from what Orion reports.

mod fixture;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fixture::{orion, TestCluster};
use orion_api::{JobObject, RunState, TaskState};
use orion_client::Consistency;

async fn job(c: &TestCluster, name: &str) -> Option<JobObject> {
    c.running_client()
        .job(name, Consistency::Linearizable)
        .await
        .ok()
        .map(|r| r.job)
}

/// Waits until job `name`'s run `run` has finished, and returns the job.
async fn wait_finished(c: &TestCluster, name: &str, run: u64, timeout: Duration) -> JobObject {
    c.wait_for(
        &format!("run {run} of job {name} to finish"),
        timeout,
        || async {
            job(c, name).await.filter(|j| {
                j.runs
                    .iter()
                    .any(|r| r.id == run && r.state != RunState::Running)
            })
        },
    )
    .await
}

/// The lines the tasks appended to `file`.
fn lines(file: &Path) -> Vec<String> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// A shell command that appends `$ORION_REPLICA <unix ns>` to `file`, then `rest`.
fn task(file: &Path, rest: &str) -> String {
    format!(
        "[sh, -c, 'echo \"$ORION_REPLICA $(date +%s%N)\" >> {}; {rest}']",
        file.display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_of_three_completions_two_at_a_time_succeeds_with_exit_codes_and_logs() {
    let mut c = TestCluster::start(3).await;
    c.spawn_agent("n1").await;
    let out = c.dir.path().join("batch.txt");
    c.apply_yaml(
        &format!(
            "kind: Job\nname: batch\ncompletions: 3\nparallelism: 2\n\
             resources: {{cpu: 10m, memory: 8Mi}}\n\
             command: {}\n",
            task(
                &out,
                "echo hello from $ORION_REPLICA; sleep 2; echo \"$ORION_REPLICA end $(date +%s%N)\" >> FILE"
                    .replace("FILE", &out.display().to_string())
                    .as_str()
            )
        ),
    )
    .await;
    let j = wait_finished(&c, "batch", 1, Duration::from_secs(60)).await;
    let run = &j.runs[0];
    assert_eq!(run.state, RunState::Succeeded, "{run:?}");
    let done: Vec<_> = run
        .tasks
        .iter()
        .filter(|t| t.state == TaskState::Succeeded)
        .collect();
    assert_eq!(done.len(), 3, "{run:?}");
    assert!(done.iter().all(|t| t.exit_code == Some(0)));

    // From the processes' own lines: three tasks, never more than two at once.
    let mut events: Vec<(u128, i32)> = Vec::new();
    let mut started = std::collections::BTreeSet::new();
    for l in lines(&out) {
        let parts: Vec<&str> = l.split_whitespace().collect();
        match parts.as_slice() {
            [_, "end", t] => events.push((t.parse().expect("time"), -1)),
            [id, t] => {
                started.insert(id.to_string());
                events.push((t.parse().expect("time"), 1));
            }
            _ => panic!("odd line {l:?}"),
        }
    }
    assert_eq!(started.len(), 3, "three task processes: {:?}", lines(&out));
    events.sort();
    let mut running = 0;
    let mut most = 0;
    for (_, d) in events {
        running += d;
        most = most.max(running);
    }
    assert!(most <= 2, "at most parallelism 2 at once, saw {most}");
    assert_eq!(most, 2, "two ran at once");

    let server = c.url(c.running()[0]);
    let (ok, text, err) = orion(&c, &server, &["describe", "job", "batch"]);
    assert!(ok, "{err}");
    assert!(text.contains("run 1 succeeded"), "{text}");
    assert_eq!(text.matches("succeeded  0").count(), 3, "{text}");
    let (ok, text, err) = orion(&c, &server, &["get", "jobs"]);
    assert!(
        ok && text.contains("batch") && text.contains("1 succeeded (3/3)"),
        "{text}{err}"
    );
    // The finished task's log is still readable.
    let (ok, text, err) = orion(&c, &server, &["logs", "batch-1-0-1"]);
    assert!(ok, "{err}");
    assert!(text.contains("hello from batch-1-0-1"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_job_retries_with_growing_backoff_then_fails_at_the_backoff_limit() {
    let mut c = TestCluster::start(3).await;
    c.spawn_agent("n1").await;
    let out = c.dir.path().join("fail.txt");
    c.apply_yaml(&format!(
        "kind: Job\nname: flaky\nbackoff_limit: 2\nbackoff: {{initial: 2s, max: 1m}}\n\
             resources: {{cpu: 10m, memory: 8Mi}}\ncommand: {}\n",
        task(&out, "exit 3")
    ))
    .await;
    let j = wait_finished(&c, "flaky", 1, Duration::from_secs(60)).await;
    let run = &j.runs[0];
    assert_eq!(run.state, RunState::Failed);
    assert!(
        run.reason
            .as_deref()
            .is_some_and(|r| r.contains("backoff limit")),
        "{run:?}"
    );
    assert_eq!(
        run.tasks.len(),
        3,
        "the first attempt and two retries: {run:?}"
    );
    assert!(run.tasks.iter().all(|t| t.exit_code == Some(3)));
    // The processes' own start times: each retry waited longer than the one before.
    let times: Vec<u128> = lines(&out)
        .iter()
        .map(|l| {
            l.split_whitespace()
                .nth(1)
                .expect("time")
                .parse()
                .expect("ns")
        })
        .collect();
    assert_eq!(times.len(), 3, "{:?}", lines(&out));
    let gaps: Vec<u128> = times
        .windows(2)
        .map(|w| (w[1] - w[0]) / 1_000_000)
        .collect();
    assert!(
        gaps[0] >= 2_000,
        "the first retry waits its 2s backoff: {gaps:?}"
    );
    assert!(gaps[1] >= 4_000, "the second waits 4s: {gaps:?}");
    assert!(gaps[1] > gaps[0], "the gaps grow: {gaps:?}");
    let server = c.url(c.running()[0]);
    let (ok, text, err) = orion(&c, &server, &["describe", "job", "flaky"]);
    assert!(ok, "{err}");
    assert!(
        text.contains("run 1 failed") && text.contains("backoff limit"),
        "{text}"
    );
    assert!(text.contains("exited with code 3"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_run_starts_a_run_now_once_per_request_id() {
    let mut c = TestCluster::start(3).await;
    c.spawn_agent("n1").await;
    let out = c.dir.path().join("manual.txt");
    c.apply_yaml(&format!(
        "kind: Job\nname: manual\nschedule: '0 0 1 1 *'\n\
             resources: {{cpu: 10m, memory: 8Mi}}\ncommand: {}\n",
        task(&out, "exit 0")
    ))
    .await;
    // Scheduled once a year: nothing runs by itself.
    let j = c
        .wait_for("the schedule armed", Duration::from_secs(20), || async {
            job(&c, "manual")
                .await
                .filter(|j| j.last_scheduled.is_some())
        })
        .await;
    assert!(j.runs.is_empty());
    let server = c.url(c.follower().await);
    let (ok, text, err) = orion(&c, &server, &["job", "run", "manual"]);
    assert!(ok, "{err}");
    assert!(text.contains("manual") && text.contains(" 1 "), "{text}");
    let j = wait_finished(&c, "manual", 1, Duration::from_secs(30)).await;
    assert_eq!(j.runs[0].state, RunState::Succeeded);
    assert_eq!(j.runs[0].scheduled_at, None, "a manual run has no slot");
    assert_eq!(lines(&out).len(), 1);

    // The same request id twice: one run.
    let url = format!("{server}/v1/jobs/manual/run");
    let mut ids = Vec::new();
    for _ in 0..2 {
        let r: serde_json::Value = c
            .http
            .post(&url)
            .header("Idempotency-Key", "job-run-once")
            .json(&serde_json::json!({}))
            .send()
            .await
            .expect("post")
            .json()
            .await
            .expect("json");
        ids.push(r["run"]["id"].as_u64().expect("run id"));
    }
    assert_eq!(ids, vec![2, 2], "a retried trigger answers the same run");
    let j = wait_finished(&c, "manual", 2, Duration::from_secs(30)).await;
    assert_eq!(j.next_run, 3, "no third run");
    c.wait_for("run 2's process", Duration::from_secs(10), || async {
        (lines(&out).len() == 2).then_some(())
    })
    .await;
    let (ok, _, err) = orion(&c, &server, &["delete", "job", "manual"]);
    assert!(ok, "{err}");
    assert!(job(&c, "manual").await.is_none());
}

/// The slot (whole minute, seconds since the epoch) each run of `lines` started
/// in, by run id, with how late after its minute it started.
fn runs_by_slot(lines: &[String]) -> BTreeMap<u64, (i64, i64)> {
    let mut out = BTreeMap::new();
    for l in lines {
        let mut parts = l.split_whitespace();
        let id = parts.next().expect("id");
        let ns: i128 = parts.next().expect("time").parse().expect("ns");
        let secs = (ns / 1_000_000_000) as i64;
        // `<job>-<run>-<index>-<attempt>`
        let run: u64 = id.rsplit('-').nth(2).expect("run").parse().expect("run id");
        let previous = out.insert(run, (secs - secs % 60, secs % 60));
        assert!(previous.is_none(), "run {run} started twice: {lines:?}");
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cron_runs_on_time_honours_forbid_and_a_leader_kill_neither_skips_nor_doubles_a_run() {
    let mut c = TestCluster::start(3).await;
    c.spawn_agent("n1").await;
    let ticks = c.dir.path().join("ticks.txt");
    let slow = c.dir.path().join("slow.txt");
    // Both schedules armed within one minute, well before its end.
    while !(3..45).contains(&(now_secs() % 60)) {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    c.apply_yaml(&format!(
        "kind: Job\nname: tick\nschedule: '* * * * *'\n\
             resources: {{cpu: 10m, memory: 8Mi}}\ncommand: {}\n\
             ---\n\
             kind: Job\nname: slow\nschedule: '* * * * *'\nconcurrency_policy: forbid\n\
             resources: {{cpu: 10m, memory: 8Mi}}\ncommand: {}\n",
        task(&ticks, "exit 0"),
        task(&slow, "sleep 85")
    ))
    .await;
    let armed = c
        .wait_for("both schedules armed", Duration::from_secs(20), || async {
            let t = job(&c, "tick").await?.last_scheduled?;
            let s = job(&c, "slow").await?.last_scheduled?;
            Some(t.max(s))
        })
        .await;
    let first = armed - armed % 60 + 60;
    // The first slot runs, by the processes' own account.
    c.wait_for("the first tick", Duration::from_secs(90), || async {
        (!lines(&ticks).is_empty()).then_some(())
    })
    .await;
    // Kill the leader between the runs.
    let leader = c.wait_for_leader().await;
    c.kill9(leader);
    let new_leader = c.wait_for_leader().await;
    assert_ne!(new_leader, leader);
    // The second slot runs too, once.
    let second = first + 60;
    c.wait_for("the second tick", Duration::from_secs(90), || async {
        (lines(&ticks).len() >= 2).then_some(())
    })
    .await;
    // Past the second slot by a margin: no double, nothing more.
    while now_secs() < second + 12 {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let tick_runs = runs_by_slot(&lines(&ticks));
    let slots: Vec<i64> = tick_runs.values().map(|(slot, _)| *slot).collect();
    assert_eq!(
        slots,
        vec![first, second],
        "one run per slot: {tick_runs:?}"
    );
    for (run, (_, late)) in &tick_runs {
        assert!(*late < 8, "run {run} started {late}s after its minute");
    }
    let j = job(&c, "tick").await.expect("tick");
    let scheduled: Vec<Option<i64>> = j.runs.iter().map(|r| r.scheduled_at).collect();
    assert_eq!(scheduled, vec![Some(first), Some(second)], "{j:?}");
    assert!(j.runs.iter().all(|r| r.state == RunState::Succeeded));
    assert!(j.skipped.is_empty(), "nothing skipped: {:?}", j.skipped);

    // `slow` ran its first slot and, still running at the second, skipped it.
    let slow_runs = runs_by_slot(&lines(&slow));
    let slow_slots: Vec<i64> = slow_runs.values().map(|(slot, _)| *slot).collect();
    assert_eq!(slow_slots, vec![first], "forbid: {slow_runs:?}");
    let s = job(&c, "slow").await.expect("slow");
    assert_eq!(s.runs.len(), 1, "{s:?}");
    assert_eq!(s.runs[0].state, RunState::Running);
    assert!(
        s.skipped
            .iter()
            .any(|k| k.scheduled_at == second && k.reason.contains("concurrency_policy: forbid")),
        "{:?}",
        s.skipped
    );
    let server = c.url(new_leader);
    let (ok, text, err) = orion(&c, &server, &["describe", "job", "slow"]);
    assert!(ok, "{err}");
    assert!(
        text.contains("Skipped slots:") && text.contains("forbid"),
        "{text}"
    );
    assert!(text.contains("Next run:"), "{text}");
}
