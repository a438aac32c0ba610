//! The desired-set index: every node's desired replica set, computed once per
//! applied index for all agent sessions, and handed to each session through its
//! node's own [`watch`] channel.
//!
//! Before it, each session rescanned every service, replica and job on every
//! change of the Raft metrics, so the leader's cost grew with agents × state. Now
//! one task ([`DesiredIndex::run`]) follows the metrics; when the last applied
//! index moved (an entry applied, a snapshot installed) it scans the state once,
//! groups it by node, and sends a node's set only to that node's channel and only
//! when the set differs from what the channel holds. A session wakes only when its
//! own node's set changed, and the cost of a change grows with the state, not with
//! the number of agents.
//!
//! Only a leader keeps sets: when this peer is not the leader, every channel is
//! dropped (each session then sees its channel close and ends, so its agent
//! reconnects to the new leader) and [`DesiredIndex::subscribe`] refuses.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use orion_api::agent_proto::{DesiredReplica, VariableValues};
use orion_raft::{read, RaftNode};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::SessionError;

/// One node's desired replica set as of `revision` (the applied index it was
/// computed at).
#[derive(Debug, Clone, PartialEq)]
pub struct Desired {
    pub revision: u64,
    pub replicas: Arc<Vec<DesiredReplica>>,
}

/// The leader's desired-set index (see the module docs). Cheap to share: one per
/// gateway, behind an `Arc`.
pub struct DesiredIndex {
    node: RaftNode,
    state: Mutex<IndexState>,
}

#[derive(Default)]
struct IndexState {
    /// The applied index the sets were computed at; `None` until computed since
    /// this peer last became the leader.
    applied: Option<u64>,
    /// A channel for every node with a non-empty set or a session.
    nodes: HashMap<String, watch::Sender<Desired>>,
}

impl IndexState {
    /// Takes the sets computed at `revision`: sends each node's set to its channel
    /// when it changed (an empty one to a node that has nothing any more), opens a
    /// channel for a node new to the index, and drops those with nothing desired
    /// and no session.
    fn update(&mut self, revision: u64, mut sets: BTreeMap<String, Vec<DesiredReplica>>) {
        self.applied = Some(revision);
        self.nodes.retain(|node, tx| {
            let set = sets.remove(node).unwrap_or_default();
            let empty = set.is_empty();
            tx.send_if_modified(|cur| {
                if *cur.replicas == set {
                    return false;
                }
                *cur = Desired {
                    revision,
                    replicas: Arc::new(set),
                };
                true
            });
            !empty || tx.receiver_count() > 0
        });
        for (node, set) in sets {
            let (tx, _) = watch::channel(Desired {
                revision,
                replicas: Arc::new(set),
            });
            self.nodes.insert(node, tx);
        }
    }
}

impl DesiredIndex {
    /// An empty index over `node`'s state; nothing is computed until a session
    /// subscribes or [`DesiredIndex::run`] sees this peer lead.
    pub fn new(node: RaftNode) -> Self {
        Self {
            node,
            state: Mutex::new(IndexState::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, IndexState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Follows the Raft metrics until `shutdown`, bringing the index up to date
    /// whenever they change (and dropping it when this peer stops leading).
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let mut metrics = self.node.raft.metrics();
        let mut warned = false;
        loop {
            match self.refresh() {
                Ok(()) => warned = false,
                Err(e) if !warned => {
                    warn!(cause = %e, "cannot compute the nodes' desired replica sets; retrying on the next change");
                    warned = true;
                }
                Err(e) => tracing::debug!(cause = %e, "desired replica sets still not computed"),
            }
            tokio::select! {
                () = shutdown.cancelled() => break,
                changed = metrics.changed() => if changed.is_err() { break },
            }
        }
        self.lock().nodes.clear();
    }

    /// Brings the index up to the last applied index (a no-op when it is there).
    pub fn refresh(&self) -> Result<(), SessionError> {
        let mut st = self.lock();
        self.refresh_locked(&mut st)
    }

    fn refresh_locked(&self, st: &mut IndexState) -> Result<(), SessionError> {
        if !self.node.is_leader() {
            // Dropping the senders ends every session of this peer.
            st.nodes.clear();
            st.applied = None;
            return Err(SessionError::NotLeader);
        }
        let computed = self
            .node
            .reader
            .with_view(|v| {
                let applied = v.last_applied_index()?;
                if st.applied == Some(applied) {
                    return Ok(None);
                }
                Ok::<_, orion_store::Error>(Some((applied, desired_sets(v)?)))
            })
            .map_err(|e| SessionError::State(e.to_string()))?;
        let Some((revision, sets)) = computed else {
            return Ok(());
        };
        st.update(revision, sets);
        Ok(())
    }

    /// `node`'s channel, and its set as of the last applied index (the revision
    /// is that index, as a fresh session is sent). Fails when this peer is not the
    /// leader or the state cannot be read.
    pub fn subscribe(
        &self,
        node: &str,
    ) -> Result<(Desired, watch::Receiver<Desired>), SessionError> {
        let mut st = self.lock();
        self.refresh_locked(&mut st)?;
        let revision = st.applied.unwrap_or_default();
        let tx = st.nodes.entry(node.to_string()).or_insert_with(|| {
            watch::channel(Desired {
                revision,
                replicas: Arc::new(Vec::new()),
            })
            .0
        });
        let rx = tx.subscribe();
        let current = Desired {
            revision,
            replicas: tx.borrow().replicas.clone(),
        };
        Ok((current, rx))
    }

    /// Drops `node`'s channel if nothing is desired there and no session holds it
    /// (called when a session ends, so deleted nodes leave no channel behind).
    pub fn release(&self, node: &str) {
        let mut st = self.lock();
        if let Some(tx) = st.nodes.get(node) {
            if tx.receiver_count() == 0 && tx.borrow().replicas.is_empty() {
                st.nodes.remove(node);
            }
        }
    }
}

/// Every node's desired replica set in one scan of `v`: for each node, its
/// service replicas in the order `read::replicas` gives them, then its running
/// job tasks in job order — what a per-node scan gives that node.
pub fn desired_sets(
    v: &orion_store::View<'_>,
) -> Result<BTreeMap<String, Vec<DesiredReplica>>, orion_store::Error> {
    let services: BTreeMap<String, orion_api::ServiceObject> = read::services(v)
        .map_err(|e| orion_store::Error::ApplyRead(e.to_string()))?
        .into_iter()
        .map(|s| (s.spec.name.clone(), s))
        .collect();
    let replicas = read::replicas(v).map_err(|e| orion_store::Error::ApplyRead(e.to_string()))?;
    let mut out: BTreeMap<String, Vec<DesiredReplica>> = BTreeMap::new();
    // Replicas of one service generation share a spec and its variables: resolve once.
    let mut resolved: HashMap<(String, u64), (orion_api::spec::ServiceSpec, VariableValues)> =
        HashMap::new();
    for r in replicas {
        // A replica runs the spec of its own generation until the rollout
        // controller moves it; one whose spec left the history runs the current one.
        let Some(s) = services.get(&r.service) else {
            continue;
        };
        let (generation, spec) = match s.spec_of(r.generation) {
            Some(spec) => (r.generation, spec),
            None => (s.generation, &s.spec),
        };
        let key = (r.service.clone(), generation);
        let (service, variables) = match resolved.get(&key) {
            Some(done) => done.clone(),
            None => {
                let done = (spec.process_view(), super::resolve_variables(v, spec)?);
                resolved.insert(key, done.clone());
                done
            }
        };
        out.entry(r.node.clone()).or_default().push(DesiredReplica {
            id: r.id(),
            generation,
            variables,
            service,
        });
    }
    let jobs = read::jobs(v).map_err(|e| orion_store::Error::ApplyRead(e.to_string()))?;
    for job in &jobs {
        let service = job.spec.task_service();
        for (id, on, _, _) in job.placed_tasks() {
            out.entry(on.to_string()).or_default().push(DesiredReplica {
                id,
                generation: job.create_revision,
                // A job's env holds values only (no variable references).
                variables: Default::default(),
                service: service.clone(),
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use openraft::storage::RaftStateMachine;
    use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId};
    use orion_api::spec::{parse_documents, Resource, Resources, VariableRef};
    use orion_api::ReplicaObject;
    use orion_raft::apply::OrionApplier;
    use orion_raft::{Command, TypeConfig};
    use orion_store::{Store, View};

    use super::*;

    /// What each session computed for its node before the index: the per-node
    /// scan the index must agree with.
    fn desired_for(v: &View<'_>, node: &str) -> Result<Vec<DesiredReplica>, orion_store::Error> {
        let services: BTreeMap<String, orion_api::ServiceObject> = read::services(v)
            .map_err(|e| orion_store::Error::ApplyRead(e.to_string()))?
            .into_iter()
            .map(|s| (s.spec.name.clone(), s))
            .collect();
        let replicas =
            read::replicas(v).map_err(|e| orion_store::Error::ApplyRead(e.to_string()))?;
        let mut desired = Vec::new();
        for r in replicas.into_iter().filter(|r| r.node == node) {
            let Some(s) = services.get(&r.service) else {
                continue;
            };
            let (generation, spec) = match s.spec_of(r.generation) {
                Some(spec) => (r.generation, spec),
                None => (s.generation, &s.spec),
            };
            desired.push(DesiredReplica {
                id: r.id(),
                generation,
                variables: crate::gateway::resolve_variables(v, spec)?,
                service: spec.process_view(),
            });
        }
        let jobs = read::jobs(v).map_err(|e| orion_store::Error::ApplyRead(e.to_string()))?;
        for job in &jobs {
            let service = job.spec.task_service();
            for (id, on, _, _) in job.placed_tasks() {
                if on == node {
                    desired.push(DesiredReplica {
                        id,
                        generation: job.create_revision,
                        variables: Default::default(),
                        service: service.clone(),
                    });
                }
            }
        }
        Ok(desired)
    }

    /// A small deterministic generator (xorshift), so a failure replays.
    struct Rng(u64);
    impl Rng {
        fn below(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0 % n
        }
    }

    const NODES: u64 = 6;

    fn service(rng: &mut Rng, name: &str) -> Resource {
        let yaml = format!(
            "kind: Service\nname: {name}\nreplicas: 3\ncommand: [sleep, \"{}\"]\n\
             resources: {{cpu: 10m, memory: 8Mi}}\n",
            rng.below(4)
        );
        let mut parsed = parse_documents("test.yaml", &yaml).expect("valid service");
        let mut r = parsed.remove(0);
        if let Resource::Service(spec) = &mut r {
            for e in 0..rng.below(3) {
                spec.env_variables.insert(
                    format!("E{e}"),
                    VariableRef {
                        variable: format!("v/{}", rng.below(5)),
                        restart_on_change: false,
                    },
                );
            }
        }
        r
    }

    fn random_command(rng: &mut Rng) -> Command {
        let svc = format!("s{}", rng.below(4));
        match rng.below(6) {
            0 => Command::PutVariable {
                path: format!("v/{}", rng.below(5)),
                value: format!("x{}", rng.below(100)),
                expected_revision: None,
                secret: rng.below(2) == 0,
            },
            1 => Command::DeleteVariable {
                path: format!("v/{}", rng.below(5)),
                expected_revision: None,
            },
            2 => Command::ApplyResources {
                resources: vec![service(rng, &svc)],
            },
            3 => Command::DeleteService { name: svc },
            _ => Command::ReconcileReplicas {
                place: (0..rng.below(4))
                    .map(|_| ReplicaObject {
                        service: svc.clone(),
                        ordinal: rng.below(5) as u32,
                        node: format!("n{}", rng.below(NODES)),
                        generation: 1 + rng.below(4),
                        resources: Resources {
                            cpu_millis: 10,
                            memory_bytes: 8 << 20,
                        },
                        create_revision: 0,
                    })
                    .collect(),
                remove: (0..rng.below(2))
                    .map(|_| (svc.clone(), rng.below(5) as u32))
                    .collect(),
            },
        }
    }

    #[tokio::test]
    async fn the_index_gives_every_node_what_a_per_node_scan_gives() {
        let (mut placed_total, mut with_values, mut with_missing) = (0, 0, 0);
        for seed in 1..=12u64 {
            let dir = tempfile::tempdir().expect("dir");
            let mut store: Store<TypeConfig> =
                orion_store::open(dir.path(), Arc::new(OrionApplier)).expect("open store");
            let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
            let mut index = IndexState::default();
            // Sessions of every node: each holds its channel from the start.
            let mut sessions: BTreeMap<String, watch::Receiver<Desired>> = BTreeMap::new();
            let mut seen: BTreeMap<String, Arc<Vec<DesiredReplica>>> = BTreeMap::new();
            for i in 1..=60u64 {
                let cmd = random_command(&mut rng);
                let entry = Entry {
                    log_id: LogId::new(CommittedLeaderId::new(1, 1), i),
                    payload: EntryPayload::Normal(cmd.into()),
                };
                store.sm.apply(vec![entry]).await.expect("apply");
                let (revision, sets, oracle) = store
                    .reader
                    .with_view(|v| {
                        let oracle: BTreeMap<String, Vec<DesiredReplica>> = (0..NODES)
                            .map(|n| {
                                let n = format!("n{n}");
                                let d = desired_for(v, &n).expect("scan");
                                (n, d)
                            })
                            .collect();
                        Ok::<_, orion_store::Error>((
                            v.last_applied_index()?,
                            desired_sets(v)?,
                            oracle,
                        ))
                    })
                    .expect("read");
                assert_eq!(revision, i);
                for (n, want) in &oracle {
                    let got = sets.get(n).cloned().unwrap_or_default();
                    assert_eq!(&got, want, "seed {seed}, entry {i}, node {n}");
                }
                placed_total += sets.values().map(Vec::len).sum::<usize>();
                with_values += sets
                    .values()
                    .flatten()
                    .filter(|d| !d.variables.values.is_empty())
                    .count();
                with_missing += sets
                    .values()
                    .flatten()
                    .filter(|d| !d.variables.missing.is_empty())
                    .count();
                let placed: BTreeSet<&String> = sets.keys().collect();
                assert!(placed.iter().all(|n| oracle.contains_key(*n)));
                index.update(revision, sets);
                if i == 20 {
                    for n in 0..NODES {
                        let n = format!("n{n}");
                        let tx = index.nodes.entry(n.clone()).or_insert_with(|| {
                            watch::channel(Desired {
                                revision,
                                replicas: Arc::new(Vec::new()),
                            })
                            .0
                        });
                        seen.insert(n.clone(), tx.borrow().replicas.clone());
                        sessions.insert(n, tx.subscribe());
                    }
                }
                // Every session's channel holds its node's set; it was told of a
                // change exactly when the set changed.
                for (n, rx) in sessions.iter_mut() {
                    let changed = rx.has_changed().expect("channel open");
                    let now = rx.borrow_and_update().clone();
                    assert_eq!(*now.replicas, oracle[n], "seed {seed}, entry {i}, node {n}");
                    let before = seen.insert(n.clone(), now.replicas.clone());
                    if let Some(before) = before {
                        assert_eq!(changed, *before != *now.replicas, "seed {seed}, entry {i}");
                    }
                    if changed {
                        assert_eq!(now.revision, i, "a changed set carries its revision");
                    }
                }
                // Nodes without a set or a session have no channel.
                for (n, tx) in &index.nodes {
                    assert!(
                        !tx.borrow().replicas.is_empty() || sessions.contains_key(n),
                        "idle channel for {n}"
                    );
                }
            }
        }
        // The random states did exercise placements and both kinds of variables.
        assert!(placed_total > 0 && with_values > 0 && with_missing > 0);
    }
}
