//! The `orion-bench` binary: parses flags and runs the scenario until it ends or
//! Ctrl-C, which drops the clusters (killing their processes, removing their data).

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = orion_bench::args::Cli::parse();
    let outcome = tokio::select! {
        r = orion_bench::run(cli) => Some(r),
        _ = tokio::signal::ctrl_c() => None,
    };
    // Here the scenario's future, and with it every cluster, has been dropped.
    match outcome {
        Some(r) => r.map(|_| ()),
        None => {
            eprintln!("interrupted: the clusters were stopped and their data removed");
            std::process::exit(130);
        }
    }
}
