//! Faults, each undone by [`Nemesis::heal`]:
//!
//! - **partition**: blackhole routes inside the hosts' namespaces, both ways, so
//!   the two sides cannot reach each other (clients are not partitioned);
//! - **slow network**: `tc netem` delay and loss on a host's interface;
//! - **pause**: SIGSTOP / SIGCONT of a host's process;
//! - **kill**: SIGKILL (restarting is the cluster's job, see `cluster.rs`).

use std::collections::BTreeSet;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::hosts::{Host, Net};

/// Faults in force, so heal undoes exactly them.
#[derive(Debug, Default)]
pub struct Nemesis {
    blackholes: BTreeSet<(String, String)>,
    netem: BTreeSet<String>,
    paused: BTreeSet<i32>,
}

impl Nemesis {
    /// Cuts every link between `a` and `b` (both directions).
    pub fn partition(&mut self, net: &Net, a: &[&Host], b: &[&Host]) -> anyhow::Result<()> {
        for x in a {
            for y in b {
                for (from, to) in [(x, y), (y, x)] {
                    let key = (from.ns.clone(), to.ip.clone());
                    if self.blackholes.insert(key) {
                        net.in_ns(
                            &from.ns,
                            "ip",
                            &["route", "add", "blackhole", &format!("{}/32", to.ip)],
                        )?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Adds `delay_ms` ± half of it and `loss_pct` packet loss on `host`'s link.
    pub fn slow(
        &mut self,
        net: &Net,
        host: &Host,
        delay_ms: u32,
        loss_pct: u32,
    ) -> anyhow::Result<()> {
        let verb = if self.netem.insert(host.ns.clone()) {
            "add"
        } else {
            "change"
        };
        net.in_ns(
            &host.ns,
            "tc",
            &[
                "qdisc",
                verb,
                "dev",
                "eth0",
                "root",
                "netem",
                "delay",
                &format!("{delay_ms}ms"),
                &format!("{}ms", delay_ms / 2),
                "loss",
                &format!("{loss_pct}%"),
            ],
        )?;
        Ok(())
    }

    pub fn pause(&mut self, pid: i32) -> anyhow::Result<()> {
        kill(Pid::from_raw(pid), Signal::SIGSTOP)?;
        self.paused.insert(pid);
        Ok(())
    }

    /// Undoes every fault in force. Keeps going past errors and reports the first.
    pub fn heal(&mut self, net: &Net) -> anyhow::Result<()> {
        let mut first: Option<anyhow::Error> = None;
        for (ns, ip) in std::mem::take(&mut self.blackholes) {
            if let Err(e) = net.in_ns(
                &ns,
                "ip",
                &["route", "del", "blackhole", &format!("{ip}/32")],
            ) {
                first.get_or_insert(e);
            }
        }
        for ns in std::mem::take(&mut self.netem) {
            if let Err(e) = net.in_ns(&ns, "tc", &["qdisc", "del", "dev", "eth0", "root"]) {
                first.get_or_insert(e);
            }
        }
        for pid in std::mem::take(&mut self.paused) {
            // The process may have been killed meanwhile; that is fine.
            let _ = kill(Pid::from_raw(pid), Signal::SIGCONT);
        }
        first.map_or(Ok(()), Err)
    }

    pub fn is_healed(&self) -> bool {
        self.blackholes.is_empty() && self.netem.is_empty() && self.paused.is_empty()
    }
}
