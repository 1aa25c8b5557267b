//! Compaction: a partition's many small files become a few large ones, with one row per event id.
//!
//! For each partition (`dt`) with more than one file, two of them below the target size or one
//! not written by a compaction (see `worth_compacting`): read every
//! file (row group by row group), sort the rows by `event_time` and keep the earliest received
//! copy of each event id (`merge`: an external sort, so memory holds one run, not a partition),
//! re-encode into files of about the target size streamed to the store (`output`), then replace
//! the inputs by the outputs:
//!
//! - Delta tables: `remove` + `add` in one commit (`lake::delta::optimize`), `dataChange=false`
//!   when no row was dropped; a conflicting writer makes it retry on the new version, another
//!   compaction that removed an input first makes it give up (its outputs are deleted).
//! - The plain layout (`plain`): outputs are written first, then the inputs deleted; a glob reader
//!   listing the partition between the two sees both.
//!
//! Every function here blocks (store reads run on the runtime `handle`): call from
//! `spawn_blocking`.

mod adapt;
mod current;
mod merge;
mod output;
mod plain;
mod report;
mod source;

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_schema::{Schema, SchemaRef};
use chrono::NaiveDate;
use delta_kernel::engine::arrow_conversion::TryFromKernel;
use futures_util::StreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::arrow::ParquetRecordBatchStreamBuilder;
use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;

use crate::lake::delta::{NewFile, Replaced};
use crate::lake::{DeltaLake, LakeError};
use crate::schema::{Catalog, Table};
use crate::sink::StatsSpec;

pub use current::{CurrentOutcome, CurrentReport};
pub use report::{Outcome, Report};

/// The default size of a compacted file.
pub const DEFAULT_TARGET_SIZE: u64 = 128 << 20;

/// Rows are sorted in memory in runs of about this many bytes before spilling to disk.
pub const DEFAULT_RUN_BYTES: usize = 64 << 20;

/// Rows per batch read from an input file.
const READ_BATCH_ROWS: usize = 8192;

/// Compaction failed; the table is unchanged (or, for an error from the commit itself, changed
/// or not: a retry finds out).
#[derive(Debug, thiserror::Error)]
pub enum CompactError {
    #[error("reading or encoding rows: {0}")]
    Arrow(#[from] arrow_schema::ArrowError),
    #[error("parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    #[error("temporary run file: {0}")]
    Io(#[from] std::io::Error),
    #[error("store: {0}")]
    Store(#[from] object_store::Error),
    #[error(transparent)]
    Lake(#[from] LakeError),
    #[error(transparent)]
    Stats(#[from] crate::sink::stats::StatsError),
    #[error("stopped: the service is shutting down")]
    Cancelled,
    #[error("{0}")]
    Other(String),
}

/// Which partitions to compact, and how.
#[derive(Debug, Clone)]
pub struct Options {
    /// Compacted files are cut at about this size; files at least this large are "large".
    pub target_size: u64,
    pub since: Option<NaiveDate>,
    pub until: Option<NaiveDate>,
    /// Only partitions before this date (the closed ones, for `serve`).
    pub before: Option<NaiveDate>,
    pub dry_run: bool,
    /// Where sorted runs are spilled.
    pub temp_dir: PathBuf,
    pub run_bytes: usize,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            target_size: DEFAULT_TARGET_SIZE,
            since: None,
            until: None,
            before: None,
            dry_run: false,
            temp_dir: std::env::temp_dir(),
            run_bytes: DEFAULT_RUN_BYTES,
        }
    }
}

/// How the lake keeps its tables.
#[derive(Clone)]
pub enum Layout {
    Delta(Arc<DeltaLake>),
    Plain,
}

/// One input file.
#[derive(Debug, Clone)]
pub struct Input {
    /// The store key, relative to the storage URL.
    pub key: String,
    /// Relative to the table's directory, as the Delta log names it.
    pub path: String,
    pub size: u64,
    pub rows: Option<u64>,
}

/// A partition to compact.
#[derive(Debug, Clone)]
pub struct Partition {
    pub table: Table,
    pub dt: NaiveDate,
    pub inputs: Vec<Input>,
}

impl Partition {
    pub fn bytes(&self) -> u64 {
        self.inputs.iter().map(|i| i.size).sum()
    }
}

/// More than one file, and something to gain: two files below the target size, or a file that
/// is not the output of a compaction (new rows, maybe copies of ids the others hold). A day
/// compacted into 128 + 128 + 44 MiB is left alone.
fn worth_compacting(inputs: &[Input], target: u64) -> bool {
    let small = inputs.iter().filter(|i| i.size < target).count();
    let fresh = inputs.iter().any(|i| !i.path.rsplit('/').next().is_some_and(|n| n.starts_with(output::PREFIX)));
    inputs.len() > 1 && (small >= 2 || fresh)
}

/// Compacts the partitions of one lake.
pub struct Compactor {
    layout: Layout,
    /// Keys relative to the storage URL.
    store: Arc<dyn ObjectStore>,
    catalog: Arc<Catalog>,
    options: Options,
    runtime: Handle,
    /// Checked between batches: a compaction stops (its outputs deleted) once it is cancelled.
    cancel: CancellationToken,
}

impl Compactor {
    pub fn new(
        layout: Layout,
        store: Arc<dyn ObjectStore>,
        catalog: Arc<Catalog>,
        options: Options,
        runtime: Handle,
    ) -> Compactor {
        Compactor { layout, store, catalog, options, runtime, cancel: CancellationToken::new() }
    }

    /// Stops a compaction in progress when `cancel` fires.
    pub fn with_cancel(mut self, cancel: CancellationToken) -> Compactor {
        self.cancel = cancel;
        self
    }

    fn check(&self) -> Result<(), CompactError> {
        if self.cancel.is_cancelled() { Err(CompactError::Cancelled) } else { Ok(()) }
    }

    pub fn options(&self) -> &Options {
        &self.options
    }

    /// The partitions of `table` worth compacting, oldest first.
    pub fn plan(&self, table: Table) -> Result<Vec<Partition>, CompactError> {
        self.check()?;
        let partitions = match &self.layout {
            Layout::Delta(lake) => {
                if lake.open_existing(table)?.is_none() {
                    return Ok(Vec::new());
                }
                let mut by_dt: BTreeMap<NaiveDate, Vec<Input>> = BTreeMap::new();
                let mut untouchable = HashSet::new();
                for file in lake.live_files(table)? {
                    let Some(dt) = file.dt else { continue };
                    if file.has_deletion_vector {
                        untouchable.insert(dt);
                    }
                    let decoded = Path::from_url_path(&file.path).map(|p| p.to_string()).unwrap_or(file.path.clone());
                    let key = format!("{}/{decoded}", table.name());
                    by_dt.entry(dt).or_default().push(Input { key, path: file.path, size: file.size, rows: file.rows });
                }
                by_dt.retain(|dt, _| !untouchable.contains(dt));
                by_dt
            }
            Layout::Plain => plain::partitions(&self.runtime, self.store.as_ref(), table)?,
        };
        let o = &self.options;
        Ok(partitions
            .into_iter()
            .filter(|(dt, _)| o.since.is_none_or(|s| *dt >= s) && o.until.is_none_or(|u| *dt <= u))
            .filter(|(dt, _)| o.before.is_none_or(|b| *dt < b))
            .filter(|(_, inputs)| worth_compacting(inputs, o.target_size))
            .map(|(dt, inputs)| Partition { table, dt, inputs })
            .collect())
    }

    /// Compacts one partition; `progress` is told the bytes of each input once it is read.
    pub fn compact(&self, partition: &Partition, progress: &dyn Fn(u64)) -> Result<Report, CompactError> {
        let started = Instant::now();
        let table = partition.table;
        let mut report = Report {
            table,
            dt: partition.dt,
            files_before: partition.inputs.len(),
            bytes_before: partition.bytes(),
            rows_before: partition.inputs.iter().filter_map(|i| i.rows).sum(),
            files_after: partition.bytes().div_ceil(self.options.target_size).max(1) as usize,
            bytes_after: 0,
            rows_after: 0,
            dropped: 0,
            spilled_runs: 0,
            elapsed: Duration::ZERO,
            outcome: Outcome::Planned,
        };
        if self.options.dry_run {
            progress(report.bytes_before);
            return Ok(report);
        }
        let (schema, stats) = self.schema(table)?;
        let spill = tempfile::Builder::new().prefix("oncehub-bridge-compact-").tempdir_in(&self.options.temp_dir)?;
        let mut merger = merge::Merger::new(schema.clone(), spill.path(), self.options.run_bytes)?;
        for input in &partition.inputs {
            self.read_into(input, &schema, &mut merger)?;
            progress(input.size);
        }
        report.rows_before = merger.rows_in();
        report.spilled_runs = merger.spilled_runs();
        let mut merged = merger.finish()?;
        let dir = format!("{}/dt={}", table.name(), partition.dt);
        let mut output = output::Output::new(
            self.runtime.clone(),
            self.store.clone(),
            dir,
            merged.schema().clone(),
            stats.clone(),
            self.options.target_size,
        );
        let wrote = merged.by_ref().try_for_each(|batch| {
            self.check()?;
            output.write(&batch?)
        });
        let written = match wrote.and_then(|()| output.finish()) {
            Ok(written) => written,
            Err(e) => {
                self.discard(&output.abandon());
                return Err(e);
            }
        };
        drop(spill);
        report.dropped = merged.dropped();
        report.files_after = written.len();
        report.bytes_after = written.iter().map(|w| w.size).sum();
        report.rows_after = written.iter().map(|w| w.rows).sum();
        crate::lake::crash_point("compact-before-commit");
        let keys: Vec<String> = written.iter().map(|w| w.key.clone()).collect();
        report.outcome = match (&self.layout, stats) {
            (Layout::Delta(lake), Some(spec)) => {
                let inputs: HashSet<String> = partition.inputs.iter().map(|i| i.path.clone()).collect();
                let outputs = written
                    .into_iter()
                    .map(|w| {
                        let path = format!("dt={}/{}", partition.dt, w.name);
                        w.stats.map(|stats| NewFile { path, dt: partition.dt, size: w.size, stats })
                    })
                    .collect::<Option<Vec<_>>>();
                let Some(outputs) = outputs else {
                    self.discard(&keys);
                    return Err(CompactError::Other("a compacted file has no statistics".into()));
                };
                // An error here leaves the outputs: the commit may have landed (vacuum removes
                // them if it did not).
                match lake.replace(table, &inputs, (&outputs, &spec), report.dropped > 0, None)? {
                    Replaced::Committed { table_version, .. } => {
                        Outcome::Compacted { table_version: Some(table_version) }
                    }
                    Replaced::Gone { missing } => {
                        self.discard(&keys);
                        Outcome::Lost { missing }
                    }
                    Replaced::SchemaChanged => {
                        self.discard(&keys);
                        Outcome::SchemaChanged
                    }
                }
            }
            (Layout::Delta(_), None) => return Err(CompactError::Other("no statistics for a delta table".into())),
            (Layout::Plain, _) => {
                crate::lake::crash_point("compact-before-delete");
                plain::delete(&self.runtime, self.store.as_ref(), &partition.inputs)?;
                Outcome::Compacted { table_version: None }
            }
        };
        report.elapsed = started.elapsed();
        if let Outcome::Compacted { .. } = report.outcome {
            crate::metrics::compacted(
                table.name(),
                report.files_before,
                report.files_after,
                report.dropped,
                report.elapsed,
            );
        }
        Ok(report)
    }

    /// The schema compacted files are written with, and the Delta statistics they need.
    fn schema(&self, table: Table) -> Result<(SchemaRef, Option<Arc<StatsSpec>>), CompactError> {
        match &self.layout {
            Layout::Delta(lake) => {
                if lake.open_existing(table)?.is_none() {
                    return Err(CompactError::Other(format!("table {} does not exist", table.name())));
                }
                let stats = lake.current_stats(table)?;
                let schema = Schema::try_from_kernel(stats.physical.as_ref())?;
                Ok((Arc::new(schema), Some(stats)))
            }
            Layout::Plain => Ok((self.catalog.table(table).arrow.clone(), None)),
        }
    }

    fn read_into(&self, input: &Input, schema: &SchemaRef, merger: &mut merge::Merger) -> Result<(), CompactError> {
        let reader = source::StoreReader::new(self.store.clone(), Path::from(input.key.as_str()), input.size);
        let builder = self.runtime.block_on(ParquetRecordBatchStreamBuilder::new(reader))?;
        let mut stream = builder.with_batch_size(READ_BATCH_ROWS).build()?;
        while let Some(batch) = self.runtime.block_on(stream.next()) {
            self.check()?;
            merger.push(adapt::to_schema(&batch?, schema)?)?;
        }
        Ok(())
    }

    /// Deletes compacted files no commit will reference; a failure leaves them to `vacuum`.
    fn discard(&self, keys: &[String]) {
        for key in keys {
            if let Err(e) = self.runtime.block_on(self.store.delete(&Path::from(key.as_str()))) {
                tracing::warn!(key = %key, error = %e, "cannot delete an uncommitted compacted file; vacuum removes it later");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(name: &str, size: u64) -> Input {
        Input { key: format!("t/dt=2026-01-01/{name}"), path: format!("dt=2026-01-01/{name}"), size, rows: None }
    }

    #[test]
    fn a_compacted_day_is_left_alone_until_a_new_file_arrives() {
        let mib = 1 << 20;
        let compacted = vec![
            input("part-compacted-a.parquet", 128 * mib),
            input("part-compacted-b.parquet", 128 * mib),
            input("part-compacted-c.parquet", 44 * mib),
        ];
        assert!(!worth_compacting(&compacted, 128 * mib));
        assert!(!worth_compacting(&compacted[2..], 128 * mib), "one file");
        let mut late = compacted.clone();
        late.push(input("part-w-1-1.parquet", 4096));
        assert!(worth_compacting(&late, 128 * mib));
        let small = vec![input("part-w-1-5.parquet", mib), input("part-w-6-9.parquet", mib)];
        assert!(worth_compacting(&small, 128 * mib));
    }
}
