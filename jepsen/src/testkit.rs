//! Test helpers: a terse history builder and a small deterministic PRNG.

use std::collections::HashMap;

use crate::history::{Op, OpKind, F};

/// Builds a history event by event; every event advances time by 1µs.
#[derive(Default)]
pub struct Builder {
    pub ops: Vec<Op>,
    /// process -> position of its outstanding invocation
    pending: HashMap<u64, usize>,
    time_ns: u64,
}

impl Builder {
    pub fn new() -> Builder {
        Builder::default()
    }

    fn tick(&mut self) -> u64 {
        self.time_ns += 1_000;
        self.time_ns
    }

    pub fn invoke(
        &mut self,
        process: u64,
        f: F,
        key: &str,
        value: Option<i64>,
        expected: Option<i64>,
    ) -> &mut Self {
        let time = self.tick();
        let op = Op::new(process, OpKind::Invoke, f, key, time)
            .with_value(value)
            .with_expected(expected);
        self.pending.insert(process, self.ops.len());
        self.ops.push(op);
        self
    }

    pub fn read(&mut self, process: u64, key: &str) -> &mut Self {
        self.invoke(process, F::Read, key, None, None)
    }

    pub fn write(&mut self, process: u64, key: &str, value: i64) -> &mut Self {
        self.invoke(process, F::Write, key, Some(value), None)
    }

    pub fn cas(&mut self, process: u64, key: &str, expected: i64, new: i64) -> &mut Self {
        self.invoke(process, F::Cas, key, Some(new), Some(expected))
    }

    pub fn add(&mut self, process: u64, element: i64) -> &mut Self {
        self.invoke(process, F::Add, "set", Some(element), None)
    }

    /// Completes `process`'s outstanding op; the completion copies the
    /// invocation, then `edit` may adjust it (e.g. set a read's result).
    pub fn complete_with(
        &mut self,
        process: u64,
        kind: OpKind,
        edit: impl FnOnce(&mut Op),
    ) -> &mut Self {
        let at = self
            .pending
            .remove(&process)
            .expect("process has an outstanding op");
        let time = self.tick();
        let mut op = self.ops[at].completed(kind, time);
        edit(&mut op);
        self.ops.push(op);
        self
    }

    pub fn ok(&mut self, process: u64) -> &mut Self {
        self.complete_with(process, OpKind::Ok, |_| {})
    }

    pub fn ok_read(&mut self, process: u64, value: Option<i64>) -> &mut Self {
        self.complete_with(process, OpKind::Ok, |op| op.value = value)
    }

    pub fn ok_values(&mut self, process: u64, values: Vec<i64>) -> &mut Self {
        self.complete_with(process, OpKind::Ok, |op| op.values = Some(values))
    }

    pub fn fail(&mut self, process: u64) -> &mut Self {
        self.complete_with(process, OpKind::Fail, |_| {})
    }

    pub fn info(&mut self, process: u64) -> &mut Self {
        self.complete_with(process, OpKind::Info, |_| {})
    }
}

/// SplitMix64: tiny, deterministic, good enough to generate test histories.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform-ish in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// True with probability `percent` / 100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}
