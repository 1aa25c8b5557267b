//! One pending file: the rows of one (table, dt) in spool order, decoded into Arrow in chunks and
//! streamed into an in-memory Parquet writer, so memory stays near the encoded size.
//!
//! Invariant: a buffer holds every row of its (table, dt) with sequence numbers in
//! `[first, last]` that the batcher read, and no other rows.

use arrow_json::reader::{Decoder, ReaderBuilder};
use arrow_schema::{ArrowError, SchemaRef};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde_json::Value;
use tokio::time::Instant;

use crate::sink::{EncodeError, FileWriter};
use crate::spool::Seq;

/// Rows decoded to Arrow at a time (the Arrow decoder preallocates per row of a chunk).
const CHUNK_ROWS: usize = 1024;

/// Building a file failed: a defect, since rows are normalized to the schema first.
#[derive(Debug, thiserror::Error)]
pub enum BufferError {
    #[error("arrow decoding failed: {0}")]
    Arrow(#[from] ArrowError),
    #[error(transparent)]
    Encode(#[from] EncodeError),
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
}

pub struct TableBuffer {
    decoder: Decoder,
    writer: FileWriter,
    rows: usize,
    /// Approximate size of rows in the decoder, not yet encoded.
    undecoded_bytes: usize,
    opened_at: Instant,
    first: Seq,
    last: Seq,
    /// Set when replaying a flush intent: the file must end exactly here.
    cut_at: Option<Seq>,
    received_at: Vec<DateTime<Utc>>,
}

impl TableBuffer {
    pub fn new(schema: SchemaRef, first: Seq, now: Instant) -> Result<TableBuffer, BufferError> {
        let decoder = ReaderBuilder::new(schema.clone()).with_batch_size(CHUNK_ROWS).build_decoder()?;
        Ok(TableBuffer {
            decoder,
            writer: FileWriter::new(schema)?,
            rows: 0,
            undecoded_bytes: 0,
            opened_at: now,
            first,
            last: first,
            cut_at: None,
            received_at: Vec::new(),
        })
    }

    /// Makes this buffer reproduce a file recorded by a flush intent ending at `last`.
    pub fn cut_at(mut self, last: Seq) -> TableBuffer {
        self.cut_at = Some(last);
        self
    }

    /// The intent's end, when this buffer replays one.
    pub fn replay_end(&self) -> Option<Seq> {
        self.cut_at
    }

    pub fn last(&self) -> Seq {
        self.last
    }

    /// Adds a normalized row; `approx_bytes` is its size estimate (the delivery's length).
    pub fn push(&mut self, seq: Seq, row: &Value, approx_bytes: usize, received_at: DateTime<Utc>) -> Result<(), BufferError> {
        self.decoder.serialize(std::slice::from_ref(row))?;
        self.received_at.push(received_at);
        self.rows += 1;
        self.last = seq;
        self.undecoded_bytes += approx_bytes;
        if self.decoder.len() >= CHUNK_ROWS {
            self.encode_pending()?;
        }
        Ok(())
    }

    fn encode_pending(&mut self) -> Result<(), BufferError> {
        if let Some(batch) = self.decoder.flush()? {
            self.writer.write(&batch)?;
        }
        self.undecoded_bytes = 0;
        Ok(())
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn bytes(&self) -> usize {
        self.writer.memory_size() + self.undecoded_bytes
    }

    pub fn opened_at(&self) -> Instant {
        self.opened_at
    }

    pub fn first(&self) -> Seq {
        self.first
    }

    /// Encodes what is left and returns the whole file. CPU-bound: run off the async threads.
    pub fn finish(mut self) -> Result<FinishedFile, BufferError> {
        self.encode_pending()?;
        let bytes = self.writer.finish()?;
        Ok(FinishedFile { bytes, rows: self.rows, first: self.first, last: self.last, received_at: self.received_at })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{RowInput, build_row};
    use crate::schema::{Catalog, Table};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    #[test]
    fn rows_across_chunks_all_reach_the_file() {
        let catalog = Catalog::load().unwrap();
        let schema = catalog.table(Table::Bookings);
        let mut buf = TableBuffer::new(schema.arrow.clone(), Seq(1), Instant::now()).unwrap();
        let n = CHUNK_ROWS * 2 + 3;
        for i in 0..n {
            let body = format!(r#"{{"id":"E{i}","type":"booking.scheduled","data":{{"object":"booking","duration_minutes":{i}}}}}"#);
            let json: Value = serde_json::from_str(&body).unwrap();
            let input = RowInput { json: Some(&json), body: body.as_bytes(), received_at: chrono::Utc::now(), dead: None };
            buf.push(Seq(i as u64 + 1), &build_row(schema, &input), body.len(), chrono::Utc::now()).unwrap();
        }
        assert!(buf.bytes() > 0);
        let file = buf.finish().unwrap();
        assert_eq!((file.rows, file.first, file.last), (n, Seq(1), Seq(n as u64)));
        let reader = ParquetRecordBatchReaderBuilder::try_new(file.bytes).unwrap().build().unwrap();
        assert_eq!(reader.map(|b| b.unwrap().num_rows()).sum::<usize>(), n);
    }
}
