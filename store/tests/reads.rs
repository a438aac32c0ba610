//! The applier's transaction and the API's point-in-time views.

mod common;

use common::{normal, open, set, Cmd, Resp};
use openraft::storage::RaftStateMachine;

#[tokio::test]
async fn txn_reads_its_own_writes_within_one_apply() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut store = open(dir.path())?;
    store
        .sm
        .apply([normal(1, 1, set("p/0", b"x")), normal(1, 2, set("q", b"y"))])
        .await?;

    let incr = || Cmd::Incr { key: b"n".to_vec() };
    let responses = store
        .sm
        .apply([
            normal(1, 3, incr()),
            normal(1, 4, incr()),
            normal(1, 5, set("p/1", b"a")),
            normal(1, 6, set("p/2", b"b")),
            normal(
                1,
                7,
                Cmd::Delete {
                    key: b"p/0".to_vec(),
                },
            ),
            normal(
                1,
                8,
                Cmd::Count {
                    prefix: b"p/".to_vec(),
                },
            ),
            normal(1, 9, incr()),
        ])
        .await?;
    assert_eq!(
        responses,
        vec![
            Resp::Counter(1),
            Resp::Counter(2),
            Resp::Done { index: 5 },
            Resp::Done { index: 6 },
            Resp::Done { index: 7 },
            Resp::Count(2),
            Resp::Counter(3),
        ]
    );
    let keys: Vec<Vec<u8>> = store.reader.with_view(|v| {
        v.scan_prefix(b"p/", None, 10)
            .map(|pairs| pairs.into_iter().map(|(k, _)| k).collect())
    })?;
    assert_eq!(keys, vec![b"p/1".to_vec(), b"p/2".to_vec()]);
    Ok(())
}

#[test]
fn a_view_does_not_see_later_applies() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new()?;
    let dir = tempfile::tempdir()?;
    let mut store = open(dir.path())?;
    runtime.block_on(store.sm.apply([normal(1, 1, set("x", b"1"))]))?;

    let reader = store.reader.clone();
    reader.with_view(|view| -> anyhow::Result<()> {
        runtime.block_on(
            store
                .sm
                .apply([normal(1, 2, set("x", b"2")), normal(1, 3, set("y", b"3"))]),
        )?;
        assert_eq!(view.get(b"x")?, Some(b"1".to_vec()));
        assert_eq!(view.get(b"y")?, None);
        assert_eq!(view.scan_prefix(b"", None, 10)?.len(), 1);
        assert_eq!(view.last_applied_index()?, 1);
        Ok(())
    })?;
    reader.with_view(|view| -> anyhow::Result<()> {
        assert_eq!(view.get(b"x")?, Some(b"2".to_vec()));
        assert_eq!(view.last_applied_index()?, 3);
        Ok(())
    })?;
    Ok(())
}

#[test]
fn empty_store_reads() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let store = open(dir.path())?;
    store.reader.with_view(|view| -> anyhow::Result<()> {
        assert_eq!(view.last_applied_index()?, 0);
        assert_eq!(view.get(b"anything")?, None);
        assert!(view.scan_prefix(b"", None, 10)?.is_empty());
        Ok(())
    })
}
