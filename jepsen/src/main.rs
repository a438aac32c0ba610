//! `orion-jepsen linear|set HISTORY.jsonl`: checks a recorded history and
//! prints the verdict as JSON; exits 1 if the history is invalid, 2 if the
//! linearizability search gave up.

use std::process::ExitCode;

use anyhow::{bail, Result};
use orion_jepsen::{history, linear, set};

fn main() -> Result<ExitCode> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [checker, path] = args.as_slice() else {
        bail!("usage: orion-jepsen linear|set HISTORY.jsonl");
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
            Ok(if report.valid {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        other => bail!("unknown checker {other:?}; usage: orion-jepsen linear|set HISTORY.jsonl"),
    }
}
