//! Machines made of Linux network namespaces: one namespace per host, each joined
//! by a veth pair to one bridge that lives in a namespace of its own, so nothing
//! touches the root namespace and traffic never leaves the namespaces. Used by the
//! fault-injection harness (`orion-jepsen`) and by the tests that follow
//! `deploy/README.md` on hosts with real addresses.
//!
//! ```text
//!   <prefix>-<host a> (10.0.0.11) ─┐
//!   <prefix>-<host b> (10.0.0.12) ─┼── br0 in <prefix>-br
//!   <prefix>-<host c> (10.0.0.10) ─┘
//! ```
//!
//! Dropping the [`Bridge`] kills every process still running in its namespaces and
//! removes them (and with them the veths and any fault rules), also when the
//! caller panics. Needs root and `ip` (iproute2).

use std::process::{Command, Output};

use crate::error::{LaunchError, Result};

/// Runs `program args` and waits; fails naming the command and its stderr.
pub fn run(program: &str, args: &[&str]) -> Result<Output> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|source| LaunchError::Spawn {
            what: format!("`{program}`"),
            program: program.into(),
            source,
        })?;
    if !out.status.success() {
        return Err(LaunchError::Usage(format!(
            "`{program} {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(out)
}

/// Runs `ip args`.
pub fn ip(args: &[&str]) -> Result<Output> {
    run("ip", args)
}

/// Whether this process may create namespaces (root, with `ip` present).
pub fn available() -> bool {
    nix::unistd::Uid::effective().is_root()
        && Command::new("ip")
            .arg("-V")
            .output()
            .is_ok_and(|o| o.status.success())
}

/// One host: a namespace with one address on the bridge.
#[derive(Debug, Clone)]
pub struct NetHost {
    /// The caller's name for it (`h1`, `ctl-1`).
    pub name: String,
    /// The namespace (`<prefix>-<name>`).
    pub ns: String,
    pub ip: String,
}

/// The namespaces of one run: a bridge and the hosts on it.
#[derive(Debug)]
pub struct Bridge {
    /// Unique to this run; every namespace and root-namespace interface name
    /// starts with it.
    pub prefix: String,
    pub bridge_ns: String,
    hosts: Vec<NetHost>,
    prefix_len: u8,
}

impl Bridge {
    /// Creates the bridge namespace. `prefix` must be unique on the machine (the
    /// process id is a good part of it) and short: veth names are at most 15 bytes.
    pub fn create(prefix: &str, prefix_len: u8) -> Result<Self> {
        let bridge = Bridge {
            prefix: prefix.to_string(),
            bridge_ns: format!("{prefix}-br"),
            hosts: Vec::new(),
            prefix_len,
        };
        // From here on, a failure drops `bridge`, which removes what was made.
        ip(&["netns", "add", &bridge.bridge_ns])?;
        bridge.in_ns(
            &bridge.bridge_ns,
            "ip",
            &["link", "add", "br0", "type", "bridge"],
        )?;
        bridge.in_ns(&bridge.bridge_ns, "ip", &["link", "set", "br0", "up"])?;
        bridge.in_ns(&bridge.bridge_ns, "ip", &["link", "set", "lo", "up"])?;
        Ok(bridge)
    }

    /// Makes host `name`: a namespace with a veth to the bridge, `addr` on its
    /// `eth0`, loopback up. `tag` (a few characters, unique in this bridge) names
    /// the veth pair in the root namespace, where it is born.
    pub fn attach(&mut self, name: &str, tag: &str, addr: &str) -> Result<NetHost> {
        let host = NetHost {
            name: name.to_string(),
            ns: format!("{}-{name}", self.prefix),
            ip: addr.to_string(),
        };
        ip(&["netns", "add", &host.ns])?;
        self.hosts.push(host.clone());
        let inner = format!("{}{tag}a", self.prefix);
        let outer = format!("{}{tag}b", self.prefix);
        ip(&[
            "link", "add", &inner, "type", "veth", "peer", "name", &outer,
        ])?;
        ip(&["link", "set", &inner, "netns", &host.ns])?;
        ip(&["link", "set", &outer, "netns", &self.bridge_ns])?;
        let ns = &host.ns;
        self.in_ns(ns, "ip", &["link", "set", &inner, "name", "eth0"])?;
        let cidr = format!("{addr}/{}", self.prefix_len);
        self.in_ns(ns, "ip", &["addr", "add", &cidr, "dev", "eth0"])?;
        self.in_ns(ns, "ip", &["link", "set", "eth0", "up"])?;
        self.in_ns(ns, "ip", &["link", "set", "lo", "up"])?;
        self.in_ns(
            &self.bridge_ns,
            "ip",
            &["link", "set", &outer, "master", "br0"],
        )?;
        self.in_ns(&self.bridge_ns, "ip", &["link", "set", &outer, "up"])?;
        Ok(host)
    }

    pub fn hosts(&self) -> &[NetHost] {
        &self.hosts
    }

    /// Runs `program args` inside namespace `ns` and waits for it.
    pub fn in_ns(&self, ns: &str, program: &str, args: &[&str]) -> Result<Output> {
        let mut all = vec!["netns", "exec", ns, program];
        all.extend_from_slice(args);
        ip(&all)
    }

    /// A command that will run inside namespace `ns` (`ip netns exec` execs the
    /// program, so the child's pid is the program's).
    pub fn command(&self, ns: &str, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", ns, program]);
        c
    }
}

/// Kills every process in namespace `ns` (`ip netns pids`), except this one (a
/// thread of it may have entered the namespace).
fn kill_all_in(ns: &str) {
    let Ok(out) = ip(&["netns", "pids", ns]) else {
        return;
    };
    let me = std::process::id();
    for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
        if let Ok(pid) = pid.parse::<i32>() {
            if pid as u32 == me {
                continue;
            }
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        for h in &self.hosts {
            kill_all_in(&h.ns);
            let _ = ip(&["netns", "del", &h.ns]);
        }
        let _ = ip(&["netns", "del", &self.bridge_ns]);
    }
}
