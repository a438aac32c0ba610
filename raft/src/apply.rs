//! The deterministic apply function and the layout of the state machine's keys.
//!
//! Every peer applies the same entries in the same order through [`OrionApplier`] and
//! ends with the same bytes. Apply is total: a command that cannot be applied
//! becomes a [`Rejection`] returned to its proposer and changes nothing.
//!
//! Keys (all in the store's `sm` column family):
//! - `v/<path>`: a [`Variable`] as JSON.
//! - `e/<revision, 8 bytes big-endian>`: an [`Event`], kept for the last [`EVENT_WINDOW`] revisions.
//! - `m/compacted`: the highest revision whose events may have been dropped.
//! - `r/<id, 8 bytes big-endian>`: a retired member id, never to be reused.
//! - `s/<name>`: a [`ServiceObject`] as JSON.
//! - `c/ca`: the cluster CA (certificate and key, PEM) and token key as JSON.
//! - `t/<id>`: a [`TokenRecord`] as JSON.
//! - `n/<name>`: a [`NodeObject`] as JSON.
//! - `p/<service>/<ordinal, 4 bytes big-endian>`: a [`ReplicaObject`] as JSON.
//! - `d/…`, `o/…`, `m/sessions-compacted`: client sessions, see [`crate::session`].

use orion_api::security::TokenRecord;
use orion_api::spec::service::validate_name;
use orion_api::spec::Resource;
use orion_api::{
    validate_path, ApplyResult, Change, ErrorCode, Event, EventKind, NodeObject, ReplicaObject,
    ServiceObject, Variable,
};
use orion_store::{Applier, Txn};

use crate::command::{Applied, Command, CommandResult, Proposal, Rejection};
use crate::session;
use crate::types::TypeConfig;

/// How many revisions of change events are kept for watchers to resume from.
pub const EVENT_WINDOW: u64 = 10_000;

pub const VARIABLE_PREFIX: &[u8] = b"v/";
pub const EVENT_PREFIX: &[u8] = b"e/";
const COMPACTED_KEY: &[u8] = b"m/compacted";
const RETIRED_PREFIX: &[u8] = b"r/";
pub const SERVICE_PREFIX: &[u8] = b"s/";
pub const NODE_PREFIX: &[u8] = b"n/";
pub const CA_KEY: &[u8] = b"c/ca";
pub const TOKEN_PREFIX: &[u8] = b"t/";

pub fn token_key(id: &str) -> Vec<u8> {
    [TOKEN_PREFIX, id.as_bytes()].concat()
}
pub const REPLICA_PREFIX: &[u8] = b"p/";

pub fn variable_key(path: &str) -> Vec<u8> {
    [VARIABLE_PREFIX, path.as_bytes()].concat()
}

pub fn event_key(revision: u64) -> Vec<u8> {
    [EVENT_PREFIX, &revision.to_be_bytes()].concat()
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

pub fn compacted_key() -> &'static [u8] {
    COMPACTED_KEY
}

/// Decodes a big-endian `u64` as stored by this module; anything else reads as 0.
pub fn decode_u64(bytes: &[u8]) -> u64 {
    <[u8; 8]>::try_from(bytes)
        .map(u64::from_be_bytes)
        .unwrap_or(0)
}

/// Orion's [`Applier`]: stateless, all state lives in the transaction.
#[derive(Debug, Default)]
pub struct OrionApplier;

impl Applier<TypeConfig> for OrionApplier {
    fn apply(&self, txn: &mut Txn<'_>, index: u64, proposal: &Proposal) -> CommandResult {
        // Client sessions: a retried write returns what it produced the first time.
        if let Err(e) = session::evict(txn, index) {
            return storage_failure(index, &e);
        }
        let Some(id) = &proposal.request_id else {
            return self.apply_once(txn, index, &proposal.command);
        };
        match session::recorded(txn, id) {
            Ok(Some(original)) => return original,
            Ok(None) => {}
            Err(e) => return storage_failure(index, &e),
        }
        let result = self.apply_once(txn, index, &proposal.command);
        session::record(txn, index, id, &result);
        result
    }

    fn non_data_response(&self, index: u64) -> CommandResult {
        CommandResult {
            revision: index,
            outcome: Ok(Applied::Done),
        }
    }
}

/// A storage read failed before the command ran; the store fails the apply on it.
fn storage_failure(index: u64, e: &orion_store::Error) -> CommandResult {
    CommandResult {
        revision: index,
        outcome: Err(Rejection {
            code: ErrorCode::Internal,
            message: format!("storage error while applying: {e}"),
            current_revision: None,
        }),
    }
}

impl OrionApplier {
    fn apply_once(&self, txn: &mut Txn<'_>, index: u64, cmd: &Command) -> CommandResult {
        let outcome = match compact_events(txn, index).and_then(|()| apply_command(txn, index, cmd))
        {
            Ok(applied) => Ok(applied),
            Err(Failure::Rejected(r)) => Err(r),
            // A storage read failed inside apply. Reject deterministically on this peer;
            // the store itself reports broken storage on its own path.
            Err(Failure::Storage(e)) => Err(Rejection {
                code: ErrorCode::Internal,
                message: format!("storage error while applying: {e}"),
                current_revision: None,
            }),
        };
        CommandResult {
            revision: index,
            outcome,
        }
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
            validate_path(path).map_err(|m| reject(ErrorCode::InvalidArgument, m, None))?;
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
            record_event(txn, index, EventKind::Put, "Variable", path, &public);
            Ok(Applied::Put(variable))
        }
        Command::DeleteVariable {
            path,
            expected_revision,
        } => {
            validate_path(path).map_err(|m| reject(ErrorCode::InvalidArgument, m, None))?;
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
            );
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
            record_event(txn, index, EventKind::Delete, "Service", name, &service);
            Ok(Applied::DeletedService(Box::new(service)))
        }
        Command::UpsertNode { node } => upsert_node(txn, index, node),
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
    let node = NodeObject {
        mod_revision: index,
        ..node.clone()
    };
    txn.put(&node_key(&node.name), &encode(&node));
    record_event(txn, index, EventKind::Put, "Node", &node.name, &node);
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
            );
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
        txn.put(&key, &encode(&replica));
        record_event(
            txn,
            index,
            EventKind::Put,
            "Replica",
            &replica.id(),
            &replica,
        );
    }
    Ok(Applied::Done)
}

fn apply_resource(
    txn: &mut Txn<'_>,
    index: u64,
    resource: &Resource,
) -> Result<ApplyResult, Failure> {
    match resource {
        Resource::Service(spec) => {
            let key = service_key(&spec.name);
            let current = read_json::<ServiceObject>(txn, &key)?;
            let (object, change) = match current {
                Some(cur) if cur.spec == *spec => (cur, Change::Unchanged),
                Some(cur) => (
                    ServiceObject {
                        spec: spec.clone(),
                        create_revision: cur.create_revision,
                        mod_revision: index,
                        generation: cur.generation + 1,
                    },
                    Change::Configured,
                ),
                None => (
                    ServiceObject {
                        spec: spec.clone(),
                        create_revision: index,
                        mod_revision: index,
                        generation: 1,
                    },
                    Change::Created,
                ),
            };
            if change != Change::Unchanged {
                txn.put(&key, &encode(&object));
                record_event(txn, index, EventKind::Put, "Service", &spec.name, &object);
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

fn read_json<T: serde::de::DeserializeOwned>(
    txn: &Txn<'_>,
    key: &[u8],
) -> Result<Option<T>, Failure> {
    match txn.get(key)? {
        None => Ok(None),
        Some(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            reject(
                ErrorCode::Internal,
                format!("stored object is unreadable: {e}"),
                None,
            )
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
    Err(reject(ErrorCode::Conflict, message, Some(actual)))
}

fn encode<T: serde::Serialize>(value: &T) -> Vec<u8> {
    // Serializing these plain structs to JSON cannot fail.
    serde_json::to_vec(value).unwrap_or_default()
}

/// Records an event at revision `index`.
fn record_event<T: serde::Serialize>(
    txn: &mut Txn<'_>,
    index: u64,
    kind: EventKind,
    resource: &str,
    key: &str,
    object: &T,
) {
    let event = Event {
        revision: index,
        kind,
        resource: resource.into(),
        key: key.into(),
        object: serde_json::to_value(object).unwrap_or_default(),
    };
    txn.put(&event_key(index), &encode(&event));
}

/// Drops the events that have left the window at revision `index`. Point deletes of
/// the revisions that just left (usually one), never a scan: a scan from the head of
/// the event range would walk every tombstone left by earlier drops.
fn compact_events(txn: &mut Txn<'_>, index: u64) -> Result<(), Failure> {
    let floor = index.saturating_sub(EVENT_WINDOW);
    let compacted = txn.get(COMPACTED_KEY)?.map_or(0, |b| decode_u64(&b));
    if floor <= compacted {
        return Ok(());
    }
    // Blank and membership entries do not reach the applier, so the gap can be a few
    // revisions; it is bounded by the window in any case.
    for revision in (compacted + 1).max(floor.saturating_sub(EVENT_WINDOW))..=floor {
        txn.delete(&event_key(revision));
    }
    txn.put(COMPACTED_KEY, &floor.to_be_bytes());
    Ok(())
}
