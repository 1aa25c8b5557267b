//! One pending file: the rows of one (table, dt) in spool order, decoded into Arrow in chunks and
//! streamed into an in-memory Parquet writer, so memory stays near the encoded size.
//!
//! Invariant: a buffer holds every row of its (table, dt) with sequence numbers in
//! `[first, last]` that the batcher read, and no other rows.

use arrow_json::reader::{Decoder, ReaderBuilder};
use std::sync::Arc;

use arrow_schema::{ArrowError, SchemaRef};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde_json::Value;
use tokio::time::Instant;

use crate::sink::{EncodeError, Encoded, FileWriter, StatsSpec};
use crate::spool::Seq;

/// Rows decoded to Arrow at a time (the Arrow decoder preallocates per row of a chunk).
const CHUNK_ROWS: usize = 1024;
/// A chunk is also decoded once its rows hold this many bytes, far below Arrow's 2 GiB offsets.
const CHUNK_BYTES: usize = 32 * 1024 * 1024;

/// Building a file failed: the Parquet writer refused a batch, or the decoder could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BufferError {
    #[error("arrow decoding failed: {0}")]
    Arrow(#[from] ArrowError),
    #[error(transparent)]
    Encode(#[from] EncodeError),
}

/// A row the Arrow decoder refused although it passed the fit check: it left the file, and the
/// batcher keeps it as a dead letter (`encode_error`) instead.
#[derive(Debug)]
pub struct Rejected {
    pub seq: Seq,
    pub body: Bytes,
    pub received_at: DateTime<Utc>,
    pub error: String,
}

/// A finished Parquet file and what it holds.
#[derive(Debug)]
pub struct FinishedFile {
    pub bytes: Bytes,
    pub rows: usize,
    pub first: Seq,
    pub last: Seq,
    /// Each row's `received_at`, for the event-to-queryable lag metric.
    pub received_at: Vec<DateTime<Utc>>,
    /// Each row's spool sequence, for the inspector.
    pub seqs: Vec<u64>,
    /// Rows refused while the last chunk was decoded.
    pub rejected: Vec<Rejected>,
    /// The file's Delta statistics (a Delta table only).
    pub stats: Option<arrow_array::StructArray>,
}

/// What a row's chunk needs to give the row back if Arrow refuses it.
struct Origin {
    seq: Seq,
    body: Bytes,
    received_at: DateTime<Utc>,
}

/// Builds a delivery's row again, for the rare chunk the decoder refuses (see
/// [`TableBuffer::push`]): rows go into the decoder at once, so only their deliveries are kept.
pub(super) type Rebuild = Arc<dyn Fn(&Bytes, DateTime<Utc>) -> Value + Send + Sync>;

pub(super) struct TableBuffer {
    schema: SchemaRef,
    decoder: Decoder,
    writer: FileWriter,
    rebuild: Rebuild,
    /// Where the rows in the decoder came from (the rows themselves are in its tape).
    origins: Vec<Origin>,
    /// The decoder refused a row while it was being added: the chunk must be rebuilt.
    refused: bool,
    rows: usize,
    /// Approximate size of the rows in `chunk`.
    undecoded_bytes: usize,
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
        schema: SchemaRef,
        stats: Option<&StatsSpec>,
        first: Seq,
        now: Instant,
        rebuild: Rebuild,
    ) -> Result<TableBuffer, BufferError> {
        Ok(TableBuffer {
            decoder: decoder(&schema)?,
            writer: FileWriter::new(schema.clone(), stats)?,
            schema,
            rebuild,
            origins: Vec::with_capacity(CHUNK_ROWS),
            refused: false,
            rows: 0,
            undecoded_bytes: 0,
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

    /// Adds a row that passed the fit check; `body` is the delivery (its length the size
    /// estimate). Returns the rows of the chunk this push completed that Arrow refused.
    pub(super) fn push(
        &mut self,
        seq: Seq,
        row: &Value,
        body: &Bytes,
        received_at: DateTime<Utc>,
    ) -> Result<Vec<Rejected>, BufferError> {
        if !self.refused && self.decoder.serialize(std::slice::from_ref(row)).is_err() {
            self.refused = true;
        }
        self.origins.push(Origin { seq, body: body.clone(), received_at });
        self.rows += 1;
        self.first = self.first.min(seq);
        self.last = self.last.max(seq);
        self.undecoded_bytes += body.len();
        if self.origins.len() >= CHUNK_ROWS || self.undecoded_bytes >= CHUNK_BYTES {
            return self.encode_pending();
        }
        Ok(Vec::new())
    }

    /// Decodes the chunk and hands it to the Parquet writer. Should Arrow refuse the chunk, each
    /// row is decoded alone, so only the rows it refuses leave the file.
    fn encode_pending(&mut self) -> Result<Vec<Rejected>, BufferError> {
        let origins = std::mem::take(&mut self.origins);
        self.undecoded_bytes = 0;
        if origins.is_empty() {
            return Ok(Vec::new());
        }
        let flushed = if std::mem::take(&mut self.refused) {
            Err(ArrowError::JsonError("a row was refused as it was added".into()))
        } else {
            self.decoder
                .flush()
                .and_then(|b| b.ok_or_else(|| ArrowError::JsonError("the decoder returned no rows".into())))
        };
        match flushed {
            Ok(batch) => {
                self.writer.write(&batch)?;
                self.received_at.extend(origins.iter().map(|o| o.received_at));
                self.seqs.extend(origins.iter().map(|o| o.seq.0));
                return Ok(Vec::new());
            }
            Err(e) => {
                tracing::error!(error = %e, rows = origins.len(), "arrow refused a chunk of rows that passed the fit check; decoding them one by one")
            }
        }
        let mut rejected = Vec::new();
        for origin in origins {
            self.decoder = decoder(&self.schema)?;
            let row = (self.rebuild)(&origin.body, origin.received_at);
            match decode(&mut self.decoder, std::slice::from_ref(&row)) {
                Ok(batch) => {
                    self.writer.write(&batch)?;
                    self.received_at.push(origin.received_at);
                    self.seqs.push(origin.seq.0);
                }
                Err(e) => {
                    self.rows -= 1;
                    let Origin { seq, body, received_at } = origin;
                    rejected.push(Rejected { seq, body, received_at, error: e.to_string() });
                }
            }
        }
        self.decoder = decoder(&self.schema)?;
        Ok(rejected)
    }

    pub(super) fn rows(&self) -> usize {
        self.rows
    }

    pub(super) fn bytes(&self) -> usize {
        self.writer.memory_size() + self.undecoded_bytes
    }

    pub(super) fn opened_at(&self) -> Instant {
        self.opened_at
    }

    pub(super) fn first(&self) -> Seq {
        self.first
    }

    /// Encodes what is left and returns the whole file. CPU-bound: run off the async threads.
    pub(super) fn finish(mut self) -> Result<FinishedFile, BufferError> {
        let rejected = self.encode_pending()?;
        let Encoded { bytes, stats } = self.writer.finish()?;
        let (rows, first, last, received_at, seqs) = (self.rows, self.first, self.last, self.received_at, self.seqs);
        Ok(FinishedFile { bytes, rows, first, last, received_at, seqs, rejected, stats })
    }
}

fn decoder(schema: &SchemaRef) -> Result<Decoder, ArrowError> {
    ReaderBuilder::new(schema.clone()).with_batch_size(CHUNK_ROWS).build_decoder()
}

/// Decodes `rows` into one record batch.
fn decode(decoder: &mut Decoder, rows: &[Value]) -> Result<arrow_array::RecordBatch, ArrowError> {
    decoder.serialize(rows)?;
    decoder.flush()?.ok_or_else(|| ArrowError::JsonError("the decoder returned no rows".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{RowInput, build_row};
    use crate::schema::{Catalog, Table};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    /// Rows as the batcher builds them, from the body alone (no fit check: a defect in it is
    /// what the fallback is for).
    fn rebuild_for(table: Table) -> Rebuild {
        Arc::new(move |body: &Bytes, received_at| {
            let catalog = Catalog::load().unwrap();
            let json: Value = serde_json::from_slice(body).unwrap();
            build_row(catalog.table(table), &RowInput { json: Some(&json), body, received_at, dead: None })
        })
    }

    #[test]
    fn rows_across_chunks_all_reach_the_file() {
        let catalog = Catalog::load().unwrap();
        let schema = catalog.table(Table::Bookings);
        let mut buf =
            TableBuffer::new(schema.arrow.clone(), None, Seq(1), Instant::now(), rebuild_for(Table::Bookings)).unwrap();
        let n = CHUNK_ROWS * 2 + 3;
        for i in 0..n {
            let body = format!(
                r#"{{"id":"E{i}","type":"booking.scheduled","data":{{"object":"booking","duration_minutes":{i}}}}}"#
            );
            let json: Value = serde_json::from_str(&body).unwrap();
            let input =
                RowInput { json: Some(&json), body: body.as_bytes(), received_at: chrono::Utc::now(), dead: None };
            let rejected = buf
                .push(Seq(i as u64 + 1), &build_row(schema, &input), &Bytes::from(body.clone()), chrono::Utc::now())
                .unwrap();
            assert!(rejected.is_empty());
        }
        assert!(buf.bytes() > 0);
        let file = buf.finish().unwrap();
        assert_eq!((file.rows, file.first, file.last), (n, Seq(1), Seq(n as u64)));
        let reader = ParquetRecordBatchReaderBuilder::try_new(file.bytes).unwrap().build().unwrap();
        assert_eq!(reader.map(|b| b.unwrap().num_rows()).sum::<usize>(), n);
    }

    #[test]
    fn a_row_arrow_refuses_leaves_the_chunk_and_the_rest_lands() {
        let catalog = Catalog::load().unwrap();
        let schema = catalog.table(Table::Bookings);
        let mut buf =
            TableBuffer::new(schema.arrow.clone(), None, Seq(1), Instant::now(), rebuild_for(Table::Bookings)).unwrap();
        for i in 1..=5u64 {
            // Row 3 has an empty `type`: it skips the fit check here, as a defect in it would.
            let ty = if i == 3 { "" } else { "booking.scheduled" };
            let body = format!(r#"{{"id":"E{i}","type":"{ty}","data":{{"object":"booking"}}}}"#);
            let json: Value = serde_json::from_str(&body).unwrap();
            let input =
                RowInput { json: Some(&json), body: body.as_bytes(), received_at: chrono::Utc::now(), dead: None };
            assert!(
                buf.push(Seq(i), &build_row(schema, &input), &Bytes::from(body), chrono::Utc::now())
                    .unwrap()
                    .is_empty()
            );
        }
        let file = buf.finish().unwrap();
        assert_eq!(file.rows, 4);
        assert_eq!(file.received_at.len(), 4);
        assert_eq!(file.rejected.len(), 1);
        assert_eq!(file.rejected[0].seq, Seq(3));
        assert!(file.rejected[0].body.starts_with(br#"{"id":"E3""#));
        let reader = ParquetRecordBatchReaderBuilder::try_new(file.bytes).unwrap().build().unwrap();
        assert_eq!(reader.map(|b| b.unwrap().num_rows()).sum::<usize>(), 4);
    }
}
