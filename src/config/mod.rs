//! Typed, validated settings for `serve`, built once from the parsed command line.
//!
//! Every value here is already valid: a bad one fails at start with a message naming the setting.
//! Where values come from (flags, environment, `--config` file, defaults) is `file`'s concern;
//! `show` prints them for `config check`.

pub mod file;
pub mod show;

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::time::Duration;

use url::Url;

use crate::batcher::FlushLimits;
use crate::cli::{ApiArgs, ServeArgs};
use crate::lake::TableFormat;
use crate::oncehub::{Desired, SubscriptionError};
use crate::secret::{ApiKey, WebhookSecret};
use crate::sink::{StorageUrl, StoreError};
use crate::spool::SpoolOptions;

/// A setting that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("--storage-url / ONCEHUB_BRIDGE_STORAGE_URL: {0}")]
    StorageUrl(#[from] StoreError),
    #[error("--webhook-secret / ONCEHUB_WEBHOOK_SECRET: entry {0} of the comma-separated list is empty")]
    EmptySecret(usize),
    #[error("--flush-interval and --commit-interval must be greater than zero")]
    ZeroFlushInterval,
    #[error("cannot determine the current directory: {0}")]
    Cwd(std::io::Error),
    #[error(
        "--api-key / ONCEHUB_API_KEY is set but --public-url / ONCEHUB_BRIDGE_PUBLIC_URL is not: set it to the https address OnceHub reaches this service at, or unset the key to manage the subscription yourself"
    )]
    PublicUrlMissing,
    #[error("--public-url / --events: {0}")]
    Subscription(#[from] SubscriptionError),
    #[error("--api-base-url / ONCEHUB_API_BASE_URL: {0}")]
    ApiBaseUrl(String),
    #[error(
        "--vacuum-retention / ONCEHUB_BRIDGE_VACUUM_RETENTION must be at least 1h (readers of older versions and commits still to come need the files); 0 disables it"
    )]
    ShortRetention,
    #[error("--maintenance-interval must be greater than zero")]
    ZeroMaintenanceInterval,
    #[error("--admin-token / ONCEHUB_BRIDGE_ADMIN_TOKEN must be at least 16 characters (it opens customer data)")]
    ShortAdminToken,
    #[error("--backfill-since / ONCEHUB_BRIDGE_BACKFILL_SINCE needs --api-key / ONCEHUB_API_KEY")]
    BackfillNeedsKey,
    #[error("--backfill-since / ONCEHUB_BRIDGE_BACKFILL_SINCE: {0:?} is not a day (YYYY-MM-DD)")]
    BackfillSince(String),
}

/// `serve --backfill-since`: a background backfill into the spool.
#[derive(Debug, Clone)]
pub struct BackfillSettings {
    pub api: ApiSettings,
    /// The first run reads objects last updated after this.
    pub first: chrono::DateTime<chrono::Utc>,
    /// Later runs: this long after the last one ended, from its start minus [`BACKFILL_OVERLAP`].
    pub every: Option<Duration>,
}

/// How far before the last complete run `serve`'s later backfills read again.
pub const BACKFILL_OVERLAP: Duration = Duration::from_secs(24 * 3600);

/// The least vacuum retention `serve` accepts (`vacuum --allow-short-retention` goes lower).
pub const MIN_VACUUM_RETENTION: Duration = Duration::from_secs(3600);

/// Background upkeep of Delta tables in `serve`.
#[derive(Debug, Clone)]
pub struct MaintenanceSettings {
    /// Compact a partition once its day ended this long ago; `None`: never.
    pub compact_after: Option<Duration>,
    pub target_size: u64,
    /// `None`: never vacuum.
    pub vacuum_retention: Option<Duration>,
    pub interval: Duration,
}

/// How to reach the OnceHub API: validated `ApiArgs`.
#[derive(Debug, Clone)]
pub struct ApiSettings {
    pub base: Url,
    pub key: ApiKey,
}

impl ApiSettings {
    /// `None` without a key (blank counts as none).
    pub fn from_args(args: &ApiArgs) -> Result<Option<ApiSettings>, ConfigError> {
        let Some(key) = args.api_key.as_deref().and_then(ApiKey::parse) else { return Ok(None) };
        let base = Url::parse(args.api_base_url.trim())
            .map_err(|e| ConfigError::ApiBaseUrl(format!("{}: {e}", args.api_base_url)))?;
        if !matches!(base.scheme(), "https" | "http") {
            return Err(ConfigError::ApiBaseUrl(format!("{} is not an http(s) URL", args.api_base_url)));
        }
        Ok(Some(ApiSettings { base, key }))
    }
}

/// Auto-registration: `serve` keeps exactly this subscription.
#[derive(Debug, Clone)]
pub struct SubscriptionSettings {
    pub api: ApiSettings,
    pub desired: Desired,
    /// How long a replaced secret is still accepted.
    pub grace: Duration,
}

/// HTTPS on the receiver's listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Where webhook secrets come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// Given by flag or environment.
    Configured(Vec<WebhookSecret>),
    /// `<data-dir>/webhook-secret`, generated when missing.
    LocalFile,
}

/// Everything `serve` needs, validated.
#[derive(Debug, Clone)]
pub struct ServeSettings {
    pub listen: SocketAddr,
    pub admin_listen: Option<SocketAddr>,
    pub data_dir: PathBuf,
    pub storage: StorageUrl,
    pub table_format: TableFormat,
    /// Delta tables: commit the files in the store at least this often.
    pub commit_interval: Duration,
    pub secrets: SecretSource,
    pub flush: FlushLimits,
    /// 0 disables the timestamp check.
    pub signature_tolerance: Duration,
    pub max_body_bytes: NonZeroUsize,
    /// How long a request's body may take to arrive after its headers.
    pub body_timeout: Duration,
    pub shutdown_timeout: Duration,
    pub workers: Option<NonZeroUsize>,
    pub spool: SpoolOptions,
    /// Set with an API key and a public URL.
    pub subscription: Option<SubscriptionSettings>,
    pub tls: Option<TlsSettings>,
    pub maintenance: MaintenanceSettings,
    pub backfill: Option<BackfillSettings>,
    /// `None`: `--inspector off`.
    pub inspector: Option<crate::inspector::InspectorSettings>,
    pub admin_token: Option<crate::secret::AdminToken>,
}

impl ServeSettings {
    pub fn from_args(args: ServeArgs) -> Result<ServeSettings, ConfigError> {
        let cwd = std::env::current_dir().map_err(ConfigError::Cwd)?;
        Self::from_args_in(args, &cwd)
    }

    /// As [`Self::from_args`], resolving relative paths against `cwd`.
    pub fn from_args_in(args: ServeArgs, cwd: &Path) -> Result<ServeSettings, ConfigError> {
        let data_dir = resolve(cwd, &args.data.data_dir);
        let storage = match &args.storage_url {
            Some(url) => StorageUrl::parse(url, cwd)?,
            None => StorageUrl::Local(data_dir.join("lake")),
        };
        // Set but empty (`ONCEHUB_WEBHOOK_SECRET=` from a compose file's `${VAR:-}`) means unset.
        let unset = args.webhook_secret.iter().all(|s| s.trim().is_empty());
        let secrets = if unset {
            SecretSource::LocalFile
        } else {
            let parsed = args
                .webhook_secret
                .iter()
                .enumerate()
                .map(|(i, s)| WebhookSecret::parse(s).ok_or(ConfigError::EmptySecret(i + 1)))
                .collect::<Result<_, _>>()?;
            SecretSource::Configured(parsed)
        };
        if args.flush_interval.is_zero() || args.commit_interval.is_zero() {
            return Err(ConfigError::ZeroFlushInterval);
        }
        if !args.vacuum_retention.is_zero() && args.vacuum_retention < MIN_VACUUM_RETENTION {
            return Err(ConfigError::ShortRetention);
        }
        if args.maintenance_interval.is_zero() {
            return Err(ConfigError::ZeroMaintenanceInterval);
        }
        let maintenance = MaintenanceSettings {
            compact_after: (!args.compact_after.is_zero()).then_some(args.compact_after),
            target_size: args.compact_target_size.get() as u64,
            vacuum_retention: (!args.vacuum_retention.is_zero()).then_some(args.vacuum_retention),
            interval: args.maintenance_interval,
        };
        let public_url = args.public_url.as_deref().map(str::trim).filter(|u| !u.is_empty());
        let admin_token = args.admin_token.as_deref().and_then(crate::secret::AdminToken::parse);
        if admin_token.as_ref().is_some_and(|t| t.chars() < 16) {
            return Err(ConfigError::ShortAdminToken);
        }
        let backfill_since = args.backfill_since.as_deref().map(str::trim).filter(|d| !d.is_empty());
        let backfill = match (backfill_since, ApiSettings::from_args(&args.api)?) {
            (None, _) => None,
            (Some(_), None) => return Err(ConfigError::BackfillNeedsKey),
            (Some(day), Some(api)) => {
                let first = chrono::NaiveDate::parse_from_str(day, "%Y-%m-%d")
                    .map_err(|_| ConfigError::BackfillSince(day.to_owned()))?;
                Some(BackfillSettings {
                    api,
                    first: first.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc(),
                    every: (!args.backfill_every.is_zero()).then_some(args.backfill_every),
                })
            }
        };
        let subscription = match (ApiSettings::from_args(&args.api)?, public_url) {
            (None, Some(_)) => {
                tracing::warn!(
                    "--public-url is set but no --api-key: the subscription is not managed; pass --api-key, or register it yourself with `oncehub-bridge register`"
                );
                None
            }
            (None, None) => None,
            // The key is there for the backfill only: the subscription is the user's.
            (Some(_), None) if backfill.is_some() => None,
            (Some(_), None) => return Err(ConfigError::PublicUrlMissing),
            (Some(api), Some(url)) => {
                let names = args.subscription.subscription_name.as_deref();
                let desired = Desired::new(url, &args.subscription.events, names)?;
                Some(SubscriptionSettings { api, desired, grace: args.secret_grace })
            }
        };
        let tls = match (&args.tls_cert, &args.tls_key) {
            (Some(cert), Some(key)) => Some(TlsSettings { cert: resolve(cwd, cert), key: resolve(cwd, key) }),
            _ => None,
        };
        Ok(ServeSettings {
            listen: args.listen,
            admin_listen: args.admin_listen,
            data_dir: data_dir.clone(),
            storage,
            table_format: args.table_format,
            commit_interval: args.commit_interval.min(args.flush_interval),
            secrets,
            flush: FlushLimits {
                max_rows: args.flush_max_rows,
                max_bytes: args.flush_max_bytes,
                max_age: args.flush_interval,
            },
            signature_tolerance: args.signature_tolerance,
            max_body_bytes: args.max_body_bytes,
            body_timeout: args.body_timeout,
            shutdown_timeout: args.shutdown_timeout,
            workers: args.workers,
            subscription,
            tls,
            maintenance,
            backfill,
            inspector: (args.inspector == "on").then(|| crate::inspector::InspectorSettings {
                max_deliveries: args.inspector_max_deliveries.get(),
                max_bytes: args.inspector_max_bytes.get(),
            }),
            admin_token,
            spool: SpoolOptions {
                dir: data_dir.join("spool"),
                max_bytes: args.spool_max_bytes.get() as u64,
                segment_bytes: args.spool_segment_bytes.get() as u64,
                min_free_bytes: args.spool_min_free_bytes.get() as u64,
                dedup_window: args.dedup_window,
            },
        })
    }
}

/// `path` taken from `cwd` when relative, without `.` components (`/srv/./data` reads as `/srv/data`).
pub fn resolve(cwd: &Path, path: &Path) -> PathBuf {
    cwd.join(path).components().filter(|c| !matches!(c, std::path::Component::CurDir)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;

    fn settings(extra: &[&str]) -> Result<ServeSettings, ConfigError> {
        let mut argv = vec!["oncehub-bridge", "serve"];
        argv.extend_from_slice(extra);
        let Command::Serve(args) = Cli::try_parse_from(argv).unwrap().command else { panic!() };
        ServeSettings::from_args_in(args, Path::new("/srv"))
    }

    #[test]
    fn defaults_work_on_a_laptop() {
        let s = settings(&["--data-dir", "d"]).unwrap();
        assert_eq!(s.data_dir, PathBuf::from("/srv/d"));
        assert_eq!(s.storage, StorageUrl::Local("/srv/d/lake".into()));
        assert_eq!(s.secrets, SecretSource::LocalFile);
        assert_eq!(settings(&["--webhook-secret", ""]).unwrap().secrets, SecretSource::LocalFile);
        assert_eq!(s.flush, FlushLimits::default());
        assert_eq!(s.signature_tolerance, Duration::from_secs(300));
        assert_eq!(s.max_body_bytes.get(), 1024 * 1024);
        assert_eq!(s.spool.dir, PathBuf::from("/srv/d/spool"));
        assert_eq!(s.spool.max_bytes, 1 << 30);
        assert_eq!(s.spool.dedup_window, Duration::from_secs(7 * 86_400));
    }

    #[test]
    fn bad_values_name_the_setting_and_never_echo_secrets() {
        let e = settings(&["--webhook-secret", "topsecret,,other"]).unwrap_err().to_string();
        assert!(e.contains("--webhook-secret") && e.contains("entry 2"), "{e}");
        assert!(!e.contains("topsecret"), "{e}");
        let e = settings(&["--storage-url", "ftp://x/y"]).unwrap_err().to_string();
        assert!(e.contains("--storage-url"), "{e}");
        let e = settings(&["--flush-interval", "0s"]).unwrap_err().to_string();
        assert!(e.contains("--flush-interval"), "{e}");
    }

    #[test]
    fn an_api_key_needs_an_https_public_url_and_known_events() {
        assert!(settings(&[]).unwrap().subscription.is_none());
        assert!(settings(&["--api-key", " "]).unwrap().subscription.is_none(), "blank means unset");
        let e = settings(&["--api-key", "k-SECRET"]).unwrap_err().to_string();
        assert!(e.contains("--public-url") && !e.contains("k-SECRET"), "{e}");
        let e = settings(&["--api-key", "k", "--public-url", "http://h.example.com"]).unwrap_err().to_string();
        assert!(e.contains("https"), "{e}");
        let e =
            settings(&["--api-key", "k", "--public-url", "https://h", "--events", "booking.scheduled,booking.nope"])
                .unwrap_err();
        assert!(e.to_string().contains("booking.nope"));
        let s = settings(&["--api-key", "k", "--public-url", "https://h.example.com/"]).unwrap().subscription.unwrap();
        assert_eq!(s.desired.url, "https://h.example.com/webhooks/oncehub");
        assert_eq!(s.api.base.as_str(), "https://api.oncehub.com/v2");
        assert!(!format!("{s:?}").contains("\"k\""), "the key is redacted in Debug");
    }

    #[test]
    fn several_secrets_for_rotation() {
        let s = settings(&["--webhook-secret", "a,b"]).unwrap();
        assert!(matches!(s.secrets, SecretSource::Configured(v) if v.len() == 2));
    }
}
