//! The state shared by the spool's handle, its writer thread and its reader: the durable end of
//! the log, the pending batch, the dedup map, the segment list and the budget's bookkeeping.

use std::collections::VecDeque;
use std::fs::File;
use std::sync::atomic::AtomicU64;
use std::sync::{Condvar, Mutex, MutexGuard};

use tokio::sync::watch;

use super::dedup::{DedupLog, DedupMap};
use super::state::StateFile;
use super::{Delivery, Seq, SpoolOptions};

/// The durable end of the log, published by the writer.
#[derive(Debug, Clone, Copy)]
pub(super) struct Durable {
    /// First sequence number of the active segment.
    pub(super) segment: u64,
    /// Bytes of the active segment that are fsynced.
    pub(super) offset: u64,
    pub(super) last: Seq,
    pub(super) closed: bool,
}

/// A batch's outcome: its first sequence number, or whether the write failed for a full disk.
pub(super) type BatchResult = Option<Result<u64, WriteFailed>>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum WriteFailed {
    DiskFull,
    Other,
}

/// ENOSPC and EDQUOT: the disk (or the quota) is full.
pub(super) fn is_disk_full(e: &std::io::Error) -> bool {
    matches!(rustix::io::Errno::from_io_error(e), Some(rustix::io::Errno::NOSPC | rustix::io::Errno::DQUOT))
}

/// Guarded by one mutex, held only for bookkeeping (never across I/O).
pub(super) struct Inner {
    pub(super) pending: Vec<Delivery>,
    pub(super) pending_bytes: u64,
    /// Number of the batch `pending` will be written in.
    pub(super) batch: u64,
    pub(super) batch_done: watch::Sender<BatchResult>,
    pub(super) dedup: DedupMap,
    pub(super) closed: bool,
    /// Every segment byte on disk.
    pub(super) disk_bytes: u64,
    /// (first seq, size) of each segment; the last one is active.
    pub(super) segments: VecDeque<(u64, u64)>,
    /// (last seq, segment first seq, end offset) of each written batch not yet acknowledged.
    pub(super) boundaries: VecDeque<(u64, u64, u64)>,
    /// (segment first seq, offset): the segment bytes up to here hold acknowledged records only.
    pub(super) acked_to: Option<(u64, u64)>,
    pub(super) low_disk: bool,
    /// The last append was refused for the size limit, and nothing was trimmed since.
    pub(super) refused_full: bool,
}

impl Inner {
    /// Segment bytes on disk that hold records not yet acknowledged (the budget's measure).
    pub(super) fn unacked_bytes(&self) -> u64 {
        let acked = match (self.acked_to, self.segments.front()) {
            (Some((segment, offset)), Some((first, _))) if segment == *first => offset,
            _ => 0,
        };
        self.disk_bytes.saturating_sub(acked)
    }
}

pub(super) struct Shared {
    pub(super) opts: SpoolOptions,
    pub(super) inner: Mutex<Inner>,
    pub(super) wake: Condvar,
    pub(super) durable: watch::Sender<Durable>,
    /// The number of the last batch whose write finished, well or not.
    pub(super) finished_batch: watch::Sender<u64>,
    pub(super) dedup_log: Mutex<DedupLog>,
    pub(super) state: Mutex<StateFile>,
    pub(super) acked: AtomicU64,
    pub(super) records: AtomicU64,
    pub(super) fsyncs: AtomicU64,
    pub(super) duplicates: AtomicU64,
    pub(super) writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    pub(super) _lock: File,
}

impl Shared {
    pub(super) fn inner(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}
