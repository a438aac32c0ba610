//! openraft's own storage test suite against the RocksDB store.

mod common;

use std::sync::Arc;

use common::{KvApplier, TestConfig};
use openraft::testing::{StoreBuilder, Suite};
use openraft::{StorageError, StorageIOError};
use orion_store::{LogStore, StateMachine};
use tempfile::TempDir;

struct TempStoreBuilder;

impl StoreBuilder<TestConfig, LogStore<TestConfig>, StateMachine<TestConfig>, TempDir>
    for TempStoreBuilder
{
    async fn build(
        &self,
    ) -> Result<(TempDir, LogStore<TestConfig>, StateMachine<TestConfig>), StorageError<u64>> {
        let dir = TempDir::new().map_err(|e| StorageIOError::write(&e))?;
        let store = orion_store::open::<TestConfig>(dir.path(), Arc::new(KvApplier))
            .map_err(|e| StorageIOError::write(&e))?;
        // The TempDir is the guard: the folder lives as long as the test uses the store.
        Ok((dir, store.log, store.sm))
    }
}

#[test]
fn openraft_storage_suite() -> anyhow::Result<()> {
    Suite::test_all(TempStoreBuilder)?;
    Ok(())
}
