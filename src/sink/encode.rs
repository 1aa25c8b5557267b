//! Parquet encoding: a [`FileWriter`] takes record batches as they come and writes the file into
//! memory or a staging file, one row group at a time.
//!
//! Properties (the same for every file): zstd level 3, page-level statistics, row groups of at
//! most 65,536 rows, a bloom filter on `event_id` sized for one row group, timestamps kept as
//! microseconds with UTC. Columns whose values are (almost) all new in a file are written without a
//! dictionary (see [`PLAIN_COLUMNS`]): building one only to abandon it at its 1 MiB limit cost a
//! tenth of the batcher's CPU and, per open row group, a megabyte and its hash table per column
//! (measured with `bench/run.sh` and heaptrack; zstd finds what repeats in them anyway).

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

/// Parquet column paths (nested: `struct.field`, `list.list.item.field`) whose values are new in
/// nearly every row: per delivery (ids, raw JSON, receive time), per booking (its ids, its
/// personal cancel and reschedule links, the customer's email, the form's free text) or per
/// conversation (its id, each answer's id and text). Found as the columns whose dictionary
/// reached the limit and fell back in `bench/run.sh`'s files (DuckDB `parquet_metadata`), and
/// kept only where real traffic repeats no more than the benchmark's does. A path a table does
/// not have is ignored.
const PLAIN_COLUMNS: [&str; 15] = [
    "event_id",
    "raw_event",
    "raw_body",
    "received_at",
    "booking_id",
    "tracking_id",
    "customer_email",
    "cancel_url",
    "reschedule_url",
    "cancel_reschedule_url",
    "form_submission.email",
    "form_submission.note",
    "conversation_id",
    "answers.list.item.id",
    "answers.list.item.value",
];

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
    PLAIN_COLUMNS
        .into_iter()
        .map(|path| ColumnPath::new(path.split('.').map(str::to_owned).collect()))
        .fold(builder, |b, column| b.set_column_dictionary_enabled(column, false))
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
    use arrow_array::{ArrayRef, Int64Array, StringArray};
    use arrow_schema::{DataType, Field, Fields, Schema};
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

    /// Each plain path names a leaf column of some table, so renaming a column cannot silently
    /// give it back its dictionary.
    #[test]
    fn every_plain_column_is_a_column_of_a_table() {
        let catalog = crate::schema::Catalog::load().unwrap();
        let mut leaves = std::collections::HashSet::new();
        for table in crate::schema::Table::ALL {
            let parquet = parquet::arrow::ArrowSchemaConverter::new().convert(&catalog.table(table).arrow).unwrap();
            leaves.extend(parquet.columns().iter().map(|c| c.path().string()));
        }
        for path in PLAIN_COLUMNS {
            assert!(leaves.contains(path), "{path} is no table's column");
        }
    }

    #[test]
    fn plain_columns_have_no_dictionary_and_others_keep_theirs() {
        let inner =
            Fields::from(vec![Field::new("note", DataType::Utf8, true), Field::new("name", DataType::Utf8, true)]);
        let schema = Arc::new(Schema::new(vec![
            Field::new("customer_email", DataType::Utf8, true),
            Field::new("status", DataType::Utf8, true),
            Field::new("form_submission", DataType::Struct(inner.clone()), true),
        ]));
        let text =
            |f: fn(usize) -> String| -> ArrayRef { Arc::new(StringArray::from((0..100).map(f).collect::<Vec<_>>())) };
        let form = StructArray::new(inner, vec![text(|i| format!("note {i}")), text(|i| format!("n{}", i % 3))], None);
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![text(|i| format!("c{i}@example.com")), text(|i| format!("s{}", i % 2)), Arc::new(form) as ArrayRef],
        )
        .unwrap();
        let mut w = FileWriter::new(schema, None).unwrap();
        w.write(&batch).unwrap();
        let bytes = w.finish().unwrap().bytes;
        let meta = ParquetRecordBatchReaderBuilder::try_new(bytes).unwrap().metadata().clone();
        let dictionary = |path: &str| {
            let rg = meta.row_group(0);
            let col = rg.columns().iter().find(|c| c.column_path().string() == path).unwrap();
            col.dictionary_page_offset().is_some()
        };
        assert!(!dictionary("customer_email"));
        assert!(!dictionary("form_submission.note"));
        assert!(dictionary("status"));
        assert!(dictionary("form_submission.name"));
    }
}
