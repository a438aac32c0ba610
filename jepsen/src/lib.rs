//! `orion-jepsen`: fault injection on real `orion` processes in network namespaces.
//!
//! - [`hosts`]: namespaces, veths and a bridge per run, torn down on drop.
//! - [`nemesis`]: partitions, slow links, pauses — each healed by `heal`.
//! - [`cluster`]: an Orion cluster on those hosts, with real TLS and join tokens.

pub mod cluster;
pub mod hosts;
pub mod nemesis;
