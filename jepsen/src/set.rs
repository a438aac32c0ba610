//! Set checker: were acknowledged additions kept?
//!
//! The workload adds unique elements to one set (`f = Add`, `value` = the
//! element, all on key [`SET_KEY`]) and, once the adds are done, reads the
//! whole set once (`f = Read` on [`SET_KEY`]; the result is the `values` of
//! the read's `Ok` completion). Then, comparing with the final read:
//!
//! * an add acknowledged (`Ok`) before the final read began must be present;
//!   the missing ones are **lost**;
//! * an element read but never attempted by any add is **unexpected**;
//! * an add that `Fail`ed definitely did not happen: finding it is a
//!   violation too (**failed_present**);
//! * an element read twice is **duplicated** (a set has no duplicates);
//! * indeterminate adds (`Info`, or never completed) may be present or absent
//!   (present ones are counted as **recovered**); so may adds acknowledged
//!   only after the final read began (**concurrent**), since the read may have
//!   been served before they took effect.
//!
//! The history is valid iff there are no lost, unexpected, failed-present or
//! duplicated elements. If several `Ok` reads of the set exist, the last one
//! (by invocation) is the final read. Positions in the history define time,
//! as in [`crate::history`].

use std::collections::{BTreeMap, BTreeSet, HashMap};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::history::{self, Call, Op, Outcome, F};

/// The key set workloads use.
pub const SET_KEY: &str = "set";

/// Result of [`check`]. Element lists are sorted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetReport {
    /// No lost, unexpected, failed-present or duplicated elements.
    pub valid: bool,
    /// Adds invoked.
    pub attempted: usize,
    /// Adds acknowledged before the final read began: must be present.
    pub acknowledged: usize,
    /// Adds acknowledged after the final read began: may be absent.
    pub concurrent: usize,
    /// Adds that failed: must be absent.
    pub failed: usize,
    /// Adds with an `Info` completion or none: may be present or absent.
    pub indeterminate: usize,
    /// Elements in the final read.
    pub read: usize,
    /// Acknowledged adds found in the final read.
    pub present: usize,
    /// Indeterminate (or concurrent) adds found in the final read.
    pub recovered: usize,
    /// Acknowledged adds missing from the final read.
    pub lost: Vec<i64>,
    /// Elements read that no add ever attempted.
    pub unexpected: Vec<i64>,
    /// Elements read whose add failed.
    pub failed_present: Vec<i64>,
    /// Elements the final read returned more than once.
    pub duplicated: Vec<i64>,
}

/// Checks a history whose set operations are on [`SET_KEY`].
pub fn check(history: &[Op]) -> Result<SetReport> {
    check_key(history, SET_KEY)
}

/// Checks the set operations on `key`; operations on other keys are ignored.
/// Errors on malformed histories, on other operations on `key`, on adds
/// without a value or with a value added twice, and if there is no `Ok` read
/// of the set carrying `values`.
pub fn check_key(history: &[Op], key: &str) -> Result<SetReport> {
    let calls = history::pair(history)?;
    let calls: Vec<&Call> = calls.iter().filter(|c| c.key == key).collect();

    let mut adds: HashMap<i64, &Call> = HashMap::new();
    let mut final_read: Option<&Call> = None;
    for &call in &calls {
        match call.f {
            F::Add => {
                let element = call
                    .value
                    .with_context(|| format!("event {}: add without a value", call.invoke_index))?;
                if let Some(first) = adds.insert(element, call) {
                    bail!(
                        "event {}: element {element} added again (first at event {}); adds must be unique",
                        call.invoke_index,
                        first.invoke_index
                    );
                }
            }
            F::Read if call.outcome == Outcome::Ok => final_read = Some(call),
            F::Read => {}
            F::Write | F::Cas => bail!(
                "event {}: {:?} on set {key:?}; only add and read are allowed",
                call.invoke_index,
                call.f
            ),
        }
    }
    let read = final_read.with_context(|| format!("no successful final read of {key:?}"))?;
    let values = read.values.as_deref().with_context(|| {
        format!(
            "event {}: final read of {key:?} has no values",
            read.invoke_index
        )
    })?;

    // Element -> times read.
    let mut seen: BTreeMap<i64, usize> = BTreeMap::new();
    for &v in values {
        *seen.entry(v).or_default() += 1;
    }

    let mut report = SetReport {
        attempted: adds.len(),
        read: values.len(),
        duplicated: seen
            .iter()
            .filter(|&(_, &n)| n > 1)
            .map(|(&v, _)| v)
            .collect(),
        ..SetReport::default()
    };
    let mut lost = BTreeSet::new();
    let mut failed_present = BTreeSet::new();
    for (&element, add) in &adds {
        let present = seen.contains_key(&element);
        match add.outcome {
            Outcome::Ok if add.complete_index.is_some_and(|at| at < read.invoke_index) => {
                report.acknowledged += 1;
                if present {
                    report.present += 1;
                } else {
                    lost.insert(element);
                }
            }
            Outcome::Ok | Outcome::Info => {
                if add.outcome == Outcome::Ok {
                    report.concurrent += 1;
                } else {
                    report.indeterminate += 1;
                }
                if present {
                    report.recovered += 1;
                }
            }
            Outcome::Fail => {
                report.failed += 1;
                if present {
                    failed_present.insert(element);
                }
            }
        }
    }
    report.lost = lost.into_iter().collect();
    report.failed_present = failed_present.into_iter().collect();
    report.unexpected = seen
        .keys()
        .copied()
        .filter(|v| !adds.contains_key(v))
        .collect();
    report.valid = report.lost.is_empty()
        && report.unexpected.is_empty()
        && report.failed_present.is_empty()
        && report.duplicated.is_empty();
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::Builder;

    /// Adds 1..=4 with outcomes ok, ok, info, fail; p9 then reads `final_read`.
    fn history(final_read: Vec<i64>) -> Vec<Op> {
        let mut h = Builder::new();
        h.add(1, 1)
            .add(2, 2)
            .ok(1)
            .add(3, 3)
            .ok(2)
            .add(4, 4)
            .info(3)
            .fail(4);
        h.read(9, SET_KEY).ok_values(9, final_read);
        h.ops
    }

    #[test]
    fn all_acknowledged_adds_present_is_valid() {
        let report = check(&history(vec![2, 1])).expect("well-formed");
        assert!(report.valid, "{report:?}");
        let counts = (
            report.attempted,
            report.acknowledged,
            report.failed,
            report.indeterminate,
            report.read,
            report.present,
            report.recovered,
        );
        assert_eq!(counts, (4, 2, 1, 1, 2, 2, 0));
    }

    #[test]
    fn indeterminate_add_may_be_present_or_absent() {
        let absent = check(&history(vec![1, 2])).expect("well-formed");
        assert!(absent.valid && absent.recovered == 0, "{absent:?}");
        let present = check(&history(vec![1, 2, 3])).expect("well-formed");
        assert!(present.valid && present.recovered == 1, "{present:?}");
    }

    #[test]
    fn lost_acknowledged_add_is_flagged() {
        let report = check(&history(vec![2, 3])).expect("well-formed");
        assert!(!report.valid);
        assert_eq!(report.lost, vec![1]);
        assert_eq!((report.acknowledged, report.present), (2, 1));
    }

    #[test]
    fn unexpected_element_is_flagged() {
        let report = check(&history(vec![1, 2, 99])).expect("well-formed");
        assert!(!report.valid);
        assert_eq!(report.unexpected, vec![99]);
        assert!(report.lost.is_empty());
    }

    #[test]
    fn failed_add_present_and_duplicates_are_flagged() {
        let report = check(&history(vec![1, 2, 4])).expect("well-formed");
        assert!(!report.valid);
        assert_eq!(report.failed_present, vec![4]);
        let report = check(&history(vec![1, 2, 2])).expect("well-formed");
        assert!(!report.valid);
        assert_eq!(report.duplicated, vec![2]);
    }

    #[test]
    fn add_acknowledged_during_final_read_may_be_absent() {
        let mut h = Builder::new();
        h.add(1, 1)
            .ok(1)
            .add(2, 2)
            .read(9, SET_KEY)
            .ok(2)
            .ok_values(9, vec![1]);
        let report = check(&h.ops).expect("well-formed");
        assert!(report.valid, "{report:?}");
        assert_eq!((report.acknowledged, report.concurrent), (1, 1));
    }

    #[test]
    fn malformed_set_histories_are_errors() {
        let mut no_read = Builder::new();
        no_read.add(1, 1).ok(1);
        assert!(check(&no_read.ops).is_err());
        let mut twice = Builder::new();
        twice
            .add(1, 1)
            .ok(1)
            .add(1, 1)
            .ok(1)
            .read(2, SET_KEY)
            .ok_values(2, vec![1]);
        assert!(check(&twice.ops).is_err());
        let mut write = Builder::new();
        write
            .write(1, SET_KEY, 1)
            .ok(1)
            .read(2, SET_KEY)
            .ok_values(2, vec![]);
        assert!(check(&write.ops).is_err());
    }
}
