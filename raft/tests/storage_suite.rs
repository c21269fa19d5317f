//! openraft's storage conformance suite against the sled log store and state machine.

use openraft::testing::{StoreBuilder, Suite};
use raft::store::{LogStore, StateMachine};
use raft::TypeConfig;

struct SledBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for SledBuilder {
    async fn build(
        &self,
    ) -> Result<(tempfile::TempDir, LogStore, StateMachine), openraft::StorageError<u64>> {
        let dir = tempfile::tempdir().expect("temp dir");
        let (log, sm) = raft::store::open(dir.path())?;
        Ok((dir, log, sm))
    }
}

#[test]
fn sled_store_passes_the_openraft_suite() {
    Suite::test_all(SledBuilder).expect("suite");
}
