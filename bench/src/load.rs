//! Closed-loop load: N clients, each sending its next request as soon as the last one
//! is answered, for a fixed time. Latencies go into an HDR histogram (microseconds).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use hdrhistogram::Histogram;
use tokio::sync::Barrier;
use tokio::time::Instant;

use crate::kv::{Kv, ReadMode};

/// Largest latency recorded exactly (larger ones are recorded as this): 60 s.
const MAX_LATENCY_US: u64 = 60_000_000;

/// What each request does.
#[derive(Debug, Clone)]
pub enum Op {
    /// Client c writes `bench/c/<i mod 1000>`.
    Put { value: Arc<str> },
    /// Reads `bench/keys/<i mod keys>`, written beforehand by [`preload`].
    Get { mode: ReadMode, keys: usize },
}

pub struct Outcome {
    /// Acknowledged requests' latencies, in microseconds.
    pub latency_us: Histogram<u64>,
    pub errors: u64,
    pub first_error: Option<String>,
    pub elapsed: Duration,
}

impl Outcome {
    pub fn ok(&self) -> u64 {
        self.latency_us.len()
    }
    pub fn per_second(&self) -> f64 {
        self.ok() as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
    /// The `q` quantile (0..=1) in milliseconds.
    pub fn ms(&self, q: f64) -> f64 {
        self.latency_us.value_at_quantile(q) as f64 / 1000.0
    }
}

pub fn histogram() -> anyhow::Result<Histogram<u64>> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).context("histogram")
}

/// Key of a preloaded read key.
pub fn read_key(i: usize) -> String {
    format!("bench/keys/{i}")
}

/// Writes the `keys` keys the reads ask for.
pub async fn preload(kv: &Kv, keys: usize, value: &str) -> anyhow::Result<()> {
    for i in 0..keys {
        kv.put(0, &read_key(i), value, None)
            .await
            .with_context(|| format!("{}: preloading {}", kv.system.name(), read_key(i)))?;
    }
    Ok(())
}

async fn once(kv: &Kv, op: &Op, member: usize, client: usize, i: usize) -> anyhow::Result<()> {
    match op {
        Op::Put { value } => {
            kv.put(member, &format!("bench/{client}/{}", i % 1000), value, None)
                .await
        }
        Op::Get { mode, keys } => {
            kv.get(member, &read_key(i % (*keys).max(1)), *mode, None)
                .await
        }
    }
}

/// Runs `clients` clients for `duration`; client c talks to member `members[c % len]`.
/// Each client makes one untimed request first (to open its connection), then all
/// start together.
pub async fn run(
    kv: &Kv,
    clients: usize,
    members: &[usize],
    duration: Duration,
    op: Op,
) -> anyhow::Result<Outcome> {
    anyhow::ensure!(!members.is_empty(), "no member to send requests to");
    let barrier = Arc::new(Barrier::new(clients + 1));
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..clients {
        let kv = kv.clone();
        let op = op.clone();
        let member = members[c % members.len()];
        let barrier = barrier.clone();
        // Made before the task so no client can fail before the barrier.
        let mut hist = histogram()?;
        tasks.spawn(async move {
            let _ = once(&kv, &op, member, c, 0).await;
            barrier.wait().await;
            let end = Instant::now() + duration;
            let mut errors = 0u64;
            let mut first_error = None;
            let mut i = 1;
            while Instant::now() < end {
                let started = Instant::now();
                match once(&kv, &op, member, c, i).await {
                    Ok(()) => hist.saturating_record(started.elapsed().as_micros() as u64),
                    Err(e) => {
                        errors += 1;
                        first_error.get_or_insert_with(|| format!("{e:#}"));
                    }
                }
                i += 1;
            }
            Ok::<_, anyhow::Error>((hist, errors, first_error))
        });
    }
    barrier.wait().await;
    let started = Instant::now();
    let mut out = Outcome {
        latency_us: histogram()?,
        errors: 0,
        first_error: None,
        elapsed: Duration::ZERO,
    };
    while let Some(r) = tasks.join_next().await {
        let (hist, errors, first_error) = r.context("a client task failed")??;
        out.latency_us.add(&hist).context("merging histograms")?;
        out.errors += errors;
        if out.first_error.is_none() {
            out.first_error = first_error;
        }
    }
    out.elapsed = started.elapsed();
    if out.ok() == 0 {
        anyhow::bail!(
            "{}: no request was acknowledged in {duration:?} (first error: {})",
            kv.system.name(),
            out.first_error.as_deref().unwrap_or("none")
        );
    }
    Ok(out)
}
