//! The spool: a write-ahead log between the receiver and the batcher. A delivery is answered 2xx
//! only once its record is in a segment file on local disk and fsynced.
//!
//! # On-disk layout (`<data-dir>/spool/`)
//!
//! ```text
//! LOCK                      held (flock) by the running process: one service per data dir
//! wal-<first seq>.seg       segments: magic "OHBWAL01", then records (format in `record`)
//! checkpoint.json           acknowledged checkpoint, flush intents, known losses (see `state`)
//! dedup/YYYY-MM-DD.keys     accepted event keys per day (see `dedup`)
//! quarantine/               damaged originals recovery replaced (see `recovery`)
//! ```
//!
//! # Invariants
//! - The writer numbers records densely: each segment's records are consecutive from the number
//!   in its name, and each segment starts where the previous one ended. Only damage makes gaps;
//!   recovery reports each one once (and records it), and the reader steps over them.
//! - A record is fsynced before the append that wrote it returns (and so before the 2xx). One
//!   writer thread does the I/O; every append that arrives while an fsync runs joins the next
//!   batch (group commit), so a request waits for at most the fsync in progress and its own.
//! - The reader (the batcher) never reads past the durable end of the log.
//! - `checkpoint` only moves forward; every record at or below it is in the store. A segment is
//!   deleted only when its last record is at or below the durable checkpoint.
//! - The dedup day file is fsynced before any segment is deleted, so an accepted event id is
//!   always in a day file or in a segment; start-up reads both.
//! - Start-up recovery cuts a torn tail of the last segment and rewrites damaged segments with
//!   their intact records (see `recovery`); the reader starts at checkpoint + 1: every intact
//!   record not yet in the store is replayed.
//! - A segment rolls when it has reached `segment_bytes` (at a batch boundary, so it may exceed
//!   the size by one batch).
//! - The budget (`max_bytes`) counts the segment bytes of records not yet in the store: every
//!   segment byte on disk minus the acknowledged prefix of the oldest segment (known from the
//!   batch boundaries the writer notes). So a spool whose store has caught up always has room,
//!   whatever the segment size.

mod ack;
mod dedup;
mod open;
mod reader;
mod record;
mod recovery;
mod salvage;
mod segment;
mod shared;
mod state;
mod types;
mod writer;

pub use dedup::EventKey;
pub use open::{Checked, check};
pub use reader::SpoolReader;
pub use recovery::{Loss, Mode, RecoveryError, Scan, SegmentReport};
pub use state::{FlushIntent, StateError};
pub use types::{Appended, Delivery, OpenError, Record, Recovered, Seq, SpoolError, SpoolOptions, SpoolStats};

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use tokio::sync::watch;

use self::dedup::Entry;
use self::open::Opened;
use self::shared::{BatchResult, Durable, Inner, Shared, WriteFailed};

/// The writing side, shared by every request handler and the batcher.
#[derive(Clone)]
pub struct Spool {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Spool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spool").field("dir", &self.shared.opts.dir).finish_non_exhaustive()
    }
}

enum Wait {
    Batch(watch::Receiver<BatchResult>, u64),
    Original(EventKey, u64),
}

impl Spool {
    /// Opens (or creates) the spool, recovers it (see `open`), and starts the writer thread.
    pub fn open(opts: SpoolOptions) -> Result<(Spool, SpoolReader, Recovered), OpenError> {
        let dir = opts.dir.clone();
        let Opened { lock, state, dedup_log, dedup, segments, active, recovered } = open::open(&opts)?;
        let (checkpoint, next) = (recovered.checkpoint, recovered.last.0 + 1);
        let disk_bytes = segments.iter().map(|(_, size)| size).sum();
        let (batch_done, _) = watch::channel(None);
        let durable = Durable { segment: next, offset: active.offset, last: recovered.last, closed: false };
        let shared = Arc::new(Shared {
            inner: Mutex::new(Inner {
                pending: Vec::new(),
                pending_bytes: 0,
                batch: 1,
                batch_done,
                dedup,
                closed: false,
                disk_bytes,
                segments,
                boundaries: VecDeque::new(),
                acked_to: None,
                low_disk: false,
                refused_full: false,
            }),
            wake: Condvar::new(),
            durable: watch::Sender::new(durable),
            finished_batch: watch::Sender::new(0),
            dedup_log: Mutex::new(dedup_log),
            state: Mutex::new(state),
            acked: AtomicU64::new(checkpoint.0),
            records: AtomicU64::new(0),
            fsyncs: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            writer: Mutex::new(None),
            opts,
            _lock: lock,
        });
        let spool = Spool { shared: shared.clone() };
        spool.trim(checkpoint);
        let handle = writer::spawn(shared.clone(), active, next)
            .map_err(|source| OpenError::Io { path: dir.clone(), source })?;
        *shared.writer.lock().unwrap_or_else(|p| p.into_inner()) = Some(handle);
        let reader = SpoolReader::new(shared, Seq(checkpoint.0 + 1));
        tracing::info!(
            dir = %dir.display(), checkpoint = checkpoint.0, replay = recovered.last.0 - checkpoint.0,
            dedup_ids = recovered.dedup_keys, "spool opened"
        );
        Ok((spool, reader, recovered))
    }

    /// Keeps a delivery: returns once it is fsynced, or once its event id is known to be kept.
    pub async fn append(&self, delivery: Delivery) -> Result<Appended, SpoolError> {
        let wait = self.enqueue(delivery)?;
        match wait {
            Wait::Batch(mut rx, index) => {
                let done = rx.wait_for(Option::is_some).await.map_err(|_| SpoolError::Closed)?;
                match *done {
                    Some(Ok(first)) => Ok(Appended::Stored(Seq(first + index))),
                    Some(Err(WriteFailed::DiskFull)) => Err(SpoolError::DiskFull),
                    _ => Err(SpoolError::Write),
                }
            }
            Wait::Original(key, batch) => {
                // The first copy may still be on its way to disk: answer only once it is there.
                let mut finished = self.shared.finished_batch.subscribe();
                finished.wait_for(|f| *f >= batch).await.map_err(|_| SpoolError::Closed)?;
                if self.shared.inner().dedup.get(&key).is_none() {
                    return Err(SpoolError::Write);
                }
                let n = self.shared.duplicates.fetch_add(1, Ordering::Relaxed) + 1;
                tracing::info!(
                    duplicates_total = n,
                    "duplicate delivery of an event already accepted; not written again"
                );
                Ok(Appended::Duplicate)
            }
        }
    }

    fn enqueue(&self, delivery: Delivery) -> Result<Wait, SpoolError> {
        let mut inner = self.shared.inner();
        if inner.closed {
            return Err(SpoolError::Closed);
        }
        if let Some(key) = delivery.event_key
            && let Some(entry) = inner.dedup.get(&key)
        {
            return Ok(Wait::Original(key, entry.batch));
        }
        let size = record::encoded_len(&delivery) as u64;
        let limit = self.shared.opts.max_bytes;
        if inner.unacked_bytes() + inner.pending_bytes + size > limit {
            inner.refused_full = true;
            return Err(SpoolError::Full { limit });
        }
        if inner.low_disk {
            return Err(SpoolError::DiskFull);
        }
        if let Some(key) = delivery.event_key {
            let entry = Entry { accepted_secs: delivery.received_at.timestamp(), batch: inner.batch };
            inner.dedup.insert(key, entry);
        }
        inner.refused_full = false;
        let index = inner.pending.len() as u64;
        inner.pending.push(delivery);
        inner.pending_bytes += size;
        let rx = inner.batch_done.subscribe();
        drop(inner);
        self.shared.wake.notify_one();
        Ok(Wait::Batch(rx, index))
    }

    /// The highest acknowledged sequence number.
    pub fn acked(&self) -> Seq {
        Seq(self.shared.acked.load(Ordering::Acquire))
    }

    /// The highest sequence number that is durable.
    pub fn durable(&self) -> Seq {
        self.shared.durable.borrow().last
    }

    pub fn stats(&self) -> SpoolStats {
        SpoolStats {
            records: self.shared.records.load(Ordering::Relaxed),
            fsyncs: self.shared.fsyncs.load(Ordering::Relaxed),
            duplicates: self.shared.duplicates.load(Ordering::Relaxed),
            disk_bytes: self.shared.inner().disk_bytes,
            backlog: self.shared.durable.borrow().last.0.saturating_sub(self.acked().0),
        }
    }

    /// Why an append would be refused right now (closed, disk nearly full, at its size limit), if
    /// it would: the spool's part of `/readyz`.
    pub fn readiness(&self) -> Result<(), SpoolError> {
        let inner = self.shared.inner();
        let limit = self.shared.opts.max_bytes;
        if inner.closed {
            Err(SpoolError::Closed)
        } else if inner.low_disk {
            Err(SpoolError::DiskFull)
        } else if inner.refused_full || inner.unacked_bytes() + inner.pending_bytes >= limit {
            Err(SpoolError::Full { limit })
        } else {
            Ok(())
        }
    }

    /// Refuses further appends; the writer finishes what it holds, and the reader ends once it has
    /// read everything durable.
    pub fn close(&self) {
        self.shared.inner().closed = true;
        self.shared.wake.notify_all();
    }

    /// Closes and waits (blocking) for the writer thread to finish its last batch and exit.
    pub fn close_and_join(&self) {
        self.close();
        let handle = self.shared.writer.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(handle) = handle
            && handle.join().is_err()
        {
            tracing::error!("the spool writer thread panicked");
        }
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, SpoolError> + Send + 'static,
) -> Result<T, SpoolError> {
    tokio::task::spawn_blocking(f).await.map_err(|_| SpoolError::Write)?
}

#[cfg(test)]
mod tests;
