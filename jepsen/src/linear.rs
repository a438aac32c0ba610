//! Linearizability checker for registers (read / write / cas), one per key.
//!
//! # Model
//!
//! Each key is an independent register holding an `Option<i64>`, initially
//! `None` (absent). Operations, after [`history::pair`]ing:
//!
//! * `write v`: sets the register to `v`; always legal.
//! * `read -> r`: legal iff the register holds `r` (`None` = key absent).
//! * `cas expected -> v`: legal iff the register holds `expected`, then sets
//!   it to `v`. An `Ok` cas took effect, so it must be linearized somewhere.
//!
//! What is dropped before the search, because it constrains nothing:
//! `Fail` operations of any kind (they definitely did not take effect: a failed
//! cas did not swap, a failed write did not write) and reads that did not
//! complete `Ok` (no result to check). Indeterminate (`Info` or unfinished)
//! writes and cas are kept with a response time of +infinity: the search *may*
//! linearize them anywhere after their invocation, but does not have to (one
//! that is never linearized simply did not take effect). A history is
//! linearizable once every `Ok` operation is linearized.
//!
//! # Algorithm
//!
//! Linearizability is P-compositional (Herlihy & Wing; Horn & Kroening): a
//! history of independent objects is linearizable iff each object's
//! sub-history is. So the history is split by key and every key is checked on
//! its own, exactly as Knossos' `independent` and Porcupine's partitions do.
//! This turns one search exponential in the whole history into several small
//! ones.
//!
//! Each key is checked with the Wing & Gong search as improved by Lowe
//! ("Testing for linearizability", 2017), the algorithm Porcupine uses:
//!
//! 1. The invocations and (finite) responses of the key's operations are put
//!    in one doubly linked list, in history order.
//! 2. Walking the list from its head, at an invocation we try to linearize
//!    that operation *now*: if it is legal in the current register state, it
//!    is pushed on a stack together with the previous state, its entries are
//!    unlinked ("lifted") from the list, and the walk restarts from the head.
//!    Only operations whose invocation comes before the first pending
//!    response are candidates, which is exactly the real-time constraint: an
//!    operation cannot be linearized after one that returned before it was
//!    invoked. Candidates that completed `Ok` are tried first, then the
//!    indeterminate ones (a second walk up to the same response).
//! 3. Reaching a response means the operation it belongs to would have to take
//!    effect later than its response: backtrack by popping the last
//!    linearized operation, relinking its entries, restoring the state, and
//!    trying the next candidate after it.
//! 4. Memoization: a configuration is fully described by the set of
//!    linearized operations (bitsets) and the register value. Every
//!    configuration is recorded; a step leading to one already seen is
//!    skipped, since everything reachable from it was already explored. One
//!    refinement for indeterminate operations: a configuration with a subset
//!    of the indeterminate operations linearized (all else equal) can do all
//!    the other can, so it dominates, and dominated configurations are
//!    skipped too. Trying `Ok` candidates first makes the dominating
//!    configurations come first.
//! 5. If every `Ok` operation is linearized the key is linearizable; if the
//!    stack empties the key is not. If more than [`Options::max_states`]
//!    configurations are recorded the search gives up with
//!    [`Verdict::Unknown`]; this bounds both time and memory (a recorded
//!    configuration costs about `ops / 8 + 100` bytes).
//!
//! # Cost
//!
//! A linearizable history is usually confirmed with about one configuration
//! per operation: 2000 operations over 3 keys and 5 processes take a few
//! milliseconds. Refuting one is dearer, because every consistent partial
//! linearization up to the violation must be tried: tens of thousands of
//! configurations for 2000 operations on one key with 10 processes. The hard
//! case is many *pending indeterminate writes on one key*: each may or may
//! not have happened, and the choices multiply (about 10 on a single
//! contended key are fine, 30 are not). Keep per-key histories short (use
//! more keys), as Jepsen's independent-key workloads do.
//!
//! # Failure window
//!
//! When a key is not linearizable, the search remembers the furthest point it
//! got stuck at: the response of an operation `X` (latest in the history;
//! ties broken by the most operations linearized) that it could not get past.
//! There, every operation that responded before `X` was consistently
//! linearized, leaving the register at some value `s`, and no order of the
//! operations still pending makes `X` legal: `X` is the first operation that
//! cannot be linearized. Let `W` be the operation that set `s` in that
//! partial linearization (the last linearized write or cas; none if `s` is
//! the initial absent value), and `t` the earliest point `W` can have taken
//! effect there (the latest invocation among `W` and the operations ordered
//! before it). The window covers the history from the earlier of `t` and
//! `X`'s invocation to `X`'s response: it holds `X`, `W`, and every other
//! operation of the key (among those the search considered) with an event in
//! that slice, each with all its events (invocation, completion), in history
//! order. For a stale read it is the write that superseded the value, then
//! the read that still returned it. [`KeyReport::explanation`] names `X`, `s`
//! and `W` in words.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

use crate::history::{self, Call, Op, Outcome, F};

/// Default bound on the configurations explored per key: a few hundred MB at
/// most, and seconds of work.
pub const DEFAULT_MAX_STATES: usize = 1_000_000;

/// Tuning for [`check`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// Per key: give up ([`Verdict::Unknown`]) after recording this many
    /// distinct (linearized set, register value) configurations.
    pub max_states: usize,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            max_states: DEFAULT_MAX_STATES,
        }
    }
}

/// Outcome of a check, for one key or for the whole history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Verdict {
    /// Some order of the operations respects both real time and the register.
    Linearizable,
    /// No such order exists for `key`; `window` is the part of the key's
    /// history that shows it (see the module docs).
    NotLinearizable { key: String, window: Vec<Op> },
    /// The search gave up (see [`Options::max_states`]).
    Unknown,
}

impl Verdict {
    pub fn is_linearizable(&self) -> bool {
        matches!(self, Verdict::Linearizable)
    }
}

/// Result for one key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyReport {
    pub verdict: Verdict,
    /// Operations that took part in the search (failed operations and
    /// non-`Ok` reads are dropped).
    pub ops: usize,
    /// Distinct configurations recorded by the search.
    pub states: usize,
    /// For `NotLinearizable` and `Unknown`: what went wrong, in words.
    pub explanation: Option<String>,
}

/// Result for a whole history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// `NotLinearizable` for the first failing key (in key order) if any, else
    /// `Unknown` if any key is unknown, else `Linearizable`.
    pub verdict: Verdict,
    /// Every key's own result.
    pub keys: BTreeMap<String, KeyReport>,
}

/// Checks a raw history: pairs it (see [`history::pair`]), then checks each
/// key. Errors on malformed histories and on non-register operations (`add`).
pub fn check(history: &[Op], options: &Options) -> Result<Report> {
    let calls = history::pair(history)?;
    check_calls(&calls, options)
}

/// Checks already paired calls, key by key (P-compositionality).
pub fn check_calls(calls: &[Call], options: &Options) -> Result<Report> {
    let mut by_key: BTreeMap<&str, Vec<&Call>> = BTreeMap::new();
    for call in calls {
        by_key.entry(call.key.as_str()).or_default().push(call);
    }
    let mut keys = BTreeMap::new();
    for (key, calls) in by_key {
        keys.insert(key.to_string(), check_key(key, &calls, options)?);
    }
    let verdict = keys
        .values()
        .find(|r| matches!(r.verdict, Verdict::NotLinearizable { .. }))
        .or_else(|| keys.values().find(|r| r.verdict == Verdict::Unknown))
        .map_or(Verdict::Linearizable, |r| r.verdict.clone());
    Ok(Report { verdict, keys })
}

/// Checks the calls of a single key (all of them must be on `key`).
pub fn check_key(key: &str, calls: &[&Call], options: &Options) -> Result<KeyReport> {
    // Values some operation may have seen: read results and the expected values
    // of compare-and-sets that may have succeeded.
    let observed: HashSet<Option<i64>> = calls
        .iter()
        .filter_map(|c| match (c.f, c.outcome) {
            (F::Read, Outcome::Ok) => Some(c.value),
            (F::Cas, Outcome::Ok | Outcome::Info) => Some(c.expected),
            _ => None,
        })
        .collect();
    let mut ops = Vec::with_capacity(calls.len());
    for &call in calls {
        if call.key != key {
            bail!("check_key({key:?}) given a call on {:?}", call.key);
        }
        let input = match (call.f, call.outcome) {
            (F::Add, _) => bail!(
                "event {}: add on {key:?} is not a register operation",
                call.invoke_index
            ),
            (_, Outcome::Fail) | (F::Read, Outcome::Info) => continue,
            // An indeterminate write whose value nobody saw can be left out: in
            // any linearization that has it, the next operation that depends on
            // the register must be a write (anything else would have seen the
            // value), so removing it keeps the order valid; and leaving it out
            // is allowed, since it may never have happened. Without this, each
            // one stays concurrent with the rest of the history and multiplies
            // the search.
            (F::Write | F::Cas, Outcome::Info) if !observed.contains(&call.value) => continue,
            (F::Read, Outcome::Ok) => Input::Read(call.value),
            (F::Write, _) => Input::Write(call.value),
            (F::Cas, _) => Input::Cas {
                expected: call.expected,
                new: call.value,
            },
        };
        ops.push(SearchOp {
            call,
            input,
            ret: call.response_index(),
        });
    }
    ops.sort_by_key(|op| op.call.invoke_index);

    let (verdict, states, explanation) = match search(&ops, options.max_states) {
        Search::Linearizable { states } => (Verdict::Linearizable, states, None),
        Search::GaveUp { states } => (
            Verdict::Unknown,
            states,
            Some(format!(
                "gave up after {states} configurations (max_states = {})",
                options.max_states
            )),
        ),
        Search::Stuck { states, stuck } => {
            let (window, explanation) = explain(&ops, &stuck);
            let verdict = Verdict::NotLinearizable {
                key: key.to_string(),
                window,
            };
            (verdict, states, Some(explanation))
        }
    };
    Ok(KeyReport {
        verdict,
        ops: ops.len(),
        states,
        explanation,
    })
}

/// Register value: `None` = absent.
type Value = Option<i64>;

/// What an operation does to the register.
#[derive(Debug, Clone, Copy)]
enum Input {
    Read(Value),
    Write(Value),
    Cas { expected: Value, new: Value },
}

impl Input {
    /// The state after applying the operation to `state`, or `None` if the
    /// operation is not legal there.
    fn step(self, state: Value) -> Option<Value> {
        match self {
            Input::Read(seen) => (state == seen).then_some(state),
            Input::Write(v) => Some(v),
            Input::Cas { expected, new } => (state == expected).then_some(new),
        }
    }

    fn sets_state(self) -> bool {
        !matches!(self, Input::Read(_))
    }
}

/// An operation taking part in the search.
struct SearchOp<'a> {
    call: &'a Call,
    input: Input,
    /// History position of the response; `None` = +infinity (indeterminate).
    ret: Option<usize>,
}

/// Sentinel "no node".
const NIL: usize = usize::MAX;

/// Node 0 of [`EventList`] is the head sentinel.
const HEAD: usize = 0;

#[derive(Debug, Clone, Copy)]
struct Node {
    /// Index of the operation in the search's `ops`.
    op: usize,
    /// Invocation (true) or response (false).
    is_call: bool,
    prev: usize,
    next: usize,
}

/// The doubly linked list of invocations and responses of Lowe's algorithm.
/// Lifting unlinks an operation's entries, unlifting relinks them; since
/// unlifts happen in exactly the reverse order of lifts (a stack), the
/// unlinked nodes' own `prev` / `next` are still right when they come back.
struct EventList {
    nodes: Vec<Node>,
    call_node: Vec<usize>,
    ret_node: Vec<Option<usize>>,
}

impl EventList {
    fn new(ops: &[SearchOp]) -> EventList {
        // (history position, op, is_call); positions are unique.
        let mut events: Vec<(usize, usize, bool)> = Vec::with_capacity(ops.len() * 2);
        for (i, op) in ops.iter().enumerate() {
            events.push((op.call.invoke_index, i, true));
            if let Some(ret) = op.ret {
                events.push((ret, i, false));
            }
        }
        events.sort_unstable();

        let mut nodes = Vec::with_capacity(events.len() + 1);
        nodes.push(Node {
            op: NIL,
            is_call: false,
            prev: NIL,
            next: if events.is_empty() { NIL } else { 1 },
        });
        let mut call_node = vec![NIL; ops.len()];
        let mut ret_node = vec![None; ops.len()];
        let last = events.len();
        for (k, &(_, op, is_call)) in events.iter().enumerate() {
            let id = k + 1;
            nodes.push(Node {
                op,
                is_call,
                prev: id - 1,
                next: if id == last { NIL } else { id + 1 },
            });
            if is_call {
                call_node[op] = id;
            } else {
                ret_node[op] = Some(id);
            }
        }
        EventList {
            nodes,
            call_node,
            ret_node,
        }
    }

    fn first(&self) -> usize {
        self.nodes[HEAD].next
    }

    fn unlink(&mut self, n: usize) {
        let Node { prev, next, .. } = self.nodes[n];
        self.nodes[prev].next = next;
        if next != NIL {
            self.nodes[next].prev = prev;
        }
    }

    fn relink(&mut self, n: usize) {
        let Node { prev, next, .. } = self.nodes[n];
        self.nodes[prev].next = n;
        if next != NIL {
            self.nodes[next].prev = n;
        }
    }

    fn lift(&mut self, op: usize) {
        self.unlink(self.call_node[op]);
        if let Some(ret) = self.ret_node[op] {
            self.unlink(ret);
        }
    }

    fn unlift(&mut self, op: usize) {
        if let Some(ret) = self.ret_node[op] {
            self.relink(ret);
        }
        self.relink(self.call_node[op]);
    }
}

/// Where the search got stuck (the furthest such point is kept).
#[derive(Debug, Clone)]
struct Stuck {
    /// The operation whose response could not be passed.
    op: usize,
    /// Its response position in the history.
    ret: usize,
    /// Operations linearized at that point.
    depth: usize,
    /// Register value at that point.
    state: Value,
    /// The linearized operation that set `state`, if any.
    witness: Option<usize>,
    /// The earliest history position at which `witness` can have taken
    /// effect in that partial linearization: the latest invocation among it
    /// and the operations ordered before it.
    witness_from: usize,
}

enum Search {
    Linearizable { states: usize },
    Stuck { states: usize, stuck: Stuck },
    GaveUp { states: usize },
}

/// Which candidates a walk of the list considers (see [`search`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pass {
    /// Operations that completed `Ok` (they must be linearized).
    Determinate,
    /// Indeterminate operations (they may be).
    Indeterminate,
}

/// The memo of configurations already explored.
///
/// A configuration is (determinate ops linearized, register value,
/// indeterminate ops linearized). One that has *fewer* indeterminate ops
/// linearized, all else equal, can do everything the other can (an
/// indeterminate op never has to be linearized, and constrains nobody's real
/// time order), so it dominates: a configuration is skipped if a seen one
/// with the same determinate set and value has a subset of its indeterminate
/// ops. Without indeterminate ops this is plain equality.
#[derive(Default)]
struct Memo {
    /// (determinate bitset ++ encoded value) -> the minimal indeterminate
    /// bitsets seen with it, back to back.
    seen: HashMap<Vec<u64>, Vec<u64>>,
    /// Scratch buffer for the lookup key (no allocation on a hit).
    key: Vec<u64>,
    /// Configurations recorded so far (the search's work bound).
    recorded: usize,
}

impl Memo {
    /// Records the configuration; false if it (or one dominating it) was
    /// already seen.
    fn visit(&mut self, determinate: &[u64], value: Value, indeterminate: &[u64]) -> bool {
        self.key.clear();
        self.key.extend_from_slice(determinate);
        match value {
            None => self.key.push(0),
            Some(v) => self.key.extend([1, v as u64]),
        }
        let width = indeterminate.len();
        match self.seen.get_mut(self.key.as_slice()) {
            // Without indeterminate ops, seen means equal.
            Some(_) if width == 0 => return false,
            Some(sets) => {
                if sets
                    .chunks_exact(width)
                    .any(|other| is_subset(other, indeterminate))
                {
                    return false;
                }
                // Keep the antichain minimal: drop the sets this one is
                // below, then add it.
                let mut kept = Vec::with_capacity(sets.len() + width);
                for other in sets.chunks_exact(width) {
                    if !is_subset(indeterminate, other) {
                        kept.extend_from_slice(other);
                    }
                }
                kept.extend_from_slice(indeterminate);
                *sets = kept;
            }
            None => {
                self.seen.insert(self.key.clone(), indeterminate.to_vec());
            }
        }
        self.recorded += 1;
        true
    }
}

fn is_subset(small: &[u64], big: &[u64]) -> bool {
    small.iter().zip(big).all(|(s, b)| s & !b == 0)
}

/// Lowe's variant of the Wing & Gong search with memoization (module docs).
///
/// Among the candidates of one step (the invocations before the first
/// pending response), the operations that completed `Ok` are tried first, in
/// list order, then the indeterminate ones: a first walk of the list
/// considers the former, a second the latter. Trying not to linearize
/// indeterminate operations first lets the memo's dominance rule prune the
/// configurations where they were linearized; otherwise every subset of the
/// indeterminate operations pending at a point would be explored separately
/// when a violation forces the search to backtrack far.
fn search(ops: &[SearchOp], max_states: usize) -> Search {
    let mut list = EventList::new(ops);
    let mut linearized = Linearized::new(ops);
    // Ok operations not yet linearized; indeterminate ones need not be.
    let mut remaining = ops.iter().filter(|op| op.ret.is_some()).count();
    let has_indeterminate = remaining < ops.len();
    let mut memo = Memo::default();
    // (linearized op, register value before it)
    let mut stack: Vec<(usize, Value)> = Vec::new();
    let mut state: Value = None;
    let mut entry = list.first();
    let mut pass = Pass::Determinate;
    let mut furthest: Option<Stuck> = None;

    loop {
        if remaining == 0 {
            return Search::Linearizable {
                states: memo.recorded,
            };
        }
        if entry != NIL && list.nodes[entry].is_call {
            // An invocation: try to linearize its operation right now.
            let i = list.nodes[entry].op;
            let eligible = (pass == Pass::Determinate) == ops[i].ret.is_some();
            if let Some(next_state) = ops[i].input.step(state).filter(|_| eligible) {
                linearized.set(i, true);
                if memo.visit(
                    &linearized.determinate,
                    next_state,
                    &linearized.indeterminate,
                ) {
                    if memo.recorded > max_states {
                        return Search::GaveUp {
                            states: memo.recorded,
                        };
                    }
                    stack.push((i, state));
                    state = next_state;
                    list.lift(i);
                    if ops[i].ret.is_some() {
                        remaining -= 1;
                    }
                    entry = list.first();
                    pass = Pass::Determinate;
                    continue;
                }
                // Already explored from this configuration (or a better one).
                linearized.set(i, false);
            }
            entry = list.nodes[entry].next;
            continue;
        }

        // The first pending response: the end of the candidates.
        if pass == Pass::Determinate && has_indeterminate {
            entry = list.first();
            pass = Pass::Indeterminate;
            continue;
        }

        // Stuck: the operation this response belongs to cannot be linearized
        // before it. (`entry == NIL` cannot happen while `remaining > 0`:
        // every unlinearized Ok operation has its response after `entry`.)
        if entry != NIL {
            let op = list.nodes[entry].op;
            let ret = ops[op].ret.unwrap_or(usize::MAX);
            let further = furthest
                .as_ref()
                .is_none_or(|f| (ret, stack.len()) > (f.ret, f.depth));
            if further {
                // The last linearized op that set the register, and its
                // position in the stack.
                let witness = stack.iter().rposition(|&(j, _)| ops[j].input.sets_state());
                let witness_from = witness.map_or(0, |w| {
                    stack[..=w]
                        .iter()
                        .map(|&(j, _)| ops[j].call.invoke_index)
                        .max()
                        .unwrap_or(0)
                });
                let witness = witness.map(|w| stack[w].0);
                furthest = Some(Stuck {
                    op,
                    ret,
                    depth: stack.len(),
                    state,
                    witness,
                    witness_from,
                });
            }
        }

        // Backtrack: undo the last linearization and try the next candidate
        // after it (in the same pass).
        let Some((i, previous)) = stack.pop() else {
            return match furthest {
                Some(stuck) => Search::Stuck {
                    states: memo.recorded,
                    stuck,
                },
                // Unreachable in practice (see above); be conservative.
                None => Search::GaveUp {
                    states: memo.recorded,
                },
            };
        };
        linearized.set(i, false);
        if ops[i].ret.is_some() {
            remaining += 1;
            pass = Pass::Determinate;
        } else {
            pass = Pass::Indeterminate;
        }
        state = previous;
        list.unlift(i);
        entry = list.nodes[list.call_node[i]].next;
    }
}

/// The set of linearized operations, as two bitsets: one over the `Ok`
/// operations, one over the indeterminate ones (see [`Memo`]).
struct Linearized {
    determinate: Vec<u64>,
    indeterminate: Vec<u64>,
    /// Per operation: whether it is determinate, and its bit in that set.
    slot: Vec<(bool, usize)>,
}

impl Linearized {
    fn new(ops: &[SearchOp]) -> Linearized {
        let (mut determinate, mut indeterminate) = (0usize, 0usize);
        let slot = ops
            .iter()
            .map(|op| {
                let counter = if op.ret.is_some() {
                    &mut determinate
                } else {
                    &mut indeterminate
                };
                *counter += 1;
                (op.ret.is_some(), *counter - 1)
            })
            .collect();
        Linearized {
            determinate: vec![0; determinate.div_ceil(64)],
            indeterminate: vec![0; indeterminate.div_ceil(64)],
            slot,
        }
    }

    fn set(&mut self, op: usize, on: bool) {
        let (is_determinate, bit) = self.slot[op];
        let bits = if is_determinate {
            &mut self.determinate
        } else {
            &mut self.indeterminate
        };
        let mask = 1 << (bit % 64);
        if on {
            bits[bit / 64] |= mask;
        } else {
            bits[bit / 64] &= !mask;
        }
    }
}

/// Builds the failure window and its explanation (module docs).
fn explain(ops: &[SearchOp], stuck: &Stuck) -> (Vec<Op>, String) {
    let x = ops[stuck.op].call;
    let w = stuck.witness.map(|w| ops[w].call);
    let start = w.map_or(x.invoke_index, |_| stuck.witness_from.min(x.invoke_index));
    let end = stuck.ret;

    let mut events: Vec<(usize, &Op)> = ops
        .iter()
        .enumerate()
        .filter(|&(i, op)| {
            i == stuck.op
                || Some(i) == stuck.witness
                || op.call.events().any(|(at, _)| (start..=end).contains(&at))
        })
        .flat_map(|(_, op)| op.call.events())
        .collect();
    events.sort_by_key(|&(at, _)| at);
    let window = events.into_iter().map(|(_, op)| op.clone()).collect();

    let mut text = format!(
        "{} (events {}..{}) cannot be linearized: the furthest consistent partial linearization orders {} operations, including all that completed before this one, leaving the register {}",
        describe(x),
        x.invoke_index,
        end,
        stuck.depth,
        show(stuck.state),
    );
    match w {
        Some(w) => {
            let _ = write!(
                text,
                " (set by {}, invoked at event {})",
                describe(w),
                w.invoke_index
            );
        }
        None => text.push_str(" (initial value)"),
    }
    let _ = write!(
        text,
        ", but no order of the operations pending then makes it legal; window: events {start}..={end}"
    );
    (window, text)
}

fn show(value: Value) -> String {
    value.map_or_else(|| "absent".to_string(), |v| v.to_string())
}

fn describe(call: &Call) -> String {
    let what = match call.f {
        F::Read => format!("read -> {}", show(call.value)),
        F::Write => format!("write {}", show(call.value)),
        F::Cas => format!("cas {} -> {}", show(call.expected), show(call.value)),
        F::Add => format!("add {}", show(call.value)),
    };
    let how = match call.outcome {
        Outcome::Ok => "",
        Outcome::Fail => " (failed)",
        Outcome::Info => " (indeterminate)",
    };
    format!("process {} {what}{how}", call.process)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::time::Instant;

    use super::*;
    use crate::history::OpKind;
    use crate::testkit::{Builder, Rng};

    fn verdict(ops: &[Op]) -> Verdict {
        check(ops, &Options::default())
            .expect("well-formed history")
            .verdict
    }

    /// The window of a NotLinearizable verdict (panics otherwise).
    fn window(ops: &[Op]) -> Vec<Op> {
        match verdict(ops) {
            Verdict::NotLinearizable { window, .. } => window,
            other => panic!("expected NotLinearizable, got {other:?}"),
        }
    }

    /// (process, kind, f, value) of each event, for terse assertions.
    fn summary(window: &[Op]) -> Vec<(u64, OpKind, F, Option<i64>)> {
        window
            .iter()
            .map(|op| (op.process, op.kind, op.f, op.value))
            .collect()
    }

    #[test]
    fn valid_concurrent_history_is_linearizable() {
        // p1's write 1 is invoked first, but p2 reads 2 before p1 completes and
        // p4 reads 1 at the end: only w2, r2, w1, r1, cas(1->3), r3 works.
        let mut h = Builder::new();
        h.write(1, "x", 1).read(2, "x").write(3, "x", 2);
        h.ok_read(2, Some(2))
            .ok(1)
            .read(4, "x")
            .ok(3)
            .ok_read(4, Some(1));
        h.cas(1, "x", 1, 3).read(2, "x").ok_read(2, Some(3)).ok(1);
        // A read concurrent with everything, seeing the initial absent value.
        let mut all = Builder::new();
        all.read(9, "x");
        all.ops.extend(h.ops.iter().cloned());
        all.ok_read(9, None);
        assert_eq!(verdict(&h.ops), Verdict::Linearizable);
        assert_eq!(verdict(&all.ops), Verdict::Linearizable);
    }

    #[test]
    fn stale_read_is_not_linearizable() {
        let mut h = Builder::new();
        h.write(1, "x", 1).ok(1);
        h.write(2, "x", 2).ok(2);
        h.read(3, "x").ok_read(3, Some(1));
        let report = check(&h.ops, &Options::default()).expect("well-formed");
        let explanation = report.keys["x"].explanation.clone().expect("explained");
        eprintln!("{explanation}");
        assert!(explanation.contains("process 3 read -> 1"), "{explanation}");
        assert!(
            explanation.contains("leaving the register 2"),
            "{explanation}"
        );
        // The window: the write that superseded 1, then the stale read.
        assert_eq!(
            summary(&window(&h.ops)),
            vec![
                (2, OpKind::Invoke, F::Write, Some(2)),
                (2, OpKind::Ok, F::Write, Some(2)),
                (3, OpKind::Invoke, F::Read, None),
                (3, OpKind::Ok, F::Read, Some(1)),
            ]
        );
    }

    #[test]
    fn lost_write_is_not_linearizable() {
        // A read concurrent with the write may see the old value; reads that
        // start after it was acknowledged may not, however many there are.
        let mut h = Builder::new();
        h.write(1, "x", 0).ok(1);
        h.write(1, "x", 1).read(2, "x").ok(1).ok_read(2, Some(0));
        assert_eq!(verdict(&h.ops), Verdict::Linearizable);
        for p in 2..6 {
            h.read(p, "x").ok_read(p, Some(0));
        }
        let w = window(&h.ops);
        // It starts at the lost write and ends at the first read after it.
        assert_eq!((w[0].kind, w[0].value), (OpKind::Invoke, Some(1)));
        let last = w.last().expect("non-empty window");
        assert_eq!(
            (last.process, last.kind, last.value),
            (2, OpKind::Ok, Some(0))
        );

        // Same with a key that never existed before the write.
        let mut h = Builder::new();
        h.write(1, "y", 7).ok(1);
        for p in 2..5 {
            h.read(p, "y").ok_read(p, None);
        }
        assert!(!verdict(&h.ops).is_linearizable());
    }

    #[test]
    fn duplicated_cas_is_not_linearizable() {
        let mut h = Builder::new();
        h.write(1, "x", 0).ok(1);
        h.cas(2, "x", 0, 1).ok(2);
        h.cas(3, "x", 0, 1).ok(3);
        assert_eq!(
            summary(&window(&h.ops)),
            vec![
                (2, OpKind::Invoke, F::Cas, Some(1)),
                (2, OpKind::Ok, F::Cas, Some(1)),
                (3, OpKind::Invoke, F::Cas, Some(1)),
                (3, OpKind::Ok, F::Cas, Some(1)),
            ]
        );

        // The same history with the second cas failing is fine, and so is one
        // where the two cas overlap but only one succeeds.
        let mut h = Builder::new();
        h.write(1, "x", 0).ok(1);
        h.cas(2, "x", 0, 1).ok(2);
        h.cas(3, "x", 0, 1).fail(3);
        assert_eq!(verdict(&h.ops), Verdict::Linearizable);
        let mut h = Builder::new();
        h.write(1, "x", 0).ok(1);
        h.cas(2, "x", 0, 1).cas(3, "x", 0, 2).fail(2).ok(3);
        h.read(1, "x").ok_read(1, Some(2));
        assert_eq!(verdict(&h.ops), Verdict::Linearizable);
    }

    #[test]
    fn unseen_indeterminate_writes_are_left_out_without_hiding_a_stale_read() {
        // Forty indeterminate writes nobody read would each stay concurrent with
        // everything after them; they are left out, so this is instant.
        let mut h = Builder::new();
        h.write(1, "x", 0).ok(1);
        for p in 0..40 {
            h.write(100 + p, "x", 1000 + i64::try_from(p).unwrap_or(0))
                .info(100 + p);
        }
        h.read(2, "x").ok_read(2, Some(0));
        h.write(1, "x", 5).ok(1);
        h.read(2, "x").ok_read(2, Some(5));
        let r = check(&h.ops, &Options { max_states: 1000 }).expect("well formed");
        assert_eq!(r.verdict, Verdict::Linearizable);
        // A stale read among them is still caught.
        h.read(2, "x").ok_read(2, Some(0));
        let r = check(&h.ops, &Options { max_states: 1000 }).expect("well formed");
        assert!(matches!(r.verdict, Verdict::NotLinearizable { .. }));
        // One that was seen still counts: read 1003 once, then 0 again is impossible.
        let mut h = Builder::new();
        h.write(1, "x", 0).ok(1);
        h.write(3, "x", 1003).info(3);
        h.read(2, "x").ok_read(2, Some(1003));
        h.read(2, "x").ok_read(2, Some(0));
        let r = check(&h.ops, &Options::default()).expect("well formed");
        assert!(matches!(r.verdict, Verdict::NotLinearizable { .. }));
    }

    #[test]
    fn indeterminate_write_may_or_may_not_take_effect() {
        let base = |h: &mut Builder| {
            h.write(1, "x", 0).ok(1);
            h.write(2, "x", 1).info(2);
        };
        // Took effect, long after its info.
        let mut h = Builder::new();
        base(&mut h);
        h.read(3, "x")
            .ok_read(3, Some(0))
            .read(3, "x")
            .ok_read(3, Some(1));
        assert_eq!(verdict(&h.ops), Verdict::Linearizable);
        // Never took effect.
        let mut h = Builder::new();
        base(&mut h);
        h.read(3, "x").ok_read(3, Some(0));
        assert_eq!(verdict(&h.ops), Verdict::Linearizable);
        // But it takes effect at most once: 1 then 0 again is not possible.
        let mut h = Builder::new();
        base(&mut h);
        h.read(3, "x")
            .ok_read(3, Some(1))
            .read(3, "x")
            .ok_read(3, Some(0));
        assert!(!verdict(&h.ops).is_linearizable());
        // An invocation without completion behaves the same way.
        let mut h = Builder::new();
        h.write(1, "x", 0).ok(1).write(2, "x", 1);
        h.read(3, "x")
            .ok_read(3, Some(0))
            .read(3, "x")
            .ok_read(3, Some(1));
        assert_eq!(verdict(&h.ops), Verdict::Linearizable);
        // An indeterminate cas too: it may swap only if the value matches.
        let mut h = Builder::new();
        h.write(1, "x", 0).ok(1).cas(2, "x", 0, 5).info(2);
        h.read(3, "x").ok_read(3, Some(5));
        assert_eq!(verdict(&h.ops), Verdict::Linearizable);
        let mut h = Builder::new();
        h.write(1, "x", 0).ok(1).cas(2, "x", 9, 5).info(2);
        h.read(3, "x").ok_read(3, Some(5));
        assert!(!verdict(&h.ops).is_linearizable());
    }

    #[test]
    fn failed_writes_and_indeterminate_reads_are_dropped() {
        // A failed write did not happen: reading its value is a violation.
        let mut h = Builder::new();
        h.write(1, "x", 0).ok(1).write(2, "x", 1).fail(2);
        h.read(3, "x").ok_read(3, Some(1));
        assert!(!verdict(&h.ops).is_linearizable());
        // An indeterminate read constrains nothing, whatever it carries.
        let mut h = Builder::new();
        h.write(1, "x", 0).ok(1).read(2, "x");
        h.complete_with(2, OpKind::Info, |op| op.value = Some(42));
        let report = check(&h.ops, &Options::default()).expect("well-formed");
        assert_eq!(report.verdict, Verdict::Linearizable);
        assert_eq!(report.keys["x"].ops, 1);
    }

    #[test]
    fn keys_are_checked_independently() {
        // Interleaved keys; every read is right for its own key, and the
        // history would not be linearizable as one register.
        let mut h = Builder::new();
        h.write(1, "a", 1).write(2, "b", 2).ok(1).ok(2);
        h.read(1, "a")
            .read(2, "b")
            .ok_read(1, Some(1))
            .ok_read(2, Some(2));
        h.read(3, "c").ok_read(3, None);
        let report = check(&h.ops, &Options::default()).expect("well-formed");
        assert_eq!(report.verdict, Verdict::Linearizable);
        assert_eq!(report.keys.len(), 3);

        // A violation on b is reported for b only.
        h.read(3, "b").ok_read(3, Some(1));
        let report = check(&h.ops, &Options::default()).expect("well-formed");
        assert_eq!(report.keys["a"].verdict, Verdict::Linearizable);
        assert_eq!(report.keys["c"].verdict, Verdict::Linearizable);
        match &report.verdict {
            Verdict::NotLinearizable { key, window } => {
                assert_eq!(key, "b");
                assert!(window.iter().all(|op| op.key == "b"), "{window:?}");
            }
            other => panic!("expected b to fail, got {other:?}"),
        }
        assert_eq!(report.keys["b"].verdict, report.verdict);
    }

    #[test]
    fn bound_yields_unknown() {
        let mut h = Builder::new();
        h.write(1, "x", 1)
            .write(2, "x", 2)
            .write(3, "x", 3)
            .ok(1)
            .ok(2)
            .ok(3);
        h.read(1, "x").ok_read(1, Some(3));
        let tight = Options { max_states: 2 };
        let report = check(&h.ops, &tight).expect("well-formed");
        assert_eq!(report.verdict, Verdict::Unknown);
        assert!(report.keys["x"].explanation.is_some());
        assert_eq!(verdict(&h.ops), Verdict::Linearizable);
    }

    #[test]
    fn add_is_rejected() {
        let mut h = Builder::new();
        h.add(1, 5).ok(1);
        assert!(check(&h.ops, &Options::default()).is_err());
    }

    /// Simulates `processes` clients on a real sequential register per key:
    /// each operation takes effect at one instant strictly between its
    /// invocation and its completion, and intervals overlap at random. A few
    /// operations crash: reported `info` after taking effect, or before (and
    /// then never take effect).
    fn random_history(
        seed: u64,
        calls: usize,
        keys: &[&str],
        processes: u64,
        info_percent: u64,
    ) -> Vec<Op> {
        enum Slot {
            Idle,
            /// Invoked; `result` once it took effect: (kind, read result).
            Busy {
                invoke: Op,
                result: Option<(OpKind, Option<i64>)>,
            },
        }
        let mut rng = Rng::new(seed);
        let mut registers: HashMap<String, Option<i64>> = HashMap::new();
        let mut slots: Vec<Slot> = (0..processes).map(|_| Slot::Idle).collect();
        let mut history = Vec::new();
        let mut invoked = 0;
        let mut time_ns = 0;
        loop {
            let busy = slots.iter().any(|s| matches!(s, Slot::Busy { .. }));
            if invoked >= calls && !busy {
                return history;
            }
            time_ns += 1_000;
            let p = rng.below(processes);
            let slot = &mut slots[p as usize];
            match slot {
                Slot::Idle if invoked < calls => {
                    let key = keys[rng.below(keys.len() as u64) as usize];
                    let (f, value, expected) = match rng.below(10) {
                        0..=3 => (F::Read, None, None),
                        4..=6 => (F::Write, Some(rng.below(5) as i64), None),
                        _ => (F::Cas, Some(rng.below(5) as i64), Some(rng.below(5) as i64)),
                    };
                    let invoke = Op::new(p, OpKind::Invoke, f, key, time_ns)
                        .with_value(value)
                        .with_expected(expected);
                    history.push(invoke.clone());
                    *slot = Slot::Busy {
                        invoke,
                        result: None,
                    };
                    invoked += 1;
                }
                Slot::Idle => {}
                Slot::Busy {
                    invoke,
                    result: Some((kind, read)),
                } => {
                    let mut done = invoke.completed(*kind, time_ns);
                    if invoke.f == F::Read {
                        done.value = *read;
                    }
                    if rng.chance(info_percent) {
                        // Took effect, but the client never learnt it.
                        done = invoke.completed(OpKind::Info, time_ns);
                    }
                    history.push(done);
                    *slot = Slot::Idle;
                }
                Slot::Busy { invoke, result } => {
                    if rng.chance(info_percent) {
                        // Crashes before taking effect: it never will.
                        history.push(invoke.completed(OpKind::Info, time_ns));
                        *slot = Slot::Idle;
                        continue;
                    }
                    // The linearization point.
                    let register = registers.entry(invoke.key.clone()).or_insert(None);
                    *result = Some(match invoke.f {
                        F::Read => (OpKind::Ok, *register),
                        F::Cas if *register != invoke.expected => (OpKind::Fail, None),
                        _ => {
                            *register = invoke.value;
                            (OpKind::Ok, None)
                        }
                    });
                }
            }
        }
    }

    /// Linearizability straight from the definition, for tiny histories: is
    /// there a sequence of all Ok operations and some indeterminate ones,
    /// legal for the register, in which no operation comes after one that was
    /// invoked after it returned?
    fn brute_force(ops: &[Op]) -> bool {
        fn extend(ops: &[SearchOp], order: &mut Vec<usize>, state: Value) -> bool {
            let all_ok_in = ops
                .iter()
                .enumerate()
                .all(|(i, op)| op.ret.is_none() || order.contains(&i));
            if all_ok_in {
                return true;
            }
            for (i, op) in ops.iter().enumerate() {
                if order.contains(&i) {
                    continue;
                }
                let respects_real_time = order
                    .iter()
                    .all(|&a| op.ret.is_none_or(|ret| ret > ops[a].call.invoke_index));
                let Some(next) = op.input.step(state) else {
                    continue;
                };
                if respects_real_time {
                    order.push(i);
                    if extend(ops, order, next) {
                        return true;
                    }
                    order.pop();
                }
            }
            false
        }
        let calls = history::pair(ops).expect("well-formed");
        let ops: Vec<SearchOp> = calls
            .iter()
            .filter_map(|call| {
                let input = match (call.f, call.outcome) {
                    (_, Outcome::Fail) | (F::Read, Outcome::Info) => return None,
                    (F::Read, _) => Input::Read(call.value),
                    (F::Write, _) => Input::Write(call.value),
                    (_, _) => Input::Cas {
                        expected: call.expected,
                        new: call.value,
                    },
                };
                Some(SearchOp {
                    call,
                    input,
                    ret: call.response_index(),
                })
            })
            .collect();
        extend(&ops, &mut Vec::new(), None)
    }

    #[test]
    fn agrees_with_brute_force_on_small_histories() {
        let (mut valid, mut invalid) = (0, 0);
        for seed in 0..4000 {
            // Many crashes, to exercise indeterminate operations.
            let crashes = [5, 15, 30, 50][seed as usize % 4];
            let mut ops = random_history(seed, 8, &["k"], 3, crashes);
            // Corrupt two thirds of them a little: a read result, or the
            // outcome of a write or cas.
            let mut rng = Rng::new(seed ^ 0xdead_beef);
            for _ in 0..rng.below(3) {
                let at = rng.below(ops.len() as u64) as usize;
                let op = &mut ops[at];
                match (op.f, op.kind) {
                    (F::Read, OpKind::Ok) => op.value = rng.chance(80).then(|| rng.below(3) as i64),
                    (F::Write | F::Cas, OpKind::Ok) => op.kind = OpKind::Fail,
                    (F::Cas, OpKind::Fail) => op.kind = OpKind::Ok,
                    _ => {}
                }
            }
            let expected = brute_force(&ops);
            let report = check(&ops, &Options::default()).expect("well-formed");
            assert_eq!(
                report.verdict.is_linearizable(),
                expected,
                "seed {seed}: {ops:#?}"
            );
            if expected {
                valid += 1;
            } else {
                invalid += 1;
                let Verdict::NotLinearizable { window, .. } = &report.verdict else {
                    panic!("seed {seed}: {:?}", report.verdict);
                };
                assert!(!window.is_empty());
            }
        }
        eprintln!("{valid} linearizable, {invalid} not");
        assert!(
            valid > 500 && invalid > 500,
            "{valid} linearizable, {invalid} not"
        );
    }

    #[test]
    fn random_valid_history_is_linearizable_quickly() {
        let keys = ["a", "b", "c"];
        for seed in 1..=3 {
            let ops = random_history(seed, 2000, &keys, 5, 1);
            let calls = history::pair(&ops).expect("well-formed");
            assert_eq!(calls.len(), 2000);
            let started = Instant::now();
            let report = check(&ops, &Options::default()).expect("well-formed");
            let elapsed = started.elapsed();
            let states: usize = report.keys.values().map(|r| r.states).sum();
            eprintln!(
                "seed {seed}: {} events, {} calls over {} keys: {:?} in {elapsed:?} ({states} states)",
                ops.len(),
                calls.len(),
                report.keys.len(),
                report.verdict
            );
            assert_eq!(report.verdict, Verdict::Linearizable, "seed {seed}");
        }
    }

    #[test]
    fn hot_key_history_is_linearizable() {
        // One key, 10 processes: every operation overlaps several others.
        for seed in 1..=3 {
            let ops = random_history(seed, 2000, &["hot"], 10, 1);
            let started = Instant::now();
            let report = check(&ops, &Options::default()).expect("well-formed");
            let elapsed = started.elapsed();
            eprintln!(
                "hot seed {seed}: {:?} in {elapsed:?} ({} states)",
                report.verdict, report.keys["hot"].states
            );
            assert_eq!(report.verdict, Verdict::Linearizable, "seed {seed}");
        }
    }

    #[test]
    fn corrupted_random_history_is_caught() {
        // (keys, processes, % of crashes). Refuting a history means exploring
        // every consistent partial linearization up to the violation, and
        // pending indeterminate writes multiply those: 2000 calls on a single
        // key hammered by 10 processes are only affordable without them.
        let cases: [(&[&str], u64, u64); 2] = [(&["a", "b", "c"], 5, 1), (&["hot"], 10, 0)];
        for (keys, processes, crashes) in cases {
            for seed in 1..=3 {
                let mut ops = random_history(seed, 2000, keys, processes, crashes);
                // Make one successful read, about half way, return a value
                // that was never written.
                let at = (ops.len() / 2..ops.len())
                    .find(|&i| ops[i].f == F::Read && ops[i].kind == OpKind::Ok)
                    .expect("some read completes in the second half");
                ops[at].value = Some(999);
                let bad = ops[at].clone();
                let started = Instant::now();
                let report = check(&ops, &Options::default()).expect("well-formed");
                let elapsed = started.elapsed();
                let states: usize = report.keys.values().map(|r| r.states).sum();
                match &report.verdict {
                    Verdict::NotLinearizable { key, window } => {
                        eprintln!(
                            "{keys:?} seed {seed}: caught in {elapsed:?} ({states} states), window of {} events",
                            window.len()
                        );
                        assert_eq!(key, &bad.key);
                        assert!(window.contains(&bad), "window {window:?} lacks {bad:?}");
                        assert!(window.len() < 60, "window of {} events", window.len());
                    }
                    other => panic!("expected NotLinearizable, got {other:?}"),
                }
            }
        }
    }
}
