//! Start-up recovery: check every segment, cut a torn tail, find where appending resumes.
//!
//! Rules: a bad record (short, failing its checksum) in the *last* segment is a torn tail from a
//! crash mid-write: the file is truncated at the record's start and a warning names the segment,
//! the offset and the bytes cut. A bad record anywhere else, or a sequence number out of order,
//! is damage recovery cannot explain: start-up fails with the file and offset, and nothing is
//! deleted.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};

use super::segment::{self, Cursor, CursorError};
use super::{Record, Seq};

#[derive(Debug, thiserror::Error)]
pub enum RecoveryError {
    #[error("cannot read the spool directory {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error(
        "spool segment {path} is damaged {detail}; it is not the last segment, so this is not a torn \
         write. Move the file out of the spool directory to start without its records"
    )]
    Damaged { path: PathBuf, detail: String },
}

/// What recovery found.
#[derive(Debug)]
pub struct Scan {
    /// The segments kept, with their first sequence number and size in bytes.
    pub segments: Vec<(u64, u64)>,
    /// The highest sequence number in the spool (the checkpoint when it holds none beyond it).
    pub last: Seq,
    /// Set when a torn tail was cut: a sentence saying what was cut.
    pub truncated: Option<String>,
}

/// Reads every segment in `dir`, calling `each` for every valid record.
pub fn scan(dir: &Path, checkpoint: Seq, mut each: impl FnMut(&Record)) -> Result<Scan, RecoveryError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| RecoveryError::Io { path, source }
    };
    let found = segment::list(dir).map_err(io(dir))?;
    let count = found.len();
    let mut segments = Vec::new();
    let mut last = checkpoint;
    let mut truncated = None;
    for (i, (first, path)) in found.into_iter().enumerate() {
        let is_last = i + 1 == count;
        let damaged = |detail: String| RecoveryError::Damaged { path: path.clone(), detail };
        let size = std::fs::metadata(&path).map_err(io(&path))?.len();
        let mut cursor = match Cursor::open(&path) {
            Ok(c) => c,
            Err(CursorError::NoMagic) if is_last => {
                // Created but never written: a crash while rolling.
                std::fs::remove_file(&path).map_err(io(&path))?;
                continue;
            }
            Err(CursorError::Io(e)) => return Err(io(&path)(e)),
            Err(e) => return Err(damaged(e.to_string())),
        };
        let mut expected = first;
        loop {
            match cursor.next(size) {
                Ok(Some(record)) => {
                    if record.seq.0 != expected {
                        return Err(damaged(format!(
                            "at byte {}: sequence {} where {expected} was expected",
                            cursor.offset, record.seq.0
                        )));
                    }
                    expected += 1;
                    each(&record);
                }
                Ok(None) => break,
                Err(CursorError::Bad { offset, reason }) if is_last => {
                    let file = OpenOptions::new().write(true).open(&path).map_err(io(&path))?;
                    file.set_len(offset).map_err(io(&path))?;
                    file.sync_all().map_err(io(&path))?;
                    let cut = size - offset;
                    let note = format!(
                        "cut a torn tail of {cut} bytes at byte {offset} of {} ({reason}); every record before it (up to sequence {}) is kept",
                        path.display(),
                        expected - 1
                    );
                    tracing::warn!(segment = %path.display(), offset, bytes_cut = cut, reason = %reason, "spool recovery: {note}");
                    truncated = Some(note);
                    break;
                }
                Err(CursorError::Io(e)) => return Err(io(&path)(e)),
                Err(e) => return Err(damaged(e.to_string())),
            }
        }
        if expected > first {
            last = last.max(Seq(expected - 1));
        }
        segments.push((first, cursor.offset));
    }
    Ok(Scan { segments, last, truncated })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spool::record;
    use crate::spool::{Delivery, segment::MAGIC};
    use bytes::Bytes;

    fn write(dir: &Path, seqs: std::ops::RangeInclusive<u64>) -> (PathBuf, Vec<u64>) {
        let path = segment::path(dir, *seqs.start());
        let mut out = MAGIC.to_vec();
        let mut ends = Vec::new();
        for s in seqs {
            record::encode(Seq(s), &Delivery::for_test(Bytes::from(format!("{{\"n\":{s}}}"))), &mut out);
            ends.push(out.len() as u64);
        }
        std::fs::write(&path, out).unwrap();
        (path, ends)
    }

    fn seqs(dir: &Path) -> (Vec<u64>, Scan) {
        let mut seen = Vec::new();
        let scan = scan(dir, Seq(0), |r| seen.push(r.seq.0)).unwrap();
        (seen, scan)
    }

    #[test]
    fn a_clean_spool_is_read_whole() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), 1..=3);
        write(dir.path(), 4..=5);
        let (seen, scan) = seqs(dir.path());
        assert_eq!(seen, [1, 2, 3, 4, 5]);
        assert_eq!(scan.last, Seq(5));
        assert!(scan.truncated.is_none());
    }

    #[test]
    fn a_torn_tail_is_cut_and_everything_before_it_kept() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), 1..=3);
        let (path, ends) = write(dir.path(), 4..=6);
        let cut_at = ends[1] + 5; // in the middle of record 6
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..cut_at as usize]).unwrap();
        let (seen, scan) = seqs(dir.path());
        assert_eq!(seen, [1, 2, 3, 4, 5]);
        assert_eq!(scan.last, Seq(5));
        let note = scan.truncated.unwrap();
        assert!(note.contains("5 bytes") && note.contains(&ends[1].to_string()), "{note}");
        assert_eq!(std::fs::metadata(&path).unwrap().len(), ends[1], "the file is cut at the record start");
    }

    #[test]
    fn a_corrupt_last_record_is_a_torn_tail_too() {
        let dir = tempfile::tempdir().unwrap();
        let (path, ends) = write(dir.path(), 1..=2);
        let mut bytes = std::fs::read(&path).unwrap();
        let i = ends[1] as usize - 2;
        bytes[i] ^= 0xff;
        std::fs::write(&path, bytes).unwrap();
        let (seen, scan) = seqs(dir.path());
        assert_eq!(seen, [1]);
        assert!(scan.truncated.is_some());
    }

    #[test]
    fn damage_before_the_last_segment_stops_start_up_and_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let (path, ends) = write(dir.path(), 1..=2);
        write(dir.path(), 3..=3);
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..ends[1] as usize - 1]).unwrap();
        let e = scan(dir.path(), Seq(0), |_| {}).unwrap_err().to_string();
        assert!(e.contains("wal-00000000000000000001.seg") && e.contains("Move the file"), "{e}");
        assert_eq!(std::fs::read(&path).unwrap().len(), ends[1] as usize - 1, "nothing is changed");
    }

    #[test]
    fn an_empty_spool_resumes_after_the_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let scan = scan(dir.path(), Seq(41), |_| {}).unwrap();
        assert_eq!(scan.last, Seq(41));
    }
}
