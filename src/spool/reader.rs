//! The reading side, owned by the batcher: records in sequence order, read back from the segment
//! files (so a backlog waits on disk, not in memory), never past the durable end of the log.
//!
//! It starts at checkpoint + 1, so after a restart it first replays what the store does not have
//! yet, then follows the writer. Sequence numbers that recovery found lost (a gap) are stepped
//! over: the reader never waits for a number that no segment holds. A record damaged after it
//! was written (found while reading, not at start-up) is stepped over the same way: an ERROR, the
//! lost range counted, and reading resumes at the next valid record.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::watch;

use super::segment::{self, Cursor, CursorError};
use super::{Durable, Record, Seq, Shared, SpoolError};
use crate::metrics;

pub struct SpoolReader {
    shared: Arc<Shared>,
    durable: watch::Receiver<Durable>,
    open: Option<OpenSegment>,
    /// The next sequence number to hand out.
    next: u64,
    /// Highest sequence number handed out, shared for start-up's replay wait.
    progress: Arc<AtomicU64>,
    /// Damage was stepped over: the gap before the next record is a loss to report.
    after_damage: bool,
}

struct OpenSegment {
    first: u64,
    cursor: Cursor,
    /// The file's length once the writer has moved past it.
    sealed_len: Option<u64>,
}

impl SpoolReader {
    pub(super) fn new(shared: Arc<Shared>, start: Seq) -> SpoolReader {
        let durable = shared.durable.subscribe();
        let progress = Arc::new(AtomicU64::new(start.0.saturating_sub(1)));
        SpoolReader { shared, durable, open: None, next: start.0, progress, after_damage: false }
    }

    /// The highest sequence number read so far (shared counter).
    pub fn progress(&self) -> Arc<AtomicU64> {
        self.progress.clone()
    }

    /// The next record; `Ok(None)` once the spool is closed and everything durable was read.
    pub async fn next(&mut self) -> Result<Option<Record>, SpoolError> {
        loop {
            let durable = *self.durable.borrow_and_update();
            if self.open.is_none() {
                if self.next > durable.last.0 {
                    if durable.closed {
                        return Ok(None);
                    }
                    if self.durable.changed().await.is_err() {
                        return Ok(None);
                    }
                    continue;
                }
                self.open = Some(self.open_segment()?);
            }
            let Some(open) = self.open.as_mut() else { continue };
            let limit = if open.first == durable.segment {
                durable.offset
            } else {
                match open.sealed_len {
                    Some(len) => len,
                    None => {
                        // The open file, not the path: an acknowledged segment may be deleted already.
                        let len = open.cursor.len().map_err(|source| SpoolError::Read {
                            path: segment::path(&self.shared.opts.dir, open.first),
                            source,
                        })?;
                        *open.sealed_len.insert(len)
                    }
                }
            };
            match open.cursor.next(limit) {
                Ok(Some(record)) if record.seq.0 < self.next => continue,
                Ok(Some(record)) => {
                    if std::mem::take(&mut self.after_damage) && record.seq.0 > self.next {
                        let lost = record.seq.0 - self.next;
                        metrics::records_lost(lost);
                        tracing::error!(
                            first = self.next,
                            last = record.seq.0 - 1,
                            records = lost,
                            "spool records lost to damage found while reading"
                        );
                    }
                    self.next = record.seq.0 + 1;
                    self.progress.store(record.seq.0, Ordering::Release);
                    return Ok(Some(record));
                }
                Ok(None) if open.first == durable.segment => {
                    if durable.closed {
                        return Ok(None);
                    }
                    if self.durable.changed().await.is_err() {
                        return Ok(None);
                    }
                }
                Ok(None) => {
                    // A sealed segment read to its end: what follows is in the next segment,
                    // even where damage left a gap in the numbers.
                    let first = open.first;
                    self.next = self.next.max(self.following(first).unwrap_or(self.next));
                    self.open = None;
                }
                Err(CursorError::Bad { offset, reason }) => {
                    // Damaged after it was written (the disk, or someone's editor): read on past it.
                    let path = segment::path(&self.shared.opts.dir, open.first);
                    let after = self.next.saturating_sub(1);
                    let resume = open.cursor.resync(offset + 1, limit, after);
                    let resume =
                        resume.map_err(|source| SpoolError::Read { path: path.clone(), source })?.unwrap_or(limit);
                    tracing::error!(
                        segment = %path.display(), offset, bytes = resume - offset, reason = %reason,
                        "a spool record is damaged; reading resumes past it (the next start quarantines the segment)"
                    );
                    open.cursor.offset = resume;
                    self.after_damage = true;
                }
                Err(e) => {
                    let path = segment::path(&self.shared.opts.dir, open.first);
                    let source = match e {
                        CursorError::Io(e) => e,
                        other => std::io::Error::other(other.to_string()),
                    };
                    return Err(SpoolError::Read { path, source });
                }
            }
        }
    }

    /// The first sequence number of the segment after the one starting at `first`.
    fn following(&self, first: u64) -> Option<u64> {
        self.shared.inner().segments.iter().map(|(f, _)| *f).find(|f| *f > first)
    }

    /// Opens the segment holding `self.next`, or, when no segment starts at or before it (the
    /// first one was lost), the first segment after it.
    fn open_segment(&mut self) -> Result<OpenSegment, SpoolError> {
        let first = {
            let inner = self.shared.inner();
            let firsts = || inner.segments.iter().map(|(first, _)| *first);
            firsts().filter(|f| *f <= self.next).max().or_else(|| firsts().find(|f| *f > self.next))
        };
        if let Some(first) = first {
            self.next = self.next.max(first);
        }
        let path = segment::path(&self.shared.opts.dir, first.unwrap_or(self.next));
        let cursor = Cursor::open(&path).map_err(|e| SpoolError::Read {
            path: path.clone(),
            source: match e {
                CursorError::Io(e) => e,
                other => std::io::Error::other(other.to_string()),
            },
        })?;
        Ok(OpenSegment { first: first.unwrap_or(self.next), cursor, sealed_len: None })
    }
}
