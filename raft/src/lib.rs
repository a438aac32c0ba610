//! Orion's Raft layer: what is replicated, how it is applied, and how peers talk.
//!
//! ```text
//!  apiserver ──Command──► Raft (openraft) ──entries──► orion-store (RocksDB)
//!                              │                           │ Applier::apply
//!                              │ gRPC (tonic)              ▼
//!                              ▼                     apply::OrionApplier
//!                        other peers              (deterministic, total)
//! ```
//!
//! # Layout
//! - [`types`]: the openraft type config and the [`Member`] node type.
//! - [`command`]: the command set written to the log and the result of applying one.
//! - [`apply`]: the deterministic apply function and the state-machine key layout.
//! - [`jobs`]: the job commands' changes to a stored job (runs, slots, history), pure.
//! - [`session`]: client sessions: each request id's result, so a retry applies once.
//! - [`codec`]: encoding of openraft RPCs for the wire.
//! - [`network`]: the gRPC client side (lazy connections, timeouts, backoff).
//! - [`service`]: the gRPC service peers call (hosted by `orion-apiserver`, so this
//!   crate links no HTTP server).
//! - [`node`]: one running Raft peer: open storage, start Raft, membership, shut down.
//! - [`Error`], [`LeaderError`], [`MembershipRefusal`]: what can fail, typed; what an
//!   HTTP status they become is decided in `orion-apiserver`.
//! - [`metrics`]: [`metrics::NodeMetrics`], this peer's Raft and store metrics in
//!   Prometheus form (registered and served by the apiserver).
//! - [`read`]: typed reads of the replicated state through a consistent view.
//! - [`write_batch`]: write batching: concurrent variable writes share one entry
//!   (one WAL sync, one replication round).
//! - [`recovery`]: offline disaster recovery on a stopped peer's storage: a new
//!   one-peer cluster seeded from a backup, or forced from a survivor's own data.
//! - [`transfer`]: leadership transfer (hold writes, catch the target up, ask it
//!   to elect itself), and the write gate that holds proposals meanwhile.
//! - [`protocol`]: the peer protocol's versions, checked on every call.
//! - [`read_rounds`]: read-index batching: concurrent linearizable reads share one
//!   confirmation round, never one that started before they arrived.

pub mod apply;
pub mod codec;
pub mod command;
mod error;
pub mod jobs;
pub mod metrics;
pub mod network;
pub mod node;
pub mod protocol;
pub mod read;
pub mod read_rounds;
pub mod recovery;
pub mod service;
pub mod session;
pub mod tls;
pub mod transfer;
pub mod types;
pub mod write_batch;

pub use command::{Command, CommandResult, Proposal, Rejection, RequestId};
pub use node::{RaftNode, RaftSettings};
pub use types::{Member, TypeConfig};

/// Generated gRPC code for the peer service.
pub mod proto {
    tonic::include_proto!("orion.peer.v1");
}

pub use error::{
    Error, FatalError, InvalidSettings, LeaderError, MembershipRefusal, Result, TransferRefusal,
};
