//! The batcher's side of the lake. With Delta tables a file in the store is not yet in its
//! table: it waits in `staged` until the next commit, which adds every staged file of a table in
//! one log entry: after each round of files cut by age, at once when a file was cut by rows or
//! bytes, at 64 staged files, at shutdown, and at the latest `--commit-interval` after a file was
//! staged (replayed files, say). So rows are readable about when `--flush-interval` says, and the
//! spool holds no record longer than before for want of a commit. The spool is
//! acknowledged only behind committed files. With `--table-format parquet` an uploaded file is
//! final and the spool is acknowledged at once, as before.
//!
//! Before the first record, each Delta table is created or opened (see `lake::delta`), and the
//! flush intents a crash left open are checked against it: an intent whose file the table already
//! holds (a crash between commit and checkpoint) has its records skipped like any written file,
//! so its rows are never added twice.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use object_store::ObjectStoreExt;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{Batcher, BatcherError, BufferError, FinishedFile, FlushReason};
use crate::lake::{DeltaLake, Lake, LakeError, StagedFile};
use crate::schema::Table;
use crate::sink::{ObjectKey, PutOutcome, Uploader};
use crate::spool::Seq;

/// Commit at once when this many files wait.
const MAX_STAGED_FILES: usize = 64;
/// The longest wait between retries of a failed lake call.
const RETRY_MAX: Duration = Duration::from_secs(30);

impl Batcher {
    /// Uses `lake` for finished files, committing staged files at least every `every`.
    pub fn with_lake(mut self, lake: Lake, every: Duration) -> Batcher {
        self.lake = lake;
        self.commit_every = every;
        self
    }

    /// Tells `inspector` where each delivery landed.
    pub fn with_inspector(mut self, inspector: Option<Arc<crate::inspector::Inspector>>) -> Batcher {
        self.inspector = inspector;
        self
    }

    /// A file is in its table: the inspector learns where its deliveries are.
    fn inspected(&self, table: Table, key: &ObjectKey, seqs: &[u64], received_at: &[chrono::DateTime<chrono::Utc>]) {
        if let Some(inspector) = &self.inspector {
            inspector.landed(table.name(), key.as_str(), seqs, received_at);
        }
    }

    /// Prepares every Delta table, then settles the recovered intents against them.
    pub(super) async fn prepare_lake(&mut self) -> Result<(), BatcherError> {
        let Lake::Delta(lake) = self.lake.clone() else { return self.prepare_parquet().await };
        for table in Table::ALL {
            let spec =
                lake_call((&lake, &self.uploader), &self.abort, "prepare the delta table", move |l| l.prepare(table))
                    .await?;
            self.stats.insert(table, spec);
        }
        for table in Table::ALL {
            let prefix = format!("{}/", table.name());
            if !self.intents.iter().any(|i| i.partition.starts_with(&prefix)) || lake.app_version(table).is_none() {
                continue;
            }
            let writer = self.writer.clone();
            let names = lake_call((&lake, &self.uploader), &self.abort, "read the delta table's files", move |l| {
                l.committed_names(table, &writer)
            })
            .await?;
            let name = |i: &crate::spool::FlushIntent| ObjectKey::file_name(&self.writer, Seq(i.first), Seq(i.last));
            let (mut committed, open): (Vec<_>, Vec<_>) = std::mem::take(&mut self.intents)
                .into_iter()
                .partition(|i| i.partition.starts_with(&prefix) && names.contains(&name(i)));
            // Not in the table, yet maybe committed by this app and compacted away since: a file
            // whose records end below this app's last version. The log says which.
            let app_version = lake.app_version(table).unwrap_or(-1);
            let unsure: Vec<_> =
                open.iter().filter(|i| i.partition.starts_with(&prefix) && i.last as i64 <= app_version).collect();
            let open = if unsure.is_empty() {
                open
            } else {
                let from = unsure.iter().map(|i| i.last as i64).min().unwrap_or(0);
                let wanted: std::collections::HashSet<String> = unsure.iter().map(|i| name(i)).collect();
                let replaced = lake_call((&lake, &self.uploader), &self.abort, "read the delta log", move |l| {
                    l.added_since(table, &wanted, from)
                })
                .await?;
                let (gone, open): (Vec<_>, Vec<_>) =
                    open.into_iter().partition(|i| i.partition.starts_with(&prefix) && replaced.contains(&name(i)));
                if !gone.is_empty() {
                    tracing::info!(
                        table = table.name(),
                        files = gone.len(),
                        "files the spool had not acknowledged were committed and compacted since; their records are skipped"
                    );
                }
                committed.extend(gone);
                open
            };
            if !committed.is_empty() {
                tracing::info!(
                    table = table.name(),
                    files = committed.len(),
                    "files the spool had not acknowledged are in the delta table already; their records are skipped"
                );
            }
            self.written.extend(committed);
            self.intents = open;
        }
        Ok(())
    }

    /// The plain layout: every table's zero-row file (see `lake::parquet`), created once.
    async fn prepare_parquet(&mut self) -> Result<(), BatcherError> {
        for table in Table::ALL {
            let (key, bytes) = crate::lake::parquet::empty_file(&self.catalog, table).map_err(BufferError::from)?;
            self.uploader.put(&key, bytes, &self.abort).await?;
        }
        Ok(())
    }

    /// A file is in the store: final for Parquet tables, staged for the next commit for Delta.
    pub(super) async fn landed(
        &mut self,
        table: Table,
        dt: chrono::NaiveDate,
        key: ObjectKey,
        file: FinishedFile,
        (outcome, reason): (PutOutcome, FlushReason),
    ) -> Result<(), BatcherError> {
        if let Lake::Parquet = self.lake {
            if outcome == PutOutcome::Created {
                crate::metrics::rows_readable(&file.received_at);
            }
            self.inspected(table, &key, &file.seqs, &file.received_at);
            return self.acknowledge().await;
        }
        let Some(stats) = file.stats else {
            // Every row of the file was refused and went elsewhere: nothing to add.
            tracing::debug!(key = %key, "an empty file is not added to its table");
            return Ok(());
        };
        let mut size = file.body.len();
        if outcome == PutOutcome::AlreadyExisted {
            // A replay: the object holds the same rows, but the table must record its own size.
            match self.uploader.store().head(&object_store::path::Path::from(key.as_str())).await {
                Ok(meta) => size = meta.size,
                Err(e) => {
                    tracing::warn!(key = %key, error = %e, "cannot read the size of a replayed file; using the re-encoded size")
                }
            }
        }
        let (rows, first, last, received_at, seqs) = (file.rows, file.first, file.last, file.received_at, file.seqs);
        let staged = StagedFile { table, dt, key, size, rows, stats, first, last, received_at, seqs };
        self.staged.push(staged);
        self.staged_since.get_or_insert_with(Instant::now);
        // A file cut by size is as large as files get: waiting to batch it with others only holds
        // its records in the spool (under load, a spool that fills up answers 503).
        let full = matches!(reason, FlushReason::Rows | FlushReason::Bytes);
        if full || self.staged.len() >= MAX_STAGED_FILES {
            self.commit().await?;
        }
        Ok(())
    }

    /// When the staged files must be committed.
    pub(super) fn commit_deadline(&self) -> Option<Instant> {
        self.staged_since.map(|since| since + self.commit_every)
    }

    /// Commits every staged file, one commit per table, then acknowledges the spool behind them.
    pub(super) async fn commit(&mut self) -> Result<(), BatcherError> {
        let Lake::Delta(lake) = self.lake.clone() else { return Ok(()) };
        if self.staged.is_empty() {
            return Ok(());
        }
        let mut by_table: BTreeMap<Table, Vec<StagedFile>> = BTreeMap::new();
        for file in &self.staged {
            by_table.entry(file.table).or_default().push(file.clone());
        }
        for (table, files) in by_table {
            let started = std::time::Instant::now();
            let batch = Arc::new(files);
            let commit_files = batch.clone();
            let report = lake_call((&lake, &self.uploader), &self.abort, "commit to the delta table", move |l| {
                l.commit(table, &commit_files)
            })
            .await?;
            tracing::info!(
                table = table.name(),
                files = batch.len(),
                rows = batch.iter().map(|f| f.rows).sum::<usize>(),
                table_version = report.table_version,
                txn_version = report.txn_version,
                conflicts = report.conflicts,
                already_landed = report.already_landed,
                checkpoint = report.checkpointed,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "committed to the delta table"
            );
            for file in batch.iter() {
                crate::metrics::rows_readable(&file.received_at);
                self.inspected(table, &file.key, &file.seqs, &file.received_at);
            }
            self.staged.retain(|f| f.table != table);
            crate::lake::crash_point("after-commit");
        }
        self.staged_since = None;
        self.acknowledge().await
    }
}

/// Runs a blocking lake call until it succeeds; only the shutdown deadline ends the retries. An
/// error retrying cannot fix (an incompatible schema) is logged as such and retried slowly, so
/// the service keeps accepting deliveries into the spool while someone fixes it.
async fn lake_call<T, F>(
    (lake, uploader): (&Arc<DeltaLake>, &Uploader),
    abort: &CancellationToken,
    what: &'static str,
    call: F,
) -> Result<T, BatcherError>
where
    T: Send + 'static,
    F: Fn(&DeltaLake) -> Result<T, LakeError> + Clone + Send + 'static,
{
    let mut delay = Duration::from_millis(200);
    let mut attempts = 0;
    loop {
        attempts += 1;
        let (lake, call) = (lake.clone(), call.clone());
        let e = match tokio::task::spawn_blocking(move || call(&lake)).await? {
            Ok(value) => {
                if attempts > 1 {
                    uploader.succeeded(what);
                }
                return Ok(value);
            }
            Err(e) => e,
        };
        if let Some(store) = e.store_error() {
            // The store itself failed: reported as uploads report it (log, metric, /readyz).
            delay = uploader.failed(what, store, attempts, delay);
        } else if e.is_permanent() {
            delay = RETRY_MAX;
            tracing::error!(error = %e, what, retry_in_ms = delay.as_millis() as u64, "the delta table cannot be used until this is fixed; deliveries stay in the spool");
        } else {
            tracing::warn!(error = %e, what, retry_in_ms = delay.as_millis() as u64, "delta table operation failed; retrying");
        }
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = abort.cancelled() => return Err(e.into()),
        }
        delay = (delay * 2).min(RETRY_MAX);
    }
}
