//! The process supervisor: keeps this node's replicas running as the control plane
//! wants them.
//!
//! [`Supervisor::reconcile`] is level-triggered: given the full desired set it starts
//! the missing replicas, stops the extra ones and replaces those whose spec changed.
//! Each replica is one task that loops: prepare the environment → spawn →
//! supervise (exit, health, stop, log rotation) → decide → back off → again.
//!
//! # Processes
//! - Each replica leads its own process group (`process_group(0)`); stopping sends
//!   `SIGTERM` to the group, then `SIGKILL` after the grace period, and reaps the
//!   leader. After any exit the group is swept with `SIGKILL`, so a restart never
//!   leaves stray children behind.
//! - Environment: a few variables inherited from the agent (`PATH`, `HOME`, `USER`,
//!   `LOGNAME`, `LANG`, `LC_ALL`, `TZ`, `TMPDIR` — nothing else, so the agent's own
//!   secrets never reach workloads), then the service's `env`, the replica's extra
//!   `env`, `ORION_PORT_<NAME>` per allocated port (the first port of the service's
//!   `ports` also as `PORT`) and `ORION_REPLICA=<id>`. `${NAME}` in the command is
//!   expanded from that same environment.
//! - Working directory: `root/work/<id>` by default (created); a relative
//!   `working_dir` is taken under it; an absolute one must exist.
//! - stdin is `/dev/null`; stdout and stderr go to the files of [`crate::logs`].
//!
//! # Restarts
//! `always` restarts after any exit, `on-failure` after a non-zero exit, a signal or
//! an unknown status (an adopted process), `never` does not. A health check that
//! fails `failures` times in a row kills the replica (state `Unhealthy`) and that
//! counts as a failed exit. A command that cannot be started (not found, not
//! executable, bad working directory, unknown `${VAR}`) is `Failed { reason }` and
//! retried on the same backoff — never a hot loop.
//!
//! The delay before restart `n` is `initial * 2^(n-1)` capped at `max`, ±10% jitter.
//! The count resets once a run lasted [`SupervisorConfig::backoff_reset`] without
//! being killed as unhealthy. [`ReplicaStatus::restarts`] counts every restart,
//! including retries of a failed spawn.
//!
//! # Shutdown and agent restarts
//! Cancelling the `shutdown` token given to [`Supervisor::new`] (or calling
//! [`Supervisor::detach`], or dropping the supervisor) stops supervising but leaves
//! the processes running and their records on disk: a restarted agent adopts them
//! (see [`crate::state`]). Only [`Supervisor::stop_all`] and `reconcile` stop processes.

use std::collections::BTreeMap;
use std::fmt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;
use orion_api::spec::service::{Backoff, RestartMode, ServiceSpec};
use rand::Rng;
use serde::{Deserialize, Serialize};
use tokio::process::{Child, Command};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::error::Result;
use crate::health;
use crate::logs::{self, LogConfig, LogStream};
use crate::state::{self, ReplicaRecord};

/// Agent variables a replica inherits; everything else of the agent's environment is withheld.
const INHERITED_ENV: &[&str] = &[
    "PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "TZ", "TMPDIR",
];

/// One replica this node should run: what the control plane sends for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaSpec {
    /// Unique on the node, e.g. `web-0`; names its logs, record and work folder.
    pub id: String,
    pub service: ServiceSpec,
    /// The ports the scheduler allocated, by the names in `service.ports`.
    pub ports: BTreeMap<String, u16>,
    /// Extra environment on top of `service.env` (e.g. from variables).
    pub env: BTreeMap<String, String>,
}

/// What an [`Supervisor::exec`] produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecOutput {
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// What a replica is doing now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplicaState {
    /// Its task is about to spawn it (or waits for a previous instance to stop).
    Starting,
    /// The process is alive; it has no health check, or the check has not passed yet.
    Running,
    /// The health check passed `successes` times in a row.
    Healthy,
    /// The health check failed `failures` times in a row; it is being killed.
    Unhealthy,
    /// Exited and waiting to be restarted.
    Backoff,
    /// Exited and, by its restart policy, not restarted.
    Exited {
        code: Option<i32>,
        signal: Option<i32>,
    },
    /// Could not be started; retried with backoff. The reason says why.
    Failed { reason: String },
    /// Stopped on request.
    Stopped,
}

/// The observed state of one replica, as reported to the control plane.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaStatus {
    pub id: String,
    pub pid: Option<u32>,
    pub state: ReplicaState,
    pub restarts: u32,
    /// How the previous process ended, e.g. `exited with code 3`.
    pub last_exit: Option<String>,
    /// Why the replica is in its state, when that needs explaining.
    pub reason: Option<String>,
}

/// Knobs of the supervisor; the defaults suit production, tests shrink them.
#[derive(Debug, Clone)]
pub struct SupervisorConfig {
    pub logs: LogConfig,
    /// SIGTERM→SIGKILL grace when `reconcile` stops or replaces a replica, and when
    /// an unhealthy replica is killed (default 10 s).
    pub stop_grace: Duration,
    /// A run at least this long resets the backoff (default 10 s).
    pub backoff_reset: Duration,
    /// How often an adopted (non-child) process is checked for exit (default 500 ms).
    pub adopted_poll: Duration,
}

impl Default for SupervisorConfig {
    fn default() -> Self {
        SupervisorConfig {
            logs: LogConfig::default(),
            stop_grace: Duration::from_secs(10),
            backoff_reset: Duration::from_secs(10),
            adopted_poll: Duration::from_millis(500),
        }
    }
}

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

/// What every replica task shares.
struct Shared {
    root: PathBuf,
    config: SupervisorConfig,
    /// Bumped on every status change.
    changes: watch::Sender<u64>,
}

impl Shared {
    fn bump(&self) {
        self.changes.send_modify(|v| *v = v.wrapping_add(1));
    }
}

/// The supervisor's side of one replica task.
struct Handle {
    spec: ReplicaSpec,
    status: Arc<Mutex<ReplicaStatus>>,
    /// `Some(grace)` asks the task to stop its process and end.
    stop: watch::Sender<Option<Duration>>,
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

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
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
            }),
            replicas: Mutex::new(BTreeMap::new()),
            stopping: Mutex::new(Vec::new()),
            reconcile_lock: tokio::sync::Mutex::new(()),
            detach: shutdown.child_token(),
        };
        let adopted = state::load_live(&sup.shared.root);
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
            .filter(|(id, h)| wanted.get(*id) != Some(&h.spec))
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
            if replicas.contains_key(&id) {
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

    /// The ports each replica was given, by replica id.
    pub fn ports(&self) -> BTreeMap<String, BTreeMap<String, u16>> {
        lock(&self.replicas)
            .iter()
            .map(|(id, h)| (id.clone(), h.spec.ports.clone()))
            .collect()
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

    /// Runs `command` once in replica `id`'s environment and working folder (not a
    /// TTY), and returns its exit code and output; killed after `timeout`.
    pub async fn exec(
        &self,
        id: &str,
        command: &[String],
        timeout: Duration,
    ) -> std::result::Result<ExecOutput, String> {
        let spec = self
            .replicas
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(id)
            .map(|h| h.spec.clone())
            .ok_or_else(|| format!("replica {id:?} does not run on this node"))?;
        let launch = prepare(&self.shared.root, &spec)?;
        let (program, args) = command
            .split_first()
            .ok_or_else(|| "the command is empty".to_owned())?;
        let child = Command::new(program)
            .args(args)
            .env_clear()
            .envs(&launch.env)
            .current_dir(&launch.cwd)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| describe_spawn_error(program, &e))?;
        let out = tokio::time::timeout(timeout, child.wait_with_output())
            .await
            .map_err(|_| format!("the command did not finish within {timeout:?}"))?
            .map_err(|e| e.to_string())?;
        Ok(ExecOutput {
            exit_code: out.status.code(),
            signal: out.status.signal(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
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
        let done = CancellationToken::new();
        let task = ReplicaTask {
            shared: self.shared.clone(),
            spec: spec.clone(),
            status: status.clone(),
            stop: stop_rx,
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

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitInfo {
    pub code: Option<i32>,
    pub signal: Option<i32>,
}

impl ExitInfo {
    /// An exit we could not observe (an adopted process is not our child).
    pub const UNKNOWN: ExitInfo = ExitInfo {
        code: None,
        signal: None,
    };

    pub fn is_success(&self) -> bool {
        self.code == Some(0)
    }
}

impl From<ExitStatus> for ExitInfo {
    fn from(status: ExitStatus) -> Self {
        ExitInfo {
            code: status.code(),
            signal: status.signal(),
        }
    }
}

impl fmt::Display for ExitInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.code, self.signal) {
            (Some(code), _) => write!(f, "exited with code {code}"),
            (None, Some(sig)) => match Signal::try_from(sig) {
                Ok(s) => write!(f, "killed by signal {sig} ({})", s.as_str()),
                Err(_) => write!(f, "killed by signal {sig}"),
            },
            (None, None) => write!(f, "exited (status unknown)"),
        }
    }
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

/// A spawn error as a status reason.
pub fn describe_spawn_error(program: &str, err: &std::io::Error) -> String {
    match err.kind() {
        std::io::ErrorKind::NotFound => format!("command \"{program}\" not found"),
        std::io::ErrorKind::PermissionDenied => {
            format!("command \"{program}\" is not executable (permission denied)")
        }
        _ => format!("cannot start \"{program}\": {err}"),
    }
}

/// Sends `signal` to a process group; a group that is already gone is fine.
pub fn signal_group(pgid: u32, signal: Signal) {
    let Ok(raw) = i32::try_from(pgid) else { return };
    if raw <= 1 {
        return; // never signal "every process" or init's group by mistake
    }
    if let Err(e) = killpg(Pid::from_raw(raw), signal) {
        if e != nix::errno::Errno::ESRCH {
            tracing::warn!(pgid, signal = signal.as_str(), cause = %e, "cannot signal process group");
        }
    }
}

fn signal_pid(pid: u32, signal: Signal) {
    if let Ok(raw) = i32::try_from(pid) {
        if raw > 1 {
            let _ = kill(Pid::from_raw(raw), signal);
        }
    }
}

/// Everything needed to spawn one replica (and run its exec probes).
struct Launch {
    argv: Vec<String>,
    env: BTreeMap<String, String>,
    cwd: PathBuf,
}

/// The environment, argv and working directory of a replica. Errors are status reasons.
fn prepare(root: &Path, spec: &ReplicaSpec) -> Result<Launch, String> {
    let mut env: BTreeMap<String, String> = INHERITED_ENV
        .iter()
        .filter_map(|k| std::env::var(k).ok().map(|v| ((*k).to_owned(), v)))
        .collect();
    env.extend(spec.service.env.clone());
    env.extend(spec.env.clone());
    for (name, port) in &spec.ports {
        env.insert(ServiceSpec::port_env_name(name), port.to_string());
    }
    let first_port = spec
        .service
        .ports
        .iter()
        .find_map(|name| spec.ports.get(name))
        .or_else(|| spec.ports.values().next());
    if let Some(port) = first_port {
        env.insert("PORT".to_owned(), port.to_string());
    }
    env.insert("ORION_REPLICA".to_owned(), spec.id.clone());
    let argv = spec.service.expand_command(&env)?;
    if argv.first().is_none_or(|p| p.is_empty()) {
        return Err("the command is empty".to_owned());
    }
    let work = root.join("work").join(&spec.id);
    let cwd = match spec.service.working_dir.as_deref() {
        Some(dir) if Path::new(dir).is_absolute() => {
            if !Path::new(dir).is_dir() {
                return Err(format!("working directory \"{dir}\" does not exist"));
            }
            PathBuf::from(dir)
        }
        Some(dir) => work.join(dir),
        None => work,
    };
    // Folders under the replica's own work folder are ours to create.
    std::fs::create_dir_all(&cwd)
        .map_err(|e| format!("cannot create working directory {}: {e}", cwd.display()))?;
    Ok(Launch { argv, env, cwd })
}

fn spawn(root: &Path, spec: &ReplicaSpec, launch: &Launch) -> Result<Child, String> {
    let dir = logs::replica_dir(root, &spec.id);
    let stdout = logs::open_for_child(&dir, LogStream::Stdout).map_err(|e| e.to_string())?;
    let stderr = logs::open_for_child(&dir, LogStream::Stderr).map_err(|e| e.to_string())?;
    let (program, args) = launch
        .argv
        .split_first()
        .ok_or_else(|| "the command is empty".to_owned())?;
    Command::new(program)
        .args(args)
        .env_clear()
        .envs(&launch.env)
        .current_dir(&launch.cwd)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .process_group(0)
        .kill_on_drop(false)
        .spawn()
        .map_err(|e| describe_spawn_error(program, &e))
}

/// A running replica process: our child, or one adopted from a previous agent.
enum Proc {
    Child {
        child: Child,
        pid: u32,
    },
    Adopted {
        pid: u32,
        pgid: u32,
        start_time: u64,
    },
}

impl Proc {
    fn pid(&self) -> u32 {
        match self {
            Proc::Child { pid, .. } | Proc::Adopted { pid, .. } => *pid,
        }
    }

    fn pgid(&self) -> u32 {
        match self {
            Proc::Child { pid, .. } => *pid,
            Proc::Adopted { pgid, .. } => *pgid,
        }
    }

    /// Waits for the process to end (cancel-safe).
    async fn wait(&mut self, poll: Duration) -> ExitInfo {
        match self {
            Proc::Child { child, .. } => match child.wait().await {
                Ok(status) => status.into(),
                Err(e) => {
                    tracing::warn!(cause = %e, "cannot wait for replica process");
                    ExitInfo::UNKNOWN
                }
            },
            Proc::Adopted {
                pid, start_time, ..
            } => loop {
                if !state::is_same_process(*pid, *start_time) {
                    return ExitInfo::UNKNOWN;
                }
                tokio::time::sleep(poll).await;
            },
        }
    }

    /// SIGTERM to the group, SIGKILL after `grace`, reap, then sweep the group.
    async fn terminate(&mut self, grace: Duration, poll: Duration) -> ExitInfo {
        let (pid, pgid) = (self.pid(), self.pgid());
        signal_group(pgid, Signal::SIGTERM);
        signal_pid(pid, Signal::SIGTERM);
        let exit = match tokio::time::timeout(grace, self.wait(poll)).await {
            Ok(exit) => exit,
            Err(_) => {
                tracing::info!(pid, ?grace, "replica ignored SIGTERM; sending SIGKILL");
                signal_group(pgid, Signal::SIGKILL);
                signal_pid(pid, Signal::SIGKILL);
                self.wait(poll).await
            }
        };
        signal_group(pgid, Signal::SIGKILL);
        exit
    }
}

/// How one run of the process ended.
enum Outcome {
    /// Supervision stops; the process keeps running.
    Detached,
    Stop(Duration),
    Exited(ExitInfo),
    Unhealthy(String),
}

/// One replica's task.
struct ReplicaTask {
    shared: Arc<Shared>,
    spec: ReplicaSpec,
    status: Arc<Mutex<ReplicaStatus>>,
    stop: watch::Receiver<Option<Duration>>,
    detach: CancellationToken,
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
        if let Err(e) = state::remove(&self.shared.root, &self.spec.id) {
            tracing::warn!(cause = %e, "cannot remove replica record");
        }
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

    async fn run(self, adopted: Option<ReplicaRecord>, predecessor: Option<CancellationToken>) {
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
            let launch = prepare(&self.shared.root, &self.spec);
            let proc = match (adopted.take(), &launch) {
                (Some(rec), _) => Ok(Proc::Adopted {
                    pid: rec.pid,
                    pgid: rec.pgid,
                    start_time: rec.start_time,
                }),
                (None, Ok(launch)) => {
                    spawn(&self.shared.root, &self.spec, launch).and_then(|child| {
                        child
                            .id()
                            .map(|pid| Proc::Child { child, pid })
                            .ok_or_else(|| {
                                "the process exited before it could be tracked".to_owned()
                            })
                    })
                }
                (None, Err(reason)) => Err(reason.clone()),
            };
            let mut proc = match proc {
                Ok(p) => p,
                Err(reason) => {
                    tracing::warn!(cause = %reason, "cannot start replica");
                    attempt = attempt.saturating_add(1);
                    let delay = backoff_delay(&backoff, attempt, jitter());
                    self.update(|s| {
                        s.state = ReplicaState::Failed {
                            reason: reason.clone(),
                        };
                        s.pid = None;
                        s.reason = Some(format!("{reason}; retrying in {delay:?}"));
                    });
                    if !self.sleep_backoff(delay).await {
                        return;
                    }
                    restarts = restarts.saturating_add(1);
                    self.update(|s| s.restarts = restarts);
                    continue;
                }
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

            let outcome = self.supervise(&mut proc, launch.ok()).await;
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
                        s.reason = Some(format!(
                            "not restarted (restart policy {:?})",
                            self.spec.service.restart.policy
                        ));
                    }
                });
                if self.stopped_or_detached().await.is_some() {
                    self.mark_stopped();
                }
                return;
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
            restarts = restarts.saturating_add(1);
            self.update(|s| s.restarts = restarts);
        }
    }

    /// Waits out a backoff delay; false if the task must end (stopped or detached).
    async fn sleep_backoff(&self, delay: Duration) -> bool {
        tokio::select! {
            _ = tokio::time::sleep(delay) => true,
            stop = self.stopped_or_detached() => {
                if stop.is_some() {
                    self.mark_stopped();
                }
                false
            }
        }
    }

    fn save_record(&self, proc: &Proc, restarts: u32) {
        let pid = proc.pid();
        let Some(start_time) = state::start_time(pid) else {
            return; // already gone; supervise() will see the exit
        };
        let record = ReplicaRecord {
            pid,
            pgid: proc.pgid(),
            start_time,
            spec_hash: state::spec_hash(&self.spec),
            started_at_unix_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            restarts,
            spec: self.spec.clone(),
        };
        if let Err(e) = state::save(&self.shared.root, &record) {
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
