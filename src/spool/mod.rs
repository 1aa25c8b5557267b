//! The spool: a write-ahead log between the receiver and the batcher. A delivery is answered 2xx
//! only once its record is in a segment file on local disk and fsynced.
//!
//! # On-disk layout (`<data-dir>/spool/`)
//!
//! ```text
//! LOCK                      held (flock) by the running process: one service per data dir
//! wal-<first seq>.seg       segments: magic "OHBWAL01", then records (format in `record`)
//! checkpoint.json           acknowledged checkpoint + flush intents (see `state`)
//! dedup/YYYY-MM-DD.keys     accepted event keys per day (see `dedup`)
//! ```
//!
//! # Invariants
//! - Sequence numbers are dense: each segment's records are consecutive from the number in its
//!   name, and each segment starts where the previous one ended.
//! - A record is fsynced before the append that wrote it returns (and so before the 2xx). One
//!   writer thread does the I/O; every append that arrives while an fsync runs joins the next
//!   batch (group commit), so a request waits for at most the fsync in progress and its own.
//! - The reader (the batcher) never reads past the durable end of the log.
//! - `checkpoint` only moves forward; every record at or below it is in the store. A segment is
//!   deleted only when its last record is at or below the durable checkpoint.
//! - The dedup day file is fsynced before any segment is deleted, so an accepted event id is
//!   always in a day file or in a segment; start-up reads both.
//! - Start-up recovery cuts a torn tail of the last segment (see `recovery`), and the reader starts
//!   at checkpoint + 1: every record not yet in the store is replayed.
//! - A segment rolls when it has reached `segment_bytes` (at a batch boundary, so it may exceed
//!   the size by one batch).
//! - The budget (`max_bytes`) counts the segment bytes of records not yet in the store: every
//!   segment byte on disk minus the acknowledged prefix of the oldest segment (known from the
//!   batch boundaries the writer notes). So a spool whose store has caught up always has room,
//!   whatever the segment size.

mod dedup;
mod reader;
mod record;
mod recovery;
mod segment;
mod state;
mod writer;

pub use dedup::EventKey;
pub use reader::SpoolReader;
pub use recovery::{Loss, Mode, RecoveryError, Scan, SegmentReport};
pub use state::{FlushIntent, StateError};

use std::collections::VecDeque;
use std::fs::{self, File};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use tokio::sync::watch;

use self::dedup::{DedupLog, DedupMap, Entry};
use self::state::StateFile;
use crate::metrics;

/// A record's position in the spool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Seq(pub u64);

/// One accepted delivery, as the receiver saw it.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub received_at: DateTime<Utc>,
    pub remote_addr: Option<SocketAddr>,
    /// The verified signature's `t`.
    pub signature_timestamp: i64,
    /// The event id's dedup key, when the body has an id.
    pub event_key: Option<EventKey>,
    pub body: Bytes,
}

impl Delivery {
    #[cfg(test)]
    pub fn for_test(body: Bytes) -> Delivery {
        Delivery { received_at: Utc::now(), remote_addr: None, signature_timestamp: 0, event_key: None, body }
    }
}

/// A delivery with its sequence number.
#[derive(Debug, Clone)]
pub struct Record {
    pub seq: Seq,
    pub delivery: Delivery,
}

/// What happened to an appended delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Appended {
    /// Written and fsynced at this sequence number.
    Stored(Seq),
    /// Its event id was accepted before, within the window: nothing written.
    Duplicate,
}

/// Limits and places.
#[derive(Debug, Clone)]
pub struct SpoolOptions {
    pub dir: PathBuf,
    /// Refuse appends once segments on disk would exceed this.
    pub max_bytes: u64,
    /// Roll to a new segment at this size.
    pub segment_bytes: u64,
    /// Refuse appends when the file system has less free space than this.
    pub min_free_bytes: u64,
    /// How long an accepted event id is remembered.
    pub dedup_window: Duration,
}

/// The spool could not take a delivery.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("the spool is closed: the service is shutting down")]
    Closed,
    #[error("the spool holds its limit of {limit} bytes of deliveries not yet written to the store")]
    Full { limit: u64 },
    #[error("the disk holding the spool is nearly full")]
    DiskFull,
    #[error("the spool could not write to disk")]
    Write,
    #[error(transparent)]
    State(#[from] StateError),
    #[error("cannot read spool segment {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
}

/// The spool could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot use the spool directory {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("another oncehub-bridge is using {0}; each instance needs its own --data-dir")]
    Locked(PathBuf),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Recovery(#[from] RecoveryError),
    #[error("there is no spool at {0}: is --data-dir the one `serve` uses?")]
    NoSpool(PathBuf),
}

/// What start-up found in the spool.
#[derive(Debug, Clone)]
pub struct Recovered {
    pub checkpoint: Seq,
    /// The highest sequence number on disk; the reader replays `checkpoint+1 ..= last` first.
    pub last: Seq,
    /// Intents of files that may already be in the store; replay must cut the same files.
    pub intents: Vec<FlushIntent>,
    pub truncated: Option<String>,
    /// Records above the checkpoint that damage took (each range is also logged and counted).
    pub losses: Vec<Loss>,
    pub dedup_keys: usize,
    /// Damaged dedup entries skipped: their ids are forgotten.
    pub dedup_damaged: usize,
}

/// Counters, for logs and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpoolStats {
    pub records: u64,
    pub fsyncs: u64,
    pub duplicates: u64,
    pub disk_bytes: u64,
    /// Records on disk whose rows are not yet acknowledged as in the store.
    pub backlog: u64,
}

/// The durable end of the log, published by the writer.
#[derive(Debug, Clone, Copy)]
struct Durable {
    /// First sequence number of the active segment.
    segment: u64,
    /// Bytes of the active segment that are fsynced.
    offset: u64,
    last: Seq,
    closed: bool,
}

/// A batch's outcome: its first sequence number, or whether the write failed for a full disk.
type BatchResult = Option<Result<u64, WriteFailed>>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WriteFailed {
    DiskFull,
    Other,
}

/// ENOSPC and EDQUOT: the disk (or the quota) is full.
fn is_disk_full(e: &std::io::Error) -> bool {
    matches!(rustix::io::Errno::from_io_error(e), Some(rustix::io::Errno::NOSPC | rustix::io::Errno::DQUOT))
}

/// Guarded by one mutex, held only for bookkeeping (never across I/O).
struct Inner {
    pending: Vec<Delivery>,
    pending_bytes: u64,
    /// Number of the batch `pending` will be written in.
    batch: u64,
    batch_done: watch::Sender<BatchResult>,
    dedup: DedupMap,
    closed: bool,
    /// Every segment byte on disk.
    disk_bytes: u64,
    /// (first seq, size) of each segment; the last one is active.
    segments: VecDeque<(u64, u64)>,
    /// (last seq, segment first seq, end offset) of each written batch not yet acknowledged.
    boundaries: VecDeque<(u64, u64, u64)>,
    /// (segment first seq, offset): the segment bytes up to here hold acknowledged records only.
    acked_to: Option<(u64, u64)>,
    low_disk: bool,
    /// The last append was refused for the size limit, and nothing was trimmed since.
    refused_full: bool,
}

impl Inner {
    /// Segment bytes on disk that hold records not yet acknowledged (the budget's measure).
    fn unacked_bytes(&self) -> u64 {
        let acked = match (self.acked_to, self.segments.front()) {
            (Some((segment, offset)), Some((first, _))) if segment == *first => offset,
            _ => 0,
        };
        self.disk_bytes.saturating_sub(acked)
    }
}

struct Shared {
    opts: SpoolOptions,
    inner: Mutex<Inner>,
    wake: Condvar,
    durable: watch::Sender<Durable>,
    /// The number of the last batch whose write finished, well or not.
    finished_batch: watch::Sender<u64>,
    dedup_log: Mutex<DedupLog>,
    state: Mutex<StateFile>,
    acked: AtomicU64,
    records: AtomicU64,
    fsyncs: AtomicU64,
    duplicates: AtomicU64,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    _lock: File,
}

impl Shared {
    fn inner(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

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
    /// Opens (or creates) the spool, recovers it, and starts the writer thread.
    pub fn open(opts: SpoolOptions) -> Result<(Spool, SpoolReader, Recovered), OpenError> {
        let dir = opts.dir.clone();
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| OpenError::Io { path, source }
        };
        let lock = lock(&dir)?;
        let state = open_state(&dir, Mode::Repair)?;
        let checkpoint = Seq(state.state.checkpoint);

        let mut dedup_log = DedupLog::new(dir.join("dedup")).map_err(io(&dir))?;
        let cutoff = Utc::now().timestamp() - opts.dedup_window.as_secs() as i64;
        let mut dedup = DedupMap::default();
        let loaded = dedup_log.load(&mut dedup, cutoff).map_err(io(&dir.join("dedup")))?;
        crate::metrics::dedup_damaged(loaded.damaged as u64);
        let mut spooled_keys = Vec::new();
        let known = state.state.lost.clone();
        let scan = recovery::scan(&dir, checkpoint, &known, Mode::Repair, |r| {
            let secs = r.delivery.received_at.timestamp();
            if let (Some(key), true) = (r.delivery.event_key, secs >= cutoff) {
                dedup.insert(key, Entry { accepted_secs: secs, batch: 0 });
                spooled_keys.push((key, secs));
            }
        })?;
        // Keys seen only in segments go to the day files too, before any segment can be trimmed.
        dedup_log.append(&spooled_keys).and_then(|()| dedup_log.sync()).map_err(io(&dir.join("dedup")))?;

        metrics::records_lost(scan.lost());
        let mut state = state;
        remember_losses(&mut state, &scan)?;
        let next = scan.last.0 + 1;
        let mut segments: VecDeque<(u64, u64)> =
            scan.segments.iter().copied().filter(|(first, _)| *first != next).collect();
        let active = writer::Active::create(&dir, next).map_err(io(&segment::path(&dir, next)))?;
        segments.push_back((next, active.offset));
        let disk_bytes = segments.iter().map(|(_, size)| size).sum();
        let intents: Vec<_> = state.state.intents.iter().filter(|i| i.last > checkpoint.0).cloned().collect();
        let recovered = Recovered {
            checkpoint,
            last: scan.last,
            intents,
            truncated: scan.truncated,
            losses: scan.losses,
            dedup_keys: dedup.len(),
            dedup_damaged: loaded.damaged,
        };

        let (batch_done, _) = watch::channel(None);
        let durable = Durable { segment: next, offset: active.offset, last: scan.last, closed: false };
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
        let handle = writer::spawn(shared.clone(), active, next).map_err(io(&dir))?;
        *shared.writer.lock().unwrap_or_else(|p| p.into_inner()) = Some(handle);
        let reader = SpoolReader::new(shared, Seq(checkpoint.0 + 1));
        tracing::info!(
            dir = %dir.display(), checkpoint = checkpoint.0, replay = scan.last.0 - checkpoint.0,
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

    /// Durably notes that a file holding `intent` is about to be uploaded.
    pub async fn record_intent(&self, intent: FlushIntent) -> Result<(), SpoolError> {
        let shared = self.shared.clone();
        blocking(move || {
            let mut state = shared.state.lock().unwrap_or_else(|p| p.into_inner());
            state.state.intents.push(intent);
            state.save().map_err(SpoolError::from)
        })
        .await
    }

    /// Everything up to and including `upto` is durably in the store: persist the checkpoint and
    /// delete the segments wholly behind it.
    pub async fn ack(&self, upto: Seq) -> Result<(), SpoolError> {
        if upto <= self.acked() {
            return Ok(());
        }
        let shared = self.shared.clone();
        let spool = self.clone();
        blocking(move || {
            // Day files first: a trimmed segment's event ids must be kept elsewhere.
            // The fsync runs outside the lock: the writer thread appends to the log after every batch.
            let flushed = shared.dedup_log.lock().unwrap_or_else(|p| p.into_inner()).flushed();
            let synced = flushed.and_then(|file| file.map_or(Ok(()), |f| f.sync_data()));
            if let Err(e) = &synced {
                tracing::warn!(error = %e, "cannot sync the dedup index; keeping segments until it can");
            }
            {
                let mut state = shared.state.lock().unwrap_or_else(|p| p.into_inner());
                state.state.checkpoint = upto.0;
                state.state.intents.retain(|i| i.last > upto.0);
                state.state.lost.retain(|(_, last)| *last > upto.0);
                state.save()?;
            }
            shared.acked.fetch_max(upto.0, Ordering::AcqRel);
            if synced.is_ok() {
                spool.trim(upto);
            }
            Ok(())
        })
        .await
    }

    /// Deletes the segments whose records are all at or below `checkpoint` (never the active one).
    fn trim(&self, checkpoint: Seq) {
        let doomed: Vec<u64> = {
            let mut inner = self.shared.inner();
            while inner.boundaries.front().is_some_and(|b| b.0 <= checkpoint.0) {
                if let Some((_, segment, offset)) = inner.boundaries.pop_front() {
                    inner.acked_to = Some((segment, offset));
                    inner.refused_full = false;
                }
            }
            let mut doomed = Vec::new();
            while inner.segments.len() > 1 && inner.segments[1].0 - 1 <= checkpoint.0 {
                if let Some((first, size)) = inner.segments.pop_front() {
                    inner.disk_bytes -= size;
                    inner.refused_full = false;
                    doomed.push(first);
                }
            }
            doomed
        };
        tracing::debug!(checkpoint = checkpoint.0, deleted = doomed.len(), "spool acknowledged");
        for first in doomed {
            let path = segment::path(&self.shared.opts.dir, first);
            if let Err(e) = fs::remove_file(&path) {
                tracing::warn!(segment = %path.display(), error = %e, "cannot delete an acknowledged spool segment");
            }
        }
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

/// Takes the spool directory's lock (creating the directory): one process per spool.
fn lock(dir: &Path) -> Result<File, OpenError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| OpenError::Io { path, source }
    };
    fs::create_dir_all(dir).map_err(io(dir))?;
    let lock_path = dir.join("LOCK");
    let lock = File::create(&lock_path).map_err(io(&lock_path))?;
    if lock.try_lock().is_err() {
        return Err(OpenError::Locked(dir.to_owned()));
    }
    Ok(lock)
}

/// Reads the state file. A damaged one is, when repairing, quarantined and replaced by a state
/// whose checkpoint is just below the oldest segment (everything before it was trimmed, so it is
/// in the store); its flush intents are lost, so rows replayed since may be written twice.
fn open_state(dir: &Path, mode: Mode) -> Result<StateFile, OpenError> {
    match StateFile::open(dir) {
        Err(e @ StateError::Invalid { .. }) if mode == Mode::Repair => {
            let oldest = segment::list(dir)
                .map_err(|source| OpenError::Io { path: dir.to_owned(), source })?
                .first()
                .map(|(f, _)| *f);
            let checkpoint = oldest.unwrap_or(1).saturating_sub(1);
            let moved = StateFile::reset(dir, checkpoint)?;
            tracing::error!(
                error = %e, quarantined = %moved.display(), checkpoint,
                "the spool state file is damaged: moved it to quarantine and resumed after the oldest segment; rows replayed from here may be written twice"
            );
            Ok(StateFile::open(dir)?)
        }
        other => Ok(other?),
    }
}

/// What `spool verify` / `spool repair` found.
#[derive(Debug)]
pub struct Checked {
    pub checkpoint: Seq,
    pub scan: Scan,
    /// Set when the state file cannot be read (inspecting: repair would reset it).
    pub state_error: Option<String>,
    /// Gaps lost and reported before (by an earlier start or repair).
    pub known: Vec<(u64, u64)>,
}

/// Reads the spool in `dir` without starting it: `Mode::Inspect` changes nothing, `Mode::Repair`
/// does what start-up does (cut a torn tail, rewrite damaged segments, quarantine originals,
/// reset a damaged state file). Takes the spool's lock, so it refuses to run beside `serve`.
pub fn check(dir: &Path, mode: Mode) -> Result<Checked, OpenError> {
    if !dir.is_dir() {
        return Err(OpenError::NoSpool(dir.to_owned()));
    }
    let _lock = lock(dir)?;
    let (state, state_error) = match open_state(dir, mode) {
        Ok(state) => (Some(state), None),
        Err(OpenError::State(e)) if mode == Mode::Inspect => (None, Some(e.to_string())),
        Err(e) => return Err(e),
    };
    let checkpoint = Seq(state.as_ref().map_or(0, |s| s.state.checkpoint));
    let known = state.as_ref().map(|s| s.state.lost.clone()).unwrap_or_default();
    let scan = recovery::scan(dir, checkpoint, &known, mode, |_| {})?;
    if let (Some(mut state), Mode::Repair) = (state, mode) {
        remember_losses(&mut state, &scan)?;
    }
    Ok(Checked { checkpoint, scan, state_error, known })
}

/// Records the losses recovery just reported, so later starts know those gaps.
fn remember_losses(state: &mut StateFile, scan: &Scan) -> Result<(), StateError> {
    if scan.losses.is_empty() {
        return Ok(());
    }
    state.state.lost.extend(scan.losses.iter().map(|l| (l.first, l.last)));
    state.save()
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, SpoolError> + Send + 'static,
) -> Result<T, SpoolError> {
    tokio::task::spawn_blocking(f).await.map_err(|_| SpoolError::Write)?
}

#[cfg(test)]
mod tests;
