//! Whole runs in network namespaces (root): a short run of every workload under
//! every nemesis must find nothing, and peers told to serve stale reads must be
//! caught by the register checker within one short run.

use std::time::Duration;

use orion_jepsen::linear::Verdict;
use orion_jepsen::nemesis::Kind;
use orion_jepsen::run::{self, Options, Workload};

#[test]
fn a_short_run_with_every_workload_and_every_nemesis_finds_nothing() {
    let mut o = Options::new();
    o.workloads = vec![Workload::Register, Workload::Set, Workload::Convergence];
    o.nemesis = Kind::ALL.to_vec();
    o.time_limit = Duration::from_secs(60);
    let outcome = match run::run(&o) {
        Ok(v) => v,
        Err(e) => panic!("the run broke: {e:#}"),
    };
    let v = &outcome.verdicts;
    assert!(
        v.valid,
        "{}\n{}(everything in {})",
        v.summary(),
        v.details(),
        outcome.dir.display()
    );
    assert!(v.faults > 0, "no fault was injected");
}

#[test]
fn stale_reads_are_caught_within_one_short_run() {
    let mut o = Options::new();
    o.workloads = vec![Workload::Register];
    o.nemesis = vec![Kind::Partition, Kind::Pause];
    o.time_limit = Duration::from_secs(20);
    o.stale_reads = true;
    let outcome = match run::run(&o) {
        Ok(v) => v,
        Err(e) => panic!("the run broke: {e:#}"),
    };
    let register = outcome.verdicts.register.as_ref().map(|r| &r.verdict);
    assert!(
        matches!(register, Some(Verdict::NotLinearizable { .. })),
        "stale reads went unnoticed: {} ({})",
        outcome.verdicts.summary(),
        outcome.dir.display()
    );
}
