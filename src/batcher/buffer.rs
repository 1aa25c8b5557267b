//! One pending file: the rows of one (table, dt) in spool order, appended straight into Arrow
//! column builders (see `event::columns`), a chunk at a time streamed into a Parquet writer that
//! stages each finished row group on local disk (see `sink::staging`): memory holds the open row
//! group, not the file.
//!
//! Invariant: a buffer holds every row of its (table, dt) with sequence numbers in
//! `[first, last]` that the batcher read, and no other rows.

use arrow_schema::ArrowError;
use chrono::{DateTime, Utc};
use tokio::time::Instant;

use crate::event::{Columns, Misfit, RowInput};
use crate::schema::TableSchema;
use crate::sink::{EncodeError, FileBody, FileWriter, StagingSink, StatsSpec};
use crate::spool::Seq;

/// Rows built into Arrow before they go to the Parquet writer.
const CHUNK_ROWS: usize = 1024;
/// A chunk also goes once its deliveries hold this many bytes, far below Arrow's 2 GiB offsets.
const CHUNK_BYTES: usize = 32 * 1024 * 1024;

/// Building a file failed: a defect, since every row is checked against its table first.
#[derive(Debug, thiserror::Error)]
pub enum BufferError {
    #[error("arrow refused a chunk of checked rows: {0}")]
    Arrow(#[from] ArrowError),
    #[error(transparent)]
    Encode(#[from] EncodeError),
    #[error("cannot finish a staged file: {0}")]
    Staging(#[from] std::io::Error),
}

/// A finished Parquet file and what it holds.
#[derive(Debug)]
pub struct FinishedFile {
    pub body: FileBody,
    pub rows: usize,
    pub first: Seq,
    pub last: Seq,
    /// Each row's `received_at`, for the event-to-queryable lag metric.
    pub received_at: Vec<DateTime<Utc>>,
    /// Each row's spool sequence, for the inspector.
    pub seqs: Vec<u64>,
    /// The file's Delta statistics (a Delta table only).
    pub stats: Option<arrow_array::StructArray>,
}

pub(super) struct TableBuffer {
    columns: Columns,
    writer: FileWriter<StagingSink>,
    rows: usize,
    /// Size of the deliveries whose rows are in `columns`, not yet encoded.
    pending_bytes: usize,
    opened_at: Instant,
    first: Seq,
    last: Seq,
    /// Set when replaying a flush intent: the file must end exactly here.
    cut_at: Option<Seq>,
    received_at: Vec<DateTime<Utc>>,
    seqs: Vec<u64>,
}

impl TableBuffer {
    pub(super) fn new(
        table: &TableSchema,
        stats: Option<&StatsSpec>,
        first: Seq,
        now: Instant,
        sink: StagingSink,
    ) -> Result<TableBuffer, BufferError> {
        Ok(TableBuffer {
            columns: Columns::new(table),
            writer: FileWriter::to(sink, table.arrow.clone(), stats)?,
            rows: 0,
            pending_bytes: 0,
            opened_at: now,
            first,
            last: first,
            cut_at: None,
            received_at: Vec::new(),
            seqs: Vec::new(),
        })
    }

    /// Makes this buffer reproduce a file recorded by a flush intent ending at `last`.
    pub(super) fn cut_at(mut self, last: Seq) -> TableBuffer {
        self.cut_at = Some(last);
        self
    }

    /// The intent's end, when this buffer replays one.
    pub(super) fn replay_end(&self) -> Option<Seq> {
        self.cut_at
    }

    pub(super) fn last(&self) -> Seq {
        self.last
    }

    /// Does this row fit the table? A row that does not becomes a dead letter instead.
    pub(super) fn check(&self, input: &RowInput<'_>) -> Result<(), Misfit> {
        self.columns.check(input)
    }

    /// Adds a row that passed [`TableBuffer::check`].
    pub(super) fn push(&mut self, seq: Seq, input: &RowInput<'_>) -> Result<(), BufferError> {
        self.columns.append(input);
        self.received_at.push(input.received_at);
        self.seqs.push(seq.0);
        self.rows += 1;
        self.first = self.first.min(seq);
        self.last = self.last.max(seq);
        self.pending_bytes += input.body.len();
        if self.columns.rows() >= CHUNK_ROWS || self.pending_bytes >= CHUNK_BYTES {
            self.encode_pending()?;
        }
        Ok(())
    }

    /// Hands the built rows to the Parquet writer.
    fn encode_pending(&mut self) -> Result<(), BufferError> {
        self.pending_bytes = 0;
        if self.columns.rows() == 0 {
            return Ok(());
        }
        let batch = self.columns.finish()?;
        Ok(self.writer.write(&batch)?)
    }

    pub(super) fn rows(&self) -> usize {
        self.rows
    }

    /// The file's size so far (for `--flush-max-bytes`): encoded, plus the deliveries not yet.
    pub(super) fn bytes(&self) -> usize {
        self.writer.size() + self.pending_bytes
    }

    pub(super) fn opened_at(&self) -> Instant {
        self.opened_at
    }

    pub(super) fn first(&self) -> Seq {
        self.first
    }

    /// Encodes what is left and returns the whole file. CPU-bound: run off the async threads.
    pub(super) fn finish(mut self) -> Result<FinishedFile, BufferError> {
        self.encode_pending()?;
        let (sink, stats) = self.writer.close()?;
        let body = sink.finish()?;
        let (rows, first, last, received_at, seqs) = (self.rows, self.first, self.last, self.received_at, self.seqs);
        Ok(FinishedFile { body, rows, first, last, received_at, seqs, stats })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Event, Parsed};
    use crate::schema::{Catalog, Table};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    #[test]
    fn rows_across_chunks_all_reach_the_file() {
        let catalog = Catalog::load().unwrap();
        let schema = catalog.table(Table::Bookings);
        let mut buf = TableBuffer::new(schema, None, Seq(1), Instant::now(), StagingSink::memory()).unwrap();
        let n = CHUNK_ROWS * 2 + 3;
        for i in 0..n {
            let body = format!(
                r#"{{"id":"E{i}","type":"booking.scheduled","data":{{"object":"booking","duration_minutes":{i}}}}}"#
            );
            let Parsed::Event(event) = Event::parse(body.as_bytes()) else { panic!("not an event") };
            let input = RowInput {
                json: Some(&event.json),
                text: Some(&body),
                body: body.as_bytes(),
                received_at: Utc::now(),
                dead: None,
            };
            buf.check(&input).unwrap();
            buf.push(Seq(i as u64 + 1), &input).unwrap();
        }
        assert!(buf.bytes() > 0);
        let file = buf.finish().unwrap();
        assert_eq!((file.rows, file.first, file.last), (n, Seq(1), Seq(n as u64)));
        assert_eq!((file.seqs.len(), file.received_at.len()), (n, n));
        let FileBody::Memory(bytes) = file.body else { panic!("an in-memory sink gives an in-memory file") };
        let reader = ParquetRecordBatchReaderBuilder::try_new(bytes).unwrap().build().unwrap();
        assert_eq!(reader.map(|b| b.unwrap().num_rows()).sum::<usize>(), n);
    }

    #[test]
    fn a_row_with_a_null_where_none_may_be_is_refused_by_the_check() {
        let catalog = Catalog::load().unwrap();
        let buf = TableBuffer::new(catalog.table(Table::Bookings), None, Seq(1), Instant::now(), StagingSink::memory())
            .unwrap();
        // An empty `type` passes no envelope rule; built by hand, as a defect there would.
        let json = crate::event::Node::parse(r#"{"id": "E3", "type": "", "data": {"object": "booking"}}"#).unwrap();
        let input = RowInput { json: Some(&json), text: Some("{}"), body: b"{}", received_at: Utc::now(), dead: None };
        let misfit = buf.check(&input).unwrap_err();
        assert_eq!(misfit.path, "event_type");
    }
}
