//! Launching a replica's process and handling it afterwards: its environment,
//! argv and working directory ([`prepare`]), the spawn into its own process group
//! with its output on the log files ([`spawn`]), waiting for and stopping a child or
//! an adopted process ([`Proc`]), signals to its group, and what `/proc` says of a pid.
//!
//! Environment: a few variables inherited from the agent (`PATH`, `HOME`, `USER`,
//! `LOGNAME`, `LANG`, `LC_ALL`, `TZ`, `TMPDIR` — nothing else, so the agent's own
//! secrets never reach workloads), then the service's `env`, `ORION_PORT_<NAME>` per
//! allocated port (the first port of the service's `ports` also as `PORT`) and
//! `ORION_REPLICA=<id>`. `${NAME}` in the command is expanded from that environment.
//! Working directory: `root/work/<id>` by default (created); a relative `working_dir`
//! is taken under it; an absolute one must exist. stdin is `/dev/null`.

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;
use orion_api::spec::service::ServiceSpec;
use tokio::process::{Child, Command};

use crate::error::LaunchError;
use crate::logs::{self, LogStream};
use crate::replica::ReplicaSpec;

/// Agent variables a replica inherits; everything else of the agent's environment is withheld.
const INHERITED_ENV: &[&str] = &[
    "PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "TZ", "TMPDIR",
];

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

pub fn signal_pid(pid: u32, signal: Signal) {
    if let Ok(raw) = i32::try_from(pid) {
        if raw > 1 {
            let _ = kill(Pid::from_raw(raw), signal);
        }
    }
}

/// The agent's variables a replica (or a hook run on the node) inherits.
pub(crate) fn inherited_env() -> BTreeMap<String, String> {
    INHERITED_ENV
        .iter()
        .filter_map(|k| std::env::var(k).ok().map(|v| ((*k).to_owned(), v)))
        .collect()
}

/// Everything needed to spawn one replica (and run its exec probes).
pub(crate) struct Launch {
    pub argv: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub cwd: PathBuf,
}

/// The environment, argv and working directory of a replica. Errors are status reasons.
pub(crate) fn prepare(root: &Path, spec: &ReplicaSpec) -> Result<Launch, LaunchError> {
    let mut env = inherited_env();
    env.extend(spec.service.env.clone());
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
    if !spec.variables.missing.is_empty() {
        return Err(LaunchError::MissingVariables(
            spec.variables.missing.clone(),
        ));
    }
    // Expanded before the variables' values join the environment: a value (a
    // secret, perhaps) never reaches the argv, which `ps` shows to everyone.
    let argv = spec
        .service
        .expand_command(&env)
        .map_err(LaunchError::Expand)?;
    env.extend(
        spec.variables
            .values
            .iter()
            .map(|(k, v)| (k.clone(), v.clone())),
    );
    if argv.first().is_none_or(|p| p.is_empty()) {
        return Err(LaunchError::EmptyCommand);
    }
    let work = root.join("work").join(&spec.id);
    let cwd = match spec.service.working_dir.as_deref() {
        Some(dir) if Path::new(dir).is_absolute() => {
            if !Path::new(dir).is_dir() {
                return Err(LaunchError::NoWorkingDir(dir.to_owned()));
            }
            PathBuf::from(dir)
        }
        Some(dir) => work.join(dir),
        None => work,
    };
    // Folders under the replica's own work folder are ours to create.
    if let Err(source) = std::fs::create_dir_all(&cwd) {
        return Err(LaunchError::WorkingDir { path: cwd, source });
    }
    Ok(Launch { argv, env, cwd })
}

pub(crate) fn spawn(
    root: &Path,
    spec: &ReplicaSpec,
    launch: &Launch,
) -> Result<Child, LaunchError> {
    let dir = logs::replica_dir(root, &spec.id);
    let stdout = logs::open_for_child(&dir, LogStream::Stdout)?;
    let stderr = logs::open_for_child(&dir, LogStream::Stderr)?;
    let (program, args) = launch.argv.split_first().ok_or(LaunchError::EmptyCommand)?;
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
        .map_err(|e| LaunchError::spawn(program, e))
}

/// A running replica process: our child, or one adopted from a previous agent.
pub(crate) enum Proc {
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
    pub fn pid(&self) -> u32 {
        match self {
            Proc::Child { pid, .. } | Proc::Adopted { pid, .. } => *pid,
        }
    }

    pub fn pgid(&self) -> u32 {
        match self {
            Proc::Child { pid, .. } => *pid,
            Proc::Adopted { pgid, .. } => *pgid,
        }
    }

    /// Waits for the process to end (cancel-safe).
    pub async fn wait(&mut self, poll: Duration) -> ExitInfo {
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
                if !is_same_process(*pid, *start_time) {
                    return ExitInfo::UNKNOWN;
                }
                tokio::time::sleep(poll).await;
            },
        }
    }

    /// SIGTERM to the group, SIGKILL after `grace`, reap, then sweep the group.
    pub async fn terminate(&mut self, grace: Duration, poll: Duration) -> ExitInfo {
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

/// `(state, start_time)` from `/proc/<pid>/stat`, or `None` if there is no such process.
pub fn proc_stat(pid: u32) -> Option<(char, u64)> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) state ...`: comm may hold spaces and parentheses, so split after the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let state = fields.first()?.chars().next()?;
    // Field 22 overall; field 3 (state) is index 0 here.
    let start = fields.get(19)?.parse().ok()?;
    Some((state, start))
}

/// The start time of a live (non-zombie) process.
pub fn start_time(pid: u32) -> Option<u64> {
    match proc_stat(pid)? {
        ('Z' | 'X', _) => None,
        (_, start) => Some(start),
    }
}

/// Whether `pid` is alive, not a zombie, and started at `start_time`.
pub fn is_same_process(pid: u32, start_time: u64) -> bool {
    self::start_time(pid) == Some(start_time)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_is_alive_with_stable_start_time() {
        let me = std::process::id();
        let start = start_time(me);
        assert!(start.is_some());
        assert_eq!(start, start_time(me));
        assert!(is_same_process(me, start.unwrap_or_default()));
        assert!(!is_same_process(me, start.unwrap_or_default() + 1));
    }
}
