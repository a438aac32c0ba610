//! The replicated record of a service's `after_deploy` and `on_failure` hook runs
//! (kept in [`crate::ServiceObject::hooks`], so each change is a `Service` put
//! event on the watch).
//!
//! Delivery is at least once: the leader records an attempt as `running` through
//! Raft before it makes it, and a run is claimed once per trigger (its `key`), so
//! two leaders never both start one. A new leader that finds a run still `running`
//! (its leader died or lost office mid-attempt) makes the attempt again, as the
//! next attempt, within the hook's retries: the hook may then have run twice.
//! A finished run is never run again.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// How many hook runs a service keeps, newest last.
pub const MAX_HOOK_RUNS: usize = 20;
/// How many trigger keys a service remembers as fired (one per replica and the
/// rollout), so a run pushed out of [`MAX_HOOK_RUNS`] still never fires twice.
pub const MAX_HOOK_MARKS: usize = 1_024;
/// Longest `output` (and `trigger`) kept with a run, in bytes.
pub const MAX_HOOK_OUTPUT: usize = 512;

/// Which hook ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HookName {
    AfterDeploy,
    OnFailure,
}

impl std::fmt::Display for HookName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            HookName::AfterDeploy => "after_deploy",
            HookName::OnFailure => "on_failure",
        })
    }
}

/// Where one run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HookOutcome {
    /// Attempt `attempt` was started and has not finished.
    Running,
    /// An attempt failed and another one will be made.
    Retrying,
    Succeeded,
    /// The last attempt failed; no more will be made.
    Failed,
}

impl HookOutcome {
    /// Whether no more attempts will be made.
    pub fn is_final(self) -> bool {
        matches!(self, HookOutcome::Succeeded | HookOutcome::Failed)
    }
}

impl std::fmt::Display for HookOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            HookOutcome::Running => "running",
            HookOutcome::Retrying => "retrying",
            HookOutcome::Succeeded => "succeeded",
            HookOutcome::Failed => "failed",
        })
    }
}

/// One run of a hook: the trigger that fired it and its latest attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HookRun {
    pub hook: HookName,
    /// Names the trigger, unique per service: `after_deploy/3` (generation 3),
    /// `on_failure/web-0/3/2` (replica web-0 of generation 3 after 2 restarts),
    /// `on_failure/rollout/3`.
    pub key: String,
    /// What fired it, for people: `rollout of revision 3 complete`,
    /// `replica web-0 exited with code 3`.
    pub trigger: String,
    /// The service generation it fired for.
    pub generation: u64,
    /// 1 for the first attempt; at most `retries + 1`.
    pub attempt: u32,
    pub outcome: HookOutcome,
    /// A command's exit code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// A webhook's HTTP status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_status: Option<u16>,
    /// The end of the output (or the error), at most [`MAX_HOOK_OUTPUT`] bytes.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub output: String,
    /// When the latest attempt started, by the leader's clock (ms since the epoch).
    pub started_unix_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_unix_ms: Option<u64>,
}

/// A service's hook runs (at most [`MAX_HOOK_RUNS`], oldest first) and the trigger
/// slots already fired (`after_deploy` → `after_deploy/3`,
/// `on_failure/web-0` → `on_failure/web-0/3/2`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HookRuns {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub runs: Vec<HookRun>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub fired: BTreeMap<String, String>,
}

impl HookRuns {
    /// Whether nothing ran yet.
    pub fn is_empty(&self) -> bool {
        self.runs.is_empty() && self.fired.is_empty()
    }

    /// The run of `key`, if still kept.
    pub fn run(&self, key: &str) -> Option<&HookRun> {
        self.runs.iter().find(|r| r.key == key)
    }

    /// Whether `slot` already fired for `key`.
    pub fn has_fired(&self, slot: &str, key: &str) -> bool {
        self.fired.get(slot).is_some_and(|k| k == key)
    }

    /// Records `run`: the first attempt claims `slot` (false, changing nothing, when
    /// the slot already fired for this key); a later record replaces the kept run
    /// of its key. Keeps the bounds.
    pub fn record(&mut self, slot: &str, run: HookRun) -> bool {
        let known = self.runs.iter().position(|r| r.key == run.key);
        match known {
            Some(i) => {
                let kept = &self.runs[i];
                // Never move a finished run back, nor an attempt backwards.
                if kept.outcome.is_final() || run.attempt < kept.attempt || *kept == run {
                    return false;
                }
                self.runs[i] = run;
            }
            None => {
                if self.has_fired(slot, &run.key) && run.attempt <= 1 {
                    return false;
                }
                self.fired.insert(slot.to_string(), run.key.clone());
                if self.fired.len() > MAX_HOOK_MARKS {
                    if let Some(first) = self.fired.keys().next().cloned() {
                        self.fired.remove(&first);
                    }
                }
                self.runs.push(run);
                if self.runs.len() > MAX_HOOK_RUNS {
                    // Drop the oldest finished run (the oldest at all if none is).
                    let i = self
                        .runs
                        .iter()
                        .position(|r| r.outcome.is_final())
                        .unwrap_or(0);
                    self.runs.remove(i);
                }
            }
        }
        true
    }
}

/// `text` cut to its last [`MAX_HOOK_OUTPUT`] bytes (on a character boundary).
pub fn tail_of(text: &str) -> String {
    let text = text.trim_end();
    if text.len() <= MAX_HOOK_OUTPUT {
        return text.to_string();
    }
    let mut start = text.len() - MAX_HOOK_OUTPUT;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    text[start..].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(key: &str, attempt: u32, outcome: HookOutcome) -> HookRun {
        HookRun {
            hook: HookName::OnFailure,
            key: key.into(),
            trigger: "t".into(),
            generation: 1,
            attempt,
            outcome,
            exit_code: None,
            http_status: None,
            output: String::new(),
            started_unix_ms: 0,
            finished_unix_ms: None,
        }
    }

    #[test]
    fn a_trigger_is_claimed_once_and_a_finished_run_stays_finished() {
        let mut h = HookRuns::default();
        assert!(h.record("s", run("k", 1, HookOutcome::Running)));
        assert!(!h.record("s", run("k", 1, HookOutcome::Running)));
        assert!(h.record("s", run("k", 2, HookOutcome::Running)));
        assert!(!h.record("s", run("k", 1, HookOutcome::Failed)));
        assert!(h.record("s", run("k", 2, HookOutcome::Succeeded)));
        assert!(!h.record("s", run("k", 3, HookOutcome::Running)));
        // Pushed out of the kept runs, the key still does not fire again.
        for i in 0..MAX_HOOK_RUNS {
            assert!(h.record(
                &format!("o{i}"),
                run(&format!("x{i}"), 1, HookOutcome::Failed)
            ));
        }
        assert!(h.run("k").is_none());
        assert_eq!(h.runs.len(), MAX_HOOK_RUNS);
        assert!(!h.record("s", run("k", 1, HookOutcome::Running)));
    }

    #[test]
    fn output_keeps_its_end() {
        let long = format!("{}é end", "x".repeat(600));
        let t = tail_of(&long);
        assert!(t.len() <= MAX_HOOK_OUTPUT && t.ends_with("é end"));
    }
}
