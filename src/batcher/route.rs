//! Where each row goes: its event's table when it fits, else `dead_letter` (the delivery's own
//! reason, or `encode_error`); and into which pending file, cut again the same way on replay.

use bytes::Bytes;
use chrono::{DateTime, NaiveDate, Utc};
use serde_json::Value;
use tokio::time::Instant;

use std::sync::Arc;

use super::buffer::{Rebuild, Rejected, TableBuffer};
use super::{Batcher, BatcherError, FlushReason, should_flush};
use crate::event::{DeadReason, Event, Parsed, RowInput, build_row, fit};
use crate::metrics;
use crate::schema::{Catalog, Table};
use crate::sink::ObjectKey;
use crate::spool::Seq;

/// The row a delivery becomes and where it goes: its event's table when the row fits it, else
/// `dead_letter` (the delivery's own reason, or `encode_error` for a row that does not fit).
pub(super) fn route(catalog: &Catalog, seq: Seq, body: &[u8], received_at: DateTime<Utc>) -> (Table, NaiveDate, Value) {
    let parsed = Event::parse(body);
    let table = parsed.table();
    let dt = parsed.partition_date(received_at);
    let (json, dead) = match &parsed {
        Parsed::Event(e) => (Some(&e.json), None),
        Parsed::Dead(d) => {
            tracing::warn!(seq = seq.0, reason = d.reason.code(), error = %d.error, "signed delivery is not an event; kept in dead_letter");
            (d.json.as_ref(), Some((d.reason.code(), d.error.as_str())))
        }
    };
    let input = RowInput { json, body, received_at, dead };
    let schema = catalog.table(table);
    let row = build_row(schema, &input);
    match fit::check(&schema.arrow, &row) {
        Ok(()) => (table, dt, row),
        Err(misfit) => encode_error(catalog, seq, json, body, received_at, &misfit.to_string()),
    }
}

/// A dead-letter row for a delivery whose row could not be encoded.
fn encode_error(
    catalog: &Catalog,
    seq: Seq,
    json: Option<&Value>,
    body: &[u8],
    received_at: DateTime<Utc>,
    error: &str,
) -> (Table, NaiveDate, Value) {
    tracing::warn!(
        seq = seq.0,
        reason = DeadReason::EncodeError.code(),
        error,
        "a delivery's row does not fit its table; kept in dead_letter"
    );
    metrics::encode_error();
    let input = RowInput { json, body, received_at, dead: Some((DeadReason::EncodeError.code(), error)) };
    (Table::DeadLetter, received_at.date_naive(), build_row(catalog.table(Table::DeadLetter), &input))
}

/// How a pending file of `table` builds a row again from its delivery: as `route` did, or, for a
/// row `route` sent elsewhere (a `dead_letter` file holding a row the decoder refused), as that
/// dead letter.
fn rebuild(catalog: Arc<Catalog>, table: Table) -> Rebuild {
    Arc::new(move |body: &Bytes, received_at| {
        let (routed, _, row) = route(&catalog, Seq(0), body, received_at);
        if routed == table {
            return row;
        }
        let json: Option<Value> = serde_json::from_slice(body).ok();
        encode_error(&catalog, Seq(0), json.as_ref(), body, received_at, "the decoder refused this row").2
    })
}

impl Batcher {
    /// Adds a row to the pending file of its (table, dt); returns why that file is due, if it is.
    pub(super) fn place(
        &mut self,
        table: Table,
        dt: NaiveDate,
        seq: Seq,
        row: Value,
        body: &Bytes,
        received_at: DateTime<Utc>,
    ) -> Result<Option<FlushReason>, BatcherError> {
        let partition = ObjectKey::partition(table, dt);
        if self.written.iter().any(|i| i.covers(&partition, seq)) {
            return Ok(None); // replayed, but its file is in the store already
        }
        let buffer = match self.buffers.entry((table, dt)) {
            std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::btree_map::Entry::Vacant(e) => {
                let rebuild = rebuild(self.catalog.clone(), table);
                let stats = self.stats.get(&table).map(Arc::as_ref);
                let schema = self.catalog.table(table).arrow.clone();
                let fresh = TableBuffer::new(schema, stats, seq, Instant::now(), rebuild)?;
                let intent = self.intents.iter().position(|i| i.covers(&partition, seq));
                let fresh = match intent.map(|i| self.intents.swap_remove(i)) {
                    Some(intent) if intent.first == seq.0 => fresh.cut_at(Seq(intent.last)),
                    Some(intent) => {
                        tracing::warn!(
                            partition,
                            first = intent.first,
                            seq = seq.0,
                            "replay does not start where the recorded file did; writing a new file"
                        );
                        fresh
                    }
                    None => fresh,
                };
                e.insert(fresh)
            }
        };
        let rejected = buffer.push(seq, &row, body, received_at)?;
        let reason = match buffer.replay_end() {
            Some(end) => (seq >= end).then_some(FlushReason::Replay),
            None => should_flush(buffer.rows(), buffer.bytes(), std::time::Duration::ZERO, &self.limits),
        };
        self.divert(rejected)?;
        Ok(reason)
    }

    /// Keeps rows Arrow refused as `encode_error` dead letters (their files are due by age or size).
    pub(super) fn divert(&mut self, rejected: Vec<Rejected>) -> Result<(), BatcherError> {
        for r in rejected {
            let json: Option<Value> = serde_json::from_slice(&r.body).ok();
            let (table, dt, row) = encode_error(&self.catalog, r.seq, json.as_ref(), &r.body, r.received_at, &r.error);
            self.place(table, dt, r.seq, row, &r.body, r.received_at)?;
        }
        Ok(())
    }
}
