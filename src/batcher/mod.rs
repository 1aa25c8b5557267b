//! The batcher: reads spool records in order, parses each once, appends its row to the pending
//! file of its (table, dt), cuts files by rows / bytes / age, uploads them, commits them to their
//! Delta tables (see `commit`), and acknowledges the spool up to the highest sequence number below
//! which nothing is pending or waiting for its commit.
//!
//! Before each upload it durably records a flush intent (partition + sequence range) in the spool.
//! After a restart, a replayed record covered by an intent is either skipped, when the intent
//! starts at or below the recovered checkpoint (the checkpoint only passes a file's first record
//! once that file is in its table) or when the table already holds the file, or cut into exactly
//! the same file again, so the object gets the same name and the create-only PUT finds it already
//! there. Either way: no second copy.
//!
//! Invariants: a record's row is in exactly one file; a file never spans two dt values; a file
//! holds every record of its (table, dt) between its first and last sequence numbers; the spool
//! checkpoint never passes a record whose file is not yet in its table (committed, for Delta);
//! when the spool closes the batcher drains it, flushes every pending file and commits them
//! before returning.

mod buffer;
mod commit;
mod policy;
mod route;

pub use buffer::{BufferError, FinishedFile};
pub use policy::{FlushLimits, FlushReason, should_flush};

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use chrono::NaiveDate;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use self::buffer::TableBuffer;
use crate::lake::{Lake, LakeError, StagedFile};
use crate::metrics;
use crate::schema::{Catalog, Table};
use crate::sink::StatsSpec;
use crate::sink::upload::UploadAborted;
use crate::sink::{ObjectKey, PutOutcome, StagingDir, Uploader, WriterId};
use crate::spool::{FlushIntent, Record, Seq, Spool, SpoolError, SpoolReader};

/// The batcher stopped without flushing everything.
#[derive(Debug, thiserror::Error)]
pub enum BatcherError {
    #[error(transparent)]
    Buffer(#[from] BufferError),
    #[error(transparent)]
    Upload(#[from] UploadAborted),
    #[error("encoding task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
    #[error(transparent)]
    Spool(#[from] SpoolError),
    #[error(transparent)]
    Lake(#[from] LakeError),
}

/// What the batcher did, for the shutdown log line.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct BatcherReport {
    pub records: u64,
    pub files: u64,
    pub rows_written: u64,
}

pub struct Batcher {
    catalog: Arc<Catalog>,
    limits: FlushLimits,
    writer: WriterId,
    uploader: Uploader,
    spool: Spool,
    /// Recovered intents of files that may not be in the store: replay cuts them again.
    intents: Vec<FlushIntent>,
    /// Recovered intents of files known to be in the store: replay skips their records.
    written: Vec<FlushIntent>,
    /// Cancelled when shutdown's deadline passes: uploads stop retrying.
    abort: CancellationToken,
    buffers: BTreeMap<(Table, NaiveDate), TableBuffer>,
    last_read: Seq,
    report: BatcherReport,
    lake: Lake,
    /// Each Delta table's statistics columns (empty for Parquet tables).
    stats: HashMap<Table, Arc<StatsSpec>>,
    /// Files in the store, not yet committed (Delta only).
    staged: Vec<StagedFile>,
    staged_since: Option<Instant>,
    commit_every: std::time::Duration,
    inspector: Option<Arc<crate::inspector::Inspector>>,
    /// Where pending files are written while they fill; `None` builds them in memory.
    staging: Option<StagingDir>,
}

impl Batcher {
    pub fn new(
        catalog: Arc<Catalog>,
        limits: FlushLimits,
        writer: WriterId,
        uploader: Uploader,
        spool: Spool,
        recovered: (Seq, Vec<FlushIntent>),
        abort: CancellationToken,
    ) -> Batcher {
        let (checkpoint, intents) = recovered;
        let (written, intents) = intents.into_iter().partition(|i| i.first <= checkpoint.0);
        Batcher {
            catalog,
            limits,
            writer,
            uploader,
            spool,
            intents,
            written,
            abort,
            buffers: BTreeMap::new(),
            last_read: Seq(0),
            report: BatcherReport::default(),
            lake: Lake::Parquet,
            stats: HashMap::new(),
            staged: Vec::new(),
            staged_since: None,
            commit_every: std::time::Duration::from_secs(10),
            inspector: None,
            staging: None,
        }
    }

    /// Writes pending files into `dir` as their row groups fill, instead of into memory.
    pub fn with_staging(mut self, dir: StagingDir) -> Batcher {
        self.staging = Some(dir);
        self
    }

    /// Runs until the spool is closed and drained, then flushes everything.
    pub async fn run(self, reader: SpoolReader) -> Result<BatcherReport, BatcherError> {
        let result = self.run_inner(reader).await;
        if let Err(e) = &result {
            tracing::error!(error = %e, "the batcher stopped; deliveries stay in the spool until a restart");
        }
        result
    }

    async fn run_inner(mut self, mut reader: SpoolReader) -> Result<BatcherReport, BatcherError> {
        self.prepare_lake().await?;
        // One timer for the next deadline, moved only when the deadline moves: a timer made and
        // dropped for every record would take the timer wheel's lock twice per delivery.
        let mut timer = std::pin::pin!(tokio::time::sleep_until(Instant::now()));
        let mut armed = None;
        loop {
            let due = [self.next_age_deadline(), self.commit_deadline()].into_iter().flatten().min();
            if due != armed {
                if let Some(deadline) = due {
                    timer.as_mut().reset(deadline);
                }
                armed = due;
            }
            tokio::select! {
                record = reader.next() => match record? {
                    Some(record) => self.ingest(record).await?,
                    None => break,
                },
                () = &mut timer, if armed.is_some() => {
                    let now = Instant::now();
                    // The files cut by age in this round go into one commit per table, at once:
                    // their rows are already as late as --flush-interval allows.
                    let cut = self.flush_due(now).await?;
                    if cut || self.commit_deadline().is_some_and(|d| d <= now) {
                        self.commit().await?;
                    }
                }
            }
        }
        while let Some(key) = self.buffers.first_key_value().map(|(k, _)| *k) {
            self.flush(key, FlushReason::Shutdown).await?;
        }
        self.commit().await?;
        Ok(self.report)
    }

    async fn ingest(&mut self, record: Record) -> Result<(), BatcherError> {
        let Record { seq, delivery } = record;
        self.last_read = seq;
        self.report.records += 1;
        if let (key, Some(reason)) = self.place(seq, &delivery.body, delivery.received_at)? {
            self.flush(key, reason).await?;
        }
        Ok(())
    }

    fn next_age_deadline(&self) -> Option<Instant> {
        self.buffers.values().map(|b| b.opened_at() + self.limits.max_age).min()
    }

    /// Cuts every file that is due; true when there was one.
    async fn flush_due(&mut self, now: Instant) -> Result<bool, BatcherError> {
        let due: Vec<_> = self
            .buffers
            .iter()
            .filter(|(_, b)| b.replay_end().is_none())
            .filter_map(|(k, b)| should_flush(b.rows(), b.bytes(), now - b.opened_at(), &self.limits).map(|r| (*k, r)))
            .collect();
        let cut = !due.is_empty();
        for (key, reason) in due {
            self.flush(key, reason).await?;
        }
        Ok(cut)
    }

    async fn flush(&mut self, key: (Table, NaiveDate), reason: FlushReason) -> Result<(), BatcherError> {
        let Some(buffer) = self.buffers.remove(&key) else { return Ok(()) };
        let (table, dt) = key;
        // A replayed file already has its intent; anything else (including a replay cut short,
        // which should not happen) records one before the upload.
        if buffer.replay_end() != Some(buffer.last()) {
            if buffer.replay_end().is_some() {
                let left =
                    buffer.replay_end().map(|end| ObjectKey::for_batch(table, dt, &self.writer, buffer.first(), end));
                tracing::warn!(
                    table = table.name(), dt = %dt, left_behind = ?left.map(|k| k.to_string()),
                    "a replayed file ended early (records lost to spool damage); writing it under a new name: with Delta tables the object left behind is never committed, so readers do not see it"
                );
            }
            let intent = FlushIntent {
                partition: ObjectKey::partition(table, dt),
                first: buffer.first().0,
                last: buffer.last().0,
            };
            let spool = self.spool.clone();
            until_saved("flush intent", &self.abort, || spool.record_intent(intent.clone())).await?;
        }
        let file = tokio::task::spawn_blocking(move || buffer.finish()).await??;
        let object = ObjectKey::for_batch(table, dt, &self.writer, file.first, file.last);
        let size = file.body.len() as usize;
        let outcome = self.uploader.put_file(&object, &file.body, &self.abort).await?;
        file.body.discard();
        self.report.files += 1;
        self.report.rows_written += file.rows as u64;
        if outcome == PutOutcome::Created {
            metrics::file_written(table.name(), reason.as_str(), size, file.rows);
        }
        tracing::info!(
            table = table.name(), dt = %dt, rows = file.rows, bytes = size, reason = reason.as_str(),
            key = %object, existed = outcome == PutOutcome::AlreadyExisted, "file written"
        );
        crate::lake::crash_point("after-upload");
        self.landed(table, dt, object, file, (outcome, reason)).await
    }

    /// Saves the checkpoint: everything behind it is in its table.
    async fn acknowledge(&mut self) -> Result<(), BatcherError> {
        let (spool, checkpoint) = (self.spool.clone(), self.checkpoint());
        until_saved("checkpoint", &self.abort, || spool.ack(checkpoint)).await
    }

    /// Everything at or below this sequence number is in its table (or in no file at all): below
    /// every pending file and every file waiting for its commit.
    fn checkpoint(&self) -> Seq {
        let pending = self.buffers.values().map(TableBuffer::first);
        match pending.chain(self.staged.iter().map(|f| f.first)).min() {
            Some(first) => Seq(first.0.saturating_sub(1)),
            None => self.last_read,
        }
    }
}

/// Retries a write of the spool's state until it is on disk: a flush intent must be before
/// its upload, and the checkpoint before segments can be trimmed. A full disk pauses the
/// batcher until space returns (deliveries meanwhile get 503 `disk_full`); it never stops it.
/// Only the shutdown deadline ends the retries.
async fn until_saved<F, Fut>(what: &'static str, abort: &CancellationToken, mut write: F) -> Result<(), BatcherError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), SpoolError>>,
{
    let mut delay = std::time::Duration::from_millis(100);
    loop {
        let e = match write().await {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        metrics::spool_state_error();
        tracing::warn!(error = %e, what, retry_in_ms = delay.as_millis() as u64, "cannot write the spool state (disk full?); retrying");
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = abort.cancelled() => return Err(e.into()),
        }
        delay = (delay * 2).min(std::time::Duration::from_secs(5));
    }
}

#[cfg(test)]
mod tests;
