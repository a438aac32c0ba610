//! Read-index batching: concurrent linearizable reads share one confirmation round.
//!
//! A linearizable read needs a read index obtained *after* the read arrived: the
//! leader confirms with a quorum that it still leads and takes its commit index (on
//! the leader, [`crate::RaftNode::read_index`]), or a follower asks the leader for
//! one (`orion-apiserver`'s forwarder). Each such round costs a network round trip, so
//! doing one per read makes concurrent readers queue behind one another.
//!
//! [`SharedRounds`] runs at most one round at a time. A read that arrives while no
//! round runs starts one; a read that arrives while a round is in flight waits for
//! the **next** round, which starts as soon as the one in flight ends, and every read
//! that arrived meanwhile shares it:
//!
//! ```text
//!  reads:    a b       c d e          f
//!  rounds:  [round 1: a b][round 2: c d e][round 3: f]
//! ```
//!
//! A read never gets the answer of a round that started before it arrived: that
//! round's commit index may predate a write acknowledged before the read began, and
//! reading at it would not be linearizable (etcd's `linearizableReadLoop` follows the
//! same rule). Rounds run in their own task, so a reader that gives up (its client
//! went away) never cancels a round the others wait on.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::oneshot;

/// A round's driver stopped without an answer (it panicked, or the runtime is
/// shutting down).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the read-index round was abandoned (shutting down?)")]
pub struct RoundAbandoned;

/// Shares rounds of an expensive confirmation among the callers waiting for one;
/// see the module docs. Clones share the rounds.
pub struct SharedRounds<T> {
    inner: Arc<Inner<T>>,
}

impl<T> Clone for SharedRounds<T> {
    fn clone(&self) -> Self {
        SharedRounds {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<T> Default for SharedRounds<T> {
    fn default() -> Self {
        SharedRounds {
            inner: Arc::new(Inner {
                state: Mutex::new(State {
                    running: false,
                    waiting: Vec::new(),
                }),
                rounds: AtomicU64::new(0),
            }),
        }
    }
}

struct Inner<T> {
    state: Mutex<State<T>>,
    /// Rounds started so far.
    rounds: AtomicU64,
}

struct State<T> {
    /// Whether a driver task is running rounds.
    running: bool,
    /// The callers that arrived since the current round started: the next round's.
    waiting: Vec<oneshot::Sender<T>>,
}

impl<T> Inner<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // The state is a flag and a list, consistent after every statement.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl<T: Clone + Send + 'static> SharedRounds<T> {
    pub fn new() -> Self {
        Self::default()
    }

    /// How many rounds have started so far.
    pub fn rounds(&self) -> u64 {
        self.inner.rounds.load(Ordering::Relaxed)
    }

    /// The answer of a round that starts after this call: the next one, or one
    /// started now if none is in flight. `confirm` runs one round; it is used only
    /// when this call has to start the driver, which then runs it for every round
    /// until nobody waits (all callers must pass equivalent functions).
    pub async fn join<F, Fut>(&self, confirm: F) -> Result<T, RoundAbandoned>
    where
        F: Fn() -> Fut + Send + 'static,
        Fut: Future<Output = T> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let start = {
            let mut state = self.inner.lock();
            state.waiting.push(tx);
            !std::mem::replace(&mut state.running, true)
        };
        if start {
            tokio::spawn(drive(Arc::clone(&self.inner), confirm));
        }
        rx.await.map_err(|_| RoundAbandoned)
    }
}

/// Runs rounds while anyone waits for one. Each round serves exactly the callers
/// queued before it started.
async fn drive<T, F, Fut>(inner: Arc<Inner<T>>, confirm: F)
where
    T: Clone,
    F: Fn() -> Fut,
    Fut: Future<Output = T>,
{
    // If a round panics (or the task is dropped), the next caller starts a new
    // driver; the callers of the lost round get `RoundAbandoned`.
    let mut guard = StopGuard {
        inner: &inner,
        idle: false,
    };
    loop {
        let waiters = {
            let mut state = guard.inner.lock();
            if state.waiting.is_empty() {
                // Under the same lock as the check: a caller that queues after this
                // sees no driver and starts one.
                state.running = false;
                guard.idle = true;
                return;
            }
            std::mem::take(&mut state.waiting)
        };
        guard.inner.rounds.fetch_add(1, Ordering::Relaxed);
        let answer = confirm().await;
        for waiter in waiters {
            // A waiter that gave up has dropped its receiver; nothing to do.
            let _ = waiter.send(answer.clone());
        }
    }
}

/// Marks the driver stopped when it ends without going idle (a round panicked, or
/// the task was dropped), so the next caller starts another.
struct StopGuard<'a, T> {
    inner: &'a Inner<T>,
    /// Set when the driver stopped because nobody waits (it cleared `running`).
    idle: bool,
}

impl<T> Drop for StopGuard<'_, T> {
    fn drop(&mut self) {
        if self.idle {
            return;
        }
        let mut state = self.inner.lock();
        state.running = false;
        // Those queued for the next round would wait for a driver that is gone:
        // dropping their senders tells them.
        state.waiting.clear();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicU64;
    use std::time::Duration;

    use tokio::sync::Semaphore;

    use super::*;

    /// A confirmation that counts its rounds, answers with the round's number and
    /// finishes only when the test lets it (one permit per round).
    #[derive(Clone)]
    struct Gated {
        started: Arc<AtomicU64>,
        gate: Arc<Semaphore>,
    }

    impl Gated {
        fn new() -> Self {
            Gated {
                started: Arc::new(AtomicU64::new(0)),
                gate: Arc::new(Semaphore::new(0)),
            }
        }

        fn confirm(&self) -> impl Fn() -> futures::future::BoxFuture<'static, u64> + Send {
            let me = self.clone();
            move || {
                let me = me.clone();
                Box::pin(async move {
                    let round = me.started.fetch_add(1, Ordering::SeqCst) + 1;
                    me.gate.acquire().await.expect("gate open").forget();
                    round
                })
            }
        }

        fn started(&self) -> u64 {
            self.started.load(Ordering::SeqCst)
        }

        async fn wait_started(&self, n: u64) {
            tokio::time::timeout(Duration::from_secs(10), async {
                while self.started() < n {
                    tokio::task::yield_now().await;
                }
            })
            .await
            .expect("round started");
        }
    }

    /// Starts a reader that records how many rounds had started when it arrived.
    fn reader(
        rounds: &SharedRounds<u64>,
        gated: &Gated,
    ) -> (u64, tokio::task::JoinHandle<Result<u64, RoundAbandoned>>) {
        let arrived_after = gated.started();
        let rounds = rounds.clone();
        let confirm = gated.confirm();
        (
            arrived_after,
            tokio::spawn(async move { rounds.join(confirm).await }),
        )
    }

    #[tokio::test]
    async fn readers_that_arrive_together_share_one_round() {
        let rounds = SharedRounds::new();
        let gated = Gated::new();
        let readers: Vec<_> = (0..50).map(|_| reader(&rounds, &gated)).collect();
        gated.wait_started(1).await;
        // Let every reader queue up before the round may end.
        tokio::task::yield_now().await;
        gated.gate.add_permits(1);
        for (_, r) in readers {
            assert_eq!(r.await.expect("reader ran"), Ok(1));
        }
        assert_eq!(rounds.rounds(), 1);
        assert_eq!(gated.started(), 1);
    }

    #[tokio::test]
    async fn a_reader_never_gets_a_round_that_started_before_it_arrived() {
        let rounds = SharedRounds::new();
        let gated = Gated::new();
        let (_, first) = reader(&rounds, &gated);
        gated.wait_started(1).await;
        // Round 1 is in flight: these must wait for round 2, all of them together.
        let late: Vec<_> = (0..20).map(|_| reader(&rounds, &gated)).collect();
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert_eq!(gated.started(), 1, "no second round while the first runs");
        gated.gate.add_permits(1);
        assert_eq!(first.await.expect("reader ran"), Ok(1));
        gated.wait_started(2).await;
        gated.gate.add_permits(1);
        for (arrived_after, r) in late {
            let round = r.await.expect("reader ran").expect("answered");
            assert!(
                round > arrived_after,
                "round {round} started before the reader arrived (after round {arrived_after})"
            );
            assert_eq!(round, 2);
        }
        assert_eq!(rounds.rounds(), 2);
    }

    #[tokio::test]
    async fn every_answer_comes_from_a_round_started_after_arrival_under_load() {
        let rounds = SharedRounds::new();
        let gated = Gated::new();
        gated.gate.add_permits(1_000_000);
        let mut readers = Vec::new();
        for i in 0..400 {
            readers.push(reader(&rounds, &gated));
            if i % 7 == 0 {
                tokio::task::yield_now().await;
            }
        }
        for (arrived_after, r) in readers {
            let round = r.await.expect("reader ran").expect("answered");
            assert!(round > arrived_after);
        }
        assert!(
            rounds.rounds() < 400,
            "{} rounds for 400 reads",
            rounds.rounds()
        );
    }

    #[tokio::test]
    async fn a_reader_that_gives_up_does_not_stop_the_round() {
        let rounds = SharedRounds::new();
        let gated = Gated::new();
        let (_, quitter) = reader(&rounds, &gated);
        let (_, stayer) = reader(&rounds, &gated);
        gated.wait_started(1).await;
        quitter.abort();
        gated.gate.add_permits(1);
        assert_eq!(stayer.await.expect("reader ran"), Ok(1));
        // Idle again: the next reader starts a fresh round.
        gated.gate.add_permits(1);
        let (_, next) = reader(&rounds, &gated);
        assert_eq!(next.await.expect("reader ran"), Ok(2));
    }

    #[tokio::test]
    async fn a_round_that_panics_fails_its_readers_and_the_next_reader_starts_over() {
        let rounds: SharedRounds<u64> = SharedRounds::new();
        let failed = rounds.join(|| async { panic!("confirmation broke") }).await;
        assert_eq!(failed, Err(RoundAbandoned));
        assert_eq!(rounds.join(|| async { 7 }).await, Ok(7));
    }
}
