//! Background upkeep of the Delta tables in `serve`: every `--maintenance-interval`, compact each
//! partition whose day ended more than `--compact-after` ago, then bring `bookings_current` up to
//! date when `bookings` has a new version (with compaction on), and once a day vacuum each table
//! with `--vacuum-retention`.
//!
//! Each round runs on a thread of its own at the lowest priority (nice 19, below the batcher's 10; the HTTP
//! workers and the spool writer keep the default), through its own Delta engine and table state,
//! so acknowledgements and the batcher's commits never wait for it. Its commits conflict with
//! the batcher's like any other writer's, and are retried the same way.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::compact::{CompactError, Compactor, Layout, Options};
use crate::config::{MaintenanceSettings, ServeSettings};
use crate::lake::{DeltaLake, TableFormat};
use crate::schema::{Catalog, Table};
use crate::sink::{StorageUrl, StoreRoot, WriterId};

/// Vacuum a table at most this often.
const VACUUM_EVERY: Duration = Duration::from_secs(24 * 3600);

/// Starts the upkeep loop, for Delta tables with compaction or vacuum on; it ends when `stop`
/// fires (a compaction in progress stops between batches, its outputs deleted).
pub(super) fn spawn(
    settings: &ServeSettings,
    root: &StoreRoot,
    store: Arc<dyn object_store::ObjectStore>,
    writer: &WriterId,
    catalog: Arc<Catalog>,
    stop: CancellationToken,
) -> Option<JoinHandle<()>> {
    let upkeep = settings.maintenance.clone();
    if settings.table_format != TableFormat::Delta
        || (upkeep.compact_after.is_none() && upkeep.vacuum_retention.is_none())
    {
        return None;
    }
    let local_dir = match &settings.storage {
        StorageUrl::Local(path) => Some(path.clone()),
        _ => None,
    };
    let lake = Arc::new(DeltaLake::new(root, local_dir, writer, catalog.clone()));
    let temp_dir = settings.data_dir.join("compact-tmp");
    Some(tokio::spawn(async move {
        let mut kept = Kept::default();
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(upkeep.interval) => {}
            }
            let round = Round {
                lake: lake.clone(),
                store: store.clone(),
                catalog: catalog.clone(),
                upkeep: upkeep.clone(),
                temp_dir: temp_dir.clone(),
                stop: stop.clone(),
                kept: std::mem::take(&mut kept),
            };
            let (done, finished) = tokio::sync::oneshot::channel();
            let runtime = tokio::runtime::Handle::current();
            let spawned = std::thread::Builder::new().name("compaction".into()).spawn(move || {
                let _runtime = runtime.enter();
                let _ = done.send(round.run());
            });
            if let Err(e) = spawned {
                tracing::warn!(error = %e, "cannot start the compaction thread; trying again next interval");
                continue;
            }
            match finished.await {
                Ok(done) => kept = done,
                Err(_) => tracing::error!("the background compaction panicked; it runs again next interval"),
            }
        }
    }))
}

/// One pass over the tables.
struct Round {
    lake: Arc<DeltaLake>,
    store: Arc<dyn object_store::ObjectStore>,
    catalog: Arc<Catalog>,
    upkeep: MaintenanceSettings,
    temp_dir: std::path::PathBuf,
    stop: CancellationToken,
    kept: Kept,
}

/// What rounds remember.
#[derive(Default)]
struct Kept {
    /// When each table was last vacuumed.
    vacuumed: HashMap<Table, Instant>,
    /// The `bookings` version `bookings_current` was last brought up to date with.
    current_from: Option<u64>,
}

impl Round {
    fn run(mut self) -> Kept {
        lowest_priority();
        // Sorted runs a killed compaction left behind (this directory is the bridge's own).
        let _ = std::fs::remove_dir_all(&self.temp_dir);
        if let Err(e) = std::fs::create_dir_all(&self.temp_dir) {
            tracing::warn!(dir = %self.temp_dir.display(), error = %e, "cannot create the compaction's temporary directory");
            return self.kept;
        }
        for table in Table::ALL {
            if self.stop.is_cancelled() {
                break;
            }
            if let Some(after) = self.upkeep.compact_after {
                self.compact(table, after);
            }
        }
        if self.upkeep.compact_after.is_some() && !self.stop.is_cancelled() {
            self.current();
        }
        for table in Table::LAKE {
            if let Some(retention) = self.upkeep.vacuum_retention
                && !self.stop.is_cancelled()
            {
                self.vacuum(table, retention);
            }
        }
        self.kept
    }

    fn compactor(&self, options: Options) -> Compactor {
        Compactor::new(
            Layout::Delta(self.lake.clone()),
            self.store.clone(),
            self.catalog.clone(),
            options,
            tokio::runtime::Handle::current(),
        )
        .with_cancel(self.stop.clone())
    }

    /// `bookings_current`, when `bookings` changed since the last rebuild.
    fn current(&mut self) {
        let version = match self.lake.open_existing(Table::Bookings) {
            Ok(Some(_)) => self.lake.version(Table::Bookings),
            Ok(None) => return,
            Err(e) => Err(e),
        };
        match version {
            Ok(v) if Some(v) == self.kept.current_from => return,
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the bookings table; bookings_current waits for the next interval");
                return;
            }
        }
        let options = Options { target_size: self.upkeep.target_size, ..Options::default() };
        match self.compactor(options).rebuild_current() {
            Ok(report) => {
                if report.outcome != crate::compact::CurrentOutcome::Lost {
                    self.kept.current_from = Some(report.bookings_version);
                }
                tracing::info!(
                    bookings = report.bookings,
                    rewritten = report.rewritten,
                    rows = report.rows_written,
                    elapsed_ms = report.elapsed.as_millis() as u64,
                    "{report}"
                );
            }
            Err(CompactError::Cancelled) => {}
            Err(e) => {
                tracing::warn!(error = %e, "cannot bring bookings_current up to date; trying again next interval")
            }
        }
    }

    fn compact(&self, table: Table, after: Duration) {
        let Some(closed) =
            chrono::Duration::from_std(after).ok().map(|after| (chrono::Utc::now() - after).date_naive())
        else {
            return;
        };
        let options = Options {
            target_size: self.upkeep.target_size,
            before: Some(closed),
            temp_dir: self.temp_dir.clone(),
            ..Options::default()
        };
        let compactor = self.compactor(options);
        let partitions = match compactor.plan(table) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(table = table.name(), error = %e, "cannot list the table's partitions; trying again next interval");
                return;
            }
        };
        for partition in partitions {
            match compactor.compact(&partition, &|_| {}) {
                Ok(report) => tracing::info!(
                    table = table.name(), dt = %report.dt, files_before = report.files_before,
                    files_after = report.files_after, rows = report.rows_after, duplicates_dropped = report.dropped,
                    elapsed_ms = report.elapsed.as_millis() as u64, "{report}"
                ),
                Err(CompactError::Cancelled) => return,
                Err(e) => tracing::warn!(
                    table = table.name(), dt = %partition.dt, error = %e,
                    "cannot compact the partition; trying again next interval"
                ),
            }
        }
    }

    fn vacuum(&mut self, table: Table, retention: Duration) {
        if self.kept.vacuumed.get(&table).is_some_and(|at| at.elapsed() < VACUUM_EVERY) {
            return;
        }
        let vacuumed = match self.lake.open_existing(table) {
            Ok(None) => return,
            Ok(Some(_)) => self.lake.vacuum(table, retention, false),
            Err(e) => Err(e),
        };
        match vacuumed {
            Ok(report) => {
                self.kept.vacuumed.insert(table, Instant::now());
                crate::metrics::vacuumed(table.name(), report.deleted);
                tracing::info!(
                    table = table.name(),
                    deleted = report.deleted,
                    deleted_bytes = report.deleted_bytes,
                    kept = report.referenced + report.young,
                    "vacuumed the table"
                );
            }
            Err(e) => {
                tracing::warn!(table = table.name(), error = %e, "cannot vacuum the table; trying again next interval")
            }
        }
    }
}

/// Nice 19 for the calling thread (its own, started for the round, so nothing else inherits it).
fn lowest_priority() {
    if let Err(e) = rustix::process::setpriority_process(Some(rustix::thread::gettid()), 19) {
        tracing::debug!(error = %e, "cannot lower the compaction thread's priority");
    }
}
