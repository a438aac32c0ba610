//! `schedule`: the scheduler alone, then the whole path on a real cluster.
//!
//! 1. **Alone**: [`orion_apiserver::scheduler::schedule`], the pure function the
//!    leader's replica controller calls, places `--services` × `--replicas`
//!    requests on `--nodes` nodes in one call; the figure is placements per
//!    second of that call (the median of three).
//! 2. **apply → running**: one real agent; a service of 1, then of `--large`
//!    replicas, is applied; the window runs from the apply call until the leader's
//!    agent reports every replica running (placement, the Raft entry, the push to
//!    the agent, the process start and its report back). `--trials` each, median.

use std::collections::BTreeMap;
use std::time::Duration;

use orion_api::spec::Resources;
use orion_apiserver::scheduler::{schedule, NodeView, Request, Strategy};
use tokio::time::Instant;

use crate::args::{
    check_count, ScheduleArgs, MAX_BENCH_REPLICAS, MAX_NODES, MAX_SERVICES, MAX_TRIALS,
};
use crate::cluster::{OrionCluster, SIZE};
use crate::fleet::{self, median, Marked};
use crate::report::{Better, Figure, Report};

const LIMIT: Duration = Duration::from_secs(120);

pub async fn run(args: ScheduleArgs) -> anyhow::Result<Report> {
    check_count("services", args.services, MAX_SERVICES)?;
    check_count("nodes", args.nodes, MAX_NODES)?;
    check_count(
        "replicas",
        args.replicas as usize,
        MAX_BENCH_REPLICAS as usize,
    )?;
    check_count("large", args.large as usize, MAX_BENCH_REPLICAS as usize)?;
    check_count("trials", args.trials, MAX_TRIALS)?;
    let programs = super::orion_programs(&args.common)?;
    let mut report = Report::new(
        "schedule",
        serde_json::json!({
            "services": args.services,
            "replicas": args.replicas,
            "nodes": args.nodes,
            "trials": args.trials,
            "large": args.large,
        }),
    );

    let (per_s, took) = scheduler_alone(args.services, args.replicas, args.nodes)?;
    eprintln!(
        "scheduler alone: {} placements in {took:?}",
        args.services * args.replicas as usize
    );
    report.figures.push(Figure::new(
        format!(
            "schedule.alone.placements_per_s_{}x{}_on_{}_nodes",
            args.services, args.replicas, args.nodes
        ),
        "placements/s",
        Better::Higher,
        per_s,
        None,
    ));

    let marked = Marked::new("schedule");
    eprintln!("orion: starting a {SIZE}-member cluster and one agent");
    let mut cluster = OrionCluster::start(&programs, 4).await?;
    let leader = cluster.wait_healthy().await?;
    let client = cluster.client_of(leader)?;
    cluster.spawn_agent("worker").await?;
    fleet::wait_node_ready(&client, "worker", LIMIT).await?;
    for size in [1, args.large] {
        let mut windows = Vec::new();
        for trial in 0..args.trials {
            let service = format!("s{size}-{trial}");
            let start = Instant::now();
            fleet::apply(&client, [marked.service(&service, size)]).await?;
            let w =
                fleet::wait_running(&client, &service, size as usize, None, start, LIMIT).await?;
            windows.push(w.as_secs_f64() * 1000.0);
            client.delete_service(&service).await?;
        }
        report.notes.push(format!(
            "apply → {size} running, each trial (ms): {}",
            windows
                .iter()
                .map(|w| format!("{w:.0}"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
        report.figures.push(Figure::new(
            format!("schedule.apply_to_running_ms_{size}_replicas"),
            "ms",
            Better::Lower,
            median(windows),
            None,
        ));
    }
    report
        .notes
        .push("etcd has no scheduler: Orion alone".into());
    drop(cluster);
    Ok(report)
}

/// Places `services` × `replicas` requests on `nodes` nodes with room for all of
/// them; returns placements/s of the median of three calls, and that call's time.
fn scheduler_alone(
    services: usize,
    replicas: u32,
    nodes: usize,
) -> anyhow::Result<(f64, Duration)> {
    let each = Resources {
        cpu_millis: 10,
        memory_bytes: 8 << 20,
    };
    let total = services as u64 * u64::from(replicas);
    // Room for everything, spread evenly, with a margin.
    let per_node = total.div_ceil(nodes as u64) * 2;
    let views: Vec<NodeView> = (0..nodes)
        .map(|i| NodeView {
            name: format!("node-{i:05}"),
            labels: BTreeMap::from([("zone".to_string(), format!("z{}", i % 3))]),
            capacity: Resources {
                cpu_millis: each.cpu_millis * per_node,
                memory_bytes: each.memory_bytes * per_node,
            },
            allocated: Resources {
                cpu_millis: 0,
                memory_bytes: 0,
            },
            schedulable: true,
        })
        .collect();
    let requests: Vec<Request> = (0..services)
        .flat_map(|s| {
            (0..replicas).map(move |r| Request {
                service: format!("svc-{s:05}"),
                replica: r,
                resources: each,
                constraints: Vec::new(),
            })
        })
        .collect();
    let mut runs = Vec::new();
    for _ in 0..3 {
        let start = std::time::Instant::now();
        let plan = schedule(&views, &requests, Strategy::Spread, &BTreeMap::new());
        let took = start.elapsed();
        anyhow::ensure!(
            plan.placements.len() as u64 == total,
            "the scheduler placed {} of {total} replicas ({} unplaced)",
            plan.placements.len(),
            plan.unplaced.len()
        );
        runs.push(took);
    }
    runs.sort();
    let took = runs[1];
    Ok((total as f64 / took.as_secs_f64(), took))
}
