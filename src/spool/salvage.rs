//! Salvaging one segment: reading it through its damage (resuming at the next valid record, see
//! `Cursor::resync`) and rewriting it with only its intact records, the original kept in
//! quarantine. The policy (what is a torn tail, what is lost) is `recovery`'s.

use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::Record;
use super::recovery::BadBytes;
use super::segment::{Cursor, CursorError, MAGIC};
use crate::fsutil::sync_dir;

/// One segment read through its damage.
pub(super) struct SegmentRead {
    pub records: u64,
    pub seqs: Option<(u64, u64)>,
    pub bad: Vec<BadBytes>,
    /// Byte ranges of intact records, merged where adjacent.
    pub good: Vec<(u64, u64)>,
}

/// Reads a segment's intact records in order; `each` also gets the damage just before a record.
pub(super) fn read_segment(
    path: &Path,
    first: u64,
    size: u64,
    mut each: impl FnMut(&Record, Option<&BadBytes>),
) -> io::Result<SegmentRead> {
    let mut read = SegmentRead { records: 0, seqs: None, bad: Vec::new(), good: Vec::new() };
    let mut cursor = match Cursor::open(path) {
        Ok(c) => c,
        Err(CursorError::Io(e)) => return Err(e),
        Err(e) => {
            read.bad.push(BadBytes { start: 0, end: MAGIC.len() as u64, reason: e.to_string() });
            Cursor::open_unchecked(path)?
        }
    };
    let mut prev: Option<u64> = None;
    let mut damage_before = !read.bad.is_empty();
    loop {
        let at = cursor.offset;
        let reason = match cursor.next(size) {
            Ok(Some(r)) if prev.is_some_and(|p| r.seq.0 <= p) => {
                format!("sequence {} does not follow {}", r.seq.0, prev.unwrap_or(0))
            }
            Ok(Some(r)) => {
                match read.good.last_mut() {
                    Some(span) if span.1 == at => span.1 = cursor.offset,
                    _ => read.good.push((at, cursor.offset)),
                }
                each(&r, damage_before.then(|| read.bad.last()).flatten());
                damage_before = false;
                read.records += 1;
                read.seqs = Some((read.seqs.map_or(r.seq.0, |s| s.0), r.seq.0));
                prev = Some(r.seq.0);
                continue;
            }
            Ok(None) => break,
            Err(CursorError::Io(e)) => return Err(e),
            Err(CursorError::Bad { reason, .. }) => reason.to_string(),
            Err(e) => e.to_string(),
        };
        let after = prev.unwrap_or(first.saturating_sub(1));
        match cursor.resync(at + 1, size, after)? {
            Some(next) => {
                read.bad.push(BadBytes { start: at, end: next, reason });
                damage_before = true;
                cursor.offset = next;
            }
            None => {
                read.bad.push(BadBytes { start: at, end: size, reason });
                break;
            }
        }
    }
    Ok(read)
}

/// Replaces a damaged segment by its intact records; returns where the original went and the
/// new size. Crash-safe: the original is linked into quarantine first, and the rewritten file
/// replaces it by rename only once it is fsynced.
pub(super) fn rewrite(dir: &Path, path: &Path, good: &[(u64, u64)]) -> io::Result<(PathBuf, u64)> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let target = quarantine_path(dir, &name)?;
    let quarantine = dir.join("quarantine");
    if fs::hard_link(path, &target).is_err() {
        fs::copy(path, &target)?;
    }
    sync_dir(&quarantine)?;
    let tmp = path.with_extension("seg.repair");
    let source = File::open(path)?;
    let mut out = File::create(&tmp)?;
    out.write_all(MAGIC)?;
    let mut size = MAGIC.len() as u64;
    let mut buf = vec![0; 1 << 20];
    for &(start, end) in good {
        let mut at = start;
        while at < end {
            let n = ((end - at) as usize).min(buf.len());
            source.read_exact_at(&mut buf[..n], at)?;
            out.write_all(&buf[..n])?;
            at += n as u64;
        }
        size += end - start;
    }
    out.sync_all()?;
    fs::rename(&tmp, path)?;
    sync_dir(dir)?;
    Ok((target, size))
}

/// A free name for `name` in `<spool>/quarantine/` (created if missing): `name`, else `name.1`, ...
pub(super) fn quarantine_path(dir: &Path, name: &str) -> io::Result<PathBuf> {
    let quarantine = dir.join("quarantine");
    fs::create_dir_all(&quarantine)?;
    let mut target = quarantine.join(name);
    let mut n = 1;
    while target.exists() {
        target = quarantine.join(format!("{name}.{n}"));
        n += 1;
    }
    Ok(target)
}
