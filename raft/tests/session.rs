//! Client sessions on a real RocksDB store: a request id applies once, its record
//! leaves after the window on every peer alike, and it travels in snapshots.

use std::sync::Arc;

use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine};
use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId};
use orion_api::ErrorCode;
use orion_raft::apply::OrionApplier;
use orion_raft::command::Applied;
use orion_raft::session::{SESSION_PREFIX, SESSION_WINDOW};
use orion_raft::{read, Command, CommandResult, Proposal, RequestId, TypeConfig};
use orion_store::Store;

fn id(s: &str) -> RequestId {
    RequestId::parse(s).expect("valid request id")
}

fn entry(index: u64, proposal: Proposal) -> Entry<TypeConfig> {
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
        payload: EntryPayload::Normal(proposal),
    }
}

fn put(path: &str, value: &str, expected_revision: Option<u64>) -> Command {
    Command::PutVariable {
        path: path.into(),
        value: value.into(),
        expected_revision,
        secret: false,
    }
}

fn open(dir: &tempfile::TempDir) -> Store<TypeConfig> {
    orion_store::open::<TypeConfig>(dir.path(), Arc::new(OrionApplier)).expect("open store")
}

async fn apply(store: &mut Store<TypeConfig>, index: u64, p: Proposal) -> CommandResult {
    let mut results = store.sm.apply([entry(index, p)]).await.expect("apply");
    results.pop().expect("one result")
}

fn version(store: &Store<TypeConfig>, path: &str) -> Option<(u64, u64)> {
    store
        .reader
        .with_view(|v| read::variable(v, path))
        .expect("read")
        .map(|v| (v.version, v.mod_revision))
}

fn session_records(store: &Store<TypeConfig>) -> usize {
    store
        .reader
        .with_view(|v| v.scan_prefix(SESSION_PREFIX, None, usize::MAX))
        .expect("scan")
        .len()
}

#[tokio::test]
async fn a_duplicate_returns_the_original_result_and_changes_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut store = open(&dir);
    // A create-only compare-and-set: applied twice it would be a 409.
    let first = apply(
        &mut store,
        1,
        Proposal::new(id("a"), put("x", "1", Some(0))),
    )
    .await;
    assert!(matches!(first.outcome, Ok(Applied::Put(_))), "{first:?}");
    let again = apply(
        &mut store,
        2,
        Proposal::new(id("a"), put("x", "1", Some(0))),
    )
    .await;
    assert_eq!(
        again, first,
        "the retry answers with the first result, revision 1"
    );
    assert_eq!(version(&store, "x"), Some((1, 1)), "applied once");

    // The same command under another id (or none) is a new write: here, a conflict.
    let other = apply(
        &mut store,
        3,
        Proposal::new(id("b"), put("x", "1", Some(0))),
    )
    .await;
    assert_eq!(other.revision, 3);
    assert!(matches!(&other.outcome, Err(r) if r.code == ErrorCode::Conflict));
    let bare = apply(&mut store, 4, put("x", "2", None).into()).await;
    assert!(bare.outcome.is_ok());
    assert_eq!(version(&store, "x"), Some((2, 4)));

    // A rejection is remembered as well: its retry is the same rejection.
    let again_b = apply(&mut store, 5, Proposal::new(id("b"), put("x", "9", None))).await;
    assert_eq!(again_b, other);
    assert_eq!(version(&store, "x"), Some((2, 4)));
}

#[tokio::test]
async fn records_leave_after_the_window_and_their_number_is_bounded() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut store = open(&dir);
    let first = apply(&mut store, 1, Proposal::new(id("old"), put("x", "1", None))).await;
    // Fill the window: one write per revision, each with its own id.
    let entries: Vec<_> = (2..=SESSION_WINDOW)
        .map(|i| {
            entry(
                i,
                Proposal::new(
                    id(&format!("w{i}")),
                    put(&format!("k/{}", i % 7), "v", None),
                ),
            )
        })
        .collect();
    store.sm.apply(entries).await.expect("apply");
    assert_eq!(session_records(&store), SESSION_WINDOW as usize);

    // At revision SESSION_WINDOW + 1 only revision 1 has left the window: a retry
    // of w2 (revision 2) is still a duplicate.
    let at_edge = apply(
        &mut store,
        SESSION_WINDOW + 1,
        Proposal::new(id("w2"), put("x", "changed", None)),
    )
    .await;
    assert_eq!(at_edge.revision, 2, "w2 (revision 2) is still remembered");
    // Revision 1 left the window at revision SESSION_WINDOW + 1: "old" applies again.
    let replay = apply(
        &mut store,
        SESSION_WINDOW + 2,
        Proposal::new(id("old"), put("x", "1", None)),
    )
    .await;
    assert_ne!(replay, first);
    assert_eq!(replay.revision, SESSION_WINDOW + 2);

    // Twice the window later, only the last window's records are left.
    let entries: Vec<_> = (SESSION_WINDOW + 3..=3 * SESSION_WINDOW)
        .map(|i| entry(i, Proposal::new(id(&format!("w{i}")), put("y", "v", None))))
        .collect();
    store.sm.apply(entries).await.expect("apply");
    assert_eq!(session_records(&store), SESSION_WINDOW as usize);
}

#[tokio::test]
async fn records_travel_in_snapshots_and_survive_a_restart() {
    let leader_dir = tempfile::tempdir().expect("temp dir");
    let mut leader = open(&leader_dir);
    let first = apply(
        &mut leader,
        1,
        Proposal::new(id("a"), put("x", "1", Some(0))),
    )
    .await;
    let snapshot = leader
        .sm
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .expect("build snapshot");

    let follower_dir = tempfile::tempdir().expect("temp dir");
    {
        let mut follower = open(&follower_dir);
        let mut receiving = follower
            .sm
            .begin_receiving_snapshot()
            .await
            .expect("receive");
        receiving
            .get_mut()
            .extend_from_slice(snapshot.snapshot.get_ref());
        follower
            .sm
            .install_snapshot(&snapshot.meta, receiving)
            .await
            .expect("install");
    }
    // Reopened from disk, the follower still knows request "a".
    let mut follower = open(&follower_dir);
    let again = apply(
        &mut follower,
        2,
        Proposal::new(id("a"), put("x", "1", Some(0))),
    )
    .await;
    assert_eq!(again, first);
    assert_eq!(version(&follower, "x"), Some((1, 1)));
}

#[test]
fn old_log_entries_without_a_request_id_still_decode() {
    let bare = serde_json::to_vec(&put("x", "1", None)).expect("encode");
    let decoded: Proposal = serde_json::from_slice(&bare).expect("decode a bare command");
    assert_eq!(decoded, Proposal::from(put("x", "1", None)));

    let enveloped = Proposal::new(id("r-1"), put("x", "1", None));
    let bytes = serde_json::to_vec(&enveloped).expect("encode");
    let decoded: Proposal = serde_json::from_slice(&bytes).expect("decode");
    assert_eq!(decoded, enveloped);
}

#[test]
fn request_ids_are_bounded_and_checked() {
    assert!(RequestId::parse("").is_err());
    assert!(RequestId::parse("has space").is_err());
    assert!(RequestId::parse("quo\"te").is_err());
    assert!(RequestId::parse(&"x".repeat(257)).is_err());
    assert!(RequestId::parse(&"x".repeat(256)).is_ok());
    let too_long = format!(
        r#"{{"request_id":"{}","command":{{"op":"retire_member","id":1}}}}"#,
        "x".repeat(300)
    );
    assert!(serde_json::from_str::<Proposal>(&too_long).is_err());
}

fn batch(writes: Vec<Proposal>) -> Proposal {
    Command::Batch { writes }.into()
}

fn batch_results(r: CommandResult) -> Vec<CommandResult> {
    match r.outcome {
        Ok(Applied::Batch(results)) => results,
        other => panic!("not a batch result: {other:?}"),
    }
}

#[tokio::test]
async fn each_write_of_a_batch_applies_once_on_its_own() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut store = open(&dir);
    apply(
        &mut store,
        1,
        Proposal::new(id("seed"), put("c", "0", None)),
    )
    .await;
    let results = batch_results(
        apply(
            &mut store,
            2,
            batch(vec![
                Proposal::new(id("a"), put("a", "1", Some(0))),
                // A compare-and-set that fails is rejected alone.
                Proposal::new(id("b"), put("z", "1", Some(99))),
                // A second write of the same path in one batch is refused.
                Proposal::new(id("c"), put("a", "2", None)),
                // So is a second write under one request id.
                Proposal::new(id("a"), put("d", "1", None)),
                // And anything but a variable write.
                Proposal::new(id("e"), Command::RetireMember { id: 9 }),
                Proposal::new(
                    id("f"),
                    Command::DeleteVariable {
                        path: "c".into(),
                        expected_revision: Some(1),
                    },
                ),
            ]),
        )
        .await,
    );
    assert_eq!(results.len(), 6);
    assert!(results.iter().all(|r| r.revision == 2), "{results:?}");
    assert!(matches!(&results[0].outcome, Ok(Applied::Put(v)) if v.mod_revision == 2));
    assert!(matches!(&results[1].outcome, Err(r) if r.code == ErrorCode::Conflict));
    for refused in &results[2..5] {
        assert!(
            matches!(&refused.outcome, Err(r) if r.code == ErrorCode::InvalidArgument),
            "{refused:?}"
        );
    }
    assert!(matches!(&results[5].outcome, Ok(Applied::Deleted(_))));
    assert_eq!(version(&store, "a"), Some((1, 2)));
    assert_eq!(version(&store, "c"), None, "deleted by the last write");
    assert_eq!(
        version(&store, "d"),
        None,
        "the refused write changed nothing"
    );
    assert_eq!(
        version(&store, "z"),
        None,
        "the failed compare-and-set changed nothing"
    );
    assert!(
        !store
            .reader
            .with_view(|v| read::is_retired(v, 9))
            .expect("read"),
        "a refused command in a batch changes nothing"
    );

    // A retry of a batched write, alone or in another batch, returns its result.
    let again = apply(
        &mut store,
        3,
        Proposal::new(id("a"), put("a", "1", Some(0))),
    )
    .await;
    assert_eq!(again, results[0]);
    let again = batch_results(
        apply(
            &mut store,
            4,
            batch(vec![
                Proposal::new(id("b"), put("z", "1", Some(99))),
                Proposal::new(id("g"), put("g", "1", None)),
            ]),
        )
        .await,
    );
    assert_eq!(again[0], results[1]);
    assert_eq!(again[1].revision, 4);
    assert_eq!(version(&store, "a"), Some((1, 2)), "applied once");
}

#[tokio::test]
async fn records_of_a_batch_leave_the_window_together() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut store = open(&dir);
    let writes = (0..50)
        .map(|i| Proposal::new(id(&format!("b{i}")), put(&format!("k/{i}"), "v", None)))
        .collect();
    apply(&mut store, 1, batch(writes)).await;
    assert_eq!(session_records(&store), 50);
    let entries: Vec<_> = (2..=SESSION_WINDOW + 1)
        .map(|i| entry(i, Proposal::new(id(&format!("w{i}")), put("y", "v", None))))
        .collect();
    store.sm.apply(entries).await.expect("apply");
    // Revision 1 (all 50 records) left the window at SESSION_WINDOW + 1.
    assert_eq!(session_records(&store), SESSION_WINDOW as usize);
    let replay = apply(
        &mut store,
        SESSION_WINDOW + 2,
        Proposal::new(id("b7"), put("k/7", "again", None)),
    )
    .await;
    assert_eq!(replay.revision, SESSION_WINDOW + 2, "applied again");
}
