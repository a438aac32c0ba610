//! `failover`: under a steady write load spread over all members, `kill -9` the leader,
//! and time from its death to the first acknowledged write that was *sent after* the
//! kill through a surviving member. The killed member is restarted and the cluster left
//! to settle before the next trial.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use hdrhistogram::Histogram;
use tokio::time::Instant;

use crate::args::{check_bounds, FailoverArgs, MAX_TRIALS};
use crate::cluster::{Cluster, SIZE};
use crate::kv::{value_of, Kv, System};
use crate::load::histogram;
use crate::report::{Better, Figure, Report};

/// A client whose write failed waits this long before the next, so clients pinned to
/// the dead member do not spin on refused connections.
const ERROR_PAUSE: Duration = Duration::from_millis(10);

/// Shared between the writers and the trial loop; times are nanoseconds since `epoch`.
struct Probe {
    epoch: Instant,
    stop: AtomicBool,
    killed: AtomicUsize,
    kill_at: AtomicU64,
    first_ack: AtomicU64,
    acks: AtomicU64,
}

impl Probe {
    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

fn spawn_writers(
    kv: &Kv,
    probe: &Arc<Probe>,
    clients: usize,
    value: &Arc<str>,
    timeout: Duration,
) -> tokio::task::JoinSet<()> {
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..clients {
        let (kv, probe, value) = (kv.clone(), probe.clone(), value.clone());
        let member = c % SIZE;
        tasks.spawn(async move {
            let mut i = 0u64;
            while !probe.stop.load(Ordering::SeqCst) {
                let started = probe.now();
                let key = format!("bench/{c}/{}", i % 1000);
                i += 1;
                match kv.put(member, &key, &value, Some(timeout)).await {
                    Ok(()) => {
                        probe.acks.fetch_add(1, Ordering::SeqCst);
                        if member != probe.killed.load(Ordering::SeqCst)
                            && started >= probe.kill_at.load(Ordering::SeqCst)
                        {
                            probe.first_ack.fetch_min(probe.now(), Ordering::SeqCst);
                        }
                    }
                    Err(_) => tokio::time::sleep(ERROR_PAUSE).await,
                }
            }
        });
    }
    tasks
}

/// What the trials of one system saw.
struct Trials {
    /// The windows (µs) of the trials that ended.
    windows: Vec<u64>,
    /// Trials that found no survivor in time.
    lost: usize,
    /// Elections during the steady load before the trials (`--steady`), if run.
    steady_elections: Option<u64>,
}

/// The highest term any member reports.
async fn max_term(kv: &Kv) -> anyhow::Result<u64> {
    let mut max = None;
    for m in 0..SIZE {
        if let Ok(t) = kv.term(m).await {
            max = max.max(Some(t));
        }
    }
    max.context("no member answered its status")
}

async fn trials(
    cluster: &mut Cluster,
    args: &FailoverArgs,
    value: &Arc<str>,
    system: System,
) -> anyhow::Result<Trials> {
    let kv = cluster.kv();
    let probe = Arc::new(Probe {
        epoch: Instant::now(),
        stop: AtomicBool::new(false),
        killed: AtomicUsize::new(usize::MAX),
        kill_at: AtomicU64::new(u64::MAX),
        first_ack: AtomicU64::new(u64::MAX),
        acks: AtomicU64::new(0),
    });
    let mut writers = spawn_writers(&kv, &probe, args.clients, value, args.request_timeout);
    let result = async {
        let mut windows = Vec::new();
        let mut lost = 0;
        let mut steady_elections = None;
        if !args.steady.is_zero() {
            cluster.wait_for_leader().await?;
            let before = max_term(&kv).await?;
            let acks = probe.acks.load(Ordering::SeqCst);
            eprintln!("{}: {:?} of steady load, no fault", system.name(), args.steady);
            tokio::time::sleep(args.steady).await;
            let after = max_term(&kv).await?;
            anyhow::ensure!(
                probe.acks.load(Ordering::SeqCst) > acks,
                "{}: no write was acknowledged during the steady load",
                system.name()
            );
            eprintln!("{}: {} elections during the steady load", system.name(), after.saturating_sub(before));
            steady_elections = Some(after.saturating_sub(before));
        }
        for trial in 1..=args.trials {
            let leader = cluster.wait_for_leader().await?;
            let before = probe.acks.load(Ordering::SeqCst);
            tokio::time::sleep(args.settle).await;
            if probe.acks.load(Ordering::SeqCst) == before {
                anyhow::bail!("{}: no write was acknowledged in the {:?} before trial {trial}", system.name(), args.settle);
            }
            probe.first_ack.store(u64::MAX, Ordering::SeqCst);
            probe.killed.store(leader, Ordering::SeqCst);
            cluster.kill9(leader);
            let kill_at = probe.now();
            probe.kill_at.store(kill_at, Ordering::SeqCst);
            let deadline = Instant::now() + args.max_window;
            let window = loop {
                let ack = probe.first_ack.load(Ordering::SeqCst);
                if ack != u64::MAX {
                    break Some(ack.saturating_sub(kill_at) / 1000);
                }
                if Instant::now() > deadline {
                    break None;
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            };
            match window {
                Some(us) => {
                    eprintln!("{} trial {trial}: killed member {leader}; first write through a survivor after {:.0} ms", system.name(), us as f64 / 1000.0);
                    windows.push(us);
                }
                None => {
                    eprintln!("{} trial {trial}: no survivor acknowledged a write within {:?}", system.name(), args.max_window);
                    lost += 1;
                }
            }
            probe.killed.store(usize::MAX, Ordering::SeqCst);
            probe.kill_at.store(u64::MAX, Ordering::SeqCst);
            cluster.restart(leader)?;
        }
        cluster.wait_for_leader().await?;
        Ok(Trials {
            windows,
            lost,
            steady_elections,
        })
    }
    .await;
    probe.stop.store(true, Ordering::SeqCst);
    writers.abort_all();
    while writers.join_next().await.is_some() {}
    result
}

pub async fn run(args: FailoverArgs) -> anyhow::Result<Report> {
    check_bounds(args.clients, &args.common)?;
    if args.trials == 0 || args.trials > MAX_TRIALS {
        anyhow::bail!("--trials must be 1..={MAX_TRIALS}, not {}", args.trials);
    }
    let programs = super::programs(&args.common)?;
    let mut report = Report::new(
        "failover",
        serde_json::json!({
            "trials": args.trials,
            "clients": args.clients,
            "settle_s": args.settle.as_secs_f64(),
            "request_timeout_s": args.request_timeout.as_secs_f64(),
            "value_size": args.common.value_size,
            "members": SIZE,
        }),
    );
    let value: Arc<str> = value_of(args.common.value_size).into();
    let mut results = Vec::new();
    for system in super::systems(&args.common) {
        eprintln!("{}: starting a {SIZE}-member cluster", system.name());
        let mut cluster = Cluster::start(system, &programs, args.clients).await?;
        let Trials {
            windows,
            lost,
            steady_elections,
        } = trials(&mut cluster, &args, &value, system).await?;
        drop(cluster);
        if lost > 0 {
            report.notes.push(format!(
                "{}: {lost} of {} trials saw no acknowledged write within {:?}",
                system.name(),
                args.trials,
                args.max_window
            ));
        }
        anyhow::ensure!(
            !windows.is_empty(),
            "{}: no trial saw a survivor acknowledge a write",
            system.name()
        );
        let mut h = histogram()?;
        for w in &windows {
            h.saturating_record((*w).max(1));
        }
        report.notes.push(format!(
            "{} windows (ms): {}",
            system.name(),
            windows
                .iter()
                .map(|w| format!("{:.0}", *w as f64 / 1000.0))
                .collect::<Vec<_>>()
                .join(", ")
        ));
        results.push((system, h, steady_elections));
    }
    let steady: Vec<(System, u64)> = results
        .iter()
        .filter_map(|(s, _, e)| Some((*s, (*e)?)))
        .collect();
    let results: Vec<(System, Histogram<u64>)> =
        results.into_iter().map(|(s, h, _)| (s, h)).collect();
    if !steady.is_empty() {
        let (o, e) = super::pair(&steady, |n| *n as f64);
        report.figures.push(Figure::new(
            format!(
                "failover.elections_in_{}s_steady_load",
                args.steady.as_secs()
            ),
            "elections",
            Better::Lower,
            o,
            e,
        ));
    }
    for (label, q) in [("p50", 0.5), ("p99", 0.99), ("max", 1.0)] {
        let (o, e) = super::pair(&results, |h| h.value_at_quantile(q) as f64 / 1000.0);
        report.figures.push(Figure::new(
            format!("failover.window_{label}_ms"),
            "ms",
            Better::Lower,
            o,
            e,
        ));
    }
    Ok(report)
}
