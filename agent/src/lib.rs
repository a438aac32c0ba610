//! The Orion node agent: runs a node's replicas and keeps them running.
//!
//! The control plane sends the node's full desired replica set (level-triggered);
//! [`Supervisor::reconcile`] makes the local processes match it. Everything here
//! is a library so it can be tested with real child processes and no network.
//!
//! ```text
//!   desired Vec<ReplicaSpec> ──► Supervisor::reconcile ──► one task per replica
//!                                      │                    │ spawn (own process group)
//!   statuses() / subscribe() ◄── status cells ◄─────────────┤ wait / health / restart
//!                                                           │ rotate logs
//!   root/replicas/<id>.json ◄── state records ◄─────────────┘ (adopted after a restart)
//! ```
//!
//! # Layout
//! - [`supervisor`]: [`Supervisor`], the per-replica task (spawn, restart policy with
//!   backoff, stop = SIGTERM then SIGKILL to the process group) and the status types.
//! - [`health`]: HTTP / TCP / exec health probes and the consecutive-result counting.
//! - [`state`]: the on-disk record of each running replica, so a restarted agent
//!   adopts its processes instead of orphaning or duplicating them.
//! - [`logs`]: per-replica stdout/stderr files, size-bounded rotation, `tail` and `follow`.
//! - [`session`]: the QUIC link to the leader (CA from the API, redirects, heartbeats,
//!   desired sets into the supervisor, status back), with reconnect backoff.
//! - [`error`]: the crate's [`Error`] and [`Result`].
//!
//! Files under the supervisor's root:
//! ```text
//! root/replicas/<id>.json        one record per live replica process
//! root/logs/<id>/stdout.log      + stdout.log.1 .. .N (rotated), same for stderr
//! root/work/<id>/                default working directory of the replica
//! ```

pub mod error;
pub mod health;
pub mod logs;
pub mod session;
pub mod state;
pub mod supervisor;

pub use error::{Error, Result};
pub use logs::{LogConfig, LogStream};
pub use session::{AgentConfig, SessionError};
pub use supervisor::{
    ExecOutput, ReplicaSpec, ReplicaState, ReplicaStatus, Supervisor, SupervisorConfig,
};
