//! The snapshot byte format.
//!
//! ```text
//! "ORIONSNP"            8 bytes  magic
//! version               u32 BE   FORMAT_VERSION
//! header length         u32 BE
//! header                JSON     SnapshotMeta (last log id, membership, snapshot id)
//! pairs, each:          u32 BE key length, key, u32 BE value length, value
//!                                (the whole `sm` column family, in key order)
//! pair count            u64 BE
//! checksum              u32 BE   CRC-32C of every byte before it
//! ```
//!
//! The checksum is verified before anything else is read, so a damaged or truncated
//! buffer is refused before it can touch the state machine. All integers are
//! big-endian.

use openraft::{Node, SnapshotMeta};

use crate::checksum::{crc32c, Crc32c};
use crate::codec::{decode, encode};
use crate::error::{Error, Result};

pub(crate) const MAGIC: &[u8; 8] = b"ORIONSNP";
pub(crate) const FORMAT_VERSION: u32 = 1;
/// Magic, version and header length.
pub(crate) const PREAMBLE_LEN: usize = 8 + 4 + 4;
/// Pair count and checksum.
pub(crate) const TRAILER_LEN: usize = 8 + 4;

/// Serializes one snapshot: into memory whole, or as a stream of pieces taken
/// with [`SnapshotEncoder::take`] as it grows (a backup), with the checksum kept
/// over what was taken.
pub(crate) struct SnapshotEncoder {
    buf: Vec<u8>,
    pairs: u64,
    /// The checksum of the bytes already taken.
    taken: Crc32c,
}

impl SnapshotEncoder {
    pub(crate) fn new<N: Node>(meta: &SnapshotMeta<u64, N>) -> Result<Self> {
        let header = encode("snapshot header", meta)?;
        let mut buf = Vec::with_capacity(PREAMBLE_LEN + header.len() + TRAILER_LEN);
        buf.extend_from_slice(MAGIC);
        buf.extend_from_slice(&FORMAT_VERSION.to_be_bytes());
        buf.extend_from_slice(&len_u32(header.len(), "snapshot header")?.to_be_bytes());
        buf.extend_from_slice(&header);
        Ok(Self {
            buf,
            pairs: 0,
            taken: Crc32c::new(),
        })
    }

    /// How many bytes are buffered, not yet taken.
    pub(crate) fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The bytes buffered so far, to be sent on; the checksum covers them.
    pub(crate) fn take(&mut self) -> Vec<u8> {
        self.taken.update(&self.buf);
        std::mem::take(&mut self.buf)
    }

    /// The pairs pushed so far.
    pub(crate) fn pairs(&self) -> u64 {
        self.pairs
    }

    pub(crate) fn push(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        self.buf
            .extend_from_slice(&len_u32(key.len(), "snapshot key")?.to_be_bytes());
        self.buf.extend_from_slice(key);
        self.buf
            .extend_from_slice(&len_u32(value.len(), "snapshot value")?.to_be_bytes());
        self.buf.extend_from_slice(value);
        self.pairs += 1;
        Ok(())
    }

    /// The rest of the snapshot: what is buffered, the pair count and the checksum.
    pub(crate) fn finish(self) -> Vec<u8> {
        self.finish_with_crc().0
    }

    /// [`SnapshotEncoder::finish`], and the checksum it ends with.
    pub(crate) fn finish_with_crc(mut self) -> (Vec<u8>, u32) {
        self.buf.extend_from_slice(&self.pairs.to_be_bytes());
        let mut crc = self.taken;
        crc.update(&self.buf);
        let crc = crc.value();
        self.buf.extend_from_slice(&crc.to_be_bytes());
        (self.buf, crc)
    }
}

fn len_u32(len: usize, what: &str) -> Result<u32> {
    u32::try_from(len)
        .map_err(|_| Error::CorruptSnapshot(format!("{what} of {len} bytes is too large")))
}

/// A snapshot whose checksum and header have been verified.
pub(crate) struct DecodedSnapshot<'a, N: Node> {
    pub(crate) meta: SnapshotMeta<u64, N>,
    body: &'a [u8],
    pair_count: u64,
}

/// Verify `bytes` and read its header.
pub(crate) fn decode_snapshot<N: Node>(bytes: &[u8]) -> Result<DecodedSnapshot<'_, N>> {
    let corrupt = |why: &str| Error::CorruptSnapshot(why.to_owned());
    if bytes.len() < PREAMBLE_LEN + TRAILER_LEN {
        return Err(corrupt("too short to be a snapshot"));
    }
    let (covered, stored_crc) = bytes.split_at(bytes.len() - 4);
    if crc32c(covered) != be_u32(stored_crc)? {
        return Err(corrupt("checksum mismatch"));
    }
    if &bytes[..8] != MAGIC {
        return Err(corrupt("not an Orion snapshot (bad magic)"));
    }
    let version = be_u32(&bytes[8..12])?;
    if version != FORMAT_VERSION {
        return Err(Error::CorruptSnapshot(format!(
            "unsupported snapshot format version {version} (expected {FORMAT_VERSION})"
        )));
    }
    let header_len = be_u32(&bytes[12..16])? as usize;
    let count_at = covered.len() - 8;
    let header_end = PREAMBLE_LEN
        .checked_add(header_len)
        .filter(|end| *end <= count_at)
        .ok_or_else(|| corrupt("header runs past the end"))?;
    let meta = decode("snapshot header", &bytes[PREAMBLE_LEN..header_end])?;
    let pair_count = u64::from_be_bytes(
        covered[count_at..]
            .try_into()
            .map_err(|_| corrupt("bad pair count"))?,
    );
    Ok(DecodedSnapshot {
        meta,
        body: &bytes[header_end..count_at],
        pair_count,
    })
}

impl<'a, N: Node> DecodedSnapshot<'a, N> {
    /// Every key/value pair, checked to fill the body exactly.
    pub(crate) fn pairs(&self) -> Result<Vec<(&'a [u8], &'a [u8])>> {
        let mut rest = self.body;
        let mut pairs = Vec::new();
        while !rest.is_empty() {
            let key = take_chunk(&mut rest)?;
            let value = take_chunk(&mut rest)?;
            pairs.push((key, value));
        }
        if pairs.len() as u64 != self.pair_count {
            return Err(Error::CorruptSnapshot(format!(
                "expected {} pairs, found {}",
                self.pair_count,
                pairs.len()
            )));
        }
        Ok(pairs)
    }
}

/// Split a length-prefixed chunk off the front of `rest`.
fn take_chunk<'a>(rest: &mut &'a [u8]) -> Result<&'a [u8]> {
    let truncated = || Error::CorruptSnapshot("pair runs past the end".to_owned());
    if rest.len() < 4 {
        return Err(truncated());
    }
    let (len, tail) = rest.split_at(4);
    let len = be_u32(len)? as usize;
    if tail.len() < len {
        return Err(truncated());
    }
    let (chunk, tail) = tail.split_at(len);
    *rest = tail;
    Ok(chunk)
}

fn be_u32(bytes: &[u8]) -> Result<u32> {
    bytes
        .try_into()
        .map(u32::from_be_bytes)
        .map_err(|_| Error::CorruptSnapshot("bad length field".to_owned()))
}

#[cfg(test)]
mod tests {
    use openraft::{BasicNode, LogId, SnapshotMeta, StoredMembership};

    use super::*;

    fn meta() -> SnapshotMeta<u64, BasicNode> {
        SnapshotMeta {
            last_log_id: Some(LogId::new(openraft::CommittedLeaderId::new(3, 1), 42)),
            last_membership: StoredMembership::default(),
            snapshot_id: "3-42-test".to_owned(),
        }
    }

    fn sample() -> Vec<u8> {
        let mut enc = SnapshotEncoder::new(&meta()).expect("header");
        enc.push(b"a", b"1").expect("pair");
        enc.push(b"", b"").expect("empty pair");
        enc.push(b"key", &[7u8; 1000]).expect("pair");
        enc.finish()
    }

    #[test]
    fn round_trip() {
        let bytes = sample();
        let decoded = decode_snapshot::<BasicNode>(&bytes).expect("decode");
        assert_eq!(decoded.meta, meta());
        let pairs = decoded.pairs().expect("pairs");
        assert_eq!(pairs.len(), 3);
        assert_eq!(pairs[0], (&b"a"[..], &b"1"[..]));
        assert_eq!(pairs[2].1.len(), 1000);
    }

    #[test]
    fn taken_in_pieces_it_is_the_same_snapshot() {
        let mut enc = SnapshotEncoder::new(&meta()).expect("header");
        let mut streamed = enc.take();
        enc.push(b"a", b"1").expect("pair");
        streamed.extend(enc.take());
        enc.push(b"", b"").expect("empty pair");
        enc.push(b"key", &[7u8; 1000]).expect("pair");
        streamed.extend(enc.take());
        streamed.extend(enc.finish());
        assert_eq!(streamed, sample());
    }

    #[test]
    fn every_single_byte_flip_is_refused() {
        let bytes = sample();
        for i in 0..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[i] ^= 0x01;
            let refused = decode_snapshot::<BasicNode>(&damaged).and_then(|d| d.pairs());
            assert!(refused.is_err(), "flip at byte {i} was accepted");
        }
    }

    #[test]
    fn truncation_and_garbage_are_refused() {
        let bytes = sample();
        for len in 0..bytes.len() {
            assert!(decode_snapshot::<BasicNode>(&bytes[..len]).is_err());
        }
        assert!(decode_snapshot::<BasicNode>(&[0u8; 64]).is_err());
    }
}
