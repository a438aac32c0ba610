//! The rollout controller: moves a service's replicas to its current generation in
//! batches, so a changed spec never takes more than `max_unavailable` replicas down.
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
//! 3. `max_unavailable` minus the replicas not available now is how many outdated
//!    replicas may move in this round (ones already down first).
//! 4. A replica of the current generation that is not available `healthy_deadline`
//!    after it was moved fails the rollout (replicated: [`RolloutState::Failed`]);
//!    with `auto_rollback`, the next round makes the last revision that completed
//!    the current one again ([`Command::RollBack`], retried until it applies), and
//!    it rolls out under the same rules. A rollback that fails is not rolled back.
//! 5. Every replica at the current generation and available: `Complete` (also
//!    after a failure, when the late replicas come up after all).
//!
//! What is replicated — the generation of every replica, the history, the rollout
//! state and its pause — is all a new leader needs to carry on. The timers (since
//! when a replica is healthy, since when it was moved) live in the leader's memory
//! and start again on a new leader, which can only make a batch wait longer.
//!
//! `max_surge` is not implemented yet: a rollout never runs extra replicas, and a
//! `max_unavailable` of 0 rolls one replica at a time.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use orion_api::agent_proto::{ReplicaReport, ReplicaState};
use orion_api::{ReplicaObject, RolloutState, ServiceObject};
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

/// Decides the next steps for `service`, whose placed replicas are `replicas`,
/// given what the agents report. Pure but for `clocks`, which it keeps current.
pub fn plan(
    service: &ServiceObject,
    replicas: &[&ReplicaObject],
    reports: &BTreeMap<String, ReplicaReport>,
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

    let wanted: Vec<&ReplicaObject> = replicas
        .iter()
        .copied()
        .filter(|r| r.ordinal < spec.replicas)
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
    let missing = spec.replicas.saturating_sub(wanted.len() as u32);
    let all_current = wanted
        .iter()
        .all(|r| r.generation == current || relabelled.contains(&r.ordinal));
    let done = all_current && missing == 0 && available >= spec.replicas;
    match service.rollout.state {
        RolloutState::Complete => {}
        _ if done => {
            steps.push(Step::Set {
                state: RolloutState::Complete,
                reason: service.rollout.reason.clone(),
            });
            return steps;
        }
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

    // 3. The next batch.
    let unavailable = spec
        .replicas
        .saturating_sub(available)
        .max(missing)
        .min(spec.replicas);
    if !service.rollout.paused && !outdated.is_empty() {
        let budget = strategy.max_unavailable.max(1);
        let room = budget.saturating_sub(unavailable) as usize;
        // Replicas their agent reports down cost nothing to replace: they go
        // first. A replica without a report (a new leader not yet heard from its
        // agent) is unknown, not down.
        let reported_down = |r: &ReplicaObject| {
            reports.get(&r.id()).is_some_and(|rep| {
                rep.generation == r.generation && !up(Some(rep), r.generation, has_check)
            })
        };
        outdated.sort_by_key(|r| (!reported_down(r), r.ordinal));
        let down_already = outdated.iter().filter(|r| reported_down(r)).count();
        let take = room.max(down_already.min(budget as usize));
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

/// Runs rounds until `token` is cancelled (leadership lost, or shutdown).
pub async fn run(node: RaftNode, agents: Arc<AgentRegistry>, token: CancellationToken) {
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
                for service in &services {
                    let mine: Vec<&ReplicaObject> = replicas
                        .iter()
                        .filter(|r| r.service == service.spec.name)
                        .collect();
                    for step in plan(service, &mine, &reports, &mut clocks, now) {
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

    const V1: &str = "kind: Service\nname: web\nreplicas: 4\ncommand: [v1]\nhealth: {exec: {command: ['true']}}\nstrategy: {max_unavailable: 1, min_healthy_time: 1s, healthy_deadline: 10s}\n";

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
        let steps = plan(&svc, &refs(&rs), &healthy(&rs), &mut clocks, t0);
        assert_eq!(steps, vec![Step::Roll { ordinals: vec![0] }]);

        // web-0 moved; its agent still reports the old process: no next batch.
        rs[0].generation = 2;
        let mut reports = healthy(&rs);
        if let Some(r) = reports.get_mut("web-0") {
            r.generation = 1;
        }
        assert_eq!(plan(&svc, &refs(&rs), &reports, &mut clocks, t0), vec![]);

        // Healthy at the new generation, but not for min_healthy_time yet.
        let reports = healthy(&rs);
        let t1 = t0 + Duration::from_millis(100);
        assert_eq!(plan(&svc, &refs(&rs), &reports, &mut clocks, t1), vec![]);
        let t2 = t1 + Duration::from_millis(1000);
        assert_eq!(
            plan(&svc, &refs(&rs), &reports, &mut clocks, t2),
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
        assert_eq!(plan(&svc, &refs(&rs), &reports, &mut clocks, t0), vec![]);
        let late = t0 + Duration::from_secs(11);
        let steps = plan(&svc, &refs(&rs), &reports, &mut clocks, late);
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
        assert_eq!(plan(&svc, &refs(&rs), &reports, &mut clocks, late), vec![]);
        svc.spec.strategy.auto_rollback = true;
        for _ in 0..2 {
            let steps = plan(&svc, &refs(&rs), &reports, &mut clocks, late);
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
        assert_eq!(plan(&svc, &refs(&rs), &reports, &mut clocks, late), vec![]);

        // Late replicas that come up after all complete it.
        let all_new = replicas(&[2, 2, 2, 2]);
        let up = healthy(&all_new);
        let _ = plan(&svc, &refs(&all_new), &up, &mut clocks, late);
        let steps = plan(
            &svc,
            &refs(&all_new),
            &up,
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
            plan(&svc, &refs(&rs), &healthy(&rs), &mut clocks, t0),
            vec![]
        );

        let rs = replicas(&[2, 2, 2, 2]);
        let _ = plan(&svc, &refs(&rs), &healthy(&rs), &mut clocks, t0);
        let steps = plan(
            &svc,
            &refs(&rs),
            &healthy(&rs),
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
                &mut clocks,
                t0 + Duration::from_millis(250 * round),
            );
            assert_eq!(steps, vec![], "round {round}");
        }
        // Reports arrive: web-0 (new) healthy for long enough, then web-1 moves.
        let reports = healthy(&rs);
        let _ = plan(&svc, &refs(&rs), &reports, &mut clocks, t0);
        let steps = plan(
            &svc,
            &refs(&rs),
            &reports,
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
            &mut Clocks::default(),
            Instant::now(),
        );
        assert_eq!(steps, vec![Step::Roll { ordinals: vec![2] }]);
    }
}
