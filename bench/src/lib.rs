//! `orion-bench`: Orion measured beside etcd on the same machine, in the same run,
//! with the same client. Each subcommand is one scenario; it starts its own 3-member
//! clusters on loopback (Orion from the built `orion` binary, etcd from Debian's
//! `etcd-server`), both with client TLS, one at a time, data in temp dirs removed at
//! the end, on error and on Ctrl-C. Each run ends with one line per figure,
//! `name: orion=… etcd=… unit ratio=… (higher|lower is better)`, and writes a
//! markdown table and a JSON file describing the machine to `--out-dir`.
//!
//! # Layout
//!
//! - [`args`]: the subcommands and their flags, with their bounds.
//! - [`cluster`]: starting, killing and restarting the 3-member clusters.
//! - [`member`]: one server process, killed when dropped.
//! - [`kv`]: the shared HTTP client; Orion's REST API and etcd's v3 JSON gateway.
//! - [`load`]: closed-loop clients and HDR latency histograms.
//! - [`fleet`]: real agents and marked replica processes for the control-plane
//!   scenarios.
//! - [`scenario`]: `write`, `read`, `failover` (beside etcd); `schedule`,
//!   `reschedule`, `footprint` (Orion alone: etcd has no counterpart).
//! - [`report`]: ratio lines, markdown, JSON, the machine description.

pub mod args;
pub mod cluster;
pub mod fleet;
pub mod kv;
pub mod load;
pub mod member;
pub mod report;
pub mod scenario;

/// Runs one scenario and writes its report; returns the report.
pub async fn run(cli: args::Cli) -> anyhow::Result<report::Report> {
    // reqwest's default client (before the CA is known) needs a process-wide provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (report, out_dir) = match cli.scenario {
        args::Scenario::Write(a) => {
            let out = a.common.out_dir.clone();
            (scenario::write::run(a).await?, out)
        }
        args::Scenario::Read(a) => {
            let out = a.common.out_dir.clone();
            (scenario::read::run(a).await?, out)
        }
        args::Scenario::Failover(a) => {
            let out = a.common.out_dir.clone();
            (scenario::failover::run(a).await?, out)
        }
        args::Scenario::Schedule(a) => {
            let out = a.common.out_dir.clone();
            (scenario::schedule::run(a).await?, out)
        }
        args::Scenario::Reschedule(a) => {
            let out = a.common.out_dir.clone();
            (scenario::reschedule::run(a).await?, out)
        }
        args::Scenario::Footprint(a) => {
            let out = a.common.out_dir.clone();
            (scenario::footprint::run(a).await?, out)
        }
        args::Scenario::FanIn(a) => {
            let out = a.common.out_dir.clone();
            (scenario::fanin::run(a).await?, out)
        }
    };
    report.finish(&out_dir)?;
    Ok(report)
}
