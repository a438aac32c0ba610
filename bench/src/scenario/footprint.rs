//! `footprint`: resident memory (VmRSS) of an idle peer and an idle agent, then of
//! the peers once they hold `--services` services (of 0 replicas, so the figure is
//! the control plane's own cost per service, not the processes').

use tokio::time::Instant;

use crate::args::{check_count, FootprintArgs, MAX_SERVICES};
use crate::cluster::{OrionCluster, SIZE};
use crate::fleet::{self, Marked};
use crate::report::{Better, Figure, Report};

/// Resources per apply request (the server's limit).
const PER_APPLY: usize = 100;

pub async fn run(args: FootprintArgs) -> anyhow::Result<Report> {
    check_count("services", args.services, MAX_SERVICES)?;
    let programs = super::orion_programs(&args.common)?;
    let mut report = Report::new(
        "footprint",
        serde_json::json!({
            "services": args.services,
            "settle_s": args.settle.as_secs_f64(),
            "members": SIZE,
        }),
    );
    let marked = Marked::new("footprint");
    eprintln!("orion: starting a {SIZE}-member cluster and one agent");
    let mut cluster = OrionCluster::start(&programs, 4).await?;
    let leader = cluster.wait_healthy().await?;
    let client = cluster.client_of(leader)?;
    cluster.spawn_agent("idle").await?;
    fleet::wait_node_ready(&client, "idle", std::time::Duration::from_secs(60)).await?;
    tokio::time::sleep(args.settle).await;

    let peers = |c: &OrionCluster| -> anyhow::Result<Vec<(usize, f64)>> {
        c.peer_pids()
            .into_iter()
            .map(|(m, pid)| Ok((m, fleet::rss_mib(pid)?)))
            .collect()
    };
    let idle = peers(&cluster)?;
    let agent_pid = cluster
        .agent_pid("idle")
        .ok_or_else(|| anyhow::anyhow!("the agent is not running"))?;
    let agent = fleet::rss_mib(agent_pid)?;
    let max_of = |v: &[(usize, f64)]| v.iter().map(|(_, r)| *r).fold(f64::NAN, f64::max);
    let leader_of = |v: &[(usize, f64)]| {
        v.iter()
            .find(|(m, _)| *m == leader)
            .map_or(f64::NAN, |(_, r)| *r)
    };
    report.notes.push(format!(
        "idle peers (MiB): {}",
        idle.iter()
            .map(|(m, r)| format!(
                "member {m}{} {r:.1}",
                if *m == leader { " (leader)" } else { "" }
            ))
            .collect::<Vec<_>>()
            .join(", ")
    ));

    eprintln!("orion: applying {} services", args.services);
    let start = Instant::now();
    let mut texts = Vec::new();
    for chunk in (0..args.services).collect::<Vec<_>>().chunks(PER_APPLY) {
        texts.push(
            chunk
                .iter()
                .map(|i| marked.service(&format!("svc-{i}"), 0))
                .collect::<Vec<_>>()
                .join("---\n"),
        );
    }
    fleet::apply(&client, texts).await?;
    let applied = start.elapsed();
    // Every peer applied it all: a linearizable list through each.
    for m in 0..SIZE {
        let n = cluster
            .client_of(m)?
            .services(orion_client::Consistency::Linearizable)
            .await?
            .items
            .len();
        anyhow::ensure!(n >= args.services, "member {m} holds {n} services");
    }
    tokio::time::sleep(args.settle).await;
    let loaded = peers(&cluster)?;

    report.figures.push(Figure::new(
        "footprint.peer_idle_rss_mib".into(),
        "MiB",
        Better::Lower,
        max_of(&idle),
        None,
    ));
    report.figures.push(Figure::new(
        "footprint.agent_idle_rss_mib".into(),
        "MiB",
        Better::Lower,
        agent,
        None,
    ));
    report.figures.push(Figure::new(
        format!("footprint.leader_rss_mib_with_{}_services", args.services),
        "MiB",
        Better::Lower,
        leader_of(&loaded),
        None,
    ));
    report.figures.push(Figure::new(
        format!("footprint.peer_max_rss_mib_with_{}_services", args.services),
        "MiB",
        Better::Lower,
        max_of(&loaded),
        None,
    ));
    report.figures.push(Figure::new(
        "footprint.apply_services_per_s".into(),
        "services/s",
        Better::Higher,
        args.services as f64 / applied.as_secs_f64(),
        None,
    ));
    report
        .notes
        .push("etcd has no services or agents: Orion alone".into());
    drop(cluster);
    Ok(report)
}
