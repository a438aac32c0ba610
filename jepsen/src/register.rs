//! The register workload: concurrent reads, writes and compare-and-sets on a few
//! variables, each client process pinned to one peer, recorded as a history.
//!
//! - read: `GET /v1/variables/{key}` (linearizable): 200 → ok with the value, 404 →
//!   ok with "absent"; anything else → fail (a read changes nothing).
//! - write: `PUT` → 200 ok; a refusal (4xx) or a connection that never opened →
//!   fail; a timeout or 5xx after sending → info (it may have been applied).
//! - cas(expected → new): a linearizable read, then `PUT` with `expected_revision`
//!   set to the revision read. A value other than `expected` → fail; 409 → fail
//!   (someone wrote in between); 200 → ok. The write's revision check makes the
//!   pair atomic: the value cannot have changed if the revision did not.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use crate::history::{Op, OpKind, F, NEW_ID_STRIDE};

/// Register clients per peer; client `i` talks to peer `i % peers`.
pub const CLIENTS_PER_PEER: u64 = 2;

/// Collects events from every process with one clock.
pub struct Recorder {
    start: std::time::Instant,
    ops: Mutex<Vec<Op>>,
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder {
            start: std::time::Instant::now(),
            ops: Mutex::new(Vec::new()),
        }
    }
}

impl Recorder {
    pub fn now_ns(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    pub fn record(&self, op: Op) {
        if let Ok(mut ops) = self.ops.lock() {
            ops.push(op);
        }
    }

    /// Records the invocation and returns it, stamped now.
    pub fn invoke(&self, op: Op) -> Op {
        let op = Op {
            time_ns: self.now_ns(),
            ..op
        };
        self.record(op.clone());
        op
    }

    pub fn complete(&self, invoked: &Op, kind: OpKind, value: Option<i64>) {
        let mut done = invoked.completed(kind, self.now_ns());
        if invoked.f == F::Read {
            done.value = value;
        }
        self.record(done);
    }

    /// Completes a change `invoked` by process `*pid`. After an indeterminate
    /// one the process takes a new id, as in Jepsen: the old op may still take
    /// effect at any time, concurrently with what follows.
    pub fn finish(&self, invoked: &Op, kind: OpKind, pid: &mut u64) {
        self.complete(invoked, kind, None);
        if kind == OpKind::Info {
            *pid += NEW_ID_STRIDE;
        }
    }

    pub fn history(&self) -> Vec<Op> {
        self.ops.lock().map(|o| o.clone()).unwrap_or_default()
    }
}

enum Answer {
    Ok(Option<(i64, u64)>),
    Fail,
    Info,
}

async fn read(http: &reqwest::Client, url: &str) -> Answer {
    let r = match http.get(url).send().await {
        Ok(r) => r,
        Err(_) => return Answer::Fail,
    };
    match r.status().as_u16() {
        200 => match r.json::<serde_json::Value>().await {
            Ok(v) => {
                let value = v["variable"]["value"].as_str().and_then(|s| s.parse().ok());
                let rev = v["variable"]["mod_revision"].as_u64();
                match (value, rev) {
                    (Some(x), Some(r)) => Answer::Ok(Some((x, r))),
                    _ => Answer::Fail,
                }
            }
            Err(_) => Answer::Fail,
        },
        404 => Answer::Ok(None),
        _ => Answer::Fail,
    }
}

async fn write(
    http: &reqwest::Client,
    url: &str,
    value: i64,
    expected_revision: Option<u64>,
) -> Answer {
    let mut body = serde_json::json!({"value": value.to_string()});
    if let Some(r) = expected_revision {
        body["expected_revision"] = r.into();
    }
    match change_outcome(&http.put(url).json(&body).send().await) {
        OpKind::Ok => Answer::Ok(None),
        OpKind::Fail => Answer::Fail,
        _ => Answer::Info,
    }
}

/// How a request that changes something ended: 2xx → ok; a refusal (4xx) or a
/// connection that never opened → fail, nothing changed; a 5xx or an answer lost
/// after sending → info, it may or may not have been applied.
pub fn change_outcome(r: &Result<reqwest::Response, reqwest::Error>) -> OpKind {
    match r {
        Ok(r) if r.status().is_success() => OpKind::Ok,
        Ok(r) if r.status().is_client_error() => OpKind::Fail,
        Ok(_) => OpKind::Info,
        Err(e) if e.is_connect() => OpKind::Fail,
        Err(_) => OpKind::Info,
    }
}

/// One client process until `until`: random ops on `keys`, against `base`.
pub async fn process(
    id: u64,
    http: reqwest::Client,
    base: String,
    keys: Vec<String>,
    until: Instant,
    rec: Arc<Recorder>,
) {
    let mut pid = id;
    let mut counter: i64 = 0;
    let mut seen: Vec<Option<i64>> = vec![None; keys.len()];
    while Instant::now() < until {
        let k = rand::random_range(0..keys.len());
        let key = &keys[k];
        let url = format!("{base}/v1/variables/jepsen/{key}");
        counter += 1;
        let fresh = i64::try_from(id).unwrap_or(0) * 1_000_000 + counter;
        let roll: u8 = rand::random_range(0..10);
        if roll < 5 {
            let op = rec.invoke(Op::new(pid, OpKind::Invoke, F::Read, key.clone(), 0));
            match read(&http, &url).await {
                Answer::Ok(v) => {
                    let v = v.map(|(x, _)| x);
                    seen[k] = v;
                    rec.complete(&op, OpKind::Ok, v);
                }
                Answer::Fail | Answer::Info => rec.complete(&op, OpKind::Fail, None),
            }
        } else if roll < 8 {
            let op = rec.invoke(
                Op::new(pid, OpKind::Invoke, F::Write, key.clone(), 0).with_value(Some(fresh)),
            );
            let kind = match write(&http, &url, fresh, None).await {
                Answer::Ok(_) => OpKind::Ok,
                Answer::Fail => OpKind::Fail,
                Answer::Info => OpKind::Info,
            };
            rec.finish(&op, kind, &mut pid);
        } else {
            let expected = seen[k];
            let op = rec.invoke(
                Op::new(pid, OpKind::Invoke, F::Cas, key.clone(), 0)
                    .with_value(Some(fresh))
                    .with_expected(expected),
            );
            let kind = match read(&http, &url).await {
                Answer::Ok(cur) if cur.map(|(x, _)| x) == expected => {
                    let rev = cur.map_or(0, |(_, r)| r);
                    match write(&http, &url, fresh, Some(rev)).await {
                        Answer::Ok(_) => OpKind::Ok,
                        Answer::Fail => OpKind::Fail,
                        Answer::Info => OpKind::Info,
                    }
                }
                _ => OpKind::Fail,
            };
            rec.finish(&op, kind, &mut pid);
        }
        tokio::time::sleep(Duration::from_millis(rand::random_range(0..20))).await;
    }
}
