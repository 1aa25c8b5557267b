//! Segment files: naming, listing, and a cursor that reads records up to a byte limit.
//!
//! A segment is `<spool>/wal-<first seq, 20 digits>.seg`: the 8-byte magic `OHBWAL01`, then
//! records (see `record`) with consecutive sequence numbers starting at the one in its name.
//! The cursor reads with positioned reads and never past the limit it is given, so a reader
//! following the writer never sees bytes that are not yet fsynced.

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::Record;
use super::record::{self, DecodeError, HEADER_LEN};

pub(super) const MAGIC: &[u8; 8] = b"OHBWAL01";
/// Bytes read ahead at a time.
const READ_AHEAD: usize = 1024 * 1024;

pub(super) fn path(dir: &Path, first: u64) -> PathBuf {
    dir.join(format!("wal-{first:020}.seg"))
}

/// The segments in `dir`, ordered by their first sequence number.
pub(super) fn list(dir: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        let first = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix("wal-"))
            .and_then(|n| n.strip_suffix(".seg"))
            .and_then(|n| n.parse::<u64>().ok());
        if let Some(first) = first {
            out.push((first, path));
        }
    }
    out.sort();
    Ok(out)
}

/// Reading stopped at something that is not a whole, valid record.
#[derive(Debug, thiserror::Error)]
pub(super) enum CursorError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("at byte {offset}: {reason}")]
    Bad { offset: u64, reason: DecodeError },
    #[error("the file does not start with the segment magic")]
    NoMagic,
}

/// Sequential reader over one segment.
#[derive(Debug)]
pub(super) struct Cursor {
    file: File,
    buf: Vec<u8>,
    /// File offset of `buf[0]`.
    buf_at: u64,
    /// Offset of the next record.
    pub offset: u64,
}

impl Cursor {
    /// Opens a segment and checks its magic; `limit` bounds even that read.
    pub(super) fn open(path: &Path) -> Result<Cursor, CursorError> {
        let file = File::open(path)?;
        let mut magic = [0; 8];
        match file.read_exact_at(&mut magic, 0) {
            Ok(()) if &magic == MAGIC => {}
            Ok(()) => return Err(CursorError::NoMagic),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Err(CursorError::NoMagic),
            Err(e) => return Err(e.into()),
        }
        Ok(Cursor { file, buf: Vec::new(), buf_at: 0, offset: MAGIC.len() as u64 })
    }

    /// Opens a segment whose magic may be damaged: reading starts after where the magic would be.
    pub(super) fn open_unchecked(path: &Path) -> io::Result<Cursor> {
        Ok(Cursor { file: File::open(path)?, buf: Vec::new(), buf_at: 0, offset: MAGIC.len() as u64 })
    }

    /// The offset of the first whole, valid record at or after `from` (below `limit`) whose
    /// sequence number follows `after`: where reading resumes past damage. A candidate must have a
    /// plausible length and sequence number before its checksum is computed, so the search costs
    /// about one read of the damaged stretch.
    pub(super) fn resync(&mut self, from: u64, limit: u64, after: u64) -> io::Result<Option<u64>> {
        let mut at = from;
        while at + (HEADER_LEN + 8) as u64 <= limit {
            if self.valid_at(at, limit, after)? {
                return Ok(Some(at));
            }
            at += 1;
        }
        Ok(None)
    }

    /// A record starts at `at`: its length fits below `limit`, its number is above `after` and no
    /// further on than records of the smallest size could reach, and its checksum matches.
    fn valid_at(&mut self, at: u64, limit: u64, after: u64) -> io::Result<bool> {
        let head = match self.bytes(at, HEADER_LEN + 8, limit) {
            Ok(h) => h,
            Err(CursorError::Io(e)) => return Err(e),
            Err(_) => return Ok(false),
        };
        let Ok((len, crc)) = record::decode_header(head) else { return Ok(false) };
        let seq = u64::from_le_bytes(head[HEADER_LEN..HEADER_LEN + 8].try_into().unwrap_or([0; 8]));
        let end = at + (HEADER_LEN + len) as u64;
        let most = after.saturating_add((limit - at) / record::MIN_RECORD_LEN + 1);
        if end > limit || seq <= after || seq > most {
            return Ok(false);
        }
        match self.bytes(at + HEADER_LEN as u64, len, limit) {
            Ok(payload) => Ok(record::decode_payload(payload, crc).is_ok()),
            Err(CursorError::Io(e)) => Err(e),
            Err(_) => Ok(false),
        }
    }

    /// The file's current length (of the open file: valid even after the path is deleted).
    pub(super) fn len(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    /// The next record wholly below `limit`; `None` exactly at `limit`.
    pub(super) fn next(&mut self, limit: u64) -> Result<Option<Record>, CursorError> {
        let at = self.offset;
        if at >= limit {
            return Ok(None);
        }
        let bad = |reason| CursorError::Bad { offset: at, reason };
        if at + HEADER_LEN as u64 > limit {
            return Err(bad(DecodeError::ShortHeader));
        }
        let header = self.bytes(at, HEADER_LEN, limit)?;
        let (len, crc) = record::decode_header(header).map_err(bad)?;
        let end = at + (HEADER_LEN + len) as u64;
        if end > limit {
            return Err(bad(DecodeError::ShortPayload));
        }
        let payload = self.bytes(at + HEADER_LEN as u64, len, limit)?;
        let record = record::decode_payload(payload, crc).map_err(bad)?;
        self.offset = end;
        Ok(Some(record))
    }

    /// `len` bytes at `at`, reading ahead up to `limit`.
    fn bytes(&mut self, at: u64, len: usize, limit: u64) -> Result<&[u8], CursorError> {
        let buf_end = self.buf_at + self.buf.len() as u64;
        if at < self.buf_at || at + len as u64 > buf_end {
            let want = (limit - at).min(len.max(READ_AHEAD) as u64) as usize;
            self.buf.resize(want, 0);
            let mut filled = 0;
            while filled < want {
                match self.file.read_at(&mut self.buf[filled..], at + filled as u64) {
                    Ok(0) => break,
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e.into()),
                }
            }
            self.buf.truncate(filled);
            self.buf_at = at;
            if filled < len {
                return Err(CursorError::Bad { offset: at, reason: DecodeError::ShortPayload });
            }
        }
        let start = (at - self.buf_at) as usize;
        Ok(&self.buf[start..start + len])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spool::{Delivery, Seq};
    use bytes::Bytes;

    fn write_segment(path: &Path, seqs: std::ops::RangeInclusive<u64>) -> Vec<u64> {
        let mut out = MAGIC.to_vec();
        let mut ends = Vec::new();
        for s in seqs {
            let d = Delivery::for_test(Bytes::from(format!("body {s}")));
            record::encode(Seq(s), &d, &mut out);
            ends.push(out.len() as u64);
        }
        fs::write(path, out).unwrap();
        ends
    }

    #[test]
    fn reads_up_to_the_limit_and_no_further() {
        let dir = tempfile::tempdir().unwrap();
        let p = path(dir.path(), 5);
        let ends = write_segment(&p, 5..=7);
        let mut c = Cursor::open(&p).unwrap();
        assert_eq!(c.next(ends[1]).unwrap().unwrap().seq, Seq(5));
        assert_eq!(c.next(ends[1]).unwrap().unwrap().delivery.body, "body 6");
        assert!(c.next(ends[1]).unwrap().is_none(), "stops at the limit");
        assert_eq!(c.next(ends[2]).unwrap().unwrap().seq, Seq(7));
    }

    #[test]
    fn a_cut_record_reports_where_it_starts() {
        let dir = tempfile::tempdir().unwrap();
        let p = path(dir.path(), 1);
        let ends = write_segment(&p, 1..=2);
        let mut c = Cursor::open(&p).unwrap();
        c.next(ends[1] - 3).unwrap();
        match c.next(ends[1] - 3) {
            Err(CursorError::Bad { offset, reason: DecodeError::ShortPayload }) => assert_eq!(offset, ends[0]),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn listing_orders_by_sequence_and_ignores_other_files() {
        let dir = tempfile::tempdir().unwrap();
        for first in [100, 2, 30] {
            fs::write(path(dir.path(), first), MAGIC).unwrap();
        }
        fs::write(dir.path().join("checkpoint.json"), "{}").unwrap();
        let firsts: Vec<_> = list(dir.path()).unwrap().into_iter().map(|(f, _)| f).collect();
        assert_eq!(firsts, [2, 30, 100]);
    }
}
