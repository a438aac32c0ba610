//! Jobs: `orion get jobs`, `orion describe job NAME`, `orion delete job NAME`,
//! `orion job run NAME`, and the task attempts `orion logs` can read.

use orion_api::spec::cron::format_slot;
use orion_api::{JobList, JobObject, JobResponse, RunState};
use orion_client::{Client, Consistency};

use crate::args::{JobCommand, Output};
use crate::output::{print, Table};

/// A time in milliseconds since the epoch, readable, in UTC.
fn at_ms(ms: u64) -> String {
    format_slot(i64::try_from(ms / 1000).unwrap_or(i64::MAX), "UTC")
}

fn jobs_table(items: &[JobObject]) -> Table {
    let mut t = Table::new(&[
        "NAME",
        "SCHEDULE",
        "COMPLETIONS",
        "ACTIVE",
        "LAST RUN",
        "REVISION",
    ]);
    for j in items {
        let last = j.runs.last().map_or("-".to_owned(), |r| {
            format!(
                "{} {} ({}/{})",
                r.id,
                r.state,
                r.succeeded(),
                j.spec.completions
            )
        });
        let schedule = match (&j.spec.schedule, j.spec.suspend) {
            (Some(s), false) => s.clone(),
            (Some(s), true) => format!("{s} (suspended)"),
            (None, _) => "-".to_owned(),
        };
        t.row(vec![
            j.spec.name.clone(),
            schedule,
            j.spec.completions.to_string(),
            j.active().count().to_string(),
            last,
            j.mod_revision.to_string(),
        ]);
    }
    t
}

/// `orion get jobs [NAME]`; returns the revision it read at.
pub async fn get(
    client: &Client,
    output: Output,
    name: Option<String>,
    consistency: Consistency,
) -> anyhow::Result<u64> {
    match name {
        None => {
            let r: JobList = client.jobs(consistency).await?;
            print(output, &r, |r| jobs_table(&r.items))?;
            Ok(r.revision)
        }
        Some(name) => {
            let r: JobResponse = client.job(&name, consistency).await?;
            print(output, &r, |r| jobs_table(std::slice::from_ref(&r.job)))?;
            Ok(r.revision)
        }
    }
}

/// `orion delete job NAME`.
pub async fn delete(client: &Client, name: &str) -> anyhow::Result<()> {
    let r = client.delete_job(name).await?;
    println!(
        "job/{} deleted at revision {}",
        r.deleted.spec.name, r.revision
    );
    Ok(())
}

/// `orion job ...`.
pub async fn run(client: &Client, output: Output, command: JobCommand) -> anyhow::Result<()> {
    match command {
        JobCommand::Run { job } => {
            let r = client.run_job(&job).await?;
            print(output, &r, |r| {
                let mut t = Table::new(&["JOB", "RUN", "STARTED", "REVISION"]);
                t.row(vec![
                    r.job.clone(),
                    r.run.id.to_string(),
                    at_ms(r.run.started_unix_ms),
                    r.revision.to_string(),
                ]);
                t
            })?;
            Ok(())
        }
    }
}

/// `orion describe job NAME`: the spec, the next scheduled run, every run kept
/// with its tasks (node, attempt, exit code, reason), and skipped slots.
pub async fn describe(client: &Client, name: &str) -> anyhow::Result<()> {
    let r: JobResponse = client.job(name, Consistency::Linearizable).await?;
    let j = &r.job;
    println!("Name:        {}", j.spec.name);
    match &j.spec.schedule {
        Some(s) => println!(
            "Schedule:    {s} ({}, concurrency_policy {:?}{})",
            j.spec.time_zone,
            j.spec.concurrency_policy,
            if j.spec.suspend { ", suspended" } else { "" }
        ),
        None => println!("Schedule:    none (runs once when created, and on `orion job run`)"),
    }
    match r.next_run_at {
        Some(at) => println!("Next run:    {}", format_slot(at, &j.spec.time_zone)),
        None => println!("Next run:    -"),
    }
    if let Some(last) = j.last_scheduled {
        println!("Last slot:   {}", format_slot(last, &j.spec.time_zone));
    }
    println!(
        "Completions: {} (parallelism {}, backoff_limit {})",
        j.spec.completions, j.spec.parallelism, j.spec.backoff_limit
    );
    println!("Spec:");
    for line in serde_norway::to_string(&j.spec)?.lines() {
        println!("  {line}");
    }
    println!("Runs:");
    if j.runs.is_empty() {
        println!("  none yet");
    }
    for run in &j.runs {
        let trigger = run.scheduled_at.map_or("manual".to_owned(), |at| {
            format!("scheduled {}", format_slot(at, &j.spec.time_zone))
        });
        let finished = run
            .finished_unix_ms
            .map_or(String::new(), |f| format!(", finished {}", at_ms(f)));
        println!(
            "  run {} {} ({trigger}; started {}{finished}; {}/{} succeeded){}",
            run.id,
            run.state,
            at_ms(run.started_unix_ms),
            run.succeeded(),
            j.spec.completions,
            run.reason
                .as_ref()
                .map_or(String::new(), |r| format!(": {r}"))
        );
        let mut t = Table::new(&["    TASK", "ATTEMPT", "NODE", "STATE", "EXIT", "REASON"]);
        for task in &run.tasks {
            t.row(vec![
                format!("    {}", task.replica_id(&j.spec.name, run.id)),
                task.attempt.to_string(),
                task.node.clone().unwrap_or_else(|| "-".into()),
                task.state.to_string(),
                task.exit_code.map_or("-".into(), |c| c.to_string()),
                task.reason.clone().unwrap_or_default(),
            ]);
        }
        if !run.tasks.is_empty() {
            print!("{}", t.render());
        }
        if run.state == RunState::Running && run.tasks.is_empty() {
            println!("    (no task placed yet)");
        }
    }
    if !j.skipped.is_empty() {
        println!("Skipped slots:");
        for s in &j.skipped {
            println!(
                "  {}: {}",
                format_slot(s.scheduled_at, &j.spec.time_zone),
                s.reason
            );
        }
    }
    Ok(())
}

/// The task attempts of kept runs `target` names: one attempt by its id, or
/// every attempt of a job's runs by the job's name.
pub async fn task_ids(client: &Client, target: &str) -> anyhow::Result<Vec<String>> {
    let list: JobList = client.jobs(Consistency::Linearizable).await?;
    let mut ids = Vec::new();
    for j in &list.items {
        for (id, _, task) in j.all_tasks() {
            if task.node.is_some() && (id == target || j.spec.name == target) {
                ids.push(id);
            }
        }
    }
    Ok(ids)
}
