//! The command line (clap derive). Doc comments are the `--help` text; every flag of `serve` also
//! reads an environment variable.

use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

mod maintenance;
mod serve;

pub(crate) use maintenance::{BackfillArgs, CompactArgs, CurrentArgs, StoreArgs, VacuumArgs};
pub(crate) use serve::ServeArgs;

/// Lands OnceHub webhook deliveries as typed Parquet tables on S3-compatible storage.
#[derive(Debug, Parser)]
#[command(name = "oncehub-bridge", version, about, propagate_version = true)]
pub struct Cli {
    /// Log lines as JSON objects or readable text. Default: pretty on a terminal, json otherwise.
    #[arg(long, global = true, env = "ONCEHUB_BRIDGE_LOG_FORMAT", value_enum)]
    pub log_format: Option<crate::telemetry::LogFormat>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Receive webhooks on --listen and write them to --storage-url as Parquet.
    Serve(ServeArgs),
    /// Post signed sample deliveries (every documented shape) to a running receiver.
    SendTestEvent(SendTestArgs),
    /// Create (or reuse) the OnceHub webhook subscription for a URL; keeps its secret in --data-dir.
    Register(RegisterArgs),
    /// List the account's OnceHub webhook subscriptions.
    List(ListArgs),
    /// Delete OnceHub webhook subscriptions by id, URL or name.
    Unregister(UnregisterArgs),
    /// Check a deployment end to end (API key, subscription, storage, receiver, a probe delivery
    /// found in the lake), with the same settings as `serve`; non-zero exit on any failure.
    Check(CheckArgs),
    /// Check a configuration without starting anything.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// The table schemas, for warehouse engines.
    #[command(subcommand)]
    Schema(SchemaCommand),
    /// Rewrite each partition's small files into few large ones, one row per event id (what
    /// `serve` does by itself for days that ended more than --compact-after ago).
    Compact(CompactArgs),
    /// Delete files compaction removed longer ago than the retention window, and uploads no
    /// commit references (Delta tables).
    Vacuum(VacuumArgs),
    /// Bring the bookings and contacts from before the bridge was installed (OnceHub's REST API)
    /// into the lake, through a running `serve` (deduplicated and committed like webhooks).
    Backfill(BackfillArgs),
    /// Bring `bookings_current` (one row per booking, its latest state) up to date with
    /// `bookings` now (`serve` does it after each compaction round).
    Current(CurrentArgs),
    /// Check or repair the spool (stop `serve` first: both take the spool's lock).
    #[command(subcommand)]
    Spool(SpoolCommand),
}

/// The data dir, the same flag for every command: `serve` keeps its spool and local state there
/// (the generated webhook secret, the managed subscription), and the other commands find them.
#[derive(Debug, Clone, Args)]
pub struct DataDirArg {
    /// Directory for the spool and local state: the one `serve` uses (created by `serve` if missing).
    #[arg(long, env = "ONCEHUB_BRIDGE_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
}

/// `spool` subcommands.
#[derive(Debug, Subcommand)]
pub enum SpoolCommand {
    /// Read every segment and report what is damaged and which sequence numbers are lost;
    /// changes nothing. Exit 0 when clean, 1 when damage or a loss was found.
    Verify(SpoolArgs),
    /// Do what `serve` does at start-up, now: keep every intact record, move damaged segments
    /// (and a damaged state file) into <data-dir>/spool/quarantine/, rewrite them without the bad
    /// bytes, and report what was lost.
    Repair(SpoolArgs),
}

/// Settings of `spool verify` and `spool repair`.
#[derive(Debug, Clone, Args)]
pub struct SpoolArgs {
    #[command(flatten)]
    pub data: DataDirArg,
}

/// `config` subcommands.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print the effective settings of `serve` (flags > environment > --config file > defaults),
    /// secrets redacted, and exit non-zero if they are invalid.
    Check(ServeArgs),
}

/// `schema` subcommands.
#[derive(Debug, Subcommand)]
pub enum SchemaCommand {
    /// Print the statements that make every table of the lake queryable from an engine.
    Ddl {
        /// The engine whose SQL dialect to write.
        #[arg(long, value_enum)]
        engine: crate::schema::ddl::Engine,
        /// The lake's root: the --storage-url the bridge writes to (s3://bucket/prefix, a path...).
        #[arg(long)]
        location: String,
        /// The lake's --table-format: `delta` (the default) or `parquet`.
        #[arg(long, value_enum, default_value_t = crate::lake::TableFormat::Delta)]
        table_format: crate::lake::TableFormat,
    },
}

/// How to reach the OnceHub API.
#[derive(Debug, Clone, Args)]
pub struct ApiArgs {
    /// OnceHub API key, sent as the API-Key header (OnceHub: Settings > API & webhooks). With
    /// --public-url, `serve` keeps its own webhook subscription.
    #[arg(long, env = "ONCEHUB_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,

    /// The OnceHub API's base URL.
    #[arg(long, env = "ONCEHUB_API_BASE_URL", default_value = crate::oncehub::DEFAULT_BASE_URL)]
    pub api_base_url: String,
}

/// What a subscription listens to.
#[derive(Debug, Clone, Args)]
pub struct SubscriptionArgs {
    /// Event triggers to subscribe to, comma-separated. Default: every booking and conversation
    /// trigger.
    #[arg(long, env = "ONCEHUB_BRIDGE_EVENTS", value_delimiter = ',')]
    pub events: Vec<String>,

    /// The subscription's name (unique in the account). Default: `oncehub-bridge <host>`.
    #[arg(long = "subscription-name", visible_alias = "name", env = "ONCEHUB_BRIDGE_SUBSCRIPTION_NAME")]
    pub subscription_name: Option<String>,
}

/// Settings of `register`.
#[derive(Debug, Clone, Args)]
pub struct RegisterArgs {
    /// The https address OnceHub posts to: the service's base URL (`/webhooks/oncehub` is added) or
    /// the full webhook URL.
    #[arg(long, env = "ONCEHUB_BRIDGE_PUBLIC_URL")]
    pub url: String,
    #[command(flatten)]
    pub subscription: SubscriptionArgs,
    /// Also print the signing secret (it is always kept in <data-dir>/subscription.json).
    #[arg(long)]
    pub show_secret: bool,
    #[command(flatten)]
    pub data: DataDirArg,
    #[command(flatten)]
    pub api: ApiArgs,
}

/// Settings of `list`.
#[derive(Debug, Clone, Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub api: ApiArgs,
}

/// Settings of `unregister`: exactly one of ID, --url, --name.
#[derive(Debug, Clone, Args)]
#[command(group = clap::ArgGroup::new("which").required(true).args(["id", "url", "name"]))]
pub struct UnregisterArgs {
    /// The subscription id (WHK-...).
    pub id: Option<String>,
    /// Delete every subscription posting to this URL (base or full webhook URL).
    #[arg(long)]
    pub url: Option<String>,
    /// Delete the subscription with this name.
    #[arg(long)]
    pub name: Option<String>,
    #[command(flatten)]
    pub data: DataDirArg,
    #[command(flatten)]
    pub api: ApiArgs,
}

/// Settings of `check`: those of `serve`, plus where to reach the running receiver.
#[derive(Debug, Clone, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub serve: ServeArgs,

    /// The running receiver's base URL. Default: http(s)://<--listen> (0.0.0.0 as 127.0.0.1).
    #[arg(long, overrides_with = "receiver_url")]
    pub receiver_url: Option<String>,

    /// How long to wait for the probe delivery to reach the lake. Default: --flush-interval + 30s.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub probe_timeout: Option<Duration>,
}

/// Settings of `send-test-event`.
#[derive(Debug, Args)]
pub struct SendTestArgs {
    /// The receiver's webhook URL.
    #[arg(long, env = "ONCEHUB_BRIDGE_TEST_URL", default_value = "http://127.0.0.1:8080/webhooks/oncehub")]
    pub url: String,

    /// Send one delivery of this trigger (e.g. booking.scheduled).
    #[arg(long = "type", conflicts_with = "all")]
    pub event_type: Option<String>,

    /// Send one delivery of every documented trigger and shape variant, then a short history:
    /// bookings through several events, conversations that become bookings, a retry (answered
    /// duplicate), an event of another object and a delivery that is not an event.
    #[arg(long)]
    pub all: bool,

    /// Secret to sign with. Default: the one in <data-dir>/webhook-secret.
    #[arg(long, env = "ONCEHUB_WEBHOOK_SECRET", value_delimiter = ',', hide_env_values = true)]
    pub webhook_secret: Vec<String>,

    #[command(flatten)]
    pub data: DataDirArg,
}

fn parse_bytes(text: &str) -> Result<NonZeroUsize, String> {
    let size: bytesize::ByteSize = text.trim().parse().map_err(|e| format!("{e}; expected e.g. 1MiB or 1048576"))?;
    usize::try_from(size.as_u64())
        .ok()
        .and_then(NonZeroUsize::new)
        .ok_or_else(|| "must be greater than zero".to_owned())
}

fn parse_duration_or_zero(text: &str) -> Result<Duration, String> {
    match text.trim() {
        "0" => Ok(Duration::ZERO),
        t => humantime::parse_duration(t).map_err(|e| e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations_parse() {
        assert_eq!(parse_bytes("1MiB").unwrap().get(), 1024 * 1024);
        assert_eq!(parse_bytes("1000").unwrap().get(), 1000);
        assert!(parse_bytes("0").is_err());
        assert!(parse_bytes("lots").is_err());
        assert_eq!(parse_duration_or_zero("0").unwrap(), Duration::ZERO);
        assert_eq!(parse_duration_or_zero("5m").unwrap(), Duration::from_secs(300));
    }

    #[test]
    fn invalid_values_name_the_flag() {
        let e = Cli::try_parse_from(["oncehub-bridge", "serve", "--flush-interval", "soon"]).unwrap_err();
        assert!(e.to_string().contains("--flush-interval"), "{e}");
        let e = Cli::try_parse_from(["oncehub-bridge", "serve", "--flush-max-rows", "0"]).unwrap_err();
        assert!(e.to_string().contains("--flush-max-rows"), "{e}");
    }

    #[test]
    fn clap_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
