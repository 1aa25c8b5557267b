//! Where each row goes: its event's table when it fits, else `dead_letter` (the delivery's own
//! reason, or `encode_error`); and into which pending file, cut again the same way on replay.

use bytes::Bytes;
use chrono::{DateTime, NaiveDate, Utc};
use tokio::time::Instant;

use super::buffer::TableBuffer;
use super::{Batcher, BatcherError, FlushReason, should_flush};
use crate::event::{DeadReason, Event, Parsed, RowInput};
use crate::metrics;
use crate::schema::Table;
use crate::sink::{ObjectKey, StagingSink};
use crate::spool::Seq;

/// A pending file's key.
pub(super) type FileKey = (Table, NaiveDate);

impl Batcher {
    /// Parses a delivery and adds its row to the pending file of its (table, dt): its event's
    /// table when the row fits, else `dead_letter`. Returns that file's key, and why it is due if
    /// it is.
    pub(super) fn place(
        &mut self,
        seq: Seq,
        body: &Bytes,
        received_at: DateTime<Utc>,
    ) -> Result<(FileKey, Option<FlushReason>), BatcherError> {
        let (parsed, text) = Event::parse_text(body);
        let (json, dead) = match &parsed {
            Parsed::Event(e) => (Some(&e.json), None),
            Parsed::Dead(d) => {
                tracing::warn!(seq = seq.0, reason = d.reason.code(), error = %d.error, "signed delivery is not an event; kept in dead_letter");
                (d.json.as_ref(), Some((d.reason.code(), d.error.as_str())))
            }
        };
        let input = RowInput { json, text, body, received_at, dead };
        let key = (parsed.table(), parsed.partition_date(received_at));
        let misfit = match self.buffer(key, seq)? {
            Some(buffer) => match buffer.check(&input) {
                Ok(()) => return Ok((key, self.push(key, seq, &input)?)),
                Err(misfit) => misfit.to_string(),
            },
            None => return Ok((key, None)), // replayed, but its file is in the store already
        };
        tracing::warn!(
            seq = seq.0,
            reason = DeadReason::EncodeError.code(),
            error = %misfit,
            "a delivery's row does not fit its table; kept in dead_letter"
        );
        metrics::encode_error();
        let input = RowInput { dead: Some((DeadReason::EncodeError.code(), &misfit)), ..input };
        let key = (Table::DeadLetter, received_at.date_naive());
        if self.buffer(key, seq)?.is_none() {
            return Ok((key, None));
        }
        Ok((key, self.push(key, seq, &input)?))
    }

    /// Adds a checked row to its pending file; returns why that file is due, if it is.
    fn push(&mut self, key: FileKey, seq: Seq, input: &RowInput<'_>) -> Result<Option<FlushReason>, BatcherError> {
        let Some(buffer) = self.buffers.get_mut(&key) else { return Ok(None) };
        buffer.push(seq, input)?;
        Ok(match buffer.replay_end() {
            Some(end) => (seq >= end).then_some(FlushReason::Replay),
            None => should_flush(buffer.rows(), buffer.bytes(), std::time::Duration::ZERO, &self.limits),
        })
    }

    /// The pending file of (table, dt) that `seq` joins, opened if need be; `None` when replay
    /// finds that `seq`'s file is in the store already.
    fn buffer(&mut self, key: FileKey, seq: Seq) -> Result<Option<&mut TableBuffer>, BatcherError> {
        let (table, dt) = key;
        // The partition's name only matters when a restart recovered flush intents: otherwise it
        // is not formatted for every delivery. (`written` is kept for the process's life, so
        // after such a restart it is formatted for every delivery, as it always was.)
        let recovering = !self.written.is_empty() || !self.intents.is_empty();
        let partition = if recovering { ObjectKey::partition(table, dt) } else { String::new() };
        if self.written.iter().any(|i| i.covers(&partition, seq)) {
            return Ok(None);
        }
        Ok(Some(match self.buffers.entry(key) {
            std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::btree_map::Entry::Vacant(e) => {
                let stats = self.stats.get(&table).map(AsRef::as_ref);
                let sink = match &self.staging {
                    Some(dir) => dir.create(&format!("{}-{dt}-{:020}.parquet", table.name(), seq.0)),
                    None => StagingSink::memory(),
                };
                let fresh = TableBuffer::new(self.catalog.table(table), stats, seq, Instant::now(), sink)?;
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
        }))
    }
}
