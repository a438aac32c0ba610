//! Write batching: concurrent variable writes share one Raft entry, so one WAL sync
//! (and one replication round) covers many of them.
//!
//! openraft 0.9 appends each `client_write` as its own entry and waits for that
//! append's flush before it appends the next (`RaftCore::append_to_log` awaits the
//! [`LogFlushed`](openraft::storage::LogFlushed) callback), so the store's group
//! commit never finds two appends to share a sync: every write paid one `fdatasync`
//! on the leader, in turn. [`WriteBatcher`] instead hands openraft at most
//! [`MAX_IN_FLIGHT`] entries at a time; the writes that arrive meanwhile queue and go
//! together, as one [`Command::Batch`], in the next entry. A lone write is sent as
//! it is (no batch), so a single client pays nothing for this.
//!
//! Only variable writes with a request id are batched, at most one per variable path
//! and request id in a batch: every write of a batch gets the entry's index as its
//! revision, so a variable's `mod_revision` still names one version of it. Apply
//! runs each write of a batch as if it were its own entry (its own request-id
//! record, its own rejection, which changes nothing), see [`crate::apply`].

use std::collections::{BTreeSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use openraft::error::{ClientWriteError, Fatal, RaftError};
use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};

use crate::command::{Applied, Command, CommandResult, Proposal, Rejection};
use crate::types::{Member, NodeId, Raft};

/// Entries of batched writes handed to openraft and not yet applied. While they
/// are in flight, new writes queue for the next batch.
pub const MAX_IN_FLIGHT: usize = 2;

/// Most writes in one batch.
pub const MAX_BATCH_WRITES: usize = 256;

/// Most bytes of paths and values in one batch (a larger write goes alone). Keeps an
/// AppendEntries call of `max-entries-per-rpc` entries within a heartbeat interval.
pub const MAX_BATCH_BYTES: usize = 256 << 10;

/// Why a batched write failed as a whole: what `client_write` said.
#[derive(Debug, Clone)]
pub enum WriteFailure {
    NotLeader(Option<(NodeId, Member)>),
    Fatal(Fatal<NodeId>),
    /// The batcher stopped (shutting down).
    Abandoned,
}

/// Whether a proposal may share an entry with others.
pub fn batchable(p: &Proposal) -> bool {
    p.request_id.is_some()
        && matches!(
            p.command,
            Command::PutVariable { .. } | Command::DeleteVariable { .. }
        )
}

/// The variable path a batchable write touches.
pub fn written_path(c: &Command) -> Option<&str> {
    match c {
        Command::PutVariable { path, .. } | Command::DeleteVariable { path, .. } => Some(path),
        _ => None,
    }
}

fn size_of(p: &Proposal) -> usize {
    match &p.command {
        Command::PutVariable { path, value, .. } => path.len() + value.len(),
        Command::DeleteVariable { path, .. } => path.len(),
        _ => 0,
    }
}

type Reply = oneshot::Sender<Result<CommandResult, WriteFailure>>;

struct Pending {
    proposal: Proposal,
    reply: Reply,
}

struct State {
    /// Writes waiting for a batch, oldest first.
    queue: VecDeque<Pending>,
    /// Whether a driver task is forming batches.
    running: bool,
}

struct Inner {
    state: Mutex<State>,
    in_flight: Arc<Semaphore>,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A queue and a flag, consistent after every statement.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Groups concurrent batchable writes into batch entries; see the module docs.
/// Clones share the queue.
#[derive(Clone)]
pub struct WriteBatcher {
    raft: Raft,
    inner: Arc<Inner>,
}

impl WriteBatcher {
    pub fn new(raft: Raft) -> Self {
        WriteBatcher {
            raft,
            inner: Arc::new(Inner {
                state: Mutex::new(State {
                    queue: VecDeque::new(),
                    running: false,
                }),
                in_flight: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
            }),
        }
    }

    /// Proposes one batchable write (see [`batchable`]) and returns what applying it
    /// did.
    pub async fn write(&self, proposal: Proposal) -> Result<CommandResult, WriteFailure> {
        let (reply, answer) = oneshot::channel();
        let start = {
            let mut state = self.inner.lock();
            state.queue.push_back(Pending { proposal, reply });
            !std::mem::replace(&mut state.running, true)
        };
        if start {
            tokio::spawn(drive(self.clone()));
        }
        answer.await.unwrap_or(Err(WriteFailure::Abandoned))
    }
}

/// Forms batches while writes are queued: waits for a free slot, takes what is
/// queued, sends it, repeats.
async fn drive(batcher: WriteBatcher) {
    let mut guard = StopGuard {
        inner: &batcher.inner,
        idle: false,
    };
    loop {
        let Ok(permit) = Arc::clone(&batcher.inner.in_flight).acquire_owned().await else {
            return;
        };
        let batch = {
            let mut state = guard.inner.lock();
            if state.queue.is_empty() {
                // Under the lock that queues: a write queued after this starts a driver.
                state.running = false;
                guard.idle = true;
                return;
            }
            take_batch(&mut state.queue)
        };
        tokio::spawn(send(batcher.raft.clone(), batch, permit));
    }
}

/// Takes the oldest queued writes that fit in one batch: at most one per path and
/// per request id, within [`MAX_BATCH_WRITES`] and [`MAX_BATCH_BYTES`] (the first
/// write always). Writes left behind keep their order.
fn take_batch(queue: &mut VecDeque<Pending>) -> Vec<Pending> {
    let mut batch = Vec::new();
    let mut left = VecDeque::new();
    let mut paths = BTreeSet::new();
    let mut ids = BTreeSet::new();
    let mut bytes = 0;
    while let Some(p) = queue.pop_front() {
        let size = size_of(&p.proposal);
        let fits = batch.len() < MAX_BATCH_WRITES
            && (batch.is_empty() || bytes + size <= MAX_BATCH_BYTES)
            && written_path(&p.proposal.command).is_none_or(|path| !paths.contains(path))
            && p.proposal
                .request_id
                .as_ref()
                .is_none_or(|id| !ids.contains(id));
        if !fits {
            left.push_back(p);
            if batch.len() >= MAX_BATCH_WRITES {
                break;
            }
            continue;
        }
        if let Some(path) = written_path(&p.proposal.command) {
            paths.insert(path.to_owned());
        }
        if let Some(id) = &p.proposal.request_id {
            ids.insert(id.clone());
        }
        bytes += size;
        batch.push(p);
    }
    left.append(queue);
    *queue = left;
    batch
}

/// Sends one batch as one entry and answers each of its writes.
async fn send(raft: Raft, mut batch: Vec<Pending>, _slot: OwnedSemaphorePermit) {
    if batch.len() == 1 {
        if let Some(one) = batch.pop() {
            let result = raft
                .client_write(one.proposal)
                .await
                .map(|r| r.data)
                .map_err(failure);
            let _ = one.reply.send(result);
        }
        return;
    }
    let (writes, replies): (Vec<Proposal>, Vec<Reply>) =
        batch.into_iter().map(|p| (p.proposal, p.reply)).unzip();
    let count = writes.len();
    let result = raft
        .client_write(Proposal::from(Command::Batch { writes }))
        .await;
    match result {
        Ok(resp) => {
            let revision = resp.data.revision;
            let results = match resp.data.outcome {
                Ok(Applied::Batch(results)) if results.len() == count => results,
                other => {
                    // Apply answers every write of a batch; anything else is a bug,
                    // reported to each writer rather than hidden.
                    let message = format!(
                        "a batch of {count} writes applied at revision {revision} answered {other:?}"
                    );
                    tracing::error!("{message}");
                    let broken = CommandResult {
                        revision,
                        outcome: Err(Rejection {
                            code: orion_api::ErrorCode::Internal,
                            message,
                            current_revision: None,
                            current_value: None,
                        }),
                    };
                    vec![broken; count]
                }
            };
            for (reply, result) in replies.into_iter().zip(results) {
                let _ = reply.send(Ok(result));
            }
        }
        Err(e) => {
            let e = failure(e);
            for reply in replies {
                let _ = reply.send(Err(e.clone()));
            }
        }
    }
}

fn failure(e: RaftError<NodeId, ClientWriteError<NodeId, Member>>) -> WriteFailure {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => {
            WriteFailure::NotLeader(f.leader_id.zip(f.leader_node))
        }
        // Only membership changes get this; a variable write never does.
        RaftError::APIError(ClientWriteError::ChangeMembershipError(_)) => {
            WriteFailure::NotLeader(None)
        }
        RaftError::Fatal(f) => WriteFailure::Fatal(f),
    }
}

/// Marks the driver stopped if it ends without going idle (the task was dropped),
/// failing the writes still queued so they are retried, not left waiting.
struct StopGuard<'a> {
    inner: &'a Inner,
    idle: bool,
}

impl Drop for StopGuard<'_> {
    fn drop(&mut self) {
        if self.idle {
            return;
        }
        let mut state = self.inner.lock();
        state.running = false;
        state.queue.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::RequestId;

    fn put(path: &str, id: &str, value_len: usize) -> Pending {
        let (reply, _) = oneshot::channel();
        Pending {
            proposal: Proposal::new(
                RequestId::parse(id).expect("valid id"),
                Command::PutVariable {
                    path: path.to_owned(),
                    value: "v".repeat(value_len),
                    expected_revision: None,
                    secret: false,
                },
            ),
            reply,
        }
    }

    fn paths(batch: &[Pending]) -> Vec<String> {
        batch
            .iter()
            .filter_map(|p| written_path(&p.proposal.command).map(str::to_owned))
            .collect()
    }

    #[test]
    fn a_batch_holds_one_write_per_path_and_keeps_the_rest_in_order() {
        let mut queue: VecDeque<_> = [
            put("a", "1", 1),
            put("b", "2", 1),
            put("a", "3", 1),
            put("c", "4", 1),
            put("b", "5", 1),
        ]
        .into();
        assert_eq!(paths(&take_batch(&mut queue)), ["a", "b", "c"]);
        assert_eq!(paths(&take_batch(&mut queue)), ["a", "b"]);
        assert!(queue.is_empty());
    }

    #[test]
    fn a_batch_holds_one_write_per_request_id() {
        let mut queue: VecDeque<_> = [put("a", "1", 1), put("b", "1", 1)].into();
        assert_eq!(paths(&take_batch(&mut queue)), ["a"]);
        assert_eq!(paths(&take_batch(&mut queue)), ["b"]);
    }

    #[test]
    fn a_batch_stays_within_its_count_and_byte_bounds() {
        let mut queue: VecDeque<_> = (0..MAX_BATCH_WRITES + 10)
            .map(|i| put(&format!("k{i}"), &format!("id{i}"), 1))
            .collect();
        assert_eq!(take_batch(&mut queue).len(), MAX_BATCH_WRITES);
        assert_eq!(queue.len(), 10);

        let big = MAX_BATCH_BYTES / 2;
        let mut queue: VecDeque<_> = (0..5)
            .map(|i| put(&format!("k{i}"), &format!("id{i}"), big))
            .collect();
        // Two halves would overflow with the paths: one per batch, then one.
        assert_eq!(take_batch(&mut queue).len(), 1);
        let mut huge: VecDeque<_> = [put("k", "id", MAX_BATCH_BYTES * 2)].into();
        assert_eq!(
            take_batch(&mut huge).len(),
            1,
            "a large write still goes, alone"
        );
    }

    #[test]
    fn only_variable_writes_with_a_request_id_are_batched() {
        let id = RequestId::parse("x").expect("valid id");
        let put = Command::PutVariable {
            path: "a".into(),
            value: "v".into(),
            expected_revision: None,
            secret: false,
        };
        assert!(batchable(&Proposal::new(id.clone(), put.clone())));
        assert!(!batchable(&Proposal::from(put)));
        assert!(!batchable(&Proposal::new(
            id,
            Command::DeleteService { name: "s".into() }
        )));
    }
}
