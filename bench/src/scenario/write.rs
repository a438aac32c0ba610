//! `write`: acknowledged writes/s and p50/p99/p999 latency with N closed-loop clients,
//! through the leader and spread over all members.

use std::sync::Arc;

use crate::args::{check_bounds, WriteArgs};
use crate::cluster::{Cluster, SIZE};
use crate::kv::{value_of, System};
use crate::load::{self, Op, Outcome};
use crate::report::{Better, Figure, Report};

pub async fn run(args: WriteArgs) -> anyhow::Result<Report> {
    check_bounds(args.clients, &args.common)?;
    let programs = super::programs(&args.common)?;
    let modes: Vec<&str> = if args.spread {
        vec!["spread"]
    } else if args.leader_only {
        vec!["leader"]
    } else {
        vec!["leader", "spread"]
    };
    let mut report = Report::new(
        "write",
        serde_json::json!({
            "clients": args.clients,
            "duration_s": args.duration.as_secs_f64(),
            "value_size": args.common.value_size,
            "members": SIZE,
        }),
    );
    let value: Arc<str> = value_of(args.common.value_size).into();
    let mut results: Vec<(System, Vec<Outcome>)> = Vec::new();
    for system in super::systems(&args.common) {
        eprintln!("{}: starting a {SIZE}-member cluster", system.name());
        let mut cluster = Cluster::start(system, &programs, args.clients).await?;
        let kv = cluster.kv();
        let mut outcomes = Vec::new();
        for mode in &modes {
            let leader = cluster.wait_for_leader().await?;
            let members: Vec<usize> = match *mode {
                "leader" => vec![leader],
                _ => (0..SIZE).collect(),
            };
            eprintln!(
                "{}: {mode}, {} clients, {:?}",
                system.name(),
                args.clients,
                args.duration
            );
            let o = load::run(
                &kv,
                args.clients,
                &members,
                args.duration,
                Op::Put {
                    value: value.clone(),
                },
            )
            .await?;
            super::note_errors(&mut report, system, mode, "writes", &o);
            outcomes.push(o);
        }
        results.push((system, outcomes));
    }
    for (i, mode) in modes.iter().enumerate() {
        let name = |f: &str| format!("write.{mode}.{f}");
        let get = |f: &dyn Fn(&Outcome) -> f64| {
            super::pair(&results, |os: &Vec<Outcome>| os.get(i).map_or(f64::NAN, f))
        };
        let (o, e) = get(&|o| o.per_second());
        report.figures.push(Figure::new(
            name("writes_per_s"),
            "writes/s",
            Better::Higher,
            o,
            e,
        ));
        for (label, q) in [("p50", 0.5), ("p99", 0.99), ("p999", 0.999)] {
            let (o, e) = get(&|o| o.ms(q));
            report.figures.push(Figure::new(
                name(&format!("{label}_ms")),
                "ms",
                Better::Lower,
                o,
                e,
            ));
        }
    }
    Ok(report)
}
