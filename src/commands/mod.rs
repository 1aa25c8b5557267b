//! One file per CLI command: thin glue over the library's rooms, printing what it did.
//! `serve` itself is `startup`.

pub mod backfill;
pub mod check;
pub mod compact;
pub mod config_check;
pub mod samples;
pub mod send_test;
pub mod spool;
pub mod story;
pub mod subscriptions;

use std::path::Path;

use crate::oncehub::SubscriptionState;
use crate::secret::{WebhookSecret, read_secret_file, secret_file};

/// The secret a command signs deliveries with, so that `serve` on `data_dir` accepts them: the
/// first configured secret, else the managed subscription's (kept by `serve --api-key` or
/// `register`), else the one `serve` generated into the data dir. `None` when there is none.
pub fn signing_secret(configured: Option<&WebhookSecret>, data_dir: &Path) -> anyhow::Result<Option<WebhookSecret>> {
    if let Some(secret) = configured {
        return Ok(Some(secret.clone()));
    }
    if let Some(secret) = SubscriptionState::load(&SubscriptionState::path(data_dir))?.and_then(|s| s.secret()) {
        return Ok(Some(secret));
    }
    Ok(read_secret_file(&secret_file(data_dir))?)
}
