//! The spool's small durable state, `<spool>/checkpoint.json`: the acknowledged checkpoint and
//! the flush intents not yet behind it.
//!
//! A flush intent is written (and fsynced) before a Parquet file is uploaded. It names the
//! partition (`<table>/dt=<day>`) and the sequence range `[first, last]`; the file holds exactly
//! the records of that partition in that range. After a crash, replay cuts the same files at the
//! same boundaries, so they get the same object names and the create-only PUT finds them there.
//!
//! The file is replaced atomically (see `fsutil::replace`).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::Seq;
use crate::fsutil;

/// A Parquet file about to be uploaded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlushIntent {
    /// The object key's directory, e.g. `bookings/dt=2026-11-22`.
    pub partition: String,
    pub first: u64,
    pub last: u64,
}

impl FlushIntent {
    pub fn covers(&self, partition: &str, seq: Seq) -> bool {
        self.partition == partition && (self.first..=self.last).contains(&seq.0)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct SpoolState {
    /// Every record at or below this is in the store.
    pub checkpoint: u64,
    pub intents: Vec<FlushIntent>,
    /// Sequence ranges `[first, last]` above the checkpoint that recovery found lost and
    /// reported: the gaps are known, so later starts neither report nor count them again.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lost: Vec<(u64, u64)>,
}

/// The state file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot read or write {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path} is not a valid spool state file: {source}")]
    Invalid { path: PathBuf, source: serde_json::Error },
}

#[derive(Debug)]
pub(super) struct StateFile {
    path: PathBuf,
    pub state: SpoolState,
}

impl StateFile {
    /// Reads the state, or starts empty when there is none.
    pub(super) fn open(dir: &Path) -> Result<StateFile, StateError> {
        let path = dir.join("checkpoint.json");
        let state = match fs::read(&path) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes).map_err(|source| StateError::Invalid { path: path.clone(), source })?
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => SpoolState::default(),
            Err(source) => return Err(StateError::Io { path, source }),
        };
        Ok(StateFile { path, state })
    }

    /// Moves a damaged state file into `<spool>/quarantine/` and writes a fresh one holding only
    /// `checkpoint`; returns where the old file went.
    pub(super) fn reset(dir: &Path, checkpoint: u64) -> Result<PathBuf, StateError> {
        let path = dir.join("checkpoint.json");
        let io_err = |source| StateError::Io { path: path.clone(), source };
        let target = super::salvage::quarantine_path(dir, "checkpoint.json").map_err(io_err)?;
        fs::rename(&path, &target).map_err(io_err)?;
        let state = SpoolState { checkpoint, ..SpoolState::default() };
        let fresh = StateFile { path: path.clone(), state };
        fresh.save()?;
        Ok(target)
    }

    /// Writes the current state durably.
    pub(super) fn save(&self) -> Result<(), StateError> {
        let io_err = |source| StateError::Io { path: self.path.clone(), source };
        let bytes = serde_json::to_vec_pretty(&self.state).map_err(|e| io_err(io::Error::other(e)))?;
        fsutil::replace(&self.path, &bytes, false).map_err(io_err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_survives_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut file = StateFile::open(dir.path()).unwrap();
        assert_eq!(file.state, SpoolState::default());
        file.state.checkpoint = 9;
        file.state.intents.push(FlushIntent { partition: "bookings/dt=2026-11-22".into(), first: 10, last: 20 });
        file.save().unwrap();
        let again = StateFile::open(dir.path()).unwrap();
        assert_eq!(again.state, file.state);
        assert!(again.state.intents[0].covers("bookings/dt=2026-11-22", Seq(20)));
        assert!(!again.state.intents[0].covers("bookings/dt=2026-11-21", Seq(15)));
    }

    #[test]
    fn a_damaged_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("checkpoint.json"), "{not json").unwrap();
        let e = StateFile::open(dir.path()).unwrap_err().to_string();
        assert!(e.contains("checkpoint.json"), "{e}");
    }
}
