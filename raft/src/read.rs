//! Typed reads of the replicated state, through one consistent [`View`].

use orion_api::security::TokenRecord;
use orion_api::{Event, NodeObject, ReplicaObject, ServiceObject, Variable};
use orion_store::View;

use crate::apply::{
    compacted_key, decode_u64, event_key, retired_key, service_key, variable_key, CA_KEY,
    EVENT_PREFIX, NODE_PREFIX, REPLICA_PREFIX, SERVICE_PREFIX, VARIABLE_PREFIX,
};

pub type Result<T> = std::result::Result<T, ReadError>;

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("storage: {0}")]
    Store(#[from] orion_store::Error),
    #[error("stored record is unreadable: {0}")]
    Corrupt(String),
    /// Events before `oldest` have left the window.
    #[error("revision {requested} is compacted; the oldest revision still watchable is {oldest}")]
    Compacted { requested: u64, oldest: u64 },
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

/// Events with `revision >= from`, oldest first, at most `limit`.
pub fn events_since(view: &View<'_>, from: u64, limit: usize) -> Result<Vec<Event>> {
    let compacted = view.get(compacted_key())?.map_or(0, |b| decode_u64(&b));
    if from <= compacted && from != 0 {
        return Err(ReadError::Compacted {
            requested: from,
            oldest: compacted + 1,
        });
    }
    let start_after = from.checked_sub(1).map(event_key);
    view.scan_prefix(EVENT_PREFIX, start_after.as_deref(), limit)?
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
