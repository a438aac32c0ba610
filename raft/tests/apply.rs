//! The apply function on a real RocksDB store: deterministic, total, every change an
//! event, and a bounded event window that snapshots carry.

use std::sync::Arc;

use openraft::storage::RaftStateMachine;
use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, RaftSnapshotBuilder};
use orion_api::spec::{parse_documents, Resource, Resources, ServiceSpec};
use orion_api::{EventCursor, EventKind, ReplicaObject, WatchStart};
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
async fn event_window_keeps_the_last_events_and_refuses_older_watches() {
    let dir = tempfile::tempdir().expect("dir");
    let mut store = open(&dir);
    let total = EVENT_WINDOW + 50;
    let cmds: Vec<Command> = (0..total)
        .map(|i| put(&format!("k/{}", i % 7), "v", None))
        .collect();
    for (n, chunk) in cmds.chunks(1000).enumerate() {
        apply_all(&mut store, chunk, 1 + n as u64 * 1000).await;
    }
    // One event per write: revisions 1..=50 left the window.
    let dropped = total - EVENT_WINDOW;
    let at = |revision, seq| EventCursor { revision, seq };
    store.reader.with_view(|v| {
        for gone in [
            WatchStart::Revision(dropped),
            WatchStart::After(at(dropped - 1, 0)),
        ] {
            match read::events(v, gone, 1) {
                Err(ReadError::Compacted { compacted, .. }) => {
                    assert_eq!(compacted, at(dropped, 0))
                }
                other => panic!("watch from {gone:?}, before the window: {other:?}"),
            }
        }
        for kept in [
            WatchStart::Revision(dropped + 1),
            WatchStart::After(at(dropped, 0)),
            WatchStart::Revision(0),
        ] {
            let events = read::events(v, kept, usize::MAX).expect("events");
            assert_eq!(events.len() as u64, EVENT_WINDOW, "from {kept:?}");
            assert_eq!(events.first().map(|e| e.cursor()), Some(at(dropped + 1, 0)));
            assert_eq!(events.last().map(|e| e.cursor()), Some(at(total, 0)));
        }
        // Only the window's events remain stored, and the count agrees.
        let stored = v.scan_prefix(b"e/", None, usize::MAX).expect("scan").len() as u64;
        assert_eq!(stored, EVENT_WINDOW);
        assert_eq!(read::event_log(v).expect("log").stored, EVENT_WINDOW);
    });
}

fn service(name: &str, replicas: u32) -> Resource {
    let yaml = format!(
        "kind: Service\nname: {name}\nreplicas: {replicas}\ncommand: [sleep, \"60\"]\n\
         resources: {{cpu: 10m, memory: 8Mi}}\n"
    );
    let mut parsed = parse_documents("test.yaml", &yaml).expect("valid service");
    parsed.remove(0)
}

fn replica(service: &str, ordinal: u32) -> ReplicaObject {
    ReplicaObject {
        service: service.into(),
        ordinal,
        node: "n1".into(),
        generation: 1,
        resources: Resources {
            cpu_millis: 10,
            memory_bytes: 8 << 20,
        },
        create_revision: 0,
    }
}

#[tokio::test]
async fn every_change_of_one_write_is_its_own_event_in_order() {
    let dir = tempfile::tempdir().expect("dir");
    let mut store = open(&dir);
    let cmds = vec![
        put("x", "1", None),
        Command::ApplyResources {
            resources: vec![service("a", 0), service("b", 0), service("c", 0)],
        },
        Command::ReconcileReplicas {
            place: (0..5).map(|o| replica("a", o)).collect(),
            remove: vec![],
        },
        Command::ReconcileReplicas {
            place: vec![replica("b", 0)],
            remove: vec![("a".into(), 3), ("a".into(), 4)],
        },
    ];
    // Applied in one batch and one by one: the same events, the same bytes.
    let dir2 = tempfile::tempdir().expect("dir");
    let mut one_by_one = open(&dir2);
    apply_all(&mut store, &cmds, 1).await;
    for (i, c) in cmds.iter().enumerate() {
        apply_all(&mut one_by_one, std::slice::from_ref(c), 1 + i as u64).await;
    }
    assert_eq!(dump(&store), dump(&one_by_one), "state machines diverged");

    let events = store
        .reader
        .with_view(|v| read::events(v, WatchStart::Revision(0), usize::MAX))
        .expect("events");
    let got: Vec<(String, &str, &str, &str)> = events
        .iter()
        .map(|e| {
            (
                e.cursor().to_string(),
                if e.kind == EventKind::Put {
                    "put"
                } else {
                    "delete"
                },
                e.resource.as_str(),
                e.key.as_str(),
            )
        })
        .collect();
    let want = [
        ("1.0", "put", "Variable", "x"),
        ("2.0", "put", "Service", "a"),
        ("2.1", "put", "Service", "b"),
        ("2.2", "put", "Service", "c"),
        ("3.0", "put", "Replica", "a-0"),
        ("3.1", "put", "Replica", "a-1"),
        ("3.2", "put", "Replica", "a-2"),
        ("3.3", "put", "Replica", "a-3"),
        ("3.4", "put", "Replica", "a-4"),
        ("4.0", "delete", "Replica", "a-3"),
        ("4.1", "delete", "Replica", "a-4"),
        ("4.2", "put", "Replica", "b-0"),
    ];
    let want: Vec<(String, &str, &str, &str)> = want
        .iter()
        .map(|(c, k, r, n)| (c.to_string(), *k, *r, *n))
        .collect();
    assert_eq!(got, want);

    // Resuming from a cursor in the middle of a write gives the rest of it, then on.
    let from_middle = store
        .reader
        .with_view(|v| read::events(v, WatchStart::After(at(3, 1)), usize::MAX))
        .expect("events");
    let cursors: Vec<String> = from_middle.iter().map(|e| e.cursor().to_string()).collect();
    assert_eq!(cursors, ["3.2", "3.3", "3.4", "4.0", "4.1", "4.2"]);
    // A bare revision starts at its first event.
    let from_rev = store
        .reader
        .with_view(|v| read::events(v, WatchStart::Revision(3), 2))
        .expect("events");
    let cursors: Vec<String> = from_rev.iter().map(|e| e.cursor().to_string()).collect();
    assert_eq!(cursors, ["3.0", "3.1"]);
}

fn at(revision: u64, seq: u32) -> EventCursor {
    EventCursor { revision, seq }
}

#[tokio::test]
async fn the_window_counts_events_not_writes() {
    let dir = tempfile::tempdir().expect("dir");
    let mut store = open(&dir);
    // Writes of 100 events each: 101 of them overflow the window by 100 events.
    let specs: Vec<Resource> = (0..100).map(|i| service(&format!("s{i}"), 0)).collect();
    let cmds: Vec<Command> = (0..101u32)
        .map(|round| Command::ApplyResources {
            resources: specs
                .iter()
                .map(|r| match r {
                    Resource::Service(spec) => Resource::Service(ServiceSpec {
                        replicas: round,
                        ..spec.clone()
                    }),
                    other => other.clone(),
                })
                .collect(),
        })
        .collect();
    apply_all(&mut store, &cmds, 1).await;
    store.reader.with_view(|v| {
        let log = read::event_log(v).expect("log");
        assert_eq!(log.stored, EVENT_WINDOW);
        assert_eq!(
            log.compacted,
            Some(at(1, 99)),
            "the first write's 100 events"
        );
        assert_eq!(log.last, Some(at(101, 99)));
        assert!(read::events(v, WatchStart::After(at(1, 98)), 1).is_err());
        let rest = read::events(v, WatchStart::After(at(1, 99)), usize::MAX).expect("events");
        assert_eq!(rest.len() as u64, EVENT_WINDOW);
        assert_eq!(rest.first().map(|e| e.cursor()), Some(at(2, 0)));
    });
}

#[tokio::test]
async fn events_travel_in_snapshots() {
    let dir = tempfile::tempdir().expect("dir");
    let mut store = open(&dir);
    let cmds = vec![Command::ApplyResources {
        resources: vec![service("a", 0), service("b", 0)],
    }];
    apply_all(&mut store, &cmds, 1).await;
    let snapshot = store
        .sm
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .expect("snapshot");
    let dir2 = tempfile::tempdir().expect("dir");
    let mut fresh = open(&dir2);
    fresh
        .sm
        .install_snapshot(&snapshot.meta, snapshot.snapshot)
        .await
        .expect("install");
    let read_all = |s: &Store<TypeConfig>| {
        s.reader.with_view(|v| {
            (
                read::events(v, WatchStart::Revision(0), usize::MAX).expect("events"),
                read::event_log(v).expect("log"),
            )
        })
    };
    let (events, log) = read_all(&fresh);
    assert_eq!((events.clone(), log.clone()), read_all(&store));
    assert_eq!(events.len(), 2);
    assert_eq!(log.last, Some(at(1, 1)));
    // The next write numbers on from the installed state.
    apply_all(&mut fresh, &[put("z", "1", None)], 2).await;
    assert_eq!(read_all(&fresh).1.last, Some(at(2, 0)));
}
