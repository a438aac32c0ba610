//! One module per subcommand. Each measures Orion, then (when compared) etcd, one
//! cluster at a time so they never compete for the machine, then reports.

pub mod failover;
pub mod fanin;
pub mod footprint;
pub mod read;
pub mod reschedule;
pub mod schedule;
pub mod write;

use crate::args::{Common, Compare};
use crate::cluster::Programs;
use crate::kv::System;

/// The systems a run measures, Orion first.
fn systems(common: &Common) -> Vec<System> {
    match common.compare {
        Compare::Etcd => vec![System::Orion, System::Etcd],
        Compare::None => vec![System::Orion],
    }
}

/// Largest `--orion-config` file read.
const MAX_ORION_CONFIG_BYTES: u64 = 64 << 10;

/// The `orion` binary: `--orion-bin`, else the one next to this program (the same
/// target directory and profile).
fn programs(common: &Common) -> anyhow::Result<Programs> {
    programs_for(common, common.compare == Compare::Etcd)
}

/// [`programs`] for a scenario that measures Orion alone (etcd has no scheduler,
/// agents or services to measure beside it): etcd is not checked for.
fn orion_programs(common: &Common) -> anyhow::Result<Programs> {
    programs_for(common, false)
}

fn programs_for(common: &Common, with_etcd: bool) -> anyhow::Result<Programs> {
    let orion = match &common.orion_bin {
        Some(p) => p.clone(),
        None => std::env::current_exe()?
            .parent()
            .map(|d| d.join("orion"))
            .ok_or_else(|| anyhow::anyhow!("cannot tell where orion-bench is"))?,
    };
    anyhow::ensure!(
        orion.is_file(),
        "no orion binary at {} (build it: `cargo build --release --bin orion`, or pass --orion-bin)",
        orion.display()
    );
    if with_etcd {
        // Checked before any cluster starts, so a missing etcd fails at once.
        let runs = std::process::Command::new(&common.etcd_bin)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
        anyhow::ensure!(
            runs,
            "cannot run etcd ({}): install Debian's etcd-server (`make deps` does), or pass --etcd-bin, or --compare none",
            common.etcd_bin.display()
        );
    }
    let orion_config = match &common.orion_config {
        None => None,
        Some(path) => {
            let meta = std::fs::metadata(path)
                .map_err(|e| anyhow::anyhow!("--orion-config {}: {e}", path.display()))?;
            anyhow::ensure!(
                meta.len() <= MAX_ORION_CONFIG_BYTES,
                "--orion-config {} is {} bytes, over the limit of {MAX_ORION_CONFIG_BYTES}",
                path.display(),
                meta.len()
            );
            Some(
                std::fs::read_to_string(path)
                    .map_err(|e| anyhow::anyhow!("--orion-config {}: {e}", path.display()))?,
            )
        }
    };
    Ok(Programs {
        orion,
        orion_config,
        etcd: common.etcd_bin.clone(),
    })
}

/// The figures of one measured pair: Orion's value and etcd's, if measured.
/// Notes a run's failed requests in the report, naming the system and the case.
fn note_errors(
    report: &mut crate::report::Report,
    system: System,
    case: &str,
    what: &str,
    o: &crate::load::Outcome,
) {
    if o.errors > 0 {
        report.notes.push(format!(
            "{} {case}: {} {what} failed (first: {})",
            system.name(),
            o.errors,
            o.first_error.as_deref().unwrap_or("?")
        ));
    }
}

fn pair<T>(results: &[(System, T)], f: impl Fn(&T) -> f64) -> (f64, Option<f64>) {
    let of = |s: System| results.iter().find(|(x, _)| *x == s).map(|(_, r)| f(r));
    (of(System::Orion).unwrap_or(f64::NAN), of(System::Etcd))
}
