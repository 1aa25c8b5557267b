//! Per-file column statistics for a Delta `add` action (row count, null counts, min/max), gathered
//! by the kernel's own accumulator as each batch goes into the Parquet writer, so a file is never
//! read back to describe it.

use std::sync::Arc;

use arrow_array::{RecordBatch, StructArray};
use delta_kernel::expressions::ColumnName;
use delta_kernel::schema::StructType;
use delta_kernel_default_engine::stats::FileStatsAccumulator;

/// Which columns a table keeps statistics for, and its physical schema: both from the table's
/// write state (see `lake::delta`), the same for every file until the table's metadata changes.
#[derive(Debug)]
pub struct StatsSpec {
    pub columns: Vec<ColumnName>,
    pub physical: Arc<StructType>,
}

/// Statistics of one file being written.
#[derive(Debug)]
pub(crate) struct FileStats(FileStatsAccumulator);

/// Gathering statistics failed (a batch whose shape the table does not have: a defect).
#[derive(Debug, thiserror::Error)]
#[error("file statistics: {0}")]
pub struct StatsError(#[from] delta_kernel::KernelError);

impl FileStats {
    pub(crate) fn new(spec: &StatsSpec) -> FileStats {
        FileStats(FileStatsAccumulator::new(&spec.columns, &spec.physical))
    }

    pub(crate) fn merge(&mut self, batch: &RecordBatch) -> Result<(), StatsError> {
        Ok(self.0.merge(batch)?)
    }

    /// The file's statistics, one row; `None` when no batch was merged.
    pub(crate) fn finish(self) -> Result<Option<StructArray>, StatsError> {
        Ok(self.0.finish()?)
    }
}
