//! The lake: where uploaded files become visible to readers.
//!
//! Two table formats. `delta` (the default): each table is a Delta Lake table at
//! `<storage-url>/<table>/`, and a file becomes part of it only by a commit to its `_delta_log/`
//! (see [`delta`]): readers never see a file twice, half a batch, or a file nobody committed.
//! `parquet`: the plain Hive layout of earlier releases; a file is visible as soon as it is
//! uploaded, and there is no log.

pub mod delta;
pub mod parquet;

use std::sync::Arc;

use arrow_array::StructArray;
use chrono::NaiveDate;

use crate::schema::Table;
use crate::sink::ObjectKey;
use crate::spool::Seq;

pub use delta::{CommitReport, DeltaLake, LakeError};

/// How tables are laid out in the store (`--table-format`).
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TableFormat {
    /// Delta Lake tables: atomic, exactly-once commits that every warehouse engine reads.
    #[default]
    Delta,
    /// Plain Hive-partitioned Parquet folders, no transaction log.
    Parquet,
}

impl TableFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            TableFormat::Delta => "delta",
            TableFormat::Parquet => "parquet",
        }
    }
}

/// Where the batcher's files go once they are in the store.
#[derive(Clone)]
pub enum Lake {
    Parquet,
    Delta(Arc<DeltaLake>),
}

impl Lake {
    pub fn format(&self) -> TableFormat {
        match self {
            Lake::Parquet => TableFormat::Parquet,
            Lake::Delta(_) => TableFormat::Delta,
        }
    }
}

/// A file in the store, waiting for the commit that adds it to its table.
#[derive(Debug, Clone)]
pub struct StagedFile {
    pub table: Table,
    pub dt: NaiveDate,
    pub key: ObjectKey,
    /// The object's size in the store.
    pub size: u64,
    pub rows: usize,
    pub stats: StructArray,
    pub first: Seq,
    pub last: Seq,
    /// Each row's arrival, for the event-to-readable lag recorded at the commit.
    pub received_at: Vec<chrono::DateTime<chrono::Utc>>,
    /// Each row's spool sequence, for the inspector (where a delivery landed).
    pub seqs: Vec<u64>,
}

/// A test hook: when `ONCEHUB_BRIDGE_TEST_CRASH_AT` names this point (`after-upload`: a file is in
/// the store, not yet committed; `after-commit`: committed, the spool not yet acknowledged), the
/// process kills itself with SIGKILL there, the way a power cut would stop it.
pub(crate) fn crash_point(name: &str) {
    static AT: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    let at = AT.get_or_init(|| std::env::var("ONCEHUB_BRIDGE_TEST_CRASH_AT").ok());
    if at.as_deref() == Some(name) {
        tracing::warn!(point = name, "ONCEHUB_BRIDGE_TEST_CRASH_AT: killing the process here");
        let _ = rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::KILL);
    }
}
