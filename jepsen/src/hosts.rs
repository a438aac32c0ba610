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
//! [`Net`] tears everything down on drop (namespaces, and with them the veths and
//! any fault rules), also when a run panics.

use std::process::{Command, Output};

use anyhow::{bail, Context};

/// The subnet every run uses; runs are isolated by their bridge namespaces.
pub const SUBNET: &str = "10.77.0";
/// The client namespace's address.
pub const CLIENT_IP: &str = "10.77.0.100";

/// Runs `ip` with `args`; fails naming the command and its stderr.
pub fn ip(args: &[&str]) -> anyhow::Result<Output> {
    run("ip", args)
}

pub fn run(program: &str, args: &[&str]) -> anyhow::Result<Output> {
    let out = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("cannot run {program}"))?;
    if !out.status.success() {
        bail!(
            "`{program} {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(out)
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
}

impl Net {
    /// Creates the bridge, the client namespace and `n` hosts. Needs root.
    pub fn create(n: usize) -> anyhow::Result<Self> {
        let run = format!("oj{}", std::process::id());
        let mut net = Net {
            bridge_ns: format!("{run}-br"),
            client_ns: format!("{run}-c"),
            run,
            hosts: Vec::new(),
        };
        // From here on, a failure drops `net`, which removes what was made.
        ip(&["netns", "add", &net.bridge_ns])?;
        net.in_ns(
            &net.bridge_ns,
            "ip",
            &["link", "add", "br0", "type", "bridge"],
        )?;
        net.in_ns(&net.bridge_ns, "ip", &["link", "set", "br0", "up"])?;
        net.in_ns(&net.bridge_ns, "ip", &["link", "set", "lo", "up"])?;
        let client_ns = net.client_ns.clone();
        net.attach(&client_ns, "c", CLIENT_IP)?;
        for index in 1..=n {
            let host = Host {
                index,
                ns: format!("{}-h{index}", net.run),
                ip: format!("{SUBNET}.{}", 10 + index),
            };
            net.attach(&host.ns, &format!("h{index}"), &host.ip)?;
            net.hosts.push(host);
        }
        Ok(net)
    }

    /// Makes namespace `ns` with a veth to the bridge and `addr`/24 on it.
    fn attach(&self, ns: &str, tag: &str, addr: &str) -> anyhow::Result<()> {
        ip(&["netns", "add", ns])?;
        // Interface names are per namespace, but the pair is born in the root
        // namespace: make them unique to this run there.
        let inner = format!("{}{tag}a", self.run);
        let outer = format!("{}{tag}b", self.run);
        ip(&[
            "link", "add", &inner, "type", "veth", "peer", "name", &outer,
        ])?;
        ip(&["link", "set", &inner, "netns", ns])?;
        ip(&["link", "set", &outer, "netns", &self.bridge_ns])?;
        self.in_ns(ns, "ip", &["link", "set", &inner, "name", "eth0"])?;
        self.in_ns(
            ns,
            "ip",
            &["addr", "add", &format!("{addr}/24"), "dev", "eth0"],
        )?;
        self.in_ns(ns, "ip", &["link", "set", "eth0", "up"])?;
        self.in_ns(ns, "ip", &["link", "set", "lo", "up"])?;
        self.in_ns(
            &self.bridge_ns,
            "ip",
            &["link", "set", &outer, "master", "br0"],
        )?;
        self.in_ns(&self.bridge_ns, "ip", &["link", "set", &outer, "up"])?;
        Ok(())
    }

    /// Runs `program args` inside namespace `ns` and waits for it.
    pub fn in_ns(&self, ns: &str, program: &str, args: &[&str]) -> anyhow::Result<Output> {
        let mut all = vec!["netns", "exec", ns, program];
        all.extend_from_slice(args);
        ip(&all)
    }

    /// A command that will run inside `host`'s namespace (`ip netns exec` execs
    /// the program, so the child's pid is the program's).
    pub fn command(&self, host: &Host, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &host.ns, program]);
        c
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

impl Drop for Net {
    fn drop(&mut self) {
        for h in &self.hosts {
            let _ = ip(&["netns", "del", &h.ns]);
        }
        let _ = ip(&["netns", "del", &self.client_ns]);
        let _ = ip(&["netns", "del", &self.bridge_ns]);
    }
}

/// Whether this process may create namespaces (root, with `ip` present).
pub fn available() -> bool {
    nix::unistd::Uid::effective().is_root()
        && Command::new("ip")
            .arg("-V")
            .output()
            .is_ok_and(|o| o.status.success())
}
