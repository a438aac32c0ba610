//! The process supervisor: keeps this node's replicas running as the control plane
//! wants them.
//!
//! [`Supervisor::reconcile`] is level-triggered: given the full desired set it starts
//! the missing replicas, stops the extra ones and replaces those whose spec changed.
//! Each replica is one task (`task.rs`) that loops: prepare the environment → spawn →
//! supervise (exit, health, stop, log rotation) → decide → back off → again.
//!
//! # Layout
//! Imports point one way: this file → `task` → `health`, `hooks`, `records` →
//! `process`.
//! - this file: [`Supervisor`], the desired set and `reconcile`;
//! - `task`: one replica's loop and its restart policy with backoff;
//! - [`health`]: HTTP / TCP / exec probes and the consecutive-result counting;
//! - `hooks`: `before_start` hooks, and hook commands the leader runs on this node;
//! - [`records`]: the on-disk record of each running replica, for adoption;
//! - [`process`]: environment, spawn, waiting, signals, `/proc`;
//! - `config`: [`SupervisorConfig`].
//!
//! # Shutdown and agent restarts
//! Cancelling the `shutdown` token given to [`Supervisor::new`] (or calling
//! [`Supervisor::detach`], or dropping the supervisor) stops supervising but leaves
//! the processes running and their records on disk: a restarted agent adopts them
//! (see [`records`]). Only [`Supervisor::stop_all`] and `reconcile` stop processes.

use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::process::Command;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::error::{ExecError, LaunchError, RestartError, Result};
use crate::logs::{self, LogStream};
use crate::replica::{ExecOutput, ReplicaSpec, ReplicaState, ReplicaStatus};

mod config;
pub mod health;
mod hooks;
pub mod process;
pub mod records;
mod task;

pub use config::SupervisorConfig;
use process::prepare;
use records::ReplicaRecord;
use task::{lock, ReplicaTask, Shared};

/// Runs and supervises this node's replicas. See the module docs.
pub struct Supervisor {
    shared: Arc<Shared>,
    /// The desired replicas, by id.
    replicas: Mutex<BTreeMap<String, Handle>>,
    /// Replicas removed by `reconcile` whose tasks have not finished stopping yet:
    /// a new replica with the same id waits for its predecessor, and `stop_all` for all.
    stopping: Mutex<Vec<Handle>>,
    /// Never two reconciles (or a reconcile and `stop_all`) at once.
    reconcile_lock: tokio::sync::Mutex<()>,
    /// Child of the caller's shutdown token: cancelled = stop supervising, keep processes.
    detach: CancellationToken,
}

/// The supervisor's side of one replica task.
struct Handle {
    spec: ReplicaSpec,
    status: Arc<Mutex<ReplicaStatus>>,
    /// `Some(grace)` asks the task to stop its process and end.
    stop: watch::Sender<Option<Duration>>,
    /// Bumped to ask the task to restart its process ([`Supervisor::restart`]).
    restart: watch::Sender<u64>,
    /// The newest values of the replica's variable-backed env, for its next start.
    variables: watch::Sender<orion_api::agent_proto::VariableValues>,
    /// Cancelled when the task has ended (its process stopped, or detached).
    done: CancellationToken,
}

impl Handle {
    fn request_stop(&self, grace: Duration) {
        self.stop.send_if_modified(|v| match v {
            Some(current) if *current <= grace => false,
            _ => {
                *v = Some(grace);
                true
            }
        });
    }
}

impl Supervisor {
    /// A supervisor keeping state and logs under `root`, adopting the processes a
    /// previous agent left running there. Must be called within a Tokio runtime.
    pub fn new(root: PathBuf, shutdown: CancellationToken) -> Self {
        Self::with_config(root, shutdown, SupervisorConfig::default())
    }

    pub fn with_config(
        root: PathBuf,
        shutdown: CancellationToken,
        config: SupervisorConfig,
    ) -> Self {
        let (changes, _) = watch::channel(0);
        let sup = Supervisor {
            shared: Arc::new(Shared {
                root,
                config,
                changes,
                restarts: AtomicU64::new(0),
            }),
            replicas: Mutex::new(BTreeMap::new()),
            stopping: Mutex::new(Vec::new()),
            reconcile_lock: tokio::sync::Mutex::new(()),
            detach: shutdown.child_token(),
        };
        let adopted = records::load_live(&sup.shared.root);
        let mut replicas = lock(&sup.replicas);
        for record in adopted {
            tracing::info!(replica = %record.spec.id, pid = record.pid, "adopting running replica");
            let id = record.spec.id.clone();
            let handle = sup.start(record.spec.clone(), Some(record), None);
            replicas.insert(id, handle);
        }
        drop(replicas);
        sup
    }

    /// Makes the running set equal `desired`: starts missing replicas, stops extra
    /// ones (with [`SupervisorConfig::stop_grace`]) and replaces those whose spec
    /// changed. Returns once the changes are under way; it does not wait for stops.
    /// Replicas being stopped no longer appear in [`Supervisor::statuses`].
    /// A repeated id in `desired` keeps its first spec.
    pub async fn reconcile(&self, desired: Vec<ReplicaSpec>) {
        let _one_at_a_time = self.reconcile_lock.lock().await;
        let mut wanted: BTreeMap<String, ReplicaSpec> = BTreeMap::new();
        for spec in desired {
            if wanted.contains_key(&spec.id) {
                tracing::warn!(replica = %spec.id, "replica listed twice in the desired set; keeping the first");
                continue;
            }
            wanted.insert(spec.id.clone(), spec);
        }
        let grace = self.shared.config.stop_grace;
        let mut replicas = lock(&self.replicas);
        let mut stopping = lock(&self.stopping);
        stopping.retain(|h| !h.done.is_cancelled());
        let outdated: Vec<String> = replicas
            .iter()
            .filter(|(id, h)| !wanted.get(*id).is_some_and(|w| w.same_process(&h.spec)))
            .map(|(id, _)| id.clone())
            .collect();
        for id in outdated {
            if let Some(handle) = replicas.remove(&id) {
                tracing::info!(replica = %id, "stopping replica (removed or changed)");
                handle.request_stop(grace);
                stopping.push(handle);
            }
        }
        for (id, spec) in wanted {
            if let Some(kept) = replicas.get_mut(&id) {
                // Same process, perhaps a newer generation: nothing to restart.
                // New variable values wait for the process's next start.
                kept.spec.generation = spec.generation;
                kept.spec.variables = spec.variables.clone();
                kept.variables.send_if_modified(|v| {
                    let changed = *v != spec.variables;
                    if changed {
                        *v = spec.variables.clone();
                    }
                    changed
                });
                continue;
            }
            let predecessor = stopping
                .iter()
                .filter(|h| h.spec.id == id)
                .map(|h| h.done.clone())
                .next_back();
            tracing::info!(replica = %id, "starting replica");
            let handle = self.start(spec, None, predecessor);
            replicas.insert(id, handle);
        }
        drop((replicas, stopping));
        self.shared.bump();
    }

    /// The status of every desired replica, by id.
    pub fn statuses(&self) -> Vec<ReplicaStatus> {
        lock(&self.replicas)
            .values()
            .map(|h| lock(&h.status).clone())
            .collect()
    }

    /// The generation each replica runs for, by replica id.
    pub fn generations(&self) -> BTreeMap<String, u64> {
        lock(&self.replicas)
            .iter()
            .map(|(id, h)| (id.clone(), h.spec.generation))
            .collect()
    }

    /// The ports each replica was given, by replica id.
    pub fn ports(&self) -> BTreeMap<String, BTreeMap<String, u16>> {
        lock(&self.replicas)
            .iter()
            .map(|(id, h)| (id.clone(), h.spec.ports.clone()))
            .collect()
    }

    /// How many restarts the replica tasks made since this supervisor started.
    pub fn restarts_total(&self) -> u64 {
        self.shared.restarts.load(Ordering::Relaxed)
    }

    /// A counter bumped on every status change (then read [`Supervisor::statuses`]).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.shared.changes.subscribe()
    }

    /// Stops every replica (SIGTERM, then SIGKILL after `grace`) and waits until
    /// all are gone. Their records are removed: nothing will be adopted.
    pub async fn stop_all(&self, grace: Duration) {
        let _one_at_a_time = self.reconcile_lock.lock().await;
        let mut handles: Vec<Handle> = std::mem::take(&mut *lock(&self.replicas))
            .into_values()
            .collect();
        handles.append(&mut lock(&self.stopping));
        for h in &handles {
            h.request_stop(grace);
        }
        for h in &handles {
            h.done.cancelled().await;
        }
        self.shared.bump();
    }

    /// Stops supervising without stopping the processes, as if the agent crashed:
    /// records stay on disk and the next supervisor on this root adopts them.
    pub fn detach(&self) {
        self.detach.cancel();
    }

    /// The root this supervisor keeps its state and logs under.
    pub fn root(&self) -> &Path {
        &self.shared.root
    }

    /// `root/logs/<id>`.
    pub fn log_dir(&self, id: &str) -> PathBuf {
        logs::replica_dir(&self.shared.root, id)
    }

    /// The last `n` lines a replica wrote to `stream`.
    pub fn tail(&self, id: &str, stream: LogStream, n: usize) -> Result<Vec<String>> {
        logs::tail(&self.log_dir(id), stream, n)
    }

    /// Runs `command` once in replica `id`'s environment (plus `env`) and working
    /// folder (not a TTY), and returns its exit code and output; killed after
    /// `timeout`. An empty `id` runs it on the node itself, in `<root>/hooks` with
    /// the inherited variables and `env` (a lifecycle hook's `command` with `node`).
    pub async fn exec(
        &self,
        id: &str,
        command: &[String],
        env: &BTreeMap<String, String>,
        timeout: Duration,
    ) -> std::result::Result<ExecOutput, ExecError> {
        if id.is_empty() {
            // A lifecycle hook the leader runs on this node, outside any replica.
            let dir = self.shared.root.join("hooks");
            return hooks::on_node(&dir, process::inherited_env(), command, env, timeout)
                .await
                .map_err(ExecError::Hook);
        }
        let spec = lock(&self.replicas)
            .get(id)
            .map(|h| h.spec.clone())
            .ok_or_else(|| ExecError::NotHere(id.to_owned()))?;
        let launch = prepare(&self.shared.root, &spec)?;
        let (program, args) = command.split_first().ok_or(LaunchError::EmptyCommand)?;
        let child = Command::new(program)
            .args(args)
            .env_clear()
            .envs(&launch.env)
            .envs(env)
            .current_dir(&launch.cwd)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| LaunchError::spawn(program, e))?;
        let out = tokio::time::timeout(timeout, child.wait_with_output())
            .await
            .map_err(|_| ExecError::Timeout(timeout))?
            .map_err(ExecError::Wait)?;
        Ok(ExecOutput {
            exit_code: out.status.code(),
            signal: out.status.signal(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }

    /// Stops replica `id`'s process (SIGTERM, SIGKILL after
    /// [`SupervisorConfig::stop_grace`]) and starts it again at once, whatever its
    /// restart policy and even if it exited or waits in backoff; the restart count
    /// goes up by one. Returns the replica's status once the new process runs (or,
    /// if it ended at once, has run).
    pub async fn restart(
        &self,
        id: &str,
        timeout: Duration,
    ) -> std::result::Result<ReplicaStatus, RestartError> {
        let mut changes = self.shared.changes.subscribe();
        let (status, before) = {
            let replicas = lock(&self.replicas);
            let h = replicas
                .get(id)
                .ok_or_else(|| RestartError::NotHere(id.to_owned()))?;
            let before = lock(&h.status).restarts;
            h.restart.send_modify(|n| *n = n.wrapping_add(1));
            (h.status.clone(), before)
        };
        let wait = async {
            loop {
                let now = lock(&status).clone();
                if now.restarts > before {
                    match &now.state {
                        ReplicaState::Running | ReplicaState::Healthy if now.pid.is_some() => {
                            return Ok(now)
                        }
                        // It ran again and already ended (its policy decides what next).
                        ReplicaState::Exited { .. }
                        | ReplicaState::Backoff
                        | ReplicaState::Unhealthy => return Ok(now),
                        ReplicaState::Failed { reason } => {
                            return Err(RestartError::Failed {
                                id: id.to_owned(),
                                reason: reason.clone(),
                            })
                        }
                        ReplicaState::Stopped => return Err(RestartError::Gone(id.to_owned())),
                        _ => {}
                    }
                }
                if changes.changed().await.is_err() {
                    return Err(RestartError::Gone(id.to_owned()));
                }
            }
        };
        tokio::time::timeout(timeout, wait)
            .await
            .map_err(|_| RestartError::Timeout {
                id: id.to_owned(),
                timeout,
            })?
    }

    /// The SIGTERM→SIGKILL grace of stops and restarts.
    pub fn stop_grace(&self) -> Duration {
        self.shared.config.stop_grace
    }

    fn start(
        &self,
        spec: ReplicaSpec,
        adopted: Option<ReplicaRecord>,
        predecessor: Option<CancellationToken>,
    ) -> Handle {
        let status = Arc::new(Mutex::new(ReplicaStatus {
            id: spec.id.clone(),
            pid: adopted.as_ref().map(|r| r.pid),
            state: if adopted.is_some() {
                ReplicaState::Running
            } else {
                ReplicaState::Starting
            },
            restarts: adopted.as_ref().map_or(0, |r| r.restarts),
            last_exit: None,
            reason: adopted
                .as_ref()
                .map(|_| "adopted from a previous agent".to_owned()),
        }));
        let (stop, stop_rx) = watch::channel(None);
        let (restart, restart_rx) = watch::channel(0);
        let (variables, variables_rx) = watch::channel(spec.variables.clone());
        let done = CancellationToken::new();
        let task = ReplicaTask {
            shared: self.shared.clone(),
            spec: spec.clone(),
            status: status.clone(),
            stop: stop_rx,
            restart: restart_rx,
            variables: variables_rx,
            restarts_seen: std::sync::atomic::AtomicU64::new(0),
            detach: self.detach.clone(),
        };
        let span = tracing::info_span!("replica", id = %spec.id);
        let guard = done.clone().drop_guard();
        tokio::spawn(
            async move {
                let _done = guard;
                task.run(adopted, predecessor).await;
            }
            .instrument(span),
        );
        Handle {
            spec,
            status,
            stop,
            restart,
            variables,
            done,
        }
    }
}

impl Drop for Supervisor {
    /// Dropping detaches: the processes keep running (see [`Supervisor::detach`]).
    fn drop(&mut self) {
        self.detach.cancel();
    }
}
