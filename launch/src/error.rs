//! What starting, waiting on and stopping a cluster can fail with.

use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

/// Every error of this crate. Each names what it was doing and where to look.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// The process could not be started at all.
    #[error("cannot start {what}: {}: {source}", program.display())]
    Spawn {
        /// `peer 2`, `agent n1`.
        what: String,
        /// The program that was executed (the wrapper's, when there is a prefix).
        program: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A process exited while it was expected to run (during start-up or a wait).
    #[error("{what} (pid {pid}) exited ({status}); last lines of {}:\n{tail}", log.display())]
    Exited {
        what: String,
        pid: u32,
        status: ExitStatus,
        log: PathBuf,
        tail: String,
    },
    /// A readiness wait ran out of time.
    #[error("timed out after {after:?} waiting for {what}{}; logs in {}", last.as_ref().map(|l| format!(" (last: {l})")).unwrap_or_default(), dir.display())]
    Timeout {
        /// What was awaited: `peer 2 to write listen.json`, `voters [1, 2, 3]`.
        what: String,
        after: Duration,
        /// The last failure seen while waiting, if any.
        last: Option<String>,
        /// Where the logs are.
        dir: PathBuf,
    },
    /// A REST call to the cluster failed.
    #[error("{what}: {source}")]
    Http {
        what: String,
        #[source]
        source: orion_client::ClientError,
    },
    /// A REST call got no answer in time.
    #[error("{what}: no answer within {after:?}")]
    HttpTimeout { what: String, after: Duration },
    /// Reading or writing a file of the cluster failed.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A process did not stop within its grace period after SIGTERM (it was killed).
    #[error("{what} (pid {pid}) did not stop within {after:?} of SIGTERM; it was killed")]
    StopTimeout {
        what: String,
        pid: u32,
        after: Duration,
    },
    /// The caller named a peer or agent the cluster does not have, or asked for
    /// something its state does not allow (restarting a running peer).
    #[error("{0}")]
    Usage(String),
}

pub type Result<T, E = LaunchError> = std::result::Result<T, E>;

pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> LaunchError {
    let path = path.into();
    move |source| LaunchError::Io { path, source }
}
