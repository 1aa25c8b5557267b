//! Start-up recovery: read every segment, keep every record whose own checksum is good, and say
//! exactly which sequence numbers are gone.
//!
//! Rules:
//! - Reading a segment stops at anything that is not a whole, valid record (cut short, wrong
//!   checksum, a sequence number not above the previous one) and resumes at the next offset where
//!   a valid record with a later sequence number starts (see `Cursor::resync`). So one damaged
//!   record costs that record, not the rest of the segment.
//! - Bad bytes at the very end of the *last* segment, with no valid record after them, are a torn
//!   tail: a crash mid-write, never acknowledged. The file is cut at their start.
//! - Any other bad bytes are damage. In [`Mode::Repair`] (start-up, `spool repair`) the segment
//!   is rewritten with its intact records (written to a temporary file, fsynced, renamed over),
//!   and the original is first hard-linked into `<spool>/quarantine/` for inspection.
//! - Losses are the gaps in the surviving sequence numbers above the checkpoint (records at or
//!   below it are in the store already): inside a damaged segment, at the end of one, or where a
//!   whole segment file is missing. Each is reported with its range and cause.
//! - [`Mode::Inspect`] (`spool verify`) reads the same way and reports the same, changing nothing.

use std::fs::{self, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

use super::salvage::{read_segment, rewrite};
use super::segment::{self, MAGIC};
use super::{Record, Seq};

/// Whether recovery may change files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Cut torn tails, rewrite damaged segments without their bad bytes, quarantine the originals.
    Repair,
    /// Read and report only.
    Inspect,
}

#[derive(Debug, thiserror::Error)]
pub enum RecoveryError {
    #[error("cannot read or repair the spool at {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

/// Bytes of a segment that are not whole, valid records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadBytes {
    pub start: u64,
    pub end: u64,
    pub reason: String,
}

/// Sequence numbers that are neither in the store nor in the spool any more.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loss {
    pub first: u64,
    pub last: u64,
    pub cause: String,
}

impl Loss {
    pub fn count(&self) -> u64 {
        self.last - self.first + 1
    }
}

impl std::fmt::Display for Loss {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.count() {
            1 => write!(f, "sequence {} ({})", self.first, self.cause),
            n => write!(f, "sequences {}-{} ({n} records; {})", self.first, self.last, self.cause),
        }
    }
}

/// What recovery found in one segment, and what it did about it.
#[derive(Debug, Clone)]
pub struct SegmentReport {
    pub path: PathBuf,
    pub records: u64,
    /// The first and last sequence numbers it holds (intact records only).
    pub seqs: Option<(u64, u64)>,
    pub bad: Vec<BadBytes>,
    /// What was (or, inspecting, would be) done: cut, rewritten, removed.
    pub action: Option<String>,
    /// The only bad bytes are a torn tail of the last segment (a crash mid-write, not damage).
    pub torn_tail: bool,
}

/// What recovery found.
#[derive(Debug)]
pub struct Scan {
    /// The segments kept, with their first sequence number (their name) and size in bytes.
    pub segments: Vec<(u64, u64)>,
    /// The highest sequence number in the spool (the checkpoint when it holds none beyond it).
    pub last: Seq,
    /// Set when a torn tail was cut: a sentence saying what was cut.
    pub truncated: Option<String>,
    pub losses: Vec<Loss>,
    pub reports: Vec<SegmentReport>,
    /// Where damaged originals were put.
    pub quarantined: Vec<PathBuf>,
}

impl Scan {
    /// Records lost, in all.
    pub fn lost(&self) -> u64 {
        self.losses.iter().map(Loss::count).sum()
    }

    /// Nothing damaged, nothing lost (a torn tail aside).
    pub fn is_clean(&self) -> bool {
        self.losses.is_empty() && self.reports.iter().all(|r| r.bad.is_empty() || r.torn_tail)
    }
}

/// Reads every segment in `dir`, calling `each` for every intact record. Gaps inside the `known`
/// ranges (lost and reported before) are not losses again.
pub(super) fn scan(
    dir: &Path,
    checkpoint: Seq,
    known: &[(u64, u64)],
    mode: Mode,
    mut each: impl FnMut(&Record),
) -> Result<Scan, RecoveryError> {
    let io_at = |path: &Path| {
        let path = path.to_owned();
        move |source| RecoveryError::Io { path, source }
    };
    let found = segment::list(dir).map_err(io_at(dir))?;
    let count = found.len();
    let mut scan = Scan {
        segments: Vec::new(),
        last: checkpoint,
        truncated: None,
        losses: Vec::new(),
        reports: Vec::new(),
        quarantined: Vec::new(),
    };
    // The highest sequence number accounted for: in the store (the checkpoint) or read intact.
    let mut high = checkpoint.0;
    // Why records after `high` may be missing, when the previous segment ended in damage.
    let mut cause_after: Option<String> = None;
    for (i, (first, path)) in found.into_iter().enumerate() {
        let is_last = i + 1 == count;
        let size = fs::metadata(&path).map_err(io_at(&path))?.len();
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if is_last && size <= MAGIC.len() as u64 {
            // Created but never written: a crash while rolling.
            if mode == Mode::Repair {
                fs::remove_file(&path).map_err(io_at(&path))?;
            }
            continue;
        }
        let read = read_segment(&path, first, size, |record, damage| {
            if record.seq.0 > high + 1 {
                let cause = match damage {
                    Some(bad) => format!("damaged bytes {}..{} of {name}: {}", bad.start, bad.end, bad.reason),
                    None => cause_after
                        .take()
                        .unwrap_or_else(|| format!("missing before {name}: a segment file was removed")),
                };
                for (first, last) in uncovered(high + 1, record.seq.0 - 1, known) {
                    scan.losses.push(Loss { first, last, cause: cause.clone() });
                }
            }
            high = high.max(record.seq.0);
            cause_after = None;
            each(record);
        })
        .map_err(io_at(&path))?;
        let mut report = SegmentReport {
            path: path.clone(),
            records: read.records,
            seqs: read.seqs,
            bad: read.bad.clone(),
            action: None,
            torn_tail: false,
        };
        let mut kept = size;
        let tail_only = read.bad.len() == 1 && read.bad[0].end == size && read.bad[0].start > 0;
        if let Some(bad) = read.bad.last().filter(|b| b.end == size) {
            cause_after =
                Some(format!("damaged bytes {}..{} at the end of {name}: {}", bad.start, bad.end, bad.reason));
        }
        if is_last && tail_only {
            let bad = &read.bad[0];
            let cut = bad.end - bad.start;
            let note = format!(
                "cut a torn tail of {cut} bytes at byte {} of {} ({}); every record before it (up to sequence {high}) is kept",
                bad.start,
                path.display(),
                bad.reason
            );
            if mode == Mode::Repair {
                let file = OpenOptions::new().write(true).open(&path).map_err(io_at(&path))?;
                file.set_len(bad.start).and_then(|()| file.sync_all()).map_err(io_at(&path))?;
                tracing::warn!(segment = %path.display(), offset = bad.start, bytes_cut = cut, reason = %bad.reason, "spool recovery: {note}");
            }
            let verb = if mode == Mode::Repair { "cut" } else { "to cut (a crash mid-write, never acknowledged)" };
            report.action = Some(format!("torn tail: {cut} bytes at byte {} {verb}", bad.start));
            report.torn_tail = true;
            scan.truncated = Some(note);
            cause_after = None;
            kept = bad.start;
        } else if !read.bad.is_empty() {
            let verb = if mode == Mode::Repair { "rewritten" } else { "to rewrite" };
            report.action = Some(format!("{verb} with its {} intact records; original quarantined", read.records));
            if mode == Mode::Repair {
                let (quarantined, size) = rewrite(dir, &path, &read.good).map_err(io_at(&path))?;
                tracing::error!(
                    segment = %path.display(), quarantined = %quarantined.display(), intact_records = read.records,
                    damaged = ?read.bad.iter().map(|b| (b.start, b.end)).collect::<Vec<_>>(),
                    "spool recovery: a segment is damaged; kept its intact records and moved the original to quarantine"
                );
                scan.quarantined.push(quarantined);
                kept = size;
            }
        }
        scan.segments.push((first, kept));
        scan.reports.push(report);
    }
    scan.last = Seq(high);
    for loss in &scan.losses {
        tracing::error!(first = loss.first, last = loss.last, records = loss.count(), cause = %loss.cause, "spool recovery: records lost to damage");
    }
    Ok(scan)
}

/// The parts of `[first, last]` outside every range in `known`.
fn uncovered(first: u64, last: u64, known: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let mut parts = vec![(first, last)];
    for &(a, b) in known {
        parts = parts
            .into_iter()
            .flat_map(|(x, y)| {
                if b < x || a > y {
                    return vec![(x, y)];
                }
                let mut out = Vec::new();
                if a > x {
                    out.push((x, a - 1));
                }
                if b < y {
                    out.push((b + 1, y));
                }
                out
            })
            .collect();
    }
    parts
}

#[cfg(test)]
mod tests;
