//! Health checks: one probe ([`Probe`]) run every `interval`, each bounded by
//! `timeout`, first after `initial_delay`. Until the first passing probe, failures
//! within `startup_grace` of the start do not count: a slow start is not a failure.
//!
//! - `http`: `GET path` on `127.0.0.1:<port>` answers 2xx or 3xx. A tiny HTTP/1.1
//!   client (status line only, `Connection: close`) — no HTTP library needed.
//! - `tcp`: `127.0.0.1:<port>` accepts a connection.
//! - `exec`: the command (expanded and run with the replica's environment and working
//!   directory, in its own process group) exits 0; on timeout its group is killed.
//!
//! [`Tracker`] counts consecutive results: `successes` in a row → healthy,
//! `failures` in a row → unhealthy (the supervisor then restarts the replica).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use orion_api::spec::service::{HealthCheck, Probe};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::error::LaunchError;
use crate::supervisor::process::{signal_group, ExitInfo};

/// Why one probe failed; the message becomes the replica's reason when the check
/// fails often enough.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("port `{0}` was not allocated to this replica")]
    NoPort(String),
    #[error("connect to 127.0.0.1:{port}: {source}")]
    Connect {
        port: u16,
        #[source]
        source: std::io::Error,
    },
    #[error("send request: {0}")]
    Send(#[source] std::io::Error),
    #[error("read response: {0}")]
    Read(#[source] std::io::Error),
    #[error("bad status line `{0}`")]
    StatusLine(String),
    #[error("GET {path} answered {status}")]
    Status { path: String, status: u16 },
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// The exec probe's command could not be started.
    #[error(transparent)]
    Launch(LaunchError),
    #[error("wait for `{program}`: {source}")]
    Wait {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{command}` {exit}")]
    Failed { command: String, exit: ExitInfo },
}

/// A change of health worth reporting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    Healthy,
    Unhealthy,
}

/// Counts consecutive probe results against the check's thresholds.
#[derive(Debug, Clone)]
pub struct Tracker {
    failures_needed: u32,
    successes_needed: u32,
    fails: u32,
    oks: u32,
    healthy: bool,
}

impl Tracker {
    pub fn new(check: &HealthCheck) -> Self {
        Tracker {
            failures_needed: check.failures.max(1),
            successes_needed: check.successes.max(1),
            fails: 0,
            oks: 0,
            healthy: false,
        }
    }

    /// Records one result; says when the replica became healthy or unhealthy.
    /// `Unhealthy` is reported every time the failure threshold is reached.
    pub fn record(&mut self, ok: bool) -> Option<Transition> {
        if ok {
            self.fails = 0;
            self.oks = self.oks.saturating_add(1);
            if !self.healthy && self.oks >= self.successes_needed {
                self.healthy = true;
                return Some(Transition::Healthy);
            }
        } else {
            self.oks = 0;
            self.fails = self.fails.saturating_add(1);
            if self.fails >= self.failures_needed {
                self.healthy = false;
                return Some(Transition::Unhealthy);
            }
        }
        None
    }
}

/// Where and how a probe runs for one replica.
pub struct Target<'a> {
    pub ports: &'a BTreeMap<String, u16>,
    /// The replica's full environment, for `exec` probes.
    pub env: &'a BTreeMap<String, String>,
    pub cwd: &'a Path,
}

/// Runs the check until the replica is unhealthy; returns the last failure's reason.
/// Calls `on_healthy` each time it becomes healthy. Never returns while healthy, so
/// the caller races it against the process exiting.
pub async fn watch(
    check: &HealthCheck,
    target: Target<'_>,
    mut on_healthy: impl FnMut(),
) -> String {
    let started = tokio::time::Instant::now();
    let grace = Duration::from_millis(check.startup_grace_ms);
    tokio::time::sleep(Duration::from_millis(check.initial_delay_ms)).await;
    let mut tracker = Tracker::new(check);
    let mut passed_once = false;
    let mut ticks = tokio::time::interval(Duration::from_millis(check.interval_ms.max(1)));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let timeout = Duration::from_millis(check.timeout_ms.max(1));
    loop {
        ticks.tick().await;
        let result = match tokio::time::timeout(timeout, probe(&check.probe, &target)).await {
            Ok(r) => r,
            Err(_) => Err(ProbeError::Timeout(timeout)),
        };
        match result {
            Ok(()) => {
                passed_once = true;
                if tracker.record(true) == Some(Transition::Healthy) {
                    on_healthy();
                }
            }
            Err(e) if !passed_once && started.elapsed() < grace => {
                tracing::debug!(cause = %e, "health probe failed while the replica starts");
            }
            Err(e) => {
                if tracker.record(false) == Some(Transition::Unhealthy) {
                    return format!("health check failed {} times in a row: {e}", check.failures);
                }
                tracing::debug!(cause = %e, "health probe failed");
            }
        }
    }
}

/// One probe, without the timeout (the caller applies it).
pub async fn probe(probe: &Probe, target: &Target<'_>) -> Result<(), ProbeError> {
    match probe {
        Probe::Http { port, path } => http_get(port_of(target, port)?, path).await,
        Probe::Tcp { port } => {
            let port = port_of(target, port)?;
            TcpStream::connect(("127.0.0.1", port))
                .await
                .map(drop)
                .map_err(|source| ProbeError::Connect { port, source })
        }
        Probe::Exec { command } => exec(command, target).await,
    }
}

fn port_of(target: &Target<'_>, name: &str) -> Result<u16, ProbeError> {
    target
        .ports
        .get(name)
        .copied()
        .ok_or_else(|| ProbeError::NoPort(name.to_owned()))
}

/// `GET path` on 127.0.0.1:port; Ok for a 2xx or 3xx status.
pub async fn http_get(port: u16, path: &str) -> Result<(), ProbeError> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|source| ProbeError::Connect { port, source })?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: orion-agent\r\nAccept: */*\r\nConnection: close\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(ProbeError::Send)?;
    // Only the status line matters; read until it is complete (bounded).
    let mut head = Vec::with_capacity(256);
    let mut buf = [0u8; 256];
    while !head.windows(2).any(|w| w == b"\r\n") && head.len() < 4096 {
        let n = stream.read(&mut buf).await.map_err(ProbeError::Read)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line_end = head
        .windows(2)
        .position(|w| w == b"\r\n")
        .unwrap_or(head.len());
    let line = String::from_utf8_lossy(&head[..line_end]);
    let status: u16 = match line.split_whitespace().collect::<Vec<_>>().as_slice() {
        [version, code, ..] if version.starts_with("HTTP/1.") => code
            .parse()
            .map_err(|_| ProbeError::StatusLine(line.to_string()))?,
        _ => return Err(ProbeError::StatusLine(line.to_string())),
    };
    if (200..400).contains(&status) {
        Ok(())
    } else {
        Err(ProbeError::Status {
            path: path.to_owned(),
            status,
        })
    }
}

async fn exec(command: &[String], target: &Target<'_>) -> Result<(), ProbeError> {
    let argv = command
        .iter()
        .map(|part| orion_api::spec::expand::expand(part, target.env))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ProbeError::Launch(LaunchError::Expand(e)))?;
    let Some((program, args)) = argv.split_first() else {
        return Err(ProbeError::Launch(LaunchError::EmptyCommand));
    };
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .env_clear()
        .envs(target.env)
        .current_dir(target.cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| ProbeError::Launch(LaunchError::spawn(program, e)))?;
    // If the caller's timeout drops this future, kill_on_drop kills the leader;
    // the guard kills the rest of its group.
    let _group = GroupGuard(child.id());
    let status = child.wait().await.map_err(|source| ProbeError::Wait {
        program: program.clone(),
        source,
    })?;
    if status.success() {
        Ok(())
    } else {
        Err(ProbeError::Failed {
            command: argv.join(" "),
            exit: ExitInfo::from(status),
        })
    }
}

/// SIGKILLs a process group when dropped (for probe commands that leave children).
struct GroupGuard(Option<u32>);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Some(pgid) = self.0 {
            signal_group(pgid, nix::sys::signal::Signal::SIGKILL);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(failures: u32, successes: u32) -> HealthCheck {
        HealthCheck {
            probe: Probe::Tcp { port: "p".into() },
            interval_ms: 10,
            timeout_ms: 10,
            failures,
            successes,
            initial_delay_ms: 0,
            startup_grace_ms: 0,
        }
    }

    #[test]
    fn tracker_needs_consecutive_results() {
        let mut t = Tracker::new(&check(2, 2));
        assert_eq!(t.record(true), None);
        assert_eq!(t.record(false), None);
        assert_eq!(t.record(true), None);
        assert_eq!(t.record(true), Some(Transition::Healthy));
        assert_eq!(t.record(true), None);
        assert_eq!(t.record(false), None);
        assert_eq!(t.record(true), None);
        assert_eq!(t.record(false), None);
        assert_eq!(t.record(false), Some(Transition::Unhealthy));
    }

    /// A closed loopback port: every TCP probe fails at once.
    fn closed_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("bind a port to close")
    }

    #[tokio::test]
    async fn failures_during_the_startup_grace_do_not_count() {
        let mut check = check(2, 1);
        check.interval_ms = 100;
        check.startup_grace_ms = 600;
        let ports = BTreeMap::from([("p".to_string(), closed_port())]);
        let env = BTreeMap::new();
        let target = Target {
            ports: &ports,
            env: &env,
            cwd: Path::new("/"),
        };
        let start = tokio::time::Instant::now();
        let reason = watch(&check, target, || {}).await;
        let took = start.elapsed();
        assert!(reason.contains("2 times in a row"), "{reason}");
        assert!(
            took >= Duration::from_millis(700),
            "unhealthy after {took:?}, inside the 600ms grace plus two failures"
        );
    }

    #[tokio::test]
    async fn http_client_reads_status() {
        use tokio::net::TcpListener;
        let Ok(listener) = TcpListener::bind("127.0.0.1:0").await else {
            panic!("bind");
        };
        let port = listener.local_addr().map(|a| a.port()).unwrap_or_default();
        let server = tokio::spawn(async move {
            for answer in [
                "HTTP/1.1 204 No Content\r\n\r\n",
                "HTTP/1.0 503 Busy\r\n\r\n",
            ] {
                if let Ok((mut s, _)) = listener.accept().await {
                    let mut buf = [0u8; 1024];
                    let _ = s.read(&mut buf).await;
                    let _ = s.write_all(answer.as_bytes()).await;
                }
            }
        });
        let ok = http_get(port, "/ok").await;
        assert!(ok.is_ok(), "{ok:?}");
        let err = http_get(port, "/busy").await;
        assert!(
            matches!(&err, Err(e) if e.to_string().contains("503")),
            "{err:?}"
        );
        let _ = server.await;
    }
}
