//! Writing a partition's merged rows into files of about the target size, each streamed to the
//! store as it is encoded (a multipart upload of one row group at a time), so memory holds one
//! row group, not a file.
//!
//! Compacted files are named `part-compacted-<uuid v7>.parquet`: a new name every time, so a
//! crashed compaction leaves only an object no commit references (vacuum deletes it later).

use std::sync::Arc;

use arrow_array::{RecordBatch, StructArray};
use arrow_schema::SchemaRef;
use object_store::ObjectStore;
use object_store::buffered::BufWriter;
use object_store::path::Path;
use parquet::arrow::AsyncArrowWriter;
use parquet::file::properties::WriterProperties;
use tokio::runtime::Handle;

use super::CompactError;
use crate::sink::StatsSpec;
use crate::sink::stats::FileStats;

/// How a compacted file's name starts.
pub(crate) const PREFIX: &str = "part-compacted-";

/// Rows per row group of a compacted file at most (DuckDB, Spark and Trino split work by row group).
const ROW_GROUP_ROWS: usize = 1 << 20;

/// Encoded bytes per row group at most: what the writer holds in memory.
const ROW_GROUP_BYTES: usize = 32 << 20;

/// A compacted file in the store.
#[derive(Debug)]
pub(crate) struct Written {
    /// The store key, relative to the storage URL.
    pub key: String,
    /// The file name.
    pub name: String,
    pub size: u64,
    pub rows: u64,
    /// Delta statistics, for a Delta table.
    pub stats: Option<StructArray>,
}

/// Files being written into one partition directory.
pub(crate) struct Output {
    runtime: Handle,
    store: Arc<dyn ObjectStore>,
    /// `<table>/dt=<date>`.
    dir: String,
    schema: SchemaRef,
    stats: Option<Arc<StatsSpec>>,
    target: u64,
    open: Option<Open>,
    written: Vec<Written>,
}

struct Open {
    writer: AsyncArrowWriter<BufWriter>,
    key: String,
    name: String,
    rows: u64,
    stats: Option<FileStats>,
}

impl Output {
    pub(crate) fn new(
        runtime: Handle,
        store: Arc<dyn ObjectStore>,
        dir: String,
        schema: SchemaRef,
        stats: Option<Arc<StatsSpec>>,
        target: u64,
    ) -> Output {
        Output { runtime, store, dir, schema, stats, target, open: None, written: Vec::new() }
    }

    pub(crate) fn write(&mut self, batch: &RecordBatch) -> Result<(), CompactError> {
        let open = match &mut self.open {
            Some(open) => open,
            None => self.open.insert(self.start()?),
        };
        if let Some(stats) = &mut open.stats {
            stats.merge(batch)?;
        }
        self.runtime.block_on(open.writer.write(batch))?;
        open.rows += batch.num_rows() as u64;
        if (open.writer.bytes_written() + open.writer.in_progress_size()) as u64 >= self.target {
            self.close()?;
        }
        Ok(())
    }

    fn start(&self) -> Result<Open, CompactError> {
        let name = format!("{PREFIX}{}.parquet", uuid::Uuid::now_v7());
        let key = format!("{}/{name}", self.dir);
        // Two parts in flight at most: the upload holds 20 MiB, not the default 80.
        let sink = BufWriter::new(self.store.clone(), Path::from(key.as_str())).with_max_concurrency(2);
        let writer = AsyncArrowWriter::try_new(sink, self.schema.clone(), Some(properties()))?;
        Ok(Open { writer, key, name, rows: 0, stats: self.stats.as_deref().map(FileStats::new) })
    }

    fn close(&mut self) -> Result<(), CompactError> {
        let Some(mut open) = self.open.take() else { return Ok(()) };
        self.runtime.block_on(open.writer.finish())?;
        let stats = open.stats.map(FileStats::finish).transpose()?.flatten();
        let size = open.writer.bytes_written() as u64;
        self.written.push(Written { key: open.key, name: open.name, size, rows: open.rows, stats });
        Ok(())
    }

    /// Finishes the last file; the files written, in order.
    pub(crate) fn finish(&mut self) -> Result<Vec<Written>, CompactError> {
        self.close()?;
        Ok(std::mem::take(&mut self.written))
    }

    /// Gives up: aborts the open file's upload (no incomplete multipart upload is left) and
    /// returns the keys of the files finished so far, to delete.
    pub(crate) fn abandon(mut self) -> Vec<String> {
        if let Some(open) = self.open.take() {
            let mut upload = open.writer.into_inner();
            if let Err(e) = self.runtime.block_on(upload.abort()) {
                tracing::debug!(key = %open.key, error = %e, "cannot abort the upload of an abandoned compacted file");
            }
        }
        self.written.into_iter().map(|w| w.key).collect()
    }
}

/// The live files' properties, with large row groups.
fn properties() -> WriterProperties {
    crate::sink::encode::writer_properties()
        .into_builder()
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_max_row_group_bytes(Some(ROW_GROUP_BYTES))
        .set_column_bloom_filter_max_ndv(parquet::schema::types::ColumnPath::from("event_id"), ROW_GROUP_ROWS as u64)
        .build()
}
