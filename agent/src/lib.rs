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
//! Imports point one way, from the session down to the leaves:
//! ```text
//! session ─► credentials ─► retry
//!    │ └───► link ─► streams ─► supervisor ─► task ─► health ─► process ─► replica, logs, error
//!    └─► ports     └► usage                        └► records ─┘
//! session, link, streams ─► metrics ─► supervisor, replica
//! ```
//! - [`session`]: [`session::run`], the agent's main loop: credentials, discovery
//!   through the API, one link at a time with backoff.
//! - `credentials`: load the certificate or trade the join token for it; renewal.
//! - `link`: one QUIC link to a gateway: hello, redirect, the control stream.
//! - `streams`: the log and exec streams the leader opens.
//! - [`metrics`]: [`metrics::AgentMetrics`], the agent's Prometheus metrics (served
//!   by `orion agent --metrics-addr`, not by this crate).
//! - `ports`: the port book, where the agent picks and keeps each replica's ports.
//! - `usage`: the node's load and memory for the heartbeat.
//! - `retry`: the one backoff (`backon`) and WARN-once logging of retried faults.
//! - [`supervisor`]: [`Supervisor`] and `reconcile`; `supervisor/task.rs` is one
//!   replica's loop with its restart policy, `supervisor/health.rs` the probes,
//!   `supervisor/records.rs` the on-disk records for adoption,
//!   `supervisor/process.rs` environment, spawn, signals and `/proc`.
//! - [`replica`]: [`ReplicaSpec`], [`ReplicaStatus`], [`ReplicaState`].
//! - [`logs`]: per-replica stdout/stderr files, size-bounded rotation, `tail` and `follow`.
//! - [`error`]: the crate's error types.
//!
//! Files under the supervisor's root:
//! ```text
//! root/replicas/<id>.json        one record per live replica process
//! root/logs/<id>/stdout.log      + stdout.log.1 .. .N (rotated), same for stderr
//! root/work/<id>/                default working directory of the replica
//! ```

mod credentials;
pub mod error;
mod link;
pub mod logs;
pub mod metrics;
mod ports;
pub mod replica;
mod retry;
pub mod session;
mod streams;
pub mod supervisor;
mod usage;

pub use error::{Error, ExecError, LaunchError, Result, SessionError};
pub use logs::{LogConfig, LogStream};
pub use metrics::AgentMetrics;
pub use replica::{ExecOutput, ReplicaSpec, ReplicaState, ReplicaStatus};
pub use session::AgentConfig;
pub use supervisor::{Supervisor, SupervisorConfig};
