//! The job controller: starts runs on schedule and drives each run to its end.
//!
//! Two pure functions decide, the loop only proposes what they say:
//! - [`schedule_decisions`]: from the job's replicated `last_scheduled` and the
//!   clock, which slots are due: the newest is started (if it is not later than
//!   `starting_deadline`), older missed ones are skipped and recorded as such. The
//!   slot is named in the `StartJobRun` command, and apply starts one run per slot
//!   whoever proposes it, so a leader change neither skips nor doubles a run;
//!   `concurrency_policy` is enforced by apply too.
//! - [`plan_run`]: from a run's tasks and what the agents report of them, the
//!   run's next state: exits recorded (exit code, reason), failed attempts retried
//!   with backoff up to `backoff_limit`, `active_deadline` enforced, pending tasks
//!   placed by the [scheduler](crate::scheduler) while fewer than `parallelism`
//!   run, and the run's end once `completions` tasks exited 0. It goes to Raft as
//!   one `UpdateJobRun` naming the run's version, so a stale decision is ignored.
//!
//! A task attempt runs on its agent as a replica whose id is
//! `<job>-<run>-<index>-<attempt>` (restart policy `never`); once the run records
//! its end it leaves the node's desired set, and the agent forgets it but keeps
//! its log files, which `orion logs` reads for as long as the run is kept.

use std::collections::BTreeMap;
use std::time::Duration;

use orion_api::agent_proto::{ReplicaReport, ReplicaState};
use orion_api::spec::cron::format_slot;
use orion_api::spec::duration::format_duration_ms;
use orion_api::spec::{JobSpec, Resources};
use orion_api::{JobObject, JobRun, JobTask, NodeObject, NodeStatus, RunState, TaskState};
use orion_raft::{read, Command, LeaderError, RaftNode};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::gateway::registry::AgentRegistry;
use crate::scheduler::{self, Request, Strategy};

/// How many missed slots a catch-up looks at, at most.
const CATCH_UP_SLOTS: usize = 10;

/// What to do with the slots of a schedule now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlotDecision {
    /// A new schedule: its first slot is the first after this time.
    Arm(i64),
    /// Start the run of this slot.
    Start(i64),
    /// Skip up to this slot, for this reason.
    Skip { at: i64, reason: String },
}

/// The slot decisions for `spec` now (`now`: seconds since the epoch), given the
/// newest slot already decided. See the module docs.
pub fn schedule_decisions(
    spec: &JobSpec,
    last_scheduled: Option<i64>,
    now: i64,
) -> Vec<SlotDecision> {
    let Some(Ok(cron)) = spec.cron() else {
        return Vec::new();
    };
    if spec.suspend {
        return Vec::new();
    }
    let Some(last) = last_scheduled else {
        return vec![SlotDecision::Arm(now)];
    };
    let (due, count) = cron.due(last, now, CATCH_UP_SLOTS);
    let Some(&newest) = due.last() else {
        return Vec::new();
    };
    let late_ms = u64::try_from(now.saturating_sub(newest))
        .unwrap_or(0)
        .saturating_mul(1000);
    let zone = &spec.time_zone;
    if let Some(deadline) = spec.starting_deadline_ms.filter(|d| late_ms > *d) {
        let what = if count > 1 {
            format!(
                "{count} slots missed, the newest at {}",
                format_slot(newest, zone)
            )
        } else {
            format!("the slot at {} was missed", format_slot(newest, zone))
        };
        return vec![SlotDecision::Skip {
            at: newest,
            reason: format!(
                "{what}: {}s late, beyond starting_deadline ({})",
                late_ms / 1000,
                format_duration_ms(deadline)
            ),
        }];
    }
    let mut out = Vec::new();
    if count > 1 {
        let before = due.len().checked_sub(2).and_then(|i| due.get(i));
        if let Some(&older) = before {
            out.push(SlotDecision::Skip {
                at: older,
                reason: format!(
                    "{} missed slot(s) up to {}: only the newest missed slot runs",
                    count - 1,
                    format_slot(older, zone)
                ),
            });
        }
    }
    out.push(SlotDecision::Start(newest));
    out
}

/// When the schedule starts its next run, seen at `now`.
pub fn next_run_at(spec: &JobSpec, last_scheduled: Option<i64>, now: i64) -> Option<i64> {
    let cron = spec.cron()?.ok()?;
    if spec.suspend {
        return None;
    }
    cron.next_after(last_scheduled.map_or(now, |l| l.max(now)).max(now - 1))
}

/// What an agent says of one task attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    /// Running, or no word yet.
    Running,
    /// Done: exit code 0 succeeds, anything else fails.
    Exited {
        code: Option<i32>,
        reason: Option<String>,
    },
    /// It failed without an exit code: could not start, stopped, or its node is gone.
    Lost(String),
}

impl Seen {
    /// From its agent's report (the report must be of this job's incarnation).
    pub fn of(report: Option<&ReplicaReport>) -> Seen {
        let Some(r) = report else {
            return Seen::Running;
        };
        match r.state {
            ReplicaState::Exited => Seen::Exited {
                code: r.exit_code,
                reason: r.reason.clone(),
            },
            ReplicaState::Failed => Seen::Lost(
                r.reason
                    .clone()
                    .unwrap_or_else(|| "the agent could not start it".into()),
            ),
            ReplicaState::Stopped => Seen::Lost("stopped by its agent".into()),
            _ => Seen::Running,
        }
    }
}

/// A run's next state, as [`plan_run`] computed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunUpdate {
    pub tasks: Vec<JobTask>,
    pub state: RunState,
    pub reason: Option<String>,
}

/// The next state of `run` of a job with `spec`, or `None` when nothing changes.
/// `seen` says what the agent of a task's node reports of it (by replica id and
/// node); `nodes` are the nodes with what they have allocated; `now` is
/// milliseconds since the epoch.
pub fn plan_run(
    spec: &JobSpec,
    run: &JobRun,
    seen: &dyn Fn(&str, &str) -> Seen,
    nodes: &[NodeView],
    now: u64,
) -> Option<RunUpdate> {
    let mut tasks = run.tasks.clone();
    // Record what ended.
    for t in tasks.iter_mut().filter(|t| t.state == TaskState::Running) {
        let Some(node) = t.node.clone() else {
            continue;
        };
        let node_ok = nodes.iter().find(|n| n.name == node);
        let observed = match node_ok {
            None => Seen::Lost(format!("node {node} is gone")),
            Some(n) if !n.ready => Seen::Lost(format!("node {node} is down")),
            Some(_) => seen(&t.replica_id(&spec.name, run.id), &node),
        };
        match observed {
            Seen::Running => {}
            Seen::Exited { code, reason } => {
                t.finished_unix_ms = Some(now);
                t.exit_code = code;
                if code == Some(0) {
                    t.state = TaskState::Succeeded;
                    t.reason = None;
                } else {
                    t.state = TaskState::Failed;
                    t.reason = Some(match code {
                        Some(c) => format!("exited with code {c}"),
                        None => reason.unwrap_or_else(|| "killed by a signal".into()),
                    });
                }
            }
            Seen::Lost(why) => {
                t.finished_unix_ms = Some(now);
                t.state = TaskState::Failed;
                t.reason = Some(why);
            }
        }
    }
    let done = |tasks: &[JobTask], state: RunState, reason: Option<String>| RunUpdate {
        tasks: tasks.to_vec(),
        state,
        reason,
    };
    let failures = tasks
        .iter()
        .filter(|t| t.state == TaskState::Failed)
        .count();
    let succeeded: std::collections::BTreeSet<u32> = tasks
        .iter()
        .filter(|t| t.state == TaskState::Succeeded)
        .map(|t| t.index)
        .collect();
    let update = if succeeded.len() >= spec.completions as usize {
        Some(done(&tasks, RunState::Succeeded, None))
    } else if failures > spec.backoff_limit as usize {
        Some(done(
            &tasks,
            RunState::Failed,
            Some(format!(
                "backoff limit reached: {failures} failed attempts (backoff_limit: {})",
                spec.backoff_limit
            )),
        ))
    } else {
        spec.active_deadline_ms
            .filter(|d| now.saturating_sub(run.started_unix_ms) >= *d)
            .map(|deadline| {
                done(
                    &tasks,
                    RunState::Failed,
                    Some(format!(
                        "active_deadline ({}) exceeded",
                        format_duration_ms(deadline)
                    )),
                )
            })
    };
    if let Some(u) = update {
        return Some(u);
    }
    // New attempts: the first of each index, and a retry of each that failed.
    let failed_so_far = u32::try_from(failures).unwrap_or(u32::MAX);
    for index in 0..spec.completions {
        let latest = tasks
            .iter()
            .filter(|t| t.index == index)
            .max_by_key(|t| t.attempt)
            .map(|t| (t.attempt, t.state, t.finished_unix_ms));
        let next = match latest {
            None => Some((1, 0)),
            Some((attempt, TaskState::Failed, finished)) => {
                let delay = spec.retry_delay_ms(failed_so_far.max(1));
                Some((attempt + 1, finished.unwrap_or(now).saturating_add(delay)))
            }
            Some(_) => None,
        };
        if let Some((attempt, not_before)) = next {
            tasks.push(JobTask {
                index,
                attempt,
                state: TaskState::Pending,
                node: None,
                not_before_unix_ms: not_before,
                started_unix_ms: None,
                finished_unix_ms: None,
                exit_code: None,
                reason: None,
            });
        }
    }
    // Place what is due, while fewer than `parallelism` run.
    let running = tasks
        .iter()
        .filter(|t| t.state == TaskState::Running)
        .count();
    let room = (spec.parallelism as usize).saturating_sub(running);
    let due: Vec<usize> = tasks
        .iter()
        .enumerate()
        .filter(|(_, t)| t.state == TaskState::Pending && t.not_before_unix_ms <= now)
        .map(|(i, _)| i)
        .take(room)
        .collect();
    if !due.is_empty() {
        let requests: Vec<Request> = due
            .iter()
            .map(|&i| Request {
                service: spec.name.clone(),
                replica: tasks[i].index,
                resources: spec.resources,
                constraints: spec.placement.constraints.clone(),
            })
            .collect();
        let views: Vec<scheduler::NodeView> = nodes.iter().map(|n| n.view.clone()).collect();
        let plan = scheduler::schedule(&views, &requests, Strategy::Spread, &BTreeMap::new());
        let mut placed: BTreeMap<u32, String> = plan
            .placements
            .into_iter()
            .map(|p| (p.replica, p.node))
            .collect();
        let why = plan.unplaced.first().map(|u| u.reason.clone());
        for &i in &due {
            let t = &mut tasks[i];
            if let Some(node) = placed.remove(&t.index) {
                t.node = Some(node);
                t.state = TaskState::Running;
                t.started_unix_ms = Some(now);
                t.reason = None;
            } else if let Some(reason) = &why {
                t.reason = Some(format!("not placed: {reason}"));
            }
        }
    }
    (tasks != run.tasks).then(|| RunUpdate {
        tasks,
        state: RunState::Running,
        reason: run.reason.clone(),
    })
}

/// A node as the job controller sees it: its scheduler view and whether it is up.
#[derive(Debug, Clone)]
pub struct NodeView {
    pub name: String,
    pub ready: bool,
    pub view: scheduler::NodeView,
}

/// The nodes with what replicas and running job tasks hold on each.
fn node_views(
    nodes: &[NodeObject],
    replicas: &[orion_api::ReplicaObject],
    jobs: &[JobObject],
) -> Vec<NodeView> {
    let mut allocated: BTreeMap<&str, Resources> = BTreeMap::new();
    let mut add = |node: &str, r: Resources| {
        let key = nodes
            .iter()
            .find(|n| n.name == node)
            .map(|n| n.name.as_str());
        if let Some(key) = key {
            let a = allocated.entry(key).or_insert(Resources {
                cpu_millis: 0,
                memory_bytes: 0,
            });
            a.cpu_millis = a.cpu_millis.saturating_add(r.cpu_millis);
            a.memory_bytes = a.memory_bytes.saturating_add(r.memory_bytes);
        }
    };
    for r in replicas {
        add(&r.node, r.resources);
    }
    for j in jobs {
        for (_, node, _, _) in j.placed_tasks() {
            add(node, j.spec.resources);
        }
    }
    nodes
        .iter()
        .map(|n| NodeView {
            name: n.name.clone(),
            ready: n.status == NodeStatus::Ready,
            view: scheduler::NodeView {
                name: n.name.clone(),
                labels: n.labels.clone(),
                capacity: n.capacity,
                allocated: allocated
                    .get(n.name.as_str())
                    .copied()
                    .unwrap_or(Resources {
                        cpu_millis: 0,
                        memory_bytes: 0,
                    }),
                schedulable: n.schedulable(),
            },
        })
        .collect()
}

/// How often a round runs without a change in the replicated state: agents'
/// reports (leader memory) and the clock move on their own.
const TICK: Duration = Duration::from_millis(500);

fn now_unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Runs rounds until `token` is cancelled (leadership lost, or shutdown).
pub async fn run(node: RaftNode, agents: Arc<AgentRegistry>, token: CancellationToken) {
    let mut metrics = node.raft.metrics();
    loop {
        match round(&node, &agents).await {
            Ok(()) => {}
            Err(Stop) => {
                info!("job controller stops: no longer the leader");
                return;
            }
        }
        tokio::select! {
            () = token.cancelled() => return,
            changed = metrics.changed() => if changed.is_err() { return },
            () = tokio::time::sleep(TICK) => {}
        }
        // Raft's metrics change in bursts: a round at most every 100 ms.
        tokio::select! {
            () = token.cancelled() => return,
            () = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
    }
}

/// This peer no longer leads.
struct Stop;

async fn propose(node: &RaftNode, cmd: Command) -> Result<bool, Stop> {
    match node.propose(cmd).await {
        Ok(r) => match r.outcome {
            Ok(_) => Ok(true),
            Err(rejection) => {
                debug!(cause = %rejection.message, "job change refused");
                Ok(false)
            }
        },
        Err(LeaderError::NotLeader { .. } | LeaderError::Fatal(_)) => Err(Stop),
        Err(e) => {
            warn!(cause = %e, "job change not applied; retrying");
            Ok(false)
        }
    }
}

async fn round(node: &RaftNode, agents: &AgentRegistry) -> Result<(), Stop> {
    let state = node.reader.with_view(|v| {
        Ok::<_, read::ReadError>((read::jobs(v)?, read::nodes(v)?, read::replicas(v)?))
    });
    let (jobs, nodes, replicas) = match state {
        Ok(s) => s,
        Err(e) => {
            warn!(cause = %e, "job controller cannot read state; retrying");
            return Ok(());
        }
    };
    if jobs.is_empty() {
        return Ok(());
    }
    let mut views = node_views(&nodes, &replicas, &jobs);
    for job in &jobs {
        let now_ms = now_unix_ms();
        let now = i64::try_from(now_ms / 1000).unwrap_or(i64::MAX);
        let name = &job.spec.name;
        for decision in schedule_decisions(&job.spec, job.last_scheduled, now) {
            let cmd = match decision {
                SlotDecision::Arm(at) => Command::SkipJobSlot {
                    job: name.clone(),
                    scheduled_at: at,
                    reason: None,
                },
                SlotDecision::Skip { at, reason } => {
                    info!(job = %name, slot = %format_slot(at, &job.spec.time_zone), %reason, "skipping a scheduled run");
                    Command::SkipJobSlot {
                        job: name.clone(),
                        scheduled_at: at,
                        reason: Some(reason),
                    }
                }
                SlotDecision::Start(at) => {
                    info!(job = %name, slot = %format_slot(at, &job.spec.time_zone), "starting a scheduled run");
                    Command::StartJobRun {
                        job: name.clone(),
                        scheduled_at: Some(at),
                        if_next_run: None,
                        now_unix_ms: now_ms,
                    }
                }
            };
            propose(node, cmd).await?;
        }
        if job.spec.schedule.is_none() && job.next_run == 1 {
            info!(job = %name, "starting the job's run");
            propose(
                node,
                Command::StartJobRun {
                    job: name.clone(),
                    scheduled_at: None,
                    if_next_run: Some(1),
                    now_unix_ms: now_ms,
                },
            )
            .await?;
        }
        let incarnation = job.create_revision;
        for run in job.active() {
            let seen = |id: &str, node: &str| {
                let report = agents
                    .report_from(node, id)
                    .filter(|r| r.generation == incarnation);
                Seen::of(report.as_ref())
            };
            let Some(update) = plan_run(&job.spec, run, &seen, &views, now_ms) else {
                continue;
            };
            // What this round placed counts against the nodes for the next run.
            for t in update
                .tasks
                .iter()
                .filter(|t| t.state == TaskState::Running && !run.tasks.iter().any(|o| o == *t))
            {
                if let Some(v) = views.iter_mut().find(|v| Some(&v.name) == t.node.as_ref()) {
                    v.view.allocated.cpu_millis += job.spec.resources.cpu_millis;
                    v.view.allocated.memory_bytes += job.spec.resources.memory_bytes;
                }
            }
            if update.state != RunState::Running {
                info!(job = %name, run = run.id, state = %update.state, reason = ?update.reason, "job run finished");
            }
            propose(
                node,
                Command::UpdateJobRun {
                    job: name.clone(),
                    run: run.id,
                    version: run.version,
                    tasks: update.tasks,
                    state: update.state,
                    reason: update.reason,
                    now_unix_ms: now_ms,
                },
            )
            .await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use orion_api::spec::{parse_documents, Resource};

    use super::*;

    fn spec(extra: &str) -> JobSpec {
        let text = format!("kind: Job\nname: j\ncommand: [x]\n{extra}");
        match parse_documents("t.yaml", &text).expect("spec").remove(0) {
            Resource::Job(j) => j,
            Resource::Service(_) => panic!("not a job"),
        }
    }

    fn node(name: &str) -> NodeView {
        NodeView {
            name: name.into(),
            ready: true,
            view: scheduler::NodeView {
                name: name.into(),
                labels: BTreeMap::new(),
                capacity: Resources {
                    cpu_millis: 4000,
                    memory_bytes: 8 << 30,
                },
                allocated: Resources {
                    cpu_millis: 0,
                    memory_bytes: 0,
                },
                schedulable: true,
            },
        }
    }

    fn run(tasks: Vec<JobTask>) -> JobRun {
        JobRun {
            id: 1,
            scheduled_at: None,
            started_unix_ms: 0,
            finished_unix_ms: None,
            state: RunState::Running,
            reason: None,
            tasks,
            version: 0,
        }
    }

    /// 2026-01-15 12:00:00 UTC, a whole minute.
    const T: i64 = 1_768_478_400;

    #[test]
    fn the_next_slot_comes_from_last_scheduled_and_the_newest_missed_one_runs() {
        let every = spec("schedule: '* * * * *'\n");
        // A new schedule is armed, not run at once.
        assert_eq!(
            schedule_decisions(&every, None, T + 30),
            vec![SlotDecision::Arm(T + 30)]
        );
        // Nothing due before the next minute.
        assert!(schedule_decisions(&every, Some(T + 30), T + 59).is_empty());
        assert_eq!(
            schedule_decisions(&every, Some(T + 30), T + 61),
            vec![SlotDecision::Start(T + 60)]
        );
        // A new leader after a three-minute gap: the older slots are skipped and
        // said so, the newest runs.
        let d = schedule_decisions(&every, Some(T), T + 182);
        assert_eq!(d.len(), 2, "{d:?}");
        assert!(
            matches!(&d[0], SlotDecision::Skip { at, reason } if *at == T + 120 && reason.contains("2 missed")),
            "{d:?}"
        );
        assert_eq!(d[1], SlotDecision::Start(T + 180));
        // Suspended: nothing.
        let suspended = spec("schedule: '* * * * *'\nsuspend: true\n");
        assert!(schedule_decisions(&suspended, Some(T), T + 182).is_empty());
        // No schedule: nothing.
        assert!(schedule_decisions(&spec(""), Some(T), T + 182).is_empty());
        assert_eq!(next_run_at(&every, Some(T + 60), T + 61), Some(T + 120));
    }

    #[test]
    fn a_slot_later_than_starting_deadline_is_skipped() {
        let strict = spec("schedule: '* * * * *'\nstarting_deadline: 10s\n");
        assert_eq!(
            schedule_decisions(&strict, Some(T), T + 65),
            vec![SlotDecision::Start(T + 60)]
        );
        let d = schedule_decisions(&strict, Some(T), T + 75);
        assert!(
            matches!(&d[..], [SlotDecision::Skip { at, reason }] if *at == T + 60 && reason.contains("starting_deadline")),
            "{d:?}"
        );
        let d = schedule_decisions(&strict, Some(T), T + 200);
        assert!(
            matches!(&d[..], [SlotDecision::Skip { at, reason }] if *at == T + 180 && reason.contains("3 slots missed")),
            "{d:?}"
        );
    }

    #[test]
    fn parallelism_bounds_the_running_tasks_and_completions_end_the_run() {
        let s = spec("completions: 3\nparallelism: 2\n");
        let nodes = [node("a")];
        let running = |_: &str, _: &str| Seen::Running;
        let u = plan_run(&s, &run(vec![]), &running, &nodes, 10).expect("placed");
        let states: Vec<TaskState> = u.tasks.iter().map(|t| t.state).collect();
        assert_eq!(
            states,
            [TaskState::Running, TaskState::Running, TaskState::Pending]
        );
        assert!(plan_run(&s, &run(u.tasks.clone()), &running, &nodes, 11).is_none());
        // Task 0 exits 0: task 2 takes its place.
        let exited = |id: &str, _: &str| {
            if id == "j-1-0-1" {
                Seen::Exited {
                    code: Some(0),
                    reason: None,
                }
            } else {
                Seen::Running
            }
        };
        let u = plan_run(&s, &run(u.tasks), &exited, &nodes, 12).expect("changed");
        assert_eq!(u.tasks[0].state, TaskState::Succeeded);
        assert_eq!(u.tasks[0].exit_code, Some(0));
        assert_eq!(u.tasks[2].state, TaskState::Running);
        let all = |_: &str, _: &str| Seen::Exited {
            code: Some(0),
            reason: None,
        };
        let u = plan_run(&s, &run(u.tasks), &all, &nodes, 13).expect("done");
        assert_eq!(u.state, RunState::Succeeded);
    }

    #[test]
    fn failures_retry_with_growing_backoff_until_the_limit() {
        let s = spec("backoff_limit: 2\nbackoff: {initial: 1s, max: 10s}\n");
        let nodes = [node("a")];
        let fail = |_: &str, _: &str| Seen::Exited {
            code: Some(3),
            reason: None,
        };
        let mut tasks = plan_run(&s, &run(vec![]), &fail, &nodes, 0)
            .expect("placed")
            .tasks;
        let mut now = 100;
        let mut gaps = Vec::new();
        loop {
            let u = plan_run(&s, &run(tasks.clone()), &fail, &nodes, now).expect("changes");
            if u.state == RunState::Failed {
                assert!(u
                    .reason
                    .as_deref()
                    .is_some_and(|r| r.contains("backoff limit")));
                assert_eq!(u.tasks.iter().filter(|t| t.exit_code == Some(3)).count(), 3);
                break;
            }
            let retry = u.tasks.last().expect("a retry");
            assert_eq!(retry.state, TaskState::Pending);
            gaps.push(retry.not_before_unix_ms - now);
            assert!(
                plan_run(&s, &run(u.tasks.clone()), &fail, &nodes, now).is_none(),
                "nothing before its backoff"
            );
            now = retry.not_before_unix_ms;
            tasks = plan_run(&s, &run(u.tasks), &fail, &nodes, now)
                .expect("placed")
                .tasks;
            now += 50;
        }
        assert_eq!(gaps, vec![1000, 2000], "the backoff doubles");
    }

    #[test]
    fn the_active_deadline_fails_the_run_and_a_lost_node_fails_its_task() {
        let s = spec("active_deadline: 5s\nbackoff_limit: 0\n");
        let nodes = [node("a")];
        let running = |_: &str, _: &str| Seen::Running;
        let u = plan_run(&s, &run(vec![]), &running, &nodes, 10).expect("placed");
        let late = plan_run(&s, &run(u.tasks.clone()), &running, &nodes, 5_000).expect("deadline");
        assert_eq!(late.state, RunState::Failed);
        assert!(late
            .reason
            .as_deref()
            .is_some_and(|r| r.contains("active_deadline")));
        let mut down = nodes.clone();
        down[0].ready = false;
        let lost = plan_run(&s, &run(u.tasks), &running, &down, 20).expect("lost");
        assert_eq!(lost.state, RunState::Failed);
        assert!(lost.tasks[0]
            .reason
            .as_deref()
            .is_some_and(|r| r.contains("node a is down")));
    }
}
