//! Column families and the keys this crate owns inside them.
//!
//! | column family | keys | values |
//! |---|---|---|
//! | `log` | log index, 8-byte big-endian (so key order is index order) | JSON `Entry` |
//! | `meta` | `vote`, `committed`, `last_purged_log_id` | JSON |
//! | `sm` | owned by the [`Applier`](crate::Applier) | owned by the applier |
//! | `sm_meta` | `last_applied`, `last_membership` | JSON |

use crate::error::{Error, Result};

/// Raft log entries.
pub(crate) const CF_LOG: &str = "log";
/// Vote, committed log id and last purged log id.
pub(crate) const CF_META: &str = "meta";
/// State-machine data; keys belong to the applier.
pub(crate) const CF_SM: &str = "sm";
/// Last applied log id and last applied membership.
pub(crate) const CF_SM_META: &str = "sm_meta";

/// Every column family the store opens.
pub(crate) const ALL_CFS: [&str; 4] = [CF_LOG, CF_META, CF_SM, CF_SM_META];

/// `meta`: the last saved vote.
pub(crate) const VOTE: &[u8] = b"vote";
/// `meta`: the last saved committed log id.
pub(crate) const COMMITTED: &[u8] = b"committed";
/// `meta`: the id of the last purged log entry.
pub(crate) const LAST_PURGED: &[u8] = b"last_purged_log_id";

/// `sm_meta`: the id of the last applied log entry.
pub(crate) const LAST_APPLIED: &[u8] = b"last_applied";
/// `sm_meta`: the last applied membership config.
pub(crate) const LAST_MEMBERSHIP: &[u8] = b"last_membership";

/// The `log` key of the entry at `index`.
pub(crate) fn log_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

/// The index encoded in a `log` key.
pub(crate) fn log_index(key: &[u8]) -> Result<u64> {
    <[u8; 8]>::try_from(key)
        .map(u64::from_be_bytes)
        .map_err(|_| Error::CorruptKey {
            cf: CF_LOG,
            detail: format!("expected 8 bytes, found {}", key.len()),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_keys_sort_by_index() {
        let mut keys: Vec<[u8; 8]> = [300u64, 2, 1 << 40, 0, 255, 256].map(log_key).to_vec();
        keys.sort();
        let indexes: Vec<u64> = keys
            .iter()
            .map(|k| log_index(k).expect("8-byte key"))
            .collect();
        assert_eq!(indexes, vec![0, 2, 255, 256, 300, 1 << 40]);
    }

    #[test]
    fn short_log_key_is_corrupt() {
        assert!(matches!(log_index(b"abc"), Err(Error::CorruptKey { .. })));
    }
}
