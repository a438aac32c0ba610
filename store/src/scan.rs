//! Prefix scans over the `sm` column family, merged with a transaction's pending writes.

use std::collections::BTreeMap;
use std::iter::Peekable;

use crate::error::Result;

/// Writes not yet in the database: `Some(value)` is a put, `None` a delete.
pub(crate) type Pending = BTreeMap<Vec<u8>, Option<Vec<u8>>>;

/// A RocksDB iterator item.
pub(crate) type DbItem = std::result::Result<(Box<[u8]>, Box<[u8]>), rocksdb::Error>;

/// The first key a scan of `prefix` strictly after `start_after` may return (or
/// `start_after` itself, which the scan then skips). Position the database iterator here.
pub(crate) fn seek_key(prefix: &[u8], start_after: Option<&[u8]>) -> Vec<u8> {
    match start_after {
        Some(after) if after > prefix => after.to_vec(),
        _ => prefix.to_vec(),
    }
}

/// Keys starting with `prefix`, in key order, strictly after `start_after`, at most
/// `limit`; `pending` writes override (or delete) what `db` holds.
///
/// `db` must be positioned at [`seek_key`] and iterate forward.
pub(crate) fn scan_prefix(
    db: impl Iterator<Item = DbItem>,
    pending: &Pending,
    prefix: &[u8],
    start_after: Option<&[u8]>,
    limit: usize,
) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let wanted = |key: &[u8]| start_after.is_none_or(|after| key > after);
    let mut db = db
        .take_while(|item| item.as_ref().map_or(true, |(k, _)| k.starts_with(prefix)))
        .filter(|item| item.as_ref().map_or(true, |(k, _)| wanted(&k[..])))
        .peekable();
    let mut pending = pending
        .range(seek_key(prefix, start_after)..)
        .take_while(|(k, _)| k.starts_with(prefix))
        .filter(|(k, _)| wanted(k.as_slice()))
        .peekable();

    let mut out = Vec::new();
    while out.len() < limit {
        let db_key = peek_key(&mut db)?;
        let from_pending = match (db_key, pending.peek()) {
            (None, None) => break,
            (Some(_), None) => false,
            (None, Some(_)) => true,
            (Some(d), Some((p, _))) => {
                if d.as_slice() == p.as_slice() {
                    // The pending write replaces the stored value.
                    db.next();
                    true
                } else {
                    p.as_slice() < d.as_slice()
                }
            }
        };
        if from_pending {
            if let Some((key, Some(value))) = pending.next() {
                out.push((key.clone(), value.clone()));
            }
        } else if let Some(Ok((key, value))) = db.next() {
            out.push((key.into_vec(), value.into_vec()));
        }
    }
    Ok(out)
}

/// The key of the next database item, surfacing an iterator error.
fn peek_key<I: Iterator<Item = DbItem>>(db: &mut Peekable<I>) -> Result<Option<Vec<u8>>> {
    match db.peek() {
        None => Ok(None),
        Some(Ok((key, _))) => Ok(Some(key.to_vec())),
        Some(Err(_)) => match db.next() {
            Some(Err(e)) => Err(e.into()),
            _ => Ok(None),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db_items(pairs: &[(&str, &str)]) -> Vec<DbItem> {
        pairs
            .iter()
            .map(|(k, v)| Ok((k.as_bytes().into(), v.as_bytes().into())))
            .collect()
    }

    fn scan(
        stored: &[(&str, &str)],
        pending: &Pending,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Vec<(String, String)> {
        let seek = seek_key(prefix.as_bytes(), after.map(str::as_bytes));
        let positioned = db_items(stored).into_iter().filter(|i| {
            i.as_ref()
                .map_or(true, |(k, _)| k.as_ref() >= seek.as_slice())
        });
        scan_prefix(
            positioned,
            pending,
            prefix.as_bytes(),
            after.map(str::as_bytes),
            limit,
        )
        .expect("scan")
        .into_iter()
        .map(|(k, v)| {
            (
                String::from_utf8(k).expect("utf8"),
                String::from_utf8(v).expect("utf8"),
            )
        })
        .collect()
    }

    fn owned(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    const STORED: &[(&str, &str)] = &[("a/1", "1"), ("a/3", "3"), ("a/5", "5"), ("b/1", "x")];

    #[test]
    fn stored_only() {
        let got = scan(STORED, &Pending::new(), "a/", None, 10);
        assert_eq!(got, owned(&[("a/1", "1"), ("a/3", "3"), ("a/5", "5")]));
    }

    #[test]
    fn pending_puts_deletes_and_overrides_merge_in_order() {
        let mut pending = Pending::new();
        pending.insert(b"a/2".to_vec(), Some(b"2".to_vec()));
        pending.insert(b"a/3".to_vec(), None);
        pending.insert(b"a/5".to_vec(), Some(b"five".to_vec()));
        pending.insert(b"a/6".to_vec(), Some(b"6".to_vec()));
        pending.insert(b"b/0".to_vec(), Some(b"y".to_vec()));
        let got = scan(STORED, &pending, "a/", None, 10);
        assert_eq!(
            got,
            owned(&[("a/1", "1"), ("a/2", "2"), ("a/5", "five"), ("a/6", "6")])
        );
    }

    #[test]
    fn start_after_and_limit() {
        let mut pending = Pending::new();
        pending.insert(b"a/4".to_vec(), Some(b"4".to_vec()));
        assert_eq!(
            scan(STORED, &pending, "a/", Some("a/3"), 10),
            owned(&[("a/4", "4"), ("a/5", "5")])
        );
        assert_eq!(
            scan(STORED, &pending, "a/", Some("a/1"), 2),
            owned(&[("a/3", "3"), ("a/4", "4")])
        );
        assert_eq!(scan(STORED, &pending, "a/", None, 0), owned(&[]));
        assert_eq!(scan(STORED, &pending, "a/", Some("a/9"), 5), owned(&[]));
        // A start before the prefix is the same as none.
        assert_eq!(
            scan(STORED, &pending, "a/", Some("a"), 1),
            owned(&[("a/1", "1")])
        );
    }

    #[test]
    fn deleted_keys_do_not_count_against_the_limit() {
        let mut pending = Pending::new();
        pending.insert(b"a/1".to_vec(), None);
        pending.insert(b"a/3".to_vec(), None);
        assert_eq!(
            scan(STORED, &pending, "a/", None, 1),
            owned(&[("a/5", "5")])
        );
    }
}
