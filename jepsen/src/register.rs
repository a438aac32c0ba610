//! The register workload: concurrent reads, writes and compare-and-sets on a few
//! variables, each client process pinned to one peer, recorded as a history.
//!
//! - read: `GET /v1/variables/jepsen/{key}` (linearizable): 200 → ok with the value, 404 →
//!   ok with "absent"; anything else → fail (a read changes nothing).
//! - write: `PUT` → 200 ok; a refusal (4xx) or a connection that never opened →
//!   fail; a timeout or 5xx after sending → info (it may have been applied).
//! - cas(expected → new): a linearizable read, then `PUT` with `expected_revision`
//!   set to the revision read. A value other than `expected` → fail; 409 → fail
//!   (someone wrote in between); 200 → ok. The write's revision check makes the
//!   pair atomic: the value cannot have changed if the revision did not.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use orion_api::PutVariable;
use orion_client::{Client, ClientError, Consistency, WriteRetry};
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

/// A client of the workloads: `urls` (one peer for a pinned process), trusting
/// `ca_pem`, sending `token`, each call within `timeout` after a 500 ms connect.
/// It never fails over on its own or sends a write twice: each op is one attempt,
/// recorded for what it did.
pub fn workload_client(
    urls: &[String],
    ca_pem: &str,
    token: &str,
    timeout: Duration,
) -> anyhow::Result<Client> {
    Ok(Client::builder(urls)
        .ca(ca_pem)
        .token(Some(token.to_string()))
        .connect_timeout(Duration::from_millis(500))
        .timeout(timeout)
        .write_retry(WriteRetry::Never)
        .build()?)
}

/// The register's variable for `key`.
fn path(key: &str) -> String {
    format!("jepsen/{key}")
}

async fn read(client: &Client, key: &str) -> Answer {
    match client.variable(&path(key), Consistency::Linearizable).await {
        Ok(r) => match r.variable.value.parse() {
            Ok(x) => Answer::Ok(Some((x, r.variable.mod_revision))),
            Err(_) => Answer::Fail,
        },
        Err(e) if e.is_not_found() => Answer::Ok(None),
        Err(_) => Answer::Fail,
    }
}

async fn write(client: &Client, key: &str, value: i64, expected_revision: Option<u64>) -> Answer {
    let body = PutVariable {
        value: value.to_string(),
        expected_revision,
        secret: false,
    };
    match change_outcome(&client.put_variable(&path(key), &body).await) {
        OpKind::Ok => Answer::Ok(None),
        OpKind::Fail => Answer::Fail,
        _ => Answer::Info,
    }
}

/// How a request that changes something ended: 2xx → ok; a refusal (4xx) or a
/// connection that never opened → fail, nothing changed; a 5xx or an answer lost
/// after sending → info, it may or may not have been applied.
///
/// In the client's terms: an answer is ok even if its body then could not be
/// read ([`ClientError::Unreadable`] follows a 2xx status); a write that may have
/// been received and got no answer (a broken connection, a timeout, a 503) is
/// [`ClientError::Unknown`]; one that reached no peer is
/// [`ClientError::Unreachable`]; nothing else is sent at all.
pub fn change_outcome<T>(r: &Result<T, ClientError>) -> OpKind {
    match r {
        Ok(_) | Err(ClientError::Unreadable(_)) => OpKind::Ok,
        Err(ClientError::Api { status, .. }) if status.is_client_error() => OpKind::Fail,
        Err(ClientError::Api { .. } | ClientError::Unknown { .. }) => OpKind::Info,
        Err(
            ClientError::Unreachable(_)
            | ClientError::Invalid(_)
            | ClientError::Refused(_)
            | ClientError::Broken(_)
            | ClientError::Output(_)
            | ClientError::Tls(_),
        ) => OpKind::Fail,
    }
}

/// One client process until `until`: random ops on `keys`, through `client`
/// (pinned to one peer).
pub async fn process(
    id: u64,
    client: Client,
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
        counter += 1;
        let fresh = i64::try_from(id).unwrap_or(0) * 1_000_000 + counter;
        let roll: u8 = rand::random_range(0..10);
        if roll < 5 {
            let op = rec.invoke(Op::new(pid, OpKind::Invoke, F::Read, key.clone(), 0));
            match read(&client, key).await {
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
            let kind = match write(&client, key, fresh, None).await {
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
            let kind = match read(&client, key).await {
                Answer::Ok(cur) if cur.map(|(x, _)| x) == expected => {
                    let rev = cur.map_or(0, |(_, r)| r);
                    match write(&client, key, fresh, Some(rev)).await {
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

#[cfg(test)]
mod tests {
    use orion_api::ApiError;
    use orion_client::StatusCode;

    use super::*;

    fn api(status: StatusCode) -> Result<(), ClientError> {
        Err(ClientError::Api {
            status,
            error: ApiError::internal("x"),
        })
    }

    #[test]
    fn only_a_write_that_may_have_landed_is_indeterminate() {
        assert_eq!(change_outcome(&Ok::<(), ClientError>(())), OpKind::Ok);
        assert_eq!(
            change_outcome::<()>(&Err(ClientError::Unreadable("body cut".into()))),
            OpKind::Ok,
            "a 2xx is an ack even if its body is lost"
        );
        assert_eq!(change_outcome(&api(StatusCode::CONFLICT)), OpKind::Fail);
        assert_eq!(change_outcome(&api(StatusCode::BAD_REQUEST)), OpKind::Fail);
        assert_eq!(
            change_outcome(&api(StatusCode::INTERNAL_SERVER_ERROR)),
            OpKind::Info
        );
        assert_eq!(
            change_outcome(&api(StatusCode::SERVICE_UNAVAILABLE)),
            OpKind::Info
        );
        let lost = ClientError::Unknown {
            request_id: "r".into(),
            cause: "timed out".into(),
            budget: None,
        };
        assert_eq!(change_outcome::<()>(&Err(lost)), OpKind::Info);
        assert_eq!(
            change_outcome::<()>(&Err(ClientError::Unreachable(
                "connection refused; nothing was sent".into()
            ))),
            OpKind::Fail
        );
    }
}
