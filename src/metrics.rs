//! Named metric events, exported in Prometheus text format on `GET /metrics`.
//!
//! Every metric the service emits is a function here, so names, labels and units live in one
//! place and label values are bounded (event types outside the documented triggers count as
//! `other`). The recorder is process-global and installed once by [`handle`]; a background
//! thread drains histogram samples every few seconds so memory stays flat without scrapes.
//!
//! Gauges that mirror state (spool bytes and records) are set when `/metrics` is scraped, not on
//! the delivery path.

use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::Duration;

use chrono::{DateTime, Utc};
use metrics::{
    Counter, Histogram, Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram,
};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::event::Trigger;

const RECEIVED: &str = "oncehub_bridge_deliveries_received_total";
const REJECTED: &str = "oncehub_bridge_deliveries_rejected_total";
const DUPLICATES: &str = "oncehub_bridge_duplicates_total";
const ACK_LATENCY: &str = "oncehub_bridge_ack_latency_seconds";
const SPOOL_BYTES: &str = "oncehub_bridge_spool_bytes";
const SPOOL_RECORDS: &str = "oncehub_bridge_spool_records";
const FLUSHES: &str = "oncehub_bridge_flushes_total";
const FILES: &str = "oncehub_bridge_files_written_total";
const BYTES: &str = "oncehub_bridge_bytes_written_total";
const ROWS: &str = "oncehub_bridge_rows_written_total";
const STORE_ERRORS: &str = "oncehub_bridge_store_errors_total";
const STORE_RETRIES: &str = "oncehub_bridge_store_retries_total";
const LAG: &str = "oncehub_bridge_event_to_queryable_seconds";
const ENCODE_ERRORS: &str = "oncehub_bridge_encode_errors_total";
const STAGING_ERRORS: &str = "oncehub_bridge_staging_errors_total";
const RECORDS_LOST: &str = "oncehub_bridge_spool_records_lost_total";
const DEDUP_DAMAGED: &str = "oncehub_bridge_dedup_entries_damaged_total";
const SPOOL_STATE_ERRORS: &str = "oncehub_bridge_spool_state_errors_total";
const DELTA_COMMITS: &str = "oncehub_bridge_delta_commits_total";
const DELTA_FILES: &str = "oncehub_bridge_delta_files_committed_total";
const DELTA_COMMIT_SECONDS: &str = "oncehub_bridge_delta_commit_seconds";
const DELTA_CONFLICTS: &str = "oncehub_bridge_delta_commit_conflicts_total";
const COMPACTED: &str = "oncehub_bridge_partitions_compacted_total";
const COMPACT_FILES_BEFORE: &str = "oncehub_bridge_compaction_files_removed_total";
const COMPACT_FILES_AFTER: &str = "oncehub_bridge_compaction_files_added_total";
const COMPACT_DEDUPED: &str = "oncehub_bridge_compaction_rows_deduplicated_total";
const COMPACT_SECONDS: &str = "oncehub_bridge_compaction_seconds";
const VACUUMED: &str = "oncehub_bridge_vacuum_files_deleted_total";
const BACKFILL_PAGES: &str = "oncehub_bridge_backfill_pages_total";
const BACKFILL_ROWS: &str = "oncehub_bridge_backfill_deliveries_total";
const CURRENT_REBUILDS: &str = "oncehub_bridge_bookings_current_rebuilds_total";

/// Ack latency: from the request's arrival to its 2xx (one fsync, usually).
const ACK_BUCKETS: &[f64] = &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];
/// Lag: from `received_at` to the row being readable: its file committed (Delta) or in the store.
/// A Delta commit: one log entry PUT plus the kernel's work around it.
const COMMIT_BUCKETS: &[f64] = &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
const LAG_BUCKETS: &[f64] = &[0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0];
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// The exporter handle: renders the text format. Installs the recorder on first use.
pub(crate) fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Full(ACK_LATENCY.into()), ACK_BUCKETS)
            .and_then(|b| b.set_buckets_for_metric(Matcher::Full(LAG.into()), LAG_BUCKETS))
            .and_then(|b| b.set_buckets_for_metric(Matcher::Full(DELTA_COMMIT_SECONDS.into()), COMMIT_BUCKETS))
            .expect("bucket lists are non-empty constants");
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("a metrics recorder was already installed; /metrics will be empty");
        }
        describe();
        let upkeep = handle.clone();
        let spawned = std::thread::Builder::new().name("metrics-upkeep".into()).spawn(move || {
            loop {
                std::thread::sleep(UPKEEP_EVERY);
                upkeep.run_upkeep();
            }
        });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot start the metrics upkeep thread; histograms drain on scrape only");
        }
        handle
    })
}

fn describe() {
    describe_counter!(RECEIVED, "Signed deliveries kept in the spool (2xx), by event type.");
    describe_counter!(REJECTED, "Deliveries answered non-2xx, by reason.");
    describe_counter!(DUPLICATES, "Deliveries of an event id already accepted (2xx, not written again).");
    describe_histogram!(ACK_LATENCY, Unit::Seconds, "From a delivery's arrival to its answer, for 2xx answers.");
    describe_gauge!(SPOOL_BYTES, Unit::Bytes, "Bytes of spool segments on disk.");
    describe_gauge!(SPOOL_RECORDS, "Deliveries in the spool whose rows are not yet in the store.");
    describe_counter!(FLUSHES, "Parquet files cut, by table and reason (rows, bytes, age, shutdown, replay).");
    describe_counter!(FILES, "Parquet files in the store, by table.");
    describe_counter!(BYTES, Unit::Bytes, "Parquet bytes written to the store, by table.");
    describe_counter!(ROWS, "Rows written to the store, by table.");
    describe_counter!(
        STORE_ERRORS,
        "Failed store writes, by operation and kind (transient: retried with backoff; permanent: access denied, no such bucket, and the like)."
    );
    describe_counter!(STORE_RETRIES, "Store writes retried after a failure.");
    describe_histogram!(
        LAG,
        Unit::Seconds,
        "From received_at to the row being readable (its file committed; in the store for --table-format parquet), per row."
    );
    describe_counter!(ENCODE_ERRORS, "Events whose row did not fit their table, kept in dead_letter as encode_error.");
    describe_counter!(
        STAGING_ERRORS,
        "Parquet files that could not be staged on disk and were built in memory instead."
    );
    describe_counter!(
        RECORDS_LOST,
        "Acknowledged spool records found damaged or missing at start-up (their sequence numbers are logged)."
    );
    describe_counter!(
        DEDUP_DAMAGED,
        "Damaged dedup index entries skipped at start-up: redeliveries of those ids are stored again."
    );
    describe_counter!(
        SPOOL_STATE_ERRORS,
        "Failed writes of the spool checkpoint or a flush intent (retried; disk full, usually)."
    );
    describe_counter!(DELTA_COMMITS, "Delta commits that added files, by table.");
    describe_counter!(DELTA_FILES, "Files added to Delta tables by commits, by table.");
    describe_histogram!(DELTA_COMMIT_SECONDS, Unit::Seconds, "Time to commit one Delta log entry, by table.");
    describe_counter!(
        DELTA_CONFLICTS,
        "Delta log versions another writer took first (the commit is retried), by table."
    );
    describe_counter!(COMPACTED, "Partitions compacted, by table.");
    describe_counter!(COMPACT_FILES_BEFORE, "Files replaced by compaction, by table.");
    describe_counter!(COMPACT_FILES_AFTER, "Files written by compaction, by table.");
    describe_counter!(
        COMPACT_DEDUPED,
        "Rows compaction dropped as later copies of an event id (a retry another replica stored), by table."
    );
    describe_histogram!(COMPACT_SECONDS, Unit::Seconds, "Time to compact one partition, by table.");
    describe_counter!(VACUUMED, "Unreferenced files vacuum deleted, by table.");
    describe_counter!(BACKFILL_PAGES, "API list pages a backfill read, by list (bookings, contacts).");
    describe_counter!(BACKFILL_ROWS, "Backfilled deliveries, by result (accepted: new; duplicate: already kept).");
    describe_counter!(CURRENT_REBUILDS, "bookings_current rebuilds, by outcome (updated, unchanged, lost).");
}

/// A partition of `table` was compacted from `before` files into `after`.
pub(crate) fn compacted(table: &'static str, before: usize, after: usize, dropped: u64, took: Duration) {
    counter!(COMPACTED, "table" => table).increment(1);
    counter!(COMPACT_FILES_BEFORE, "table" => table).increment(before as u64);
    counter!(COMPACT_FILES_AFTER, "table" => table).increment(after as u64);
    counter!(COMPACT_DEDUPED, "table" => table).increment(dropped);
    histogram!(COMPACT_SECONDS, "table" => table).record(took.as_secs_f64());
}

/// Vacuum deleted `files` files of `table`.
pub(crate) fn vacuumed(table: &'static str, files: usize) {
    counter!(VACUUMED, "table" => table).increment(files as u64);
}

/// A backfill read a page of `list` and delivered its rows.
pub(crate) fn backfill_page(list: &'static str, accepted: u64, duplicates: u64) {
    counter!(BACKFILL_PAGES, "list" => list).increment(1);
    counter!(BACKFILL_ROWS, "result" => "accepted").increment(accepted);
    counter!(BACKFILL_ROWS, "result" => "duplicate").increment(duplicates);
}

/// A `bookings_current` rebuild ended with `outcome`.
pub(crate) fn current_rebuilt(outcome: &'static str) {
    counter!(CURRENT_REBUILDS, "outcome" => outcome).increment(1);
}

/// A Delta commit added `files` files to `table`.
pub(crate) fn delta_commit(table: &'static str, files: usize, took: Duration) {
    counter!(DELTA_COMMITS, "table" => table).increment(1);
    counter!(DELTA_FILES, "table" => table).increment(files as u64);
    histogram!(DELTA_COMMIT_SECONDS, "table" => table).record(took.as_secs_f64());
}

/// A Delta commit found its log version taken.
pub(crate) fn delta_conflict(table: &'static str) {
    counter!(DELTA_CONFLICTS, "table" => table).increment(1);
}

/// An event's row did not fit its table and went to dead_letter.
pub(crate) fn encode_error() {
    counter!(ENCODE_ERRORS).increment(1);
}

/// A Parquet file could not be staged on disk: it carries on in memory.
pub(crate) fn staging_error() {
    counter!(STAGING_ERRORS).increment(1);
}

/// Start-up found acknowledged spool records damaged or missing.
pub(crate) fn records_lost(n: u64) {
    counter!(RECORDS_LOST).increment(n);
}

/// Start-up skipped damaged dedup index entries.
pub(crate) fn dedup_damaged(n: u64) {
    counter!(DEDUP_DAMAGED).increment(n);
}

/// Writing the spool's state file failed (it is retried).
pub(crate) fn spool_state_error() {
    counter!(SPOOL_STATE_ERRORS).increment(1);
}

/// Handles of the per-delivery metrics, registered once: `counter!` with labels builds and
/// hashes its key on every call, which the delivery path should not pay.
struct Hot {
    /// Indexed by [`Trigger::index`].
    received: Vec<Counter>,
    received_other: Counter,
    duplicates: Counter,
    ack_latency: Histogram,
}

fn hot() -> &'static Hot {
    static HOT: OnceLock<Hot> = OnceLock::new();
    HOT.get_or_init(|| {
        handle();
        Hot {
            received: Trigger::names().map(|t| counter!(RECEIVED, "event_type" => t)).collect(),
            received_other: counter!(RECEIVED, "event_type" => "other"),
            duplicates: counter!(DUPLICATES),
            ack_latency: histogram!(ACK_LATENCY),
        }
    })
}

/// A signed delivery was kept; `trigger` is the envelope's `type` when it is a documented one.
pub(crate) fn delivery_received(trigger: Option<Trigger>, latency: Duration) {
    let hot = hot();
    let counter = trigger.and_then(|t| hot.received.get(t.index())).unwrap_or(&hot.received_other);
    counter.increment(1);
    hot.ack_latency.record(latency.as_secs_f64());
}

/// A delivery of an already accepted event id.
pub(crate) fn duplicate(latency: Duration) {
    let hot = hot();
    hot.duplicates.increment(1);
    hot.ack_latency.record(latency.as_secs_f64());
}

/// A delivery answered non-2xx; `reason` is the error code of the response body.
pub(crate) fn delivery_rejected(reason: &'static str) {
    counter!(REJECTED, "reason" => reason).increment(1);
}

/// The spool's state, set on scrape.
pub(crate) fn spool_state(bytes: u64, records: u64) {
    gauge!(SPOOL_BYTES).set(bytes as f64);
    gauge!(SPOOL_RECORDS).set(records as f64);
}

/// A file of `rows` rows was cut and is in the store.
pub(crate) fn file_written(table: &'static str, reason: &'static str, bytes: usize, rows: usize) {
    counter!(FLUSHES, "table" => table, "reason" => reason).increment(1);
    counter!(FILES, "table" => table).increment(1);
    counter!(BYTES, "table" => table).increment(bytes as u64);
    counter!(ROWS, "table" => table).increment(rows as u64);
}

/// Rows became readable (their file committed, or uploaded for the plain layout); `received_at`
/// holds every row's arrival time.
pub(crate) fn rows_readable(received_at: &[DateTime<Utc>]) {
    // Rows arrive together: count them per 100 ms of lag, one histogram call per step.
    let now = Utc::now();
    let mut steps: BTreeMap<i64, u64> = BTreeMap::new();
    for t in received_at {
        *steps.entry((now - *t).num_milliseconds().max(0) / 100).or_default() += 1;
    }
    let lag = histogram!(LAG);
    for (step, rows) in steps {
        lag.record_many(step as f64 / 10.0, rows as usize);
    }
}

/// A store write failed and will be retried; `kind` is `transient` or `permanent`.
pub(crate) fn store_error(operation: &'static str, kind: &'static str) {
    counter!(STORE_ERRORS, "operation" => operation, "kind" => kind).increment(1);
    counter!(STORE_RETRIES).increment(1);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_names_units_and_bounded_labels() {
        let h = handle();
        delivery_received(Trigger::parse("booking.scheduled"), Duration::from_millis(3));
        delivery_received(Trigger::parse("made.up.type"), Duration::from_millis(3));
        delivery_rejected("invalid_signature");
        let now = Utc::now();
        file_written("bookings", "age", 1234, 2);
        rows_readable(&[now - chrono::Duration::seconds(7), now - chrono::Duration::seconds(7)]);
        h.run_upkeep();
        let text = h.render();
        assert!(
            text.contains(r#"oncehub_bridge_deliveries_received_total{event_type="booking.scheduled"} 1"#),
            "{text}"
        );
        assert!(text.contains(r#"oncehub_bridge_deliveries_received_total{event_type="other"} 1"#), "{text}");
        assert!(!text.contains("made.up.type"), "{text}");
        assert!(text.contains(r#"oncehub_bridge_deliveries_rejected_total{reason="invalid_signature"} 1"#), "{text}");
        assert!(text.contains(r#"oncehub_bridge_event_to_queryable_seconds_bucket{le="5"} 0"#), "{text}");
        assert!(text.contains(r#"oncehub_bridge_event_to_queryable_seconds_bucket{le="10"} 2"#), "{text}");
        assert!(text.contains(r#"oncehub_bridge_ack_latency_seconds_bucket{le="0.005"} 2"#), "{text}");
        assert!(text.contains("# HELP oncehub_bridge_bytes_written_total"), "{text}");
    }
}
