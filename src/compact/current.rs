//! `bookings_current`: one row per `booking_id`, the `bookings` row with the greatest
//! `last_updated_time` (a webhook row on ties, then the latest `event_time`, then the first
//! received, then the smallest `event_id`), so a booking's latest state is a plain `SELECT`.
//!
//! A rebuild ([`Compactor::rebuild_current`]) runs in four steps, and rewrites only the
//! partitions that changed:
//! 1. the key columns of every live `bookings` file are read (not the rows): the winner of each
//!    booking id, with the file and row it is in, and its `dt`;
//! 2. the `booking_id` and `event_id` of every live `bookings_current` file are read: which
//!    bookings each of its partitions holds now;
//! 3. each partition (`dt`, the winner's own `bookings` partition) whose set of winners differs is
//!    written again: the winners' full rows are taken from their `bookings` files (a bounded
//!    number of rows at a time), sorted by `booking_id`, written as large files;
//! 4. one commit removes the old files of those partitions and adds the new ones, only onto the
//!    version step 2 read (a concurrent rebuild that committed first wins; this one's files are
//!    deleted).
//!
//! Delta tables only; the plain layout gets a view instead (`schema ddl`).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::{Array, Int64Array, RecordBatch, StringArray, UInt32Array};
use arrow_schema::{DataType, Schema, SchemaRef};
use chrono::NaiveDate;
use delta_kernel::engine::arrow_conversion::TryFromKernel;
use futures_util::StreamExt;
use object_store::path::Path;
use parquet::arrow::{ParquetRecordBatchStreamBuilder, ProjectionMask};

use super::{CompactError, Compactor, Layout, READ_BATCH_ROWS, adapt, output, source};
use crate::lake::delta::{LiveFile, NewFile, Replaced};
use crate::schema::Table;

/// Rows taken from `bookings` files into memory at a time (then written out): a larger
/// partition is written in slices of this many rows.
const CHUNK_ROWS: usize = 100_000;

/// What a rebuild did.
#[derive(Debug, Clone)]
pub struct CurrentReport {
    /// The `bookings` version read.
    pub bookings_version: u64,
    pub rows_scanned: u64,
    /// Distinct booking ids: the rows of `bookings_current`.
    pub bookings: usize,
    pub partitions: usize,
    pub rewritten: usize,
    pub files_removed: usize,
    pub files_added: usize,
    pub rows_written: u64,
    pub outcome: CurrentOutcome,
    pub elapsed: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CurrentOutcome {
    /// Committed at this `bookings_current` version.
    Updated { table_version: u64 },
    /// Every partition already holds its winners.
    Unchanged,
    /// `--dry-run`: what would be rewritten.
    Planned,
    /// Another rebuild committed first; nothing of this one is in the table.
    Lost,
}

impl std::fmt::Display for CurrentReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "bookings_current: {} bookings from {} bookings rows (version {}); ",
            self.bookings, self.rows_scanned, self.bookings_version
        )?;
        let secs = self.elapsed.as_secs_f64();
        match &self.outcome {
            CurrentOutcome::Unchanged => write!(f, "up to date ({} partitions), {secs:.1} s", self.partitions),
            CurrentOutcome::Planned => {
                write!(f, "would rewrite {} of {} partitions (dry run)", self.rewritten, self.partitions)
            }
            CurrentOutcome::Lost => write!(f, "another rebuild committed first; nothing changed, {secs:.1} s"),
            CurrentOutcome::Updated { table_version } => write!(
                f,
                "rewrote {} of {} partitions ({} files -> {}, {} rows), version {table_version}, {secs:.1} s",
                self.rewritten, self.partitions, self.files_removed, self.files_added, self.rows_written
            ),
        }
    }
}

/// How a row ranks among its booking's rows: greater wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Rank {
    updated: i64,
    webhook: bool,
    event: i64,
    /// Negated: the first received wins.
    received: i64,
}

/// A booking's winning row so far.
struct Winner {
    rank: Rank,
    event_id: String,
    file: u32,
    row: u32,
    dt: NaiveDate,
}

impl Winner {
    fn beaten_by(&self, rank: Rank, event_id: &str) -> bool {
        rank > self.rank || (rank == self.rank && event_id < self.event_id.as_str())
    }
}

/// An order-free fingerprint of a partition's (booking id, event id) pairs.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Members {
    count: u64,
    sum: u64,
    xor: u64,
}

impl Members {
    fn add(&mut self, booking_id: &str, event_id: &str) {
        let mut h = DefaultHasher::new();
        (booking_id, event_id).hash(&mut h);
        let h = h.finish();
        self.count += 1;
        self.sum = self.sum.wrapping_add(h);
        self.xor ^= h;
    }
}

/// A partition of `bookings_current` as it is now.
#[derive(Default)]
struct Existing {
    members: Members,
    files: Vec<String>,
}

impl Compactor {
    /// Brings `bookings_current` up to date with `bookings` (see the module's text).
    pub fn rebuild_current(&self) -> Result<CurrentReport, CompactError> {
        let started = Instant::now();
        let Layout::Delta(lake) = &self.layout else {
            return Err(CompactError::Other(
                "bookings_current is kept for Delta tables (--table-format delta); the plain layout has a view (schema ddl)"
                    .into(),
            ));
        };
        lake.prepare(Table::BookingsCurrent)?;
        let (bookings_version, sources) = match lake.open_existing(Table::Bookings)? {
            Some(_) => lake.versioned_files(Table::Bookings)?,
            None => (0, Vec::new()),
        };
        if sources.iter().any(|f| f.has_deletion_vector) {
            return Err(CompactError::Other(
                "a bookings file has a deletion vector (written by another engine): bookings_current cannot tell which rows are live".into(),
            ));
        }
        let (winners, rows_scanned) = self.winners(&sources)?;
        let (current_version, current_files) = lake.versioned_files(Table::BookingsCurrent)?;
        let existing = self.existing(&current_files)?;
        let mut wanted: BTreeMap<NaiveDate, Members> = BTreeMap::new();
        for (id, w) in &winners {
            wanted.entry(w.dt).or_default().add(id, &w.event_id);
        }
        let changed: Vec<NaiveDate> = wanted
            .keys()
            .chain(existing.keys())
            .copied()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .filter(|dt| {
                wanted.get(dt).copied().unwrap_or_default() != existing.get(dt).map(|e| e.members).unwrap_or_default()
            })
            .collect();
        let mut report = CurrentReport {
            bookings_version,
            rows_scanned,
            bookings: winners.len(),
            partitions: wanted.len(),
            rewritten: changed.len(),
            files_removed: changed.iter().filter_map(|dt| existing.get(dt)).map(|e| e.files.len()).sum(),
            files_added: 0,
            rows_written: 0,
            outcome: CurrentOutcome::Unchanged,
            elapsed: Duration::ZERO,
        };
        if changed.is_empty() || self.options.dry_run {
            if !changed.is_empty() {
                report.outcome = CurrentOutcome::Planned;
            } else {
                crate::metrics::current_rebuilt("unchanged");
            }
            report.elapsed = started.elapsed();
            return Ok(report);
        }
        let stats = lake.current_stats(Table::BookingsCurrent)?;
        let schema: SchemaRef = Arc::new(Schema::try_from_kernel(stats.physical.as_ref())?);
        let mut outputs: Vec<NewFile> = Vec::new();
        let written = self.write_partitions(&changed, &winners, &sources, &schema, &stats, &mut outputs);
        let keys: Vec<String> =
            outputs.iter().map(|f| format!("{}/{}", Table::BookingsCurrent.name(), f.path)).collect();
        let rows_written = match written {
            Ok(rows) => rows,
            Err(e) => {
                self.discard(&keys);
                return Err(e);
            }
        };
        let inputs: HashSet<String> =
            changed.iter().filter_map(|dt| existing.get(dt)).flat_map(|e| e.files.iter().cloned()).collect();
        report.files_added = outputs.len();
        report.rows_written = rows_written;
        crate::lake::crash_point("current-before-commit");
        report.outcome =
            match lake.replace(Table::BookingsCurrent, &inputs, (&outputs, &stats), true, Some(current_version))? {
                Replaced::Committed { table_version, .. } => {
                    crate::metrics::current_rebuilt("updated");
                    CurrentOutcome::Updated { table_version }
                }
                Replaced::Gone { .. } | Replaced::SchemaChanged => {
                    crate::metrics::current_rebuilt("lost");
                    self.discard(&keys);
                    CurrentOutcome::Lost
                }
            };
        report.elapsed = started.elapsed();
        Ok(report)
    }

    /// Step 1: each booking id's winning row, and the rows read.
    fn winners(&self, sources: &[LiveFile]) -> Result<(HashMap<String, Winner>, u64), CompactError> {
        let mut winners: HashMap<String, Winner> = HashMap::new();
        let mut scanned = 0u64;
        for (index, file) in sources.iter().enumerate() {
            self.check()?;
            let Some(dt) = file.dt else { continue };
            let mut row = 0u32;
            let wanted = ["booking_id", "last_updated_time", "event_time", "received_at", "source", "event_id"];
            self.scan(Table::Bookings, file, &wanted, |batch| {
                let ids = strings(batch, "booking_id")?;
                let event_ids = strings(batch, "event_id")?;
                let (updated, event, received) =
                    (micros(batch, "last_updated_time")?, micros(batch, "event_time")?, micros(batch, "received_at")?);
                // Files from before the column was added hold webhook rows only.
                let source = strings(batch, "source")?;
                for i in 0..batch.num_rows() {
                    let at = row + i as u32;
                    let (Some(id), Some(event_id)) = (value(&ids, i), value(&event_ids, i)) else { continue };
                    let event_us = micros_at(&event, i).unwrap_or(i64::MIN);
                    let rank = Rank {
                        updated: micros_at(&updated, i).unwrap_or(event_us),
                        webhook: value(&source, i).is_none_or(|s| s != "api"),
                        event: event_us,
                        received: micros_at(&received, i).map_or(i64::MIN, |r| -r),
                    };
                    match winners.get_mut(id) {
                        Some(w) if !w.beaten_by(rank, event_id) => {}
                        Some(w) => *w = Winner { rank, event_id: event_id.to_owned(), file: index as u32, row: at, dt },
                        None => {
                            let w = Winner { rank, event_id: event_id.to_owned(), file: index as u32, row: at, dt };
                            winners.insert(id.to_owned(), w);
                        }
                    }
                }
                row += batch.num_rows() as u32;
                scanned += batch.num_rows() as u64;
                Ok(())
            })?;
        }
        Ok((winners, scanned))
    }

    /// Step 2: what each partition of `bookings_current` holds now.
    fn existing(&self, files: &[LiveFile]) -> Result<BTreeMap<NaiveDate, Existing>, CompactError> {
        let mut by_dt: BTreeMap<NaiveDate, Existing> = BTreeMap::new();
        for file in files {
            self.check()?;
            let Some(dt) = file.dt else { continue };
            let partition = by_dt.entry(dt).or_default();
            partition.files.push(file.path.clone());
            self.scan(Table::BookingsCurrent, file, &["booking_id", "event_id"], |batch| {
                let (ids, event_ids) = (strings(batch, "booking_id")?, strings(batch, "event_id")?);
                for i in 0..batch.num_rows() {
                    partition.members.add(value(&ids, i).unwrap_or_default(), value(&event_ids, i).unwrap_or_default());
                }
                Ok(())
            })?;
        }
        Ok(by_dt)
    }

    /// Step 3: the changed partitions written again, a bounded number of rows at a time; the
    /// files written go to `outputs` (also on error, to be deleted). Returns the rows written.
    fn write_partitions(
        &self,
        changed: &[NaiveDate],
        winners: &HashMap<String, Winner>,
        sources: &[LiveFile],
        schema: &SchemaRef,
        stats: &Arc<crate::sink::StatsSpec>,
        outputs: &mut Vec<NewFile>,
    ) -> Result<u64, CompactError> {
        let mut rows_by_dt: BTreeMap<NaiveDate, Vec<(&str, u32, u32)>> =
            changed.iter().map(|dt| (*dt, Vec::new())).collect();
        for (id, w) in winners {
            if let Some(rows) = rows_by_dt.get_mut(&w.dt) {
                rows.push((id.as_str(), w.file, w.row));
            }
        }
        // Slices of at most CHUNK_ROWS rows, in booking_id order within a partition (a large
        // partition becomes several files, each a range of ids); a few small partitions share
        // one chunk.
        let mut slices: Vec<(NaiveDate, Vec<(u32, u32)>)> = Vec::new();
        for (dt, mut rows) in rows_by_dt {
            rows.sort_unstable();
            if rows.is_empty() {
                slices.push((dt, Vec::new()));
            }
            for slice in rows.chunks(CHUNK_ROWS) {
                slices.push((dt, slice.iter().map(|(_, file, row)| (*file, *row)).collect()));
            }
        }
        let mut written = 0u64;
        let mut chunk: Vec<(NaiveDate, Vec<(u32, u32)>)> = Vec::new();
        let mut in_chunk = 0usize;
        let mut slices = slices.into_iter().peekable();
        while let Some((dt, rows)) = slices.next() {
            in_chunk += rows.len();
            chunk.push((dt, rows));
            let next_too_big = slices.peek().is_some_and(|(_, r)| in_chunk + r.len() > CHUNK_ROWS);
            if in_chunk >= CHUNK_ROWS || next_too_big || slices.peek().is_none() {
                written += self.write_chunk(std::mem::take(&mut chunk), sources, schema, stats, outputs)?;
                in_chunk = 0;
            }
        }
        Ok(written)
    }

    /// Takes the rows of a few partitions from their `bookings` files and writes each partition.
    fn write_chunk(
        &self,
        chunk: Vec<(NaiveDate, Vec<(u32, u32)>)>,
        sources: &[LiveFile],
        schema: &SchemaRef,
        stats: &Arc<crate::sink::StatsSpec>,
        outputs: &mut Vec<NewFile>,
    ) -> Result<u64, CompactError> {
        // Per source file: (row, partition) sorted by row.
        let mut by_file: BTreeMap<u32, Vec<(u32, NaiveDate)>> = BTreeMap::new();
        for (dt, rows) in &chunk {
            for (file, row) in rows {
                by_file.entry(*file).or_default().push((*row, *dt));
            }
        }
        let mut taken: BTreeMap<NaiveDate, Vec<RecordBatch>> = BTreeMap::new();
        for (file, mut rows) in by_file {
            self.check()?;
            rows.sort_unstable();
            let source = &sources[file as usize];
            let mut offset = 0u32;
            let mut next = 0usize;
            self.scan(Table::Bookings, source, &[], |batch| {
                let end = offset + batch.num_rows() as u32;
                let mut per_dt: BTreeMap<NaiveDate, Vec<u32>> = BTreeMap::new();
                while next < rows.len() && rows[next].0 < end {
                    per_dt.entry(rows[next].1).or_default().push(rows[next].0 - offset);
                    next += 1;
                }
                for (dt, indices) in per_dt {
                    let rows = arrow_select::take::take_record_batch(batch, &UInt32Array::from(indices))?;
                    taken.entry(dt).or_default().push(adapt::to_schema(&rows, schema)?);
                }
                offset = end;
                Ok(())
            })?;
        }
        let mut written = 0u64;
        for (dt, _) in &chunk {
            let Some(batches) = taken.remove(dt) else { continue };
            let batch = sorted_by_booking(&arrow_select::concat::concat_batches(schema, &batches)?)?;
            let dir = format!("{}/dt={dt}", Table::BookingsCurrent.name());
            let mut output = output::Output::new(
                self.runtime.clone(),
                self.store.clone(),
                dir,
                schema.clone(),
                Some(stats.clone()),
                self.options.target_size,
            );
            let files = match output.write(&batch).and_then(|()| output.finish()) {
                Ok(files) => files,
                Err(e) => {
                    self.discard(&output.abandon());
                    return Err(e);
                }
            };
            if files.iter().any(|w| w.stats.is_none()) {
                self.discard(&files.iter().map(|w| w.key.clone()).collect::<Vec<_>>());
                return Err(CompactError::Other("a written file has no statistics".into()));
            }
            for w in files {
                let Some(stats) = w.stats else { continue };
                written += w.rows;
                outputs.push(NewFile { path: format!("dt={dt}/{}", w.name), dt: *dt, size: w.size, stats });
            }
        }
        Ok(written)
    }

    /// Reads `file` of `table` batch by batch, only the `columns` it has (all with none named).
    fn scan(
        &self,
        table: Table,
        file: &LiveFile,
        columns: &[&str],
        mut each: impl FnMut(&RecordBatch) -> Result<(), CompactError>,
    ) -> Result<(), CompactError> {
        let decoded = Path::from_url_path(&file.path).map(|p| p.to_string()).unwrap_or(file.path.clone());
        let key = format!("{}/{decoded}", table.name());
        let reader = source::StoreReader::new(self.store.clone(), Path::from(key.as_str()), file.size);
        let mut builder = self.runtime.block_on(ParquetRecordBatchStreamBuilder::new(reader))?;
        if !columns.is_empty() {
            let roots: Vec<usize> = columns.iter().filter_map(|c| builder.schema().index_of(c).ok()).collect();
            let mask = ProjectionMask::roots(builder.parquet_schema(), roots);
            builder = builder.with_projection(mask);
        }
        let mut stream = builder.with_batch_size(READ_BATCH_ROWS).build()?;
        while let Some(batch) = self.runtime.block_on(stream.next()) {
            each(&batch?)?;
        }
        Ok(())
    }
}

/// A column as UTF-8 strings (`None` when the file lacks it).
fn strings(batch: &RecordBatch, name: &str) -> Result<Option<StringArray>, CompactError> {
    let Some(column) = batch.column_by_name(name) else { return Ok(None) };
    let cast = arrow_cast::cast(column, &DataType::Utf8)?;
    Ok(cast.as_any().downcast_ref::<StringArray>().cloned())
}

/// A timestamp column as microseconds (`None` when the file lacks it).
fn micros(batch: &RecordBatch, name: &str) -> Result<Option<Int64Array>, CompactError> {
    let Some(column) = batch.column_by_name(name) else { return Ok(None) };
    let cast = arrow_cast::cast(column, &DataType::Int64)?;
    Ok(cast.as_any().downcast_ref::<Int64Array>().cloned())
}

fn value(column: &Option<StringArray>, i: usize) -> Option<&str> {
    column.as_ref().filter(|c| c.is_valid(i)).map(|c| c.value(i))
}

fn micros_at(column: &Option<Int64Array>, i: usize) -> Option<i64> {
    column.as_ref().filter(|c| c.is_valid(i)).map(|c| c.value(i))
}

/// The rows in `booking_id` order (so readers prune files by its statistics).
fn sorted_by_booking(batch: &RecordBatch) -> Result<RecordBatch, CompactError> {
    let ids = strings(batch, "booking_id")?;
    let mut order: Vec<u32> = (0..batch.num_rows() as u32).collect();
    order.sort_by(|a, b| value(&ids, *a as usize).cmp(&value(&ids, *b as usize)));
    Ok(arrow_select::take::take_record_batch(batch, &UInt32Array::from(order))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_latest_state_wins_then_a_webhook_then_the_latest_event_then_the_first_received() {
        let rank = |updated, webhook, event, received: i64| Rank { updated, webhook, event, received: -received };
        let w = |r| Winner { rank: r, event_id: "EVNT-m".into(), file: 0, row: 0, dt: NaiveDate::MIN };
        assert!(w(rank(1, true, 9, 0)).beaten_by(rank(2, false, 0, 0), "x"), "a newer state, whatever its source");
        assert!(w(rank(2, false, 9, 0)).beaten_by(rank(2, true, 0, 0), "x"), "a webhook row on a tie");
        assert!(!w(rank(2, true, 0, 0)).beaten_by(rank(2, false, 9, 0), "x"));
        assert!(w(rank(2, true, 1, 0)).beaten_by(rank(2, true, 2, 0), "x"), "then the later event");
        assert!(w(rank(2, true, 1, 5)).beaten_by(rank(2, true, 1, 4), "x"), "then the first received");
        assert!(w(rank(2, true, 1, 5)).beaten_by(rank(2, true, 1, 5), "EVNT-a"), "then the smaller id");
        assert!(!w(rank(2, true, 1, 5)).beaten_by(rank(2, true, 1, 5), "EVNT-m"), "a copy changes nothing");
    }

    #[test]
    fn a_partition_fingerprint_ignores_order_and_sees_any_change() {
        let (mut a, mut b, mut c) = (Members::default(), Members::default(), Members::default());
        a.add("BKNG-1", "E1");
        a.add("BKNG-2", "E2");
        b.add("BKNG-2", "E2");
        b.add("BKNG-1", "E1");
        assert_eq!(a, b);
        c.add("BKNG-1", "E1");
        c.add("BKNG-2", "E3");
        assert_ne!(a, c, "a newer state of one booking");
    }
}
