//! `orion-jepsen`: fault injection on real `orion` processes in network namespaces,
//! and the checkers that judge what was recorded.
//!
//! - [`hosts`]: namespaces, veths and a bridge per run, torn down on drop.
//! - [`nemesis`]: partitions, slow links, kills, pauses, membership changes and
//!   clock skew, one module each, mixed by a seeded schedule; `heal` undoes them.
//! - [`harness`]: the `orion` binary, and a scenario run on a thread in the client
//!   namespace.
//! - [`cluster`]: an Orion cluster on those hosts, with real TLS and join tokens.
//! - [`register`]: the register workload's client processes and recorder.
//! - [`history`]: the operation history model (invocations and completions, JSON
//!   lines on disk) and the pairing of invocations with completions.
//! - [`linear`]: a linearizability checker for read / write / cas registers, one per
//!   key (Wing & Gong / Lowe search, memoized, per-key decomposition).
//! - [`set`]: a set checker (are acknowledged adds kept?); [`set_workload`]: its adds
//!   and final read; [`convergence`]: services applied and scaled during faults,
//!   then counted in the real process table.
//! - [`run`]: one whole run, its checkers and its results folder; [`timeline`]: the
//!   run as an HTML page.

pub mod cluster;
pub mod convergence;
pub mod harness;
pub mod history;
pub mod hosts;
pub mod linear;
pub mod nemesis;
pub mod register;
pub mod run;
pub mod set;
pub mod set_workload;
pub mod timeline;

#[cfg(test)]
mod testkit;
