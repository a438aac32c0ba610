//! The apply function on a real RocksDB store: deterministic, total, and with a
//! bounded event window.

use std::sync::Arc;

use openraft::storage::RaftStateMachine;
use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId};
use orion_raft::apply::{OrionApplier, EVENT_WINDOW};
use orion_raft::command::Applied;
use orion_raft::read::{self, ReadError};
use orion_raft::{Command, CommandResult, TypeConfig};
use orion_store::Store;

fn entry(index: u64, cmd: Command) -> Entry<TypeConfig> {
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
        payload: EntryPayload::Normal(cmd.into()),
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

/// Every key and value of the state machine's data.
fn dump(store: &Store<TypeConfig>) -> Vec<(Vec<u8>, Vec<u8>)> {
    store
        .reader
        .with_view(|v| v.scan_prefix(b"", None, usize::MAX))
        .expect("scan")
}

async fn apply_all(
    store: &mut Store<TypeConfig>,
    cmds: &[Command],
    first: u64,
) -> Vec<CommandResult> {
    let entries: Vec<_> = cmds
        .iter()
        .enumerate()
        .map(|(i, c)| entry(first + i as u64, c.clone()))
        .collect();
    store.sm.apply(entries).await.expect("apply")
}

fn script() -> Vec<Command> {
    vec![
        put("a", "1", None),
        put("a", "2", Some(99)),    // CAS mismatch: rejected, nothing changes
        put("a", "3", Some(1)),     // CAS match
        put("b", "x", Some(0)),     // create-only
        put("b", "y", Some(0)),     // create-only again: rejected
        put("bad path", "z", None), // invalid: rejected
        Command::DeleteVariable {
            path: "missing".into(),
            expected_revision: None,
        },
        Command::DeleteVariable {
            path: "b".into(),
            expected_revision: Some(4),
        },
    ]
}

#[tokio::test]
async fn same_entries_give_identical_state_and_rejections_change_nothing() {
    let (d1, d2) = (
        tempfile::tempdir().expect("dir"),
        tempfile::tempdir().expect("dir"),
    );
    let (mut s1, mut s2) = (open(&d1), open(&d2));
    // One store applies the script in one batch, the other entry by entry.
    let r1 = apply_all(&mut s1, &script(), 1).await;
    let mut r2 = Vec::new();
    for (i, c) in script().into_iter().enumerate() {
        r2.extend(apply_all(&mut s2, &[c], 1 + i as u64).await);
    }
    assert_eq!(r1, r2);
    assert_eq!(dump(&s1), dump(&s2), "state machines diverged");

    let outcomes: Vec<bool> = r1.iter().map(|r| r.outcome.is_ok()).collect();
    assert_eq!(
        outcomes,
        [true, false, true, true, false, false, false, true]
    );
    let a = s1
        .reader
        .with_view(|v| read::variable(v, "a"))
        .expect("read")
        .expect("a");
    assert_eq!(
        (
            a.value.as_str(),
            a.create_revision,
            a.mod_revision,
            a.version
        ),
        ("3", 1, 3, 2)
    );
    assert!(s1
        .reader
        .with_view(|v| read::variable(v, "b"))
        .expect("read")
        .is_none());
    match &r1[1].outcome {
        Err(rej) => assert_eq!(rej.current_revision, Some(1)),
        Ok(other) => panic!("CAS mismatch applied: {other:?}"),
    }
    assert!(matches!(r1[7].outcome, Ok(Applied::Deleted(_))));
}

#[tokio::test]
async fn event_window_keeps_the_last_revisions_and_refuses_older_watches() {
    let dir = tempfile::tempdir().expect("dir");
    let mut store = open(&dir);
    let total = EVENT_WINDOW + 50;
    let cmds: Vec<Command> = (0..total)
        .map(|i| put(&format!("k/{}", i % 7), "v", None))
        .collect();
    for (n, chunk) in cmds.chunks(1000).enumerate() {
        apply_all(&mut store, chunk, 1 + n as u64 * 1000).await;
    }
    let floor = total - EVENT_WINDOW;
    store.reader.with_view(|v| {
        match read::events_since(v, floor, 1) {
            Err(ReadError::Compacted { oldest, .. }) => assert_eq!(oldest, floor + 1),
            other => panic!("watch from a compacted revision: {other:?}"),
        }
        let events = read::events_since(v, floor + 1, usize::MAX).expect("events");
        assert_eq!(events.len() as u64, EVENT_WINDOW);
        assert_eq!(events.first().map(|e| e.revision), Some(floor + 1));
        assert_eq!(events.last().map(|e| e.revision), Some(total));
        // Only the window's events remain stored.
        let stored = v.scan_prefix(b"e/", None, usize::MAX).expect("scan").len() as u64;
        assert_eq!(stored, EVENT_WINDOW);
    });
}
