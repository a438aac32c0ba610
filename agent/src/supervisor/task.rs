//! One replica's task: prepare → spawn → supervise (exit, health, stop, log
//! rotation) → decide by the restart policy → back off → again.
//!
//! # Restarts
//! `always` restarts after any exit, `on-failure` after a non-zero exit, a signal or
//! an unknown status (an adopted process), `never` does not. A health check that
//! fails `failures` times in a row kills the replica (state `Unhealthy`) and that
//! counts as a failed exit. A command that cannot be started (not found, not
//! executable, bad working directory, unknown `${VAR}`) is `Failed { reason }` and
//! retried on the same backoff — never a hot loop. So is a `before_start` hook
//! (`hooks.rs`) that fails: it runs before every start of a fresh process (not
//! before adopting one), and a stop while it runs kills it.
//!
//! The delay before restart `n` is `initial * 2^(n-1)` capped at `max`, ±10% jitter.
//! The count resets once a run lasted [`SupervisorConfig::backoff_reset`] without
//! being killed as unhealthy. [`ReplicaStatus::restarts`] counts every restart,
//! including retries of a failed spawn.
//!
//! A restart asked for (`orion restart`, [`crate::supervisor::Supervisor::restart`])
//! ignores the policy: the running process is stopped with the stop grace and
//! started again at once; an exited replica or one waiting in backoff starts at
//! once. It counts as a restart too.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::sys::signal::Signal;
use orion_api::spec::service::{Backoff, RestartMode};
use rand::Rng;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::error::{LaunchError, Result};
use crate::logs::{self, LogStream};
use crate::replica::{ReplicaSpec, ReplicaState, ReplicaStatus};
use crate::supervisor::config::SupervisorConfig;
use crate::supervisor::health;
use crate::supervisor::hooks;
use crate::supervisor::process::{
    prepare, signal_group, spawn, start_time, ExitInfo, Launch, Proc,
};
use crate::supervisor::records::{self, ReplicaRecord};

/// What every replica task shares.
pub(crate) struct Shared {
    pub root: PathBuf,
    pub config: SupervisorConfig,
    /// Bumped on every status change.
    pub changes: watch::Sender<u64>,
    /// Restarts made by every task since the supervisor started.
    pub restarts: AtomicU64,
}

impl Shared {
    pub fn bump(&self) {
        self.changes.send_modify(|v| *v = v.wrapping_add(1));
    }
}

/// A poisoned lock is still usable: every update of the guarded values is whole.
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Whether the policy restarts after this exit.
pub fn should_restart(mode: RestartMode, exit: ExitInfo) -> bool {
    match mode {
        RestartMode::Always => true,
        RestartMode::OnFailure => !exit.is_success(),
        RestartMode::Never => false,
    }
}

/// The delay before restart number `attempt` (1-based): `initial * 2^(attempt-1)`
/// capped at `max`, scaled by `1 + jitter` (`jitter` in ±0.1), still capped at `max`.
pub fn backoff_delay(backoff: &Backoff, attempt: u32, jitter: f64) -> Duration {
    let doublings = attempt.saturating_sub(1).min(40);
    let base = backoff
        .initial_ms
        .saturating_mul(1u64 << doublings)
        .min(backoff.max_ms);
    let jittered = (base as f64 * (1.0 + jitter.clamp(-0.1, 0.1))).round() as u64;
    Duration::from_millis(jittered.min(backoff.max_ms))
}

/// How one run of the process ended.
enum Outcome {
    /// Supervision stops; the process keeps running.
    Detached,
    Stop(Duration),
    Exited(ExitInfo),
    Unhealthy(String),
    /// Restart asked for (`orion restart`): stop it and start it again at once.
    Restart,
}

/// One replica's task.
pub(crate) struct ReplicaTask {
    pub shared: Arc<Shared>,
    pub spec: ReplicaSpec,
    pub status: Arc<Mutex<ReplicaStatus>>,
    /// `Some(grace)`: stop the process and end.
    pub stop: watch::Receiver<Option<Duration>>,
    /// Bumped by [`crate::supervisor::Supervisor::restart`].
    pub restart: watch::Receiver<u64>,
    /// The newest values of the variable-backed env: taken at each start.
    pub variables: watch::Receiver<orion_api::agent_proto::VariableValues>,
    /// The last restart request acted on.
    pub restarts_seen: AtomicU64,
    pub detach: CancellationToken,
}

impl ReplicaTask {
    fn update(&self, f: impl FnOnce(&mut ReplicaStatus)) {
        f(&mut lock(&self.status));
        self.shared.bump();
    }

    fn mark_stopped(&self) {
        self.update(|s| {
            s.state = ReplicaState::Stopped;
            s.pid = None;
            s.reason = None;
        });
    }

    fn remove_record(&self) {
        if let Err(e) = records::remove(&self.shared.root, &self.spec.id) {
            tracing::warn!(cause = %e, "cannot remove replica record");
        }
    }

    /// Resolves when a restart is asked for that was not acted on yet (never once
    /// the supervisor is gone).
    async fn restart_requested(&self) {
        let mut restart = self.restart.clone();
        let seen = self.restarts_seen.load(Ordering::Relaxed);
        let wanted = restart.wait_for(|n| *n != seen).await.map(|n| *n);
        let Ok(wanted) = wanted else {
            return std::future::pending().await;
        };
        self.restarts_seen.store(wanted, Ordering::Relaxed);
    }

    /// Resolves when asked to stop, with the grace period; `None` when detached.
    async fn stopped_or_detached(&self) -> Option<Duration> {
        let mut stop = self.stop.clone();
        tokio::select! {
            biased;
            _ = self.detach.cancelled() => None,
            res = stop.wait_for(Option::is_some) => match res {
                Ok(grace) => Some((*grace).unwrap_or(self.shared.config.stop_grace)),
                Err(_) => None,
            },
        }
    }

    pub async fn run(
        mut self,
        adopted: Option<ReplicaRecord>,
        predecessor: Option<CancellationToken>,
    ) {
        if let Some(previous) = predecessor {
            tokio::select! {
                _ = previous.cancelled() => {}
                stop = self.stopped_or_detached() => {
                    if stop.is_some() {
                        self.mark_stopped();
                    }
                    return;
                }
            }
        }
        let config = &self.shared.config;
        let backoff = self.spec.service.restart.backoff;
        let mut restarts = adopted.as_ref().map_or(0, |r| r.restarts);
        let mut attempt: u32 = 0;
        let mut adopted = adopted;
        loop {
            let started = Instant::now();
            let adopt = adopted.take();
            if adopt.is_none() {
                self.spec.variables = self.variables.borrow_and_update().clone();
            }
            let prepared = prepare(&self.shared.root, &self.spec);
            if let (None, Some(hook), Ok(launch)) =
                (&adopt, &self.spec.service.hooks.before_start, &prepared)
            {
                self.update(|s| {
                    s.state = ReplicaState::Starting;
                    s.pid = None;
                    s.reason = Some("running the before_start hook".to_owned());
                });
                let log_dir = logs::replica_dir(&self.shared.root, &self.spec.id);
                let outcome = tokio::select! {
                    biased;
                    stop = self.stopped_or_detached() => {
                        // Dropping the hook kills its process group.
                        if stop.is_some() {
                            self.mark_stopped();
                        }
                        return;
                    }
                    outcome = hooks::before_start(hook, launch, &log_dir) => outcome,
                };
                if let Err(reason) = outcome {
                    match self.start_failed(reason, &mut attempt, restarts).await {
                        Some(r) => {
                            restarts = r;
                            continue;
                        }
                        None => return,
                    }
                }
            }
            let (proc, launch) = match (adopt, prepared) {
                (Some(rec), launch) => (
                    Ok(Proc::Adopted {
                        pid: rec.pid,
                        pgid: rec.pgid,
                        start_time: rec.start_time,
                    }),
                    launch.ok(),
                ),
                (None, Ok(launch)) => {
                    let proc = spawn(&self.shared.root, &self.spec, &launch).and_then(|child| {
                        child
                            .id()
                            .map(|pid| Proc::Child { child, pid })
                            .ok_or(LaunchError::Untracked)
                    });
                    (proc, Some(launch))
                }
                (None, Err(e)) => (Err(e), None),
            };
            let mut proc = match proc {
                Ok(p) => p,
                Err(e) => match self
                    .start_failed(e.to_string(), &mut attempt, restarts)
                    .await
                {
                    Some(r) => {
                        restarts = r;
                        continue;
                    }
                    None => return,
                },
            };
            let pid = proc.pid();
            if let Proc::Child { .. } = proc {
                tracing::info!(pid, "replica started");
                self.save_record(&proc, restarts);
                self.update(|s| {
                    s.state = ReplicaState::Running;
                    s.pid = Some(pid);
                    s.reason = None;
                });
            }

            let outcome = self.supervise(&mut proc, launch).await;
            let ran = started.elapsed();
            let exit = match outcome {
                Outcome::Detached => return,
                Outcome::Stop(grace) => {
                    let exit = proc.terminate(grace, config.adopted_poll).await;
                    tracing::info!(pid, %exit, "replica stopped");
                    self.remove_record();
                    self.update(|s| s.last_exit = Some(exit.to_string()));
                    self.mark_stopped();
                    return;
                }
                Outcome::Restart => {
                    let exit = proc.terminate(config.stop_grace, config.adopted_poll).await;
                    tracing::info!(pid, %exit, "replica stopped to restart on request");
                    self.remove_record();
                    self.update(|s| {
                        s.last_exit = Some(format!("{exit} (restarted on request)"));
                        s.pid = None;
                        s.state = ReplicaState::Starting;
                        s.reason = Some("restarting on request".to_owned());
                    });
                    drop(proc);
                    attempt = 0;
                    restarts = self.count_restart(restarts);
                    continue;
                }
                Outcome::Exited(exit) => {
                    signal_group(proc.pgid(), Signal::SIGKILL);
                    self.remove_record();
                    tracing::info!(pid, %exit, "replica exited");
                    self.update(|s| {
                        s.last_exit = Some(exit.to_string());
                        s.pid = None;
                    });
                    if ran >= config.backoff_reset {
                        attempt = 0;
                    }
                    exit
                }
                Outcome::Unhealthy(reason) => {
                    tracing::warn!(pid, cause = %reason, "replica unhealthy; killing it");
                    self.update(|s| {
                        s.state = ReplicaState::Unhealthy;
                        s.reason = Some(reason.clone());
                    });
                    let exit = proc.terminate(config.stop_grace, config.adopted_poll).await;
                    self.remove_record();
                    self.update(|s| {
                        s.last_exit = Some(format!("{exit} (killed: unhealthy)"));
                        s.pid = None;
                    });
                    // A kill for failing health checks is a failure, whatever the status.
                    ExitInfo {
                        code: None,
                        signal: exit.signal.or(Some(Signal::SIGKILL as i32)),
                    }
                }
            };
            drop(proc);

            if !should_restart(self.spec.service.restart.policy, exit) {
                self.update(|s| {
                    if s.state != ReplicaState::Unhealthy {
                        s.state = ReplicaState::Exited {
                            code: exit.code,
                            signal: exit.signal,
                        };
                        // Starts with how it exited: the leader's `on_failure`
                        // hook tells a failure from a clean exit by it.
                        s.reason = Some(format!(
                            "{exit}; not restarted (restart policy {:?})",
                            self.spec.service.restart.policy
                        ));
                    }
                });
                // Not restarted by policy, but `orion restart` still can.
                tokio::select! {
                    stop = self.stopped_or_detached() => {
                        if stop.is_some() {
                            self.mark_stopped();
                        }
                        return;
                    }
                    () = self.restart_requested() => {
                        attempt = 0;
                        restarts = self.count_restart(restarts);
                        continue;
                    }
                }
            }
            attempt = attempt.saturating_add(1);
            let delay = backoff_delay(&backoff, attempt, jitter());
            self.update(|s| {
                s.state = ReplicaState::Backoff;
                s.reason = Some(format!("restarting in {delay:?}"));
            });
            if !self.sleep_backoff(delay).await {
                return;
            }
            restarts = self.count_restart(restarts);
        }
    }

    /// A start that could not happen (the command cannot run, or `before_start`
    /// failed): the replica is `Failed` with `reason` and waits out the backoff.
    /// Returns the new restart count, or `None` if the task must end.
    async fn start_failed(&self, reason: String, attempt: &mut u32, restarts: u32) -> Option<u32> {
        // The reason is in the replica's status; the log says it once.
        if *attempt == 0 {
            tracing::warn!(cause = %reason, "cannot start replica; retrying with backoff");
        } else {
            tracing::debug!(cause = %reason, attempt = *attempt, "cannot start replica");
        }
        *attempt = attempt.saturating_add(1);
        let delay = backoff_delay(&self.spec.service.restart.backoff, *attempt, jitter());
        self.update(|s| {
            s.state = ReplicaState::Failed {
                reason: reason.clone(),
            };
            s.pid = None;
            s.reason = Some(format!("{reason}; retrying in {delay:?}"));
        });
        // A missing variable may appear before the backoff ends: start then.
        let mut variables = self.variables.clone();
        let waiting = !self.spec.variables.missing.is_empty();
        let ready = tokio::select! {
            ready = self.sleep_backoff(delay) => ready,
            Ok(()) = variables.changed(), if waiting => true,
        };
        if !ready {
            return None;
        }
        Some(self.count_restart(restarts))
    }

    /// Waits out a backoff delay (cut short by a restart request); false if the
    /// task must end (stopped or detached).
    async fn sleep_backoff(&self, delay: Duration) -> bool {
        tokio::select! {
            _ = tokio::time::sleep(delay) => true,
            () = self.restart_requested() => true,
            stop = self.stopped_or_detached() => {
                if stop.is_some() {
                    self.mark_stopped();
                }
                false
            }
        }
    }

    /// One more restart: counted in the status (which shows it as starting) and
    /// in the agent's metrics. Returns the new count.
    fn count_restart(&self, restarts: u32) -> u32 {
        let restarts = restarts.saturating_add(1);
        self.shared.restarts.fetch_add(1, Ordering::Relaxed);
        self.update(|s| {
            s.restarts = restarts;
            s.state = ReplicaState::Starting;
        });
        restarts
    }

    fn save_record(&self, proc: &Proc, restarts: u32) {
        let pid = proc.pid();
        let Some(start_time) = start_time(pid) else {
            return; // already gone; supervise() will see the exit
        };
        let spec_hash = match records::spec_hash(&self.spec) {
            Ok(h) => h,
            Err(e) => {
                tracing::warn!(cause = %e, "cannot hash the replica spec; it will not be adopted after an agent restart");
                return;
            }
        };
        let record = ReplicaRecord {
            pid,
            pgid: proc.pgid(),
            start_time,
            spec_hash,
            started_at_unix_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            restarts,
            spec: self.spec.clone(),
        };
        if let Err(e) = records::save(&self.shared.root, &record) {
            tracing::warn!(cause = %e, "cannot write replica record; it will not be adopted after an agent restart");
        }
    }

    /// Watches one run of the process: exit, health, stop and detach requests, and
    /// log rotation, until one of the first four happens.
    async fn supervise(&self, proc: &mut Proc, launch: Option<Launch>) -> Outcome {
        let config = &self.shared.config;
        let health_check = self.spec.service.health.as_ref();
        let health = async {
            match (health_check, &launch) {
                (Some(check), Some(launch)) => {
                    let target = health::Target {
                        ports: &self.spec.ports,
                        env: &launch.env,
                        cwd: &launch.cwd,
                    };
                    health::watch(check, target, || {
                        self.update(|s| {
                            s.state = ReplicaState::Healthy;
                            s.reason = None;
                        });
                    })
                    .await
                }
                _ => std::future::pending().await,
            }
        };
        tokio::pin!(health);
        let mut rotate = tokio::time::interval(config.logs.check_every);
        rotate.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let log_dir = logs::replica_dir(&self.shared.root, &self.spec.id);
        loop {
            tokio::select! {
                biased;
                stop = self.stopped_or_detached() => {
                    return match stop {
                        Some(grace) => Outcome::Stop(grace),
                        None => Outcome::Detached,
                    };
                }
                () = self.restart_requested() => return Outcome::Restart,
                exit = proc.wait(config.adopted_poll) => return Outcome::Exited(exit),
                reason = &mut health => return Outcome::Unhealthy(reason),
                _ = rotate.tick() => {
                    let dir = log_dir.clone();
                    let log_config = config.logs;
                    let rotated = tokio::task::spawn_blocking(move || {
                        LogStream::ALL
                            .iter()
                            .map(|s| logs::rotate_if_needed(&logs::log_path(&dir, *s), &log_config))
                            .collect::<Result<Vec<_>>>()
                    })
                    .await;
                    if let Ok(Err(e)) = rotated {
                        tracing::warn!(cause = %e, "cannot rotate replica logs");
                    }
                }
            }
        }
    }
}

fn jitter() -> f64 {
    rand::rng().random_range(-0.1..=0.1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let b = Backoff {
            initial_ms: 100,
            max_ms: 1_000,
        };
        let ms = |n| backoff_delay(&b, n, 0.0).as_millis();
        assert_eq!(
            [ms(1), ms(2), ms(3), ms(4), ms(5), ms(60)],
            [100, 200, 400, 800, 1000, 1000]
        );
        assert_eq!(backoff_delay(&b, 1, 0.1).as_millis(), 110);
        assert_eq!(backoff_delay(&b, 1, -0.5).as_millis(), 90);
        assert_eq!(backoff_delay(&b, 9, 0.1).as_millis(), 1000);
    }

    #[test]
    fn restart_policy() {
        let ok = ExitInfo {
            code: Some(0),
            signal: None,
        };
        let bad = ExitInfo {
            code: Some(3),
            signal: None,
        };
        assert!(should_restart(RestartMode::Always, ok));
        assert!(!should_restart(RestartMode::OnFailure, ok));
        assert!(should_restart(RestartMode::OnFailure, bad));
        assert!(should_restart(RestartMode::OnFailure, ExitInfo::UNKNOWN));
        assert!(!should_restart(RestartMode::Never, bad));
        assert_eq!(bad.to_string(), "exited with code 3");
        let killed = ExitInfo {
            code: None,
            signal: Some(9),
        };
        assert_eq!(killed.to_string(), "killed by signal 9 (SIGKILL)");
    }
}
