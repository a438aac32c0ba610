//! The deterministic apply function and the layout of the state machine's keys.
//!
//! Every peer applies the same entries in the same order through [`OrionApplier`] and
//! ends with the same bytes. Apply is total: a command that cannot be applied
//! becomes a [`Rejection`] returned to its proposer and changes nothing. A broken
//! store (a failed read, an unreadable stored value) is not a rejection: apply
//! returns the storage error and openraft stops this peer, since answering
//! differently from the others would make the peers' states diverge.
//!
//! Keys (all in the store's `sm` column family):
//! - `v/<path>`: a [`Variable`] as JSON.
//! - `e/<revision, 8 bytes big-endian><seq, 4 bytes big-endian>`: an [`Event`], the
//!   `seq`-th change of the write at that revision; the last [`EVENT_WINDOW`] events
//!   are kept.
//! - `m/events`: the [`EventLog`]: how many events are stored, the newest, and the
//!   newest dropped from the window.
//! - `r/<id, 8 bytes big-endian>`: a retired member id, never to be reused.
//! - `s/<name>`: a [`ServiceObject`] as JSON.
//! - `c/ca`: the cluster CA (certificate and key, PEM) and token key as JSON.
//! - `t/<id>`: a [`TokenRecord`] as JSON.
//! - `n/<name>`: a [`NodeObject`] as JSON.
//! - `p/<service>/<ordinal, 4 bytes big-endian>`: a [`ReplicaObject`] as JSON.
//! - `j/<name>`: a [`JobObject`] as JSON: the spec, its runs and their tasks.
//! - `d/…`, `o/…`, `m/sessions-compacted`: client sessions, see [`crate::session`].

use orion_api::security::TokenRecord;
use orion_api::spec::service::validate_name;
use orion_api::spec::Resource;
use orion_api::{
    validate_path, ApplyResult, Change, ErrorCode, Event, EventCursor, EventKind, JobObject,
    NodeObject, ReplicaObject, ServiceObject, Variable,
};
use orion_store::{Applier, Txn};
use serde::{Deserialize, Serialize};

use crate::command::{Applied, Command, CommandResult, Proposal, Rejection};
use crate::session;
use crate::types::TypeConfig;

/// How many change events are kept for watchers to resume from.
pub const EVENT_WINDOW: u64 = 10_000;

/// The highest `seq` an event is given. `u32::MAX` is never one, so
/// `(revision - 1, u32::MAX)` is a position before every event of `revision`. (One
/// Raft entry is far too small to make that many changes.)
pub const MAX_EVENT_SEQ: u32 = u32::MAX - 1;

pub const VARIABLE_PREFIX: &[u8] = b"v/";
pub const EVENT_PREFIX: &[u8] = b"e/";
const EVENT_LOG_KEY: &[u8] = b"m/events";
const RETIRED_PREFIX: &[u8] = b"r/";
pub const SERVICE_PREFIX: &[u8] = b"s/";
pub const NODE_PREFIX: &[u8] = b"n/";
pub const CA_KEY: &[u8] = b"c/ca";
pub const TOKEN_PREFIX: &[u8] = b"t/";

pub fn token_key(id: &str) -> Vec<u8> {
    [TOKEN_PREFIX, id.as_bytes()].concat()
}
pub const REPLICA_PREFIX: &[u8] = b"p/";
pub const JOB_PREFIX: &[u8] = b"j/";

pub fn job_key(name: &str) -> Vec<u8> {
    [JOB_PREFIX, name.as_bytes()].concat()
}

pub fn variable_key(path: &str) -> Vec<u8> {
    [VARIABLE_PREFIX, path.as_bytes()].concat()
}

/// The key of an event: big-endian, so key order is (revision, seq) order.
pub fn event_key(cursor: EventCursor) -> Vec<u8> {
    [
        EVENT_PREFIX,
        &cursor.revision.to_be_bytes(),
        &cursor.seq.to_be_bytes(),
    ]
    .concat()
}

/// The position an event key names. Keys of 8 bytes (written before events had a
/// `seq`) read as `seq` 0.
pub fn event_cursor_of(key: &[u8]) -> Option<EventCursor> {
    let rest = key.strip_prefix(EVENT_PREFIX)?;
    let revision = u64::from_be_bytes(rest.get(..8)?.try_into().ok()?);
    let seq = match rest.get(8..)? {
        [] => 0,
        seq => u32::from_be_bytes(seq.try_into().ok()?),
    };
    Some(EventCursor { revision, seq })
}

/// The bookkeeping of the event window, at `m/events`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventLog {
    /// How many events are stored under `e/`.
    pub stored: u64,
    /// The newest event, so the next one of the same revision gets the next `seq`.
    pub last: Option<EventCursor>,
    /// The newest event dropped from the window. A watcher can resume only from a
    /// position at or after it (it must have seen every dropped event).
    pub compacted: Option<EventCursor>,
}

pub fn event_log_key() -> &'static [u8] {
    EVENT_LOG_KEY
}

pub fn service_key(name: &str) -> Vec<u8> {
    [SERVICE_PREFIX, name.as_bytes()].concat()
}

pub fn node_key(name: &str) -> Vec<u8> {
    [NODE_PREFIX, name.as_bytes()].concat()
}

pub fn replica_key(service: &str, ordinal: u32) -> Vec<u8> {
    [
        REPLICA_PREFIX,
        service.as_bytes(),
        b"/",
        &ordinal.to_be_bytes(),
    ]
    .concat()
}

pub fn retired_key(id: u64) -> Vec<u8> {
    [RETIRED_PREFIX, &id.to_be_bytes()].concat()
}

/// Orion's [`Applier`]: stateless, all state lives in the transaction.
#[derive(Debug, Default)]
pub struct OrionApplier;

impl Applier<TypeConfig> for OrionApplier {
    fn apply(
        &self,
        txn: &mut Txn<'_>,
        index: u64,
        proposal: &Proposal,
    ) -> orion_store::Result<CommandResult> {
        // Client sessions: a retried write returns what it produced the first time.
        session::evict(txn, index)?;
        if let Command::Batch { writes } = &proposal.command {
            return self.apply_batch(txn, index, writes);
        }
        self.apply_proposal(txn, index, proposal)
    }

    fn non_data_response(&self, index: u64) -> CommandResult {
        CommandResult {
            revision: index,
            outcome: Ok(Applied::Done),
        }
    }
}

impl OrionApplier {
    /// One proposal: once per request id.
    fn apply_proposal(
        &self,
        txn: &mut Txn<'_>,
        index: u64,
        proposal: &Proposal,
    ) -> orion_store::Result<CommandResult> {
        let Some(id) = &proposal.request_id else {
            return self.apply_once(txn, index, &proposal.command);
        };
        if let Some(original) = session::recorded(txn, id)? {
            return Ok(original);
        }
        let result = self.apply_once(txn, index, &proposal.command)?;
        session::record(txn, index, id, &result)?;
        Ok(result)
    }

    /// The writes of a batch, in order, each as its own proposal. A write a batch
    /// may not hold (not a variable write, no request id, or a path or request id
    /// already in the batch) is rejected alone; the others apply.
    fn apply_batch(
        &self,
        txn: &mut Txn<'_>,
        index: u64,
        writes: &[Proposal],
    ) -> orion_store::Result<CommandResult> {
        let mut paths = std::collections::BTreeSet::new();
        let mut ids = std::collections::BTreeSet::new();
        let mut results = Vec::with_capacity(writes.len());
        for write in writes {
            let path = crate::write_batch::written_path(&write.command);
            let refusal = if !crate::write_batch::batchable(write) {
                Some("only variable writes with a request id can be batched")
            } else if path.is_some_and(|p| !paths.insert(p)) {
                Some("a batch holds one write per variable")
            } else if write.request_id.as_ref().is_some_and(|id| !ids.insert(id)) {
                Some("a batch holds one write per request id")
            } else {
                None
            };
            results.push(match refusal {
                Some(why) => CommandResult {
                    revision: index,
                    outcome: Err(Rejection {
                        code: ErrorCode::InvalidArgument,
                        message: why.into(),
                        current_revision: None,
                        current_value: None,
                    }),
                },
                None => self.apply_proposal(txn, index, write)?,
            });
        }
        Ok(CommandResult {
            revision: index,
            outcome: Ok(Applied::Batch(results)),
        })
    }

    fn apply_once(
        &self,
        txn: &mut Txn<'_>,
        index: u64,
        cmd: &Command,
    ) -> orion_store::Result<CommandResult> {
        let outcome = match apply_command(txn, index, cmd).and_then(|applied| {
            compact_events(txn)?;
            Ok(applied)
        }) {
            Ok(applied) => Ok(applied),
            Err(Failure::Rejected(r)) => Err(r),
            // Only this peer's disk failed: fatal, never an answer (see the crate docs).
            Err(Failure::Storage(e)) => return Err(e),
        };
        Ok(CommandResult {
            revision: index,
            outcome,
        })
    }
}

enum Failure {
    Rejected(Rejection),
    Storage(orion_store::Error),
}

impl From<orion_store::Error> for Failure {
    fn from(e: orion_store::Error) -> Self {
        Failure::Storage(e)
    }
}

fn reject(code: ErrorCode, message: String, current_revision: Option<u64>) -> Failure {
    Failure::Rejected(Rejection {
        code,
        message,
        current_revision,
        current_value: None,
    })
}

fn apply_command(txn: &mut Txn<'_>, index: u64, cmd: &Command) -> Result<Applied, Failure> {
    match cmd {
        Command::PutVariable {
            path,
            value,
            expected_revision,
            secret,
        } => {
            validate_path(path).map_err(|m| reject(ErrorCode::InvalidArgument, m.into(), None))?;
            let key = variable_key(path);
            let current = read_json::<Variable>(txn, &key)?;
            check_expected(path, current.as_ref(), *expected_revision)?;
            let variable = Variable {
                path: path.clone(),
                value: value.clone(),
                create_revision: current.as_ref().map_or(index, |v| v.create_revision),
                mod_revision: index,
                version: current.as_ref().map_or(1, |v| v.version + 1),
                secret: *secret,
                redacted: false,
            };
            txn.put(&key, &encode(&variable));
            let public = variable.clone().redacted();
            record_event(txn, index, EventKind::Put, "Variable", path, &public)?;
            Ok(Applied::Put(variable))
        }
        Command::DeleteVariable {
            path,
            expected_revision,
        } => {
            validate_path(path).map_err(|m| reject(ErrorCode::InvalidArgument, m.into(), None))?;
            let key = variable_key(path);
            let current = read_json::<Variable>(txn, &key)?;
            check_expected(path, current.as_ref(), *expected_revision)?;
            let Some(variable) = current else {
                return Err(reject(
                    ErrorCode::NotFound,
                    format!("variable {path:?} does not exist"),
                    None,
                ));
            };
            txn.delete(&key);
            record_event(
                txn,
                index,
                EventKind::Delete,
                "Variable",
                path,
                &variable.clone().redacted(),
            )?;
            Ok(Applied::Deleted(variable))
        }
        Command::RetireMember { id } => {
            txn.put(&retired_key(*id), &index.to_be_bytes());
            Ok(Applied::Done)
        }
        Command::ApplyResources { resources } => {
            // Check everything before writing anything: one bad resource applies none.
            let mut seen = std::collections::BTreeSet::new();
            for r in resources {
                validate_name(r.name()).map_err(|m| {
                    reject(
                        ErrorCode::InvalidArgument,
                        format!("{} {:?}: {m}", r.kind(), r.name()),
                        None,
                    )
                })?;
                match r {
                    Resource::Service(spec) => check_variable_refs(spec)?,
                    Resource::Job(_) => {}
                }
                if !seen.insert((r.kind(), r.name())) {
                    return Err(reject(
                        ErrorCode::InvalidArgument,
                        format!("{} {:?} appears twice in one apply", r.kind(), r.name()),
                        None,
                    ));
                }
            }
            let mut results = Vec::with_capacity(resources.len());
            for r in resources {
                results.push(apply_resource(txn, index, r)?);
            }
            Ok(Applied::Resources(results))
        }
        Command::DeleteService { name } => {
            let key = service_key(name);
            let Some(service) = read_json::<ServiceObject>(txn, &key)? else {
                return Err(reject(
                    ErrorCode::NotFound,
                    format!("service {name:?} does not exist"),
                    None,
                ));
            };
            txn.delete(&key);
            record_event(txn, index, EventKind::Delete, "Service", name, &service)?;
            Ok(Applied::DeletedService(Box::new(service)))
        }
        Command::UpsertNode { node } => upsert_node(txn, index, node),
        Command::SetNodeScheduling {
            name,
            cordoned,
            draining,
            drain_deadline_unix_ms,
        } => {
            let (key, current) = existing_node(txn, name)?;
            let node = NodeObject {
                cordoned: *cordoned,
                draining: *draining,
                drain_deadline_unix_ms: *drain_deadline_unix_ms,
                mod_revision: index,
                ..current
            };
            txn.put(&key, &encode(&node));
            record_event(txn, index, EventKind::Put, "Node", name, &node)?;
            Ok(Applied::Node(Box::new(node)))
        }
        Command::DeleteNode { name } => {
            let (key, node) = existing_node(txn, name)?;
            txn.delete(&key);
            record_event(txn, index, EventKind::Delete, "Node", name, &node)?;
            Ok(Applied::Node(Box::new(node)))
        }
        Command::SetClusterCa {
            cert_pem,
            key_pem,
            token_key,
        } => {
            if txn.get(CA_KEY)?.is_none() {
                let ca = serde_json::json!({
                    "cert_pem": cert_pem, "key_pem": key_pem, "token_key": token_key,
                });
                txn.put(CA_KEY, &encode(&ca));
            }
            Ok(Applied::Done)
        }
        Command::PutToken { record } => {
            let key = token_key(&record.id);
            if record.id.is_empty() || txn.get(&key)?.is_some() {
                return Err(reject(
                    ErrorCode::Conflict,
                    format!("token id {:?} is taken", record.id),
                    None,
                ));
            }
            txn.put(&key, &encode(record));
            Ok(Applied::Done)
        }
        Command::RevokeToken { id } => {
            let key = token_key(id);
            let Some(mut record) = read_json::<TokenRecord>(txn, &key)? else {
                return Err(reject(
                    ErrorCode::NotFound,
                    format!("no token with id {id:?}"),
                    None,
                ));
            };
            record.revoked = true;
            txn.put(&key, &encode(&record));
            Ok(Applied::Done)
        }
        Command::UseToken { id, now } => {
            let key = token_key(id);
            let refuse = |why: &str| {
                Err(reject(
                    ErrorCode::Unauthenticated,
                    format!("the join token {why}"),
                    None,
                ))
            };
            let Some(mut record) = read_json::<TokenRecord>(txn, &key)? else {
                return refuse("is not known to this cluster");
            };
            if record.revoked {
                return refuse("was revoked");
            }
            if record.used {
                return refuse("was already used; join tokens are single-use");
            }
            if record.expires_at <= *now {
                return refuse("expired");
            }
            record.used = true;
            txn.put(&key, &encode(&record));
            Ok(Applied::Done)
        }
        Command::ReconcileReplicas { place, remove } => {
            reconcile_replicas(txn, index, place, remove)
        }
        Command::RollReplicas {
            service,
            generation,
            ordinals,
        } => roll_replicas(txn, index, service, *generation, ordinals),
        Command::SetRollout {
            service,
            generation,
            state,
            reason,
        } => update_service(txn, index, service, |s| {
            if s.generation != *generation
                || (s.rollout.state == *state && s.rollout.reason == *reason)
            {
                return false;
            }
            s.rollout.state = *state;
            s.rollout.reason.clone_from(reason);
            true
        }),
        Command::PauseRollout { service, paused } => update_service(txn, index, service, |s| {
            let change = s.rollout.paused != *paused;
            s.rollout.paused = *paused;
            change
        }),
        Command::RollBack {
            service,
            to,
            if_generation,
            reason,
        } => roll_back(txn, index, service, *to, *if_generation, reason),
        Command::StartJobRun {
            job,
            scheduled_at,
            if_next_run,
            now_unix_ms,
        } => {
            let (key, mut object) = existing_job(txn, job)?;
            let started =
                crate::jobs::start_run(&mut object, *scheduled_at, *if_next_run, *now_unix_ms)
                    .map_err(|m| reject(ErrorCode::Conflict, m, None))?;
            if started == crate::jobs::Started::Ignored {
                return Ok(Applied::Done);
            }
            put_job(txn, index, &key, &mut object)?;
            match started {
                crate::jobs::Started::Run(id) => {
                    let run = object.runs.iter().find(|r| r.id == id).cloned();
                    Ok(run.map_or(Applied::Done, |r| Applied::JobRun(Box::new(r))))
                }
                _ => Ok(Applied::Done),
            }
        }
        Command::SkipJobSlot {
            job,
            scheduled_at,
            reason,
        } => {
            let (key, mut object) = existing_job(txn, job)?;
            if crate::jobs::skip_slot(&mut object, *scheduled_at, reason.clone()) {
                put_job(txn, index, &key, &mut object)?;
            }
            Ok(Applied::Done)
        }
        Command::UpdateJobRun {
            job,
            run,
            version,
            tasks,
            state,
            reason,
            now_unix_ms,
        } => {
            let (key, mut object) = existing_job(txn, job)?;
            let changed = crate::jobs::update_run(
                &mut object,
                *run,
                *version,
                tasks,
                *state,
                reason.as_deref(),
                *now_unix_ms,
            )
            .map_err(|m| reject(ErrorCode::InvalidArgument, m, None))?;
            if changed {
                put_job(txn, index, &key, &mut object)?;
            }
            Ok(Applied::Done)
        }
        Command::DeleteJob { name } => {
            let (key, job) = existing_job(txn, name)?;
            txn.delete(&key);
            record_event(txn, index, EventKind::Delete, "Job", name, &job)?;
            Ok(Applied::DeletedJob(Box::new(job)))
        }
        Command::RecordHookRun { service, slot, run } => {
            if read_json::<ServiceObject>(txn, &service_key(service))?.is_none() {
                return Ok(Applied::Done);
            }
            if run.key.len() > 256 || slot.len() > 256 {
                return Err(reject(
                    ErrorCode::InvalidArgument,
                    "a hook run's key and slot are at most 256 bytes".into(),
                    None,
                ));
            }
            update_service(txn, index, service, |s| s.hooks.record(slot, run.clone()))
        }
        Command::SetSurge {
            service,
            generation,
            surge,
        } => update_service(txn, index, service, |s| {
            // Closing always applies (a spec whose max_surge was lowered must
            // still lose its slots); opening is capped by the current spec.
            let surge = if *surge == 0 {
                0
            } else {
                (*surge).min(s.spec.strategy.max_surge)
            };
            if s.generation != *generation || s.rollout.surge == surge {
                return false;
            }
            s.rollout.surge = surge;
            true
        }),
        // Batches are taken apart in `OrionApplier::apply`; one inside another is refused.
        Command::RefreshVariables {
            service,
            generation,
        } => refresh_variables(txn, index, service, *generation),
        Command::Batch { .. } => Err(reject(
            ErrorCode::InvalidArgument,
            "a batch cannot hold another batch".into(),
            None,
        )),
    }
}

/// The stored job `name` and its key; a `not_found` rejection when there is none.
fn existing_job(txn: &Txn<'_>, name: &str) -> Result<(Vec<u8>, JobObject), Failure> {
    let key = job_key(name);
    match read_json::<JobObject>(txn, &key)? {
        Some(job) => Ok((key, job)),
        None => Err(reject(
            ErrorCode::NotFound,
            format!("job `{name}` does not exist (`orion get jobs` lists them)"),
            None,
        )),
    }
}

/// Writes a changed job and records its event.
fn put_job(txn: &mut Txn<'_>, index: u64, key: &[u8], job: &mut JobObject) -> Result<(), Failure> {
    job.mod_revision = index;
    txn.put(key, &encode(&*job));
    record_event(txn, index, EventKind::Put, "Job", &job.spec.name, &*job)
}

/// Changes a stored service with `change` (which says whether it changed
/// anything) and records the event. A missing service is a `not_found` rejection.
fn update_service(
    txn: &mut Txn<'_>,
    index: u64,
    name: &str,
    change: impl FnOnce(&mut ServiceObject) -> bool,
) -> Result<Applied, Failure> {
    let key = service_key(name);
    let mut object = existing_service(txn, name)?;
    if change(&mut object) {
        object.mod_revision = index;
        txn.put(&key, &encode(&object));
        record_event(txn, index, EventKind::Put, "Service", name, &object)?;
    }
    Ok(Applied::Service(Box::new(object)))
}

/// The stored service `name`; a `not_found` rejection when there is none.
fn existing_service(txn: &Txn<'_>, name: &str) -> Result<ServiceObject, Failure> {
    read_json::<ServiceObject>(txn, &service_key(name))?.ok_or_else(|| {
        reject(
            ErrorCode::NotFound,
            format!("service `{name}` does not exist"),
            None,
        )
    })
}

/// Moves replicas to the service's current generation (the rollout controller's
/// batches). Stale decisions, missing replicas and replicas already there are
/// skipped.
fn roll_replicas(
    txn: &mut Txn<'_>,
    index: u64,
    service: &str,
    generation: u64,
    ordinals: &[u32],
) -> Result<Applied, Failure> {
    let current = read_json::<ServiceObject>(txn, &service_key(service))?;
    if current.is_none_or(|s| s.generation != generation) {
        return Ok(Applied::Done);
    }
    for ordinal in ordinals {
        let key = replica_key(service, *ordinal);
        let Some(mut replica) = read_json::<ReplicaObject>(txn, &key)? else {
            continue;
        };
        if replica.generation == generation {
            continue;
        }
        replica.generation = generation;
        put_replica(txn, index, &key, &replica)?;
    }
    Ok(Applied::Done)
}

/// Writes a replica object and records its event.
fn put_replica(
    txn: &mut Txn<'_>,
    index: u64,
    key: &[u8],
    replica: &ReplicaObject,
) -> Result<(), Failure> {
    txn.put(key, &encode(replica));
    record_event(
        txn,
        index,
        EventKind::Put,
        "Replica",
        &replica.id(),
        replica,
    )
}

/// Restores an earlier spec as a new generation; the rollout controller then rolls
/// the replicas back to it under the same rules as any update.
fn roll_back(
    txn: &mut Txn<'_>,
    index: u64,
    name: &str,
    to: Option<u64>,
    if_generation: Option<u64>,
    reason: &str,
) -> Result<Applied, Failure> {
    let key = service_key(name);
    let current = existing_service(txn, name)?;
    if if_generation.is_some_and(|g| g != current.generation) {
        return Ok(Applied::Service(Box::new(current)));
    }
    let target = match to {
        Some(g) => current.history.iter().find(|r| r.generation == g),
        None => current.history.last(),
    };
    let Some(target) = target.cloned() else {
        let kept: Vec<String> = current
            .history
            .iter()
            .map(|r| r.generation.to_string())
            .collect();
        let what = to.map_or("an earlier revision".to_string(), |g| {
            format!("revision {g}")
        });
        let kept = if kept.is_empty() {
            "none: it was never changed".to_string()
        } else {
            kept.join(", ")
        };
        return Err(reject(
            ErrorCode::InvalidArgument,
            format!("service `{name}` has no {what} to roll back to (kept: {kept})"),
            Some(current.mod_revision),
        ));
    };
    let from = current.generation;
    // The variables' values are not versioned: the restored spec runs with the
    // current ones, so it records their current revisions (and does not roll again).
    let mut restored = target.spec;
    restored.variable_revisions =
        variable_revisions(txn, &restored, &current.spec.variable_revisions)?;
    let mut object = next_generation(current, restored, index, Some(reason.to_string()));
    object.rollout.rolled_back_from = Some(from);
    txn.put(&key, &encode(&object));
    record_event(txn, index, EventKind::Put, "Service", name, &object)?;
    Ok(Applied::Service(Box::new(object)))
}

/// The `mod_revision` now of every variable `spec` references with
/// `restart_on_change`, never below what `recorded` holds for it: a deleted
/// variable (0) keeps its recorded revision, so a delete rolls nothing, and the
/// variable written again has a newer one.
fn variable_revisions(
    txn: &Txn<'_>,
    spec: &orion_api::spec::ServiceSpec,
    recorded: &std::collections::BTreeMap<String, u64>,
) -> Result<std::collections::BTreeMap<String, u64>, Failure> {
    let mut out = std::collections::BTreeMap::new();
    for path in spec.restart_on_change_paths() {
        let now = read_json::<Variable>(txn, &variable_key(path))?.map_or(0, |v| v.mod_revision);
        let before = recorded.get(path).copied().unwrap_or(0);
        out.insert(path.to_owned(), now.max(before));
    }
    Ok(out)
}

/// Checks a service's variable references again in apply: their count and paths.
fn check_variable_refs(spec: &orion_api::spec::ServiceSpec) -> Result<(), Failure> {
    let invalid = |m: String| reject(ErrorCode::InvalidArgument, m, None);
    if spec.env_variables.len() > orion_api::spec::MAX_ENV_VARIABLES {
        return Err(invalid(format!(
            "Service {:?}: {} env entries take their value from a variable; the limit is {}",
            spec.name,
            spec.env_variables.len(),
            orion_api::spec::MAX_ENV_VARIABLES
        )));
    }
    for (name, r) in &spec.env_variables {
        validate_path(&r.variable)
            .map_err(|m| invalid(format!("Service {:?}: env.{name}: {m}", spec.name)))?;
        if spec.env.contains_key(name) {
            return Err(invalid(format!(
                "Service {:?}: env.{name} is given both a value and a variable",
                spec.name
            )));
        }
    }
    Ok(())
}

/// [`Command::RefreshVariables`]: a new generation when a variable the current
/// spec references with `restart_on_change` is newer than the spec records.
fn refresh_variables(
    txn: &mut Txn<'_>,
    index: u64,
    name: &str,
    generation: u64,
) -> Result<Applied, Failure> {
    let current = existing_service(txn, name)?;
    if current.generation != generation {
        return Ok(Applied::Service(Box::new(current)));
    }
    let recorded = &current.spec.variable_revisions;
    let now = variable_revisions(txn, &current.spec, recorded)?;
    let changed: Vec<String> = now
        .iter()
        .filter(|(path, rev)| **rev > recorded.get(*path).copied().unwrap_or(0))
        .map(|(path, _)| format!("`{path}`"))
        .collect();
    if changed.is_empty() {
        return Ok(Applied::Service(Box::new(current)));
    }
    let mut spec = current.spec.clone();
    spec.variable_revisions = now;
    let reason = format!(
        "variable {} changed (restart_on_change)",
        changed.join(", ")
    );
    let object = next_generation(current, spec, index, Some(reason));
    txn.put(&service_key(name), &encode(&object));
    record_event(txn, index, EventKind::Put, "Service", name, &object)?;
    Ok(Applied::Service(Box::new(object)))
}

/// `current` with `spec` as its new generation: the old spec joins the history
/// (bounded), and the rollout to the new generation starts (a pause holds).
fn next_generation(
    current: ServiceObject,
    spec: orion_api::spec::ServiceSpec,
    index: u64,
    reason: Option<String>,
) -> ServiceObject {
    let mut history = current.history;
    history.push(orion_api::ServiceRevision {
        generation: current.generation,
        spec: current.spec,
        revision: current.mod_revision,
        stable: current.rollout.state == orion_api::RolloutState::Complete,
    });
    if history.len() > orion_api::MAX_SERVICE_HISTORY {
        let extra = history.len() - orion_api::MAX_SERVICE_HISTORY;
        history.drain(..extra);
    }
    ServiceObject {
        spec,
        create_revision: current.create_revision,
        mod_revision: index,
        generation: current.generation + 1,
        history,
        rollout: orion_api::Rollout {
            state: orion_api::RolloutState::Progressing,
            paused: current.rollout.paused,
            reason,
            rolled_back_from: None,
            // Surge slots already placed stay: the rollout to the new generation
            // rolls them like any replica, and closes them when it completes.
            surge: current.rollout.surge,
        },
        hooks: current.hooks,
    }
}

/// Node `name`'s key and record; a `NotFound` rejection when there is none.
fn existing_node(txn: &Txn<'_>, name: &str) -> Result<(Vec<u8>, NodeObject), Failure> {
    let key = node_key(name);
    match read_json::<NodeObject>(txn, &key)? {
        Some(node) => Ok((key, node)),
        None => Err(reject(
            ErrorCode::NotFound,
            format!("node {name:?} does not exist (`orion get nodes` lists them)"),
            None,
        )),
    }
}

fn upsert_node(txn: &mut Txn<'_>, index: u64, node: &NodeObject) -> Result<Applied, Failure> {
    validate_name(&node.name).map_err(|m| {
        reject(
            ErrorCode::InvalidArgument,
            format!("node {:?}: {m}", node.name),
            None,
        )
    })?;
    let stored = read_json::<NodeObject>(txn, &node_key(&node.name))?;
    let mut node = NodeObject {
        mod_revision: index,
        ..node.clone()
    };
    if let Some(stored) = stored {
        node.cordoned = stored.cordoned;
        node.draining = stored.draining;
        node.drain_deadline_unix_ms = stored.drain_deadline_unix_ms;
    }
    txn.put(&node_key(&node.name), &encode(&node));
    record_event(txn, index, EventKind::Put, "Node", &node.name, &node)?;
    Ok(Applied::Done)
}

fn reconcile_replicas(
    txn: &mut Txn<'_>,
    index: u64,
    place: &[ReplicaObject],
    remove: &[(String, u32)],
) -> Result<Applied, Failure> {
    for (service, ordinal) in remove {
        let key = replica_key(service, *ordinal);
        if let Some(replica) = read_json::<ReplicaObject>(txn, &key)? {
            txn.delete(&key);
            record_event(
                txn,
                index,
                EventKind::Delete,
                "Replica",
                &replica.id(),
                &replica,
            )?;
        }
    }
    for replica in place {
        let key = replica_key(&replica.service, replica.ordinal);
        if txn.get(&key)?.is_some() {
            continue;
        }
        let replica = ReplicaObject {
            create_revision: index,
            ..replica.clone()
        };
        put_replica(txn, index, &key, &replica)?;
    }
    Ok(Applied::Done)
}

fn apply_resource(
    txn: &mut Txn<'_>,
    index: u64,
    resource: &Resource,
) -> Result<ApplyResult, Failure> {
    match resource {
        Resource::Service(applied) => {
            let key = service_key(&applied.name);
            let current = read_json::<ServiceObject>(txn, &key)?;
            // The revisions of the variables it rolls on are the store's, never
            // the caller's.
            let mut stamped = applied.clone();
            let recorded = current
                .as_ref()
                .map(|c| c.spec.variable_revisions.clone())
                .unwrap_or_default();
            stamped.variable_revisions = variable_revisions(txn, applied, &recorded)?;
            let spec = &stamped;
            let (object, change) = match current {
                Some(cur) if cur.spec == *spec => (cur, Change::Unchanged),
                Some(cur) => (
                    next_generation(cur, spec.clone(), index, None),
                    Change::Configured,
                ),
                None => (
                    ServiceObject {
                        spec: spec.clone(),
                        create_revision: index,
                        mod_revision: index,
                        generation: 1,
                        history: Vec::new(),
                        rollout: orion_api::Rollout::default(),
                        hooks: Default::default(),
                    },
                    Change::Created,
                ),
            };
            if change != Change::Unchanged {
                txn.put(&key, &encode(&object));
                record_event(txn, index, EventKind::Put, "Service", &spec.name, &object)?;
            }
            Ok(ApplyResult {
                kind: resource.kind().to_string(),
                name: spec.name.clone(),
                change,
                mod_revision: object.mod_revision,
            })
        }
        Resource::Job(spec) => {
            let key = job_key(&spec.name);
            let current = read_json::<JobObject>(txn, &key)?;
            let (mut object, change) = match current {
                Some(cur) if cur.spec == *spec => (cur, Change::Unchanged),
                Some(mut cur) => {
                    cur.spec = spec.clone();
                    crate::jobs::trim_history(&mut cur);
                    (cur, Change::Configured)
                }
                None => (
                    JobObject {
                        spec: spec.clone(),
                        create_revision: index,
                        mod_revision: index,
                        last_scheduled: None,
                        next_run: 1,
                        runs: Vec::new(),
                        skipped: Vec::new(),
                    },
                    Change::Created,
                ),
            };
            if change != Change::Unchanged {
                put_job(txn, index, &key, &mut object)?;
            }
            Ok(ApplyResult {
                kind: resource.kind().to_string(),
                name: spec.name.clone(),
                change,
                mod_revision: object.mod_revision,
            })
        }
    }
}

/// A stored object. Bytes that do not decode are a broken store, not a rejection:
/// this apply wrote them, so a peer whose copy does not decode has a damaged disk.
fn read_json<T: serde::de::DeserializeOwned>(
    txn: &Txn<'_>,
    key: &[u8],
) -> Result<Option<T>, Failure> {
    match txn.get(key)? {
        None => Ok(None),
        Some(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|source| {
            Failure::Storage(orion_store::Error::Codec {
                what: "stored state-machine object",
                source,
            })
        }),
    }
}

fn check_expected(
    path: &str,
    current: Option<&Variable>,
    expected: Option<u64>,
) -> Result<(), Failure> {
    let Some(expected) = expected else {
        return Ok(());
    };
    let actual = current.map_or(0, |v| v.mod_revision);
    if actual == expected {
        return Ok(());
    }
    let message = match (current, expected) {
        (Some(_), 0) => format!("variable {path:?} already exists (mod_revision {actual})"),
        (None, _) => format!("variable {path:?} does not exist; expected mod_revision {expected}"),
        (Some(_), _) => {
            format!("variable {path:?} has mod_revision {actual}, not the expected {expected}")
        }
    };
    // The variable as it is now goes with the refusal, so the caller can retry the
    // compare-and-set without reading it again (a secret's value stays redacted).
    Err(Failure::Rejected(Rejection {
        code: ErrorCode::Conflict,
        message,
        current_revision: Some(actual),
        current_value: current.and_then(|v| serde_json::to_value(v.clone().redacted()).ok()),
    }))
}

fn encode<T: serde::Serialize>(value: &T) -> Vec<u8> {
    // Serializing these plain structs to JSON cannot fail.
    serde_json::to_vec(value).unwrap_or_default()
}

/// Records an event of the write at revision `index`: the next `seq` of that revision.
fn record_event<T: serde::Serialize>(
    txn: &mut Txn<'_>,
    index: u64,
    kind: EventKind,
    resource: &str,
    key: &str,
    object: &T,
) -> Result<(), Failure> {
    let mut log = read_json::<EventLog>(txn, EVENT_LOG_KEY)?.unwrap_or_default();
    let seq = match log.last {
        Some(last) if last.revision == index => last.seq.saturating_add(1).min(MAX_EVENT_SEQ),
        _ => 0,
    };
    let event = Event {
        revision: index,
        seq,
        kind,
        resource: resource.into(),
        key: key.into(),
        object: serde_json::to_value(object).unwrap_or_default(),
    };
    let cursor = event.cursor();
    txn.put(&event_key(cursor), &encode(&event));
    log.stored = log.stored.saturating_add(1);
    log.last = Some(cursor);
    txn.put(EVENT_LOG_KEY, &encode(&log));
    Ok(())
}

/// Drops the oldest events beyond [`EVENT_WINDOW`], after a command recorded its
/// events. One scan that starts after the newest dropped event, so it never walks
/// the tombstones earlier drops left behind.
fn compact_events(txn: &mut Txn<'_>) -> Result<(), Failure> {
    let Some(mut log) = read_json::<EventLog>(txn, EVENT_LOG_KEY)? else {
        return Ok(());
    };
    let Some(excess) = log.stored.checked_sub(EVENT_WINDOW).filter(|n| *n > 0) else {
        return Ok(());
    };
    let after = log.compacted.map(event_key);
    let limit = usize::try_from(excess).unwrap_or(usize::MAX);
    let oldest = txn.scan_prefix(EVENT_PREFIX, after.as_deref(), limit)?;
    for (key, _) in &oldest {
        txn.delete(key);
    }
    if let Some((key, _)) = oldest.last() {
        log.compacted = Some(event_cursor_of(key).ok_or_else(|| {
            Failure::Storage(orion_store::Error::CorruptKey {
                cf: "sm",
                detail: format!("event key of {} bytes", key.len()),
            })
        })?);
    }
    // Fewer found than the count says: every stored event was dropped.
    log.stored = if oldest.len() as u64 == excess {
        EVENT_WINDOW
    } else {
        0
    };
    txn.put(EVENT_LOG_KEY, &encode(&log));
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use orion_store::Applier as _;

    use super::*;

    fn put(path: &str) -> Command {
        Command::PutVariable {
            path: path.into(),
            value: "v".into(),
            expected_revision: None,
            secret: false,
        }
    }

    fn open(dir: &tempfile::TempDir) -> orion_store::Store<TypeConfig> {
        orion_store::open::<TypeConfig>(dir.path(), Arc::new(OrionApplier)).expect("open store")
    }

    /// A read that fails inside apply is a storage error for openraft, never a
    /// rejection that only this peer would record.
    #[test]
    fn a_failed_read_inside_apply_is_a_storage_error_not_a_rejection() {
        let dir = tempfile::tempdir().expect("dir");
        let store = open(&dir);
        let commands = [
            (VARIABLE_PREFIX, put("a")),
            (
                VARIABLE_PREFIX,
                Command::DeleteVariable {
                    path: "a".into(),
                    expected_revision: None,
                },
            ),
            (
                SERVICE_PREFIX,
                Command::DeleteService { name: "web".into() },
            ),
            (TOKEN_PREFIX, Command::RevokeToken { id: "t1".into() }),
            (
                REPLICA_PREFIX,
                Command::ReconcileReplicas {
                    place: vec![],
                    remove: vec![("web".into(), 0)],
                },
            ),
            // The event bookkeeping is read too.
            (EVENT_LOG_KEY, put("b")),
        ];
        for (failing, cmd) in commands {
            let result = store
                .sm
                .with_test_txn(Some(failing), |txn| {
                    OrionApplier.apply(txn, 7, &cmd.clone().into())
                })
                .expect("a test transaction");
            match result {
                Err(e) => assert!(e.to_string().contains("injected read failure"), "{e}"),
                Ok(r) => panic!("{cmd:?} with failing reads answered {r:?}"),
            }
        }
        // The same commands without the fault are answers, as on the other peers.
        let answered = store
            .sm
            .with_test_txn(None, |txn| OrionApplier.apply(txn, 7, &put("a").into()))
            .expect("a test transaction");
        assert!(matches!(answered, Ok(CommandResult { outcome: Ok(_), .. })));
    }

    /// A stored value this apply cannot decode means this peer's copy is damaged.
    #[test]
    fn an_unreadable_stored_object_is_a_storage_error_not_a_rejection() {
        let dir = tempfile::tempdir().expect("dir");
        let store = open(&dir);
        let result = store
            .sm
            .with_test_txn(None, |txn| {
                txn.put(&variable_key("a"), b"{not json");
                OrionApplier.apply(txn, 3, &put("a").into())
            })
            .expect("a test transaction");
        match result {
            Err(orion_store::Error::Codec { .. }) => {}
            other => panic!("a damaged stored object answered {other:?}"),
        }
    }

    #[test]
    fn event_keys_order_by_revision_then_seq_and_decode_back() {
        let c = |revision, seq| EventCursor { revision, seq };
        let mut cursors = vec![c(2, 0), c(1, 300), c(1, 2), c(256, 1), c(1, 0)];
        let mut keys: Vec<Vec<u8>> = cursors.iter().map(|x| event_key(*x)).collect();
        keys.sort();
        cursors.sort();
        let decoded: Vec<EventCursor> = keys.iter().filter_map(|k| event_cursor_of(k)).collect();
        assert_eq!(decoded, cursors);
        // The 8-byte keys of before `seq` read as seq 0; other shapes are refused.
        assert_eq!(
            event_cursor_of(&[EVENT_PREFIX, &5u64.to_be_bytes()].concat()),
            Some(c(5, 0))
        );
        assert_eq!(event_cursor_of(b"e/abc"), None);
        assert_eq!(event_cursor_of(b"v/abcdefgh"), None);
    }

    #[test]
    fn surge_slots_are_capped_by_max_surge_ignored_when_stale_and_kept_by_a_new_generation() {
        let dir = tempfile::tempdir().expect("dir");
        let store = open(&dir);
        let spec = |version: &str| {
            let text = format!(
                "kind: Service\nname: web\ncommand: [{version}]\nstrategy: {{max_surge: 2}}\n"
            );
            Command::ApplyResources {
                resources: orion_api::spec::parse_documents("t.yaml", &text).expect("spec"),
            }
        };
        let surge = |generation, surge| Command::SetSurge {
            service: "web".into(),
            generation,
            surge,
        };
        let steps = [
            spec("v1"),
            surge(1, 5),
            spec("v2"),
            surge(1, 0),
            surge(2, 0),
        ];
        let seen = store
            .sm
            .with_test_txn(None, |txn| {
                let mut seen = Vec::new();
                for (i, cmd) in steps.into_iter().enumerate() {
                    let r = OrionApplier.apply(txn, 2 + i as u64, &cmd.into())?;
                    assert!(r.outcome.is_ok(), "{r:?}");
                    let s = read_json::<ServiceObject>(txn, &service_key("web"))
                        .ok()
                        .flatten();
                    seen.push(s.map(|s| s.rollout.surge));
                }
                Ok::<_, orion_store::Error>(seen)
            })
            .expect("a test transaction")
            .expect("apply");
        // Capped at max_surge; kept by generation 2; a stale close is ignored.
        assert_eq!(seen, [Some(0), Some(2), Some(2), Some(2), Some(0)]);
    }
}
