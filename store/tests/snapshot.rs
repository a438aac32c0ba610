//! Building, installing, refusing and keeping snapshots.

mod common;

use common::{membership, normal, open, set, TestConfig};
use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine};
use openraft::{Snapshot, StoredMembership};
use orion_store::{StateReader, Store};

type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

fn all_pairs(reader: &StateReader) -> anyhow::Result<Pairs> {
    Ok(reader.with_view(|view| view.scan_prefix(b"", None, usize::MAX))?)
}

async fn applied(
    store: &mut Store<TestConfig>,
) -> anyhow::Result<(
    Option<openraft::LogId<u64>>,
    StoredMembership<u64, openraft::BasicNode>,
)> {
    Ok(store.sm.applied_state().await?)
}

/// Receive `snapshot` into `store` the way openraft does, then install it.
async fn install(
    store: &mut Store<TestConfig>,
    snapshot: &Snapshot<TestConfig>,
) -> anyhow::Result<()> {
    let mut receiving = store.sm.begin_receiving_snapshot().await?;
    receiving
        .get_mut()
        .extend_from_slice(snapshot.snapshot.get_ref());
    store.sm.install_snapshot(&snapshot.meta, receiving).await?;
    Ok(())
}

#[tokio::test]
async fn built_snapshot_installs_on_a_fresh_store() -> anyhow::Result<()> {
    let leader_dir = tempfile::tempdir()?;
    let mut leader = open(leader_dir.path())?;
    leader
        .sm
        .apply([
            membership(1, 1, &[1, 2]),
            normal(1, 2, set("a", b"1")),
            normal(1, 3, set("b", b"2")),
            normal(2, 4, set("", b"empty key")),
        ])
        .await?;
    let built = leader
        .sm
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await?;
    assert_eq!(built.meta.last_log_id, Some(common::log_id(2, 4)));

    let follower_dir = tempfile::tempdir()?;
    let mut follower = open(follower_dir.path())?;
    // State the snapshot must replace, including a key the leader never had.
    follower
        .sm
        .apply([
            normal(1, 1, set("stale", b"x")),
            normal(1, 2, set("a", b"old")),
        ])
        .await?;
    install(&mut follower, &built).await?;

    assert_eq!(all_pairs(&follower.reader)?, all_pairs(&leader.reader)?);
    assert_eq!(applied(&mut follower).await?, applied(&mut leader).await?);
    let current = follower
        .sm
        .get_current_snapshot()
        .await?
        .ok_or_else(|| anyhow::anyhow!("follower has no current snapshot"))?;
    assert_eq!(current.meta, built.meta);
    assert_eq!(follower.reader.with_view(|v| v.last_applied_index())?, 4);
    Ok(())
}

#[tokio::test]
async fn corrupt_snapshot_is_refused_and_changes_nothing() -> anyhow::Result<()> {
    let leader_dir = tempfile::tempdir()?;
    let mut leader = open(leader_dir.path())?;
    leader
        .sm
        .apply((1..=100).map(|i| normal(1, i, set(&format!("k/{i:03}"), &[i as u8; 64]))))
        .await?;
    let built = leader
        .sm
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await?;

    let follower_dir = tempfile::tempdir()?;
    let mut follower = open(follower_dir.path())?;
    follower
        .sm
        .apply([normal(1, 1, set("mine", b"keep"))])
        .await?;
    let pairs_before = all_pairs(&follower.reader)?;
    let applied_before = applied(&mut follower).await?;

    let len = built.snapshot.get_ref().len();
    for at in [0, 10, len / 2, len - 1] {
        let mut damaged = built.clone();
        damaged.snapshot.get_mut()[at] ^= 0x40;
        let refused = install(&mut follower, &damaged).await;
        assert!(refused.is_err(), "damaged byte {at} of {len} was accepted");
    }
    let mut truncated = built.clone();
    truncated.snapshot.get_mut().truncate(len - 100);
    assert!(install(&mut follower, &truncated).await.is_err());

    assert_eq!(all_pairs(&follower.reader)?, pairs_before);
    assert_eq!(applied(&mut follower).await?, applied_before);
    assert!(follower.sm.get_current_snapshot().await?.is_none());

    // A valid snapshot whose metadata disagrees with its data is refused too.
    let mut mislabelled = built.clone();
    mislabelled.meta.last_log_id = Some(common::log_id(9, 999));
    assert!(install(&mut follower, &mislabelled).await.is_err());
    assert_eq!(all_pairs(&follower.reader)?, pairs_before);
    Ok(())
}

#[tokio::test]
async fn current_snapshot_survives_restart() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let built = {
        let mut store = open(dir.path())?;
        store
            .sm
            .apply([membership(1, 1, &[1]), normal(1, 2, set("x", b"y"))])
            .await?;
        store
            .sm
            .get_snapshot_builder()
            .await
            .build_snapshot()
            .await?
    };
    let mut store = open(dir.path())?;
    let current = store
        .sm
        .get_current_snapshot()
        .await?
        .ok_or_else(|| anyhow::anyhow!("no current snapshot after restart"))?;
    assert_eq!(current.meta, built.meta);
    assert_eq!(current.snapshot.get_ref(), built.snapshot.get_ref());
    Ok(())
}

#[tokio::test]
async fn fifty_megabyte_state_builds_and_installs() -> anyhow::Result<()> {
    const VALUES: u64 = 5_000;
    const VALUE_LEN: usize = 10 * 1024;
    let leader_dir = tempfile::tempdir()?;
    let mut leader = open(leader_dir.path())?;
    for batch in 0..(VALUES / 100) {
        let entries = (0..100).map(|i| {
            let n = batch * 100 + i + 1;
            let value = vec![(n % 251) as u8; VALUE_LEN];
            normal(1, n, set(&format!("big/{n:05}"), &value))
        });
        leader.sm.apply(entries).await?;
    }
    let built = leader
        .sm
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await?;
    assert!(built.snapshot.get_ref().len() > 50_000_000);

    let follower_dir = tempfile::tempdir()?;
    let mut follower = open(follower_dir.path())?;
    install(&mut follower, &built).await?;

    let (count, sample) = follower.reader.with_view(|v| -> anyhow::Result<_> {
        let count = v.scan_prefix(b"big/", None, usize::MAX)?.len();
        Ok((count, v.get(b"big/04321")?))
    })?;
    assert_eq!(count as u64, VALUES);
    assert_eq!(sample, Some(vec![(4321 % 251) as u8; VALUE_LEN]));
    assert_eq!(applied(&mut follower).await?, applied(&mut leader).await?);
    Ok(())
}
