//! Operation histories, as Jepsen records them.
//!
//! A history is a flat, ordered list of [`Op`] events. Every logical operation
//! shows up (at most) twice: once as an [`OpKind::Invoke`] when a client process
//! starts it, and once as a completion ([`OpKind::Ok`], [`OpKind::Fail`] or
//! [`OpKind::Info`]) when the process learns how it ended.
//!
//! * `Ok`: the operation took effect (for a read: `value` / `values` is the
//!   result).
//! * `Fail`: the operation definitely did **not** take effect.
//! * `Info`: indeterminate (a timeout, a dropped connection...): it may or may
//!   not have taken effect, and if it did, that may be at any moment after its
//!   invocation, so its response time is taken to be +infinity.
//!
//! An invocation that never completes (the history ended first) is treated
//! exactly like one completed with `Info`.
//!
//! # Real-time order
//!
//! The checkers take the **position of an event in the history** as its time,
//! as Jepsen does: an operation A precedes B iff A's completion comes before B's
//! invocation in the slice. `time_ns` is carried along for humans (and for
//! reports) but is not used for ordering. A recorder must therefore append an
//! invocation *before* it sends the request and a completion *after* it has the
//! response; that errs on the side of more concurrency, which is always sound.
//!
//! # Processes
//!
//! A process has at most one outstanding operation. [`pair`] matches every
//! invocation with the next completion of the same process and rejects
//! malformed histories. After an `Info`, Jepsen usually moves on to a fresh
//! process id; reusing the id is allowed here too (the indeterminate operation
//! simply stays concurrent with everything that comes after it).

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

/// After an indeterminate op a client goes on under its id plus this, so ids
/// below it name the client (see [`crate::register::Recorder::finish`]).
pub const NEW_ID_STRIDE: u64 = 1000;

/// What an event says about its operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OpKind {
    /// The process started the operation.
    Invoke,
    /// The operation took effect.
    Ok,
    /// The operation definitely did not take effect.
    Fail,
    /// Indeterminate: the operation may or may not have taken effect.
    Info,
}

/// The operation's function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum F {
    /// Read a register (`value` of the completion is the result, `None` =
    /// absent), or read the whole set (`values` of the completion).
    Read,
    /// Write `value` into a register.
    Write,
    /// Compare-and-set: if the register holds `expected`, replace it by `value`.
    Cas,
    /// Add the element `value` to a set.
    Add,
}

/// One event of a history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Op {
    /// Logical client process; has at most one outstanding operation.
    pub process: u64,
    /// Invocation or completion (and how it completed).
    pub kind: OpKind,
    /// Which operation.
    pub f: F,
    /// The register (or set) the operation is about.
    pub key: String,
    /// Written value (write, and the new value of a cas), read result (on a
    /// read's completion; `None` = the key did not exist), or added element.
    #[serde(default)]
    pub value: Option<i64>,
    /// For a cas: the expected old value (`None` = expected absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected: Option<i64>,
    /// For a set read's completion: the elements read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub values: Option<Vec<i64>>,
    /// Wall-clock (or monotonic) time of the event, for reports only.
    pub time_ns: u64,
}

impl Op {
    /// A new event with `value`, `expected` and `values` unset.
    pub fn new(process: u64, kind: OpKind, f: F, key: impl Into<String>, time_ns: u64) -> Op {
        Op {
            process,
            kind,
            f,
            key: key.into(),
            value: None,
            expected: None,
            values: None,
            time_ns,
        }
    }

    /// Sets `value`.
    pub fn with_value(mut self, value: Option<i64>) -> Op {
        self.value = value;
        self
    }

    /// Sets `expected` (cas).
    pub fn with_expected(mut self, expected: Option<i64>) -> Op {
        self.expected = expected;
        self
    }

    /// Sets `values` (result of a set read).
    pub fn with_values(mut self, values: Vec<i64>) -> Op {
        self.values = Some(values);
        self
    }

    /// The completion event of this invocation: same process, f, key, value
    /// and expected, with the given kind and time. For a read, set the result
    /// afterwards with [`Op::with_value`] / [`Op::with_values`].
    pub fn completed(&self, kind: OpKind, time_ns: u64) -> Op {
        Op {
            kind,
            time_ns,
            ..self.clone()
        }
    }
}

/// How a [`Call`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Took effect.
    Ok,
    /// Did not take effect.
    Fail,
    /// Indeterminate: completed with `Info`, or never completed.
    Info,
}

/// An invocation paired with its completion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    /// The process that ran it.
    pub process: u64,
    /// Which operation.
    pub f: F,
    /// The register (or set).
    pub key: String,
    /// How it ended.
    pub outcome: Outcome,
    /// Input value for write / cas / add (from the invocation); the result for
    /// a read (from an `Ok` completion, `None` otherwise).
    pub value: Option<i64>,
    /// Cas: expected old value (from the invocation).
    pub expected: Option<i64>,
    /// Set read: the elements read (from an `Ok` completion).
    pub values: Option<Vec<i64>>,
    /// Position of the invocation in the history.
    pub invoke_index: usize,
    /// Position of the completion in the history, if there was one. Note that
    /// an `Info` completion does not bound the operation: see
    /// [`Call::response_index`].
    pub complete_index: Option<usize>,
    /// The invocation event.
    pub invoke: Op,
    /// The completion event, if any.
    pub completion: Option<Op>,
}

impl Call {
    /// Whether the call may or may not have taken effect.
    pub fn is_indeterminate(&self) -> bool {
        self.outcome == Outcome::Info
    }

    /// The position by which the operation certainly took effect (or
    /// certainly did not): the completion's position for `Ok` and `Fail`,
    /// `None` (= +infinity) for indeterminate calls.
    pub fn response_index(&self) -> Option<usize> {
        match self.outcome {
            Outcome::Ok | Outcome::Fail => self.complete_index,
            Outcome::Info => None,
        }
    }

    /// The recorded events of this call (invocation, then completion if any).
    pub fn events(&self) -> impl Iterator<Item = (usize, &Op)> {
        std::iter::once((self.invoke_index, &self.invoke))
            .chain(self.complete_index.zip(self.completion.as_ref()))
    }
}

/// Pairs every invocation with the next completion of the same process.
///
/// Calls come back in invocation order. Invocations left without a completion
/// at the end of the history become [`Outcome::Info`] calls. Errors on
/// malformed histories: a second invocation while the process still has one
/// outstanding, a completion with no outstanding invocation, or a completion
/// whose `f` or `key` differ from its invocation's.
pub fn pair(history: &[Op]) -> Result<Vec<Call>> {
    let mut calls: Vec<Call> = Vec::new();
    // process -> index in `calls` of its outstanding invocation
    let mut outstanding: HashMap<u64, usize> = HashMap::new();
    for (index, op) in history.iter().enumerate() {
        let outcome = match op.kind {
            OpKind::Invoke => {
                if let Some(&open) = outstanding.get(&op.process) {
                    let since = calls.get(open).map_or(0, |c| c.invoke_index);
                    bail!(
                        "event {index}: process {} invokes {:?} on {:?} while its op invoked at event {since} is still outstanding",
                        op.process,
                        op.f,
                        op.key
                    );
                }
                outstanding.insert(op.process, calls.len());
                calls.push(Call {
                    process: op.process,
                    f: op.f,
                    key: op.key.clone(),
                    outcome: Outcome::Info,
                    value: if op.f == F::Read { None } else { op.value },
                    expected: op.expected,
                    values: None,
                    invoke_index: index,
                    complete_index: None,
                    invoke: op.clone(),
                    completion: None,
                });
                continue;
            }
            OpKind::Ok => Outcome::Ok,
            OpKind::Fail => Outcome::Fail,
            OpKind::Info => Outcome::Info,
        };
        let Some(call) = outstanding
            .remove(&op.process)
            .and_then(|open| calls.get_mut(open))
        else {
            bail!(
                "event {index}: process {} completes {:?} on {:?} ({:?}) without an outstanding invocation",
                op.process,
                op.f,
                op.key,
                op.kind
            );
        };
        if call.f != op.f || call.key != op.key {
            bail!(
                "event {index}: process {} completes {:?} on {:?} but invoked {:?} on {:?} at event {}",
                op.process,
                op.f,
                op.key,
                call.f,
                call.key,
                call.invoke_index
            );
        }
        call.outcome = outcome;
        call.complete_index = Some(index);
        call.completion = Some(op.clone());
        if call.f == F::Read && outcome == Outcome::Ok {
            call.value = op.value;
            call.values = op.values.clone();
        }
    }
    Ok(calls)
}

/// Writes `ops` as JSON lines (one [`Op`] per line).
pub fn write_jsonl_to<W: Write>(mut out: W, ops: &[Op]) -> Result<()> {
    for op in ops {
        serde_json::to_writer(&mut out, op)?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(())
}

/// Reads JSON lines (one [`Op`] per line; blank lines are skipped).
pub fn read_jsonl_from<R: BufRead>(input: R) -> Result<Vec<Op>> {
    let mut ops = Vec::new();
    for (n, line) in input.lines().enumerate() {
        let line = line.with_context(|| format!("reading line {}", n + 1))?;
        if line.trim().is_empty() {
            continue;
        }
        let op = serde_json::from_str(&line).with_context(|| format!("parsing line {}", n + 1))?;
        ops.push(op);
    }
    Ok(ops)
}

/// Writes `ops` to the file at `path` as JSON lines, replacing it.
pub fn write_jsonl(path: impl AsRef<Path>, ops: &[Op]) -> Result<()> {
    let path = path.as_ref();
    let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
    write_jsonl_to(BufWriter::new(file), ops).with_context(|| format!("writing {}", path.display()))
}

/// Reads a JSON lines history from the file at `path`.
pub fn read_jsonl(path: impl AsRef<Path>) -> Result<Vec<Op>> {
    let path = path.as_ref();
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    read_jsonl_from(BufReader::new(file)).with_context(|| format!("reading {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::Builder;

    #[test]
    fn pairs_invocations_with_completions() {
        let mut h = Builder::new();
        h.write(1, "x", 5).read(2, "x").ok(1).ok_read(2, Some(5));
        h.cas(1, "x", 5, 6).info(1).read(3, "x");
        let calls = pair(&h.ops).expect("well-formed");
        assert_eq!(calls.len(), 4);
        assert_eq!(
            (calls[0].f, calls[0].outcome, calls[0].value),
            (F::Write, Outcome::Ok, Some(5))
        );
        assert_eq!(calls[0].response_index(), Some(2));
        assert_eq!(
            (calls[1].f, calls[1].value, calls[1].response_index()),
            (F::Read, Some(5), Some(3))
        );
        assert_eq!((calls[2].expected, calls[2].value), (Some(5), Some(6)));
        assert_eq!(
            (calls[2].outcome, calls[2].complete_index),
            (Outcome::Info, Some(5))
        );
        assert_eq!(calls[2].response_index(), None, "info is never bounded");
        assert_eq!(
            (calls[3].outcome, calls[3].complete_index),
            (Outcome::Info, None),
            "no completion = info"
        );
        assert_eq!(calls[3].events().count(), 1);
    }

    #[test]
    fn rejects_malformed_histories() {
        let w = Op::new(1, OpKind::Invoke, F::Write, "x", 0).with_value(Some(1));
        let double = vec![w.clone(), w.clone()];
        assert!(
            pair(&double).is_err(),
            "two outstanding ops for one process"
        );
        let orphan = vec![w.completed(OpKind::Ok, 1)];
        assert!(pair(&orphan).is_err(), "completion without invocation");
        let mut other_key = w.completed(OpKind::Ok, 1);
        other_key.key = "y".into();
        assert!(
            pair(&[w.clone(), other_key]).is_err(),
            "completion for another key"
        );
        let mut other_f = w.completed(OpKind::Ok, 1);
        other_f.f = F::Read;
        assert!(pair(&[w, other_f]).is_err(), "completion of another f");
    }

    #[test]
    fn jsonl_round_trip() {
        let mut h = Builder::new();
        h.cas(1, "x", 1, 2)
            .add(2, 7)
            .fail(1)
            .info(2)
            .read(3, "set")
            .ok_values(3, vec![1, 7]);
        h.read(4, "x").ok_read(4, None);

        let mut buf = Vec::new();
        write_jsonl_to(&mut buf, &h.ops).expect("write to memory");
        let text = String::from_utf8(buf.clone()).expect("utf-8");
        assert_eq!(text.lines().count(), h.ops.len());
        assert!(text.contains(r#""kind":"invoke","f":"cas""#), "{text}");
        assert_eq!(read_jsonl_from(&buf[..]).expect("read back"), h.ops);

        let path =
            std::env::temp_dir().join(format!("orion-jepsen-history-{}.jsonl", std::process::id()));
        write_jsonl(&path, &h.ops).expect("write file");
        let back = read_jsonl(&path).expect("read file");
        std::fs::remove_file(&path).expect("remove temp file");
        assert_eq!(back, h.ops);

        let bad = b"{\"process\":1}\n";
        let err = read_jsonl_from(&bad[..]).expect_err("missing fields");
        assert!(format!("{err:#}").contains("line 1"), "{err:#}");
    }
}
