//! The settings of `serve` (and of `check` and `config check`, which read the same ones).

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::{ApiArgs, DataDirArg, SubscriptionArgs, parse_bytes, parse_duration_or_zero};
use crate::lake::TableFormat;

/// Settings of `serve`. Each flag can also be set by the environment variable shown.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// A TOML file with any of these settings, keyed by flag name (`flush_interval = "30s"`).
    /// Environment variables and flags override it; an unknown key is an error.
    #[arg(long, env = "ONCEHUB_BRIDGE_CONFIG")]
    pub config: Option<PathBuf>,

    /// Address the webhook receiver listens on.
    #[arg(long, env = "ONCEHUB_BRIDGE_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Serve /readyz, /metrics and /healthz on this address instead of --listen (keep the
    /// operations endpoints off the address OnceHub posts to).
    #[arg(long, env = "ONCEHUB_BRIDGE_ADMIN_LISTEN")]
    pub admin_listen: Option<SocketAddr>,

    /// The delivery inspector at `/` of the admin routes (recent deliveries, their outcome and
    /// table, the lag, readiness): `on`, or `off` to record nothing and serve no page.
    #[arg(long, env = "ONCEHUB_BRIDGE_INSPECTOR", default_value = "on", value_parser = ["on", "off"])]
    pub inspector: String,

    /// The inspector keeps at most this many recent deliveries...
    #[arg(long, env = "ONCEHUB_BRIDGE_INSPECTOR_MAX_DELIVERIES", default_value = "500")]
    pub inspector_max_deliveries: NonZeroUsize,

    /// ...and at most this many bytes of their bodies and headers.
    #[arg(long, env = "ONCEHUB_BRIDGE_INSPECTOR_MAX_BYTES", default_value = "16MiB", value_parser = parse_bytes)]
    pub inspector_max_bytes: NonZeroUsize,

    /// Opens the inspector on an admin address that is not loopback (bearer header, or the
    /// page's login form). Without it, the inspector answers only on 127.0.0.1 / ::1.
    #[arg(long, env = "ONCEHUB_BRIDGE_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,

    #[command(flatten)]
    pub data: DataDirArg,

    /// Where Parquet files go: s3://bucket/prefix, gs://..., az://..., file:///abs/path, a path, or
    /// memory://. S3 settings come from the AWS_* variables (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID,
    /// AWS_SECRET_ACCESS_KEY, AWS_REGION, AWS_ALLOW_HTTP). Default: <data-dir>/lake.
    #[arg(long, env = "ONCEHUB_BRIDGE_STORAGE_URL")]
    pub storage_url: Option<String>,

    /// How tables are kept: `delta` (Delta Lake tables, the default: atomic, exactly-once commits
    /// every engine reads) or `parquet` (plain Hive-partitioned folders of Parquet files, no log).
    #[arg(long, env = "ONCEHUB_BRIDGE_TABLE_FORMAT", value_enum, default_value_t = TableFormat::Delta)]
    pub table_format: TableFormat,

    /// Delta tables: commit the files in the store at least this often (one commit per table for
    /// all of them); never later than --flush-interval.
    #[arg(long, env = "ONCEHUB_BRIDGE_COMMIT_INTERVAL", default_value = "10s", value_parser = humantime::parse_duration)]
    pub commit_interval: Duration,

    /// Delta tables: compact a day's partition in the background once the day ended this long
    /// ago (one file per ~--compact-target-size, one row per event id); later rounds take late
    /// events in. 0 disables.
    #[arg(long, env = "ONCEHUB_BRIDGE_COMPACT_AFTER", default_value = "1h", value_parser = parse_duration_or_zero)]
    pub compact_after: Duration,

    /// Size at which compaction cuts a file (e.g. 128MiB).
    #[arg(long, env = "ONCEHUB_BRIDGE_COMPACT_TARGET_SIZE", default_value = "128MiB", value_parser = parse_bytes)]
    pub compact_target_size: NonZeroUsize,

    /// Delta tables: once a day, delete files compaction removed longer ago than this, and
    /// uploads no commit references that are older; at least 1h. 0 disables.
    #[arg(long, env = "ONCEHUB_BRIDGE_VACUUM_RETENTION", default_value = "7d", value_parser = parse_duration_or_zero)]
    pub vacuum_retention: Duration,

    /// How often the background compaction looks for closed partitions.
    #[arg(long, env = "ONCEHUB_BRIDGE_MAINTENANCE_INTERVAL", default_value = "10m", value_parser = humantime::parse_duration)]
    pub maintenance_interval: Duration,

    /// Backfill in the background (needs --api-key): the bookings and contacts OnceHub's API lists
    /// as last updated after this day (YYYY-MM-DD), through the spool like webhooks; then again
    /// every --backfill-every from the last complete run (minus a day). An interrupted backfill
    /// goes on from its last page. Progress is kept in <data-dir>/backfill.json.
    #[arg(long, env = "ONCEHUB_BRIDGE_BACKFILL_SINCE")]
    pub backfill_since: Option<String>,

    /// How often `serve`'s backfill reads again what changed since its last complete run (catches
    /// what missed webhooks lost); 0: once.
    #[arg(long, env = "ONCEHUB_BRIDGE_BACKFILL_EVERY", default_value = "1d", value_parser = parse_duration_or_zero)]
    pub backfill_every: Duration,

    /// Webhook signing secrets, comma-separated (several during rotation). Default: the secret in
    /// <data-dir>/webhook-secret, generated on first start.
    #[arg(long, env = "ONCEHUB_WEBHOOK_SECRET", value_delimiter = ',', hide_env_values = true)]
    pub webhook_secret: Vec<String>,

    /// Cut a Parquet file when its oldest row is this old (e.g. 60s, 5m).
    #[arg(long, env = "ONCEHUB_BRIDGE_FLUSH_INTERVAL", default_value = "60s", value_parser = humantime::parse_duration)]
    pub flush_interval: Duration,

    /// Cut a Parquet file at this many rows.
    #[arg(long, env = "ONCEHUB_BRIDGE_FLUSH_MAX_ROWS", default_value = "100000")]
    pub flush_max_rows: NonZeroUsize,

    /// Cut a Parquet file when its buffered size reaches this (e.g. 64MiB, 1000000).
    #[arg(long, env = "ONCEHUB_BRIDGE_FLUSH_MAX_BYTES", default_value = "64MiB", value_parser = parse_bytes)]
    pub flush_max_bytes: NonZeroUsize,

    /// Accept a signature whose timestamp is at most this far from now, either way; 0 disables the check.
    #[arg(long, env = "ONCEHUB_BRIDGE_SIGNATURE_TOLERANCE", default_value = "300s", value_parser = parse_duration_or_zero)]
    pub signature_tolerance: Duration,

    /// Refuse bodies larger than this with 413 (e.g. 1MiB).
    #[arg(long, env = "ONCEHUB_BRIDGE_MAX_BODY_BYTES", default_value = "1MiB", value_parser = parse_bytes)]
    pub max_body_bytes: NonZeroUsize,

    /// Give up on a request whose body has not fully arrived this long after its headers (408).
    #[arg(long, env = "ONCEHUB_BRIDGE_BODY_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub body_timeout: Duration,

    /// On SIGTERM/SIGINT, give in-flight requests and the final flush this long before exiting.
    #[arg(long, env = "ONCEHUB_BRIDGE_SHUTDOWN_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub shutdown_timeout: Duration,

    /// Refuse deliveries with 503 + Retry-After once the spool on disk holds this much (e.g.
    /// while the store is down).
    #[arg(long, env = "ONCEHUB_BRIDGE_SPOOL_MAX_BYTES", default_value = "1GiB", value_parser = parse_bytes)]
    pub spool_max_bytes: NonZeroUsize,

    /// Size at which the spool starts a new segment file.
    #[arg(long, env = "ONCEHUB_BRIDGE_SPOOL_SEGMENT_BYTES", default_value = "64MiB", value_parser = parse_bytes)]
    pub spool_segment_bytes: NonZeroUsize,

    /// Refuse deliveries with 503 + Retry-After when the spool's disk has less free space than this.
    #[arg(long, env = "ONCEHUB_BRIDGE_SPOOL_MIN_FREE_BYTES", default_value = "256MiB", value_parser = parse_bytes)]
    pub spool_min_free_bytes: NonZeroUsize,

    /// An event id accepted within this window is answered 2xx and not written again (e.g. 7d, 12h).
    #[arg(long, env = "ONCEHUB_BRIDGE_DEDUP_WINDOW", default_value = "7d", value_parser = humantime::parse_duration)]
    pub dedup_window: Duration,

    /// HTTP worker threads. Default: one per CPU core.
    #[arg(long, env = "ONCEHUB_BRIDGE_WORKERS")]
    pub workers: Option<NonZeroUsize>,

    /// The https address OnceHub reaches this service at (base URL, `/webhooks/oncehub` is added).
    /// With --api-key, `serve` makes sure exactly one subscription points there before it is ready.
    #[arg(long, env = "ONCEHUB_BRIDGE_PUBLIC_URL")]
    pub public_url: Option<String>,

    #[command(flatten)]
    pub subscription: SubscriptionArgs,

    /// After a subscription is replaced, its old secret is still accepted this long (deliveries
    /// signed in flight).
    #[arg(long, env = "ONCEHUB_BRIDGE_SECRET_GRACE", default_value = "1h", value_parser = humantime::parse_duration)]
    pub secret_grace: Duration,

    /// Serve HTTPS with this PEM certificate chain (with --tls-key). Default: plain HTTP, for
    /// running behind a proxy that terminates TLS.
    #[arg(long, env = "ONCEHUB_BRIDGE_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// The PEM private key of --tls-cert.
    #[arg(long, env = "ONCEHUB_BRIDGE_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    #[command(flatten)]
    pub api: ApiArgs,
}
