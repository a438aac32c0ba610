//! Versions of the peer protocol, so peers of different releases can talk during a
//! rolling upgrade.
//!
//! Every call carries the version it is encoded in (`RaftPayload.protocol`). A
//! sender uses the *lowest* version that has the call: Raft's own RPCs
//! (AppendEntries, Vote, InstallSnapshot) are still version 1, so a newer peer
//! replicates to an older one unchanged; only `TimeoutNow` (leadership transfer) is
//! version 2. A receiver accepts [`MIN`]`..=`[`MAX`]; 0 is a peer from before
//! versions, which spoke 1. A version above `MAX` is answered with
//! `FAILED_PRECONDITION` naming both ranges, so an operator sees "upgrade this peer"
//! instead of a decoding error. An older peer without `TimeoutNow` answers it with
//! `UNIMPLEMENTED`, which the leader reports as "upgrade that peer first".
//!
//! Raising `MAX` is for a change an older peer cannot read; raising `MIN` drops
//! support for a release, and must be announced in the README's version policy.

/// The oldest peer protocol this build understands.
pub const MIN: u32 = 1;
/// The newest peer protocol this build understands (and speaks when it must).
pub const MAX: u32 = 2;
/// The version Raft's own RPCs are encoded in.
pub const RAFT_RPC: u32 = 1;
/// The version `TimeoutNow` was added in.
pub const TIMEOUT_NOW: u32 = 2;

/// The version a call says it is in, checked against what this build understands.
pub fn check(from: u64, sent: u32) -> Result<u32, String> {
    let version = if sent == 0 { 1 } else { sent };
    if version > MAX {
        return Err(format!(
            "peer {from} sent a call in peer protocol {version}, but this peer (orion {}) \
             understands versions {MIN} to {MAX}; upgrade this peer",
            env!("CARGO_PKG_VERSION")
        ));
    }
    if version < MIN {
        return Err(format!(
            "peer {from} sent a call in peer protocol {version}, but this peer (orion {}) \
             understands versions {MIN} to {MAX}; upgrade peer {from}",
            env!("CARGO_PKG_VERSION")
        ));
    }
    Ok(version)
}

/// The metadata key a refusal carries when the caller's id is retired: the
/// caller was removed from this cluster (or superseded by a forced new cluster)
/// and must stop (see [`crate::network::Removed`]).
pub const REMOVED_HEADER: &str = "orion-removed";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn older_and_current_versions_are_accepted() {
        assert_eq!(check(2, 0), Ok(1), "a peer from before versions speaks 1");
        assert_eq!(check(2, 1), Ok(1));
        assert_eq!(check(2, MAX), Ok(MAX));
    }

    #[test]
    fn a_newer_version_is_refused_naming_both() {
        let e = check(3, MAX + 1).expect_err("an error");
        assert!(
            e.contains(&format!("peer 3 sent a call in peer protocol {}", MAX + 1)),
            "{e}"
        );
        assert!(
            e.contains(&format!(
                "understands versions {MIN} to {MAX}; upgrade this peer"
            )),
            "{e}"
        );
    }
}
