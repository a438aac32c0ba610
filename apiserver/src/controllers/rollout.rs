//! The rollout controller: moves a service's replicas to its current generation in
//! batches, so a changed spec never leaves fewer than `replicas - max_unavailable`
//! replicas available, nor runs more than `replicas + max_surge` (Kubernetes'
//! `RollingUpdate` semantics).
//!
//! Each replica object records the generation it runs ([`ReplicaObject::generation`]);
//! the gateway sends every agent the spec of that generation (kept in the service's
//! history), so a changed spec restarts nothing until this controller moves a
//! replica with [`Command::RollReplicas`]. A round, per service:
//!
//! 1. Replicas whose generation needs the same process as the current spec (only
//!    `replicas` or `strategy` changed) are moved at once: nothing restarts.
//! 2. A replica is *available* when its agent reports it healthy (running, without
//!    a health check) for the generation it should run, for at least
//!    `min_healthy_time`. Reports name their generation, so the old process's last
//!    report never counts for the new one.
//! 3. **Surge.** While replicas need a new process, the rollout opens up to
//!    `max_surge` surge slots ([`Command::SetSurge`], replicated in
//!    [`orion_api::Rollout::surge`]): the replica controller places ordinals
//!    `replicas .. replicas + surge` (`web-4` for a service of 4) at the current
//!    generation. They are ordinary replicas: they count as available, and the
//!    deadline below applies to them.
//! 4. Available replicas (surge ones included) minus `replicas - max_unavailable`
//!    is how many outdated replicas may be replaced in place in this round (ones
//!    already down first). With `max_unavailable: 0`, an old replica is replaced
//!    only once a surge replica is available, so availability never drops below
//!    `replicas`.
//! 5. A replica of the current generation that is not available `healthy_deadline`
//!    after it was moved fails the rollout (replicated: [`RolloutState::Failed`]);
//!    with `auto_rollback`, the next round makes the last revision that completed
//!    the current one again ([`Command::RollBack`], retried until it applies), and
//!    it rolls out under the same rules. A rollback that fails is not rolled back.
//! 6. Every replica `0 .. replicas` at the current generation and available: the
//!    surge slots close (their replicas are removed by the replica controller),
//!    then `Complete` (also after a failure, when the late replicas come up after
//!    all).
//!
//! Surge replicas take the ordinals above `replicas`, and the in-place replicas
//! keep theirs: when the rollout ends, `web-0 .. web-3` run the new version under
//! the names (and log files) they had, and `web-4` is gone. That costs one extra
//! start per surge slot but needs no renaming, which the agents would see as a
//! different replica. When no node has room for a surge replica (the replica
//! controller cannot place it), the rollout rolls within `max_unavailable` alone
//! and its reason says so ([`NO_ROOM`]); with `max_unavailable: 0` it then waits.
//!
//! What is replicated — the generation of every replica, the surge slots, the
//! history, the rollout state and its pause — is all a new leader needs to carry
//! on: surge replicas are replica objects, so a new leader sees them and opens no
//! second one, and closing the slots removes them whoever leads. The timers (since
//! when a replica is healthy, since when it was moved) live in the leader's memory
//! and start again on a new leader, which can only make a batch wait longer.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use orion_api::agent_proto::{ReplicaReport, ReplicaState};
use orion_api::{ReplicaObject, RolloutState, ServiceObject, UnplacedReplicas};
use orion_raft::{read, Command, LeaderError, RaftNode};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::gateway::registry::AgentRegistry;

/// What one round decided for one service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Move these ordinals to the service's current generation.
    Roll { ordinals: Vec<u32> },
    /// Record the rollout's state.
    Set {
        state: RolloutState,
        reason: Option<String>,
    },
    /// Restore the spec of generation `to` as a new generation.
    RollBack { to: u64, reason: String },
    /// Open (`slots` > 0) or close (0) the rollout's surge slots.
    Surge { slots: u32 },
}

/// The leader's clocks for the rollouts it drives (memory only).
#[derive(Debug, Default)]
pub struct Clocks {
    /// Per replica id: the generation it was first seen at (or moved to) and when.
    moved: BTreeMap<String, (u64, Instant)>,
    /// Per replica id: the generation it was first seen healthy at, and when.
    healthy: BTreeMap<String, (u64, Instant)>,
}

impl Clocks {
    /// Forgets replicas that no longer exist.
    fn retain(&mut self, live: &dyn Fn(&str) -> bool) {
        self.moved.retain(|id, _| live(id));
        self.healthy.retain(|id, _| live(id));
    }
}

/// Whether a report says the replica is up for `generation`.
pub(crate) fn up(report: Option<&ReplicaReport>, generation: u64, has_check: bool) -> bool {
    report.is_some_and(|r| {
        r.generation == generation
            && match r.state {
                ReplicaState::Healthy => true,
                ReplicaState::Running => !has_check,
                _ => false,
            }
    })
}

/// How a rollout's reason starts while it rolls without surge replicas because no
/// node can take one.
pub const NO_ROOM: &str = "no room for a surge replica";

/// Decides the next steps for `service`, whose placed replicas are `replicas`,
/// given what the agents report and, in `unplaced`, why the replica controller
/// cannot place some replica of this service now (`None` when it can place them
/// all). Pure but for `clocks`, which it keeps current.
pub fn plan(
    service: &ServiceObject,
    replicas: &[&ReplicaObject],
    reports: &BTreeMap<String, ReplicaReport>,
    unplaced: Option<&str>,
    clocks: &mut Clocks,
    now: Instant,
) -> Vec<Step> {
    let current = service.generation;
    let spec = &service.spec;
    let strategy = spec.strategy;
    let process = spec.process_view();
    let has_check = spec.health.is_some();
    let min_healthy = Duration::from_millis(strategy.min_healthy_time_ms);
    let deadline = Duration::from_millis(strategy.healthy_deadline_ms);
    let surge_open = service.rollout.surge;
    let slots = service.slots();

    // Every replica the service keeps now: `0 .. replicas` and the open surge
    // slots above them. They all count towards availability.
    let wanted: Vec<&ReplicaObject> = replicas
        .iter()
        .copied()
        .filter(|r| r.ordinal < slots)
        .collect();
    let mut steps = Vec::new();

    // 1. Same process under a newer generation: move without a restart.
    let (free, mut outdated): (Vec<&ReplicaObject>, Vec<&ReplicaObject>) = wanted
        .iter()
        .copied()
        .filter(|r| r.generation != current)
        .partition(|r| {
            service
                .spec_of(r.generation)
                .is_none_or(|s| s.process_view() == process)
        });
    let relabelled: Vec<u32> = free.iter().map(|r| r.ordinal).collect();

    // 2. Availability, with the clocks.
    let mut available = 0u32;
    let mut available_primary = 0u32;
    let mut late: Option<String> = None;
    for r in &wanted {
        let id = r.id();
        let generation = if relabelled.contains(&r.ordinal) {
            current
        } else {
            r.generation
        };
        // The relabelled run the same process: their reports still name the old
        // generation until the agent hears of the new one.
        let report = reports.get(&id);
        let is_up = up(report, generation, has_check) || up(report, r.generation, has_check);
        if is_up {
            let since = clocks
                .healthy
                .entry(id.clone())
                .and_modify(|e| {
                    if e.0 != r.generation {
                        *e = (r.generation, now);
                    }
                })
                .or_insert((r.generation, now))
                .1;
            let counts = r.generation != current || now.duration_since(since) >= min_healthy;
            if counts {
                available += 1;
                if r.ordinal < spec.replicas {
                    available_primary += 1;
                }
            }
        } else {
            clocks.healthy.remove(&id);
        }
        if generation == current {
            let since = clocks
                .moved
                .entry(id.clone())
                .and_modify(|e| {
                    if e.0 != current {
                        *e = (current, now);
                    }
                })
                .or_insert((current, now))
                .1;
            if !is_up && now.duration_since(since) >= deadline && late.is_none() {
                let why = report
                    .filter(|rep| rep.generation == current)
                    .map(|rep| match &rep.reason {
                        Some(reason) => format!("{:?}: {reason}", rep.state),
                        None => format!("{:?}", rep.state),
                    })
                    .unwrap_or_else(|| "no report from its agent".to_string())
                    .to_lowercase();
                late = Some(format!(
                    "replica {id} of revision {current} was not available within {}: {why}",
                    humantime(deadline)
                ));
            }
        }
    }

    if !relabelled.is_empty() {
        steps.push(Step::Roll {
            ordinals: relabelled.clone(),
        });
    }
    let primary = wanted.iter().filter(|r| r.ordinal < spec.replicas).count() as u32;
    let missing = spec.replicas.saturating_sub(primary);
    let all_current = wanted
        .iter()
        .filter(|r| r.ordinal < spec.replicas)
        .all(|r| r.generation == current || relabelled.contains(&r.ordinal));
    let done = all_current && missing == 0 && available_primary >= spec.replicas;
    if done {
        // The replicas the service keeps are all new and available: close the
        // surge slots, and complete once the replica controller has removed
        // every replica above `replicas`.
        if surge_open > 0 {
            steps.push(Step::Surge { slots: 0 });
        } else if service.rollout.state != RolloutState::Complete
            && replicas.iter().all(|r| r.ordinal < spec.replicas)
        {
            steps.push(Step::Set {
                state: RolloutState::Complete,
                reason: service.rollout.reason.clone(),
            });
        }
        return steps;
    }
    match service.rollout.state {
        RolloutState::Complete => {}
        RolloutState::Failed => {
            let target = service.history.iter().rev().find(|r| r.stable);
            if let (true, None, Some(target)) = (
                strategy.auto_rollback,
                service.rollout.rolled_back_from,
                target,
            ) {
                let why = service.rollout.reason.as_deref().unwrap_or("it failed");
                steps.push(Step::RollBack {
                    to: target.generation,
                    reason: format!(
                        "rolled back from revision {current} to revision {}: {why}",
                        target.generation
                    ),
                });
            }
            return steps;
        }
        RolloutState::Progressing => {
            if let Some(reason) = late {
                steps.push(Step::Set {
                    state: RolloutState::Failed,
                    reason: Some(reason),
                });
                return steps;
            }
        }
    }
    if service.rollout.paused || outdated.is_empty() {
        return steps;
    }

    // 3. Surge slots: open up to `max_surge` (no more than there are replicas
    //    to replace), so new replicas start before old ones stop.
    let outdated_primary = outdated
        .iter()
        .filter(|r| r.ordinal < spec.replicas)
        .count() as u32;
    let surge = surge_open
        .max(strategy.max_surge.min(outdated_primary))
        .min(strategy.max_surge);
    if surge != surge_open {
        steps.push(Step::Surge { slots: surge });
    }
    // A surge slot the replica controller cannot place: roll within
    // `max_unavailable` alone, and say so.
    let surge_blocked = surge_open > 0
        && (spec.replicas..slots).any(|o| !wanted.iter().any(|r| r.ordinal == o))
        && unplaced.is_some();
    let note = unplaced.filter(|_| surge_blocked).map(|why| {
        if strategy.max_unavailable == 0 {
            format!("{NO_ROOM} ({why}); max_unavailable is 0, so no replica is taken down until one fits")
        } else {
            format!(
                "{NO_ROOM} ({why}); rolling within max_unavailable ({}) instead",
                strategy.max_unavailable
            )
        }
    });
    let stale_note = service
        .rollout
        .reason
        .as_deref()
        .is_some_and(|r| r.starts_with(NO_ROOM));
    if note.is_some() && note != service.rollout.reason {
        steps.push(Step::Set {
            state: RolloutState::Progressing,
            reason: note,
        });
    } else if note.is_none() && stale_note {
        steps.push(Step::Set {
            state: RolloutState::Progressing,
            reason: None,
        });
    }

    // 4. The next batch: take replicas down only while at least
    //    `replicas - max_unavailable` stay available, surge replicas included.
    //    Without surge (a spec from before `max_surge` was enforced with both at
    //    0), one at a time.
    let budget = if strategy.max_surge == 0 {
        strategy.max_unavailable.max(1)
    } else {
        strategy.max_unavailable
    };
    let room = available
        .saturating_add(budget)
        .saturating_sub(spec.replicas) as usize;
    // Replicas their agent reports down cost nothing to replace: they go first.
    // A replica without a report (a new leader not yet heard from its agent) is
    // unknown, not down.
    let reported_down = |r: &ReplicaObject| {
        reports.get(&r.id()).is_some_and(|rep| {
            rep.generation == r.generation && !up(Some(rep), r.generation, has_check)
        })
    };
    outdated.sort_by_key(|r| (!reported_down(r), r.ordinal));
    let down_already = outdated.iter().filter(|r| reported_down(r)).count();
    let take = room.max(down_already.min(budget.max(1) as usize));
    let ordinals: Vec<u32> = outdated.iter().take(take).map(|r| r.ordinal).collect();
    if !ordinals.is_empty() {
        for o in &ordinals {
            clocks
                .moved
                .insert(format!("{}-{o}", spec.name), (current, now));
        }
        match steps.first_mut() {
            Some(Step::Roll { ordinals: first }) => first.extend(ordinals),
            _ => steps.push(Step::Roll { ordinals }),
        }
    }

    steps
}

fn humantime(d: Duration) -> String {
    let ms = d.as_millis();
    if !ms.is_multiple_of(1000) {
        format!("{ms}ms")
    } else if !ms.is_multiple_of(60_000) || ms < 60_000 {
        format!("{}s", ms / 1000)
    } else {
        format!("{}m", ms / 60_000)
    }
}

/// How often a round runs: reports from agents are not Raft changes, so a round
/// also runs on this tick.
const TICK: Duration = Duration::from_millis(250);

/// What the replica controller cannot place now (leader memory), read each round.
pub type UnplacedNow = Arc<dyn Fn() -> Vec<UnplacedReplicas> + Send + Sync>;

/// Runs rounds until `token` is cancelled (leadership lost, or shutdown).
pub async fn run(
    node: RaftNode,
    agents: Arc<AgentRegistry>,
    unplaced: UnplacedNow,
    token: CancellationToken,
) {
    let mut metrics = node.raft.metrics();
    let mut clocks = Clocks::default();
    loop {
        let state = node
            .reader
            .with_view(|v| Ok::<_, read::ReadError>((read::services(v)?, read::replicas(v)?)));
        match state {
            Ok((services, replicas)) => {
                let ids: std::collections::BTreeSet<String> =
                    replicas.iter().map(ReplicaObject::id).collect();
                clocks.retain(&|id| ids.contains(id));
                let reports = agents.reports(|id| ids.contains(id));
                let now = Instant::now();
                let unplaced = unplaced();
                for service in &services {
                    let mine: Vec<&ReplicaObject> = replicas
                        .iter()
                        .filter(|r| r.service == service.spec.name)
                        .collect();
                    let why = unplaced
                        .iter()
                        .find(|u| u.service == service.spec.name)
                        .map(|u| u.reason.as_str());
                    for step in plan(service, &mine, &reports, why, &mut clocks, now) {
                        match propose(&node, service, step).await {
                            Ok(()) => {}
                            Err(LeaderError::NotLeader { .. } | LeaderError::Fatal(_)) => {
                                info!("rollout controller stops: no longer the leader");
                                return;
                            }
                            Err(e) => {
                                warn!(service = %service.spec.name, cause = %e, "rollout step refused; retrying");
                                break;
                            }
                        }
                    }
                }
            }
            Err(e) => warn!(cause = %e, "rollout controller cannot read state; retrying"),
        }
        tokio::select! {
            () = token.cancelled() => return,
            changed = metrics.changed() => if changed.is_err() { return },
            () = tokio::time::sleep(TICK) => {}
        }
    }
}

async fn propose(node: &RaftNode, service: &ServiceObject, step: Step) -> Result<(), LeaderError> {
    let name = service.spec.name.clone();
    let generation = service.generation;
    let cmd = match step {
        Step::Roll { ordinals } => {
            debug!(service = %name, generation, ?ordinals, "rolling replicas");
            Command::RollReplicas {
                service: name,
                generation,
                ordinals,
            }
        }
        Step::Set { state, reason } => {
            info!(service = %name, generation, %state, reason = reason.as_deref().unwrap_or(""), "rollout");
            Command::SetRollout {
                service: name,
                generation,
                state,
                reason,
            }
        }
        Step::Surge { slots } => {
            info!(service = %name, generation, surge = slots, "rollout surge slots");
            Command::SetSurge {
                service: name,
                generation,
                surge: slots,
            }
        }
        Step::RollBack { to, reason } => {
            warn!(service = %name, generation, %reason, "rolling back");
            Command::RollBack {
                service: name,
                to: Some(to),
                if_generation: Some(generation),
                reason,
            }
        }
    };
    node.propose(cmd).await.map(|_| ())
}

#[cfg(test)]
mod tests {
    use orion_api::spec::{parse_documents, Resource, Resources};
    use orion_api::{Rollout, ServiceRevision};

    use super::*;

    fn spec(text: &str) -> orion_api::spec::ServiceSpec {
        let Resource::Service(spec) = parse_documents("t.yaml", text).expect("spec").remove(0)
        else {
            panic!("not a service");
        };
        spec
    }

    const V1: &str = "kind: Service\nname: web\nreplicas: 4\ncommand: [v1]\nhealth: {exec: {command: ['true']}}\nstrategy: {max_unavailable: 1, max_surge: 0, min_healthy_time: 1s, healthy_deadline: 10s}\n";

    /// `web` at generation 2 (`v2`), with generation 1 (`v1`) in its history.
    fn updated(v2: &str) -> ServiceObject {
        ServiceObject {
            spec: spec(v2),
            create_revision: 1,
            mod_revision: 5,
            generation: 2,
            history: vec![ServiceRevision {
                generation: 1,
                spec: spec(V1),
                revision: 1,
                stable: true,
            }],
            rollout: Rollout::default(),
            hooks: Default::default(),
        }
    }

    fn replicas(generations: &[u64]) -> Vec<ReplicaObject> {
        generations
            .iter()
            .enumerate()
            .map(|(i, g)| ReplicaObject {
                service: "web".into(),
                ordinal: i as u32,
                node: "n1".into(),
                generation: *g,
                resources: Resources {
                    cpu_millis: 100,
                    memory_bytes: 1 << 20,
                },
                create_revision: 1,
            })
            .collect()
    }

    fn healthy(rs: &[ReplicaObject]) -> BTreeMap<String, ReplicaReport> {
        rs.iter()
            .map(|r| {
                (
                    r.id(),
                    ReplicaReport {
                        id: r.id(),
                        pid: Some(1),
                        state: ReplicaState::Healthy,
                        restarts: 0,
                        reason: None,
                        ports: BTreeMap::new(),
                        generation: r.generation,
                        exit_code: None,
                    },
                )
            })
            .collect()
    }

    fn refs(rs: &[ReplicaObject]) -> Vec<&ReplicaObject> {
        rs.iter().collect()
    }

    #[test]
    fn a_changed_spec_rolls_one_replica_at_a_time_after_min_healthy_time() {
        let svc = updated(&V1.replace("[v1]", "[v2]"));
        let mut clocks = Clocks::default();
        let t0 = Instant::now();
        let mut rs = replicas(&[1, 1, 1, 1]);
        let steps = plan(&svc, &refs(&rs), &healthy(&rs), None, &mut clocks, t0);
        assert_eq!(steps, vec![Step::Roll { ordinals: vec![0] }]);

        // web-0 moved; its agent still reports the old process: no next batch.
        rs[0].generation = 2;
        let mut reports = healthy(&rs);
        if let Some(r) = reports.get_mut("web-0") {
            r.generation = 1;
        }
        assert_eq!(
            plan(&svc, &refs(&rs), &reports, None, &mut clocks, t0),
            vec![]
        );

        // Healthy at the new generation, but not for min_healthy_time yet.
        let reports = healthy(&rs);
        let t1 = t0 + Duration::from_millis(100);
        assert_eq!(
            plan(&svc, &refs(&rs), &reports, None, &mut clocks, t1),
            vec![]
        );
        let t2 = t1 + Duration::from_millis(1000);
        assert_eq!(
            plan(&svc, &refs(&rs), &reports, None, &mut clocks, t2),
            vec![Step::Roll { ordinals: vec![1] }]
        );
    }

    #[test]
    fn scaling_or_a_new_strategy_moves_replicas_without_a_restart() {
        let svc = updated(
            &V1.replace("replicas: 4", "replicas: 4\n")
                .replace("max_unavailable: 1,", "max_unavailable: 2,"),
        );
        let rs = replicas(&[1, 1, 1, 1]);
        let steps = plan(
            &svc,
            &refs(&rs),
            &healthy(&rs),
            None,
            &mut Clocks::default(),
            Instant::now(),
        );
        assert_eq!(
            steps,
            vec![
                Step::Roll {
                    ordinals: vec![0, 1, 2, 3]
                },
                Step::Set {
                    state: RolloutState::Complete,
                    reason: None
                }
            ]
        );
    }

    #[test]
    fn a_replica_not_available_by_the_deadline_fails_or_rolls_back() {
        let mut svc = updated(&V1.replace("[v1]", "[v2]"));
        let rs = replicas(&[2, 1, 1, 1]);
        let mut reports = healthy(&rs);
        if let Some(r) = reports.get_mut("web-0") {
            r.state = ReplicaState::Unhealthy;
            r.reason = Some("health check failed 3 times in a row".into());
        }
        let mut clocks = Clocks::default();
        let t0 = Instant::now();
        assert_eq!(
            plan(&svc, &refs(&rs), &reports, None, &mut clocks, t0),
            vec![]
        );
        let late = t0 + Duration::from_secs(11);
        let steps = plan(&svc, &refs(&rs), &reports, None, &mut clocks, late);
        let [Step::Set {
            state: RolloutState::Failed,
            reason: Some(reason),
        }] = steps.as_slice()
        else {
            panic!("{steps:?}");
        };
        assert!(
            reason.contains("web-0 of revision 2") && reason.contains("within 10s"),
            "{reason}"
        );

        // Once failed, nothing more moves; with auto_rollback, the last stable
        // revision comes back (every round, until it applies).
        svc.rollout.state = RolloutState::Failed;
        svc.rollout.reason = Some(reason.clone());
        assert_eq!(
            plan(&svc, &refs(&rs), &reports, None, &mut clocks, late),
            vec![]
        );
        svc.spec.strategy.auto_rollback = true;
        for _ in 0..2 {
            let steps = plan(&svc, &refs(&rs), &reports, None, &mut clocks, late);
            let [Step::RollBack { to: 1, reason: why }] = steps.as_slice() else {
                panic!("{steps:?}");
            };
            assert!(
                why.starts_with("rolled back from revision 2 to revision 1: replica web-0"),
                "{why}"
            );
        }
        // A rollback that fails is not rolled back again.
        svc.rollout.rolled_back_from = Some(1);
        assert_eq!(
            plan(&svc, &refs(&rs), &reports, None, &mut clocks, late),
            vec![]
        );

        // Late replicas that come up after all complete it.
        let all_new = replicas(&[2, 2, 2, 2]);
        let up = healthy(&all_new);
        let _ = plan(&svc, &refs(&all_new), &up, None, &mut clocks, late);
        let steps = plan(
            &svc,
            &refs(&all_new),
            &up,
            None,
            &mut clocks,
            late + Duration::from_secs(2),
        );
        assert!(
            matches!(
                steps.as_slice(),
                [Step::Set {
                    state: RolloutState::Complete,
                    ..
                }]
            ),
            "{steps:?}"
        );
    }

    #[test]
    fn a_paused_rollout_moves_nothing_and_a_finished_one_completes() {
        let mut svc = updated(&V1.replace("[v1]", "[v2]"));
        svc.rollout.paused = true;
        let rs = replicas(&[1, 1, 1, 1]);
        let t0 = Instant::now();
        let mut clocks = Clocks::default();
        assert_eq!(
            plan(&svc, &refs(&rs), &healthy(&rs), None, &mut clocks, t0),
            vec![]
        );

        let rs = replicas(&[2, 2, 2, 2]);
        let _ = plan(&svc, &refs(&rs), &healthy(&rs), None, &mut clocks, t0);
        let steps = plan(
            &svc,
            &refs(&rs),
            &healthy(&rs),
            None,
            &mut clocks,
            t0 + Duration::from_secs(2),
        );
        assert_eq!(
            steps,
            vec![Step::Set {
                state: RolloutState::Complete,
                reason: None
            }]
        );
    }

    #[test]
    fn a_new_leader_without_reports_moves_nothing() {
        let svc = updated(&V1.replace("[v1]", "[v2]"));
        let rs = replicas(&[2, 1, 1, 1]);
        let mut clocks = Clocks::default();
        let t0 = Instant::now();
        for round in 0..5 {
            let steps = plan(
                &svc,
                &refs(&rs),
                &BTreeMap::new(),
                None,
                &mut clocks,
                t0 + Duration::from_millis(250 * round),
            );
            assert_eq!(steps, vec![], "round {round}");
        }
        // Reports arrive: web-0 (new) healthy for long enough, then web-1 moves.
        let reports = healthy(&rs);
        let _ = plan(&svc, &refs(&rs), &reports, None, &mut clocks, t0);
        let steps = plan(
            &svc,
            &refs(&rs),
            &reports,
            None,
            &mut clocks,
            t0 + Duration::from_secs(2),
        );
        assert_eq!(steps, vec![Step::Roll { ordinals: vec![1] }]);
    }

    #[test]
    fn replicas_already_down_are_replaced_first() {
        let svc = updated(&V1.replace("[v1]", "[v2]"));
        let rs = replicas(&[1, 1, 1, 1]);
        let mut reports = healthy(&rs);
        if let Some(r) = reports.get_mut("web-2") {
            r.state = ReplicaState::Backoff;
        }
        let steps = plan(
            &svc,
            &refs(&rs),
            &reports,
            None,
            &mut Clocks::default(),
            Instant::now(),
        );
        assert_eq!(steps, vec![Step::Roll { ordinals: vec![2] }]);
    }

    /// `web` updated to `v2` with `max_unavailable: 0, max_surge: 1`.
    fn surging() -> ServiceObject {
        updated(&V1.replace("[v1]", "[v2]").replace(
            "max_unavailable: 1, max_surge: 0",
            "max_unavailable: 0, max_surge: 1",
        ))
    }

    /// Plays rounds of `plan` against a small model of the replica controller and
    /// the agents (a moved or placed replica is down for one round, then healthy)
    /// until the rollout completes; returns the fewest available replicas seen and
    /// the most replicas that existed at once.
    fn play(mut svc: ServiceObject, unplaced: Option<&str>) -> (usize, usize, ServiceObject) {
        let mut rs = replicas(&[1, 1, 1, 1]);
        let mut reports = healthy(&rs);
        let mut clocks = Clocks::default();
        let t0 = Instant::now();
        let (mut fewest, mut most) = (usize::MAX, 0);
        for round in 0..200u64 {
            let now = t0 + Duration::from_millis(600 * round);
            let available = rs
                .iter()
                .filter(|r| up(reports.get(&r.id()), r.generation, true))
                .count();
            fewest = fewest.min(available);
            most = most.max(rs.len());
            let steps = plan(&svc, &refs(&rs), &reports, unplaced, &mut clocks, now);
            // Last round's restarts are up now.
            reports = healthy(&rs);
            for step in steps {
                match step {
                    Step::Roll { ordinals } => {
                        for r in rs.iter_mut().filter(|r| ordinals.contains(&r.ordinal)) {
                            r.generation = svc.generation;
                            reports.remove(&r.id());
                        }
                    }
                    Step::Surge { slots } => svc.rollout.surge = slots,
                    Step::Set { state, reason } => {
                        svc.rollout.state = state;
                        svc.rollout.reason = reason;
                    }
                    Step::RollBack { .. } => panic!("no rollback expected"),
                }
            }
            if svc.rollout.state == RolloutState::Complete {
                return (fewest, most, svc);
            }
            // The replica controller: keep `0 .. slots` placed, nothing above.
            let slots = svc.slots();
            rs.retain(|r| r.ordinal < slots);
            if unplaced.is_none() {
                for o in 0..slots {
                    if !rs.iter().any(|r| r.ordinal == o) {
                        let mut fresh = replicas(&[svc.generation]).remove(0);
                        fresh.ordinal = o;
                        rs.push(fresh);
                    }
                }
            }
        }
        panic!("the rollout never completed: {svc:?} {rs:?}");
    }

    #[test]
    fn max_unavailable_0_and_max_surge_1_never_go_below_replicas_and_end_at_replicas() {
        let svc = surging();
        let rs = replicas(&[1, 1, 1, 1]);
        // First round: open one surge slot, take nothing down.
        let steps = plan(
            &svc,
            &refs(&rs),
            &healthy(&rs),
            None,
            &mut Clocks::default(),
            Instant::now(),
        );
        assert_eq!(steps, vec![Step::Surge { slots: 1 }]);

        let (fewest, most, done) = play(surging(), None);
        assert_eq!(fewest, 4, "never below 4 available");
        assert_eq!(most, 5, "at most one surge replica");
        assert_eq!(done.rollout.surge, 0, "surge slots closed at the end");
        assert_eq!(done.rollout.reason, None);
    }

    #[test]
    fn max_surge_with_max_unavailable_rolls_faster_and_stays_within_both() {
        let svc = updated(&V1.replace("[v1]", "[v2]").replace(
            "max_unavailable: 1, max_surge: 0",
            "max_unavailable: 1, max_surge: 2",
        ));
        let (fewest, most, done) = play(svc, None);
        assert!(fewest >= 3, "{fewest}");
        assert!(most <= 6, "{most}");
        assert_eq!(done.rollout.surge, 0);
    }

    #[test]
    fn without_room_for_a_surge_replica_it_rolls_within_max_unavailable_and_says_so() {
        let why = "web-4: 0/1 nodes: 1 insufficient memory";
        let svc = updated(&V1.replace("[v1]", "[v2]").replace(
            "max_unavailable: 1, max_surge: 0",
            "max_unavailable: 1, max_surge: 1",
        ));
        let mut open = svc.clone();
        open.rollout.surge = 1;
        let rs = replicas(&[1, 1, 1, 1]);
        let steps = plan(
            &open,
            &refs(&rs),
            &healthy(&rs),
            Some(why),
            &mut Clocks::default(),
            Instant::now(),
        );
        let [Step::Set {
            state: RolloutState::Progressing,
            reason: Some(reason),
        }, Step::Roll { ordinals }] = steps.as_slice()
        else {
            panic!("{steps:?}");
        };
        assert!(
            reason.starts_with(NO_ROOM)
                && reason.contains(why)
                && reason.contains("max_unavailable (1)"),
            "{reason}"
        );
        assert_eq!(ordinals, &vec![0]);
        let (fewest, _, done) = play(svc, Some(why));
        assert!(fewest >= 3, "{fewest}");
        assert_eq!(done.rollout.surge, 0);

        // With max_unavailable 0, nothing is taken down while nothing fits.
        let mut open = surging();
        open.rollout.surge = 1;
        let steps = plan(
            &open,
            &refs(&rs),
            &healthy(&rs),
            Some(why),
            &mut Clocks::default(),
            Instant::now(),
        );
        let [Step::Set {
            reason: Some(reason),
            ..
        }] = steps.as_slice()
        else {
            panic!("{steps:?}");
        };
        assert!(reason.contains("max_unavailable is 0"), "{reason}");
    }

    #[test]
    fn a_new_leader_neither_doubles_nor_leaks_surge_replicas() {
        // The old leader opened the slot and web-4 (new) runs; the new leader has
        // no clocks and no reports yet.
        let mut svc = surging();
        svc.rollout.surge = 1;
        let mut rs = replicas(&[1, 1, 1, 1, 2]);
        let mut clocks = Clocks::default();
        let t0 = Instant::now();
        let steps = plan(&svc, &refs(&rs), &BTreeMap::new(), None, &mut clocks, t0);
        assert_eq!(steps, vec![], "nothing opened twice, nothing moved");
        // Reports arrive: web-4 up for min_healthy_time, then web-0 moves.
        let reports = healthy(&rs);
        assert_eq!(
            plan(&svc, &refs(&rs), &reports, None, &mut clocks, t0),
            vec![]
        );
        let t1 = t0 + Duration::from_secs(2);
        assert_eq!(
            plan(&svc, &refs(&rs), &reports, None, &mut clocks, t1),
            vec![Step::Roll { ordinals: vec![0] }]
        );
        // Every replica new and available, the slot still open: it closes, and
        // the rollout completes only once web-4 is gone.
        for r in &mut rs {
            r.generation = 2;
        }
        let reports = healthy(&rs);
        let _ = plan(&svc, &refs(&rs), &reports, None, &mut clocks, t1);
        let t2 = t1 + Duration::from_secs(2);
        assert_eq!(
            plan(&svc, &refs(&rs), &reports, None, &mut clocks, t2),
            vec![Step::Surge { slots: 0 }]
        );
        svc.rollout.surge = 0;
        assert_eq!(
            plan(&svc, &refs(&rs), &reports, None, &mut clocks, t2),
            vec![]
        );
        rs.pop();
        assert!(matches!(
            plan(&svc, &refs(&rs), &reports, None, &mut clocks, t2).as_slice(),
            [Step::Set {
                state: RolloutState::Complete,
                ..
            }]
        ));
    }
}
