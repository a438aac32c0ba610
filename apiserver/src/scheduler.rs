//! The scheduler: a pure function from cluster state to replica placements.
//!
//! [`schedule`] takes the nodes as the leader sees them ([`NodeView`]), the replicas
//! that need a node ([`Request`]) and how many replicas of each service every node
//! already runs, and returns a [`Plan`]. It does no I/O and keeps no state, so it can
//! be unit-tested and benchmarked alone; the leader's controllers call it and write
//! the result through Raft.
//!
//! Requests are placed one after the other, in the order given. Each one goes through
//! two phases:
//!
//! 1. **Feasibility.** A node can take the replica when it is schedulable (ready and
//!    not draining), its labels satisfy every constraint, and its free CPU and memory
//!    (capacity minus what is already allocated) cover the request. When no node
//!    can, the request is [`Unplaced`] with a reason that counts, for every node, the
//!    first check it failed: `0/3 nodes: 2 insufficient memory, 1 constraint
//!    mismatch (zone == a)`.
//! 2. **Scoring.** Among feasible nodes, [`Strategy::Spread`] (the default) prefers the
//!    node with the fewest replicas of the same service, then the least allocated
//!    node; [`Strategy::BinPack`] prefers the most allocated node, to fill nodes one by
//!    one. "Allocated" is the larger of the CPU and memory fractions after the
//!    placement, compared exactly (integer cross-multiplication, no floats).
//!
//! A placement updates the working copy of the node's allocation and replica counts,
//! so later requests in the same call see it.
//!
//! **Determinism.** The same input gives the same [`Plan`], whatever the order of
//! `nodes`: nodes are considered sorted by name, and equal-score nodes are broken
//! round-robin: the walk over the sorted nodes starts at an offset derived from the
//! request alone (a stable hash of the service name plus the replica ordinal), so
//! consecutive replicas of a service, and different services, take turns on equal
//! nodes — and a request's placement does not depend on which other requests share
//! the call.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt::Write as _;

use orion_api::spec::{Constraint, Resources};

/// One node as the scheduler sees it. Names are unique within a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeView {
    pub name: String,
    /// Matched against each request's constraints.
    pub labels: BTreeMap<String, String>,
    /// What the node offers to replicas in total.
    pub capacity: Resources,
    /// The sum of the resources of the replicas already placed on the node; free is
    /// `capacity - allocated`.
    pub allocated: Resources,
    /// Ready and not draining; a node that is not takes no new replicas.
    pub schedulable: bool,
}

/// One replica that needs a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub service: String,
    /// The replica's ordinal within its service (0, 1, 2, …).
    pub replica: u32,
    /// What the replica reserves on its node.
    pub resources: Resources,
    /// Every one must match the node's labels.
    pub constraints: Vec<Constraint>,
}

/// How to choose among the nodes that can take a replica.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Strategy {
    /// Fewest replicas of the same service first, then the least allocated node:
    /// replicas survive the loss of one node, load stays even.
    #[default]
    Spread,
    /// The most allocated node first: fill nodes one by one, keep others empty.
    BinPack,
}

/// A replica assigned to a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    pub service: String,
    pub replica: u32,
    pub node: String,
}

/// Replicas no node can take now, and why: consecutive requests of one service
/// that fail for the same reason make one entry, however many there are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unplaced {
    pub service: String,
    /// The ordinal of the first of them.
    pub replica: u32,
    /// How many consecutive requests of the service this entry stands for.
    pub count: u32,
    /// Per-node failures counted by kind, e.g.
    /// `0/3 nodes: 2 insufficient memory, 1 constraint mismatch (zone == a)`.
    pub reason: String,
}

/// The result of one [`schedule`] call; both lists follow the order of the requests.
/// `unplaced` has one entry per run of same-service requests that failed alike, so
/// its size is bounded by the services, not the replicas.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub placements: Vec<Placement>,
    pub unplaced: Vec<Unplaced>,
}

/// Places `requests` in order on `nodes`. `spread_counts` holds how many replicas of
/// each service already run on each node, keyed by `(service, node)`; missing keys
/// count as zero. See the [module docs](self) for the rules.
pub fn schedule(
    nodes: &[NodeView],
    requests: &[Request],
    strategy: Strategy,
    spread_counts: &BTreeMap<(String, String), u32>,
) -> Plan {
    let mut order: Vec<&NodeView> = nodes.iter().collect();
    order.sort_by(|a, b| a.name.cmp(&b.name));
    // Working allocation, indexed like `order`.
    let mut allocated: Vec<Resources> = order.iter().map(|n| n.allocated).collect();
    // Replicas of a service per node (indexed like `order`), built on first use.
    let mut counts: BTreeMap<&str, Vec<u32>> = BTreeMap::new();
    let mut plan = Plan::default();

    // The request placed just before, when no node could take it.
    let mut last_unplaced: Option<&Request> = None;
    for request in requests {
        // A failed request changes nothing, so the next one of the same service,
        // asking the same, fails the same way: count it without the node walk.
        if let (Some(prev), Some(entry)) = (last_unplaced, plan.unplaced.last_mut()) {
            if prev.service == request.service
                && prev.resources == request.resources
                && prev.constraints == request.constraints
            {
                entry.count = entry.count.saturating_add(1);
                continue;
            }
        }
        last_unplaced = None;
        let service_counts = counts
            .entry(request.service.as_str())
            .or_insert_with(|| initial_counts(&order, &request.service, spread_counts));
        let mut failures = Failures::default();
        let mut best: Option<(usize, Score)> = None;
        let start = rotation(request, order.len());
        for step in 0..order.len() {
            let i = (start + step) % order.len();
            let node = order[i];
            if let Err(failure) = feasible(node, allocated[i], request) {
                failures.add(failure);
                continue;
            }
            let load = load_after(node.capacity, allocated[i], request.resources);
            let score = match strategy {
                Strategy::Spread => Score::Spread {
                    same_service: service_counts[i],
                    load,
                },
                Strategy::BinPack => Score::BinPack { load },
            };
            // Strictly better only: the first of equal nodes in the rotated walk wins.
            if best.as_ref().is_none_or(|(_, b)| score.better_than(b)) {
                best = Some((i, score));
            }
        }
        match best {
            Some((i, _)) => {
                allocated[i] = add(allocated[i], request.resources);
                service_counts[i] += 1;
                plan.placements.push(Placement {
                    service: request.service.clone(),
                    replica: request.replica,
                    node: order[i].name.clone(),
                });
            }
            None => {
                last_unplaced = Some(request);
                plan.unplaced.push(Unplaced {
                    service: request.service.clone(),
                    replica: request.replica,
                    count: 1,
                    reason: failures.reason(order.len(), &request.constraints),
                });
            }
        }
    }
    plan
}

/// The replicas of `service` on each node of `order`, from `spread_counts`.
fn initial_counts(
    order: &[&NodeView],
    service: &str,
    spread_counts: &BTreeMap<(String, String), u32>,
) -> Vec<u32> {
    let mut counts = vec![0; order.len()];
    let from = (service.to_owned(), String::new());
    for ((s, node), &n) in spread_counts.range(from..) {
        if s != service {
            break;
        }
        if let Ok(i) = order.binary_search_by(|v| v.name.as_str().cmp(node)) {
            counts[i] = n;
        }
    }
    counts
}

/// Where the walk over the sorted nodes starts for this request: a stable (FNV-1a)
/// hash of the service plus the ordinal, so equal nodes take turns.
fn rotation(request: &Request, nodes: usize) -> usize {
    if nodes == 0 {
        return 0;
    }
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in request.service.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    let offset = hash.wrapping_add(u64::from(request.replica)) % nodes as u64;
    // `offset < nodes`, which is a usize.
    offset as usize
}

/// Why one node cannot take a request; the order is the order of the checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Failure {
    NotReady,
    /// Index of the first failing constraint in the request.
    Constraint(usize),
    Cpu,
    Memory,
}

fn feasible(node: &NodeView, allocated: Resources, request: &Request) -> Result<(), Failure> {
    if !node.schedulable {
        return Err(Failure::NotReady);
    }
    if let Some(i) = request
        .constraints
        .iter()
        .position(|c| !c.matches(&node.labels))
    {
        return Err(Failure::Constraint(i));
    }
    let need = request.resources;
    if node
        .capacity
        .cpu_millis
        .saturating_sub(allocated.cpu_millis)
        < need.cpu_millis
    {
        return Err(Failure::Cpu);
    }
    if node
        .capacity
        .memory_bytes
        .saturating_sub(allocated.memory_bytes)
        < need.memory_bytes
    {
        return Err(Failure::Memory);
    }
    Ok(())
}

/// Per-kind counts of the nodes that failed one request.
#[derive(Default)]
struct Failures {
    not_ready: usize,
    constraint: usize,
    /// Which constraints failed (first failing one per node), by index.
    constraints: Vec<usize>,
    cpu: usize,
    memory: usize,
}

impl Failures {
    fn add(&mut self, failure: Failure) {
        match failure {
            Failure::NotReady => self.not_ready += 1,
            Failure::Constraint(i) => {
                self.constraint += 1;
                if !self.constraints.contains(&i) {
                    self.constraints.push(i);
                }
            }
            Failure::Cpu => self.cpu += 1,
            Failure::Memory => self.memory += 1,
        }
    }

    /// `0/<nodes> nodes: <count> <kind>, …`, by descending count, ties in check order.
    fn reason(mut self, nodes: usize, constraints: &[Constraint]) -> String {
        if nodes == 0 {
            return "0/0 nodes: no nodes".to_owned();
        }
        self.constraints.sort_unstable();
        let failed: Vec<String> = self
            .constraints
            .iter()
            .filter_map(|&i| constraints.get(i).map(ToString::to_string))
            .collect();
        let constraint_label = if failed.is_empty() {
            "constraint mismatch".to_owned()
        } else {
            format!("constraint mismatch ({})", failed.join(", "))
        };
        let mut kinds = [
            (self.not_ready, "not ready".to_owned()),
            (self.constraint, constraint_label),
            (self.cpu, "insufficient cpu".to_owned()),
            (self.memory, "insufficient memory".to_owned()),
        ];
        // Stable sort: equal counts keep the check order.
        kinds.sort_by_key(|(count, _)| std::cmp::Reverse(*count));
        let mut reason = format!("0/{nodes} nodes:");
        let mut first = true;
        for (count, kind) in kinds.iter().filter(|(count, _)| *count > 0) {
            let sep = if first { " " } else { ", " };
            first = false;
            let _ = write!(reason, "{sep}{count} {kind}");
        }
        reason
    }
}

/// An exact, non-negative fraction; a zero denominator with a non-zero numerator is
/// larger than any finite fraction (allocation on a node with no such capacity).
#[derive(Debug, Clone, Copy)]
struct Fraction {
    num: u64,
    den: u64,
}

impl Fraction {
    fn new(num: u64, den: u64) -> Self {
        if num == 0 {
            Fraction { num: 0, den: 1 }
        } else {
            Fraction { num, den }
        }
    }
}

impl Ord for Fraction {
    fn cmp(&self, other: &Self) -> Ordering {
        let left = u128::from(self.num) * u128::from(other.den);
        let right = u128::from(other.num) * u128::from(self.den);
        left.cmp(&right)
    }
}

impl PartialOrd for Fraction {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Fraction {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Fraction {}

/// The larger of the CPU and memory fractions of `capacity` in use once `request`
/// is added to `allocated`.
fn load_after(capacity: Resources, allocated: Resources, request: Resources) -> Fraction {
    let after = add(allocated, request);
    let cpu = Fraction::new(after.cpu_millis, capacity.cpu_millis);
    let memory = Fraction::new(after.memory_bytes, capacity.memory_bytes);
    cpu.max(memory)
}

fn add(a: Resources, b: Resources) -> Resources {
    Resources {
        cpu_millis: a.cpu_millis.saturating_add(b.cpu_millis),
        memory_bytes: a.memory_bytes.saturating_add(b.memory_bytes),
    }
}

/// How good a feasible node is for one request; only compared within one strategy.
#[derive(Debug, Clone, Copy)]
enum Score {
    Spread { same_service: u32, load: Fraction },
    BinPack { load: Fraction },
}

impl Score {
    fn better_than(&self, other: &Score) -> bool {
        match (self, other) {
            (
                Score::Spread {
                    same_service: a,
                    load: la,
                },
                Score::Spread {
                    same_service: b,
                    load: lb,
                },
            ) => (a, la) < (b, lb),
            (Score::BinPack { load: a }, Score::BinPack { load: b }) => a > b,
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MI: u64 = 1 << 20;

    fn node(name: &str, cpu_millis: u64, memory_mi: u64) -> NodeView {
        NodeView {
            name: name.to_owned(),
            labels: BTreeMap::new(),
            capacity: Resources {
                cpu_millis,
                memory_bytes: memory_mi * MI,
            },
            allocated: Resources {
                cpu_millis: 0,
                memory_bytes: 0,
            },
            schedulable: true,
        }
    }

    fn in_zone(mut n: NodeView, zone: &str) -> NodeView {
        n.labels.insert("zone".to_owned(), zone.to_owned());
        n
    }

    fn requests(service: &str, count: u32, cpu_millis: u64, memory_mi: u64) -> Vec<Request> {
        (0..count)
            .map(|replica| Request {
                service: service.to_owned(),
                replica,
                resources: Resources {
                    cpu_millis,
                    memory_bytes: memory_mi * MI,
                },
                constraints: Vec::new(),
            })
            .collect()
    }

    fn zone_is(zone: &str) -> Constraint {
        Constraint::Equals {
            label: "zone".to_owned(),
            value: zone.to_owned(),
        }
    }

    /// Replicas per node name.
    fn per_node(plan: &Plan) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for p in &plan.placements {
            *counts.entry(p.node.clone()).or_insert(0) += 1;
        }
        counts
    }

    fn sorted_counts(plan: &Plan) -> Vec<usize> {
        let mut counts: Vec<usize> = per_node(plan).into_values().collect();
        counts.sort_unstable();
        counts
    }

    fn run(nodes: &[NodeView], reqs: &[Request], strategy: Strategy) -> Plan {
        schedule(nodes, reqs, strategy, &BTreeMap::new())
    }

    #[test]
    fn scheduler_spread_splits_replicas_across_identical_nodes() {
        let nodes = [node("n1", 4000, 4096), node("n2", 4000, 4096)];
        let plan = run(&nodes, &requests("web", 3, 100, 64), Strategy::Spread);
        assert!(plan.unplaced.is_empty(), "{plan:?}");
        assert_eq!(sorted_counts(&plan), vec![1, 2]);

        let plan = run(&nodes, &requests("web", 4, 100, 64), Strategy::Spread);
        assert!(plan.unplaced.is_empty(), "{plan:?}");
        assert_eq!(sorted_counts(&plan), vec![2, 2]);
        // Consecutive replicas alternate.
        for pair in plan.placements.windows(2) {
            assert_ne!(pair[0].node, pair[1].node, "{plan:?}");
        }
    }

    #[test]
    fn scheduler_spread_prefers_the_least_loaded_node() {
        let mut busy = node("a", 4000, 4096);
        busy.allocated = Resources {
            cpu_millis: 2000,
            memory_bytes: 0,
        };
        let nodes = [busy, node("b", 4000, 4096)];
        let plan = run(&nodes, &requests("web", 1, 100, 64), Strategy::Spread);
        assert_eq!(plan.placements[0].node, "b");
    }

    #[test]
    fn scheduler_bin_pack_fills_one_node_before_the_next() {
        // Each node fits exactly 4 replicas (by memory).
        let nodes = [
            node("n1", 4000, 256),
            node("n2", 4000, 256),
            node("n3", 4000, 256),
        ];
        let plan = run(&nodes, &requests("web", 6, 100, 64), Strategy::BinPack);
        assert!(plan.unplaced.is_empty(), "{plan:?}");
        assert_eq!(sorted_counts(&plan), vec![2, 4]);
        let first = &plan.placements[0].node;
        for p in &plan.placements[..4] {
            assert_eq!(&p.node, first, "{plan:?}");
        }

        // A partly used node is filled before an empty one.
        let mut used = node("z", 4000, 256);
        used.allocated.memory_bytes = 64 * MI;
        let nodes = [node("a", 4000, 256), used];
        let plan = run(&nodes, &requests("api", 3, 100, 64), Strategy::BinPack);
        let nodes_used: Vec<&str> = plan.placements.iter().map(|p| p.node.as_str()).collect();
        assert_eq!(nodes_used, ["z", "z", "z"]);
    }

    #[test]
    fn scheduler_constraints_select_matching_nodes() {
        let nodes = [
            in_zone(node("a1", 4000, 4096), "a"),
            in_zone(node("b1", 4000, 4096), "b"),
            in_zone(node("a2", 4000, 4096), "a"),
            node("none", 4000, 4096),
        ];
        let mut reqs = requests("web", 4, 100, 64);
        for r in &mut reqs {
            r.constraints.push(zone_is("a"));
        }
        let plan = run(&nodes, &reqs, Strategy::Spread);
        assert!(plan.unplaced.is_empty(), "{plan:?}");
        assert_eq!(
            per_node(&plan),
            BTreeMap::from([("a1".to_owned(), 2), ("a2".to_owned(), 2)])
        );

        for r in &mut reqs {
            r.constraints = vec![zone_is("c")];
        }
        let plan = run(&nodes, &reqs[..1], Strategy::Spread);
        assert!(plan.placements.is_empty());
        assert_eq!(
            plan.unplaced,
            [Unplaced {
                service: "web".to_owned(),
                replica: 0,
                count: 1,
                reason: "0/4 nodes: 4 constraint mismatch (zone == c)".to_owned(),
            }]
        );
    }

    #[test]
    fn scheduler_reason_counts_each_node_once_by_descending_count() {
        // Two nodes too small in memory, one in the wrong zone (and also too small:
        // a node counts once, for its first failing check).
        let nodes = [
            in_zone(node("n1", 4000, 32), "a"),
            in_zone(node("n2", 4000, 32), "a"),
            in_zone(node("n3", 4000, 32), "b"),
        ];
        let mut reqs = requests("web", 1, 100, 64);
        reqs[0].constraints.push(zone_is("a"));
        let plan = run(&nodes, &reqs, Strategy::Spread);
        assert!(plan.placements.is_empty());
        assert_eq!(
            plan.unplaced[0].reason,
            "0/3 nodes: 2 insufficient memory, 1 constraint mismatch (zone == a)"
        );

        // Ties keep the check order: not ready, constraint, cpu, memory.
        let mut down = node("d", 4000, 4096);
        down.schedulable = false;
        let nodes = [node("m", 4000, 32), node("c", 50, 4096), down];
        let plan = run(&nodes, &requests("web", 1, 100, 64), Strategy::Spread);
        assert_eq!(
            plan.unplaced[0].reason,
            "0/3 nodes: 1 not ready, 1 insufficient cpu, 1 insufficient memory"
        );

        let plan = run(&[], &requests("web", 1, 100, 64), Strategy::Spread);
        assert_eq!(plan.unplaced[0].reason, "0/0 nodes: no nodes");
    }

    #[test]
    fn scheduler_skips_nodes_that_are_not_schedulable() {
        let mut draining = node("a", 4000, 4096);
        draining.schedulable = false;
        let nodes = [draining, node("b", 4000, 4096)];
        let plan = run(&nodes, &requests("web", 3, 100, 64), Strategy::Spread);
        assert!(plan.unplaced.is_empty(), "{plan:?}");
        assert_eq!(per_node(&plan), BTreeMap::from([("b".to_owned(), 3)]));

        let mut down = nodes.clone();
        down[1].schedulable = false;
        let plan = run(&down, &requests("web", 1, 100, 64), Strategy::Spread);
        assert_eq!(plan.unplaced[0].reason, "0/2 nodes: 2 not ready");
    }

    #[test]
    fn scheduler_honors_existing_spread_counts() {
        let mut a = node("a", 4000, 4096);
        // Two `web` replicas and something else.
        a.allocated = Resources {
            cpu_millis: 300,
            memory_bytes: 192 * MI,
        };
        let nodes = [a, node("b", 4000, 4096), node("c", 4000, 4096)];
        let existing = BTreeMap::from([
            (("web".to_owned(), "a".to_owned()), 2),
            // Another service's replicas do not count against `web`.
            (("api".to_owned(), "b".to_owned()), 5),
            (("zzz".to_owned(), "c".to_owned()), 5),
        ]);
        // Replicas 2..=5: b and c catch up with a's two replicas before a gets a third.
        let reqs: Vec<Request> = requests("web", 6, 100, 64).split_off(2);
        let plan = schedule(&nodes, &reqs, Strategy::Spread, &existing);
        assert!(plan.unplaced.is_empty(), "{plan:?}");
        assert_eq!(
            per_node(&plan),
            BTreeMap::from([("b".to_owned(), 2), ("c".to_owned(), 2)])
        );

        // With a the most loaded of three equal counts, a still comes last.
        let mut more = reqs.clone();
        more.extend(requests("web", 8, 100, 64).split_off(6));
        let plan = schedule(&nodes, &more, Strategy::Spread, &existing);
        let mut last: Vec<&str> = plan.placements[4..]
            .iter()
            .map(|p| p.node.as_str())
            .collect();
        last.sort_unstable();
        assert_eq!(last, ["b", "c"], "{plan:?}");
    }

    #[test]
    fn scheduler_is_deterministic_and_takes_turns_on_equal_nodes() {
        let nodes: Vec<NodeView> = (0..4).map(|i| node(&format!("n{i}"), 4000, 4096)).collect();
        let reqs: Vec<Request> = (0..40)
            .flat_map(|s| requests(&format!("svc-{s}"), 2, 100, 64))
            .collect();
        let plan = run(&nodes, &reqs, Strategy::Spread);
        assert_eq!(plan, run(&nodes, &reqs, Strategy::Spread));
        // The order the nodes are given in does not matter.
        let mut reversed = nodes.clone();
        reversed.reverse();
        assert_eq!(plan, run(&reversed, &reqs, Strategy::Spread));
        assert_eq!(sorted_counts(&plan), vec![20, 20, 20, 20]);

        // With nothing to tell nodes apart (no resources), different services still
        // start on different nodes, and one service's replicas rotate.
        let free = |service: &str, replica: u32| Request {
            service: service.to_owned(),
            replica,
            resources: Resources {
                cpu_millis: 0,
                memory_bytes: 0,
            },
            constraints: Vec::new(),
        };
        let firsts: Vec<Request> = (0..40).map(|s| free(&format!("svc-{s}"), 0)).collect();
        let plan = run(&nodes, &firsts, Strategy::BinPack);
        assert_eq!(per_node(&plan).len(), 4, "{:?}", per_node(&plan));
        let one: Vec<Request> = (0..8).map(|r| free("web", r)).collect();
        let plan = run(&nodes, &one, Strategy::BinPack);
        assert_eq!(sorted_counts(&plan), vec![2, 2, 2, 2]);
        assert_eq!(plan, run(&reversed, &one, Strategy::BinPack));
    }

    #[test]
    fn scheduler_consumes_capacity_within_one_call() {
        // Memory for exactly two replicas, CPU for many.
        let nodes = [node("only", 4000, 128)];
        let mut reqs = requests("web", 2, 100, 64);
        reqs.extend(requests("api", 1, 100, 64));
        let plan = run(&nodes, &reqs, Strategy::Spread);
        assert_eq!(plan.placements.len(), 2);
        assert_eq!(
            plan.unplaced,
            [Unplaced {
                service: "api".to_owned(),
                replica: 0,
                count: 1,
                reason: "0/1 nodes: 1 insufficient memory".to_owned(),
            }]
        );
    }

    #[test]
    fn scheduler_counts_unplaceable_replicas_once_per_service_and_reason() {
        // Memory for two replicas: the other 998 of `web` are one entry, and `api`
        // (same shape, another service) its own.
        let nodes = [node("only", 400_000, 128)];
        let mut reqs = requests("web", 1000, 100, 64);
        reqs.extend(requests("api", 3, 100, 64));
        let plan = run(&nodes, &reqs, Strategy::Spread);
        assert_eq!(plan.placements.len(), 2);
        assert_eq!(
            plan.unplaced,
            [
                Unplaced {
                    service: "web".to_owned(),
                    replica: 2,
                    count: 998,
                    reason: "0/1 nodes: 1 insufficient memory".to_owned(),
                },
                Unplaced {
                    service: "api".to_owned(),
                    replica: 0,
                    count: 3,
                    reason: "0/1 nodes: 1 insufficient memory".to_owned(),
                },
            ]
        );
    }

    #[test]
    fn scheduler_places_a_thousand_replicas_on_a_hundred_nodes() {
        let nodes: Vec<NodeView> = (0..100)
            .map(|i| in_zone(node(&format!("node-{i:03}"), 4000, 8192), "a"))
            .collect();
        let reqs: Vec<Request> = (0..10)
            .flat_map(|s| {
                let mut reqs = requests(&format!("svc-{s}"), 100, 100, 64);
                for r in &mut reqs {
                    r.constraints.push(zone_is("a"));
                }
                reqs
            })
            .collect();
        for strategy in [Strategy::Spread, Strategy::BinPack] {
            let plan = run(&nodes, &reqs, strategy);
            assert!(plan.unplaced.is_empty(), "{:?}", plan.unplaced.first());
            assert_eq!(plan.placements.len(), 1000);
        }
        // Spread: one replica of each service per node.
        let plan = run(&nodes, &reqs, Strategy::Spread);
        assert_eq!(sorted_counts(&plan), vec![10; 100]);
    }
}
