//! Shared fixture: a small key-value type config and applier, and helpers.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::Cursor;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use openraft::{BasicNode, CommittedLeaderId, Entry, EntryPayload, LogId, Membership};
use orion_store::{Applier, Store, Txn};
use serde::{Deserialize, Serialize};

/// A command of the test key-value machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Cmd {
    Set {
        key: Vec<u8>,
        value: Vec<u8>,
    },
    Delete {
        key: Vec<u8>,
    },
    /// Read a little-endian u64 counter (0 if absent), add one, write it back.
    Incr {
        key: Vec<u8>,
    },
    /// Count keys under a prefix, as the transaction sees them.
    Count {
        prefix: Vec<u8>,
    },
    /// Write `key`, then report a broken store, as an applier does on a read error.
    SetThenFailStorage {
        key: Vec<u8>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Resp {
    Done { index: u64 },
    Counter(u64),
    Count(usize),
    Failed(String),
}

openraft::declare_raft_types!(
    pub TestConfig:
        D = Cmd,
        R = Resp,
);

pub struct KvApplier;

impl Applier<TestConfig> for KvApplier {
    fn apply(&self, txn: &mut Txn<'_>, index: u64, cmd: &Cmd) -> orion_store::Result<Resp> {
        Ok(match cmd {
            Cmd::Set { key, value } => {
                txn.put(key, value);
                Resp::Done { index }
            }
            Cmd::Delete { key } => {
                txn.delete(key);
                Resp::Done { index }
            }
            Cmd::Incr { key } => {
                let current = match txn.get(key)? {
                    Some(bytes) => match <[u8; 8]>::try_from(bytes.as_slice()) {
                        Ok(b) => u64::from_le_bytes(b),
                        Err(_) => return Ok(Resp::Failed("not a counter".into())),
                    },
                    None => 0,
                };
                txn.put(key, &(current + 1).to_le_bytes());
                Resp::Counter(current + 1)
            }
            Cmd::Count { prefix } => Resp::Count(txn.scan_prefix(prefix, None, usize::MAX)?.len()),
            Cmd::SetThenFailStorage { key } => {
                txn.put(key, b"half-applied");
                return Err(orion_store::Error::ApplyRead("the disk went away".into()));
            }
        })
    }

    fn non_data_response(&self, index: u64) -> Resp {
        Resp::Done { index }
    }
}

pub fn open(dir: &Path) -> anyhow::Result<Store<TestConfig>> {
    Ok(orion_store::open(dir, Arc::new(KvApplier))?)
}

pub fn log_id(term: u64, index: u64) -> LogId<u64> {
    LogId::new(CommittedLeaderId::new(term, 1), index)
}

pub fn blank(term: u64, index: u64) -> Entry<TestConfig> {
    Entry {
        log_id: log_id(term, index),
        payload: EntryPayload::Blank,
    }
}

pub fn normal(term: u64, index: u64, cmd: Cmd) -> Entry<TestConfig> {
    Entry {
        log_id: log_id(term, index),
        payload: EntryPayload::Normal(cmd),
    }
}

pub fn membership(term: u64, index: u64, voters: &[u64]) -> Entry<TestConfig> {
    let voters: BTreeSet<u64> = voters.iter().copied().collect();
    let nodes: BTreeMap<u64, BasicNode> = voters
        .iter()
        .map(|id| (*id, BasicNode::new(format!("127.0.0.1:{}", 7000 + id))))
        .collect();
    Entry {
        log_id: log_id(term, index),
        payload: EntryPayload::Membership(Membership::new(vec![voters], nodes)),
    }
}

pub fn set(key: &str, value: &[u8]) -> Cmd {
    Cmd::Set {
        key: key.as_bytes().to_vec(),
        value: value.to_vec(),
    }
}

/// How long a test waits for a condition before failing.
pub const DEADLINE: Duration = Duration::from_secs(30);
