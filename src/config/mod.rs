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

use crate::batcher::FlushLimits;
use crate::cli::ServeArgs;
use crate::secret::WebhookSecret;
use crate::sink::{StorageUrl, StoreError};
use crate::spool::SpoolOptions;

/// A setting that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("--storage-url / ONCEHUB_BRIDGE_STORAGE_URL: {0}")]
    StorageUrl(#[from] StoreError),
    #[error("--webhook-secret / ONCEHUB_WEBHOOK_SECRET: entry {0} of the comma-separated list is empty")]
    EmptySecret(usize),
    #[error("--flush-interval / ONCEHUB_BRIDGE_FLUSH_INTERVAL: must be greater than zero")]
    ZeroFlushInterval,
    #[error("cannot determine the current directory: {0}")]
    Cwd(std::io::Error),
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
    pub secrets: SecretSource,
    pub flush: FlushLimits,
    /// 0 disables the timestamp check.
    pub signature_tolerance: Duration,
    pub max_body_bytes: NonZeroUsize,
    pub shutdown_timeout: Duration,
    pub workers: Option<NonZeroUsize>,
    pub spool: SpoolOptions,
}

impl ServeSettings {
    pub fn from_args(args: ServeArgs) -> Result<ServeSettings, ConfigError> {
        let cwd = std::env::current_dir().map_err(ConfigError::Cwd)?;
        Self::from_args_in(args, &cwd)
    }

    /// As [`Self::from_args`], resolving relative paths against `cwd`.
    pub fn from_args_in(args: ServeArgs, cwd: &Path) -> Result<ServeSettings, ConfigError> {
        let data_dir = cwd.join(&args.data_dir);
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
        if args.flush_interval.is_zero() {
            return Err(ConfigError::ZeroFlushInterval);
        }
        Ok(ServeSettings {
            listen: args.listen,
            admin_listen: args.admin_listen,
            data_dir: data_dir.clone(),
            storage,
            secrets,
            flush: FlushLimits {
                max_rows: args.flush_max_rows,
                max_bytes: args.flush_max_bytes,
                max_age: args.flush_interval,
            },
            signature_tolerance: args.signature_tolerance,
            max_body_bytes: args.max_body_bytes,
            shutdown_timeout: args.shutdown_timeout,
            workers: args.workers,
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
    fn several_secrets_for_rotation() {
        let s = settings(&["--webhook-secret", "a,b"]).unwrap();
        assert!(matches!(s.secrets, SecretSource::Configured(v) if v.len() == 2));
    }
}
