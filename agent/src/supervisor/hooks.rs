//! Commands the agent runs for lifecycle hooks: a replica's `before_start` (with the
//! replica's environment and working directory, before each start) and a command
//! the leader asks to run on this node (an `after_deploy` or `on_failure` hook with
//! `node`, sent as an exec without a replica).
//!
//! Each runs in its own process group, killed whole on timeout or when the caller
//! gives up (a replica stopped while its hook runs). Output is bounded: stdout and
//! stderr of a `before_start` hook go to the replica's log files, and the last
//! [`KEEP`] bytes of stderr are kept for the failure reason.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::Signal;
use orion_api::spec::expand::expand;
use orion_api::spec::CommandHook;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;

use crate::logs::{self, LogStream};
use crate::replica::ExecOutput;
use crate::supervisor::process::{signal_group, Launch};

/// How many bytes of a hook's stdout and stderr are kept in memory.
const KEEP: usize = 16 << 10;

/// Kills the hook's process group when dropped (timeout, or the caller went away).
struct Group(u32);

impl Drop for Group {
    fn drop(&mut self) {
        signal_group(self.0, Signal::SIGKILL);
    }
}

/// Reads `from` to its end, keeping the last [`KEEP`] bytes and copying each chunk
/// to `copy` when given.
async fn drain(mut from: impl AsyncRead + Unpin, mut copy: Option<tokio::fs::File>) -> Vec<u8> {
    let mut kept = Vec::new();
    let mut buf = vec![0u8; 8 << 10];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if let Some(file) = copy.as_mut() {
            if file.write_all(&buf[..n]).await.is_err() {
                copy = None;
            }
        }
        kept.extend_from_slice(&buf[..n]);
        if kept.len() > KEEP {
            kept.drain(..kept.len() - KEEP);
        }
    }
    kept
}

/// Runs `argv` with exactly `env` in `cwd`, for at most `timeout`.
async fn run(
    argv: &[String],
    env: &BTreeMap<String, String>,
    cwd: &Path,
    timeout: Duration,
    log_dir: Option<&Path>,
) -> Result<ExecOutput, String> {
    let (program, args) = argv
        .split_first()
        .ok_or_else(|| "the command is empty".to_string())?;
    let open = |stream| {
        log_dir
            .and_then(|dir| logs::open_for_child(dir, stream).ok())
            .map(tokio::fs::File::from_std)
    };
    let (out_copy, err_copy) = (open(LogStream::Stdout), open(LogStream::Stderr));
    let mut child = Command::new(program)
        .args(args)
        .env_clear()
        .envs(env)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot run {program:?}: {e}"))?;
    let _group = child.id().map(Group);
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let work = async {
        let out = async {
            match stdout {
                Some(s) => drain(s, out_copy).await,
                None => Vec::new(),
            }
        };
        let err = async {
            match stderr {
                Some(s) => drain(s, err_copy).await,
                None => Vec::new(),
            }
        };
        let (out, err, status) = tokio::join!(out, err, child.wait());
        (out, err, status)
    };
    let (out, err, status) = tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| format!("timed out after {timeout:?}"))?;
    let status = status.map_err(|e| format!("cannot wait for {program:?}: {e}"))?;
    use std::os::unix::process::ExitStatusExt;
    Ok(ExecOutput {
        exit_code: status.code(),
        signal: status.signal(),
        stdout: String::from_utf8_lossy(&out).into_owned(),
        stderr: String::from_utf8_lossy(&err).into_owned(),
    })
}

/// The last non-empty line of `text`, at most 200 characters.
fn last_line(text: &str) -> Option<String> {
    let line = text.lines().rev().map(str::trim).find(|l| !l.is_empty())?;
    Some(
        line.chars()
            .rev()
            .take(200)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect(),
    )
}

/// Runs a replica's `before_start` hook with its launch environment, working
/// directory and log files. `Err` is the replica's failure reason:
/// `before_start hook failed: exit 3: <last stderr line>`.
pub(crate) async fn before_start(
    hook: &CommandHook,
    launch: &Launch,
    log_dir: &Path,
) -> Result<(), String> {
    let fail = |why: String| format!("before_start hook failed: {why}");
    let argv = hook
        .command
        .iter()
        .map(|part| expand(part, &launch.env).map_err(|e| fail(e.to_string())))
        .collect::<Result<Vec<_>, _>>()?;
    let timeout = Duration::from_millis(hook.timeout_ms.max(1));
    let out = run(&argv, &launch.env, &launch.cwd, timeout, Some(log_dir))
        .await
        .map_err(fail)?;
    let status = match (out.exit_code, out.signal) {
        (Some(0), _) => return Ok(()),
        (Some(code), _) => format!("exit {code}"),
        (None, Some(sig)) => format!("killed by signal {sig}"),
        (None, None) => "exit status unknown".to_string(),
    };
    Err(fail(match last_line(&out.stderr) {
        Some(line) => format!("{status}: {line}"),
        None => status,
    }))
}

/// Runs a command the leader sent for this node (a lifecycle hook with `node`): in
/// `dir` (created), with the inherited variables a replica gets and `env`.
pub(crate) async fn on_node(
    dir: &Path,
    inherited: BTreeMap<String, String>,
    command: &[String],
    env: &BTreeMap<String, String>,
    timeout: Duration,
) -> Result<ExecOutput, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let mut all = inherited;
    all.extend(env.clone());
    run(command, &all, dir, timeout, None).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reason_names_the_last_stderr_line() {
        assert_eq!(last_line("a\nlast one\n\n"), Some("last one".into()));
        assert_eq!(last_line("  \n"), None);
    }
}
