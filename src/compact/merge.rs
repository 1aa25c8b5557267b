//! Sorting a partition's rows by `(event_time, event_id, received_at)` and keeping one row per
//! event id, in memory bounded by one run whatever the partition's size: an external merge sort.
//!
//! Rows arrive in any order; every `run_bytes` of them are sorted (by index: the rows are not
//! copied) and spilled to a temporary Arrow IPC file (zstd), in small batches; the last run stays
//! in memory. The runs are then merged,
//! holding one small batch per run. OnceHub repeats an event's envelope on a retry, so copies of
//! one event share their `event_time` and sort next to each other: the first of them, the one with
//! the earliest `received_at`, is kept and the others are counted as dropped. Rows without an
//! event id (dead letters of a body that had none) are all kept.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_ipc::CompressionType;
use arrow_ipc::reader::FileReader;
use arrow_ipc::writer::{FileWriter, IpcWriteOptions};
use arrow_row::{OwnedRow, RowConverter, Rows, SortField};
use arrow_schema::{ArrowError, SchemaRef};

use super::CompactError;

/// Rows per batch of a spilled run, and so per run held during the merge.
const RUN_BATCH_ROWS: usize = 256;

/// Runs merged at once at most (the merge holds one batch of each).
const FAN_IN: usize = 32;

/// Rows per merged batch handed to the writer.
const OUT_BATCH_ROWS: usize = 4096;

/// The columns rows are ordered and de-duplicated by.
const SORT_COLUMNS: [&str; 3] = ["event_time", "event_id", "received_at"];

/// Collects a partition's rows; [`Merger::finish`] yields them sorted and de-duplicated.
pub(crate) struct Merger {
    schema: SchemaRef,
    columns: [usize; 3],
    run_bytes: usize,
    dir: PathBuf,
    pending: Vec<RecordBatch>,
    pending_bytes: usize,
    runs: Vec<Run>,
    rows_in: u64,
    /// Run files written so far (their names).
    spilled: usize,
}

enum Run {
    Memory(SortedRun),
    Disk(PathBuf),
}

/// Batches and the sorted order of their rows; iterates the rows in order, a small batch at a
/// time.
struct SortedRun {
    batches: Vec<RecordBatch>,
    order: Vec<(usize, usize)>,
    next: usize,
}

impl Iterator for SortedRun {
    type Item = Result<RecordBatch, ArrowError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.next >= self.order.len() {
            return None;
        }
        let end = (self.next + RUN_BATCH_ROWS).min(self.order.len());
        let sources: Vec<&RecordBatch> = self.batches.iter().collect();
        let chunk = arrow_select::interleave::interleave_record_batch(&sources, &self.order[self.next..end]);
        self.next = end;
        Some(chunk)
    }
}

impl Merger {
    /// `dir` holds the spilled runs (the caller removes it); a run is sorted in memory when its
    /// batches reach `run_bytes`.
    pub(crate) fn new(schema: SchemaRef, dir: &Path, run_bytes: usize) -> Result<Merger, CompactError> {
        let mut columns = [0; 3];
        for (slot, name) in columns.iter_mut().zip(SORT_COLUMNS) {
            *slot =
                schema.index_of(name).map_err(|_| CompactError::Other(format!("the table has no {name} column")))?;
        }
        Ok(Merger {
            schema,
            columns,
            run_bytes,
            dir: dir.to_owned(),
            pending: Vec::new(),
            pending_bytes: 0,
            runs: Vec::new(),
            rows_in: 0,
            spilled: 0,
        })
    }

    pub(crate) fn push(&mut self, batch: RecordBatch) -> Result<(), CompactError> {
        self.rows_in += batch.num_rows() as u64;
        self.pending_bytes += batch.get_array_memory_size();
        self.pending.push(batch);
        if self.pending_bytes >= self.run_bytes {
            let run = self.sorted_run()?;
            let path = self.spill_path();
            spill(&path, &self.schema, run)?;
            self.runs.push(Run::Disk(path));
        }
        Ok(())
    }

    /// Rows pushed so far.
    pub(crate) fn rows_in(&self) -> u64 {
        self.rows_in
    }

    /// Runs written to disk so far.
    pub(crate) fn spilled_runs(&self) -> usize {
        self.spilled
    }

    /// The pending batches with the order of their rows: sorted by index, not copied, so a run
    /// costs its batches once (the sorted copy is made a small batch at a time when it is read).
    fn sorted_run(&mut self) -> Result<SortedRun, CompactError> {
        let batches = std::mem::take(&mut self.pending);
        self.pending_bytes = 0;
        let converter = sort_converter(&self.schema, self.columns)?;
        let rows = batches
            .iter()
            .map(|b| converter.convert_columns(&key_columns(b, self.columns)))
            .collect::<Result<Vec<_>, _>>()?;
        let mut order: Vec<(usize, usize)> =
            batches.iter().enumerate().flat_map(|(b, batch)| (0..batch.num_rows()).map(move |r| (b, r))).collect();
        order.sort_unstable_by(|(ab, ar), (bb, br)| rows[*ab].row(*ar).cmp(&rows[*bb].row(*br)));
        Ok(SortedRun { batches, order, next: 0 })
    }

    /// The rows in order, one per event id.
    pub(crate) fn finish(mut self) -> Result<Merged, CompactError> {
        if !self.pending.is_empty() {
            let run = self.sorted_run()?;
            self.runs.push(Run::Memory(run));
        }
        // A merge holds one small batch per run: beyond FAN_IN runs, merge them into longer ones
        // first, so memory does not grow with the partition.
        let mut dropped = 0;
        while self.runs.len() > FAN_IN {
            let group: Vec<Run> = self.runs.drain(..FAN_IN).collect();
            let mut merged = self.merged(group)?;
            let path = self.spill_path();
            spill(&path, &self.schema, merged.by_ref())?;
            dropped += merged.dropped;
            merged.remove_files();
            self.runs.push(Run::Disk(path));
        }
        let runs = std::mem::take(&mut self.runs);
        let mut merged = self.merged(runs)?;
        merged.dropped = dropped;
        Ok(merged)
    }

    fn spill_path(&mut self) -> PathBuf {
        self.spilled += 1;
        self.dir.join(format!("run-{}.arrow", self.spilled))
    }

    /// A merge of `runs`.
    fn merged(&self, runs: Vec<Run>) -> Result<Merged, CompactError> {
        let sort = sort_converter(&self.schema, self.columns)?;
        let dedup = RowConverter::new(
            self.columns[..2].iter().map(|c| SortField::new(self.schema.field(*c).data_type().clone())).collect(),
        )?;
        let mut merged = Merged {
            schema: self.schema.clone(),
            columns: self.columns,
            sort,
            dedup,
            cursors: Vec::new(),
            sources: Vec::new(),
            picked: Vec::with_capacity(OUT_BATCH_ROWS),
            last: None,
            dropped: 0,
            files: Vec::new(),
        };
        for run in runs {
            let source: Box<dyn Iterator<Item = Result<RecordBatch, ArrowError>> + Send> = match run {
                Run::Memory(run) => Box::new(run),
                Run::Disk(path) => {
                    let reader = FileReader::try_new_buffered(File::open(&path)?, None)?;
                    merged.files.push(path);
                    Box::new(reader)
                }
            };
            merged.open(source)?;
        }
        Ok(merged)
    }
}

/// The merged rows, as batches of up to [`OUT_BATCH_ROWS`].
pub(crate) struct Merged {
    schema: SchemaRef,
    columns: [usize; 3],
    sort: RowConverter,
    dedup: RowConverter,
    cursors: Vec<Cursor>,
    /// The batches the rows picked so far come from.
    sources: Vec<RecordBatch>,
    picked: Vec<(usize, usize)>,
    /// The dedup key of the last row kept, when it had an event id.
    last: Option<OwnedRow>,
    dropped: u64,
    /// The spilled runs read, deleted once merged into a longer run.
    files: Vec<PathBuf>,
}

struct Cursor {
    source: Box<dyn Iterator<Item = Result<RecordBatch, ArrowError>> + Send>,
    slot: usize,
    len: usize,
    pos: usize,
    sort: Rows,
    dedup: Rows,
    ids: ArrayRef,
}

impl Merged {
    /// Rows dropped as later copies of an event kept already.
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped
    }

    pub(crate) fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn remove_files(&self) {
        for path in &self.files {
            let _ = std::fs::remove_file(path);
        }
    }

    /// Adds a cursor over `source`, unless it is empty.
    fn open(
        &mut self,
        mut source: Box<dyn Iterator<Item = Result<RecordBatch, ArrowError>> + Send>,
    ) -> Result<(), CompactError> {
        if let Some(cursor) = self.next_cursor(&mut source)? {
            let cursor = Cursor { source, ..cursor };
            self.cursors.push(cursor);
        }
        Ok(())
    }

    /// The next non-empty batch of `source` as a cursor (with a placeholder source).
    fn next_cursor(
        &mut self,
        source: &mut Box<dyn Iterator<Item = Result<RecordBatch, ArrowError>> + Send>,
    ) -> Result<Option<Cursor>, CompactError> {
        for batch in source.by_ref() {
            let batch = batch?;
            if batch.num_rows() == 0 {
                continue;
            }
            let keys = key_columns(&batch, self.columns);
            let sort = self.sort.convert_columns(&keys)?;
            let dedup = self.dedup.convert_columns(&keys[..2])?;
            let ids = keys[1].clone();
            let len = batch.num_rows();
            self.sources.push(batch);
            let placeholder: Box<dyn Iterator<Item = Result<RecordBatch, ArrowError>> + Send> =
                Box::new(std::iter::empty());
            let slot = self.sources.len() - 1;
            return Ok(Some(Cursor { source: placeholder, slot, len, pos: 0, sort, dedup, ids }));
        }
        Ok(None)
    }

    /// Moves cursor `i` one row on, loading its run's next batch at the end of one.
    fn advance(&mut self, i: usize) -> Result<(), CompactError> {
        let cursor = &mut self.cursors[i];
        cursor.pos += 1;
        if cursor.pos < cursor.len {
            return Ok(());
        }
        let mut source = std::mem::replace(&mut cursor.source, Box::new(std::iter::empty()));
        match self.next_cursor(&mut source)? {
            Some(next) => self.cursors[i] = Cursor { source, ..next },
            None => {
                self.cursors.swap_remove(i);
            }
        }
        Ok(())
    }

    /// The picked rows as one batch; only the batches cursors still read stay referenced.
    fn emit(&mut self) -> Result<RecordBatch, CompactError> {
        let sources: Vec<&RecordBatch> = self.sources.iter().collect();
        let batch = arrow_select::interleave::interleave_record_batch(&sources, &self.picked)?;
        self.picked.clear();
        let mut kept = Vec::with_capacity(self.cursors.len());
        for cursor in &mut self.cursors {
            kept.push(self.sources[cursor.slot].clone());
            cursor.slot = kept.len() - 1;
        }
        self.sources = kept;
        Ok(batch)
    }

    fn next_batch(&mut self) -> Result<Option<RecordBatch>, CompactError> {
        while self.picked.len() < OUT_BATCH_ROWS {
            let Some(i) = (0..self.cursors.len()).min_by(|a, b| {
                let (a, b) = (&self.cursors[*a], &self.cursors[*b]);
                a.sort.row(a.pos).cmp(&b.sort.row(b.pos))
            }) else {
                break;
            };
            let cursor = &self.cursors[i];
            let key = cursor.dedup.row(cursor.pos);
            if cursor.ids.is_null(cursor.pos) {
                self.picked.push((cursor.slot, cursor.pos));
                self.last = None;
            } else if self.last.as_ref().is_some_and(|last| last.row() == key) {
                self.dropped += 1;
            } else {
                self.picked.push((cursor.slot, cursor.pos));
                self.last = Some(key.owned());
            }
            self.advance(i)?;
        }
        if self.picked.is_empty() { Ok(None) } else { self.emit().map(Some) }
    }
}

impl Iterator for Merged {
    type Item = Result<RecordBatch, CompactError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_batch().transpose()
    }
}

fn sort_converter(schema: &SchemaRef, columns: [usize; 3]) -> Result<RowConverter, ArrowError> {
    RowConverter::new(columns.iter().map(|c| SortField::new(schema.field(*c).data_type().clone())).collect())
}

fn key_columns(batch: &RecordBatch, columns: [usize; 3]) -> Vec<ArrayRef> {
    columns.iter().map(|c| batch.column(*c).clone()).collect()
}

/// Writes sorted `batches` to a run file, in batches of at most [`RUN_BATCH_ROWS`].
fn spill<E>(
    path: &Path,
    schema: &SchemaRef,
    batches: impl Iterator<Item = Result<RecordBatch, E>>,
) -> Result<(), CompactError>
where
    CompactError: From<E>,
{
    let options = IpcWriteOptions::default().try_with_compression(Some(CompressionType::ZSTD))?;
    let mut writer = FileWriter::try_new_with_options(BufWriter::new(File::create(path)?), schema, options)?;
    for batch in batches {
        let batch = batch?;
        for start in (0..batch.num_rows()).step_by(RUN_BATCH_ROWS) {
            writer.write(&batch.slice(start, RUN_BATCH_ROWS.min(batch.num_rows() - start)))?;
        }
    }
    writer.finish()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{StringArray, TimestampMicrosecondArray};
    use arrow_schema::{DataType, Field, Schema, TimeUnit};
    use std::sync::Arc;

    fn schema() -> SchemaRef {
        let ts = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
        Arc::new(Schema::new(vec![
            Field::new("event_id", DataType::Utf8, true),
            Field::new("event_time", ts.clone(), true),
            Field::new("received_at", ts, false),
            Field::new("note", DataType::Utf8, true),
        ]))
    }

    fn batch(rows: &[(Option<&str>, i64, i64, &str)]) -> RecordBatch {
        RecordBatch::try_new(
            schema(),
            vec![
                Arc::new(StringArray::from(rows.iter().map(|r| r.0).collect::<Vec<_>>())),
                Arc::new(
                    TimestampMicrosecondArray::from(rows.iter().map(|r| r.1).collect::<Vec<_>>()).with_timezone("UTC"),
                ),
                Arc::new(
                    TimestampMicrosecondArray::from(rows.iter().map(|r| r.2).collect::<Vec<_>>()).with_timezone("UTC"),
                ),
                Arc::new(StringArray::from(rows.iter().map(|r| r.3).collect::<Vec<_>>())),
            ],
        )
        .unwrap()
    }

    fn notes(merged: Merged) -> (Vec<String>, u64) {
        let mut merged = merged;
        let mut out = Vec::new();
        for b in merged.by_ref() {
            let b = b.unwrap();
            let n = b.column(3).as_any().downcast_ref::<StringArray>().unwrap();
            out.extend((0..n.len()).map(|i| n.value(i).to_owned()));
        }
        (out, merged.dropped())
    }

    #[test]
    fn rows_come_out_by_event_time_with_the_earliest_copy_of_each_event() {
        let dir = tempfile::tempdir().unwrap();
        let mut m = Merger::new(schema(), dir.path(), usize::MAX).unwrap();
        m.push(batch(&[(Some("b"), 20, 105, "b-late"), (Some("a"), 10, 100, "a")])).unwrap();
        m.push(batch(&[(Some("b"), 20, 101, "b-early"), (None, 15, 1, "dead-1"), (None, 15, 1, "dead-2")])).unwrap();
        let (out, dropped) = notes(m.finish().unwrap());
        assert_eq!(out, ["a", "dead-1", "dead-2", "b-early"]);
        assert_eq!(dropped, 1);
    }

    #[test]
    fn spilled_runs_merge_into_the_same_order_as_one_run() {
        let rows: Vec<(String, i64, i64)> =
            (0..5000).map(|i| (format!("e{}", (i * 7919) % 3000), ((i * 7919) % 3000) as i64, i as i64)).collect();
        let run = |run_bytes, chunk| {
            let dir = tempfile::tempdir().unwrap();
            let mut m = Merger::new(schema(), dir.path(), run_bytes).unwrap();
            for part in rows.chunks(chunk) {
                let r: Vec<_> = part.iter().map(|(id, t, rec)| (Some(id.as_str()), *t, *rec, id.as_str())).collect();
                m.push(batch(&r)).unwrap();
            }
            let merged = m.finish().unwrap();
            let spilled = std::fs::read_dir(dir.path()).unwrap().count();
            let (out, dropped) = notes(merged);
            (out, dropped, spilled)
        };
        let (one, dropped_one, spilled_one) = run(usize::MAX, 700);
        let (many, dropped_many, spilled_many) = run(1, 700);
        // 50 runs: more than one merge takes, so 32 of them are merged into one first.
        let (most, dropped_most, spilled_most) = run(1, 100);
        assert_eq!(spilled_one, 0);
        assert_eq!(spilled_many, 8, "runs spilled");
        assert_eq!(spilled_most, 50 - 32 + 1, "32 runs merged into one and deleted");
        assert_eq!(one.len(), 3000);
        assert_eq!(dropped_one, 2000);
        assert_eq!((&one, dropped_one), (&many, dropped_many));
        assert_eq!((&one, dropped_one), (&most, dropped_most));
    }
}
