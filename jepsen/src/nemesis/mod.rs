//! Faults, one module each, and the [`schedule`] that mixes them:
//!
//! - [`partition`]: nftables drops inside the hosts' namespaces (random halves,
//!   the leader alone, a majority ring, a bridge, an agent alone);
//! - [`slow`]: a rate-limited, queueing, lossy link out of a host;
//! - [`kill`]: SIGKILL of a random peer or the leader, restarted at heal;
//! - [`pause`]: SIGSTOP of a random peer or the leader, SIGCONT at heal;
//! - [`membership`]: remove a peer, then add a fresh one (new id, empty disk);
//! - [`clock`]: a peer's wall clock skewed through libfaketime, reset at heal.
//!
//! [`Faults`] remembers what is in force, so [`Faults::heal`] undoes exactly
//! that, and keeps each fault's time span for the timeline.

pub mod clock;
pub mod kill;
pub mod membership;
pub mod partition;
pub mod pause;
pub mod schedule;
pub mod slow;

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use anyhow::bail;
use nix::sys::signal::{kill as signal, Signal};
use nix::unistd::Pid;
use rand::rngs::StdRng;
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::cluster::Cluster;
use crate::hosts::Net;
use crate::register::Recorder;
use crate::timeline::Band;

/// The kinds of fault a schedule may pick.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Partition,
    Slow,
    Kill,
    Pause,
    Membership,
    Clock,
}

impl Kind {
    pub const ALL: [Kind; 6] = [
        Kind::Partition,
        Kind::Slow,
        Kind::Kill,
        Kind::Pause,
        Kind::Membership,
        Kind::Clock,
    ];

    /// Parses `all`, `none` or a comma-separated list of kinds.
    pub fn parse_list(s: &str) -> anyhow::Result<Vec<Kind>> {
        match s.trim() {
            "all" => Ok(Kind::ALL.to_vec()),
            "none" | "" => Ok(Vec::new()),
            list => {
                let mut kinds: Vec<Kind> = list
                    .split(',')
                    .map(|k| k.trim().parse())
                    .collect::<anyhow::Result<_>>()?;
                kinds.sort_unstable();
                kinds.dedup();
                Ok(kinds)
            }
        }
    }
}

impl FromStr for Kind {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<Kind> {
        Ok(match s {
            "partition" => Kind::Partition,
            "slow" | "netem" => Kind::Slow,
            "kill" => Kind::Kill,
            "pause" => Kind::Pause,
            "membership" => Kind::Membership,
            "clock" => Kind::Clock,
            other => bail!(
                "unknown nemesis {other:?}: use all, none, or a list of partition, slow, kill, pause, membership, clock"
            ),
        })
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            Kind::Partition => "partition",
            Kind::Slow => "slow",
            Kind::Kill => "kill",
            Kind::Pause => "pause",
            Kind::Membership => "membership",
            Kind::Clock => "clock",
        };
        f.write_str(s)
    }
}

/// The leader (half the time, when one is known) or a random peer: its slot,
/// and whether it is the leader.
pub async fn target(cluster: &Cluster, rng: &mut StdRng) -> (usize, bool) {
    if rng.random_bool(0.5) {
        if let Some(slot) = cluster.leader_slot().await {
            return (slot, true);
        }
    }
    (1 + rng.random_range(0..cluster.peers.len()), false)
}

/// The faults in force, and the spans of those already healed.
#[derive(Debug, Default)]
pub struct Faults {
    /// namespaces holding partition rules
    partitioned: BTreeSet<String>,
    /// (namespace, address it drops packets from)
    cuts: BTreeSet<(String, String)>,
    /// namespaces with slowed links
    slowed: BTreeSet<String>,
    paused: BTreeSet<i32>,
    /// slots whose peer was killed and must be restarted
    killed: BTreeSet<usize>,
    /// slots whose clock is skewed
    skewed: BTreeSet<usize>,
    /// labels of the faults in force, with their start
    open: Vec<(String, u64)>,
    /// every fault's span, for the timeline
    pub bands: Vec<Band>,
}

impl Faults {
    /// Notes that a fault labelled `label` started now.
    pub fn started(&mut self, rec: &Recorder, label: String) {
        log(&label);
        self.open.push((label, rec.now_ns()));
    }

    /// Records a fault that started at `start_ns` and is over now.
    pub fn span(&mut self, rec: &Recorder, label: String, start_ns: u64) {
        self.bands.push(Band {
            start_ns,
            end_ns: Some(rec.now_ns()),
            label,
        });
    }

    pub fn pause(&mut self, pid: i32) -> anyhow::Result<()> {
        signal(Pid::from_raw(pid), Signal::SIGSTOP)?;
        self.paused.insert(pid);
        Ok(())
    }

    /// Undoes every fault in force: links back, processes continued, killed
    /// peers restarted, clocks reset. Keeps going past errors, reports the first.
    pub fn heal(&mut self, net: &Net, cluster: &mut Cluster, rec: &Recorder) -> anyhow::Result<()> {
        let mut first: Option<anyhow::Error> = None;
        self.cuts.clear();
        for ns in std::mem::take(&mut self.partitioned) {
            if let Err(e) = partition::heal(net, &ns) {
                first.get_or_insert(e);
            }
        }
        for ns in std::mem::take(&mut self.slowed) {
            if let Err(e) = slow::heal(net, &ns) {
                first.get_or_insert(e);
            }
        }
        for pid in std::mem::take(&mut self.paused) {
            // The process may have been killed meanwhile; that is fine.
            let _ = signal(Pid::from_raw(pid), Signal::SIGCONT);
        }
        for slot in std::mem::take(&mut self.skewed) {
            if let Err(e) = clock::reset(cluster, slot) {
                first.get_or_insert(e);
            }
        }
        for slot in std::mem::take(&mut self.killed) {
            if let Err(e) = cluster.restart(net, slot) {
                first.get_or_insert(e);
            }
        }
        let now = rec.now_ns();
        for (label, start_ns) in std::mem::take(&mut self.open) {
            self.bands.push(Band {
                start_ns,
                end_ns: Some(now),
                label,
            });
        }
        first.map_or(Ok(()), Err)
    }

    pub fn is_healed(&self) -> bool {
        self.partitioned.is_empty()
            && self.slowed.is_empty()
            && self.paused.is_empty()
            && self.killed.is_empty()
            && self.skewed.is_empty()
    }
}

/// Faults are logged as they start, so a run's stderr reads as its schedule.
fn log(label: &str) {
    eprintln!("nemesis: {label}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nemesis_lists_parse_and_name_the_bad_entry() {
        assert_eq!(Kind::parse_list("all").expect("all"), Kind::ALL.to_vec());
        assert!(Kind::parse_list("none").expect("none").is_empty());
        assert_eq!(
            Kind::parse_list("kill, partition,kill").expect("list"),
            vec![Kind::Partition, Kind::Kill]
        );
        assert_eq!(Kind::parse_list("netem").expect("alias"), vec![Kind::Slow]);
        let e = Kind::parse_list("partition,flood").expect_err("unknown");
        assert!(e.to_string().contains("\"flood\""), "{e}");
    }

    #[test]
    fn ring_partitions_need_five_peers() {
        assert!(!partition::shapes(3, 0).contains(&partition::Shape::Ring));
        assert!(partition::shapes(5, 0).contains(&partition::Shape::Ring));
        assert!(partition::shapes(3, 2).contains(&partition::Shape::Agent));
    }
}
