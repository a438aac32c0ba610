//! `kind: Job`: a command run to completion, with retries and backoff; with a
//! `schedule`, periodically (a cron job).
//!
//! A job shares how to run its process and where with `kind: Service` (`command`,
//! `args`, `env`, `working_dir`, `resources`, `placement`). The rest follows
//! Kubernetes' Job and CronJob: `completions`, `parallelism`, `backoff_limit`,
//! `active_deadline`, `schedule` with `time_zone`, `concurrency_policy`,
//! `starting_deadline`, `history_limit` and `suspend`. The schedule and the zone
//! are checked here, so a bad one is refused at apply time with its position.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::cron::CronSchedule;
use super::decode::{Decoder, Fields};
use super::node::{Node, Pos};
use super::service::{decode_name, decode_process, Backoff, Placement, Resources, RestartMode};

/// Every top-level field of a Job document (`kind` included).
pub const JOB_FIELDS: &[&str] = &[
    "kind",
    "name",
    "command",
    "args",
    "env",
    "working_dir",
    "resources",
    "placement",
    "completions",
    "parallelism",
    "backoff_limit",
    "backoff",
    "active_deadline",
    "schedule",
    "time_zone",
    "concurrency_policy",
    "starting_deadline",
    "history_limit",
    "suspend",
];
pub(crate) const HISTORY_FIELDS: &[&str] = &["successful", "failed"];

/// Most successful task completions one run may need, and most tasks running at
/// once: a run's record holds every attempt of every task, and it is rewritten
/// through Raft on each change, so it must stay small.
pub const MAX_COMPLETIONS: u32 = 100;
/// Most failed attempts a run may retry (`backoff_limit`).
pub const MAX_BACKOFF_LIMIT: u32 = 100;
/// Most finished runs of one kind (successful or failed) a job keeps.
pub const MAX_HISTORY: u32 = 50;

/// A batch job: the typed, validated form of one `kind: Job` document. Durations
/// are milliseconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    /// Unique among jobs; a DNS label.
    pub name: String,
    /// The program and its first arguments; never empty.
    pub command: Vec<String>,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default)]
    pub working_dir: Option<String>,
    #[serde(default)]
    pub resources: Resources,
    #[serde(default)]
    pub placement: Placement,
    /// Tasks that must exit 0 for a run to succeed (default 1): tasks `0..completions`.
    pub completions: u32,
    /// Tasks running at once, at most (default 1).
    pub parallelism: u32,
    /// Failed attempts retried before the run fails (default 6, as Kubernetes).
    pub backoff_limit: u32,
    /// Delay before retry number n: `initial * 2^(n-1)`, capped at `max` (default
    /// 10s doubling to 6m, as Kubernetes).
    pub backoff: Backoff,
    /// A run still going this long after it started fails, its tasks killed.
    #[serde(default)]
    pub active_deadline_ms: Option<u64>,
    /// Five-field cron (`*/5 * * * *`): runs start at these times. Without one, a
    /// job runs once when created, and again on `orion job run`.
    #[serde(default)]
    pub schedule: Option<String>,
    /// The IANA zone the schedule is read in (default `UTC`).
    pub time_zone: String,
    /// What a scheduled run does while another is still running.
    #[serde(default)]
    pub concurrency_policy: ConcurrencyPolicy,
    /// A run more than this late (its leader was down, the job suspended) is
    /// skipped instead; without one, the newest missed run starts however late.
    #[serde(default)]
    pub starting_deadline_ms: Option<u64>,
    pub history_limit: HistoryLimit,
    /// No new scheduled runs while true; running ones go on.
    #[serde(default)]
    pub suspend: bool,
}

/// `concurrency_policy`: what a scheduled run does while an earlier one is active.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConcurrencyPolicy {
    /// Both run.
    #[default]
    Allow,
    /// The new run is skipped.
    Forbid,
    /// The active run is stopped (its tasks killed) and the new one starts.
    Replace,
}

impl ConcurrencyPolicy {
    const NAMES: [(&'static str, ConcurrencyPolicy); 3] = [
        ("allow", ConcurrencyPolicy::Allow),
        ("forbid", ConcurrencyPolicy::Forbid),
        ("replace", ConcurrencyPolicy::Replace),
    ];
}

/// How many finished runs a job keeps, with their tasks' exit codes and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryLimit {
    /// Default 3, as Kubernetes.
    pub successful: u32,
    /// Default 1, as Kubernetes.
    pub failed: u32,
}

impl Default for HistoryLimit {
    fn default() -> Self {
        HistoryLimit {
            successful: 3,
            failed: 1,
        }
    }
}

/// A job's default retry backoff: 10s doubling to 6m.
pub const DEFAULT_JOB_BACKOFF: Backoff = Backoff {
    initial_ms: 10_000,
    max_ms: 6 * 60_000,
};

impl JobSpec {
    /// The parsed schedule, if the job has one. A stored spec was checked at
    /// apply, so this fails only for a spec that never went through the parser.
    pub fn cron(&self) -> Option<Result<CronSchedule, crate::Invalid>> {
        self.schedule
            .as_deref()
            .map(|s| CronSchedule::new(s, &self.time_zone))
    }

    /// The delay before the retry that follows failure number `failures` (1-based).
    pub fn retry_delay_ms(&self, failures: u32) -> u64 {
        let shift = failures.saturating_sub(1).min(32);
        self.backoff
            .initial_ms
            .saturating_mul(1u64 << shift)
            .min(self.backoff.max_ms)
    }

    /// The service spec one task runs as on its agent: the job's process, never
    /// restarted by the agent (the job controller retries instead).
    pub fn task_service(&self) -> super::ServiceSpec {
        super::ServiceSpec {
            name: self.name.clone(),
            replicas: 1,
            command: self.command.clone(),
            args: self.args.clone(),
            env: self.env.clone(),
            working_dir: self.working_dir.clone(),
            ports: Vec::new(),
            resources: self.resources,
            health: None,
            restart: super::RestartPolicy {
                policy: RestartMode::Never,
                backoff: Backoff::default(),
            },
            placement: self.placement.clone(),
            strategy: super::UpdateStrategy::default(),
            hooks: super::Hooks::default(),
            env_variables: Default::default(),
            variable_revisions: Default::default(),
        }
    }
}

fn bounded(
    dec: &mut Decoder,
    f: &Fields,
    field: &str,
    default: u32,
    min: u32,
    max: u32,
) -> Option<u32> {
    let Some(n) = f.get(field) else {
        return Some(default);
    };
    let path = f.path(field);
    let v = dec.uint::<u32>(n, &path)?;
    if v < min {
        dec.error(n.at, &path, format!("must be at least {min}"));
        return None;
    }
    if v > max {
        dec.error(n.at, &path, format!("{v} is above the limit of {max}"));
        return None;
    }
    Some(v)
}

fn positive_duration(dec: &mut Decoder, f: &Fields, field: &str) -> Option<Option<u64>> {
    let Some(n) = f.get(field) else {
        return Some(None);
    };
    let ms = dec.duration(n, field)?;
    if ms == 0 {
        dec.error(n.at, field, "must be greater than zero");
        return None;
    }
    Some(Some(ms))
}

fn decode_history(dec: &mut Decoder, node: &Node) -> Option<HistoryLimit> {
    let f = dec.fields(node, "history_limit", HISTORY_FIELDS)?;
    let defaults = HistoryLimit::default();
    let successful = bounded(dec, &f, "successful", defaults.successful, 0, MAX_HISTORY);
    let failed = bounded(dec, &f, "failed", defaults.failed, 0, MAX_HISTORY);
    Some(HistoryLimit {
        successful: successful?,
        failed: failed?,
    })
}

/// Decodes one `kind: Job` document; `None` once any error was recorded. Also
/// returns where the name is written, for duplicate-name errors.
pub(crate) fn decode_job(dec: &mut Decoder, node: &Node) -> Option<(JobSpec, Pos)> {
    let before = dec.errors.len();
    let f = dec.fields(node, "", JOB_FIELDS)?;
    let name = decode_name(dec, &f);
    let process = decode_process(dec, &f, RestartMode::Never);
    let completions = bounded(dec, &f, "completions", 1, 1, MAX_COMPLETIONS);
    let parallelism = bounded(dec, &f, "parallelism", 1, 1, MAX_COMPLETIONS);
    let backoff_limit = bounded(dec, &f, "backoff_limit", 6, 0, MAX_BACKOFF_LIMIT);
    let backoff = f.get("backoff").map_or(Some(DEFAULT_JOB_BACKOFF), |n| {
        super::service::decode_backoff(dec, n, "backoff", DEFAULT_JOB_BACKOFF)
    });
    let active_deadline = positive_duration(dec, &f, "active_deadline");
    let starting_deadline = positive_duration(dec, &f, "starting_deadline");
    let time_zone = match f.get("time_zone") {
        None => Some("UTC".to_owned()),
        Some(n) => dec.string(n, "time_zone").and_then(|tz| {
            let checked = super::cron::parse_zone(&tz).map(|_| tz);
            dec.check(n, "time_zone", checked)
        }),
    };
    let schedule = match f.get("schedule") {
        None => Some(None),
        Some(n) => dec.string(n, "schedule").and_then(|s| {
            let checked = super::cron::parse_cron(&s).map(|_| Some(s));
            dec.check(n, "schedule", checked)
        }),
    };
    let concurrency_policy = match f.get("concurrency_policy") {
        None => Some(ConcurrencyPolicy::Allow),
        Some(n) => dec.string(n, "concurrency_policy").and_then(|text| {
            let found = ConcurrencyPolicy::NAMES
                .iter()
                .find(|(name, _)| *name == text)
                .map(|(_, p)| *p)
                .ok_or_else(|| {
                    format!("unknown policy `{text}`, expected `allow`, `forbid` or `replace`")
                });
            dec.check(n, "concurrency_policy", found)
        }),
    };
    let history_limit = f
        .get("history_limit")
        .map_or(Some(HistoryLimit::default()), |n| decode_history(dec, n));
    let suspend = f
        .get("suspend")
        .map_or(Some(false), |n| dec.boolean(n, "suspend"));
    if let (Some(p), Some(n)) = (&process, f.get("env")) {
        if let Some(name) = p.env_variables.keys().next() {
            dec.error(
                n.at,
                "env",
                format!(
                    "`{name}`: a job's env takes values only; values from variables \
                     (`{{variable: ...}}`) are for services"
                ),
            );
        }
    }
    if dec.errors.len() > before {
        return None;
    }
    let (name, name_at) = name?;
    let process = process?;
    let spec = JobSpec {
        name,
        command: process.command,
        args: process.args,
        env: process.env,
        working_dir: process.working_dir,
        resources: process.resources,
        placement: process.placement,
        completions: completions?,
        parallelism: parallelism?,
        backoff_limit: backoff_limit?,
        backoff: backoff?,
        active_deadline_ms: active_deadline?,
        schedule: schedule?,
        time_zone: time_zone?,
        concurrency_policy: concurrency_policy?,
        starting_deadline_ms: starting_deadline?,
        history_limit: history_limit?,
        suspend: suspend?,
    };
    Some((spec, name_at))
}

#[cfg(test)]
mod tests {
    use crate::spec::{parse_documents, Resource};

    use super::*;

    fn job(text: &str) -> JobSpec {
        match parse_documents("j.yaml", text).map(|mut r| r.remove(0)) {
            Ok(Resource::Job(j)) => j,
            other => panic!("not a job: {other:?}"),
        }
    }

    fn errors(text: &str) -> String {
        parse_documents("j.yaml", text)
            .expect_err("should be refused")
            .to_string()
    }

    #[test]
    fn defaults_follow_kubernetes() {
        let j = job("kind: Job\nname: once\ncommand: [true]\n");
        assert_eq!((j.completions, j.parallelism, j.backoff_limit), (1, 1, 6));
        assert_eq!(j.backoff, DEFAULT_JOB_BACKOFF);
        assert_eq!(
            j.history_limit,
            HistoryLimit {
                successful: 3,
                failed: 1
            }
        );
        assert_eq!(j.time_zone, "UTC");
        assert_eq!(j.concurrency_policy, ConcurrencyPolicy::Allow);
        assert_eq!(j.schedule, None);
        assert_eq!(j.retry_delay_ms(1), 10_000);
        assert_eq!(j.retry_delay_ms(2), 20_000);
        assert_eq!(j.retry_delay_ms(40), 360_000, "capped at 6m");
        assert_eq!(j.task_service().restart.policy, RestartMode::Never);
    }

    #[test]
    fn the_example_parses() {
        let text = include_str!("../../../examples/cleanup-job.yaml");
        let j = job(text);
        assert_eq!(j.schedule.as_deref(), Some("*/5 * * * *"));
        assert_eq!(j.time_zone, "Europe/Paris");
        assert_eq!(j.concurrency_policy, ConcurrencyPolicy::Forbid);
        assert_eq!(j.starting_deadline_ms, Some(60_000));
        assert!(j.cron().is_some_and(|c| c.is_ok()));
    }

    #[test]
    fn bad_schedules_zones_and_bounds_are_refused_with_their_place() {
        let e = errors("kind: Job\nname: j\ncommand: [x]\nschedule: '* * *'\n");
        assert!(
            e.contains("j.yaml:4:11: schedule: `* * *` has 3 fields"),
            "{e}"
        );
        let e = errors(
            "kind: Job\nname: j\ncommand: [x]\nschedule: '* * * * *'\ntime_zone: Moon/Base\n",
        );
        assert!(
            e.contains("j.yaml:5:12: time_zone: unknown time zone `Moon/Base`"),
            "{e}"
        );
        let e = errors("kind: Job\nname: j\ncommand: [x]\ncompletions: 1000\nparallelism: 0\n");
        assert!(
            e.contains("completions: 1000 is above the limit of 100"),
            "{e}"
        );
        assert!(e.contains("parallelism: must be at least 1"), "{e}");
        let e = errors(
            "kind: Job\nname: j\ncommand: [x]\nconcurrency_policy: sometimes\nreplicas: 2\n",
        );
        assert!(e.contains("unknown policy `sometimes`"), "{e}");
        assert!(e.contains("unknown field `replicas`"), "{e}");
        let e = errors("kind: Job\nname: j\ncommand: [x]\nbackoff: {initial: 1m, max: 1s}\nhistory_limit: {successful: 99}\n");
        assert!(
            e.contains("initial backoff (1m) is longer than max (1s)"),
            "{e}"
        );
        assert!(
            e.contains("history_limit.successful: 99 is above the limit of 50"),
            "{e}"
        );
    }
}
