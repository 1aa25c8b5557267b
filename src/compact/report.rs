//! What a partition's compaction did: the summary line `compact` prints and `serve` logs.

use std::time::Duration;

use chrono::NaiveDate;

use crate::schema::Table;

/// What happened to a partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Replaced; the Delta table version of the commit.
    Compacted { table_version: Option<u64> },
    /// `--dry-run`: what would be compacted.
    Planned,
    /// Another compaction removed an input first: nothing changed.
    Lost { missing: usize },
    /// A column was added to the table meanwhile: nothing changed; the next run uses it.
    SchemaChanged,
}

/// One partition's compaction, for the summary line and the metrics.
#[derive(Debug, Clone)]
pub struct Report {
    pub table: Table,
    pub dt: NaiveDate,
    pub files_before: usize,
    pub bytes_before: u64,
    pub rows_before: u64,
    pub files_after: usize,
    pub bytes_after: u64,
    pub rows_after: u64,
    /// Later copies of an event id already kept.
    pub dropped: u64,
    pub spilled_runs: usize,
    pub elapsed: Duration,
    pub outcome: Outcome,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let size = |b: u64| bytesize::ByteSize(b).display().iec().to_string();
        let what = match &self.outcome {
            Outcome::Compacted { table_version: Some(v) } => format!("compacted (version {v})"),
            Outcome::Compacted { table_version: None } => "compacted".to_owned(),
            Outcome::Planned => {
                return write!(
                    f,
                    "{} dt={} would compact: {} files ({}) into about {}",
                    self.table.name(),
                    self.dt,
                    self.files_before,
                    size(self.bytes_before),
                    self.files_after
                );
            }
            Outcome::Lost { missing } => format!("left alone: another compaction removed {missing} of its files first"),
            Outcome::SchemaChanged => {
                "left alone: the table's schema changed meanwhile (the next run compacts it)".to_owned()
            }
        };
        write!(
            f,
            "{} dt={} {what}: {} files ({}) -> {} ({}), {} rows -> {} ({} duplicates dropped) in {:.1}s{}",
            self.table.name(),
            self.dt,
            self.files_before,
            size(self.bytes_before),
            self.files_after,
            size(self.bytes_after),
            self.rows_before,
            self.rows_after,
            self.dropped,
            self.elapsed.as_secs_f64(),
            if self.spilled_runs > 0 { format!(", {} sorted runs spilled", self.spilled_runs) } else { String::new() }
        )
    }
}
