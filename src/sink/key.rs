//! Deterministic object keys: `<table>/dt=YYYY-MM-DD/part-<writer>-<first seq>-<last seq>.parquet`.
//!
//! The writer id is unique per writing process lineage (see [`WriterId`]); the sequence range is the
//! spool records the file holds. So a key names exactly one file's contents: two instances never
//! collide, and writing the same batch again after a crash targets the same key.

use chrono::NaiveDate;

use crate::schema::Table;
use crate::spool::Seq;

/// Identifies the writer in object names. Only `[A-Za-z0-9-]`, so keys stay URL- and Hive-safe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriterId(String);

impl WriterId {
    pub fn parse(text: &str) -> Option<WriterId> {
        let ok = !text.is_empty() && text.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
        ok.then(|| WriterId(text.to_owned()))
    }

    /// A new, globally unique id (UUID v7, time-ordered).
    pub fn generate() -> WriterId {
        WriterId(uuid::Uuid::now_v7().to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The key of one Parquet file, relative to the storage root.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ObjectKey(String);

impl ObjectKey {
    pub fn for_batch(table: Table, dt: NaiveDate, writer: &WriterId, first: Seq, last: Seq) -> ObjectKey {
        ObjectKey(format!("{}/{}", Self::partition(table, dt), Self::file_name(writer, first, last)))
    }

    /// The last part of a key: `part-<writer>-<first seq>-<last seq>.parquet`.
    pub fn file_name(writer: &WriterId, first: Seq, last: Seq) -> String {
        format!("part-{}-{:020}-{:020}.parquet", writer.as_str(), first.0, last.0)
    }

    /// The directory of a (table, dt): `<table>/dt=YYYY-MM-DD`.
    pub fn partition(table: Table, dt: NaiveDate) -> String {
        format!("{}/dt={}", table.name(), dt.format("%Y-%m-%d"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_hive_partitioned_and_sortable() {
        let w = WriterId::parse("inst-1").unwrap();
        let dt = NaiveDate::from_ymd_opt(2026, 5, 4).unwrap();
        let k = ObjectKey::for_batch(Table::Bookings, dt, &w, Seq(7), Seq(42));
        assert_eq!(k.as_str(), "bookings/dt=2026-05-04/part-inst-1-00000000000000000007-00000000000000000042.parquet");
    }

    #[test]
    fn writer_ids_are_restricted_and_unique() {
        assert!(WriterId::parse("a/b").is_none());
        assert!(WriterId::parse("").is_none());
        assert_ne!(WriterId::generate(), WriterId::generate());
    }
}
