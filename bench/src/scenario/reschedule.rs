//! `reschedule`: one agent runs `--replicas` replicas of a service; a second agent
//! joins; then the first agent and its replica processes are killed (`kill -9`,
//! as when its machine dies). The window runs from the kill until the leader's
//! agents report every replica running on the other node. It is bounded below by
//! the node TTL (`node-ttl-ms`, 5 s by default): a node is only given up on once
//! its heartbeats have been missing that long.

use std::time::Duration;

use tokio::time::Instant;

use crate::args::{check_count, RescheduleArgs, MAX_BENCH_REPLICAS, MAX_TRIALS};
use crate::cluster::{OrionCluster, SIZE};
use crate::fleet::{self, median, Marked};
use crate::report::{Better, Figure, Report};

const LIMIT: Duration = Duration::from_secs(120);

pub async fn run(args: RescheduleArgs) -> anyhow::Result<Report> {
    check_count(
        "replicas",
        args.replicas as usize,
        MAX_BENCH_REPLICAS as usize,
    )?;
    check_count("trials", args.trials, MAX_TRIALS)?;
    let programs = super::orion_programs(&args.common)?;
    let mut report = Report::new(
        "reschedule",
        serde_json::json!({ "replicas": args.replicas, "trials": args.trials, "members": SIZE }),
    );
    let marked = Marked::new("reschedule");
    eprintln!("orion: starting a {SIZE}-member cluster");
    let mut cluster = OrionCluster::start(&programs, 4).await?;
    let leader = cluster.wait_healthy().await?;
    let client = cluster.client_of(leader)?;
    let n = args.replicas as usize;
    let mut windows = Vec::new();
    for trial in 0..args.trials {
        let (from, to) = (format!("from-{trial}"), format!("to-{trial}"));
        cluster.spawn_agent(&from).await?;
        fleet::wait_node_ready(&client, &from, LIMIT).await?;
        let service = format!("moved-{trial}");
        fleet::apply(&client, [marked.service(&service, args.replicas)]).await?;
        fleet::wait_running(&client, &service, n, Some(&from), Instant::now(), LIMIT).await?;
        cluster.spawn_agent(&to).await?;
        fleet::wait_node_ready(&client, &to, LIMIT).await?;

        let before = marked.pids();
        cluster.kill_agent(&from);
        let killed = Instant::now();
        // Its replicas die with the machine: only this trial's are running now.
        fleet::kill9(&before);
        let window = fleet::wait_running(&client, &service, n, Some(&to), killed, LIMIT).await?;
        eprintln!("orion: trial {trial}: {n} replicas run on {to} {window:?} after the kill");
        windows.push(window.as_secs_f64() * 1000.0);
        // Leave the next trial a clean slate.
        client.delete_service(&service).await?;
        cluster.kill_agent(&to);
        marked.kill_all();
        // The next trial's replicas must not be placed on this trial's nodes.
        fleet::wait_node(&client, &to, false, LIMIT).await?;
    }
    report.notes.push(format!(
        "windows (ms): {}; the node TTL is 5,000 ms (the default `node-ttl-ms`)",
        windows
            .iter()
            .map(|w| format!("{w:.0}"))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    report.figures.push(Figure::new(
        format!("reschedule.window_ms_{n}_replicas"),
        "ms",
        Better::Lower,
        median(windows),
        None,
    ));
    report
        .notes
        .push("etcd has no agents or replicas: Orion alone".into());
    drop(cluster);
    Ok(report)
}
