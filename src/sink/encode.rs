//! Parquet encoding: a [`FileWriter`] takes record batches as they come and writes the file into
//! memory or a staging file, one row group at a time.
//!
//! Properties (the same for every file): zstd level 3, page-level statistics, row groups of at
//! most 65,536 rows, a bloom filter on `event_id` sized for one row group, timestamps kept as
//! microseconds with UTC. Columns whose every value is new (the event id, the raw JSON, the
//! receive time) are written without a dictionary: building one only to abandon it cost a tenth
//! of the batcher's CPU and most of its memory (measured with `bench/run.sh` and heaptrack).

use std::io::Write;

use arrow_array::{RecordBatch, StructArray};
use arrow_schema::SchemaRef;
use bytes::Bytes;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;

use super::stats::{FileStats, StatsError, StatsSpec};

const MAX_ROW_GROUP_ROWS: usize = 65_536;

/// Columns that hold a different value in every row.
const UNIQUE_COLUMNS: [&str; 4] = ["event_id", "raw_event", "raw_body", "received_at"];

/// Encoding a batch failed; a defect, since rows are normalized to the schema before encoding.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    #[error("parquet encoding failed: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    #[error(transparent)]
    Stats(#[from] StatsError),
    #[error("{0}")]
    Other(String),
}

/// The writer properties every file is written with.
pub fn writer_properties() -> WriterProperties {
    let builder = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).unwrap_or_default()))
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_max_row_group_row_count(Some(MAX_ROW_GROUP_ROWS))
        .set_column_bloom_filter_enabled(ColumnPath::from("event_id"), true)
        .set_column_bloom_filter_max_ndv(ColumnPath::from("event_id"), MAX_ROW_GROUP_ROWS as u64)
        .set_created_by(format!("oncehub-bridge {}", env!("CARGO_PKG_VERSION")));
    UNIQUE_COLUMNS
        .into_iter()
        .fold(builder, |b, column| b.set_column_dictionary_enabled(ColumnPath::from(column), false))
        .build()
}

/// One Parquet file being written: into memory (`Vec<u8>`, the default) or into a staging file
/// (see `staging`), with its Delta statistics when the table keeps them. The writer holds the
/// open row group in memory and hands each finished one to its sink.
pub struct FileWriter<W: Write + Send = Vec<u8>> {
    writer: ArrowWriter<W>,
    stats: Option<FileStats>,
}

/// A finished file: its bytes and, for a Delta table, its statistics.
pub struct Encoded {
    pub bytes: Bytes,
    pub stats: Option<StructArray>,
}

impl FileWriter<Vec<u8>> {
    /// A file built in memory.
    pub fn new(schema: SchemaRef, stats: Option<&StatsSpec>) -> Result<FileWriter, EncodeError> {
        FileWriter::to(Vec::new(), schema, stats)
    }

    /// Writes the footer and returns the whole file.
    pub fn finish(self) -> Result<Encoded, EncodeError> {
        let (bytes, stats) = self.close()?;
        Ok(Encoded { bytes: Bytes::from(bytes), stats })
    }
}

impl<W: Write + Send> FileWriter<W> {
    /// A file written into `sink`.
    pub fn to(sink: W, schema: SchemaRef, stats: Option<&StatsSpec>) -> Result<FileWriter<W>, EncodeError> {
        let writer = ArrowWriter::try_new(sink, schema, Some(writer_properties()))?;
        Ok(FileWriter { writer, stats: stats.map(FileStats::new) })
    }

    pub fn write(&mut self, batch: &RecordBatch) -> Result<(), EncodeError> {
        if let Some(stats) = &mut self.stats {
            stats.merge(batch)?;
        }
        Ok(self.writer.write(batch)?)
    }

    /// The file's size so far: bytes handed to the sink plus the open row group.
    pub fn size(&self) -> usize {
        self.writer.bytes_written() + self.writer.in_progress_size()
    }

    /// Writes the last row group and the footer; returns the sink and the statistics.
    pub fn close(self) -> Result<(W, Option<StructArray>), EncodeError> {
        let stats = self.stats.map(FileStats::finish).transpose()?.flatten();
        Ok((self.writer.into_inner()?, stats))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{Int64Array, StringArray};
    use arrow_schema::{DataType, Field, Schema};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use std::sync::Arc;

    #[test]
    fn a_file_round_trips_with_zstd_and_a_bloom_filter() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("event_id", DataType::Utf8, false),
            Field::new("n", DataType::Int64, true),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![Arc::new(StringArray::from(vec!["a", "b"])), Arc::new(Int64Array::from(vec![Some(1), None]))],
        )
        .unwrap();
        let mut w = FileWriter::new(schema, None).unwrap();
        w.write(&batch).unwrap();
        w.write(&batch).unwrap();
        let bytes = w.finish().unwrap().bytes;
        let builder = ParquetRecordBatchReaderBuilder::try_new(bytes).unwrap();
        let meta = builder.metadata().clone();
        let col = meta.row_group(0).column(0);
        assert!(matches!(col.compression(), Compression::ZSTD(_)), "{:?}", col.compression());
        assert!(col.bloom_filter_offset().is_some());
        let rows: usize = builder.build().unwrap().map(|b| b.unwrap().num_rows()).sum();
        assert_eq!(rows, 4);
    }
}
