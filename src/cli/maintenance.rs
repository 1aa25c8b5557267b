//! The settings of the lake's upkeep and history commands: `compact`, `vacuum`, `current`,
//! `backfill`.

use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::{ApiArgs, DataDirArg, parse_bytes};

/// Where the lake is: the same settings (and variables) as `serve`.
#[derive(Debug, Clone, Args)]
pub struct StoreArgs {
    #[command(flatten)]
    pub data: DataDirArg,
    /// The lake: s3://bucket/prefix, gs://..., az://..., file:///abs/path or a path (S3 settings
    /// from the AWS_* variables). Default: <data-dir>/lake.
    #[arg(long, env = "ONCEHUB_BRIDGE_STORAGE_URL")]
    pub storage_url: Option<String>,
    /// The lake's --table-format: `delta` (the default) or `parquet`.
    #[arg(long, env = "ONCEHUB_BRIDGE_TABLE_FORMAT", value_enum, default_value_t = crate::lake::TableFormat::Delta)]
    pub table_format: crate::lake::TableFormat,
}

/// The lake a maintenance command works on, and which of its tables.
#[derive(Debug, Clone, Args)]
pub struct LakeArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Only this table (bookings, conversations, other_events, dead_letter, contacts,
    /// bookings_current); repeat for more. Default: every table.
    #[arg(long = "table", value_parser = parse_table)]
    pub tables: Vec<crate::schema::Table>,
    /// Only report what would be done.
    #[arg(long)]
    pub dry_run: bool,
}

/// Settings of `compact`.
#[derive(Debug, Clone, Args)]
pub struct CompactArgs {
    #[command(flatten)]
    pub lake: LakeArgs,
    /// Only partitions (dt) from this date on (YYYY-MM-DD).
    #[arg(long, value_parser = parse_date)]
    pub since: Option<chrono::NaiveDate>,
    /// Only partitions up to this date, inclusive (YYYY-MM-DD).
    #[arg(long, value_parser = parse_date)]
    pub until: Option<chrono::NaiveDate>,
    /// Cut compacted files at about this size; partitions whose files are all this large are
    /// left alone.
    #[arg(long, env = "ONCEHUB_BRIDGE_COMPACT_TARGET_SIZE", default_value = "128MiB", value_parser = parse_bytes)]
    pub target_size: NonZeroUsize,
    /// Where sorted runs are spilled while a large partition is merged. Default: the system's
    /// temporary directory.
    #[arg(long, env = "ONCEHUB_BRIDGE_TEMP_DIR")]
    pub temp_dir: Option<PathBuf>,
    /// Rows are sorted in memory this many bytes at a time (the compaction's memory bound).
    #[arg(long, default_value = "64MiB", value_parser = parse_bytes)]
    pub run_size: NonZeroUsize,
}

/// Settings of `current`.
#[derive(Debug, Clone, Args)]
pub struct CurrentArgs {
    /// `bookings_current` is kept for Delta tables; the plain layout has a view (`schema ddl`).
    #[command(flatten)]
    pub store: StoreArgs,
    /// Cut files at about this size.
    #[arg(long, env = "ONCEHUB_BRIDGE_COMPACT_TARGET_SIZE", default_value = "128MiB", value_parser = parse_bytes)]
    pub target_size: NonZeroUsize,
    /// Only report which partitions would be rewritten.
    #[arg(long)]
    pub dry_run: bool,
}

/// Settings of `backfill`.
#[derive(Debug, Clone, Args)]
pub struct BackfillArgs {
    #[command(flatten)]
    pub api: ApiArgs,
    #[command(flatten)]
    pub data: DataDirArg,
    /// The running receiver's webhook URL: backfilled bookings go through it like webhooks.
    #[arg(long, env = "ONCEHUB_BRIDGE_TEST_URL", default_value = "http://127.0.0.1:8080/webhooks/oncehub")]
    pub url: String,
    /// Secret to sign with. Default: the one `serve` uses from <data-dir>.
    #[arg(long, env = "ONCEHUB_WEBHOOK_SECRET", value_delimiter = ',', hide_env_values = true)]
    pub webhook_secret: Vec<String>,
    /// Bookings last updated after this day (YYYY-MM-DD), or `last`: from the start of the last
    /// complete run, minus --overlap (for a daily run from cron).
    #[arg(long, default_value = "last")]
    pub since: String,
    /// Bookings last updated up to this day, inclusive (YYYY-MM-DD). Default: now.
    #[arg(long)]
    pub until: Option<String>,
    /// Go on with the interrupted run kept in <data-dir>/backfill.json, from its last page.
    #[arg(long)]
    pub resume: bool,
    /// With --since last, read again this far before the last run's start (the API's filters
    /// are strict and may be day-resolution; re-read bookings add no row).
    #[arg(long, default_value = "1d", value_parser = humantime::parse_duration)]
    pub overlap: Duration,
    /// At most this many API requests per --rate-window (default: OnceHub's 200 per 5 minutes per IP).
    #[arg(long)]
    pub rate_window_requests: Option<usize>,
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    pub rate_window: Duration,
}

/// Settings of `vacuum`.
#[derive(Debug, Clone, Args)]
pub struct VacuumArgs {
    #[command(flatten)]
    pub lake: LakeArgs,
    /// Keep every file a version of the last this-long references (time travel, and commits of
    /// files still being uploaded), e.g. 7d.
    #[arg(long, env = "ONCEHUB_BRIDGE_VACUUM_RETENTION", default_value = "7d", value_parser = humantime::parse_duration)]
    pub vacuum_retention: Duration,
    /// Accept a retention below 1h (a writer's upload whose commit is still to come may be deleted).
    #[arg(long)]
    pub allow_short_retention: bool,
}

fn parse_table(text: &str) -> Result<crate::schema::Table, String> {
    crate::schema::Table::LAKE.into_iter().find(|t| t.name() == text.trim()).ok_or_else(|| {
        let names: Vec<&str> = crate::schema::Table::LAKE.iter().map(|t| t.name()).collect();
        format!("unknown table; one of {}", names.join(", "))
    })
}

fn parse_date(text: &str) -> Result<chrono::NaiveDate, String> {
    chrono::NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d").map_err(|e| format!("{e}; expected YYYY-MM-DD"))
}
