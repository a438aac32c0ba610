//! The set workload: unique adds through every peer during faults, then one
//! linearizable read of the whole set after healing.
//!
//! An add of element `e` creates variable `jepsen/set/e<e>` (create-only, so an
//! add can never be applied twice). 200 → ok; a refusal (4xx) or a connection that
//! never opened → fail; a timeout or 5xx after sending → info. The final read lists
//! the prefix, following `next` until the listing ends.

use std::sync::Arc;
use std::time::Duration;

use orion_api::PutVariable;
use orion_client::{Client, Consistency, VariableQuery};
use tokio::time::Instant;

use crate::history::{Op, OpKind, F};
use crate::register::{change_outcome, Recorder};
use crate::set::SET_KEY;

const PREFIX: &str = "jepsen/set/e";
/// Process id of the adder of peer 1; the adder of peer `i` is `FIRST_ADDER + i - 1`.
pub const FIRST_ADDER: u64 = 100;
/// Process id of the final read.
pub const FINAL_READER: u64 = 999;

/// One adder process until `until`; elements are `id * 1_000_000 + n`.
pub async fn adder(id: u64, client: Client, until: Instant, rec: Arc<Recorder>) {
    let mut pid = id;
    let mut n: i64 = 0;
    while Instant::now() < until {
        n += 1;
        let e = i64::try_from(id).unwrap_or(0) * 1_000_000 + n;
        let op = rec.invoke(Op::new(pid, OpKind::Invoke, F::Add, SET_KEY, 0).with_value(Some(e)));
        let body = PutVariable {
            value: "1".into(),
            expected_revision: Some(0),
            secret: false,
        };
        let kind = change_outcome(&client.put_variable(&format!("{PREFIX}{e}"), &body).await);
        rec.finish(&op, kind, &mut pid);
        tokio::time::sleep(Duration::from_millis(rand::random_range(0..10))).await;
    }
}

/// The final read through `client`, retried until it succeeds or `deadline`.
pub async fn final_read(client: &Client, rec: &Recorder, deadline: Instant) -> anyhow::Result<()> {
    loop {
        let op = rec.invoke(Op::new(FINAL_READER, OpKind::Invoke, F::Read, SET_KEY, 0));
        match list(client).await {
            Ok(values) => {
                rec.record(op.completed(OpKind::Ok, rec.now_ns()).with_values(values));
                return Ok(());
            }
            Err(e) => {
                rec.complete(&op, OpKind::Fail, None);
                if Instant::now() > deadline {
                    return Err(e.context("the final read never succeeded"));
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

async fn list(client: &Client) -> anyhow::Result<Vec<i64>> {
    let mut values = Vec::new();
    let mut query = VariableQuery {
        prefix: PREFIX.to_string(),
        start_after: None,
        limit: Some(10_000),
        consistency: Consistency::Linearizable,
    };
    loop {
        let page = client.variables(&query).await?;
        for item in &page.items {
            let path = &item.path;
            let e = path
                .strip_prefix(PREFIX)
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| anyhow::anyhow!("unexpected path {path:?} in the set"))?;
            values.push(e);
        }
        match page.next {
            Some(n) => query.start_after = Some(n),
            None => return Ok(values),
        }
    }
}
