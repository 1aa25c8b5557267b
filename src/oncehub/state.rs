//! `<data-dir>/subscription.json`: the subscription this instance manages, its signing secret and
//! the secrets it replaced (each valid until the end of its grace period).
//!
//! Written atomically (temporary file, fsync, rename, fsync of the directory) with mode 0600, right
//! after a subscription is created, so a secret OnceHub signs with is never only in memory.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::secret::WebhookSecret;

/// The state file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StateFileError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path} is damaged ({message}); delete it and the subscription is created again")]
    Parse { path: PathBuf, message: String },
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
}

/// A replaced secret, still accepted until `valid_until`.
#[derive(Clone, Serialize, Deserialize)]
pub struct PreviousSecret {
    secret: String,
    pub valid_until: DateTime<Utc>,
}

/// The managed subscription.
#[derive(Clone, Serialize, Deserialize)]
pub struct SubscriptionState {
    pub id: String,
    pub name: String,
    pub url: String,
    pub events: Vec<String>,
    secret: String,
    pub created_at: DateTime<Utc>,
    #[serde(default)]
    previous: Vec<PreviousSecret>,
}

impl std::fmt::Debug for SubscriptionState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SubscriptionState").field("id", &self.id).field("url", &self.url).finish_non_exhaustive()
    }
}

impl SubscriptionState {
    pub fn path(data_dir: &Path) -> PathBuf {
        data_dir.join("subscription.json")
    }

    /// A new state for a just-created subscription; `replaced`'s secrets stay valid until `grace_until`.
    pub fn created(
        id: String,
        name: String,
        url: String,
        events: Vec<String>,
        secret: &WebhookSecret,
        replaced: Option<&SubscriptionState>,
        grace_until: DateTime<Utc>,
    ) -> SubscriptionState {
        let now = Utc::now();
        let mut previous: Vec<PreviousSecret> = replaced
            .map(|old| old.previous.iter().filter(|p| p.valid_until > now).cloned().collect())
            .unwrap_or_default();
        if let Some(old) = replaced {
            previous.push(PreviousSecret { secret: old.secret.clone(), valid_until: grace_until });
        }
        SubscriptionState { id, name, url, events, secret: secret.expose().to_owned(), created_at: now, previous }
    }

    pub fn secret(&self) -> Option<WebhookSecret> {
        WebhookSecret::parse(&self.secret)
    }

    /// Replaced secrets still inside their grace period at `now`, with their end.
    pub fn previous_secrets(&self, now: DateTime<Utc>) -> Vec<(WebhookSecret, DateTime<Utc>)> {
        self.previous
            .iter()
            .filter(|p| p.valid_until > now)
            .filter_map(|p| WebhookSecret::parse(&p.secret).map(|s| (s, p.valid_until)))
            .collect()
    }

    pub fn load(path: &Path) -> Result<Option<SubscriptionState>, StateFileError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(StateFileError::Read { path: path.into(), source }),
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| StateFileError::Parse { path: path.into(), message: e.to_string() })
    }

    pub fn save(&self, path: &Path) -> Result<(), StateFileError> {
        let write = || -> std::io::Result<()> {
            let bytes = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
            crate::fsutil::replace(path, &bytes, true)
        };
        write().map_err(|source| StateFileError::Write { path: path.into(), source })
    }

    /// Removes the file (after the subscription was deleted).
    pub fn remove(path: &Path) -> Result<(), StateFileError> {
        match std::fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(StateFileError::Write { path: path.into(), source: e })
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaced_secrets_stay_valid_for_the_grace_period_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = SubscriptionState::path(dir.path());
        let one = WebhookSecret::parse("one").unwrap();
        let two = WebhookSecret::parse("two").unwrap();
        let first =
            SubscriptionState::created("WHK-1".into(), "n".into(), "https://x".into(), vec![], &one, None, Utc::now());
        let later = Utc::now() + chrono::Duration::hours(1);
        let second = SubscriptionState::created(
            "WHK-2".into(),
            "n".into(),
            "https://x".into(),
            vec![],
            &two,
            Some(&first),
            later,
        );
        second.save(&path).unwrap();
        let back = SubscriptionState::load(&path).unwrap().unwrap();
        assert_eq!(back.secret(), Some(two));
        assert_eq!(back.previous_secrets(Utc::now()).len(), 1);
        assert!(back.previous_secrets(later + chrono::Duration::seconds(1)).is_empty());
        assert!(!format!("{back:?}").contains("two"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
    }
}
