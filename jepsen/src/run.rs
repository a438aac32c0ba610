//! One whole run: namespaces, a cluster, the chosen workloads against it while
//! the nemesis schedule works, healing, the final phase, the checkers, and the
//! results folder `<results>/<timestamp>-<label>/`:
//!
//! - `history.jsonl`: every event of every workload;
//! - `faults.json`: every fault with its time span; `processes.json`: what each
//!   client process is;
//! - `verdict.json`: each checker's report and the overall verdict;
//! - `timeline.html`: operations and faults on one time axis;
//! - `peer-<slot>.log`, `agent-<host>.log`: the processes' logs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use serde::Serialize;
use tokio::time::Instant;

use crate::cluster::Cluster;
use crate::convergence::{self, ConvergenceReport};
use crate::harness::{in_namespaces, orion_bin, runtime};
use crate::history::{self, Op};
use crate::hosts::Net;
use crate::linear;
use crate::nemesis::schedule::{self, Plan};
use crate::nemesis::{Faults, Kind};
use crate::register::{self, Recorder};
use crate::set::{self, SetReport};
use crate::set_workload;
use crate::timeline::{self, Band};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Workload {
    Register,
    Set,
    Convergence,
}

impl FromStr for Workload {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<Workload> {
        Ok(match s {
            "register" => Workload::Register,
            "set" => Workload::Set,
            "convergence" | "workloads" => Workload::Convergence,
            other => bail!(
                "unknown workload {other:?}: use register, set, convergence, or a comma-separated list"
            ),
        })
    }
}

impl Workload {
    pub fn parse_list(s: &str) -> anyhow::Result<Vec<Workload>> {
        let mut w: Vec<Workload> = if s.trim() == "all" {
            vec![Workload::Register, Workload::Set, Workload::Convergence]
        } else {
            s.split(',')
                .map(|x| x.trim().parse())
                .collect::<anyhow::Result<_>>()?
        };
        w.sort_unstable();
        w.dedup();
        anyhow::ensure!(!w.is_empty(), "no workload given");
        Ok(w)
    }
}

#[derive(Debug, Clone)]
pub struct Options {
    pub workloads: Vec<Workload>,
    pub nemesis: Vec<Kind>,
    /// How long the workloads run; the faults stop a few seconds earlier.
    pub time_limit: Duration,
    pub peers: usize,
    pub seed: u64,
    /// Peers serve linearizable reads from local state (debug builds): the
    /// register checker must then fail.
    pub stale_reads: bool,
    /// The folder that receives one folder per run.
    pub results: PathBuf,
    /// Set (by a signal handler) to stop the run: it tears everything down and
    /// fails.
    pub stop: Arc<AtomicBool>,
}

impl Options {
    /// Defaults: register and set, every nemesis, 60 s, 3 peers, a random seed,
    /// results under this crate's `results/`.
    pub fn new() -> Options {
        Options {
            workloads: vec![Workload::Register, Workload::Set],
            nemesis: Kind::ALL.to_vec(),
            time_limit: Duration::from_secs(60),
            peers: 3,
            seed: rand::random(),
            stale_reads: false,
            results: Path::new(env!("CARGO_MANIFEST_DIR")).join("results"),
            stop: Arc::new(AtomicBool::new(false)),
        }
    }

    fn label(&self) -> String {
        let w: Vec<String> = self
            .workloads
            .iter()
            .map(|w| format!("{w:?}").to_lowercase())
            .collect();
        let mut l = w.join("+");
        if self.stale_reads {
            l.push_str("-stale-reads");
        }
        l
    }

    fn agents(&self) -> usize {
        if self.workloads.contains(&Workload::Convergence) {
            2
        } else {
            0
        }
    }
}

impl Default for Options {
    fn default() -> Self {
        Options::new()
    }
}

/// The verdicts of one run.
#[derive(Debug, Serialize)]
pub struct Verdicts {
    /// No anomaly anywhere.
    pub valid: bool,
    /// The register checker gave up (search budget), so nothing was proven.
    pub unknown: bool,
    pub seed: u64,
    pub peers: usize,
    pub time_limit_s: u64,
    pub nemesis: Vec<Kind>,
    pub events: usize,
    pub faults: usize,
    /// Set when the cluster did not recover (one leader, every peer a voter)
    /// within 60 s of the last heal.
    pub recovery: Option<String>,
    pub register: Option<linear::Report>,
    pub set: Option<SetReport>,
    pub convergence: Option<ConvergenceReport>,
    /// ERROR lines in each process's log (`peer-1.log`: 0). An ordinary fault is
    /// a WARN, so for kill, pause and partition runs these should be near zero.
    pub error_lines: BTreeMap<String, usize>,
}

impl Verdicts {
    /// One paragraph for people.
    pub fn summary(&self) -> String {
        let mut parts = vec![format!(
            "{} — {} events, {} faults, seed {}",
            if self.valid {
                "VALID"
            } else if self.unknown {
                "UNKNOWN"
            } else {
                "INVALID"
            },
            self.events,
            self.faults,
            self.seed
        )];
        if let Some(r) = &self.recovery {
            parts.push(format!("recovery: {r}"));
        }
        if !self.error_lines.is_empty() {
            let total: usize = self.error_lines.values().sum();
            parts.push(format!(
                "{total} ERROR log lines ({})",
                self.error_lines
                    .iter()
                    .map(|(log, n)| format!("{log} {n}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        if let Some(r) = &self.register {
            parts.push(format!("register: {}", verdict_word(&r.verdict)));
        }
        if let Some(s) = &self.set {
            parts.push(format!(
                "set: {} acknowledged adds, {} lost{}",
                s.acknowledged,
                s.lost.len(),
                if s.valid { "" } else { " — INVALID" }
            ));
        }
        if let Some(c) = &self.convergence {
            parts.push(match c.converged_after_s {
                Some(t) => format!("convergence: converged {t:.1} s after the final apply"),
                None => format!(
                    "convergence: NOT converged within {} s ({})",
                    convergence::BOUND.as_secs(),
                    c.problems()
                ),
            });
        }
        parts.join("; ")
    }
}

impl Verdicts {
    /// What shows each anomaly: the explanation and shortest failing window of
    /// the register history, and the set's lost or unexpected elements. Empty
    /// when there is none.
    pub fn details(&self) -> String {
        let mut out = String::new();
        if let Some(r) = &self.register {
            for (key, k) in &r.keys {
                if let linear::Verdict::NotLinearizable { window, .. } = &k.verdict {
                    out.push_str(&format!(
                        "register key {key}: {}\nshortest window of history that shows it:\n",
                        k.explanation.as_deref().unwrap_or("not linearizable")
                    ));
                    for op in window {
                        out.push_str(&serde_json::to_string(op).unwrap_or_default());
                        out.push('\n');
                    }
                }
            }
        }
        if let Some(s) = self.set.as_ref().filter(|s| !s.valid) {
            out.push_str(&format!(
                "set: lost {:?}; unexpected {:?}\n",
                s.lost, s.unexpected
            ));
        }
        out
    }
}

fn verdict_word(v: &linear::Verdict) -> &'static str {
    match v {
        linear::Verdict::Linearizable => "linearizable",
        linear::Verdict::NotLinearizable { .. } => "NOT linearizable",
        linear::Verdict::Unknown => "unknown (search gave up)",
    }
}

/// What a run left behind.
pub struct Outcome {
    pub dir: PathBuf,
    pub verdicts: Verdicts,
}

const REGISTER_KEYS: [&str; 3] = ["r0", "r1", "r2"];

/// Runs the whole thing; `Err` means the run itself broke (not an anomaly).
pub fn run(opts: &Options) -> anyhow::Result<Outcome> {
    anyhow::ensure!(opts.peers >= 3, "at least 3 peers");
    let out = opts
        .results
        .join(format!("{}-{}", timestamp(), opts.label()));
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    eprintln!(
        "orion-jepsen: {} for {:?}, nemesis {:?}, {} peers, seed {}; results in {}",
        opts.label(),
        opts.time_limit,
        opts.nemesis,
        opts.peers,
        opts.seed,
        out.display()
    );
    let work = tempfile::tempdir()?;
    let hosts = opts.peers + opts.agents();
    let o = opts.clone();
    let outdir = out.clone();
    let result = in_namespaces(hosts, work.path(), move |net, dir| {
        let rt = runtime()?;
        rt.block_on(async {
            let rec = Arc::new(Recorder::default());
            let mut faults = Faults::default();
            let interrupted = async {
                while !o.stop.load(Ordering::Relaxed) {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            };
            let v = tokio::select! {
                v = body(net, dir, &o, &rec, &mut faults) => v,
                () = interrupted => Err(anyhow::anyhow!("interrupted")),
            };
            convergence::kill_replicas(&net.run);
            let ops = rec.history();
            save(
                &outdir,
                &ops,
                &faults.bands,
                &lane_names(&o),
                v.as_ref().ok(),
            )?;
            v
        })
    });
    // Logs are worth keeping whatever happened.
    copy_logs(work.path(), &out);
    let mut verdicts = result?;
    verdicts.error_lines = count_error_lines(&out);
    std::fs::write(
        out.join("verdict.json"),
        serde_json::to_vec_pretty(&verdicts)?,
    )?;
    eprintln!("{}", verdicts.summary());
    eprint!("{}", verdicts.details());
    Ok(Outcome { dir: out, verdicts })
}

async fn body(
    net: &Net,
    dir: &Path,
    o: &Options,
    rec: &Arc<Recorder>,
    faults: &mut Faults,
) -> anyhow::Result<Verdicts> {
    let config = if o.stale_reads {
        "debug-stale-reads = true\n"
    } else {
        ""
    };
    let mut cluster = Cluster::start(net, o.peers, &orion_bin()?, dir, config).await?;
    let agent_hosts = net.hosts[o.peers..].to_vec();
    let nodes: Vec<String> = agent_hosts.iter().map(convergence::node_name).collect();
    let agents = if agent_hosts.is_empty() {
        None
    } else {
        Some(convergence::start_agents(net, &cluster, &agent_hosts, dir).await?)
    };
    let until = Instant::now() + o.time_limit;
    let mut tasks = Vec::new();
    let urls = convergence::urls(&cluster);
    let (ca, token) = (cluster.ca_pem.clone(), cluster.admin_token.clone());
    let new_client = |urls: &[String], secs| {
        register::workload_client(urls, &ca, &token, Duration::from_secs(secs))
    };
    if o.workloads.contains(&Workload::Register) {
        let keys: Vec<String> = REGISTER_KEYS.iter().map(|k| k.to_string()).collect();
        for id in 0..register::CLIENTS_PER_PEER * o.peers as u64 {
            let base = urls[id as usize % urls.len()].clone();
            tasks.push(tokio::spawn(register::process(
                id,
                new_client(&[base], 2)?,
                keys.clone(),
                until,
                rec.clone(),
            )));
        }
    }
    if o.workloads.contains(&Workload::Set) {
        for (i, base) in urls.iter().enumerate() {
            tasks.push(tokio::spawn(set_workload::adder(
                set_workload::FIRST_ADDER + i as u64,
                new_client(std::slice::from_ref(base), 2)?,
                until,
                rec.clone(),
            )));
        }
    }
    if o.workloads.contains(&Workload::Convergence) {
        tasks.push(tokio::spawn(convergence::driver(
            new_client(&urls, 5)?,
            net.run.clone(),
            nodes.clone(),
            until,
            rec.clone(),
        )));
    }
    let plan = Plan {
        kinds: o.nemesis.clone(),
        seed: o.seed,
        agents: agent_hosts,
    };
    let scheduled = schedule::run(net, &mut cluster, rec, &plan, until, faults).await;
    for t in tasks {
        t.await?;
    }
    scheduled.context("the nemesis failed")?;
    anyhow::ensure!(faults.is_healed(), "faults left in force");

    // Final phase: everything healed.
    let recovery = cluster
        .settled(Duration::from_secs(60))
        .await
        .err()
        .map(|e| format!("{e:#}"));
    let urls = convergence::urls(&cluster);
    let final_client = new_client(&urls, 10)?;
    if o.workloads.contains(&Workload::Set) {
        let base = &urls[rand::random_range(0..urls.len())];
        set_workload::final_read(
            &final_client.at(base),
            rec,
            Instant::now() + Duration::from_secs(30),
        )
        .await?;
    }
    let convergence = if o.workloads.contains(&Workload::Convergence) {
        convergence::final_uncordon(&final_client, &nodes, rec).await?;
        let desired = convergence::final_apply(&final_client, &net.run, rec).await?;
        Some(convergence::wait_converged(&net.run, &desired, &final_client, &nodes).await)
    } else {
        None
    };
    drop(agents);
    drop(cluster);

    let ops = rec.history();
    let register = if o.workloads.contains(&Workload::Register) {
        let reg: Vec<Op> = ops
            .iter()
            .filter(|op| REGISTER_KEYS.contains(&op.key.as_str()))
            .cloned()
            .collect();
        Some(linear::check(&reg, &linear::Options::default())?)
    } else {
        None
    };
    let set = if o.workloads.contains(&Workload::Set) {
        Some(set::check(&ops)?)
    } else {
        None
    };
    let unknown = register
        .as_ref()
        .is_some_and(|r| matches!(r.verdict, linear::Verdict::Unknown));
    let valid = recovery.is_none()
        && register
            .as_ref()
            .is_none_or(|r| r.verdict.is_linearizable())
        && set.as_ref().is_none_or(|s| s.valid)
        && convergence.as_ref().is_none_or(|c| c.valid);
    Ok(Verdicts {
        valid,
        unknown,
        seed: o.seed,
        peers: o.peers,
        time_limit_s: o.time_limit.as_secs(),
        nemesis: o.nemesis.clone(),
        events: ops.len(),
        faults: faults.bands.len(),
        recovery,
        register,
        set,
        convergence,
        error_lines: BTreeMap::new(),
    })
}

/// What each client process is, by id modulo [`history::NEW_ID_STRIDE`], for
/// the timeline's lanes.
fn lane_names(o: &Options) -> BTreeMap<u64, String> {
    let mut names = BTreeMap::new();
    if o.workloads.contains(&Workload::Register) {
        for id in 0..register::CLIENTS_PER_PEER * o.peers as u64 {
            names.insert(id, format!("register → host {}", 1 + id % o.peers as u64));
        }
    }
    if o.workloads.contains(&Workload::Set) {
        for i in 0..o.peers as u64 {
            names.insert(
                set_workload::FIRST_ADDER + i,
                format!("set → host {}", i + 1),
            );
        }
        names.insert(set_workload::FINAL_READER, "set final read".to_string());
    }
    if o.workloads.contains(&Workload::Convergence) {
        names.insert(
            convergence::DRIVER,
            "apply, roll, drain → any host".to_string(),
        );
        names.insert(
            convergence::FINAL_APPLIER,
            "final uncordon and apply".to_string(),
        );
    }
    names
}

fn save(
    out: &Path,
    ops: &[Op],
    faults: &[Band],
    names: &BTreeMap<u64, String>,
    verdicts: Option<&Verdicts>,
) -> anyhow::Result<()> {
    history::write_jsonl(out.join("history.jsonl"), ops)?;
    std::fs::write(out.join("faults.json"), serde_json::to_vec_pretty(faults)?)?;
    std::fs::write(
        out.join("processes.json"),
        serde_json::to_vec_pretty(names)?,
    )?;
    let summary = match verdicts {
        Some(v) => {
            std::fs::write(out.join("verdict.json"), serde_json::to_vec_pretty(v)?)?;
            v.summary()
        }
        None => "the run broke before its checkers ran; see the peer logs".to_string(),
    };
    let title = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    timeline::write_named(
        &out.join("timeline.html"),
        &title,
        ops,
        faults,
        &summary,
        names,
    )
}

fn copy_logs(work: &Path, out: &Path) {
    let Ok(entries) = std::fs::read_dir(work) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        if name.to_string_lossy().ends_with(".log") {
            let _ = std::fs::copy(e.path(), out.join(&name));
        }
    }
}

/// ERROR lines of each `.log` in `dir`, by file stem (`peer-1`).
fn count_error_lines(dir: &Path) -> BTreeMap<String, usize> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return BTreeMap::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let stem = name.strip_suffix(".log")?.to_string();
            let text = std::fs::read_to_string(e.path()).ok()?;
            Some((stem, text.lines().filter(|l| l.contains(" ERROR ")).count()))
        })
        .collect()
}

/// UTC `YYYYMMDDTHHMMSSZ`, for folder names that sort by time.
fn timestamp() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workload_lists_parse_and_name_the_bad_entry() {
        assert_eq!(
            Workload::parse_list("set,register").expect("list"),
            vec![Workload::Register, Workload::Set]
        );
        assert_eq!(Workload::parse_list("all").expect("all").len(), 3);
        let e = Workload::parse_list("register,bank").expect_err("unknown");
        assert!(e.to_string().contains("\"bank\""), "{e}");
    }

    #[test]
    fn run_folders_are_named_by_utc_time() {
        let t = timestamp();
        assert_eq!(t.len(), 16, "{t}");
        assert!(t.starts_with("20") && t.ends_with('Z') && t.as_bytes()[8] == b'T');
    }
}
