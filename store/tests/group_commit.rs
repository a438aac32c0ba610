//! Appends fired without waiting are acknowledged in order, sharing WAL syncs.

mod common;

use std::sync::mpsc;

use common::{blank, open, DEADLINE};
use openraft::RaftLogReader;

#[tokio::test]
async fn many_appends_share_syncs_and_are_acknowledged_in_order() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut store = open(dir.path())?;
    let appends: u64 = 2_000;

    let (acks, acked) = mpsc::channel();
    for index in 1..=appends {
        let acks = acks.clone();
        store.log.append_entries([blank(1, index)], move |synced| {
            let _ = acks.send((index, synced.map_err(|e| e.to_string())));
        })?;
    }

    let mut order = Vec::new();
    for _ in 1..=appends {
        let (index, synced) = acked
            .recv_timeout(DEADLINE)
            .map_err(|e| anyhow::anyhow!("waiting for ack #{}: {e}", order.len() + 1))?;
        synced.map_err(|e| anyhow::anyhow!("append {index} failed: {e}"))?;
        order.push(index);
    }
    assert_eq!(order, (1..=appends).collect::<Vec<_>>(), "ack order");

    let syncs = store.log.sync_count();
    assert!(syncs >= 1, "at least one sync");
    assert!(
        syncs < appends,
        "expected appends to share syncs: {syncs} syncs for {appends} appends"
    );

    let stored = store.log.try_get_log_entries(..).await?;
    assert_eq!(stored.len() as u64, appends);
    Ok(())
}
