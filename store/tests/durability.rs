//! What is acknowledged or returned survives closing and reopening the store.

mod common;

use common::{blank, log_id, membership, normal, open, set, Cmd, Resp};
use openraft::storage::{RaftLogStorage, RaftLogStorageExt, RaftStateMachine};
use openraft::{LogState, RaftLogReader, Vote};

#[tokio::test]
async fn log_vote_committed_and_applied_state_survive_reopen() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let entries = vec![
        blank(1, 1),
        membership(1, 2, &[1, 2, 3]),
        normal(1, 3, set("a", b"1")),
        normal(2, 4, set("b", b"2")),
        normal(2, 5, Cmd::Incr { key: b"n".to_vec() }),
    ];
    {
        let mut store = open(dir.path())?;
        store.log.blocking_append(entries.clone()).await?;
        store.log.save_vote(&Vote::new_committed(2, 3)).await?;
        store.log.save_committed(Some(log_id(2, 5))).await?;
        let responses = store.sm.apply(entries.clone()).await?;
        assert_eq!(responses[4], Resp::Counter(1));
    }

    let mut store = open(dir.path())?;
    let read = store.log.try_get_log_entries(..).await?;
    assert_eq!(read, entries, "log entries after reopen");
    assert_eq!(
        store.log.read_vote().await?,
        Some(Vote::new_committed(2, 3))
    );
    assert_eq!(store.log.read_committed().await?, Some(log_id(2, 5)));
    assert_eq!(
        store.log.get_log_state().await?,
        LogState {
            last_purged_log_id: None,
            last_log_id: Some(log_id(2, 5)),
        }
    );

    let (applied, stored_membership) = store.sm.applied_state().await?;
    assert_eq!(applied, Some(log_id(2, 5)));
    assert_eq!(stored_membership.log_id(), &Some(log_id(1, 2)));
    assert_eq!(
        stored_membership
            .membership()
            .voter_ids()
            .collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    store.reader.with_view(|view| -> anyhow::Result<()> {
        assert_eq!(view.get(b"a")?, Some(b"1".to_vec()));
        assert_eq!(view.get(b"b")?, Some(b"2".to_vec()));
        assert_eq!(view.get(b"n")?, Some(1u64.to_le_bytes().to_vec()));
        assert_eq!(view.last_applied_index()?, 5);
        Ok(())
    })?;
    Ok(())
}

#[tokio::test]
async fn purge_is_remembered_across_reopen() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    {
        let mut store = open(dir.path())?;
        store
            .log
            .blocking_append((1..=10).map(|i| blank(1, i)))
            .await?;
        store.log.purge(log_id(1, 6)).await?;
    }
    let mut store = open(dir.path())?;
    assert_eq!(
        store.log.get_log_state().await?,
        LogState {
            last_purged_log_id: Some(log_id(1, 6)),
            last_log_id: Some(log_id(1, 10)),
        }
    );
    let left: Vec<u64> = store
        .log
        .try_get_log_entries(..)
        .await?
        .iter()
        .map(|e| e.log_id.index)
        .collect();
    assert_eq!(left, vec![7, 8, 9, 10]);

    // Purging everything leaves the purged id as the last log id.
    store.log.purge(log_id(1, 10)).await?;
    drop(store);
    let mut store = open(dir.path())?;
    assert_eq!(
        store.log.get_log_state().await?,
        LogState {
            last_purged_log_id: Some(log_id(1, 10)),
            last_log_id: Some(log_id(1, 10)),
        }
    );
    Ok(())
}

#[tokio::test]
async fn truncate_deletes_from_index_and_survives_reopen() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    {
        let mut store = open(dir.path())?;
        store
            .log
            .blocking_append((1..=10).map(|i| blank(1, i)))
            .await?;
        store.log.truncate(log_id(1, 4)).await?;
        store
            .log
            .blocking_append([blank(2, 4), blank(2, 5)])
            .await?;
    }
    let mut store = open(dir.path())?;
    let ids: Vec<_> = store
        .log
        .try_get_log_entries(..)
        .await?
        .iter()
        .map(|e| e.log_id)
        .collect();
    let expected = vec![
        log_id(1, 1),
        log_id(1, 2),
        log_id(1, 3),
        log_id(2, 4),
        log_id(2, 5),
    ];
    assert_eq!(ids, expected);
    Ok(())
}

#[tokio::test]
async fn an_applier_storage_error_fails_the_whole_apply_and_writes_nothing() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut store = open(dir.path())?;
    store.sm.apply(vec![normal(1, 1, set("a", b"1"))]).await?;
    let failed = store
        .sm
        .apply(vec![
            normal(1, 2, set("b", b"2")),
            normal(1, 3, Cmd::SetThenFailStorage { key: b"c".to_vec() }),
        ])
        .await;
    let err = failed.expect_err("a storage error inside apply must fail the apply");
    assert!(err.to_string().contains("the disk went away"), "{err}");
    // Nothing of the batch was written, not even the entry before the failure.
    let (applied, _) = store.sm.applied_state().await?;
    assert_eq!(applied, Some(log_id(1, 1)));
    store.reader.with_view(|view| -> anyhow::Result<()> {
        assert_eq!(view.get(b"b")?, None);
        assert_eq!(view.get(b"c")?, None);
        Ok(())
    })?;
    Ok(())
}
