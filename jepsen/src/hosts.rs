//! Hosts: one Linux network namespace per `orion` process, joined by veth pairs to
//! a bridge that lives in a namespace of its own, plus a client namespace for the
//! harness's clients. Nothing touches the root namespace, so runs can go side by
//! side and traffic never leaves the namespaces.
//!
//! ```text
//!   oj<run>-c (10.77.0.100) ─┐
//!   oj<run>-h1 (10.77.0.11) ─┼── br0 in oj<run>-br
//!   oj<run>-h2 (10.77.0.12) ─┘
//! ```
//!
//! [`Net`] tears everything down on drop (the processes left in the namespaces,
//! the namespaces, and with them the veths and any fault rules), also when a run
//! panics; the namespaces are `orion_launch::netns`'s.

use std::process::{Command, Output};

use anyhow::Context;
use orion_launch::netns::Bridge;

/// The subnet every run uses; runs are isolated by their bridge namespaces.
pub const SUBNET: &str = "10.77.0";
/// The client namespace's address.
pub const CLIENT_IP: &str = "10.77.0.100";

/// Runs `ip` with `args`; fails naming the command and its stderr.
pub fn ip(args: &[&str]) -> anyhow::Result<Output> {
    Ok(orion_launch::netns::ip(args)?)
}

pub fn run(program: &str, args: &[&str]) -> anyhow::Result<Output> {
    Ok(orion_launch::netns::run(program, args)?)
}

/// One host: a namespace with one address on the bridge.
#[derive(Debug, Clone)]
pub struct Host {
    /// 1-based.
    pub index: usize,
    pub ns: String,
    pub ip: String,
}

/// The namespaces of one run.
#[derive(Debug)]
pub struct Net {
    pub run: String,
    pub bridge_ns: String,
    pub client_ns: String,
    pub hosts: Vec<Host>,
    /// Owns the namespaces: dropping it kills what runs in them and removes them.
    bridge: Bridge,
}

impl Net {
    /// Creates the bridge, the client namespace and `n` hosts. Needs root.
    pub fn create(n: usize) -> anyhow::Result<Self> {
        let run = format!("oj{}", std::process::id());
        // From here on, a failure drops `bridge`, which removes what was made.
        let mut bridge = Bridge::create(&run, 24)?;
        let client = bridge.attach("c", "c", CLIENT_IP)?;
        let mut hosts = Vec::new();
        for index in 1..=n {
            let tag = format!("h{index}");
            let h = bridge.attach(&tag, &tag, &format!("{SUBNET}.{}", 10 + index))?;
            hosts.push(Host {
                index,
                ns: h.ns,
                ip: h.ip,
            });
        }
        Ok(Net {
            bridge_ns: bridge.bridge_ns.clone(),
            client_ns: client.ns,
            run,
            hosts,
            bridge,
        })
    }

    /// Runs `program args` inside namespace `ns` and waits for it.
    pub fn in_ns(&self, ns: &str, program: &str, args: &[&str]) -> anyhow::Result<Output> {
        Ok(self.bridge.in_ns(ns, program, args)?)
    }

    /// A command that will run inside `host`'s namespace (`ip netns exec` execs
    /// the program, so the child's pid is the program's).
    pub fn command(&self, host: &Host, program: &str) -> Command {
        self.bridge.command(&host.ns, program)
    }

    /// Moves the calling thread into the client namespace: sockets it opens from
    /// then on are in there. Call it on a thread dedicated to the clients.
    pub fn enter_client_ns(&self) -> anyhow::Result<()> {
        let path = format!("/run/netns/{}", self.client_ns);
        let f = std::fs::File::open(&path).with_context(|| format!("cannot open {path}"))?;
        nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET)
            .with_context(|| format!("cannot enter {}", self.client_ns))?;
        Ok(())
    }
}

/// Whether this process may create namespaces (root, with `ip` present).
pub fn available() -> bool {
    orion_launch::netns::available()
}
