//! The batcher: reads spool records in order, parses each once, appends its row to the pending
//! file of its (table, dt), cuts files by rows / bytes / age, uploads them, and acknowledges the
//! spool up to the highest sequence number below which nothing is pending.
//!
//! Before each upload it durably records a flush intent (partition + sequence range) in the spool.
//! After a restart, a replayed record covered by an intent is either skipped, when the intent
//! starts at or below the recovered checkpoint (the checkpoint only passes a file's first record
//! once that file is in the store), or cut into exactly the same file again, so the object gets
//! the same name and the create-only PUT finds it already there. Either way: no second copy.
//!
//! Invariants: a record's row is in exactly one file; a file never spans two dt values; a file
//! holds every record of its (table, dt) between its first and last sequence numbers; the spool
//! checkpoint never passes a record whose file is not yet in the store; when the spool closes the
//! batcher drains it and flushes every pending file before returning.

mod buffer;
mod policy;

pub use buffer::{BufferError, FinishedFile, Rejected};
pub use policy::{FlushLimits, FlushReason, should_flush};

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, NaiveDate, Utc};
use serde_json::Value;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use self::buffer::TableBuffer;
use crate::event::{DeadReason, Event, Parsed, RowInput, build_row, fit};
use crate::metrics;
use crate::schema::{Catalog, Table};
use crate::sink::upload::UploadAborted;
use crate::sink::{ObjectKey, PutOutcome, Uploader, WriterId};
use crate::spool::{Delivery, FlushIntent, Record, Seq, Spool, SpoolError, SpoolReader};

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
        }
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
        loop {
            let due = self.next_age_deadline();
            tokio::select! {
                record = reader.next() => match record? {
                    Some(record) => self.ingest(record).await?,
                    None => break,
                },
                () = sleep_until(due) => self.flush_due(Instant::now()).await?,
            }
        }
        // One at a time: a flush may divert refused rows into another pending file.
        while let Some(key) = self.buffers.first_key_value().map(|(k, _)| *k) {
            self.flush(key, FlushReason::Shutdown).await?;
        }
        Ok(self.report)
    }

    async fn ingest(&mut self, record: Record) -> Result<(), BatcherError> {
        let Record { seq, delivery } = record;
        self.last_read = seq;
        self.report.records += 1;
        let (table, dt, row) = self.route(seq, &delivery);
        if let Some(reason) = self.place(table, dt, seq, row, &delivery.body, delivery.received_at)? {
            self.flush((table, dt), reason).await?;
        }
        Ok(())
    }

    /// The row a delivery becomes and where it goes: its event's table when the row fits it,
    /// else `dead_letter` (the delivery's own reason, or `encode_error` for a row that does not fit).
    fn route(&self, seq: Seq, delivery: &Delivery) -> (Table, NaiveDate, Value) {
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
        match fit::check(&schema.arrow, &row) {
            Ok(()) => (table, dt, row),
            Err(misfit) => self.encode_error(seq, json, &delivery.body, delivery.received_at, &misfit.to_string()),
        }
    }

    /// A dead-letter row for a delivery whose row could not be encoded.
    fn encode_error(
        &self,
        seq: Seq,
        json: Option<&Value>,
        body: &[u8],
        received_at: DateTime<Utc>,
        error: &str,
    ) -> (Table, NaiveDate, Value) {
        tracing::warn!(
            seq = seq.0,
            reason = DeadReason::EncodeError.code(),
            error,
            "a delivery's row does not fit its table; kept in dead_letter"
        );
        metrics::encode_error();
        let input = RowInput { json, body, received_at, dead: Some((DeadReason::EncodeError.code(), error)) };
        (Table::DeadLetter, received_at.date_naive(), build_row(self.catalog.table(Table::DeadLetter), &input))
    }

    /// Adds a row to the pending file of its (table, dt); returns why that file is due, if it is.
    fn place(
        &mut self,
        table: Table,
        dt: NaiveDate,
        seq: Seq,
        row: Value,
        body: &Bytes,
        received_at: DateTime<Utc>,
    ) -> Result<Option<FlushReason>, BatcherError> {
        let partition = ObjectKey::partition(table, dt);
        if self.written.iter().any(|i| i.covers(&partition, seq)) {
            return Ok(None); // replayed, but its file is in the store already
        }
        let buffer = match self.buffers.entry((table, dt)) {
            std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::btree_map::Entry::Vacant(e) => {
                let fresh = TableBuffer::new(self.catalog.table(table).arrow.clone(), seq, Instant::now())?;
                let intent = self.intents.iter().position(|i| i.covers(&partition, seq));
                let fresh = match intent.map(|i| self.intents.swap_remove(i)) {
                    Some(intent) if intent.first == seq.0 => fresh.cut_at(Seq(intent.last)),
                    Some(intent) => {
                        tracing::warn!(
                            partition,
                            first = intent.first,
                            seq = seq.0,
                            "replay does not start where the recorded file did; writing a new file"
                        );
                        fresh
                    }
                    None => fresh,
                };
                e.insert(fresh)
            }
        };
        let rejected = buffer.push(seq, row, body, received_at)?;
        let reason = match buffer.replay_end() {
            Some(end) => (seq >= end).then_some(FlushReason::Replay),
            None => should_flush(buffer.rows(), buffer.bytes(), std::time::Duration::ZERO, &self.limits),
        };
        self.divert(rejected)?;
        Ok(reason)
    }

    /// Keeps rows Arrow refused as `encode_error` dead letters (their files are due by age or size).
    fn divert(&mut self, rejected: Vec<Rejected>) -> Result<(), BatcherError> {
        for r in rejected {
            let json: Option<Value> = serde_json::from_slice(&r.body).ok();
            let (table, dt, row) = self.encode_error(r.seq, json.as_ref(), &r.body, r.received_at, &r.error);
            self.place(table, dt, r.seq, row, &r.body, r.received_at)?;
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
            .filter(|(_, b)| b.replay_end().is_none())
            .filter_map(|(k, b)| should_flush(b.rows(), b.bytes(), now - b.opened_at(), &self.limits).map(|r| (*k, r)))
            .collect();
        for (key, reason) in due {
            self.flush(key, reason).await?;
        }
        Ok(())
    }

    async fn flush(&mut self, key: (Table, NaiveDate), reason: FlushReason) -> Result<(), BatcherError> {
        let Some(buffer) = self.buffers.remove(&key) else { return Ok(()) };
        let (table, dt) = key;
        // A replayed file already has its intent; anything else (including a replay cut short,
        // which should not happen) records one before the upload.
        if buffer.replay_end() != Some(buffer.last()) {
            if buffer.replay_end().is_some() {
                tracing::warn!(table = table.name(), dt = %dt, "a replayed file ended early; writing it under a new name");
            }
            let intent = FlushIntent {
                partition: ObjectKey::partition(table, dt),
                first: buffer.first().0,
                last: buffer.last().0,
            };
            let spool = self.spool.clone();
            until_saved("flush intent", &self.abort, || spool.record_intent(intent.clone())).await?;
        }
        let mut file = tokio::task::spawn_blocking(move || buffer.finish()).await??;
        self.divert(std::mem::take(&mut file.rejected))?;
        let object = ObjectKey::for_batch(table, dt, &self.writer, file.first, file.last);
        let size = file.bytes.len();
        let outcome = self.uploader.put(&object, file.bytes, &self.abort).await?;
        self.report.files += 1;
        self.report.rows_written += file.rows as u64;
        if outcome == PutOutcome::Created {
            metrics::file_written(table.name(), reason.as_str(), size, &file.received_at);
        }
        tracing::info!(
            table = table.name(), dt = %dt, rows = file.rows, bytes = size, reason = reason.as_str(),
            key = %object, existed = outcome == PutOutcome::AlreadyExisted, "file written"
        );
        let (spool, checkpoint) = (self.spool.clone(), self.checkpoint());
        until_saved("checkpoint", &self.abort, || spool.ack(checkpoint)).await
    }

    /// Everything at or below this sequence number is in the store (or in no file at all).
    fn checkpoint(&self) -> Seq {
        match self.buffers.values().map(TableBuffer::first).min() {
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

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests;
