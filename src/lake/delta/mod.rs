//! Delta Lake tables, through the Delta kernel (`delta_kernel` with its default engine): the
//! kernel writes every log entry, checkpoint and `_last_checkpoint`; we write the Parquet files
//! ourselves and hand them to it as `add` actions with their statistics.
//!
//! - `table`: create a table on first start (schema from `schemas/`, `dt` as partition column),
//!   or open it and apply additive schema changes.
//! - `commit`: one commit per table for the files staged since the last one, carrying the
//!   transaction marker `txn {appId: "oncehub-bridge-<instance id>", version}`; conflicts with other
//!   writers are retried on the new table version; an outcome that is unknown (an error after the
//!   log entry's PUT may have gone through) is settled by reading the marker back.
//! - `reconcile`: after a restart, which of the files a crash left uncertain are in the table.
//! - `verify`: each commit is read back, for stores whose create-only PUT is not atomic.
//! - `optimize`: compaction's commit, `remove` of a partition's files and `add` of their
//!   replacement in one log entry.
//! - `vacuum`: deleting files no version within the retention window references.
//!
//! Every function here blocks (the kernel's API is synchronous; its engine runs its I/O on our
//! tokio runtime): call them from `spawn_blocking`.

mod commit;
mod optimize;
mod reconcile;
mod table;
#[cfg(test)]
pub(crate) mod tests;
mod vacuum;
mod verify;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use delta_kernel::SnapshotRef;
use delta_kernel_default_engine::DefaultEngine;
use delta_kernel_default_engine::executor::tokio::TokioMultiThreadExecutor;
use url::Url;

use crate::schema::{Catalog, Table};
use crate::sink::{StatsSpec, StoreRoot, WriterId};

pub use commit::CommitReport;
pub use optimize::{LiveFile, NewFile, Replaced};
pub use vacuum::VacuumReport;

/// What commits and reads of the Delta log name themselves in `commitInfo.engineInfo`.
pub(crate) const ENGINE_INFO: &str = concat!("oncehub-bridge/", env!("CARGO_PKG_VERSION"));

/// Write a checkpoint when a commit's table version is a multiple of this (Delta's own default).
pub const CHECKPOINT_INTERVAL: u64 = 10;

/// A Delta operation failed.
#[derive(Debug, thiserror::Error)]
pub enum LakeError {
    #[error("delta table {table}: {source}")]
    Kernel {
        table: &'static str,
        #[source]
        source: Box<delta_kernel::KernelError>,
    },
    /// The schema in `schemas/` cannot be applied to the table by adding columns.
    #[error(
        "delta table {table}: the schema in schemas/ is not compatible with the table's: column {column} {problem}; only added nullable columns are applied automatically"
    )]
    Incompatible { table: &'static str, column: String, problem: String },
    #[error("delta table {table}: {message}")]
    Other { table: &'static str, message: String },
}

impl LakeError {
    /// True when retrying cannot help (the schema must be fixed first).
    pub fn is_permanent(&self) -> bool {
        matches!(self, LakeError::Incompatible { .. })
    }

    /// The store's error underneath, when the kernel failed on a read or write of the store.
    pub fn store_error(&self) -> Option<&object_store::Error> {
        match self {
            LakeError::Kernel { source, .. } => match source.as_ref() {
                delta_kernel::KernelError::ObjectStore(e) => Some(e),
                _ => None,
            },
            _ => None,
        }
    }

    /// A failed read or write of the store, as the kernel would report it.
    pub(crate) fn store(table: Table) -> impl FnOnce(object_store::Error) -> LakeError {
        move |e| LakeError::Kernel { table: table.name(), source: Box::new(delta_kernel::KernelError::ObjectStore(e)) }
    }

    pub(crate) fn kernel(table: Table) -> impl FnOnce(delta_kernel::KernelError) -> LakeError {
        move |source| LakeError::Kernel { table: table.name(), source: Box::new(source) }
    }
}

type Engine = DefaultEngine<TokioMultiThreadExecutor>;

/// What is known of one table.
struct TableState {
    snapshot: SnapshotRef,
    stats: Arc<StatsSpec>,
    /// The last `txn` version of this instance's app id in the table.
    app_version: Option<i64>,
    /// An attempt failed: the snapshot may be behind, and a commit may have landed unseen.
    stale: bool,
}

/// The tables of one storage URL, written by one instance.
pub struct DeltaLake {
    engine: Arc<Engine>,
    /// The engine's store, for reading a commit back (see `verify`).
    store: Arc<dyn object_store::ObjectStore>,
    root: Url,
    /// The lake directory, for a local lake: the kernel needs a table's directory to exist.
    local_dir: Option<PathBuf>,
    app_id: String,
    catalog: Arc<Catalog>,
    tables: Mutex<HashMap<Table, TableState>>,
    /// Tables whose checkpoint is being written in the background.
    checkpoints: Arc<Mutex<HashSet<Table>>>,
}

impl DeltaLake {
    /// Builds the engine; touches nothing. Must be called inside the tokio runtime.
    pub fn new(root: &StoreRoot, local_dir: Option<PathBuf>, writer: &WriterId, catalog: Arc<Catalog>) -> DeltaLake {
        let executor = Arc::new(TokioMultiThreadExecutor::new(tokio::runtime::Handle::current()));
        let engine = delta_kernel_default_engine::DefaultEngineBuilder::new(root.store.clone())
            .with_task_executor(executor)
            .build();
        DeltaLake {
            engine: Arc::new(engine),
            store: root.store.clone(),
            root: root.url.clone(),
            local_dir,
            app_id: app_id(writer),
            catalog,
            tables: Mutex::new(HashMap::new()),
            checkpoints: Arc::new(Mutex::new(HashSet::new())),
        }
    }

    /// `<root>/<table>/`.
    pub fn table_url(&self, table: Table) -> Result<Url, LakeError> {
        self.root
            .join(&format!("{}/", table.name()))
            .map_err(|e| LakeError::Other { table: table.name(), message: format!("bad table URL: {e}") })
    }

    /// The transaction app id this instance commits under.
    pub fn app_id(&self) -> &str {
        &self.app_id
    }

    fn state(&self) -> std::sync::MutexGuard<'_, HashMap<Table, TableState>> {
        self.tables.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// `oncehub-bridge-<instance id>`.
pub fn app_id(writer: &WriterId) -> String {
    format!("oncehub-bridge-{}", writer.as_str())
}
