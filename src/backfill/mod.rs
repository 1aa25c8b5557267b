//! Backfill: the history from before the bridge was installed, from OnceHub's REST API
//! (shared/oncehub-api.md §11), through the same durable path as webhooks.
//!
//! [`Backfill::run`] walks `GET /v2/bookings` (expanded: the conversation a booking embeds
//! becomes a `conversations` row, since the API has no list of conversations), then
//! `GET /v2/contacts` (the `contacts` table), `limit=100`, newest first with `after`, within
//! `last_updated_time.gt/.lt`. The client paces 5 requests/s and a sliding window of 200 per 5
//! minutes, and backs off on 429. Each object becomes an envelope (see `envelope`) handed to
//! [`Deliver`]: the running receiver over HTTP, or the spool of the `serve` it runs in, so it is
//! fsynced, de-duplicated, batched and committed exactly like a webhook. After every page the
//! cursor is saved in `<data-dir>/backfill.json` (see `state`).

mod deliver;
mod envelope;
mod resource;
mod state;

pub use deliver::{Deliver, Posted};
pub use resource::Resource;
pub use state::{BackfillState, Cursor};

use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::StreamExt;

use crate::oncehub::{ApiError, OnceHubClient};

/// Deliveries of one page in flight at once.
const IN_FLIGHT: usize = 16;

/// A backfill that stopped.
#[derive(Debug, thiserror::Error)]
pub enum BackfillError {
    #[error("cannot list {resource}: {source}")]
    Api { resource: &'static str, source: ApiError },
    #[error("{0}")]
    Receiver(String),
    #[error("cannot keep the backfill state in {path}: {source}")]
    State { path: PathBuf, source: std::io::Error },
    #[error("the service is stopping; the backfill goes on from its last page next time")]
    Stopped,
    #[error("another backfill is running on {0} (a `backfill` command, or `serve --backfill-since`); one at a time")]
    Busy(PathBuf),
    #[error("--resume: no interrupted backfill in {0}")]
    NothingToResume(PathBuf),
    #[error("--since last: no complete backfill yet; give a date (--since 2024-01-01)")]
    NoLastRun,
    #[error("--since {since} is not before --until {until}")]
    EmptyRange { since: DateTime<Utc>, until: DateTime<Utc> },
}

/// Where a run starts.
#[derive(Debug, Clone, Copy)]
pub enum Start {
    /// Objects last updated after this instant.
    Since(DateTime<Utc>),
    /// From the start of the last complete run, minus this overlap (the filters are strict and
    /// may be day-resolution; objects read again add no row).
    Last { overlap: Duration },
    /// The interrupted run, from its last acknowledged page.
    Resume,
    /// `serve --backfill-since`: the interrupted run if there is one, else since the last complete
    /// run (minus `overlap`), else since `first`.
    Continue { first: DateTime<Utc>, overlap: Duration },
}

/// A finished run.
#[derive(Debug, Clone)]
pub struct Summary {
    pub cursor: Cursor,
    /// Deliveries the spool took as new, and those it already had.
    pub accepted: u64,
    pub duplicates: u64,
    /// Objects the receiver refused as larger than its --max-body-bytes (logged, not retried).
    pub skipped: u64,
    pub requests: u64,
    pub elapsed: Duration,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let c = &self.cursor;
        let secs = self.elapsed.as_secs_f64().max(0.001);
        write!(
            f,
            "backfill done: {} bookings and {} contacts in {} pages ({} new rows, {} already in the lake, embedded conversations included{}), last_updated_time {} to {}; {:.0} rows/s, {:.2} requests/s",
            c.rows,
            c.contacts,
            c.pages,
            self.accepted,
            self.duplicates,
            if self.skipped > 0 {
                format!("; {} larger than the receiver's --max-body-bytes, skipped", self.skipped)
            } else {
                String::new()
            },
            c.since.to_rfc3339(),
            c.until.to_rfc3339(),
            (self.accepted + self.duplicates) as f64 / secs,
            self.requests as f64 / secs,
        )
    }
}

/// One walk over the lists, delivering as it goes.
pub struct Backfill {
    client: OnceHubClient,
    deliver: Deliver,
    state_path: PathBuf,
}

impl Backfill {
    pub fn new(client: OnceHubClient, deliver: Deliver, data_dir: &std::path::Path) -> Backfill {
        Backfill { client, deliver, state_path: BackfillState::path(data_dir) }
    }

    /// Walks every list from `start` up to `until` (default: now); `on_page` sees the cursor
    /// after each acknowledged page. Dropping the future is safe: a page counts once every
    /// delivery of it is acknowledged, and one read again adds no row.
    pub async fn run(
        &self,
        start: Start,
        until: Option<DateTime<Utc>>,
        on_page: &(dyn Fn(&Cursor) + Sync),
    ) -> Result<Summary, BackfillError> {
        let started = std::time::Instant::now();
        // One walk per data dir at a time: two would overwrite each other's cursor.
        let lock_path = self.state_path.with_extension("lock");
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|source| BackfillError::State { path: lock_path.clone(), source })?;
        if lock.try_lock().is_err() {
            return Err(BackfillError::Busy(lock_path));
        }
        let mut state = BackfillState::load(&self.state_path)?;
        let mut cursor = self.cursor(&state, start, until)?;
        let (mut accepted, mut duplicates, mut requests, mut skipped) = (0u64, 0u64, 0u64, 0u64);
        loop {
            let resource = cursor.resource;
            let query = resource.query(cursor.since, cursor.until);
            let page = self
                .client
                .list_page(resource.path(), &query, cursor.after.as_deref())
                .await
                .map_err(|source| BackfillError::Api { resource: resource.name(), source })?;
            requests += 1;
            let mut events = Vec::with_capacity(page.data.len() * 2);
            for object in &page.data {
                let of_object = resource.envelopes(object);
                if of_object.is_empty() {
                    tracing::warn!(resource = resource.name(), "skipping a listed object without an id or times");
                }
                events.extend(of_object);
                match resource {
                    Resource::Bookings => cursor.rows += 1,
                    Resource::Contacts => cursor.contacts += 1,
                }
            }
            // A page's deliveries in flight together: they share the spool's fsyncs.
            let sends: Vec<_> = events.iter().map(|e| self.deliver.send(e)).collect();
            let mut sent = futures_util::stream::iter(sends).buffer_unordered(IN_FLIGHT);
            let (mut new, mut again) = (0, 0);
            while let Some(posted) = sent.next().await {
                match posted? {
                    Posted::Accepted => new += 1,
                    Posted::Duplicate => again += 1,
                    Posted::TooLarge => skipped += 1,
                }
            }
            crate::metrics::backfill_page(resource.name(), new, again);
            (accepted, duplicates) = (accepted + new, duplicates + again);
            cursor.pages += 1;
            // The last object with an id: one without would otherwise end the list early.
            let last = page.data.iter().rev().find(|b| b["id"].as_str().is_some_and(|id| !id.is_empty()));
            cursor.after = last.and_then(|b| b["id"].as_str()).map(str::to_owned);
            cursor.reached = last
                .and_then(|b| b["last_updated_time"].as_str())
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.to_utc());
            on_page(&cursor);
            if !page.has_more || cursor.after.is_none() {
                match resource.next() {
                    Some(next) => {
                        cursor.resource = next;
                        cursor.after = None;
                        cursor.reached = None;
                    }
                    None => break,
                }
            }
            state.current = Some(cursor.clone());
            state.save(&self.state_path)?;
        }
        state.current = None;
        // A run up to an earlier --until covered only that far: the next `--since last` must
        // start there, not at this run's start.
        state.last_complete_start = Some(cursor.started.min(cursor.until));
        state.save(&self.state_path)?;
        Ok(Summary { cursor, accepted, duplicates, skipped, requests, elapsed: started.elapsed() })
    }

    fn cursor(
        &self,
        state: &BackfillState,
        start: Start,
        until: Option<DateTime<Utc>>,
    ) -> Result<Cursor, BackfillError> {
        let last = |overlap: Duration| {
            state.last_complete_start.map(|s| s - chrono::Duration::from_std(overlap).unwrap_or(chrono::Duration::MAX))
        };
        let since = match (start, &state.current) {
            (Start::Resume | Start::Continue { .. }, Some(current)) => return Ok(current.clone()),
            (Start::Resume, None) => return Err(BackfillError::NothingToResume(self.state_path.clone())),
            (Start::Since(since), _) => since,
            (Start::Last { overlap }, _) => last(overlap).ok_or(BackfillError::NoLastRun)?,
            (Start::Continue { first, overlap }, None) => last(overlap).unwrap_or(first),
        };
        let until = until.unwrap_or_else(Utc::now);
        if since >= until {
            return Err(BackfillError::EmptyRange { since, until });
        }
        Ok(Cursor::new(since, until))
    }
}
