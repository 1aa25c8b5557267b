//! The writer thread: group commit.
//!
//! It sleeps until appends are pending, takes all of them as one batch, numbers and encodes them,
//! writes them with one positioned write and one `fdatasync`, then wakes every append of the
//! batch at once. Appends that arrive meanwhile form the next batch. A failed write is cut off the
//! file again, the batch's appends get an error (503), and the spool carries on.
//!
//! Between batches (at most once a second) it checks the free space under the spool and, every
//! ten minutes, forgets event ids older than the dedup window.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use chrono::Utc;

use super::dedup::EventKey;
use super::segment::{self, MAGIC};
use super::{Delivery, Durable, Seq, Shared, record};
use crate::fsutil::sync_dir;

const HOUSEKEEPING: Duration = Duration::from_secs(1);
const DEDUP_EXPIRY: Duration = Duration::from_secs(600);

/// The segment being appended to.
pub(super) struct Active {
    first: u64,
    file: File,
    pub offset: u64,
}

impl Active {
    /// Creates (or resets) the segment starting at `first`, durably.
    pub(super) fn create(dir: &Path, first: u64) -> io::Result<Active> {
        let path = segment::path(dir, first);
        let file = OpenOptions::new().create(true).truncate(true).write(true).read(true).open(&path)?;
        file.write_all_at(MAGIC, 0)?;
        file.sync_all()?;
        sync_dir(dir)?;
        Ok(Active { first, file, offset: MAGIC.len() as u64 })
    }
}

pub(super) fn spawn(shared: Arc<Shared>, active: Active, next: u64) -> io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new().name("spool-writer".into()).spawn(move || run(&shared, active, next))
}

struct Batch {
    number: u64,
    deliveries: Vec<Delivery>,
    done: tokio::sync::watch::Sender<super::shared::BatchResult>,
}

fn run(shared: &Shared, mut active: Active, mut next: u64) {
    let mut buf = Vec::new();
    let mut last_check = Instant::now() - HOUSEKEEPING;
    let mut last_expiry = Instant::now() - DEDUP_EXPIRY;
    loop {
        if last_check.elapsed() >= HOUSEKEEPING {
            housekeeping(shared, last_expiry.elapsed() >= DEDUP_EXPIRY);
            if last_expiry.elapsed() >= DEDUP_EXPIRY {
                last_expiry = Instant::now();
            }
            last_check = Instant::now();
        }
        let batch = match take_batch(shared) {
            Next::Batch(batch) => batch,
            Next::Idle => continue,
            Next::Closed => break,
        };
        let Batch { number, deliveries, done } = batch;
        let first = next;
        buf.clear();
        for (i, d) in deliveries.iter().enumerate() {
            record::encode(Seq(first + i as u64), d, &mut buf);
        }
        match write(shared, &mut active, first, &buf) {
            Ok(()) => {
                next += deliveries.len() as u64;
                shared.records.fetch_add(deliveries.len() as u64, Ordering::Relaxed);
                shared.fsyncs.fetch_add(1, Ordering::Relaxed);
                {
                    let mut inner = shared.inner();
                    inner.disk_bytes += buf.len() as u64;
                    if let Some(last) = inner.segments.back_mut() {
                        *last = (active.first, active.offset);
                    }
                    inner.boundaries.push_back((next - 1, active.first, active.offset));
                }
                shared.durable.send_modify(|d| {
                    *d = Durable { segment: active.first, offset: active.offset, last: Seq(next - 1), closed: false };
                });
                done.send_replace(Some(Ok(first)));
                shared.finished_batch.send_replace(number);
                let keys: Vec<(EventKey, i64)> =
                    deliveries.iter().filter_map(|d| d.event_key.map(|k| (k, d.received_at.timestamp()))).collect();
                if let Err(e) = shared.dedup_log.lock().unwrap_or_else(|p| p.into_inner()).append(&keys) {
                    tracing::warn!(error = %e, "cannot append to the dedup index; the ids stay in the spool segments");
                }
            }
            Err(e) => {
                let full = super::shared::is_disk_full(&e);
                tracing::error!(error = %e, records = deliveries.len(), disk_full = full, "spool write failed; answering 503 for this batch");
                let mut inner = shared.inner();
                inner.dedup.forget_batch(deliveries.iter().filter_map(|d| d.event_key), number);
                if full {
                    // Refuse at once, not at the next free-space check; that check lifts it.
                    inner.low_disk = true;
                }
                drop(inner);
                let failure =
                    if full { super::shared::WriteFailed::DiskFull } else { super::shared::WriteFailed::Other };
                done.send_replace(Some(Err(failure)));
                shared.finished_batch.send_replace(number);
            }
        }
    }
    if let Err(e) = shared.dedup_log.lock().unwrap_or_else(|p| p.into_inner()).sync() {
        tracing::warn!(error = %e, "cannot sync the dedup index at shutdown; the ids stay in the spool segments");
    }
    shared.durable.send_modify(|d| d.closed = true);
}

enum Next {
    Batch(Batch),
    Idle,
    Closed,
}

/// Takes every pending append, waiting up to a second for one.
fn take_batch(shared: &Shared) -> Next {
    let mut inner = shared.inner();
    if inner.pending.is_empty() {
        if inner.closed {
            return Next::Closed;
        }
        inner = shared.wake.wait_timeout(inner, HOUSEKEEPING).map(|(g, _)| g).unwrap_or_else(|p| p.into_inner().0);
        if inner.pending.is_empty() {
            return if inner.closed { Next::Closed } else { Next::Idle };
        }
    }
    let deliveries = std::mem::take(&mut inner.pending);
    inner.pending_bytes = 0;
    let number = inner.batch;
    inner.batch += 1;
    let (fresh, _) = tokio::sync::watch::channel(None);
    let done = std::mem::replace(&mut inner.batch_done, fresh);
    Next::Batch(Batch { number, deliveries, done })
}

/// Writes one batch at the end of the active segment (rolling first when it is full) and fsyncs.
fn write(shared: &Shared, active: &mut Active, first: u64, buf: &[u8]) -> io::Result<()> {
    if active.offset >= shared.opts.segment_bytes {
        let fresh = Active::create(&shared.opts.dir, first)?;
        *active = fresh;
        let mut inner = shared.inner();
        inner.disk_bytes += active.offset;
        inner.segments.push_back((active.first, active.offset));
    }
    let result = active.file.write_all_at(buf, active.offset).and_then(|()| active.file.sync_data());
    match result {
        Ok(()) => {
            active.offset += buf.len() as u64;
            Ok(())
        }
        Err(e) => {
            // Cut whatever part of the batch reached the file, so the log stays whole.
            if let Err(cut) = active.file.set_len(active.offset).and_then(|()| active.file.sync_data()) {
                tracing::error!(error = %cut, "cannot cut a failed spool write; recovery will cut it at the next start");
            }
            Err(e)
        }
    }
}

fn housekeeping(shared: &Shared, expire: bool) {
    let free = rustix::fs::statvfs(&shared.opts.dir).map(|s| s.f_bavail.saturating_mul(s.f_frsize));
    let low = match free {
        Ok(free) => free < shared.opts.min_free_bytes,
        Err(_) => false,
    };
    {
        let mut inner = shared.inner();
        if low != inner.low_disk {
            if low {
                tracing::warn!(
                    min_free_bytes = shared.opts.min_free_bytes,
                    "the spool's disk is nearly full: refusing deliveries with 503"
                );
            } else {
                tracing::info!("the spool's disk has room again: accepting deliveries");
            }
        }
        inner.low_disk = low;
        if expire {
            let cutoff = Utc::now().timestamp() - shared.opts.dedup_window.as_secs() as i64;
            inner.dedup.expire(cutoff);
        }
    }
    if expire {
        let cutoff = Utc::now().timestamp() - shared.opts.dedup_window.as_secs() as i64;
        if let Err(e) = shared.dedup_log.lock().unwrap_or_else(|p| p.into_inner()).expire(cutoff) {
            tracing::warn!(error = %e, "cannot expire old dedup files");
        }
    }
}
