//! Adding staged files to a table: one commit per call, exactly once.
//!
//! The commit carries `txn {appId, version}` where `version` is the highest spool sequence number
//! in its files, raised when needed so that it always exceeds this app's previous version in the
//! table (files of another `dt` can be cut later with lower numbers). So "the app's version in the
//! table is at least ours" means "this commit is in the table", which settles every uncertain
//! outcome: after a conflict (another writer took the log version, or our own earlier attempt
//! did) and after an error (the PUT of `_delta_log/<v>.json` may have succeeded before it
//! failed), the table is read again and the marker checked before the files are added again.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use delta_kernel::committer::FileSystemCommitter;
use delta_kernel::expressions::Scalar;
use delta_kernel::transaction::{CommitResult, UpdateTableOperation, WriteState};
use delta_kernel::{EngineData, FileMeta, Snapshot, SnapshotRef};
use delta_kernel_default_engine::build_add_file_metadata;
use delta_kernel_default_engine::parquet::DataFileMetadata;

use super::table::PARTITION_COLUMN;
use super::{CHECKPOINT_INTERVAL, DeltaLake, ENGINE_INFO, LakeError};
use crate::lake::StagedFile;
use crate::schema::Table;

/// Conflicts in a row before a commit gives up (and the caller retries later).
const MAX_CONFLICTS: u32 = 50;

/// How a commit went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitReport {
    /// The table version holding the files.
    pub table_version: u64,
    pub txn_version: i64,
    /// Log versions other writers took first.
    pub conflicts: u32,
    /// An earlier attempt had landed: nothing was written this time.
    pub already_landed: bool,
    pub checkpointed: bool,
}

impl DeltaLake {
    /// Commits `files` (all of `table`) in one log entry, or finds that it is there already.
    pub fn commit(&self, table: Table, files: &[StagedFile]) -> Result<CommitReport, LakeError> {
        let result = self.try_commit(table, files);
        if result.is_err()
            && let Some(state) = self.state().get_mut(&table)
        {
            state.stale = true;
        }
        result
    }

    fn try_commit(&self, table: Table, files: &[StagedFile]) -> Result<CommitReport, LakeError> {
        let engine = self.engine.as_ref();
        let (mut snapshot, previous, mut stale) = {
            let tables = self.state();
            let state = tables
                .get(&table)
                .ok_or_else(|| LakeError::Other { table: table.name(), message: "not prepared".into() })?;
            (state.snapshot.clone(), state.app_version, state.stale)
        };
        let highest = files.iter().map(|f| f.last.0 as i64).max().unwrap_or(0);
        let version = highest.max(previous.map_or(0, |v| v + 1));
        let mut conflicts = 0;
        loop {
            if stale {
                snapshot = Snapshot::builder_from(snapshot).build(engine).map_err(LakeError::kernel(table))?;
                let landed = snapshot.get_app_id_version(&self.app_id, engine).map_err(LakeError::kernel(table))?;
                if landed.is_some_and(|v| v >= version) {
                    tracing::info!(
                        table = table.name(),
                        txn_version = version,
                        "an earlier attempt of this commit had landed"
                    );
                    self.remember(table, snapshot.clone(), version);
                    let report = CommitReport {
                        table_version: snapshot.version(),
                        txn_version: version,
                        conflicts,
                        already_landed: true,
                        checkpointed: false,
                    };
                    return Ok(report);
                }
            }
            let started = Instant::now();
            match self.attempt(table, &snapshot, files, version)? {
                Attempt::Committed(_, table_version) if !self.entry_is_ours(table, table_version, version)? => {
                    // Another writer replaced our log entry: the store's create-only PUT is not
                    // atomic. The marker is not in the table; commit again on the next version.
                    tracing::error!(
                        table = table.name(),
                        table_version,
                        "another writer replaced this commit's log entry: the store's create-only PUT is not atomic (Delta needs S3, MinIO, R2, GCS, Azure or local files); committing again"
                    );
                    conflicts += 1;
                    crate::metrics::delta_conflict(table.name());
                    too_many(table, conflicts)?;
                    stale = true;
                }
                Attempt::Committed(post, table_version) => {
                    crate::metrics::delta_commit(table.name(), files.len(), started.elapsed());
                    self.remember(table, post.clone(), version);
                    let checkpointed = table_version > 0
                        && table_version.is_multiple_of(CHECKPOINT_INTERVAL)
                        && self.checkpoint(table, &post);
                    return Ok(CommitReport {
                        table_version,
                        txn_version: version,
                        conflicts,
                        already_landed: false,
                        checkpointed,
                    });
                }
                Attempt::Conflicted => {
                    conflicts += 1;
                    crate::metrics::delta_conflict(table.name());
                    too_many(table, conflicts)?;
                    stale = true;
                }
            }
        }
    }

    fn attempt(
        &self,
        table: Table,
        snapshot: &SnapshotRef,
        files: &[StagedFile],
        version: i64,
    ) -> Result<Attempt, LakeError> {
        let engine = self.engine.as_ref();
        let kernel = LakeError::kernel;
        let mut txn = snapshot
            .clone()
            .update_table(UpdateTableOperation::Write, ENGINE_INFO, true)
            .with_blind_append()
            .with_transaction_id(self.app_id.clone(), version)
            .build(engine, Box::new(FileSystemCommitter::new()))
            .map_err(kernel(table))?;
        let write_state = txn.write_state().map_err(kernel(table))?;
        for file in files {
            let relative = file.key.as_str().strip_prefix(&format!("{}/", table.name())).unwrap_or(file.key.as_str());
            let add = FileToAdd { dt: file.dt, relative, size: file.size, stats: &file.stats };
            txn.add_files(self.add_action(table, &write_state, &add)?);
        }
        Ok(match txn.commit(engine).map_err(kernel(table))? {
            CommitResult::Committed(c) => {
                let table_version = c.commit_version();
                let post = match c.post_commit_snapshot() {
                    Some(post) => post.clone(),
                    None => Snapshot::builder_from(snapshot.clone()).build(engine).map_err(kernel(table))?,
                };
                Attempt::Committed(post, table_version)
            }
            CommitResult::Conflicted(_) => Attempt::Conflicted,
            CommitResult::Retryable(r) => return Err(kernel(table)(r.error)),
        })
    }

    /// The `add` action of a file already in the table's directory, with its statistics and
    /// `dt` partition value (the kernel builds it; the modification time is now).
    pub(super) fn add_action(
        &self,
        table: Table,
        write_state: &std::sync::Arc<WriteState>,
        file: &FileToAdd<'_>,
    ) -> Result<Box<dyn EngineData>, LakeError> {
        let context = write_state
            .write_context_builder()
            .with_partition_values([(PARTITION_COLUMN.to_owned(), Scalar::Date(days(file.dt)))].into())
            .build()
            .map_err(LakeError::kernel(table))?;
        let location = self.table_url(table)?.join(file.relative).map_err(|e| LakeError::Other {
            table: table.name(),
            message: format!("bad file URL {}: {e}", file.relative),
        })?;
        let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
        let meta = DataFileMetadata::new(FileMeta::new(location, now_ms, file.size), file.stats.clone());
        build_add_file_metadata(meta, &context).map_err(LakeError::kernel(table))
    }

    fn remember(&self, table: Table, snapshot: SnapshotRef, version: i64) {
        if let Some(state) = self.state().get_mut(&table) {
            state.snapshot = snapshot;
            state.app_version = Some(state.app_version.map_or(version, |v| v.max(version)));
            state.stale = false;
        }
    }

    /// Starts writing a checkpoint of `snapshot` (and `_last_checkpoint`) on a blocking thread,
    /// unless one of this table is still being written: it costs time in proportion to the
    /// table's files (2-3 s at 1,800 files, measured with `bench/compact.sh`), which a commit
    /// must not wait for. A failure is only logged; the next interval tries again. False when
    /// none was started.
    pub(super) fn checkpoint(&self, table: Table, snapshot: &SnapshotRef) -> bool {
        if !self.checkpointing(table) {
            return false;
        }
        let (engine, snapshot, done) = (self.engine.clone(), snapshot.clone(), self.checkpoints.clone());
        tokio::task::spawn_blocking(move || {
            let started = Instant::now();
            match snapshot.checkpoint(engine.as_ref(), None) {
                Ok(_) => tracing::info!(
                    table = table.name(),
                    version = snapshot.version(),
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "wrote a delta checkpoint"
                ),
                Err(e) => {
                    tracing::warn!(table = table.name(), version = snapshot.version(), error = %e, "cannot write a delta checkpoint; the next interval tries again")
                }
            }
            done.lock().unwrap_or_else(|p| p.into_inner()).remove(&table);
        });
        true
    }

    /// Marks `table`'s checkpoint as running; false when it already was.
    fn checkpointing(&self, table: Table) -> bool {
        self.checkpoints.lock().unwrap_or_else(|p| p.into_inner()).insert(table)
    }
}

/// Gives up (for now: the caller retries later) after [`MAX_CONFLICTS`] in a row.
fn too_many(table: Table, conflicts: u32) -> Result<(), LakeError> {
    if conflicts < MAX_CONFLICTS {
        return Ok(());
    }
    let message = format!("{conflicts} commit conflicts in a row; retrying later");
    Err(LakeError::Other { table: table.name(), message })
}

/// A file for [`DeltaLake::add_action`].
pub(super) struct FileToAdd<'a> {
    pub(super) dt: chrono::NaiveDate,
    /// Relative to the table's directory (`dt=…/part-….parquet`).
    pub(super) relative: &'a str,
    pub(super) size: u64,
    pub(super) stats: &'a arrow_array::StructArray,
}

enum Attempt {
    Committed(SnapshotRef, u64),
    Conflicted,
}

/// Days since 1970-01-01, Delta's DATE.
pub(super) fn days(dt: chrono::NaiveDate) -> i32 {
    (dt - chrono::NaiveDate::default()).num_days() as i32
}
