//! `orion-jepsen`: runs Orion under faults in network namespaces (root), or
//! checks a saved history.
//!
//! ```text
//! orion-jepsen --time-limit 120 --nemesis all --workload register,set
//! orion-jepsen --workload convergence --nemesis partition,kill
//! orion-jepsen check linear|set HISTORY.jsonl
//! ```
//!
//! Exit status: 0 valid, 1 an anomaly was found, 2 the linearizability search
//! gave up (nothing proven), 3 usage error or the run itself broke.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use clap::{Parser, Subcommand};
use orion_jepsen::nemesis::Kind;
use orion_jepsen::run::{self, Workload};
use orion_jepsen::{history, linear, set, timeline};

#[derive(Parser)]
#[command(name = "orion-jepsen", args_conflicts_with_subcommands = true)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    /// Seconds the workloads run (faults stop a few seconds before the end).
    #[arg(long, default_value_t = 60)]
    time_limit: u64,
    /// `all`, `none`, or a list of partition, slow, kill, pause, membership, clock.
    #[arg(long, default_value = "all")]
    nemesis: String,
    /// A list of register, set, convergence; or `all`.
    #[arg(long, default_value = "register,set")]
    workload: String,
    /// Control-plane peers (5 makes ring partitions possible).
    #[arg(long, default_value_t = 3)]
    peers: usize,
    /// Seed of the fault schedule (random by default; printed either way).
    #[arg(long)]
    seed: Option<u64>,
    /// Tell peers to serve stale local reads (debug builds): the register checker must fail.
    #[arg(long)]
    stale_reads: bool,
    /// Where each run's folder goes.
    #[arg(long)]
    results: Option<PathBuf>,
    /// Run this many times, stopping at the first anomaly.
    #[arg(long, default_value_t = 1)]
    runs: u32,
}

#[derive(Subcommand)]
enum Command {
    /// Checks a saved history.
    Check {
        /// `linear` (register) or `set`.
        checker: String,
        file: PathBuf,
    },
    /// Draws a run folder's `timeline.html` again from its history and faults.
    Timeline { dir: PathBuf },
}

fn main() -> ExitCode {
    let args = Args::parse();
    match args.command {
        Some(Command::Check { checker, file }) => check(&checker, &file),
        Some(Command::Timeline { dir }) => redraw(&dir),
        None => test(&args),
    }
    .unwrap_or_else(|e| {
        eprintln!("orion-jepsen: {e:#}");
        ExitCode::from(3)
    })
}

fn test(args: &Args) -> Result<ExitCode> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    // Ctrl-C stops the run, which then tears down its processes and namespaces;
    // a second Ctrl-C exits at once.
    let mut opts = run::Options::new();
    let stop = opts.stop.clone();
    signal_hook::flag::register_conditional_shutdown(signal_hook::consts::SIGINT, 1, stop.clone())?;
    signal_hook::flag::register(signal_hook::consts::SIGINT, stop.clone())?;
    signal_hook::flag::register(signal_hook::consts::SIGTERM, stop)?;
    opts.workloads = Workload::parse_list(&args.workload)?;
    opts.nemesis = Kind::parse_list(&args.nemesis)?;
    opts.time_limit = Duration::from_secs(args.time_limit);
    opts.peers = args.peers;
    opts.stale_reads = args.stale_reads;
    if let Some(r) = &args.results {
        opts.results = r.clone();
    }
    for i in 0..args.runs {
        opts.seed = args.seed.map_or_else(rand::random, |s| s + u64::from(i));
        let outcome = run::run(&opts)?;
        println!("{}: {}", outcome.dir.display(), outcome.verdicts.summary());
        if !outcome.verdicts.valid {
            return Ok(ExitCode::from(if outcome.verdicts.unknown { 2 } else { 1 }));
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn redraw(dir: &std::path::Path) -> Result<ExitCode> {
    let ops = history::read_jsonl(dir.join("history.jsonl"))?;
    let faults: Vec<timeline::Band> =
        serde_json::from_slice(&std::fs::read(dir.join("faults.json"))?)?;
    let summary = std::fs::read(dir.join("verdict.json"))
        .ok()
        .and_then(|v| serde_json::from_slice::<serde_json::Value>(&v).ok())
        .map(|v| format!("valid: {}", v["valid"]))
        .unwrap_or_default();
    let title = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let names: BTreeMap<u64, String> = std::fs::read(dir.join("processes.json"))
        .ok()
        .and_then(|v| serde_json::from_slice(&v).ok())
        .unwrap_or_default();
    let page = dir.join("timeline.html");
    timeline::write_named(&page, &title, &ops, &faults, &summary, &names)?;
    Ok(ExitCode::SUCCESS)
}

fn check(checker: &str, file: &std::path::Path) -> Result<ExitCode> {
    let ops = history::read_jsonl(file)?;
    match checker {
        "linear" => {
            let report = linear::check(&ops, &linear::Options::default())?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            Ok(match report.verdict {
                linear::Verdict::Linearizable => ExitCode::SUCCESS,
                linear::Verdict::NotLinearizable { .. } => ExitCode::from(1),
                linear::Verdict::Unknown => ExitCode::from(2),
            })
        }
        "set" => {
            let report = set::check(&ops)?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            Ok(ExitCode::from(u8::from(!report.valid)))
        }
        other => anyhow::bail!("unknown checker {other:?}: use linear or set"),
    }
}
