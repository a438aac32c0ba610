//! Client sessions (Raft dissertation §6.3): the state machine remembers the result
//! of every write that carried a request id, so a retry of it — from a forwarding
//! peer after the leader died, or from the CLI after a lost answer — returns that
//! result instead of applying a second time.
//!
//! Kept in the state machine's keys, so the table survives restarts and travels in
//! snapshots like every other key:
//! - `d/<request id>`: the [`CommandResult`] the write produced, as JSON (its
//!   revision, and success or the rejection).
//! - `o/<revision, 8 bytes big-endian>`: the request ids recorded at that revision,
//!   separated by `\n` (a request id is visible ASCII, so never holds one; a batch
//!   entry records several), so eviction finds them without a scan.
//! - `m/sessions-compacted`: the highest revision whose record may have been dropped.
//!
//! Bound: a record lives for [`SESSION_WINDOW`] revisions (log indexes), so at most
//! that many entries' records are kept: one per entry, or up to
//! [`MAX_BATCH_WRITES`](crate::write_batch::MAX_BATCH_WRITES) for a batch entry. Eviction happens in apply, by revision, so every peer keeps
//! exactly the same records. A retry that arrives after its record left the window
//! applies again; retries come within seconds, the window is thousands of writes.
//! Each record is at most a request id ([`MAX_REQUEST_ID_LEN`] bytes) and one
//! result, which is no larger than the write's own command.
//!
//! [`MAX_REQUEST_ID_LEN`]: crate::command::MAX_REQUEST_ID_LEN

use orion_store::Txn;

use crate::command::{CommandResult, RequestId};

/// How many revisions a request id is remembered for.
pub const SESSION_WINDOW: u64 = 10_000;

pub const SESSION_PREFIX: &[u8] = b"d/";
pub const SESSION_ORDER_PREFIX: &[u8] = b"o/";
const COMPACTED_KEY: &[u8] = b"m/sessions-compacted";

pub fn session_key(id: &RequestId) -> Vec<u8> {
    [SESSION_PREFIX, id.as_str().as_bytes()].concat()
}

pub fn order_key(revision: u64) -> Vec<u8> {
    [SESSION_ORDER_PREFIX, &revision.to_be_bytes()].concat()
}

/// The result recorded for `id`, if it is still in the window.
pub fn recorded(
    txn: &Txn<'_>,
    id: &RequestId,
) -> Result<Option<CommandResult>, orion_store::Error> {
    // A record this code wrote always decodes; one that does not is a broken store,
    // fatal like any other storage failure inside apply.
    txn.get(&session_key(id))?
        .map(|bytes| {
            serde_json::from_slice(&bytes).map_err(|source| orion_store::Error::Codec {
                what: "client session record",
                source,
            })
        })
        .transpose()
}

/// Remembers that `id` produced `result` at revision `index`.
pub fn record(
    txn: &mut Txn<'_>,
    index: u64,
    id: &RequestId,
    result: &CommandResult,
) -> Result<(), orion_store::Error> {
    // Serializing this plain struct to JSON cannot fail.
    let bytes = serde_json::to_vec(result).unwrap_or_default();
    txn.put(&session_key(id), &bytes);
    let order = order_key(index);
    let ids = match txn.get(&order)? {
        // Another write of the same batch entry.
        Some(mut ids) => {
            ids.push(ID_SEPARATOR);
            ids.extend_from_slice(id.as_str().as_bytes());
            ids
        }
        None => id.as_str().as_bytes().to_vec(),
    };
    txn.put(&order, &ids);
    Ok(())
}

/// Separates the request ids recorded at one revision.
const ID_SEPARATOR: u8 = b'\n';

/// Forgets the records that have left the window at revision `index`: point reads
/// of the revisions that just left (usually one), never a scan.
pub fn evict(txn: &mut Txn<'_>, index: u64) -> Result<(), orion_store::Error> {
    let floor = index.saturating_sub(SESSION_WINDOW);
    let compacted = match txn.get(COMPACTED_KEY)? {
        None => 0,
        Some(bytes) => decode_revision(&bytes)?,
    };
    if floor <= compacted {
        return Ok(());
    }
    // Blank and membership entries do not reach the applier, so the gap can be a
    // few revisions; it is bounded by the window in any case.
    for revision in (compacted + 1).max(floor.saturating_sub(SESSION_WINDOW))..=floor {
        let key = order_key(revision);
        if let Some(ids) = txn.get(&key)? {
            for id in ids.split(|b| *b == ID_SEPARATOR) {
                txn.delete(&[SESSION_PREFIX, id].concat());
            }
            txn.delete(&key);
        }
    }
    txn.put(COMPACTED_KEY, &floor.to_be_bytes());
    Ok(())
}

/// A revision stored as 8 bytes big-endian; anything else is a broken store.
fn decode_revision(bytes: &[u8]) -> Result<u64, orion_store::Error> {
    <[u8; 8]>::try_from(bytes)
        .map(u64::from_be_bytes)
        .map_err(|_| orion_store::Error::CorruptKey {
            cf: "sm",
            detail: format!("session watermark of {} bytes", bytes.len()),
        })
}
