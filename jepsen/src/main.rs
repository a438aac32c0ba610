//! `orion-jepsen linear|set HISTORY.jsonl`: checks a recorded history and
//! prints the report as JSON. Exit status: 0 valid, 1 invalid, 2 the
//! linearizability search gave up, 3 usage or input error.

use std::process::ExitCode;

use anyhow::{bail, Result};
use orion_jepsen::{history, linear, set};

const USAGE: &str = "usage: orion-jepsen linear|set HISTORY.jsonl";

fn main() -> ExitCode {
    run().unwrap_or_else(|e| {
        eprintln!("orion-jepsen: {e:#}");
        ExitCode::from(3)
    })
}

fn run() -> Result<ExitCode> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [checker, path] = args.as_slice() else {
        bail!(USAGE);
    };
    let ops = history::read_jsonl(path)?;
    match checker.as_str() {
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
        other => bail!("unknown checker {other:?}; {USAGE}"),
    }
}
