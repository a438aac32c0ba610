//! Backups: a snapshot in the [snapshot format](crate::snapshot_format), written as a
//! stream from one RocksDB point in time, checked and read back as a stream from a
//! file, and a new store seeded from one.
//!
//! - [`export`]: the state machine as of one RocksDB snapshot (a consistent view,
//!   while `apply` goes on), handed out in pieces of about `piece_bytes`, so a large
//!   state is never held in memory whole. The caller sends them on (the peer: as an
//!   HTTP body) and stops the export by refusing a piece.
//! - [`verify_file`]: the file's checksum, magic, version and header, read in bounded
//!   pieces; nothing is trusted before the checksum matched.
//! - [`read_pairs`]: every key/value pair of a verified file, one at a time.
//! - [`Seeder`]: a new store in an empty folder whose state machine is given pair
//!   by pair and whose log starts after the given log id: the log is "purged" up to
//!   it, so openraft starts from the state machine and builds its own snapshot of it.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use openraft::{LogId, Node, SnapshotMeta, StoredMembership, Vote};
use rocksdb::{IteratorMode, WriteBatch, WriteOptions, DB};

use crate::checksum::Crc32c;
use crate::codec::{decode, encode};
use crate::db::{self, cf};
use crate::error::{Error, Result};
use crate::keys::{
    CF_META, CF_SM, CF_SM_META, COMMITTED, LAST_APPLIED, LAST_MEMBERSHIP, LAST_PURGED, VOTE,
};
use crate::snapshot_format::{SnapshotEncoder, FORMAT_VERSION, MAGIC, PREAMBLE_LEN, TRAILER_LEN};
use crate::StateReader;

/// The largest snapshot header (its JSON metadata) a file may have.
pub const MAX_HEADER_BYTES: usize = 1 << 20;

/// Read pieces of this size when checking a file.
const READ_BYTES: usize = 1 << 20;

/// Flush a seeding write batch once it holds this much.
const SEED_BATCH_BYTES: usize = 4 << 20;

/// What a backup holds, from its header and trailer.
#[derive(Debug, Clone)]
pub struct BackupInfo<N: Node> {
    /// Its header: the last log id it covers (its revision is the index), the
    /// membership then, and its id (`backup-<term>-<index>-<unix millis>`).
    pub meta: SnapshotMeta<u64, N>,
    /// Key/value pairs of the state machine.
    pub pairs: u64,
    /// Size of the whole file or stream.
    pub bytes: u64,
    /// Its CRC-32C (the last four bytes).
    pub crc32c: u32,
}

impl<N: Node> BackupInfo<N> {
    /// The revision it was taken at: the index of the last applied log entry.
    pub fn revision(&self) -> u64 {
        self.meta.last_log_id.map_or(0, |l| l.index)
    }

    /// The term of that entry.
    pub fn term(&self) -> u64 {
        self.meta.last_log_id.map_or(0, |l| l.leader_id.term)
    }

    /// When it was taken (unix milliseconds), from its id.
    pub fn created_at_millis(&self) -> Option<u64> {
        self.meta.snapshot_id.rsplit('-').next()?.parse().ok()
    }
}

/// Streams the state machine as of now: header first, then every pair, then the
/// trailer, in pieces of about `piece_bytes` given to `piece`. `piece` returns
/// `false` to stop (the receiver went away): the export then ends with
/// `Ok(None)`. All of it is read from one RocksDB snapshot.
pub fn export<N>(
    reader: &StateReader,
    piece_bytes: usize,
    mut piece: impl FnMut(Vec<u8>) -> bool,
) -> Result<Option<BackupInfo<N>>>
where
    N: Node + serde::Serialize + serde::de::DeserializeOwned,
{
    let db = reader.db();
    let view = db.snapshot();
    let (last_log_id, last_membership): db::Applied<N> = db::applied_state(db, &view)?;
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default();
    let (term, index) = last_log_id.map_or((0, 0), |l| (l.leader_id.term, l.index));
    let meta = SnapshotMeta {
        snapshot_id: format!("backup-{term}-{index}-{millis}"),
        last_log_id,
        last_membership,
    };
    let mut encoder = SnapshotEncoder::new(&meta)?;
    let mut bytes = 0u64;
    for item in view.iterator_cf(cf(db, CF_SM)?, IteratorMode::Start) {
        let (key, value) = item?;
        encoder.push(&key, &value)?;
        if encoder.buffered() >= piece_bytes {
            let out = encoder.take();
            bytes += out.len() as u64;
            if !piece(out) {
                return Ok(None);
            }
        }
    }
    let head = encoder.take();
    bytes += head.len() as u64;
    let pairs = encoder.pairs();
    let (tail, crc) = encoder.finish_with_crc();
    bytes += tail.len() as u64;
    if !(piece(head) && piece(tail)) {
        return Ok(None);
    }
    Ok(Some(BackupInfo {
        meta,
        pairs,
        bytes,
        crc32c: crc,
    }))
}

fn corrupt(why: impl Into<String>) -> Error {
    Error::CorruptSnapshot(why.into())
}

fn open_file(path: &Path) -> Result<File> {
    File::open(path).map_err(|e| Error::io("open", path, e))
}

/// Checks a backup file (checksum, magic, version, header) reading it in bounded
/// pieces, and returns what it holds. A file that fails any check is refused with
/// what is wrong.
pub fn verify_file<N>(path: &Path) -> Result<BackupInfo<N>>
where
    N: Node + serde::de::DeserializeOwned,
{
    let mut file = open_file(path)?;
    let size = file
        .metadata()
        .map_err(|e| Error::io("stat", path, e))?
        .len();
    let min = (PREAMBLE_LEN + TRAILER_LEN) as u64;
    if size < min {
        return Err(corrupt(format!(
            "{} is {size} bytes, too short to be a snapshot (at least {min})",
            path.display()
        )));
    }
    // The checksum covers every byte but its own four.
    let covered = size - 4;
    let mut crc = Crc32c::new();
    let mut head = Vec::new();
    let mut trailer = [0u8; TRAILER_LEN];
    let mut buf = vec![0u8; READ_BYTES];
    let mut at = 0u64;
    while at < size {
        let n = file
            .read(&mut buf)
            .map_err(|e| Error::io("read", path, e))?;
        if n == 0 {
            return Err(corrupt(format!(
                "{} ended early (it changed?)",
                path.display()
            )));
        }
        let piece = &buf[..n];
        let end = at + n as u64;
        if end > size {
            return Err(corrupt(format!(
                "{} grew while it was read",
                path.display()
            )));
        }
        let crc_part = usize::try_from(covered.saturating_sub(at).min(n as u64)).unwrap_or(n);
        crc.update(&piece[..crc_part]);
        if head.len() < PREAMBLE_LEN + MAX_HEADER_BYTES {
            let room = PREAMBLE_LEN + MAX_HEADER_BYTES - head.len();
            head.extend_from_slice(&piece[..room.min(n)]);
        }
        // The last TRAILER_LEN bytes: pair count and checksum.
        let trailer_from = size - TRAILER_LEN as u64;
        for pos in at.max(trailer_from)..end {
            let (t, p) = ((pos - trailer_from) as usize, (pos - at) as usize);
            trailer[t] = piece[p];
        }
        at = end;
    }
    let stored = u32::from_be_bytes([trailer[8], trailer[9], trailer[10], trailer[11]]);
    if crc.value() != stored {
        return Err(corrupt(format!(
            "{}: checksum mismatch (the file says {stored:08x}, its bytes give {:08x}): damaged or truncated",
            path.display(),
            crc.value()
        )));
    }
    if &head[..8] != MAGIC {
        return Err(corrupt(format!(
            "{} is not an Orion snapshot (bad magic)",
            path.display()
        )));
    }
    let version = u32::from_be_bytes([head[8], head[9], head[10], head[11]]);
    if version != FORMAT_VERSION {
        return Err(corrupt(format!(
            "{}: unsupported snapshot format version {version} (expected {FORMAT_VERSION})",
            path.display()
        )));
    }
    let header_len = u32::from_be_bytes([head[12], head[13], head[14], head[15]]) as usize;
    if header_len > MAX_HEADER_BYTES {
        return Err(corrupt(format!(
            "{}: header of {header_len} bytes is over the {MAX_HEADER_BYTES}-byte bound",
            path.display()
        )));
    }
    if (PREAMBLE_LEN + header_len) as u64 > size - TRAILER_LEN as u64 {
        return Err(corrupt(format!(
            "{}: header runs past the end",
            path.display()
        )));
    }
    let meta = decode(
        "snapshot header",
        &head[PREAMBLE_LEN..PREAMBLE_LEN + header_len],
    )?;
    let pairs = u64::from_be_bytes([
        trailer[0], trailer[1], trailer[2], trailer[3], trailer[4], trailer[5], trailer[6],
        trailer[7],
    ]);
    Ok(BackupInfo {
        meta,
        pairs,
        bytes: size,
        crc32c: stored,
    })
}

/// Calls `each` with every key/value pair of the backup at `path`, in order, after
/// [`verify_file`] has checked it (`info`). Each length is checked against what is
/// left of the file before anything is allocated, and the count against the trailer.
pub fn read_pairs<N: Node>(
    path: &Path,
    info: &BackupInfo<N>,
    mut each: impl FnMut(&[u8], &[u8]) -> Result<()>,
) -> Result<u64> {
    let mut file = BufReader::with_capacity(READ_BYTES, open_file(path)?);
    let mut preamble = [0u8; PREAMBLE_LEN];
    let read = |file: &mut BufReader<File>, buf: &mut [u8]| {
        file.read_exact(buf).map_err(|e| Error::io("read", path, e))
    };
    read(&mut file, &mut preamble)?;
    let header_len = u32::from_be_bytes([preamble[12], preamble[13], preamble[14], preamble[15]]);
    let mut header = vec![0u8; header_len as usize];
    read(&mut file, &mut header)?;
    let body_end = info.bytes - TRAILER_LEN as u64;
    let mut at = (PREAMBLE_LEN + header.len()) as u64;
    let mut count = 0u64;
    let take = |file: &mut BufReader<File>, at: &mut u64| -> Result<Vec<u8>> {
        if body_end - *at < 4 {
            return Err(corrupt("pair runs past the end"));
        }
        let mut len = [0u8; 4];
        read(file, &mut len)?;
        let len = u64::from(u32::from_be_bytes(len));
        *at += 4;
        if body_end - *at < len {
            return Err(corrupt("pair runs past the end"));
        }
        let mut chunk = vec![0u8; usize::try_from(len).map_err(|_| corrupt("pair too large"))?];
        read(file, &mut chunk)?;
        *at += len;
        Ok(chunk)
    };
    while at < body_end {
        let key = take(&mut file, &mut at)?;
        let value = take(&mut file, &mut at)?;
        each(&key, &value)?;
        count += 1;
    }
    if count != info.pairs {
        return Err(corrupt(format!(
            "expected {} pairs, found {count}",
            info.pairs
        )));
    }
    Ok(count)
}

/// A new store being filled from a backup. Nothing in its folder is usable until
/// [`Seeder::finish`]; callers build it in a staging folder and move it into place.
pub struct Seeder {
    db: DB,
    dir: PathBuf,
    batch: WriteBatch,
    pairs: u64,
}

impl Seeder {
    /// Creates the store's database in `dir`, which must not hold one.
    pub fn create(dir: &Path) -> Result<Self> {
        let path = dir.join("db");
        if path.exists() {
            return Err(Error::io(
                "create",
                &path,
                std::io::Error::new(std::io::ErrorKind::AlreadyExists, "a database is there"),
            ));
        }
        std::fs::create_dir_all(dir).map_err(|e| Error::io("create", dir, e))?;
        Ok(Seeder {
            db: db::open(&path)?,
            dir: dir.to_path_buf(),
            batch: WriteBatch::default(),
            pairs: 0,
        })
    }

    /// Adds one state-machine pair.
    pub fn put(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        self.batch.put_cf(cf(&self.db, CF_SM)?, key, value);
        self.pairs += 1;
        if self.batch.size_in_bytes() >= SEED_BATCH_BYTES {
            let batch = std::mem::take(&mut self.batch);
            self.db.write(batch)?;
        }
        Ok(())
    }

    /// The pairs added so far.
    pub fn pairs(&self) -> u64 {
        self.pairs
    }

    /// Records the state machine as applied up to `last_applied` with `membership`,
    /// the log as purged up to it (so the next entry is the one after), and `vote`;
    /// then syncs and closes the database. Returns the store's folder.
    pub fn finish<N>(
        mut self,
        last_applied: LogId<u64>,
        membership: StoredMembership<u64, N>,
        vote: Vote<u64>,
    ) -> Result<PathBuf>
    where
        N: Node + serde::Serialize,
    {
        let db = &self.db;
        let sm_meta = cf(db, CF_SM_META)?;
        let meta = cf(db, CF_META)?;
        let batch = &mut self.batch;
        batch.put_cf(
            sm_meta,
            LAST_APPLIED,
            encode("last applied log id", &last_applied)?,
        );
        batch.put_cf(
            sm_meta,
            LAST_MEMBERSHIP,
            encode("last membership", &membership)?,
        );
        batch.put_cf(
            meta,
            LAST_PURGED,
            encode("last purged log id", &last_applied)?,
        );
        batch.put_cf(meta, COMMITTED, encode("committed log id", &last_applied)?);
        batch.put_cf(meta, VOTE, encode("vote", &vote)?);
        let batch = std::mem::take(&mut self.batch);
        let mut opts = WriteOptions::default();
        opts.set_sync(true);
        self.db.write_opt(batch, &opts)?;
        self.db.flush_wal(true)?;
        for name in [CF_SM, CF_SM_META, CF_META] {
            self.db.flush_cf(cf(&self.db, name)?)?;
        }
        Ok(self.dir)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use openraft::{BasicNode, CommittedLeaderId, Membership};

    use super::*;

    fn write_state(dir: &Path, pairs: &[(&[u8], &[u8])]) -> Result<StateReader> {
        let db = std::sync::Arc::new(db::open(&dir.join("db"))?);
        let sm = cf(&db, CF_SM)?;
        for (k, v) in pairs {
            db.put_cf(sm, k, v)?;
        }
        let id = LogId::new(CommittedLeaderId::new(4, 2), 77);
        db.put_cf(
            cf(&db, CF_SM_META)?,
            LAST_APPLIED,
            encode("last applied log id", &id)?,
        )?;
        Ok(StateReader::new(db))
    }

    fn tmp() -> tempfile::TempDir {
        tempfile::tempdir().expect("temp dir")
    }

    #[test]
    fn export_verify_read_and_seed_round_trip() -> Result<()> {
        let dir = tmp();
        let big = vec![9u8; 3000];
        let pairs: Vec<(&[u8], &[u8])> = vec![(b"a", b"1"), (b"b", &big), (b"c", b"")];
        let reader = write_state(&dir.path().join("src"), &pairs)?;
        let mut stream = Vec::new();
        let mut pieces = 0;
        let info = export::<BasicNode>(&reader, 1024, |p| {
            pieces += 1;
            stream.extend(p);
            true
        })?
        .expect("not stopped");
        assert!(pieces > 2, "streamed in pieces");
        assert_eq!(info.revision(), 77);
        assert_eq!(info.term(), 4);
        assert_eq!(info.bytes, stream.len() as u64);
        // The stream is a snapshot the store itself reads.
        let decoded = crate::snapshot_format::decode_snapshot::<BasicNode>(&stream)?;
        assert_eq!(decoded.pairs()?.len(), 3);

        let file = dir.path().join("backup.snap");
        std::fs::write(&file, &stream).map_err(|e| Error::io("write", &file, e))?;
        let checked = verify_file::<BasicNode>(&file)?;
        assert_eq!(checked.pairs, 3);
        assert_eq!(checked.crc32c, info.crc32c);
        assert!(checked.created_at_millis().is_some());
        let mut read = Vec::new();
        read_pairs(&file, &checked, |k, v| {
            read.push((k.to_vec(), v.to_vec()));
            Ok(())
        })?;
        let expected: Vec<(Vec<u8>, Vec<u8>)> = pairs
            .iter()
            .map(|(k, v)| (k.to_vec(), v.to_vec()))
            .collect();
        assert_eq!(read, expected);

        let mut seeder = Seeder::create(&dir.path().join("dst"))?;
        for (k, v) in &read {
            seeder.put(k, v)?;
        }
        let last = checked.meta.last_log_id.expect("log id");
        let membership = Membership::new(
            vec![BTreeSet::from([1])],
            BTreeMap::from([(1, BasicNode::default())]),
        );
        let dst = seeder.finish(
            last,
            StoredMembership::new(Some(last), membership),
            Vote::new(4, 1),
        )?;
        assert!(
            Seeder::create(&dst).is_err(),
            "a second seed into one folder"
        );
        let db = db::open(&dst.join("db"))?;
        assert_eq!(db.get_cf(cf(&db, CF_SM)?, b"b")?, Some(big));
        Ok(())
    }

    #[test]
    fn damaged_files_are_refused_with_the_reason() -> Result<()> {
        let dir = tmp();
        let reader = write_state(&dir.path().join("src"), &[(b"k", b"v")])?;
        let mut stream = Vec::new();
        export::<BasicNode>(&reader, 1 << 20, |p| {
            stream.extend(p);
            true
        })?;
        let file = dir.path().join("f");
        let check = |bytes: &[u8]| -> String {
            std::fs::write(&file, bytes).expect("write");
            match verify_file::<BasicNode>(&file) {
                Ok(_) => "accepted".into(),
                Err(e) => e.to_string(),
            }
        };
        assert!(check(&stream[..stream.len() - 1]).contains("checksum"));
        assert!(check(b"short").contains("too short"));
        for i in 0..stream.len() {
            let mut damaged = stream.clone();
            damaged[i] ^= 0x10;
            assert_ne!(check(&damaged), "accepted", "flip at byte {i}");
        }
        Ok(())
    }

    #[test]
    fn an_export_stops_when_its_receiver_goes_away() -> Result<()> {
        let dir = tmp();
        let reader = write_state(&dir.path().join("src"), &[(b"k", &[1u8; 4096])])?;
        assert!(export::<BasicNode>(&reader, 16, |_| false)?.is_none());
        Ok(())
    }
}
