//! What `<data-dir>/backfill.json` keeps between runs: the walk in progress (so `--resume` goes on
//! from its last acknowledged page) and when the last complete run started (`--since last`).

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::BackfillError;
use super::resource::Resource;

/// The saved state.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackfillState {
    /// The run in progress (or interrupted): its range and the last object acknowledged.
    pub current: Option<Cursor>,
    /// When the last complete run started: `--since last` reads from there (minus the overlap).
    pub last_complete_start: Option<DateTime<Utc>>,
}

/// An unfinished walk: which list it is in, after which object, and the counts so far.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cursor {
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
    pub started: DateTime<Utc>,
    /// The list being walked (bookings first, then contacts).
    #[serde(default)]
    pub resource: Resource,
    pub after: Option<String>,
    pub pages: u64,
    /// Bookings read.
    pub rows: u64,
    #[serde(default)]
    pub contacts: u64,
    /// The `last_updated_time` of the last object read: lists go newest first, so the share of
    /// `until - since` behind it is the share of the list done (what the ETA is made of).
    #[serde(default)]
    pub reached: Option<DateTime<Utc>>,
}

impl Cursor {
    /// How much of the current list is done, 0 to 1, by time range.
    pub fn done(&self) -> f64 {
        let Some(reached) = self.reached else { return 0.0 };
        let span = (self.until - self.since).num_seconds().max(1) as f64;
        ((self.until - reached).num_seconds() as f64 / span).clamp(0.0, 1.0)
    }
}

impl Cursor {
    pub fn new(since: DateTime<Utc>, until: DateTime<Utc>) -> Cursor {
        Cursor {
            since,
            until,
            started: Utc::now(),
            resource: Resource::Bookings,
            after: None,
            pages: 0,
            rows: 0,
            contacts: 0,
            reached: None,
        }
    }
}

impl BackfillState {
    pub fn path(data_dir: &Path) -> PathBuf {
        data_dir.join("backfill.json")
    }

    pub(crate) fn load(path: &Path) -> Result<BackfillState, BackfillError> {
        let failed = |source: std::io::Error| BackfillError::State { path: path.to_owned(), source };
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| failed(std::io::Error::other(e))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BackfillState::default()),
            Err(e) => Err(failed(e)),
        }
    }

    pub(crate) fn save(&self, path: &Path) -> Result<(), BackfillError> {
        let bytes = serde_json::to_vec_pretty(self).map_err(std::io::Error::other);
        bytes
            .and_then(|b| crate::fsutil::replace(path, &b, false))
            .map_err(|source| BackfillError::State { path: path.to_owned(), source })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn done_is_the_share_of_the_time_range_behind_the_last_object_read() {
        let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().to_utc();
        let mut c = Cursor::new(at("2026-01-01T00:00:00Z"), at("2026-01-11T00:00:00Z"));
        assert_eq!(c.done(), 0.0);
        c.reached = Some(at("2026-01-08T12:00:00Z"));
        assert!((c.done() - 0.25).abs() < 1e-9, "{}", c.done());
        c.reached = Some(at("2025-01-01T00:00:00Z"));
        assert_eq!(c.done(), 1.0);
    }

    #[test]
    fn a_state_saved_before_contacts_were_walked_still_loads() {
        let dir = tempfile::tempdir().unwrap();
        let path = BackfillState::path(dir.path());
        std::fs::write(
            &path,
            r#"{"current":{"since":"2024-01-01T00:00:00Z","until":"2026-01-01T00:00:00Z","started":"2026-01-01T00:00:00Z","after":"BKNG-9","pages":3,"rows":300},"last_complete_start":null}"#,
        )
        .unwrap();
        let state = BackfillState::load(&path).unwrap();
        let cursor = state.current.clone().unwrap();
        assert_eq!(
            (cursor.resource, cursor.after.as_deref(), cursor.contacts),
            (Resource::Bookings, Some("BKNG-9"), 0)
        );
        state.save(&path).unwrap();
        assert_eq!(BackfillState::load(&path).unwrap(), state);
        std::fs::write(&path, b"{damaged").unwrap();
        assert!(BackfillState::load(&path).unwrap_err().to_string().contains("backfill.json"));
    }
}
