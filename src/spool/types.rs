//! The spool's public types: sequence numbers, deliveries and records, options, outcomes, errors.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};

use super::dedup::EventKey;
use super::recovery::{Loss, RecoveryError};
use super::state::{FlushIntent, StateError};

/// A record's position in the spool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Seq(pub u64);

/// One accepted delivery, as the receiver saw it.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub received_at: DateTime<Utc>,
    pub remote_addr: Option<SocketAddr>,
    /// The verified signature's `t`.
    pub signature_timestamp: i64,
    /// The event id's dedup key, when the body has an id.
    pub event_key: Option<EventKey>,
    pub body: Bytes,
}

impl Delivery {
    #[cfg(test)]
    pub fn for_test(body: Bytes) -> Delivery {
        Delivery { received_at: Utc::now(), remote_addr: None, signature_timestamp: 0, event_key: None, body }
    }
}

/// A delivery with its sequence number.
#[derive(Debug, Clone)]
pub struct Record {
    pub seq: Seq,
    pub delivery: Delivery,
}

/// What happened to an appended delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Appended {
    /// Written and fsynced at this sequence number.
    Stored(Seq),
    /// Its event id was accepted before, within the window: nothing written.
    Duplicate,
}

/// Limits and places.
#[derive(Debug, Clone)]
pub struct SpoolOptions {
    pub dir: PathBuf,
    /// Refuse appends once segments on disk would exceed this.
    pub max_bytes: u64,
    /// Roll to a new segment at this size.
    pub segment_bytes: u64,
    /// Refuse appends when the file system has less free space than this.
    pub min_free_bytes: u64,
    /// How long an accepted event id is remembered.
    pub dedup_window: Duration,
}

/// The spool could not take a delivery.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("the spool is closed: the service is shutting down")]
    Closed,
    #[error("the spool holds its limit of {limit} bytes of deliveries not yet written to the store")]
    Full { limit: u64 },
    #[error("the disk holding the spool is nearly full")]
    DiskFull,
    #[error("the spool could not write to disk")]
    Write,
    #[error(transparent)]
    State(#[from] StateError),
    #[error("cannot read spool segment {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
}

/// The spool could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot use the spool directory {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("another oncehub-bridge is using {0}; each instance needs its own --data-dir")]
    Locked(PathBuf),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Recovery(#[from] RecoveryError),
    #[error("there is no spool at {0}: is --data-dir the one `serve` uses?")]
    NoSpool(PathBuf),
}

/// What start-up found in the spool.
#[derive(Debug, Clone)]
pub struct Recovered {
    pub checkpoint: Seq,
    /// The highest sequence number on disk; the reader replays `checkpoint+1 ..= last` first.
    pub last: Seq,
    /// Intents of files that may already be in the store; replay must cut the same files.
    pub intents: Vec<FlushIntent>,
    pub truncated: Option<String>,
    /// Records above the checkpoint that damage took (each range is also logged and counted).
    pub losses: Vec<Loss>,
    pub dedup_keys: usize,
}

/// Counters, for logs and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpoolStats {
    pub records: u64,
    pub fsyncs: u64,
    pub duplicates: u64,
    pub disk_bytes: u64,
    /// Records on disk whose rows are not yet acknowledged as in the store.
    pub backlog: u64,
}
