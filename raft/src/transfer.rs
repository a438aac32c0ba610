//! Leadership transfer: the leader hands leadership to an up-to-date voter, so a
//! planned restart costs one vote round instead of an election timeout.
//!
//! openraft 0.9 has no transfer call, so it is built from what it has:
//!
//! 1. The leader closes its [`WriteGate`]: new proposals (writes, controllers'
//!    commands, membership changes) wait; those in flight finish first. This is the
//!    "stop proposing meanwhile" of the Raft dissertation (§3.10).
//! 2. It waits until the target's matched index (openraft's `replication` metrics)
//!    is its own last log index: the target has the whole log, so it can win.
//! 3. It waits out its own leader lease. openraft 0.9 rejects a vote request while
//!    the voter's vote was updated less than `election_timeout_max` ago
//!    (`Engine::handle_vote_req`): a follower's vote is refreshed by every heartbeat,
//!    so followers refuse, but a leader's own vote is last updated when it was
//!    elected. So a leader of more than one lease grants the target's vote, and in
//!    a three-peer cluster that vote and the target's own are a quorum: the target
//!    wins its first round. (With five peers the other followers still refuse until
//!    their lease runs out, so the target may need one more round.)
//! 4. It sends the target `TimeoutNow` over the peer service, naming its term and
//!    last log index; the target checks it still follows this leader in that term
//!    and has that log, then calls `Raft::trigger().elect()`, which bumps the term.
//!    The old leader grants the vote and steps down on seeing the higher term.
//! 5. It waits until it sees the target lead, then opens the gate. The held
//!    proposals then fail here with "not the leader" and the forwarder sends them,
//!    under their request ids, to the new leader; none is lost or doubled.
//!
//! Every step is bounded; when one runs out the gate opens and the caller is told
//! which step and why. Nothing is changed by a transfer that fails before step 4.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use openraft::ServerState;
use orion_api::cluster::REACHABLE_WITHIN_MS;
use orion_api::TransferResponse;
use serde::{Deserialize, Serialize};
use tokio::sync::{OwnedRwLockWriteGuard, RwLock, RwLockReadGuard};
use tokio::time::Instant;
use tracing::info;

use crate::codec;
use crate::network::{Contacts, PeerNetwork};
use crate::types::{NodeId, Raft, RaftMetrics};
use crate::{FatalError, LeaderError, TransferRefusal};

/// How long step 1 (writes in flight finish) and step 2 (the target catches up)
/// may take together.
pub const PREPARE: Duration = Duration::from_secs(2);

/// How long the target has to answer `TimeoutNow`.
const ASK: Duration = Duration::from_secs(1);

/// Holds new proposals while a transfer runs. Proposals enter it shared; a
/// transfer closes it exclusively, which first waits for those in flight (tokio's
/// lock is fair: once a transfer waits, new proposals queue behind it).
#[derive(Debug, Clone, Default)]
pub struct WriteGate(Arc<RwLock<()>>);

impl WriteGate {
    /// Waits while a transfer holds the gate; keep the guard for the proposal.
    pub async fn enter(&self) -> RwLockReadGuard<'_, ()> {
        self.0.read().await
    }

    /// Closes the gate once nothing is in flight, or `None` after `within`.
    async fn close(&self, within: Duration) -> Option<OwnedRwLockWriteGuard<()>> {
        tokio::time::timeout(within, self.0.clone().write_owned())
            .await
            .ok()
    }
}

/// What the leader asks the target in step 4.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TimeoutNow {
    /// The leader's term: the target must still follow it in this term.
    pub term: u64,
    /// The leader's last log index: the target must have at least this much.
    pub last_log_index: u64,
}

/// What the choice of a target looks at.
struct Candidates<'a> {
    voters: BTreeSet<NodeId>,
    /// Voters and learners.
    members: BTreeSet<NodeId>,
    /// Members that answered the leader recently.
    reachable: BTreeSet<NodeId>,
    /// How far each member's log is known to match the leader's.
    matched: &'a dyn Fn(NodeId) -> u64,
}

/// `to` checked, or the most up-to-date reachable voter other than `me` (the
/// lowest id among equals).
fn choose_target(
    me: NodeId,
    c: &Candidates<'_>,
    to: Option<NodeId>,
) -> Result<NodeId, TransferRefusal> {
    match to {
        Some(id) if id == me => Err(TransferRefusal::ToSelf { id }),
        Some(id) if !c.members.contains(&id) => Err(TransferRefusal::UnknownMember { id }),
        Some(id) if !c.voters.contains(&id) => Err(TransferRefusal::NotVoter { id }),
        Some(id) if !c.reachable.contains(&id) => Err(TransferRefusal::Unreachable { id }),
        Some(id) => Ok(id),
        None => c
            .voters
            .iter()
            .copied()
            .filter(|id| *id != me && c.reachable.contains(id))
            .max_by_key(|id| ((c.matched)(*id), std::cmp::Reverse(*id)))
            .ok_or(TransferRefusal::NoCandidate),
    }
}

/// The parts of a running peer a transfer uses.
pub(crate) struct Transfer<'a> {
    pub raft: &'a Raft,
    pub network: &'a PeerNetwork,
    pub contacts: &'a Contacts,
    pub gate: &'a WriteGate,
    pub self_id: NodeId,
    /// openraft's leader lease, and the unit of the election deadline.
    pub lease: Duration,
}

fn matched(m: &RaftMetrics, id: NodeId) -> u64 {
    m.replication
        .as_ref()
        .and_then(|r| r.get(&id))
        .and_then(|l| l.map(|l| l.index))
        .unwrap_or(0)
}

fn not_leader(m: &RaftMetrics) -> LeaderError {
    let leader = m.current_leader.and_then(|id| {
        m.membership_config
            .membership()
            .get_node(&id)
            .map(|n| (id, n.clone()))
    });
    LeaderError::NotLeader { leader }
}

impl Transfer<'_> {
    fn reachable(&self, id: NodeId) -> bool {
        self.contacts.get(id).is_some_and(|c| {
            !c.last_call_failed
                && c.last_answer
                    .is_some_and(|t| t.elapsed() <= Duration::from_millis(REACHABLE_WITHIN_MS))
        })
    }

    /// The target: `to` checked, or the most up-to-date reachable voter.
    fn target(&self, m: &RaftMetrics, to: Option<NodeId>) -> Result<NodeId, TransferRefusal> {
        let membership = m.membership_config.membership();
        choose_target(
            self.self_id,
            &Candidates {
                voters: membership.voter_ids().collect(),
                members: membership.nodes().map(|(id, _)| *id).collect(),
                reachable: membership
                    .nodes()
                    .map(|(id, _)| *id)
                    .filter(|id| self.reachable(*id))
                    .collect(),
                matched: &|id| matched(m, id),
            },
            to,
        )
    }

    /// Runs the transfer (see the module docs).
    pub async fn run(&self, to: Option<NodeId>) -> Result<TransferResponse, LeaderError> {
        let started = Instant::now();
        let mut metrics = self.raft.metrics();
        let m = metrics.borrow().clone();
        if m.state != ServerState::Leader {
            return Err(not_leader(&m));
        }
        let target = self.target(&m, to)?;
        let Some(member) = m.membership_config.membership().get_node(&target).cloned() else {
            return Err(TransferRefusal::UnknownMember { id: target }.into());
        };
        info!(to = target, "transferring leadership: holding new writes");

        // 1. Hold new proposals; those in flight finish.
        let deadline = started + PREPARE;
        let Some(gate) = self.gate.close(PREPARE).await else {
            return Err(TransferRefusal::InFlight {
                ms: PREPARE.as_millis() as u64,
            }
            .into());
        };

        // 2. The target catches up with the whole log.
        let (term, last) = loop {
            let m = metrics.borrow_and_update().clone();
            if m.state != ServerState::Leader {
                return Err(not_leader(&m));
            }
            let last = m.last_log_index.unwrap_or(0);
            let have = matched(&m, target);
            if have >= last {
                break (m.current_term, last);
            }
            if Instant::now() >= deadline {
                return Err(TransferRefusal::Behind {
                    id: target,
                    matched: have,
                    last,
                    ms: PREPARE.as_millis() as u64,
                }
                .into());
            }
            let _ = tokio::time::timeout_at(deadline, metrics.changed()).await;
        };

        // 3. This leader's own lease: until it ends, it would refuse the vote.
        let since = self
            .raft
            .with_raft_state(|s| s.vote_last_modified().map(|t| t.elapsed()))
            .await
            .map_err(|f| LeaderError::from(FatalError::from(f)))?;
        if let Some(left) = since.and_then(|s| self.lease.checked_sub(s)) {
            tokio::time::sleep(left + Duration::from_millis(5)).await;
        }

        // 4. Ask the target to start an election now.
        let ask = codec::encode(&TimeoutNow {
            term,
            last_log_index: last,
        })
        .map_err(|e| TransferRefusal::Refused {
            id: target,
            reason: e.to_string(),
        })?;
        let answer = match self.network.timeout_now(target, &member, ask, ASK).await {
            Ok(data) => codec::decode::<Result<(), String>>(&data)
                .unwrap_or_else(|e| Err(format!("unreadable answer: {e}"))),
            Err(s) if s.code() == tonic::Code::Unimplemented => {
                return Err(TransferRefusal::TooOld { id: target }.into())
            }
            Err(s) => Err(s.message().to_string()),
        };
        if let Err(reason) = answer {
            return Err(TransferRefusal::Refused { id: target, reason }.into());
        }

        // 5. Wait until the target leads, then let the held proposals go.
        let deadline = Instant::now() + (self.lease * 2).max(Duration::from_secs(2));
        let leader = loop {
            let m = metrics.borrow_and_update().clone();
            if m.current_leader == Some(target) {
                break m;
            }
            if Instant::now() >= deadline {
                drop(gate);
                return Err(TransferRefusal::NotWon {
                    id: target,
                    ms: (deadline - started).as_millis() as u64,
                    leader: m.current_leader,
                }
                .into());
            }
            let _ = tokio::time::timeout_at(deadline, metrics.changed()).await;
        };
        drop(gate);
        let took_ms = started.elapsed().as_millis() as u64;
        info!(
            from = self.self_id,
            to = target,
            term = leader.current_term,
            took_ms,
            "leadership transferred"
        );
        Ok(TransferResponse {
            from: self.self_id,
            to: target,
            leader: target,
            term: leader.current_term,
            took_ms,
        })
    }
}

/// The target's side of step 4: checks the request against its own state and, if
/// it still holds, starts an election. The answer says why not, otherwise.
pub async fn answer_timeout_now(
    raft: &Raft,
    self_id: NodeId,
    from: NodeId,
    data: &[u8],
) -> Result<(), String> {
    let req: TimeoutNow = codec::decode(data).map_err(|e| e.to_string())?;
    let m = raft.metrics().borrow().clone();
    if m.current_leader != Some(from) || m.current_term != req.term {
        return Err(format!(
            "peer {self_id} follows {:?} in term {}, not peer {from} in term {}",
            m.current_leader, m.current_term, req.term
        ));
    }
    let have = m.last_log_index.unwrap_or(0);
    if have < req.last_log_index {
        return Err(format!(
            "peer {self_id} has the log up to {have}, the leader's goes to {}",
            req.last_log_index
        ));
    }
    if !m
        .membership_config
        .membership()
        .voter_ids()
        .any(|v| v == self_id)
    {
        return Err(format!("peer {self_id} is not a voter"));
    }
    info!(
        leader = from,
        term = req.term,
        "the leader hands over leadership: starting an election"
    );
    raft.trigger()
        .elect()
        .await
        .map_err(|e| format!("peer {self_id} could not start an election: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(ids: &[NodeId]) -> BTreeSet<NodeId> {
        ids.iter().copied().collect()
    }

    /// Leader 1; voters 1, 2, 3; learner 4; 3 is ahead of 2; `reachable` as given.
    fn pick(reachable: &[NodeId], to: Option<NodeId>) -> Result<NodeId, TransferRefusal> {
        let matched = |id| match id {
            2 => 10,
            3 => 12,
            _ => 0,
        };
        let c = Candidates {
            voters: set(&[1, 2, 3]),
            members: set(&[1, 2, 3, 4]),
            reachable: set(reachable),
            matched: &matched,
        };
        choose_target(1, &c, to)
    }

    #[test]
    fn a_named_voter_is_taken() {
        assert_eq!(pick(&[2, 3, 4], Some(2)).expect("ok"), 2);
    }

    #[test]
    fn bad_targets_are_refused_by_name() {
        let msg = |r: Result<NodeId, TransferRefusal>| r.expect_err("an error").to_string();
        assert_eq!(
            msg(pick(&[2, 3], Some(1))),
            "member 1 is the leader already; name another voter"
        );
        assert_eq!(msg(pick(&[2, 3], Some(9))), "no member with id 9");
        assert_eq!(
            msg(pick(&[2, 3, 4], Some(4))),
            "member 4 is a learner; leadership can only go to a voter"
        );
        assert!(
            msg(pick(&[3], Some(2))).starts_with("member 2 has not answered the leader recently")
        );
        assert!(pick(&[2, 3], Some(9)).expect_err("an error").is_not_found());
    }

    #[test]
    fn with_no_id_the_most_up_to_date_reachable_voter_is_taken() {
        assert_eq!(pick(&[2, 3, 4], None).expect("ok"), 3);
        assert_eq!(
            pick(&[2, 4], None).expect("ok"),
            2,
            "3 is ahead but unreachable"
        );
        assert!(matches!(
            pick(&[4], None),
            Err(TransferRefusal::NoCandidate)
        ));
    }
}
