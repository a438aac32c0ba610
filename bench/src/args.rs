//! Command-line flags: one subcommand per scenario, and the flags they share.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Upper bounds on what a flag may ask for, so a typo cannot exhaust the machine.
pub const MAX_CLIENTS: usize = 4096;
pub const MAX_VALUE_SIZE: usize = 1 << 20;
pub const MAX_DURATION: Duration = Duration::from_secs(3600);
pub const MAX_TRIALS: usize = 1000;

#[derive(Debug, Parser)]
#[command(
    name = "orion-bench",
    about = "Orion beside etcd on this machine: each scenario starts its own 3-peer clusters on loopback"
)]
pub struct Cli {
    #[command(subcommand)]
    pub scenario: Scenario,
}

#[derive(Debug, Subcommand)]
pub enum Scenario {
    /// Acknowledged writes/s and latency, through the leader and spread over all peers.
    Write(WriteArgs),
    /// Reads/s and latency: linearizable and stale (etcd: serializable), via leader and follower.
    Read(ReadArgs),
    /// kill -9 the leader under a steady write load: time to the first acknowledged write.
    Failover(FailoverArgs),
    /// The scheduler alone (placements/s), and apply → every replica running with a real agent.
    Schedule(ScheduleArgs),
    /// kill -9 an agent and its replicas: time until they all run on another node.
    Reschedule(RescheduleArgs),
    /// Resident memory of an idle peer, an idle agent, and a peer holding many services.
    Footprint(FootprintArgs),
    /// N simulated agents (real QUIC + mTLS, 1 Hz heartbeats) on one leader: its CPU and memory.
    FanIn(FanInArgs),
}

/// Most services, nodes and replicas a control-plane scenario may ask for.
pub const MAX_SERVICES: usize = 100_000;
pub const MAX_NODES: usize = 10_000;
pub const MAX_BENCH_REPLICAS: u32 = 1_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Compare {
    /// Start a 3-member etcd and measure it the same way.
    Etcd,
    /// Orion only.
    None,
}

/// Flags every scenario has.
#[derive(Debug, Args)]
pub struct Common {
    /// The system to measure Orion against.
    #[arg(long, value_enum, default_value = "etcd")]
    pub compare: Compare,
    /// Bytes per value, the same for both systems.
    #[arg(long, default_value_t = 256)]
    pub value_size: usize,
    /// The `orion` binary to start peers from (default: next to this program).
    #[arg(long, env = "ORION_BENCH_ORION")]
    pub orion_bin: Option<PathBuf>,
    /// A config file every Orion peer is started with (`orion server --config`), to
    /// measure a setting, e.g. `[raft]` `batch-writes = false`.
    #[arg(long)]
    pub orion_config: Option<PathBuf>,
    /// The `etcd` binary (default: `etcd` on PATH; Debian's etcd-server).
    #[arg(long, default_value = "etcd")]
    pub etcd_bin: PathBuf,
    /// Where to write the run's markdown table and JSON (created if missing).
    #[arg(long, default_value = "bench/results")]
    pub out_dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct WriteArgs {
    /// Concurrent clients, each sending its next write when the last is answered.
    #[arg(long, default_value_t = 16)]
    pub clients: usize,
    /// How long each measurement runs (e.g. `10s`, `500ms`, `1m`).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Only spread the clients over all peers (default: through the leader, then spread).
    #[arg(long, conflicts_with = "leader_only")]
    pub spread: bool,
    /// Only through the leader.
    #[arg(long)]
    pub leader_only: bool,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Debug, Args)]
pub struct ReadArgs {
    /// Concurrent clients, each sending its next read when the last is answered.
    #[arg(long, default_value_t = 16)]
    pub clients: usize,
    /// How long each of the four measurements runs.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Distinct keys written before the reads, read round-robin.
    #[arg(long, default_value_t = 100)]
    pub keys: usize,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Debug, Args)]
pub struct FailoverArgs {
    /// kill -9 trials per system.
    #[arg(long, default_value_t = 20)]
    pub trials: usize,
    /// Writers of the steady load, spread over all peers.
    #[arg(long, default_value_t = 16)]
    pub clients: usize,
    /// Steady load before each kill.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub settle: Duration,
    /// A write not answered within this is abandoned and sent again.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub request_timeout: Duration,
    /// Give up on a trial when no survivor acknowledges a write within this.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub max_window: Duration,
    /// Before the trials, run the steady load this long with no fault and count
    /// the elections (Raft term changes) it saw; the figure is `5m`.
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    pub steady: Duration,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Debug, Args)]
pub struct ScheduleArgs {
    /// Services handed to the scheduler alone.
    #[arg(long, default_value_t = 10_000)]
    pub services: usize,
    /// Replicas of each of those services.
    #[arg(long, default_value_t = 10)]
    pub replicas: u32,
    /// Nodes the scheduler alone places them on.
    #[arg(long, default_value_t = 1_000)]
    pub nodes: usize,
    /// Applies measured per size (1 and `--large` replicas) on the real cluster.
    #[arg(long, default_value_t = 3)]
    pub trials: usize,
    /// Replicas of the larger service applied on the real cluster.
    #[arg(long, default_value_t = 100)]
    pub large: u32,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Debug, Args)]
pub struct RescheduleArgs {
    /// Replicas on the agent that is killed.
    #[arg(long, default_value_t = 100)]
    pub replicas: u32,
    /// Trials (each on a fresh service).
    #[arg(long, default_value_t = 1)]
    pub trials: usize,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Debug, Args)]
pub struct FootprintArgs {
    /// Services (of 0 replicas) the loaded peer holds.
    #[arg(long, default_value_t = 10_000)]
    pub services: usize,
    /// How long the idle cluster runs before its memory is read.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub settle: Duration,
    #[command(flatten)]
    pub common: Common,
}

/// Most simulated agents `fan-in` may start.
pub const MAX_FANIN_AGENTS: usize = 20_000;

#[derive(Debug, Args)]
pub struct FanInArgs {
    /// Agent counts measured in turn (ascending; agents are added, never restarted),
    /// e.g. `1000,10000`.
    #[arg(long, value_delimiter = ',', default_values_t = [1000, 10000])]
    pub agents: Vec<usize>,
    /// How long each count is measured once all its agents are ready.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    #[command(flatten)]
    pub common: Common,
}

/// Checks a count flag is within `1..=max`; the error names the flag.
pub fn check_count(flag: &str, n: usize, max: usize) -> anyhow::Result<()> {
    if n == 0 || n > max {
        anyhow::bail!("--{flag} must be 1..={max}, not {n}");
    }
    Ok(())
}

/// `250ms`, `3s`, `2m`, or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration (want e.g. 500ms, 3s, 2m)"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        _ => return Err(format!("unknown unit {unit:?} in {s:?} (want ms, s or m)")),
    };
    let d = Duration::try_from_secs_f64(secs).map_err(|e| format!("{s:?}: {e}"))?;
    if d > MAX_DURATION {
        return Err(format!(
            "{s:?} is longer than the limit of {MAX_DURATION:?}"
        ));
    }
    Ok(d)
}

/// Checks the bounds the flags share; the error names the flag.
pub fn check_bounds(clients: usize, common: &Common) -> anyhow::Result<()> {
    if clients == 0 || clients > MAX_CLIENTS {
        anyhow::bail!("--clients must be 1..={MAX_CLIENTS}, not {clients}");
    }
    if common.value_size == 0 || common.value_size > MAX_VALUE_SIZE {
        anyhow::bail!(
            "--value-size must be 1..={MAX_VALUE_SIZE} bytes, not {}",
            common.value_size
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("3s"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("5"), Ok(Duration::from_secs(5)));
        assert!(parse_duration("3h").is_err());
        assert!(parse_duration("x").is_err());
        assert!(parse_duration("2m").is_ok() && parse_duration("61m").is_err());
    }
}
