//! One launcher for every Orion cluster the project starts as real processes:
//! `orion dev`, the CLI's tests (`cli/tests/fixture`), the fault-injection harness
//! (`orion-jepsen`, peers in network namespaces) and `orion-bench`.
//!
//! - [`cluster`]: [`Cluster`], peers in slots (bootstrap, join tokens, ports from
//!   `listen.json`, restart on the same data and ports, kill, stop, replace by a
//!   fresh peer), agents, and the waits (leader, voters) with deadlines.
//! - [`process`]: one child process logging to a file, started through a
//!   caller's [`Wrapper`] (a command prefix such as `ip netns exec NS`, environment,
//!   extra arguments), killed on drop.
//! - [`wait`]: polling with a deadline.
//! - [`netns`]: hosts made of network namespaces on one bridge (root only).
//! - [`error`]: [`LaunchError`], what failed and where its log is.
//!
//! Every REST call goes through `orion-client`. What is particular to one caller
//! (namespaces and nemeses, test assertions, `orion dev`'s console) stays with it.

pub mod cluster;
pub mod error;
pub mod netns;
pub mod process;
pub mod wait;

pub use cluster::{
    read_ports, Agent, AgentSpec, Cluster, Exit, Options, Peer, PeerSpec, Ports, LISTEN_FILE,
};
pub use error::{LaunchError, Result};
pub use process::{log_tail, Process, Wrapper};
