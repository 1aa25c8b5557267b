//! Replacing a partition's files by compacted ones: `remove` for each input and `add` for each
//! output in one commit (operation `OPTIMIZE`), so a reader sees either the old files or the new,
//! never both and never neither.
//!
//! The kernel checks no logical conflict, so this does: every attempt is built on the newest
//! snapshot and first confirms that each input is still in the table. Files another writer added
//! meanwhile (late events into the partition) are left alone; an input another compaction removed
//! first means this compaction lost the race, and its outputs are not committed.

use std::collections::HashSet;
use std::sync::Arc;

use arrow_array::{Array, StringArray, StructArray};
use chrono::NaiveDate;
use delta_kernel::committer::FileSystemCommitter;
use delta_kernel::engine::arrow_data::ArrowEngineData;
use delta_kernel::scan::state::ScanFile;
use delta_kernel::transaction::{CommitResult, UpdateTableOperation};
use delta_kernel::{FilteredEngineData, Snapshot, SnapshotRef};

use super::commit::FileToAdd;
use super::table::PARTITION_COLUMN;
use super::{CHECKPOINT_INTERVAL, DeltaLake, ENGINE_INFO, LakeError, TableState};
use crate::schema::Table;
use crate::sink::StatsSpec;

/// Conflicts in a row before a compaction commit gives up.
const MAX_CONFLICTS: u32 = 50;

/// A data file of a table, as its newest snapshot lists it.
#[derive(Debug, Clone)]
pub struct LiveFile {
    /// Relative to the table's directory, as the log holds it (`dt=2026-05-04/part-….parquet`).
    pub path: String,
    pub size: u64,
    pub modified_ms: i64,
    pub dt: Option<NaiveDate>,
    pub rows: Option<u64>,
    /// The file has a deletion vector (written by another engine): it is never compacted.
    pub has_deletion_vector: bool,
}

/// A compacted file in the store, to be added.
#[derive(Debug, Clone)]
pub struct NewFile {
    /// Relative to the table's directory.
    pub path: String,
    pub dt: NaiveDate,
    pub size: u64,
    pub stats: StructArray,
}

/// How a replacement went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Replaced {
    Committed {
        table_version: u64,
        conflicts: u32,
    },
    /// An input is no longer in the table (another compaction removed it first): nothing changed.
    Gone {
        missing: usize,
    },
    /// The table's schema changed since the outputs were written (a column was added): nothing
    /// changed, the next round compacts with the new schema.
    SchemaChanged,
}

impl DeltaLake {
    /// Opens a table that exists, for maintenance: no table is created and no schema changed.
    /// `None` when the table does not exist (yet).
    pub fn open_existing(&self, table: Table) -> Result<Option<Arc<StatsSpec>>, LakeError> {
        if let Some(state) = self.state().get(&table) {
            return Ok(Some(state.stats.clone()));
        }
        let url = self.table_url(table)?;
        let snapshot = match Snapshot::builder_for(url.as_str()).build(self.engine.as_ref()) {
            Ok(snapshot) => snapshot,
            Err(e) if is_missing(&e) => return Ok(None),
            Err(e) => return Err(LakeError::kernel(table)(e)),
        };
        let stats = Arc::new(super::table::stats_spec(table, &snapshot, self.engine.as_ref())?);
        let state = TableState { snapshot, stats: stats.clone(), app_version: None, stale: false };
        self.state().insert(table, state);
        Ok(Some(stats))
    }

    /// The statistics columns and physical schema of the table's newest version (compacted files
    /// are written with it, so a column another replica added is kept).
    pub fn current_stats(&self, table: Table) -> Result<Arc<StatsSpec>, LakeError> {
        let snapshot = self.refresh(table)?;
        Ok(Arc::new(super::table::stats_spec(table, &snapshot, self.engine.as_ref())?))
    }

    /// Every data file of the table's newest version.
    pub fn live_files(&self, table: Table) -> Result<Vec<LiveFile>, LakeError> {
        self.versioned_files(table).map(|(_, files)| files)
    }

    /// The table's newest version (its log read, not its files).
    pub fn version(&self, table: Table) -> Result<u64, LakeError> {
        Ok(self.refresh(table)?.version())
    }

    /// The table's newest version and every data file of it.
    pub fn versioned_files(&self, table: Table) -> Result<(u64, Vec<LiveFile>), LakeError> {
        let snapshot = self.refresh(table)?;
        let scan = snapshot.clone().scan_builder().build().map_err(LakeError::kernel(table))?;
        let mut files = Vec::new();
        for metadata in scan.scan_metadata(self.engine.as_ref()).map_err(LakeError::kernel(table))? {
            let metadata = metadata.map_err(LakeError::kernel(table))?;
            files = metadata
                .visit_scan_files(files, |files: &mut Vec<LiveFile>, file: ScanFile| files.push(live(file)))
                .map_err(LakeError::kernel(table))?;
        }
        Ok((snapshot.version(), files))
    }

    /// Removes `inputs` (relative paths) and adds `outputs`, written with the physical schema
    /// `written_with`, in one commit; `data_change` is false when the outputs hold exactly the
    /// inputs' rows. With `on_top_of`, only onto that version: any commit since (a table one
    /// writer rebuilds, like `bookings_current`) means `Gone`.
    pub fn replace(
        &self,
        table: Table,
        inputs: &HashSet<String>,
        (outputs, written_with): (&[NewFile], &StatsSpec),
        data_change: bool,
        on_top_of: Option<u64>,
    ) -> Result<Replaced, LakeError> {
        let engine = self.engine.as_ref();
        let mut snapshot = self.refresh(table)?;
        let mut conflicts = 0;
        let added: HashSet<&str> = outputs.iter().map(|f| f.path.as_str()).collect();
        loop {
            if super::table::stats_spec(table, &snapshot, engine)?.physical != written_with.physical {
                return Ok(Replaced::SchemaChanged);
            }
            let mut txn = snapshot
                .clone()
                .update_table(UpdateTableOperation::Optimize, ENGINE_INFO, data_change)
                .build(engine, Box::new(FileSystemCommitter::new()))
                .map_err(LakeError::kernel(table))?;
            let found =
                self.select_removals(table, &snapshot, (inputs, &added), |removal| txn.remove_files(removal))?;
            if !added.is_empty() && found.outputs == added.len() {
                // An earlier attempt landed though its answer said otherwise (a 5xx after the
                // PUT, retried into a 412): the outputs are in the table.
                return Ok(Replaced::Committed { table_version: snapshot.version(), conflicts });
            }
            if found.inputs < inputs.len() {
                return Ok(Replaced::Gone { missing: inputs.len() - found.inputs });
            }
            if on_top_of.is_some_and(|v| v != snapshot.version()) {
                return Ok(Replaced::Gone { missing: 0 });
            }
            let write_state = txn.write_state().map_err(LakeError::kernel(table))?;
            for file in outputs {
                let add = FileToAdd { dt: file.dt, relative: &file.path, size: file.size, stats: &file.stats };
                txn.add_files(self.add_action(table, &write_state, &add)?);
            }
            match txn.commit(engine).map_err(LakeError::kernel(table))? {
                CommitResult::Committed(c)
                    if outputs
                        .first()
                        .is_some_and(|f| !self.entry_adds(table, c.commit_version(), &f.path).unwrap_or(true)) =>
                {
                    // Another writer replaced the log entry (a store whose create-only PUT is not
                    // atomic, see `verify`): the compaction is not in; try again on the next version.
                    tracing::error!(
                        table = table.name(),
                        table_version = c.commit_version(),
                        "another writer replaced the compaction's log entry: the store's create-only PUT is not atomic; committing again"
                    );
                    conflicts += 1;
                    snapshot = Snapshot::builder_from(snapshot).build(engine).map_err(LakeError::kernel(table))?;
                }
                CommitResult::Committed(c) => {
                    let table_version = c.commit_version();
                    let post = match c.post_commit_snapshot() {
                        Some(post) => post.clone(),
                        None => Snapshot::builder_from(snapshot).build(engine).map_err(LakeError::kernel(table))?,
                    };
                    if let Some(state) = self.state().get_mut(&table) {
                        state.snapshot = post.clone();
                    }
                    if table_version > 0 && table_version.is_multiple_of(CHECKPOINT_INTERVAL) {
                        self.checkpoint(table, &post);
                    }
                    return Ok(Replaced::Committed { table_version, conflicts });
                }
                CommitResult::Conflicted(_) => {
                    conflicts += 1;
                    crate::metrics::delta_conflict(table.name());
                    if conflicts >= MAX_CONFLICTS {
                        let message = format!("{conflicts} compaction conflicts in a row; retrying later");
                        return Err(LakeError::Other { table: table.name(), message });
                    }
                    snapshot = Snapshot::builder_from(snapshot).build(engine).map_err(LakeError::kernel(table))?;
                }
                CommitResult::Retryable(r) => return Err(LakeError::kernel(table)(r.error)),
            }
        }
    }

    /// Hands `remove` the scan rows of `inputs` still in `snapshot`; counts them, and the
    /// `outputs` already in it.
    fn select_removals(
        &self,
        table: Table,
        snapshot: &SnapshotRef,
        (inputs, outputs): (&HashSet<String>, &HashSet<&str>),
        mut remove: impl FnMut(FilteredEngineData),
    ) -> Result<Found, LakeError> {
        let scan = snapshot.clone().scan_builder().build().map_err(LakeError::kernel(table))?;
        let mut found = Found::default();
        for metadata in scan.scan_metadata(self.engine.as_ref()).map_err(LakeError::kernel(table))? {
            let (data, live) = metadata.map_err(LakeError::kernel(table))?.scan_files.into_parts();
            let data = ArrowEngineData::try_from_engine_data(data).map_err(LakeError::kernel(table))?;
            let paths = data
                .record_batch()
                .column_by_name("path")
                .and_then(|c| c.as_any().downcast_ref::<StringArray>())
                .ok_or_else(|| LakeError::Other { table: table.name(), message: "scan rows have no path".into() })?;
            let is_live = |i: usize| live.get(i).copied().unwrap_or(true) && paths.is_valid(i);
            found.outputs += (0..paths.len()).filter(|i| is_live(*i) && outputs.contains(paths.value(*i))).count();
            let selected: Vec<bool> = (0..paths.len()).map(|i| is_live(i) && inputs.contains(paths.value(i))).collect();
            let n = selected.iter().filter(|s| **s).count();
            if n > 0 {
                found.inputs += n;
                remove(FilteredEngineData::try_new(data, selected).map_err(LakeError::kernel(table))?);
            }
        }
        Ok(found)
    }

    /// The table's newest snapshot (kept for the next call).
    pub(super) fn refresh(&self, table: Table) -> Result<SnapshotRef, LakeError> {
        let old = self
            .state()
            .get(&table)
            .map(|s| s.snapshot.clone())
            .ok_or_else(|| LakeError::Other { table: table.name(), message: "not opened".into() })?;
        let snapshot = Snapshot::builder_from(old).build(self.engine.as_ref()).map_err(LakeError::kernel(table))?;
        if let Some(state) = self.state().get_mut(&table) {
            state.snapshot = snapshot.clone();
        }
        Ok(snapshot)
    }
}

/// What a scan found of a replacement's files.
#[derive(Debug, Default)]
struct Found {
    inputs: usize,
    outputs: usize,
}

fn live(file: ScanFile) -> LiveFile {
    let dt = file.partition_values.get(PARTITION_COLUMN).and_then(|v| NaiveDate::parse_from_str(v, "%Y-%m-%d").ok());
    LiveFile {
        has_deletion_vector: file.dv_info.has_vector(),
        rows: file.stats.as_ref().map(|s| s.num_records),
        path: file.path,
        size: file.size.max(0) as u64,
        modified_ms: file.modification_time,
        dt,
    }
}

/// The table has no log (not created yet).
fn is_missing(e: &delta_kernel::KernelError) -> bool {
    matches!(
        e,
        delta_kernel::KernelError::EmptyLog
            | delta_kernel::KernelError::InvalidTableLocation(_)
            | delta_kernel::KernelError::ObjectStore(object_store::Error::NotFound { .. })
    )
}
