//! `read`: reads/s and p50/p99 latency with N closed-loop clients over preloaded keys:
//! Orion's linearizable and `?stale=true` reads against etcd's default (linearizable)
//! and serializable ranges, each through the leader and through one follower.

use crate::args::{check_bounds, ReadArgs};
use crate::cluster::{Cluster, SIZE};
use crate::kv::{value_of, ReadMode, System};
use crate::load::{self, Op, Outcome};
use crate::report::{Better, Figure, Report};

/// Upper bound on `--keys`.
const MAX_KEYS: usize = 100_000;

const CASES: [(&str, ReadMode, bool); 4] = [
    ("linearizable.leader", ReadMode::Linearizable, true),
    ("linearizable.follower", ReadMode::Linearizable, false),
    ("stale.leader", ReadMode::Stale, true),
    ("stale.follower", ReadMode::Stale, false),
];

pub async fn run(args: ReadArgs) -> anyhow::Result<Report> {
    check_bounds(args.clients, &args.common)?;
    if args.keys == 0 || args.keys > MAX_KEYS {
        anyhow::bail!("--keys must be 1..={MAX_KEYS}, not {}", args.keys);
    }
    let programs = super::programs(&args.common)?;
    let mut report = Report::new(
        "read",
        serde_json::json!({
            "clients": args.clients,
            "duration_s": args.duration.as_secs_f64(),
            "value_size": args.common.value_size,
            "keys": args.keys,
            "members": SIZE,
            "stale_means": "orion ?stale=true, etcd serializable range",
        }),
    );
    let value = value_of(args.common.value_size);
    let mut results: Vec<(System, Vec<Outcome>)> = Vec::new();
    for system in super::systems(&args.common) {
        eprintln!("{}: starting a {SIZE}-member cluster", system.name());
        let mut cluster = Cluster::start(system, &programs, args.clients).await?;
        let kv = cluster.kv();
        load::preload(&kv, args.keys, &value).await?;
        let mut outcomes = Vec::new();
        for (name, mode, via_leader) in CASES {
            let leader = cluster.wait_for_leader().await?;
            let member = if via_leader {
                leader
            } else {
                (leader + 1) % SIZE
            };
            eprintln!(
                "{}: {name}, {} clients, {:?}",
                system.name(),
                args.clients,
                args.duration
            );
            let o = load::run(
                &kv,
                args.clients,
                &[member],
                args.duration,
                Op::Get {
                    mode,
                    keys: args.keys,
                },
            )
            .await?;
            super::note_errors(&mut report, system, name, "reads", &o);
            outcomes.push(o);
        }
        results.push((system, outcomes));
    }
    for (i, (case, _, _)) in CASES.iter().enumerate() {
        let name = |f: &str| format!("read.{case}.{f}");
        let get = |f: &dyn Fn(&Outcome) -> f64| {
            super::pair(&results, |os: &Vec<Outcome>| os.get(i).map_or(f64::NAN, f))
        };
        let (o, e) = get(&|o| o.per_second());
        report.figures.push(Figure::new(
            name("reads_per_s"),
            "reads/s",
            Better::Higher,
            o,
            e,
        ));
        for (label, q) in [("p50", 0.5), ("p99", 0.99)] {
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
