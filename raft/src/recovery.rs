//! Disaster recovery, done offline on a stopped peer's storage before Raft starts:
//! seeding a new one-peer cluster from a backup ([`restore`]), and turning a
//! surviving peer of a cluster that lost its majority for good into a one-peer
//! cluster ([`force_new_cluster`]).
//!
//! **Restore.** The backup is a snapshot of the state machine at a log id (its
//! revision is the index). The new store holds exactly those pairs (the CA and the
//! tokens unless the caller replaces them), marked as applied up to that log id,
//! with the log purged up to it: the first entry the new cluster writes is the
//! next index, so revisions carry on from the backup's. Its membership is the new
//! peer alone, recorded at the backup's log id; the vote is for the new peer one
//! term above the backup's, not committed, so the peer elects itself on start at
//! a term above every entry it holds. Retired ids (`r/`), client sessions (`d/`, `o/`) and the watch window
//! are kept: a retried write still gets its first answer and a watcher's cursor
//! is still valid, since the revisions are the same.
//!
//! **Force a new cluster.** openraft 0.9 cannot change the membership without a
//! quorum, so the change is written into the log directly: one membership entry
//! after the last one, of the peer alone, at a term above every term seen (its
//! own vote's and its log's), and a vote for it at that term. On start openraft
//! takes the last membership entry of the log as the effective one, so the peer
//! is the only voter, elects itself and commits that entry, and with it every
//! entry of its log, acknowledged or not. Writes the old majority acknowledged
//! that never reached this peer are lost.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use openraft::storage::{RaftLogStorage, RaftStateMachine};
use openraft::{
    CommittedLeaderId, Entry, EntryPayload, LogId, Membership, RaftLogReader, StoredMembership,
    Vote,
};
pub use orion_store::backup::BackupInfo;
use orion_store::backup::{self, Seeder};
use tracing::warn;

use crate::apply::{retired_key, OrionApplier, CA_KEY, TOKEN_PREFIX};
use crate::types::{Member, NodeId, TypeConfig};

/// Why a recovery step refused or failed. Nothing was changed.
#[derive(Debug, thiserror::Error)]
pub enum RecoveryError {
    #[error("storage: {0}")]
    Store(#[from] orion_store::Error),
    #[error("raft storage: {0}")]
    Raft(Box<openraft::StorageError<NodeId>>),
    #[error("syncing the log: {0}")]
    Sync(std::io::Error),
    #[error("the backup holds no state (it was taken before anything was applied)")]
    EmptyBackup,
    #[error("member id {id} was retired in the backed-up cluster (ids are never reused): restore with another --id")]
    RetiredId { id: NodeId },
    #[error("{0} holds no Raft log: there is nothing to force a new cluster from")]
    NoLog(String),
    #[error("{0}")]
    Refused(String),
}

impl From<openraft::StorageError<NodeId>> for RecoveryError {
    fn from(e: openraft::StorageError<NodeId>) -> Self {
        RecoveryError::Raft(Box::new(e))
    }
}

type Result<T, E = RecoveryError> = std::result::Result<T, E>;

/// A fresh CA and token key to restore with (`--new-ca`), in the shape of `c/ca`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct NewCa {
    pub cert_pem: String,
    pub key_pem: String,
    pub token_key: String,
}

/// What a restore wrote.
#[derive(Debug)]
pub struct Restored {
    pub info: BackupInfo<Member>,
    /// Pairs written to the new state machine.
    pub pairs: u64,
    /// The CA and token key kept from the backup, if `--new-ca` was not given.
    pub ca: Option<crate::read::ClusterSecrets>,
}

/// Checks the backup at `file` and returns what it holds.
pub fn inspect(file: &Path) -> Result<BackupInfo<Member>> {
    Ok(backup::verify_file::<Member>(file)?)
}

/// Seeds a new store in `store_dir` (which must hold none) from the backup at
/// `file`: a one-peer cluster of `id` at `member`. With `new_ca`, the backup's CA
/// and token key are replaced and its token records dropped (they could never be
/// verified again).
pub fn restore(
    file: &Path,
    store_dir: &Path,
    id: NodeId,
    member: Member,
    new_ca: Option<&NewCa>,
) -> Result<Restored> {
    let info = inspect(file)?;
    let last = info.meta.last_log_id.ok_or(RecoveryError::EmptyBackup)?;
    let retired = retired_key(id);
    let mut seeder = Seeder::create(store_dir)?;
    let mut ca = None;
    let mut is_retired = false;
    backup::read_pairs(file, &info, |key, value| {
        if key == retired.as_slice() {
            is_retired = true;
        }
        if key == CA_KEY {
            if new_ca.is_some() {
                return Ok(());
            }
            ca = serde_json::from_slice(value).ok();
        }
        if new_ca.is_some() && key.starts_with(TOKEN_PREFIX) {
            return Ok(());
        }
        seeder.put(key, value)
    })?;
    if is_retired {
        return Err(RecoveryError::RetiredId { id });
    }
    if let Some(new) = new_ca {
        let json = serde_json::to_vec(new).map_err(|e| {
            orion_store::Error::CorruptSnapshot(format!("cannot encode the new CA: {e}"))
        })?;
        seeder.put(CA_KEY, &json)?;
    }
    let pairs = seeder.pairs();
    let membership = Membership::new(vec![BTreeSet::from([id])], BTreeMap::from([(id, member)]));
    seeder.finish(
        last,
        StoredMembership::new(Some(last), membership),
        Vote::new(last.leader_id.term + 1, id),
    )?;
    Ok(Restored { info, pairs, ca })
}

/// What [`force_new_cluster`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Forced {
    /// The membership was rewritten to this peer alone at `index`, `term`;
    /// `removed` are the members it had.
    Rewritten {
        removed: Vec<NodeId>,
        term: u64,
        index: u64,
    },
    /// This peer was already the only member: nothing was changed.
    AlreadyAlone,
}

/// Rewrites the membership in the store at `store_dir` to peer `id` alone (see
/// the module docs). With `refuse_if_others`, a membership with other members is
/// refused instead (this peer forced a new cluster before and peers joined since).
pub async fn force_new_cluster(
    store_dir: &Path,
    id: NodeId,
    member: Member,
    refuse_if_others: Option<&str>,
) -> Result<Forced> {
    let store = orion_store::open::<TypeConfig>(store_dir, Arc::new(OrionApplier))?;
    let mut log = store.log;
    let mut sm = store.sm;
    let state = log.get_log_state().await?;
    let Some(last) = state.last_log_id else {
        return Err(RecoveryError::NoLog(store_dir.display().to_string()));
    };
    let vote = log.read_vote().await?.unwrap_or_default();
    // The effective membership: the last membership entry of the log, else the
    // state machine's.
    let (applied, mut membership) = sm.applied_state().await?;
    let mut from = applied.map_or(0, |a| a.index + 1).max(
        state
            .last_purged_log_id
            .map_or(0, |p| p.index.saturating_add(1)),
    );
    while from <= last.index {
        let to = from.saturating_add(256).min(last.index.saturating_add(1));
        for entry in log.try_get_log_entries(from..to).await? {
            if let EntryPayload::Membership(m) = entry.payload {
                membership = StoredMembership::new(Some(entry.log_id), m);
            }
        }
        from = to;
    }
    let others: Vec<NodeId> = membership
        .membership()
        .nodes()
        .map(|(n, _)| *n)
        .filter(|n| *n != id)
        .collect();
    let voters: Vec<NodeId> = membership.membership().voter_ids().collect();
    if others.is_empty() && voters == [id] {
        return Ok(Forced::AlreadyAlone);
    }
    if let Some(why) = refuse_if_others {
        return Err(RecoveryError::Refused(why.to_string()));
    }
    let term = vote.leader_id.term.max(last.leader_id.term) + 1;
    let log_id = LogId::new(CommittedLeaderId::new(term, id), last.index + 1);
    let alone = Membership::new(vec![BTreeSet::from([id])], BTreeMap::from([(id, member)]));
    let entry = Entry::<TypeConfig> {
        log_id,
        payload: EntryPayload::Membership(alone),
    };
    let (tx, rx) = tokio::sync::oneshot::channel();
    log.append_entries([entry], move |synced| {
        let _ = tx.send(synced);
    })?;
    match rx.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(RecoveryError::Sync(e)),
        Err(_) => return Err(orion_store::Error::GroupCommitStopped.into()),
    }
    log.save_vote(&Vote::new(term, id)).await?;
    warn!(
        id,
        term,
        index = log_id.index,
        removed = ?others,
        "forced a new cluster: the membership is now this peer alone"
    );
    Ok(Forced::Rewritten {
        removed: others,
        term,
        index: log_id.index,
    })
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use openraft::RaftLogReader;

    use super::*;

    fn member(port: u16) -> Member {
        Member {
            api_addr: format!("127.0.0.1:{port}"),
            peer_addr: format!("127.0.0.1:{}", port + 1),
            agent_addr: String::new(),
        }
    }

    fn at(term: u64, index: u64) -> LogId<NodeId> {
        LogId::new(CommittedLeaderId::new(term, 1), index)
    }

    /// A store of a three-peer cluster applied up to index 40 at term 3, holding
    /// `pairs`, in `dir/src`.
    fn seeded(dir: &Path, pairs: &[(Vec<u8>, Vec<u8>)]) -> PathBuf {
        let src = dir.join("src");
        let mut seeder = Seeder::create(&src).expect("seeder");
        for (k, v) in pairs {
            seeder.put(k, v).expect("put");
        }
        let three = Membership::new(
            vec![BTreeSet::from([1, 2, 3])],
            BTreeMap::from([(1, member(10)), (2, member(20)), (3, member(30))]),
        );
        seeder
            .finish(
                at(3, 40),
                StoredMembership::new(Some(at(3, 40)), three),
                Vote::new(3, 1),
            )
            .expect("finish")
    }

    /// A backup file of the store in `src`.
    fn backup_of(src: &Path, file: &Path) {
        let store = orion_store::open::<TypeConfig>(src, Arc::new(OrionApplier)).expect("open");
        let mut bytes = Vec::new();
        backup::export::<Member>(&store.reader, 1 << 10, |p| {
            bytes.extend(p);
            true
        })
        .expect("export")
        .expect("whole");
        std::fs::write(file, bytes).expect("write backup");
    }

    fn ca_json() -> Vec<u8> {
        br#"{"cert_pem":"C","key_pem":"K","token_key":"T"}"#.to_vec()
    }

    #[test]
    fn restore_keeps_the_state_refuses_a_retired_id_and_replaces_the_ca_when_asked() {
        let dir = tempfile::tempdir().expect("temp dir");
        let pairs = vec![
            (b"v/a".to_vec(), b"{}".to_vec()),
            (retired_key(2), 7u64.to_be_bytes().to_vec()),
            (CA_KEY.to_vec(), ca_json()),
            (crate::apply::token_key("t1"), b"{}".to_vec()),
        ];
        let src = seeded(dir.path(), &pairs);
        let file = dir.path().join("backup.snap");
        backup_of(&src, &file);

        let refused = restore(&file, &dir.path().join("two"), 2, member(50), None);
        assert!(
            matches!(refused, Err(RecoveryError::RetiredId { id: 2 })),
            "{refused:?}"
        );

        let kept = restore(&file, &dir.path().join("one"), 1, member(50), None).expect("restore");
        assert_eq!(kept.info.revision(), 40);
        assert_eq!(kept.pairs, 4);
        assert_eq!(kept.ca.map(|c| c.token_key), Some("T".to_string()));

        let new = NewCa {
            cert_pem: "C2".into(),
            key_pem: "K2".into(),
            token_key: "T2".into(),
        };
        let fresh =
            restore(&file, &dir.path().join("new"), 1, member(50), Some(&new)).expect("restore");
        assert!(fresh.ca.is_none());
        // The token record is dropped; the CA is the new one.
        assert_eq!(fresh.pairs, 3);
        let store =
            orion_store::open::<TypeConfig>(&dir.path().join("new"), Arc::new(OrionApplier))
                .expect("open");
        let ca = store
            .reader
            .with_view(crate::read::cluster_ca)
            .expect("read")
            .expect("a CA");
        assert_eq!(ca.token_key, "T2");
    }

    #[tokio::test]
    async fn forcing_a_new_cluster_appends_a_membership_of_this_peer_alone_once() {
        let dir = tempfile::tempdir().expect("temp dir");
        let src = seeded(dir.path(), &[(b"v/a".to_vec(), b"{}".to_vec())]);
        let refused = force_new_cluster(&src, 1, member(10), Some("peers joined")).await;
        assert!(
            matches!(refused, Err(RecoveryError::Refused(_))),
            "{refused:?}"
        );

        let forced = force_new_cluster(&src, 1, member(10), None)
            .await
            .expect("force");
        assert_eq!(
            forced,
            Forced::Rewritten {
                removed: vec![2, 3],
                term: 4,
                index: 41
            }
        );
        let again = force_new_cluster(&src, 1, member(10), Some("peers joined"))
            .await
            .expect("again");
        assert_eq!(again, Forced::AlreadyAlone);

        let store = orion_store::open::<TypeConfig>(&src, Arc::new(OrionApplier)).expect("open");
        let mut log = store.log;
        let entries = log.try_get_log_entries(41..42).await.expect("entries");
        let EntryPayload::Membership(m) = &entries[0].payload else {
            panic!("not a membership entry: {:?}", entries[0]);
        };
        assert_eq!(m.voter_ids().collect::<Vec<_>>(), vec![1]);
        assert_eq!(log.read_vote().await.expect("vote"), Some(Vote::new(4, 1)));
    }
}
