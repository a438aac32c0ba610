//! One Orion control-plane peer: the REST API every peer serves, forwarding to the
//! leader, and the start/stop sequence of a peer process.
//!
//! ```text
//!  client ──HTTP──► routes ──► api::{variables, services, cluster, ...} handlers
//!                                  │ writes, linearizable reads, membership
//!                                  ▼
//!                         forward::Forwarder::on_leader ─(follower)─► leader's
//!                                  │ (leader)                        /v1/internal/leader
//!                                  ▼
//!                          orion_raft::RaftNode (openraft + RocksDB)
//! ```
//!
//! # Layout
//! In import order: each module imports only modules listed above it.
//! - [`data_format`]: the data directory's format version (`FORMAT`): newer
//!   binaries open older directories, older ones refuse newer.
//! - [`error`]: fatal errors; API errors as JSON responses; the body extractor.
//! - [`metrics`]: the peer's Prometheus registry, the API's request metrics
//!   (middleware) and the apiserver's own counters, histograms and gauges.
//! - [`config`]: the peer's settings as data, with validation.
//! - [`caller`]: who is calling, as the auth middleware established it.
//! - [`idempotency`]: a write's client request id (`Idempotency-Key`), so a retry applies once.
//! - [`scheduler`]: the pure placement function (nodes + pending replicas → plan):
//!   feasibility, then spread or bin-pack scoring, round-robin among equals.
//! - [`accept`]: the TCP accept loop of the API and peer listeners.
//! - [`https`]: the TLS listener, its limits and its connection tasks.
//! - [`forward`]: the one way to the leader ([`forward::Forwarder`]): leader-only
//!   operations executed here or forwarded, held through elections for a bounded
//!   time, writes retried with their request id; API calls relayed whole.
//! - [`security`]: this peer's credentials and the cluster PKI (tokens, certificates).
//! - [`recovery`]: `orion snapshot restore` (a new data directory seeded from a
//!   backup) and `--force-new-cluster` (a survivor made a one-peer cluster).
//! - [`session`]: the dashboard's browser sessions: the cookie and the CSRF header.
//! - [`auth`]: route policy and token checks (bearer, session cookie, certificate).
//! - [`gateway`]: the QUIC agent gateway (agent certificates only, NodeRestriction),
//!   owning the registry of connected agents.
//! - [`controllers`], [`leadership`]: leader-only work, started while this peer leads.
//! - [`peer_grpc`]: hosts `orion-raft`'s peer gRPC service on the peer port (mutual
//!   TLS, the caller's peer id from its certificate).
//! - [`advertise`]: after a restart with other addresses, getting the membership
//!   record (what peers, agents and `GET /v1/cluster/ca` use) to follow them.
//! - [`join`]: joining an existing cluster at start-up.
//! - [`api`]: the HTTP handlers, one module per resource.
//! - [`state`]: the router's state, composed of the parts above, and which handler
//!   may take which part.
//! - [`routes`]: the route × credential table the router is built from.
//! - [`server`]: `run(config, shutdown)`: bind, start Raft, serve, shut down in order.

pub mod accept;
pub mod advertise;
pub mod api;
pub mod auth;
pub mod caller;
pub mod config;
pub mod controllers;
pub mod data_format;
pub mod error;
pub mod forward;
pub mod gateway;
pub mod https;
pub mod idempotency;
pub mod join;
pub mod leadership;
pub mod metrics;
pub mod openapi;
pub mod peer_grpc;
pub mod recovery;
pub mod routes;
pub mod scheduler;
pub mod security;
pub mod server;
pub mod session;
pub mod state;

pub use config::ServerConfig;
pub use error::{Error, Result};
pub use server::run;
