//! The job commands' changes to a stored job, as pure functions: apply
//! (`crate::apply`) reads the job, calls one of these, and writes the result.
//!
//! Every decision that must happen once goes through here: a scheduled run is
//! started only for a slot after `last_scheduled` (so a slot proposed twice, by
//! two leaders or a retry, starts one run), `concurrency_policy` is enforced at
//! the slot's apply (so no leader can race it), and a controller's update of a
//! run applies only to the version of the run it was computed from.

use orion_api::job::{JobObject, JobRun, JobTask, RunState, SkippedSlot, TaskState};
use orion_api::job::{MAX_ACTIVE_RUNS, MAX_SKIPPED};
use orion_api::spec::job::{MAX_BACKOFF_LIMIT, MAX_COMPLETIONS};
use orion_api::spec::ConcurrencyPolicy;

/// Most task attempts one run records: every completion, every retry the
/// backoff limit allows, and the attempts running when it is reached.
pub const MAX_TASKS_PER_RUN: usize = (2 * MAX_COMPLETIONS + MAX_BACKOFF_LIMIT + 1) as usize;

/// What a [`start_run`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Started {
    /// A new run with this id.
    Run(u64),
    /// The slot was recorded as skipped, for this reason.
    Skipped(String),
    /// The slot was decided already (or the guard did not hold): nothing changed.
    Ignored,
}

/// Starts a run of `job`: for the schedule slot `scheduled_at`, or by hand when it
/// is `None`. `if_next_run`: only while the job's next run id is this (the job
/// controller's first run of a job without a schedule, so it starts once).
/// `Err` refuses a manual run (too many active).
pub fn start_run(
    job: &mut JobObject,
    scheduled_at: Option<i64>,
    if_next_run: Option<u64>,
    now_unix_ms: u64,
) -> Result<Started, String> {
    if if_next_run.is_some_and(|n| n != job.next_run) {
        return Ok(Started::Ignored);
    }
    if let Some(at) = scheduled_at {
        if job.last_scheduled.is_some_and(|last| last >= at) {
            return Ok(Started::Ignored);
        }
        job.last_scheduled = Some(at);
        let active: Vec<u64> = job.active().map(|r| r.id).collect();
        let skip = if job.spec.suspend {
            Some("the job is suspended".to_owned())
        } else if job.spec.concurrency_policy == ConcurrencyPolicy::Forbid && !active.is_empty() {
            Some(format!(
                "run {} is still running (concurrency_policy: forbid)",
                list(&active)
            ))
        } else if job.spec.concurrency_policy != ConcurrencyPolicy::Replace
            && active.len() >= MAX_ACTIVE_RUNS
        {
            Some(format!(
                "{MAX_ACTIVE_RUNS} runs are active already, the most one job may have"
            ))
        } else {
            None
        };
        if let Some(reason) = skip {
            record_skip(job, at, reason.clone());
            return Ok(Started::Skipped(reason));
        }
        if job.spec.concurrency_policy == ConcurrencyPolicy::Replace {
            let next = job.next_run;
            for run in job.runs.iter_mut().filter(|r| r.state == RunState::Running) {
                finish(
                    run,
                    RunState::Failed,
                    format!("replaced by run {next} (concurrency_policy: replace)"),
                    now_unix_ms,
                );
            }
        }
    } else if job.active().count() >= MAX_ACTIVE_RUNS {
        return Err(format!(
            "job `{}` has {MAX_ACTIVE_RUNS} active runs, the most one job may have; \
             wait for one to finish",
            job.spec.name
        ));
    }
    let id = job.next_run;
    job.next_run = job.next_run.saturating_add(1);
    job.runs.push(JobRun {
        id,
        scheduled_at,
        started_unix_ms: now_unix_ms,
        finished_unix_ms: None,
        state: RunState::Running,
        reason: None,
        tasks: Vec::new(),
        version: 0,
    });
    trim_history(job);
    Ok(Started::Run(id))
}

/// Moves the schedule past `scheduled_at` without a run. With a reason, the slot
/// is remembered as skipped; without, the schedule is only armed (a new job's
/// first slot is the first after the time it was armed). `false`: already past.
pub fn skip_slot(job: &mut JobObject, scheduled_at: i64, reason: Option<String>) -> bool {
    if job.last_scheduled.is_some_and(|last| last >= scheduled_at) {
        return false;
    }
    job.last_scheduled = Some(scheduled_at);
    if let Some(reason) = reason {
        record_skip(job, scheduled_at, reason);
    }
    true
}

/// The job controller's new view of run `run`, computed from `version`. Ignored
/// (`Ok(false)`) when the run is gone, finished or changed since. `Err` refuses
/// a malformed update.
pub fn update_run(
    job: &mut JobObject,
    run: u64,
    version: u64,
    tasks: &[JobTask],
    state: RunState,
    reason: Option<&str>,
    now_unix_ms: u64,
) -> Result<bool, String> {
    if tasks.len() > MAX_TASKS_PER_RUN {
        return Err(format!(
            "{} task attempts is above the limit of {MAX_TASKS_PER_RUN} per run",
            tasks.len()
        ));
    }
    if let Some(t) = tasks.iter().find(|t| t.index >= job.spec.completions) {
        return Err(format!(
            "task index {} is out of range: the job has {} completions",
            t.index, job.spec.completions
        ));
    }
    let Some(current) = job.runs.iter_mut().find(|r| r.id == run) else {
        return Ok(false);
    };
    if current.state != RunState::Running || current.version != version {
        return Ok(false);
    }
    current.tasks = tasks.to_vec();
    current.version = current.version.saturating_add(1);
    if state != RunState::Running {
        finish(
            current,
            state,
            reason.unwrap_or_default().to_owned(),
            now_unix_ms,
        );
    } else {
        current.reason = reason.map(str::to_owned);
    }
    trim_history(job);
    Ok(true)
}

/// Ends a run: tasks still pending or running fail with `reason` (their agents
/// stop them once they leave the desired set).
fn finish(run: &mut JobRun, state: RunState, reason: String, now_unix_ms: u64) {
    for t in run
        .tasks
        .iter_mut()
        .filter(|t| matches!(t.state, TaskState::Pending | TaskState::Running))
    {
        t.state = TaskState::Failed;
        t.finished_unix_ms = Some(now_unix_ms);
        t.reason = Some(format!("stopped: {reason}"));
    }
    run.state = state;
    run.finished_unix_ms = Some(now_unix_ms);
    run.reason = (!reason.is_empty()).then_some(reason);
    run.version = run.version.saturating_add(1);
}

fn record_skip(job: &mut JobObject, scheduled_at: i64, reason: String) {
    job.skipped.push(SkippedSlot {
        scheduled_at,
        reason,
    });
    if job.skipped.len() > MAX_SKIPPED {
        let extra = job.skipped.len() - MAX_SKIPPED;
        job.skipped.drain(..extra);
    }
}

/// Keeps every active run and the newest finished ones `history_limit` allows.
pub fn trim_history(job: &mut JobObject) {
    let limit = job.spec.history_limit;
    let (mut ok, mut failed) = (0u32, 0u32);
    let mut keep = vec![true; job.runs.len()];
    for (i, run) in job.runs.iter().enumerate().rev() {
        keep[i] = match run.state {
            RunState::Running => true,
            RunState::Succeeded => {
                ok += 1;
                ok <= limit.successful
            }
            RunState::Failed => {
                failed += 1;
                failed <= limit.failed
            }
        };
    }
    let mut i = 0;
    job.runs.retain(|_| {
        i += 1;
        keep[i - 1]
    });
}

fn list(ids: &[u64]) -> String {
    ids.iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use orion_api::spec::{parse_documents, Resource};

    use super::*;

    fn job(extra: &str) -> JobObject {
        let text = format!("kind: Job\nname: j\ncommand: [x]\n{extra}");
        let Resource::Job(spec) = parse_documents("t.yaml", &text).expect("spec").remove(0) else {
            panic!("not a job");
        };
        JobObject {
            spec,
            create_revision: 1,
            mod_revision: 1,
            last_scheduled: None,
            next_run: 1,
            runs: Vec::new(),
            skipped: Vec::new(),
        }
    }

    #[test]
    fn a_slot_starts_one_run_however_often_it_is_proposed() {
        let mut j = job("schedule: '* * * * *'\n");
        assert_eq!(start_run(&mut j, Some(60), None, 1), Ok(Started::Run(1)));
        assert_eq!(start_run(&mut j, Some(60), None, 2), Ok(Started::Ignored));
        // An older slot, proposed late by a deposed leader, is ignored too.
        assert_eq!(start_run(&mut j, Some(0), None, 2), Ok(Started::Ignored));
        assert_eq!(j.runs.len(), 1);
        assert_eq!(j.last_scheduled, Some(60));
        assert_eq!(start_run(&mut j, Some(120), None, 3), Ok(Started::Run(2)));
        // Manual runs have no slot and always start.
        assert_eq!(start_run(&mut j, None, None, 4), Ok(Started::Run(3)));
        assert_eq!(j.last_scheduled, Some(120));
        // The first run of a job without a schedule starts once.
        let mut once = job("");
        assert_eq!(start_run(&mut once, None, Some(1), 1), Ok(Started::Run(1)));
        assert_eq!(start_run(&mut once, None, Some(1), 1), Ok(Started::Ignored));
    }

    #[test]
    fn forbid_skips_replace_stops_allow_runs_both() {
        let mut forbid = job("schedule: '* * * * *'\nconcurrency_policy: forbid\n");
        assert_eq!(
            start_run(&mut forbid, Some(60), None, 1),
            Ok(Started::Run(1))
        );
        let skipped = start_run(&mut forbid, Some(120), None, 2);
        assert!(
            matches!(&skipped, Ok(Started::Skipped(why)) if why.contains("run 1 is still running")),
            "{skipped:?}"
        );
        assert_eq!(forbid.skipped.len(), 1);
        assert_eq!(forbid.last_scheduled, Some(120), "the slot is decided");

        let mut replace = job("schedule: '* * * * *'\nconcurrency_policy: replace\n");
        start_run(&mut replace, Some(60), None, 1).expect("run");
        replace.runs[0].tasks.push(JobTask {
            index: 0,
            attempt: 1,
            state: TaskState::Running,
            node: Some("a".into()),
            not_before_unix_ms: 0,
            started_unix_ms: Some(1),
            finished_unix_ms: None,
            exit_code: None,
            reason: None,
        });
        assert_eq!(
            start_run(&mut replace, Some(120), None, 5),
            Ok(Started::Run(2))
        );
        assert_eq!(replace.runs[0].state, RunState::Failed);
        assert_eq!(replace.runs[0].tasks[0].state, TaskState::Failed);
        assert!(replace.runs[0]
            .reason
            .as_deref()
            .is_some_and(|r| r.contains("replaced by run 2")));
        assert_eq!(replace.runs[1].state, RunState::Running);

        let mut allow = job("schedule: '* * * * *'\n");
        start_run(&mut allow, Some(60), None, 1).expect("run");
        start_run(&mut allow, Some(120), None, 1).expect("run");
        assert_eq!(allow.active().count(), 2);
    }

    #[test]
    fn stale_updates_are_ignored_and_history_is_bounded() {
        let mut j = job("history_limit: {successful: 2, failed: 1}\n");
        for n in 1..=4u64 {
            start_run(&mut j, None, None, n).expect("run");
            let state = if n == 2 {
                RunState::Failed
            } else {
                RunState::Succeeded
            };
            assert_eq!(update_run(&mut j, n, 0, &[], state, None, n), Ok(true));
            // The same update again is computed from an old version: ignored.
            assert_eq!(update_run(&mut j, n, 0, &[], state, None, n), Ok(false));
        }
        let kept: Vec<(u64, RunState)> = j.runs.iter().map(|r| (r.id, r.state)).collect();
        assert_eq!(
            kept,
            vec![
                (2, RunState::Failed),
                (3, RunState::Succeeded),
                (4, RunState::Succeeded)
            ]
        );
        let too_many = vec![
            JobTask {
                index: 0,
                attempt: 1,
                state: TaskState::Pending,
                node: None,
                not_before_unix_ms: 0,
                started_unix_ms: None,
                finished_unix_ms: None,
                exit_code: None,
                reason: None,
            };
            MAX_TASKS_PER_RUN + 1
        ];
        start_run(&mut j, None, None, 9).expect("run");
        assert!(update_run(&mut j, 5, 0, &too_many, RunState::Running, None, 9).is_err());
    }

    #[test]
    fn skipping_arms_and_remembers_why() {
        let mut j = job("schedule: '* * * * *'\n");
        assert!(skip_slot(&mut j, 100, None));
        assert!(j.skipped.is_empty(), "arming is not a skip");
        assert!(!skip_slot(&mut j, 100, Some("late".into())));
        for at in 0..20 {
            skip_slot(&mut j, 200 + at, Some(format!("missed {at}")));
        }
        assert_eq!(j.skipped.len(), MAX_SKIPPED);
        assert_eq!(j.skipped.last().map(|s| s.scheduled_at), Some(219));
    }
}
