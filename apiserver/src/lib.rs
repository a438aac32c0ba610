//! One Orion control-plane peer: the REST API every peer serves, forwarding to the
//! leader, and the start/stop sequence of a peer process.
//!
//! ```text
//!  client ──HTTP──► router ──► variables / cluster / watch handlers
//!                                  │ writes, linearizable reads, membership
//!                                  ▼
//!                          leader::Cluster::on_leader ──(follower)──► leader's
//!                                  │ (leader)                        /v1/internal/leader
//!                                  ▼
//!                          orion_raft::RaftNode (openraft + RocksDB)
//! ```
//!
//! # Layout
//! - [`config`]: the peer's settings as data, with validation.
//! - [`server`]: `run(config, shutdown)`: bind, start Raft, serve, shut down in order.
//! - [`leader`]: leader-only operations, executed here or forwarded to the leader,
//!   held through elections for a bounded time; writes retried with their request id.
//! - [`idempotency`]: a write's client request id (`Idempotency-Key`), so a retry applies once.
//! - [`scheduler`]: the pure placement function (nodes + pending replicas → plan):
//!   feasibility, then spread or bin-pack scoring, round-robin among equals.
//! - [`leadership`]: starts the [`controllers`] when this peer leads, stops them when it does not.
//! - [`gateway`]: the QUIC agent gateway (agent certificates only, NodeRestriction).
//! - [`auth`], [`https`], [`security`]: route policy, the TLS listener, tokens and certificates.
//! - [`peer_grpc`]: hosts `orion-raft`'s peer gRPC service on the peer port (mutual
//!   TLS, the caller's peer id from its certificate); [`accept`] is the TCP accept
//!   loop both listeners use.
//! - [`join`]: joining an existing cluster at start-up.
//! - [`advertise`]: after a restart with other addresses, getting the membership
//!   record (what peers, agents and `GET /v1/cluster/ca` use) to follow them.
//! - [`streams`]: logs and exec, relayed from the replica's agent.
//! - [`variables`], [`workloads`], [`cluster`], [`watch`], [`health`]: the HTTP handlers.
//! - [`error`]: mapping errors to JSON responses; the body extractor with clear errors.

pub mod accept;
pub mod advertise;
pub mod auth;
pub mod cluster;
pub mod config;
pub mod controllers;
pub mod error;
pub mod gateway;
pub mod health;
pub mod https;
pub mod idempotency;
pub mod join;
pub mod leader;
pub mod leadership;
pub mod peer_grpc;
pub mod scheduler;
pub mod security;
pub mod server;
pub mod streams;
pub mod variables;
pub mod watch;
pub mod workloads;

pub use config::ServerConfig;
pub use server::run;

/// Fatal errors that stop a peer (API errors are [`orion_api::ApiError`]).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("cannot listen on {addr}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("joining the cluster failed: {0}")]
    Join(String),
    #[error(transparent)]
    Raft(#[from] orion_raft::Error),
    #[error("peer transport: {0}")]
    PeerTransport(#[from] tonic::transport::Error),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
