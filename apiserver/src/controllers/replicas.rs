//! The replica controller: keeps, for every service, exactly `replicas` replica
//! objects placed on ready nodes.
//!
//! [`plan`] is pure: services, nodes and replicas in, the replicas to place and to
//! remove out. A service's desired ordinals are `0 .. replicas` plus the surge slots
//! its rollout holds open ([`ServiceObject::slots`], set by the rollout controller
//! through `SetSurge`). Replicas of deleted services, ordinals above that count, and
//! replicas on nodes that are gone or down are removed, and those on a draining node
//! move elsewhere within each service's `max_unavailable`; missing ordinals are
//! placed by the [scheduler](crate::scheduler) on schedulable nodes (ready, neither
//! cordoned nor draining). Both go to Raft in one `ReconcileReplicas` entry.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use orion_api::agent_proto::{ReplicaReport, ReplicaState};
use orion_api::spec::Resources;
use orion_api::{NodeObject, NodeStatus, ReplicaObject, ServiceObject, UnplacedReplicas};
use orion_raft::{read, Command, LeaderError, RaftNode};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::controllers::rollout;
use crate::gateway::registry::AgentRegistry;
use crate::metrics::PeerMetrics;
use crate::scheduler::{self, NodeView, Request, Strategy};

/// The controller's latest unplaced replicas and why, for `GET /v1/replicas`
/// (leader only, memory only).
#[derive(Default)]
pub struct Unplaced(Mutex<Vec<UnplacedReplicas>>);

impl Unplaced {
    pub fn get(&self) -> Vec<UnplacedReplicas> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn set(&self, now: &[UnplacedReplicas]) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = now.to_vec();
    }
}

/// What one reconcile round decided.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReplicaPlan {
    pub place: Vec<ReplicaObject>,
    pub remove: Vec<(String, u32)>,
    /// Replicas on draining nodes that move this round: (replica, node, the
    /// deadline passed, it was down already).
    pub drained: Vec<(String, String, bool, bool)>,
    /// Replicas no node can take now: one entry per (service, reason).
    pub unplaced: Vec<UnplacedReplicas>,
}

impl ReplicaPlan {
    pub fn is_empty(&self) -> bool {
        self.place.is_empty() && self.remove.is_empty()
    }
}

/// A replica as its node's agent last reported it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Availability {
    /// Running (and healthy, if it has a check) for its generation.
    Up,
    /// Known to be down: failed, exited, stopped, unhealthy or backing off.
    Down,
    /// No report from its node yet, or starting: counts as unavailable, but is
    /// not known to be down either.
    Unknown,
}

impl Availability {
    /// From the report (if any) that the replica's own node sent.
    pub fn of(report: Option<&ReplicaReport>, generation: u64, has_check: bool) -> Self {
        if rollout::up(report, generation, has_check) {
            return Availability::Up;
        }
        match report.map(|r| r.state) {
            Some(
                ReplicaState::Unhealthy
                | ReplicaState::Backoff
                | ReplicaState::Exited
                | ReplicaState::Failed
                | ReplicaState::Stopped,
            ) => Availability::Down,
            _ => Availability::Unknown,
        }
    }
}

/// What the plan knows of the world beyond the replicated state: which replicas
/// are up now (their agents' reports, leader memory) and the time.
pub struct Observed<'a> {
    /// What the agent of the node a replica is placed on last said of it.
    pub up: &'a dyn Fn(&ReplicaObject) -> Availability,
    /// Milliseconds since the Unix epoch, for drain deadlines.
    pub now_unix_ms: u64,
}

/// Computes the replica changes that bring `replicas` in line with `services` on `nodes`.
///
/// Replicas on a draining node move (are removed here and placed elsewhere in the
/// same round) only as fast as each service's `strategy.max_unavailable` (at least
/// one at a time) allows, counting replicas that are not up as unavailable; once
/// the node's drain deadline has passed, all that are left move at once.
pub fn plan(
    services: &[ServiceObject],
    nodes: &[NodeObject],
    replicas: &[ReplicaObject],
    observed: &Observed<'_>,
) -> ReplicaPlan {
    let by_name: BTreeMap<&str, &ServiceObject> =
        services.iter().map(|s| (s.spec.name.as_str(), s)).collect();
    let by_node: BTreeMap<&str, &NodeObject> = nodes.iter().map(|n| (n.name.as_str(), n)).collect();

    // Per service: how many more replicas may go down now for a drain. Only
    // needed (and the agents' reports only read) while some node drains.
    let mut budget: BTreeMap<&str, u32> = BTreeMap::new();
    if nodes.iter().any(|n| n.draining) {
        let mut up: BTreeMap<&str, u32> = BTreeMap::new();
        for r in replicas {
            let wanted = by_name
                .get(r.service.as_str())
                .is_some_and(|s| r.ordinal < s.slots());
            if wanted && (observed.up)(r) == Availability::Up {
                *up.entry(r.service.as_str()).or_default() += 1;
            }
        }
        for s in services {
            let name = s.spec.name.as_str();
            let unavailable = s
                .spec
                .replicas
                .saturating_sub(up.get(name).copied().unwrap_or(0));
            let allowed = s.spec.strategy.max_unavailable.max(1);
            budget.insert(name, allowed.saturating_sub(unavailable));
        }
    }

    let mut out = ReplicaPlan::default();
    let mut kept: BTreeSet<(&str, u32)> = BTreeSet::new();
    let mut allocated: BTreeMap<&str, Resources> = BTreeMap::new();
    let mut spread: BTreeMap<(String, String), u32> = BTreeMap::new();
    for r in replicas {
        let wanted = by_name
            .get(r.service.as_str())
            .is_some_and(|s| r.ordinal < s.slots());
        let node = by_node.get(r.node.as_str());
        let keep = wanted
            && match node {
                None => false,
                Some(n) if n.status != NodeStatus::Ready => false,
                Some(n) if n.draining => {
                    let overdue = n
                        .drain_deadline_unix_ms
                        .is_some_and(|d| observed.now_unix_ms >= d);
                    let down = (observed.up)(r) == Availability::Down;
                    let left = budget.entry(r.service.as_str()).or_default();
                    // A replica that is down costs nothing to move.
                    let moves = overdue || down || *left > 0;
                    if moves && !down && !overdue {
                        *left -= 1;
                    }
                    if moves {
                        out.drained.push((r.id(), n.name.clone(), overdue, down));
                    }
                    !moves
                }
                Some(_) => true,
            };
        if keep {
            kept.insert((r.service.as_str(), r.ordinal));
            let a = allocated.entry(r.node.as_str()).or_insert(Resources {
                cpu_millis: 0,
                memory_bytes: 0,
            });
            a.cpu_millis = a.cpu_millis.saturating_add(r.resources.cpu_millis);
            a.memory_bytes = a.memory_bytes.saturating_add(r.resources.memory_bytes);
            *spread
                .entry((r.service.clone(), r.node.clone()))
                .or_default() += 1;
        } else {
            out.remove.push((r.service.clone(), r.ordinal));
        }
    }

    let views: Vec<NodeView> = nodes
        .iter()
        .map(|n| NodeView {
            name: n.name.clone(),
            labels: n.labels.clone(),
            capacity: n.capacity,
            allocated: allocated
                .get(n.name.as_str())
                .copied()
                .unwrap_or(Resources {
                    cpu_millis: 0,
                    memory_bytes: 0,
                }),
            schedulable: n.schedulable(),
        })
        .collect();
    let requests: Vec<Request> = services
        .iter()
        .flat_map(|s| {
            let kept = &kept;
            (0..s.slots())
                .filter(move |o| !kept.contains(&(s.spec.name.as_str(), *o)))
                .map(move |ordinal| Request {
                    service: s.spec.name.clone(),
                    replica: ordinal,
                    resources: s.spec.resources,
                    constraints: s.spec.placement.constraints.clone(),
                })
        })
        .collect();
    if requests.is_empty() {
        return out;
    }
    let decided = scheduler::schedule(&views, &requests, Strategy::Spread, &spread);
    for p in decided.placements {
        let Some(service) = by_name.get(p.service.as_str()) else {
            continue;
        };
        out.place.push(ReplicaObject {
            service: p.service,
            ordinal: p.replica,
            node: p.node,
            generation: service.generation,
            resources: service.spec.resources,
            create_revision: 0,
        });
    }
    for u in decided.unplaced {
        match out.unplaced.last_mut() {
            Some(last) if last.service == u.service && last.reason == u.reason => {
                last.count = last.count.saturating_add(u.count);
            }
            _ => out.unplaced.push(UnplacedReplicas {
                service: u.service,
                reason: u.reason,
                count: u.count,
                first_ordinal: u.replica,
            }),
        }
    }
    out
}

/// How often a round runs even without a change (unplaced replicas retry).
const RESYNC: Duration = Duration::from_secs(2);

/// Runs rounds until `token` is cancelled (leadership lost, or shutdown).
pub async fn run(
    node: RaftNode,
    agents: Arc<AgentRegistry>,
    unplaced: Arc<Unplaced>,
    exported: Arc<PeerMetrics>,
    token: CancellationToken,
) {
    let mut metrics = node.raft.metrics();
    loop {
        let state = node.reader.with_view(|v| {
            Ok::<_, read::ReadError>((read::services(v)?, read::nodes(v)?, read::replicas(v)?))
        });
        match state {
            Ok((services, nodes, replicas)) => {
                let started = std::time::Instant::now();
                let round = {
                    let checked: BTreeSet<&str> = services
                        .iter()
                        .filter(|s| s.spec.health.is_some())
                        .map(|s| s.spec.name.as_str())
                        .collect();
                    let up = |r: &ReplicaObject| {
                        let report = agents.report_from(&r.node, &r.id());
                        let has_check = checked.contains(r.service.as_str());
                        Availability::of(report.as_ref(), r.generation, has_check)
                    };
                    let now_unix_ms = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_millis() as u64);
                    plan(
                        &services,
                        &nodes,
                        &replicas,
                        &Observed {
                            up: &up,
                            now_unix_ms,
                        },
                    )
                };
                exported.scheduled(started.elapsed().as_secs_f64());
                unplaced.set(&round.unplaced);
                for (replica, from, overdue, down) in &round.drained {
                    let why = match (overdue, down) {
                        (true, _) => "the drain deadline passed",
                        (false, true) => "it is down already",
                        (false, false) => "the service can spare it",
                    };
                    info!(%replica, node = %from, "draining: moving the replica elsewhere ({why})");
                }
                if !round.is_empty() {
                    debug!(
                        place = round.place.len(),
                        remove = round.remove.len(),
                        "reconciling replicas"
                    );
                    let cmd = Command::ReconcileReplicas {
                        place: round.place,
                        remove: round.remove,
                    };
                    match node.propose(cmd).await {
                        Ok(_) => continue,
                        Err(LeaderError::NotLeader { .. } | LeaderError::Fatal(_)) => {
                            info!("replica controller stops: no longer the leader");
                            return;
                        }
                        Err(e) => warn!(cause = %e, "replica changes refused; retrying"),
                    }
                }
            }
            Err(e) => warn!(cause = %e, "replica controller cannot read state; retrying"),
        }
        tokio::select! {
            () = token.cancelled() => return,
            changed = metrics.changed() => if changed.is_err() { return },
            () = tokio::time::sleep(RESYNC) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use orion_api::spec::parse_documents;

    use super::*;

    fn service(name: &str, replicas: u32) -> ServiceObject {
        let text = format!("kind: Service\nname: {name}\nreplicas: {replicas}\ncommand: [x]\n");
        let orion_api::spec::Resource::Service(spec) =
            parse_documents("t.yaml", &text).expect("spec").remove(0)
        else {
            panic!("not a service");
        };
        ServiceObject {
            spec,
            create_revision: 1,
            mod_revision: 1,
            generation: 1,
            history: Vec::new(),
            rollout: Default::default(),
            hooks: Default::default(),
        }
    }

    fn node(name: &str) -> NodeObject {
        NodeObject {
            name: name.into(),
            labels: BTreeMap::new(),
            capacity: Resources {
                cpu_millis: 4000,
                memory_bytes: 8 << 30,
            },
            status: NodeStatus::Ready,
            cordoned: false,
            draining: false,
            drain_deadline_unix_ms: None,
            agent: false,
            mod_revision: 1,
        }
    }

    /// Every replica up, at time 0.
    fn all_up() -> Observed<'static> {
        Observed {
            up: &|_| Availability::Up,
            now_unix_ms: 0,
        }
    }

    fn apply(replicas: &mut Vec<ReplicaObject>, p: &ReplicaPlan) {
        replicas.retain(|r| !p.remove.contains(&(r.service.clone(), r.ordinal)));
        replicas.extend(p.place.iter().cloned());
    }

    #[test]
    fn places_missing_replicas_across_nodes_and_is_then_quiet() {
        let services = [service("web", 3)];
        let nodes = [node("a"), node("b")];
        let mut replicas = Vec::new();
        let p = plan(&services, &nodes, &replicas, &all_up());
        assert_eq!(p.place.len(), 3);
        let on_a = p.place.iter().filter(|r| r.node == "a").count();
        assert!(on_a == 1 || on_a == 2, "spread over both nodes: {p:?}");
        apply(&mut replicas, &p);
        assert!(
            plan(&services, &nodes, &replicas, &all_up()).is_empty(),
            "idempotent"
        );
    }

    #[test]
    fn scale_down_delete_and_down_nodes_remove_replicas() {
        let nodes = [node("a"), node("b")];
        let mut replicas = Vec::new();
        let first = plan(&[service("web", 3)], &nodes, &replicas, &all_up());
        apply(&mut replicas, &first);

        let p = plan(&[service("web", 1)], &nodes, &replicas, &all_up());
        assert_eq!(p.remove.len(), 2);
        assert!(p.remove.iter().all(|(_, o)| *o >= 1));
        apply(&mut replicas, &p);

        let mut down = nodes.clone();
        let on = replicas[0].node.clone();
        for n in down.iter_mut().filter(|n| n.name == on) {
            n.status = NodeStatus::Down;
        }
        let p = plan(&[service("web", 1)], &down, &replicas, &all_up());
        assert_eq!(p.remove, vec![("web".to_string(), 0)]);
        assert_eq!(p.place.len(), 1);
        assert_ne!(p.place[0].node, on, "moved off the down node");
        apply(&mut replicas, &p);

        let p = plan(&[], &down, &replicas, &all_up());
        assert_eq!(p.remove.len(), 1, "a deleted service loses its replicas");
    }

    #[test]
    fn no_nodes_reports_why() {
        let p = plan(&[service("web", 1)], &[], &[], &all_up());
        assert!(p.place.is_empty());
        assert_eq!(p.unplaced.len(), 1);
        assert!(
            p.unplaced[0].to_string().starts_with("web-0: 0/0 nodes"),
            "{:?}",
            p.unplaced
        );
    }

    #[test]
    fn a_thousand_unplaceable_replicas_are_one_line() {
        let p = plan(
            &[service("web", 1000), service("api", 2)],
            &[],
            &[],
            &all_up(),
        );
        let lines: Vec<String> = p.unplaced.iter().map(ToString::to_string).collect();
        assert_eq!(
            lines,
            [
                "1000 replicas of web (from web-0): 0/0 nodes: no nodes",
                "2 replicas of api (from api-0): 0/0 nodes: no nodes",
            ]
        );
    }

    #[test]
    fn a_drain_moves_one_replica_at_a_time_and_waits_for_it_to_be_up() {
        let nodes = [node("a"), node("b")];
        let mut replicas = Vec::new();
        // Four replicas, all on a.
        let first = plan(&[service("web", 4)], &nodes[..1], &replicas, &all_up());
        apply(&mut replicas, &first);
        assert!(replicas.iter().all(|r| r.node == "a"));

        let mut draining = nodes.clone();
        draining[0].draining = true;
        let services = [service("web", 4)];
        // Only what runs on its node now counts as up.
        let moved: std::cell::RefCell<BTreeSet<u32>> = Default::default();
        let up = |r: &ReplicaObject| {
            if r.node == "a" || moved.borrow().contains(&r.ordinal) {
                Availability::Up
            } else {
                Availability::Unknown
            }
        };
        let observed = Observed {
            up: &up,
            now_unix_ms: 0,
        };
        let p = plan(&services, &draining, &replicas, &observed);
        assert_eq!(p.remove.len(), 1, "max_unavailable 1: one at a time: {p:?}");
        assert_eq!(p.place.len(), 1);
        assert_eq!(p.place[0].node, "b");
        apply(&mut replicas, &p);
        // Its replacement is not up yet: nothing more moves.
        assert!(plan(&services, &draining, &replicas, &observed).is_empty());
        // Once it is, the next one moves.
        moved.borrow_mut().insert(p.place[0].ordinal);
        let p = plan(&services, &draining, &replicas, &observed);
        assert_eq!(p.remove.len(), 1);
        apply(&mut replicas, &p);

        // Past the deadline, every replica left moves at once.
        draining[0].drain_deadline_unix_ms = Some(10);
        let late = Observed {
            up: &up,
            now_unix_ms: 11,
        };
        let p = plan(&services, &draining, &replicas, &late);
        assert_eq!(p.remove.len(), 2, "{p:?}");
        apply(&mut replicas, &p);
        assert!(replicas.iter().all(|r| r.node == "b"));

        // A cordoned node keeps its replicas and takes no new ones.
        let mut cordoned = nodes.clone();
        cordoned[1].cordoned = true;
        let p = plan(&[service("web", 5)], &cordoned, &replicas, &all_up());
        assert!(p.remove.is_empty());
        assert!(p.place.iter().all(|r| r.node == "a"), "{p:?}");
    }

    #[test]
    fn open_surge_slots_are_placed_above_replicas_and_removed_once_closed() {
        let nodes = [node("a")];
        let mut replicas = Vec::new();
        let mut web = service("web", 2);
        let first = plan(&[web.clone()], &nodes, &replicas, &all_up());
        apply(&mut replicas, &first);
        web.generation = 2;
        web.rollout.surge = 1;
        let p = plan(&[web.clone()], &nodes, &replicas, &all_up());
        assert_eq!(p.remove, vec![]);
        let placed: Vec<(u32, u64)> = p.place.iter().map(|r| (r.ordinal, r.generation)).collect();
        assert_eq!(placed, vec![(2, 2)], "web-2 at the new generation");
        apply(&mut replicas, &p);
        assert!(plan(&[web.clone()], &nodes, &replicas, &all_up()).is_empty());
        web.rollout.surge = 0;
        let p = plan(&[web], &nodes, &replicas, &all_up());
        assert_eq!(p.remove, vec![("web".to_string(), 2)]);
        assert!(p.place.is_empty());
    }
}
