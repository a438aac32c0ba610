//! `orion-jepsen`: fault injection on real `orion` processes in network namespaces,
//! and the checkers that judge what was recorded.
//!
//! - [`hosts`]: namespaces, veths and a bridge per run, torn down on drop.
//! - [`nemesis`]: partitions, slow links, pauses — each healed by `heal`.
//! - [`harness`]: the `orion` binary, and a scenario run on a thread in the client
//!   namespace.
//! - [`cluster`]: an Orion cluster on those hosts, with real TLS and join tokens.
//! - [`register`]: the register workload's client processes and recorder.
//! - [`history`]: the operation history model (invocations and completions, JSON
//!   lines on disk) and the pairing of invocations with completions.
//! - [`linear`]: a linearizability checker for read / write / cas registers, one per
//!   key (Wing & Gong / Lowe search, memoized, per-key decomposition).
//! - [`set`]: a set checker (are acknowledged adds kept?); [`set_workload`]: its adds
//!   and final read.

pub mod cluster;
pub mod harness;
pub mod history;
pub mod hosts;
pub mod linear;
pub mod nemesis;
pub mod register;
pub mod set;
pub mod set_workload;

#[cfg(test)]
mod testkit;
