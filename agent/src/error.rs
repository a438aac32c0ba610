//! The agent library's errors, one enum per thing that can fail.
//!
//! - [`Error`]: the agent's own files (records, logs, ports), with the path.
//! - [`LaunchError`]: a replica's process could not be started. Not an error of the
//!   agent: it becomes the replica's `Failed { reason }` state and is retried.
//! - [`ExecError`]: an `orion exec` could not run its command.
//! - [`RestartError`]: an `orion restart` did not bring the replica up again.
//! - [`LinkError`]: one attempt to reach or keep a gateway failed (the session
//!   retries; it is logged, never returned).
//! - [`SessionError`]: why `session::run` gave up: what only an operator can
//!   fix (credentials, a refused join token, the data directory, the TLS setup).

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use orion_api::agent_proto::FrameError;

/// Failures of the agent's own file handling.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{}: {source}", path.display())]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Attaches the path to an I/O error.
pub(crate) fn io_at(path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Error {
    let path = path.into();
    move |source| Error::Io { path, source }
}

/// Why a replica's process (or an exec in its environment) could not be started.
/// The message is the replica's status reason.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error("command \"{program}\" not found")]
    NotFound { program: String },
    #[error("command \"{program}\" is not executable (permission denied)")]
    NotExecutable { program: String },
    #[error("cannot start \"{program}\": {source}")]
    Spawn {
        program: String,
        #[source]
        source: io::Error,
    },
    /// `${NAME}` in the command names no variable (the message says which).
    #[error("{0}")]
    Expand(orion_api::Invalid),
    #[error("the command is empty")]
    EmptyCommand,
    #[error("working directory \"{0}\" does not exist")]
    NoWorkingDir(String),
    #[error("cannot create working directory {}: {source}", path.display())]
    WorkingDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The replica's log files cannot be opened.
    #[error(transparent)]
    Logs(#[from] Error),
    #[error("the process exited before it could be tracked")]
    Untracked,
    /// Variables the env refers to do not exist (yet): the replica waits for them.
    #[error("waiting for {}: referenced by the env, not found", list_variables(.0))]
    MissingVariables(Vec<String>),
}

fn list_variables(paths: &[String]) -> String {
    let named: Vec<String> = paths.iter().map(|p| format!("variable `{p}`")).collect();
    named.join(", ")
}

impl LaunchError {
    /// A spawn error of `program`, by what the OS said.
    pub fn spawn(program: &str, source: io::Error) -> Self {
        let program = program.to_owned();
        match source.kind() {
            io::ErrorKind::NotFound => LaunchError::NotFound { program },
            io::ErrorKind::PermissionDenied => LaunchError::NotExecutable { program },
            _ => LaunchError::Spawn { program, source },
        }
    }
}

/// Why an exec in a replica's environment produced no result.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("replica {0:?} does not run on this node")]
    NotHere(String),
    #[error(transparent)]
    Launch(#[from] LaunchError),
    #[error("the command did not finish within {0:?}")]
    Timeout(Duration),
    #[error("waiting for the command: {0}")]
    Wait(#[source] io::Error),
    /// A hook command run on the node (no replica) could not run or finish.
    #[error("{0}")]
    Hook(String),
}

/// A restart asked for by the leader (`orion restart`) did not bring the replica up.
#[derive(Debug, thiserror::Error)]
pub enum RestartError {
    #[error("replica {0:?} does not run on this node")]
    NotHere(String),
    #[error("replica {0:?} was stopped or removed while restarting")]
    Gone(String),
    #[error("replica {id:?} did not start again: {reason}")]
    Failed { id: String, reason: String },
    #[error("replica {id:?} did not run again within {timeout:?}")]
    Timeout { id: String, timeout: Duration },
}

/// One attempt to reach a gateway, or a session with it, failed.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("{addr} does not resolve: {source}")]
    Resolve {
        addr: String,
        #[source]
        source: io::Error,
    },
    #[error("{addr} resolves to no address")]
    NoAddress { addr: String },
    #[error("cannot open a QUIC endpoint: {0}")]
    Endpoint(#[source] io::Error),
    #[error("cannot connect: {0}")]
    Connect(#[from] quinn::ConnectError),
    #[error("connection: {0}")]
    Connection(#[from] quinn::ConnectionError),
    /// A frame could not be read or written, or broke the protocol.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The gateway sent a message that has no place where it came.
    #[error("unexpected {0}")]
    Unexpected(String),
}

/// Why the agent stopped: nothing it can retry.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("cannot create the data directory {}: {source}", path.display())]
    DataDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the agent credentials in {}: {source}", dir.display())]
    Credentials {
        dir: PathBuf,
        #[source]
        source: orion_tls::TlsError,
    },
    #[error(
        "{} holds no certificate: start the agent once with --token (an admin makes one \
         with `orion token create --role agent`)",
        dir.display()
    )]
    NoCredentials { dir: PathBuf },
    #[error("{}: {source}; use another --data-dir or join again", dir.display())]
    WrongIdentity {
        dir: PathBuf,
        #[source]
        source: orion_tls::TlsError,
    },
    /// The cluster said no to the join token (used, expired or revoked).
    #[error("the cluster refused the join token: {0}")]
    JoinRefused(#[source] orion_client::ClientError),
    #[error("TLS setup of the agent link: {0}")]
    Tls(#[source] orion_tls::TlsError),
    #[error("QUIC setup of the agent link: {0}")]
    Quic(#[source] quinn::crypto::rustls::NoInitialCipherSuite),
    #[error("HTTP client for the cluster API: {0}")]
    Http(#[source] orion_client::ClientError),
}
