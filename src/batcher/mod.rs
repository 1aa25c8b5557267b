//! The batcher: reads spool records in order, parses each once, appends its row to the pending
//! file of its (table, dt), cuts files by rows / bytes / age, uploads them, and acknowledges the
//! spool up to the highest sequence number below which nothing is pending.
//!
//! Invariants: a record's row is in exactly one file; a file never spans two dt values; the spool
//! checkpoint never passes a record whose file is not yet in the store; when the spool closes the
//! batcher drains it and flushes every pending file before returning.

mod buffer;
mod policy;

pub use buffer::{BufferError, FinishedFile};
pub use policy::{FlushLimits, FlushReason, should_flush};

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::NaiveDate;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use self::buffer::TableBuffer;
use crate::event::{Event, Parsed, RowInput, build_row};
use crate::schema::{Catalog, Table};
use crate::sink::{ObjectKey, PutOutcome, Uploader, WriterId};
use crate::sink::upload::UploadAborted;
use crate::spool::{Record, Seq, Spool, SpoolReader};

/// The batcher stopped without flushing everything.
#[derive(Debug, thiserror::Error)]
pub enum BatcherError {
    #[error(transparent)]
    Buffer(#[from] BufferError),
    #[error(transparent)]
    Upload(#[from] UploadAborted),
    #[error("encoding task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
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
    spool: Arc<Spool>,
    /// Cancelled when shutdown's deadline passes: uploads stop retrying.
    abort: CancellationToken,
    buffers: BTreeMap<(Table, NaiveDate), TableBuffer>,
    last_read: Seq,
    report: BatcherReport,
}

impl Batcher {
    pub fn new(
        catalog: Arc<Catalog>,
        limits: FlushLimits,
        writer: WriterId,
        uploader: Uploader,
        spool: Arc<Spool>,
        abort: CancellationToken,
    ) -> Batcher {
        Batcher {
            catalog,
            limits,
            writer,
            uploader,
            spool,
            abort,
            buffers: BTreeMap::new(),
            last_read: Seq(0),
            report: BatcherReport::default(),
        }
    }

    /// Runs until the spool is closed and drained, then flushes everything.
    pub async fn run(mut self, mut reader: SpoolReader) -> Result<BatcherReport, BatcherError> {
        loop {
            let due = self.next_age_deadline();
            tokio::select! {
                record = reader.next() => match record {
                    Some(record) => self.ingest(record).await?,
                    None => break,
                },
                () = sleep_until(due) => self.flush_due(Instant::now()).await?,
            }
        }
        let keys: Vec<_> = self.buffers.keys().copied().collect();
        for key in keys {
            self.flush(key, FlushReason::Shutdown).await?;
        }
        Ok(self.report)
    }

    async fn ingest(&mut self, record: Record) -> Result<(), BatcherError> {
        let Record { seq, delivery } = record;
        self.last_read = seq;
        self.report.records += 1;
        let parsed = Event::parse(&delivery.body);
        let table = parsed.table();
        let dt = parsed.partition_date(delivery.received_at);
        let (json, dead) = match &parsed {
            Parsed::Event(e) => (Some(&e.json), None),
            Parsed::Dead(d) => {
                tracing::warn!(seq = seq.0, reason = d.reason.code(), error = %d.error, "signed delivery is not an event; kept in dead_letter");
                (d.json.as_ref(), Some((d.reason.code(), d.error.as_str())))
            }
        };
        let input = RowInput { json, body: &delivery.body, received_at: delivery.received_at, dead };
        let schema = self.catalog.table(table);
        let row = build_row(schema, &input);
        let buffer = match self.buffers.entry((table, dt)) {
            std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::btree_map::Entry::Vacant(e) => {
                e.insert(TableBuffer::new(schema.arrow.clone(), seq, Instant::now())?)
            }
        };
        buffer.push(seq, &row, delivery.body.len())?;
        let (rows, bytes) = (buffer.rows(), buffer.bytes());
        if let Some(reason) = should_flush(rows, bytes, std::time::Duration::ZERO, &self.limits) {
            self.flush((table, dt), reason).await?;
        }
        Ok(())
    }

    fn next_age_deadline(&self) -> Option<Instant> {
        self.buffers.values().map(|b| b.opened_at() + self.limits.max_age).min()
    }

    async fn flush_due(&mut self, now: Instant) -> Result<(), BatcherError> {
        let due: Vec<_> = self
            .buffers
            .iter()
            .filter_map(|(k, b)| should_flush(b.rows(), b.bytes(), now - b.opened_at(), &self.limits).map(|r| (*k, r)))
            .collect();
        for (key, reason) in due {
            self.flush(key, reason).await?;
        }
        Ok(())
    }

    async fn flush(&mut self, key: (Table, NaiveDate), reason: FlushReason) -> Result<(), BatcherError> {
        let Some(buffer) = self.buffers.remove(&key) else { return Ok(()) };
        let file = tokio::task::spawn_blocking(move || buffer.finish()).await??;
        let (table, dt) = key;
        let object = ObjectKey::for_batch(table, dt, &self.writer, file.first, file.last);
        let size = file.bytes.len();
        let outcome = self.uploader.put(&object, file.bytes, &self.abort).await?;
        self.report.files += 1;
        self.report.rows_written += file.rows as u64;
        tracing::info!(
            table = table.name(), dt = %dt, rows = file.rows, bytes = size, reason = reason.as_str(),
            key = %object, existed = outcome == PutOutcome::AlreadyExisted, "file written"
        );
        self.spool.ack(self.checkpoint());
        Ok(())
    }

    /// Everything at or below this sequence number is in the store (or in no file at all).
    fn checkpoint(&self) -> Seq {
        match self.buffers.values().map(TableBuffer::first).min() {
            Some(first) => Seq(first.0.saturating_sub(1)),
            None => self.last_read,
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
