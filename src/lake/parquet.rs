//! The plain layout (`--table-format parquet`) has no log to say what a table's columns are, so a
//! table with no rows yet would have no file, and readers that take the schema from the files
//! (DuckDB's views) or need the folder (Spark's partition repair) fail on it. Each table gets one
//! zero-row file with its full schema, `<table>/dt=1970-01-01/part-empty-0…0-0…0.parquet`: it
//! adds no row to any query, and its name fits the pattern of every other file.

use bytes::Bytes;

use crate::schema::{Catalog, Table};
use crate::sink::{EncodeError, FileWriter, ObjectKey, WriterId};
use crate::spool::Seq;

/// The key and bytes of `table`'s zero-row file.
pub fn empty_file(catalog: &Catalog, table: Table) -> Result<(ObjectKey, Bytes), EncodeError> {
    let bytes = FileWriter::new(catalog.table(table).arrow.clone(), None)?.finish()?.bytes;
    let epoch = chrono::NaiveDate::default();
    let writer = WriterId::parse("empty").ok_or_else(|| EncodeError::Other("bad writer id".into()))?;
    Ok((ObjectKey::for_batch(table, epoch, &writer, Seq(0), Seq(0)), bytes))
}
