//! Typed reads of the replicated state, through one consistent [`View`].

use orion_api::security::TokenRecord;
use orion_api::{
    Event, EventCursor, JobObject, NodeObject, ReplicaObject, ServiceObject, Variable, WatchStart,
};
use orion_store::View;

use crate::apply::{
    event_key, event_log_key, retired_key, service_key, variable_key, EventLog, CA_KEY,
    EVENT_PREFIX, NODE_PREFIX, REPLICA_PREFIX, SERVICE_PREFIX, VARIABLE_PREFIX,
};

pub type Result<T> = std::result::Result<T, ReadError>;

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("storage: {0}")]
    Store(#[from] orion_store::Error),
    #[error("stored record is unreadable: {0}")]
    Corrupt(String),
    /// Events after the requested position have left the window.
    #[error(
        "watch position {requested} is older than the event window (events up to {compacted} \
         were dropped); list again and watch from the list's revision"
    )]
    Compacted {
        requested: String,
        compacted: EventCursor,
    },
}

fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| ReadError::Corrupt(e.to_string()))
}

pub fn variable(view: &View<'_>, path: &str) -> Result<Option<Variable>> {
    view.get(&variable_key(path))?
        .map(|b| decode(&b))
        .transpose()
}

/// Variables whose path starts with `prefix`, after `start_after`, at most `limit`.
/// Returns the page and, when cut, the path to continue after.
pub fn variables(
    view: &View<'_>,
    prefix: &str,
    start_after: Option<&str>,
    limit: usize,
) -> Result<(Vec<Variable>, Option<String>)> {
    let key_prefix = [VARIABLE_PREFIX, prefix.as_bytes()].concat();
    let after = start_after.map(variable_key);
    let rows = view.scan_prefix(&key_prefix, after.as_deref(), limit.saturating_add(1))?;
    let mut items = rows
        .iter()
        .map(|(_, v)| decode::<Variable>(v))
        .collect::<Result<Vec<_>>>()?;
    let next = if items.len() > limit {
        items.truncate(limit);
        items.last().map(|v| v.path.clone())
    } else {
        None
    };
    Ok((items, next))
}

/// The event window's bookkeeping (empty before the first event).
pub fn event_log(view: &View<'_>) -> Result<EventLog> {
    Ok(view
        .get(event_log_key())?
        .map(|b| decode(&b))
        .transpose()?
        .unwrap_or_default())
}

/// The position just before the first event `start` asks for; `None`: the oldest.
fn start_after(start: WatchStart) -> Option<EventCursor> {
    match start {
        WatchStart::Revision(0) => None,
        WatchStart::Revision(r) => Some(EventCursor {
            revision: r - 1,
            seq: u32::MAX,
        }),
        WatchStart::After(cursor) => Some(cursor),
    }
}

/// The events `start` asks for, oldest first, at most `limit`. `Compacted` when
/// some of them have left the window (`Revision(0)` means "whatever is left" and is
/// never refused).
pub fn events(view: &View<'_>, start: WatchStart, limit: usize) -> Result<Vec<Event>> {
    let after = start_after(start);
    if let (Some(after), Some(compacted)) = (after, event_log(view)?.compacted) {
        if compacted > after {
            return Err(ReadError::Compacted {
                requested: match start {
                    WatchStart::Revision(r) => r.to_string(),
                    WatchStart::After(c) => c.to_string(),
                },
                compacted,
            });
        }
    }
    let after = after.map(event_key);
    view.scan_prefix(EVENT_PREFIX, after.as_deref(), limit)?
        .iter()
        .map(|(_, v)| decode(v))
        .collect()
}

pub fn is_retired(view: &View<'_>, id: u64) -> Result<bool> {
    Ok(view.get(&retired_key(id))?.is_some())
}

pub fn service(view: &View<'_>, name: &str) -> Result<Option<ServiceObject>> {
    view.get(&service_key(name))?
        .map(|b| decode(&b))
        .transpose()
}

/// Every service, by name.
pub fn services(view: &View<'_>) -> Result<Vec<ServiceObject>> {
    all(view, SERVICE_PREFIX)
}

fn all<T: serde::de::DeserializeOwned>(view: &View<'_>, prefix: &[u8]) -> Result<Vec<T>> {
    view.scan_prefix(prefix, None, usize::MAX)?
        .iter()
        .map(|(_, v)| decode(v))
        .collect()
}

/// Every node, by name.
pub fn nodes(view: &View<'_>) -> Result<Vec<NodeObject>> {
    all(view, NODE_PREFIX)
}

/// Every replica, by service then ordinal.
pub fn replicas(view: &View<'_>) -> Result<Vec<ReplicaObject>> {
    all(view, REPLICA_PREFIX)
}

/// The cluster's CA and token key, once recorded.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct ClusterSecrets {
    pub cert_pem: String,
    pub key_pem: String,
    pub token_key: String,
}

pub fn cluster_ca(view: &View<'_>) -> Result<Option<ClusterSecrets>> {
    view.get(CA_KEY)?.map(|b| decode(&b)).transpose()
}

/// A token's record, if it was ever minted.
pub fn token(view: &View<'_>, id: &str) -> Result<Option<TokenRecord>> {
    view.get(&crate::apply::token_key(id))?
        .map(|b| decode(&b))
        .transpose()
}

/// Every token record.
pub fn tokens(view: &View<'_>) -> Result<Vec<TokenRecord>> {
    all(view, crate::apply::TOKEN_PREFIX)
}

/// A job, with its runs.
pub fn job(view: &View<'_>, name: &str) -> Result<Option<JobObject>> {
    view.get(&crate::apply::job_key(name))?
        .map(|b| decode(&b))
        .transpose()
}

/// Every job, by name.
pub fn jobs(view: &View<'_>) -> Result<Vec<JobObject>> {
    all(view, crate::apply::JOB_PREFIX)
}
