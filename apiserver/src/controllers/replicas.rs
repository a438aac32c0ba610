//! The replica controller: keeps, for every service, exactly `replicas` replica
//! objects placed on ready nodes.
//!
//! [`plan`] is pure: services, nodes and replicas in, the replicas to place and to
//! remove out. Replicas of deleted services, ordinals above the desired count, and
//! replicas on nodes that are gone, down or draining are removed; missing ordinals
//! are placed by the [scheduler](crate::scheduler). Both go to Raft in one
//! `ReconcileReplicas` entry.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use orion_api::spec::Resources;
use orion_api::{NodeObject, NodeStatus, ReplicaObject, ServiceObject, UnplacedReplicas};
use orion_raft::{read, Command, LeaderError, RaftNode};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

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
    /// Replicas no node can take now: one entry per (service, reason).
    pub unplaced: Vec<UnplacedReplicas>,
}

impl ReplicaPlan {
    pub fn is_empty(&self) -> bool {
        self.place.is_empty() && self.remove.is_empty()
    }
}

fn usable(node: &NodeObject) -> bool {
    node.status == NodeStatus::Ready && !node.draining
}

/// Computes the replica changes that bring `replicas` in line with `services` on `nodes`.
pub fn plan(
    services: &[ServiceObject],
    nodes: &[NodeObject],
    replicas: &[ReplicaObject],
) -> ReplicaPlan {
    let by_name: BTreeMap<&str, &ServiceObject> =
        services.iter().map(|s| (s.spec.name.as_str(), s)).collect();
    let node_ok: BTreeMap<&str, bool> =
        nodes.iter().map(|n| (n.name.as_str(), usable(n))).collect();

    let mut out = ReplicaPlan::default();
    let mut kept: BTreeSet<(&str, u32)> = BTreeSet::new();
    let mut allocated: BTreeMap<&str, Resources> = BTreeMap::new();
    let mut spread: BTreeMap<(String, String), u32> = BTreeMap::new();
    for r in replicas {
        let wanted = by_name
            .get(r.service.as_str())
            .is_some_and(|s| r.ordinal < s.spec.replicas);
        let on_good_node = node_ok.get(r.node.as_str()).copied().unwrap_or(false);
        if wanted && on_good_node {
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
            schedulable: usable(n),
        })
        .collect();
    let requests: Vec<Request> = services
        .iter()
        .flat_map(|s| {
            let kept = &kept;
            (0..s.spec.replicas)
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
                let round = plan(&services, &nodes, &replicas);
                exported.scheduled(started.elapsed().as_secs_f64());
                unplaced.set(&round.unplaced);
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
            parse_documents("t.yaml", &text).expect("spec").remove(0);
        ServiceObject {
            spec,
            create_revision: 1,
            mod_revision: 1,
            generation: 1,
            history: Vec::new(),
            rollout: Default::default(),
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
            draining: false,
            agent: false,
            mod_revision: 1,
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
        let p = plan(&services, &nodes, &replicas);
        assert_eq!(p.place.len(), 3);
        let on_a = p.place.iter().filter(|r| r.node == "a").count();
        assert!(on_a == 1 || on_a == 2, "spread over both nodes: {p:?}");
        apply(&mut replicas, &p);
        assert!(plan(&services, &nodes, &replicas).is_empty(), "idempotent");
    }

    #[test]
    fn scale_down_delete_and_down_nodes_remove_replicas() {
        let nodes = [node("a"), node("b")];
        let mut replicas = Vec::new();
        let first = plan(&[service("web", 3)], &nodes, &replicas);
        apply(&mut replicas, &first);

        let p = plan(&[service("web", 1)], &nodes, &replicas);
        assert_eq!(p.remove.len(), 2);
        assert!(p.remove.iter().all(|(_, o)| *o >= 1));
        apply(&mut replicas, &p);

        let mut down = nodes.clone();
        let on = replicas[0].node.clone();
        for n in down.iter_mut().filter(|n| n.name == on) {
            n.status = NodeStatus::Down;
        }
        let p = plan(&[service("web", 1)], &down, &replicas);
        assert_eq!(p.remove, vec![("web".to_string(), 0)]);
        assert_eq!(p.place.len(), 1);
        assert_ne!(p.place[0].node, on, "moved off the down node");
        apply(&mut replicas, &p);

        let p = plan(&[], &down, &replicas);
        assert_eq!(p.remove.len(), 1, "a deleted service loses its replicas");
    }

    #[test]
    fn no_nodes_reports_why() {
        let p = plan(&[service("web", 1)], &[], &[]);
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
        let p = plan(&[service("web", 1000), service("api", 2)], &[], &[]);
        let lines: Vec<String> = p.unplaced.iter().map(ToString::to_string).collect();
        assert_eq!(
            lines,
            [
                "1000 replicas of web (from web-0): 0/0 nodes: no nodes",
                "2 replicas of api (from api-0): 0/0 nodes: no nodes",
            ]
        );
    }
}
