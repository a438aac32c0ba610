//! `orion rollout status|history|undo|pause|resume` and `orion apply --wait`.
//!
//! Progress is read from the service object (generation, rollout state) and the
//! replica list (the generation each replica runs, and what its agent reports), so
//! following a rollout survives a leader change like any other read.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use orion_api::agent_proto::ReplicaState;
use orion_api::{RolloutState, ServiceObject};
use orion_client::{Client, Consistency};

use crate::args::{Output, RolloutCommand};
use crate::output::{print, Table};

/// A `--timeout` value (`90s`, `10m`).
pub fn parse_timeout(text: &str) -> anyhow::Result<Duration> {
    orion_api::spec::duration::parse_duration_ms(text)
        .map(Duration::from_millis)
        .map_err(|e| anyhow::anyhow!("--timeout {text:?}: {e}"))
}

pub async fn run(client: &Client, output: Output, command: RolloutCommand) -> anyhow::Result<()> {
    match command {
        RolloutCommand::Status {
            service,
            no_follow,
            timeout,
        } => {
            if no_follow {
                let p = progress(client, &service).await?;
                println!("{}", p.line());
                return Ok(());
            }
            wait(client, &service, parse_timeout(&timeout)?, false).await
        }
        RolloutCommand::History { service } => {
            let s = client
                .service(&service, Consistency::Linearizable)
                .await?
                .service;
            print(output, &s, history_table)
        }
        RolloutCommand::Undo {
            service,
            to_revision,
        } => {
            let r = client.rollout_undo(&service, to_revision).await?;
            println!(
                "service/{service} rolled back: revision {} rolls out ({})",
                r.service.generation,
                r.service
                    .rollout
                    .reason
                    .as_deref()
                    .unwrap_or("rollout undo")
            );
            Ok(())
        }
        RolloutCommand::Pause { service } => {
            client.rollout_pause(&service, true).await?;
            println!("service/{service} rollout paused");
            Ok(())
        }
        RolloutCommand::Resume { service } => {
            client.rollout_pause(&service, false).await?;
            println!("service/{service} rollout resumed");
            Ok(())
        }
    }
}

fn history_table(s: &ServiceObject) -> Table {
    let mut t = Table::new(&["REVISION", "APPLIED AT", "COMMAND", "CURRENT"]);
    for r in &s.history {
        t.row(vec![
            r.generation.to_string(),
            r.revision.to_string(),
            r.spec.command.join(" "),
            String::new(),
        ]);
    }
    t.row(vec![
        s.generation.to_string(),
        s.mod_revision.to_string(),
        s.spec.command.join(" "),
        format!("yes ({})", s.rollout.state),
    ]);
    t
}

/// Where one service's rollout stands.
struct Progress {
    service: String,
    generation: u64,
    state: RolloutState,
    paused: bool,
    reason: Option<String>,
    rolled_back_from: Option<u64>,
    desired: u32,
    updated: u32,
    available: u32,
    /// Replicas above `desired`: the rollout's surge replicas.
    surge: u32,
}

impl Progress {
    fn line(&self) -> String {
        let surge = if self.surge > 0 {
            format!(", {} surge", self.surge)
        } else {
            String::new()
        };
        let mut line = format!(
            "service/{} revision {}: {} of {} replicas updated, {} available{surge}, {}{}",
            self.service,
            self.generation,
            self.updated,
            self.desired,
            self.available,
            self.state,
            if self.paused { " (paused)" } else { "" },
        );
        if let Some(reason) = &self.reason {
            line.push_str(&format!(": {reason}"));
        }
        line
    }
}

async fn progress(client: &Client, service: &str) -> anyhow::Result<Progress> {
    let s = client
        .service(service, Consistency::Linearizable)
        .await?
        .service;
    let list = client.replicas(Consistency::Linearizable).await?;
    let has_check = s.spec.health.is_some();
    let mine: Vec<_> = list
        .items
        .iter()
        .filter(|r| r.service == s.spec.name && r.ordinal < s.spec.replicas)
        .collect();
    let updated = mine.iter().filter(|r| r.generation == s.generation).count() as u32;
    let available = mine
        .iter()
        .filter(|r| {
            list.observed.get(&r.id()).is_some_and(|o| {
                o.state == ReplicaState::Healthy || (!has_check && o.state == ReplicaState::Running)
            })
        })
        .count() as u32;
    let surge = list
        .items
        .iter()
        .filter(|r| r.service == s.spec.name && r.ordinal >= s.spec.replicas)
        .count() as u32;
    Ok(Progress {
        service: s.spec.name.clone(),
        generation: s.generation,
        state: s.rollout.state,
        paused: s.rollout.paused,
        reason: s.rollout.reason.clone(),
        rolled_back_from: s.rollout.rolled_back_from,
        desired: s.spec.replicas,
        updated,
        available,
        surge,
    })
}

/// Follows `service`'s rollout, printing each new progress line, until it
/// completes (Ok) or fails (Err, so the exit code says so). With `pin`, it follows
/// the revision current at the first read (what an apply just made): a later
/// revision — an automatic rollback, or someone else's apply — ends it as failed.
pub async fn wait(
    client: &Client,
    service: &str,
    timeout: Duration,
    pin: bool,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    let mut last = String::new();
    let mut pinned: Option<u64> = None;
    loop {
        // A read that fails during a failover is retried until the deadline.
        match progress(client, service).await {
            Ok(p) => {
                let followed = *pinned.get_or_insert(p.generation);
                if pin && p.generation != followed {
                    println!("{}", p.line());
                    match &p.reason {
                        Some(reason) if p.rolled_back_from == Some(followed) => {
                            bail!("rollout of service/{service} failed: {reason}")
                        }
                        _ => bail!(
                            "rollout of service/{service} revision {followed} was superseded by revision {}",
                            p.generation
                        ),
                    }
                }
                let line = p.line();
                if line != last {
                    println!("{line}");
                    last = line;
                }
                match p.state {
                    RolloutState::Complete => return Ok(()),
                    RolloutState::Failed => {
                        bail!(
                            "rollout of service/{service} failed: {}",
                            p.reason.as_deref().unwrap_or("no reason recorded")
                        )
                    }
                    RolloutState::Progressing => {}
                }
            }
            Err(e) if Instant::now() < deadline => {
                tracing::debug!(cause = %format!("{e:#}"), "rollout progress read failed; retrying");
            }
            Err(e) => return Err(e).context(format!("following the rollout of {service}")),
        }
        if Instant::now() >= deadline {
            bail!(
                "rollout of service/{service} did not finish within {}s (last: {last})",
                timeout.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// `apply --wait`: follows every changed service; fails if any rollout fails.
pub async fn wait_all(
    client: &Client,
    services: &[String],
    timeout: Duration,
) -> anyhow::Result<()> {
    let mut failed = Vec::new();
    for s in services {
        if let Err(e) = wait(client, s, timeout, true).await {
            eprintln!("error: {e:#}");
            failed.push(s.clone());
        }
    }
    if !failed.is_empty() {
        bail!(
            "{} rollout(s) did not complete: {}",
            failed.len(),
            failed.join(", ")
        );
    }
    Ok(())
}
