//! Keeping this peer's membership record true to the addresses it advertises.
//!
//! A peer that restarts with other addresses (a new `--agent-addr`, a moved
//! machine) finds its old ones in the membership, which is what other peers dial
//! for Raft, what followers forward to, what agents are redirected to and what
//! `GET /v1/cluster/ca` lists. At start it compares, and while they differ it asks
//! the leader to record the new ones ([`LeaderRequest::UpdateMember`]), retrying
//! with backoff. A peer whose Raft address moved hears from no leader until the
//! record changes, so it asks every member it knows of, not just a leader it has
//! heard of; the one that leads answers, the others answer "not the leader".
//!
//! Move one peer at a time: a majority whose Raft addresses all moved at once
//! cannot reach each other to record it.

use std::sync::Arc;
use std::time::Duration;

use backon::BackoffBuilder;
use orion_api::PeerIdentity;
use orion_raft::{LeaderError, Member, RaftNode};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::forward::{Forwarder, LeaderRequest, Sent};

/// Longest pause between two attempts.
const MAX_DELAY: Duration = Duration::from_secs(5);
/// How long one attempt may take.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// Keeps the membership record of `me` true to its advertised addresses.
pub struct Advertiser {
    pub node: RaftNode,
    pub leader: Arc<Forwarder>,
    /// This peer as it advertises itself.
    pub me: PeerIdentity,
}

/// The membership record this peer should have.
fn wanted(me: &PeerIdentity) -> Member {
    Member {
        api_addr: me.api_addr.clone(),
        peer_addr: me.peer_addr.clone(),
        agent_addr: me.agent_addr.clone(),
    }
}

impl Advertiser {
    /// What the membership this peer knows records for it (`None`: not a member, as
    /// before a join completes or after a removal).
    fn recorded(&self) -> Option<Member> {
        let metrics = self.node.raft.metrics();
        let m = metrics.borrow();
        m.membership_config
            .membership()
            .get_node(&self.node.id)
            .cloned()
    }

    /// Runs until the membership records this peer's advertised addresses (or until
    /// `shutdown`).
    pub async fn keep_current(self, shutdown: CancellationToken) {
        let want = wanted(&self.me);
        let mut metrics = self.node.raft.metrics();
        let mut delays = backon::ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(200))
            .with_max_delay(MAX_DELAY)
            .with_jitter()
            .without_max_times()
            .build();
        let mut announced = false;
        let mut warned = false;
        loop {
            match self.recorded() {
                Some(r) if r == want => {
                    if announced {
                        info!(member = %want, "the membership records this peer's new addresses");
                    }
                    return;
                }
                Some(old) => {
                    if !announced {
                        info!(recorded = %old, advertised = %want,
                        "this peer's addresses changed; asking the leader to record them");
                        announced = true;
                    }
                    match self.update().await {
                        // Recorded: wait until this peer has the entry too.
                        Ok(()) => debug!("the leader recorded this peer's new addresses"),
                        Err(Failure::Refused(e)) => {
                            error!(cause = %e, advertised = %want,
                            "the cluster refused this peer's new addresses; fix them and restart");
                            return;
                        }
                        Err(Failure::Unreachable(e)) if !warned => {
                            warn!(cause = %e, "cannot record this peer's new addresses yet; retrying");
                            warned = true;
                        }
                        Err(Failure::Unreachable(e)) => {
                            debug!(cause = %e, "cannot record this peer's new addresses yet")
                        }
                    }
                    let pause = delays.next().unwrap_or(MAX_DELAY);
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        _ = metrics.changed() => {}
                        () = tokio::time::sleep(pause) => {}
                    }
                }
                // Not a member: a join adds it with the right addresses.
                None => tokio::select! {
                    () = shutdown.cancelled() => return,
                    changed = metrics.changed() => if changed.is_err() { return },
                },
            }
        }
    }

    /// One round: done here if this peer leads, else sent to each member in turn
    /// (the leader it knows of first) until one that leads records it.
    async fn update(&self) -> Result<(), Failure> {
        let req = LeaderRequest::UpdateMember {
            peer: self.me.clone(),
        };
        if self.node.is_leader() {
            return match self.leader.execute_local(req).await {
                Ok(_) => Ok(()),
                Err(LeaderError::Rejected(e)) => Err(Failure::Refused(e.to_string())),
                Err(e) => Err(Failure::Unreachable(e.to_string())),
            };
        }
        let leader = self.node.leader().map(|(id, _)| id);
        let mut targets: Vec<(u64, String)> = {
            let metrics = self.node.raft.metrics();
            let m = metrics.borrow();
            m.membership_config
                .membership()
                .nodes()
                .filter(|(id, _)| **id != self.node.id)
                .map(|(id, n)| (*id, n.api_addr.clone()))
                .collect()
        };
        targets.sort_by_key(|(id, _)| Some(*id) != leader);
        let mut failures = Vec::new();
        for (id, api_addr) in targets {
            let why = match self.leader.send_to(&api_addr, &req, ATTEMPT_TIMEOUT).await {
                Sent::Done(_) => return Ok(()),
                // Any answer but "not the leader" (421) or a 5xx (busy, shutting down)
                // is the leader refusing.
                Sent::Failed { status, error } if status.is_client_error() => {
                    return Err(Failure::Refused(format!(
                        "member {id} ({api_addr}): {}",
                        error.message
                    )))
                }
                Sent::Failed { error, .. } => error.message,
                Sent::NotLeader(why) | Sent::NotSent(why) | Sent::Lost(why) => why,
            };
            failures.push(format!("member {id} ({api_addr}): {why}"));
        }
        Err(Failure::Unreachable(if failures.is_empty() {
            "no other member is known".into()
        } else {
            failures.join("; ")
        }))
    }
}

/// Why a round did not record the addresses.
enum Failure {
    /// The leader said no (say, another member uses one of the addresses):
    /// retrying will not help.
    Refused(String),
    /// No leader was reached, or it could not do it now.
    Unreachable(String),
}
