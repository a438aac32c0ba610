//! One child process with its output appended to a log file: how it is wrapped
//! ([`Wrapper`]), whether it still runs, SIGTERM with a deadline, `kill -9`, and
//! kill-on-drop so a failing caller leaves nothing behind.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::time::Instant;

use crate::error::{io, LaunchError, Result};

/// How a process is started, beyond what the launcher gives it: a command it runs
/// under (`ip netns exec NS`), environment (`ORION_LOG`, libfaketime's
/// `LD_PRELOAD`) and extra arguments. The default runs the program directly.
#[derive(Debug, Clone, Default)]
pub struct Wrapper {
    /// A program and its arguments that the real program is appended to.
    pub prefix: Vec<OsString>,
    pub env: Vec<(OsString, OsString)>,
    /// Appended after the launcher's own arguments.
    pub args: Vec<OsString>,
}

impl Wrapper {
    /// Runs the program under `prefix` (the program's path is its last argument).
    pub fn prefix<I, S>(mut self, prefix: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.prefix = prefix.into_iter().map(|s| s.as_ref().to_owned()).collect();
        self
    }

    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.env
            .push((key.as_ref().to_owned(), value.as_ref().to_owned()));
        self
    }

    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    /// The command that runs `program args…` under this wrapper, with `env` added.
    fn command(&self, program: &Path, args: &[OsString], env: &[(String, String)]) -> Command {
        let mut cmd = match self.prefix.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(program);
                c
            }
            None => Command::new(program),
        };
        cmd.args(args)
            .args(&self.args)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd
    }

    /// The program that is actually executed.
    fn executed(&self, program: &Path) -> PathBuf {
        self.prefix
            .first()
            .map_or_else(|| program.to_path_buf(), PathBuf::from)
    }
}

/// A running (or exited, not yet forgotten) child process. Dropping it kills it.
pub struct Process {
    what: String,
    pid: u32,
    log: PathBuf,
    child: Mutex<Child>,
    exit: Mutex<Option<ExitStatus>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Process {
    /// Starts `program args` under `wrapper` with stdin closed and stdout and stderr
    /// appended to `log`. `what` names the process in errors (`peer 2`).
    pub fn spawn(
        what: &str,
        program: &Path,
        args: &[OsString],
        env: &[(String, String)],
        wrapper: &Wrapper,
        log: &Path,
    ) -> Result<Self> {
        let out = File::options()
            .create(true)
            .append(true)
            .open(log)
            .map_err(io(log))?;
        let err = out.try_clone().map_err(io(log))?;
        let child = wrapper
            .command(program, args, env)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|source| LaunchError::Spawn {
                what: what.to_string(),
                program: wrapper.executed(program),
                source,
            })?;
        Ok(Process {
            what: what.to_string(),
            pid: child.id(),
            log: log.to_path_buf(),
            child: Mutex::new(child),
            exit: Mutex::new(None),
        })
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    pub fn log(&self) -> &Path {
        &self.log
    }

    pub fn what(&self) -> &str {
        &self.what
    }

    /// The exit status, once the process has exited (it is reaped here).
    pub fn exited(&self) -> Option<ExitStatus> {
        let mut exit = lock(&self.exit);
        if exit.is_none() {
            if let Ok(Some(status)) = lock(&self.child).try_wait() {
                *exit = Some(status);
            }
        }
        *exit
    }

    pub fn is_running(&self) -> bool {
        self.exited().is_none()
    }

    /// Fails with [`LaunchError::Exited`] (naming the status and the tail of the
    /// log) if the process has exited.
    pub fn check_alive(&self) -> Result<()> {
        match self.exited() {
            None => Ok(()),
            Some(status) => Err(LaunchError::Exited {
                what: self.what.clone(),
                pid: self.pid,
                status,
                log: self.log.clone(),
                tail: log_tail(&self.log, 20),
            }),
        }
    }

    /// Sends `signal` unless the process has exited already.
    pub fn signal(&self, signal: Signal) {
        if self.exited().is_some() {
            return;
        }
        if let Ok(pid) = i32::try_from(self.pid) {
            let _ = kill(Pid::from_raw(pid), signal);
        }
    }

    /// `kill -9` (works on a paused process too), and reap it.
    pub fn kill(self) {
        drop(self);
    }

    /// SIGTERM, then waits up to `grace` for the exit; after that, SIGKILL and
    /// [`LaunchError::StopTimeout`].
    pub async fn stop(self, grace: Duration) -> Result<ExitStatus> {
        self.signal(Signal::SIGTERM);
        self.wait(grace).await
    }

    /// Waits up to `grace` for an exit already asked for; then SIGKILL.
    pub async fn wait(self, grace: Duration) -> Result<ExitStatus> {
        let deadline = Instant::now() + grace;
        loop {
            if let Some(status) = self.exited() {
                return Ok(status);
            }
            if Instant::now() > deadline {
                return Err(LaunchError::StopTimeout {
                    what: self.what.clone(),
                    pid: self.pid,
                    after: grace,
                });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if lock(&self.exit).is_some() {
            return;
        }
        let mut child = lock(&self.child);
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// SIGTERM to all of `processes` at once, then one deadline for all of them;
/// those still running after `grace` are killed. Returns each one's outcome.
pub async fn stop_all(processes: Vec<Process>, grace: Duration) -> Vec<Result<ExitStatus>> {
    for p in &processes {
        p.signal(Signal::SIGTERM);
    }
    let deadline = Instant::now() + grace;
    let mut out = Vec::new();
    for p in processes {
        let left = deadline.saturating_duration_since(Instant::now());
        out.push(p.wait(left).await);
    }
    out
}

/// The last `n` lines of `path` (empty if it cannot be read).
pub fn log_tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().rev().take(n).collect();
    lines.into_iter().rev().collect::<Vec<_>>().join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(dir: &Path, script: &str, wrapper: &Wrapper) -> Result<Process> {
        Process::spawn(
            "test process",
            Path::new("sh"),
            &["-c".into(), script.into()],
            &[("FROM_LAUNCHER".into(), "1".into())],
            wrapper,
            &dir.join("p.log"),
        )
    }

    #[tokio::test]
    async fn an_early_exit_names_the_status_and_the_log_tail() {
        let dir = tempfile::tempdir().expect("temp dir");
        let p = sh(
            dir.path(),
            "echo starting; echo broken >&2; exit 3",
            &Wrapper::default(),
        )
        .expect("spawn");
        let err = p.wait(Duration::from_secs(10)).await.map(|s| s.code());
        assert_eq!(err.ok().flatten(), Some(3));
        let p = sh(dir.path(), "exit 4", &Wrapper::default()).expect("spawn");
        while p.is_running() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        match p.check_alive() {
            Err(LaunchError::Exited { status, tail, .. }) => {
                assert_eq!(status.code(), Some(4));
                assert!(
                    tail.contains("starting") && tail.contains("broken"),
                    "{tail}"
                );
            }
            other => panic!("expected an exit, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn the_wrapper_prefixes_the_program_and_adds_env_and_args() {
        let dir = tempfile::tempdir().expect("temp dir");
        // `env` runs the program with the wrapper's variable, as `ip netns exec` would.
        let wrapper = Wrapper::default()
            .prefix(["env", "WRAPPED=yes"])
            .env("ALSO", "set")
            .arg("extra");
        let p = sh(
            dir.path(),
            "echo \"$WRAPPED $ALSO $FROM_LAUNCHER $0\"",
            &wrapper,
        )
        .expect("spawn");
        let status = p.wait(Duration::from_secs(10)).await.expect("exit");
        assert!(status.success());
        let log = std::fs::read_to_string(dir.path().join("p.log")).expect("log");
        assert_eq!(log.trim(), "yes set 1 extra");
    }

    #[tokio::test]
    async fn stop_sends_sigterm_and_kills_after_the_grace_period() {
        let dir = tempfile::tempdir().expect("temp dir");
        let p = sh(dir.path(), "exec sleep 30", &Wrapper::default()).expect("spawn");
        let status = p.stop(Duration::from_secs(10)).await.expect("stopped");
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(15)
        );
        let p = sh(dir.path(), "trap '' TERM; sleep 30", &Wrapper::default()).expect("spawn");
        let pid = p.pid();
        tokio::time::sleep(Duration::from_millis(200)).await;
        match p.stop(Duration::from_millis(300)).await {
            Err(LaunchError::StopTimeout { pid: p, .. }) => assert_eq!(p, pid),
            other => panic!("expected a timeout, got {other:?}"),
        }
        // Killed on the way out: signal 0 finds no such process.
        let gone = kill(Pid::from_raw(pid as i32), None).is_err();
        assert!(gone, "pid {pid} still exists");
    }

    #[test]
    fn a_missing_program_is_a_spawn_error_naming_it() {
        let dir = tempfile::tempdir().expect("temp dir");
        let r = Process::spawn(
            "peer 1",
            Path::new("/no/such/orion"),
            &[],
            &[],
            &Wrapper::default(),
            &dir.path().join("p.log"),
        );
        match r {
            Err(e @ LaunchError::Spawn { .. }) => {
                assert!(e.to_string().contains("/no/such/orion"), "{e}")
            }
            Err(e) => panic!("expected a spawn error, got {e}"),
            Ok(_) => panic!("started a missing program"),
        }
    }
}
