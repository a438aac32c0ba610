//! What a run prints and keeps: one `ratio` line per figure, and a markdown table and
//! a JSON file per run with the machine described.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use serde::Serialize;

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Better {
    Higher,
    Lower,
}

/// One measured quantity, for Orion and (when compared) etcd.
#[derive(Debug, Clone, Serialize)]
pub struct Figure {
    /// e.g. `write.leader.writes_per_s`.
    pub name: String,
    pub unit: &'static str,
    pub better: Better,
    pub orion: f64,
    pub etcd: Option<f64>,
    /// `orion / etcd`.
    pub ratio: Option<f64>,
}

impl Figure {
    pub fn new(
        name: String,
        unit: &'static str,
        better: Better,
        orion: f64,
        etcd: Option<f64>,
    ) -> Self {
        let ratio = etcd.filter(|e| *e > 0.0).map(|e| orion / e);
        Figure {
            name,
            unit,
            better,
            orion,
            etcd,
            ratio,
        }
    }

    /// `write.leader.writes_per_s: orion=1900 etcd=1800 writes/s ratio=1.06 (higher is better)`
    pub fn line(&self) -> String {
        let etcd = self.etcd.map_or("-".to_string(), fmt);
        let ratio = self.ratio.map_or("-".to_string(), |r| format!("{r:.2}"));
        let better = match self.better {
            Better::Higher => "higher is better",
            Better::Lower => "lower is better",
        };
        format!(
            "{}: orion={} etcd={} {} ratio={ratio} ({better})",
            self.name,
            fmt(self.orion),
            etcd,
            self.unit
        )
    }
}

fn fmt(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

/// The machine the run was on.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub cores: usize,
    pub cpu: String,
    pub memory_mib: u64,
    pub kernel: String,
    /// The 1-minute load average when the run started: above ~1.5 on a 2-core machine,
    /// other work was competing with the run and its figures mean little.
    pub load_1m: f64,
}

impl Machine {
    pub fn describe() -> Self {
        let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        let cpuinfo = read("/proc/cpuinfo");
        let cpu = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split(':').nth(1))
            .map_or("unknown".into(), |s| s.trim().to_string());
        let memory_mib = read("/proc/meminfo")
            .lines()
            .find(|l| l.starts_with("MemTotal:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<u64>().ok())
            .map_or(0, |kb| kb / 1024);
        Machine {
            cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
            cpu,
            memory_mib,
            kernel: read("/proc/sys/kernel/osrelease").trim().to_string(),
            load_1m: read("/proc/loadavg")
                .split_whitespace()
                .next()
                .and_then(|s| s.parse().ok())
                .unwrap_or(f64::NAN),
        }
    }

    pub fn line(&self) -> String {
        format!(
            "{} cores ({}), {} MiB, Linux {}, load average {:.2} at start",
            self.cores, self.cpu, self.memory_mib, self.kernel, self.load_1m
        )
    }
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub scenario: &'static str,
    /// The command line that reproduces this run.
    pub command: String,
    /// Seconds since the Unix epoch when the run started.
    pub started_unix: u64,
    pub machine: Machine,
    /// The scenario's settings (clients, duration, value size, ...).
    pub settings: serde_json::Value,
    pub figures: Vec<Figure>,
    /// Anything a reader must know (errors seen, trials that failed, ...).
    pub notes: Vec<String>,
}

impl Report {
    pub fn new(scenario: &'static str, settings: serde_json::Value) -> Self {
        let args: Vec<String> = std::env::args().collect();
        let command = std::iter::once("orion-bench".to_string())
            .chain(args.into_iter().skip(1))
            .collect::<Vec<_>>()
            .join(" ");
        Report {
            scenario,
            command,
            started_unix: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            machine: Machine::describe(),
            settings,
            figures: Vec::new(),
            notes: Vec::new(),
        }
    }

    pub fn markdown(&self) -> String {
        let mut s = format!(
            "### `{}`\n\n{}\n\nSettings: `{}`\n\n| figure | Orion | etcd | ratio | |\n|---|---|---|---|---|\n",
            self.command,
            self.machine.line(),
            self.settings
        );
        for f in &self.figures {
            s.push_str(&format!(
                "| {} ({}) | {} | {} | {} | {} is better |\n",
                f.name,
                f.unit,
                fmt(f.orion),
                f.etcd.map_or("-".into(), fmt),
                f.ratio.map_or("-".into(), |r| format!("{r:.2}")),
                match f.better {
                    Better::Higher => "higher",
                    Better::Lower => "lower",
                }
            ));
        }
        for n in &self.notes {
            s.push_str(&format!("\n- {n}"));
        }
        s.push('\n');
        s
    }

    /// Prints the ratio lines and writes `<scenario>-<time>.md` and `.json` in `dir`.
    pub fn finish(&self, dir: &Path) -> anyhow::Result<(PathBuf, PathBuf)> {
        for n in &self.notes {
            println!("note: {n}");
        }
        for f in &self.figures {
            println!("{}", f.line());
        }
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let stem = format!("{}-{}", self.scenario, self.started_unix);
        let md = dir.join(format!("{stem}.md"));
        let json = dir.join(format!("{stem}.json"));
        std::fs::write(&md, self.markdown())
            .with_context(|| format!("cannot write {}", md.display()))?;
        let body = serde_json::to_vec_pretty(self)?;
        std::fs::write(&json, body).with_context(|| format!("cannot write {}", json.display()))?;
        println!("wrote {} and {}", md.display(), json.display());
        Ok((md, json))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratio_line_names_both_values() {
        let f = Figure::new(
            "write.leader.writes_per_s".into(),
            "writes/s",
            Better::Higher,
            1500.0,
            Some(1000.0),
        );
        assert_eq!(
            f.line(),
            "write.leader.writes_per_s: orion=1500 etcd=1000 writes/s ratio=1.50 (higher is better)"
        );
        let alone = Figure::new("x".into(), "ms", Better::Lower, 1.5, None);
        assert!(alone.line().contains("etcd=- ms ratio=-"));
    }
}
