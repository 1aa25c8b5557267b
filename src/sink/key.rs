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

    /// The instance id kept in `path`, created on first use. It must survive restarts: replayed
    /// files then get the same names as before the crash.
    pub fn load_or_create(path: &std::path::Path) -> std::io::Result<WriterId> {
        match std::fs::read_to_string(path) {
            Ok(text) => WriterId::parse(text.trim()).ok_or_else(|| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{} does not hold an instance id", path.display()),
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let id = WriterId::generate();
                let tmp = path.with_extension("tmp");
                std::fs::write(&tmp, format!("{}\n", id.0))?;
                std::fs::File::open(&tmp)?.sync_all()?;
                std::fs::rename(&tmp, path)?;
                if let Some(dir) = path.parent() {
                    std::fs::File::open(dir)?.sync_all()?;
                }
                Ok(id)
            }
            Err(e) => Err(e),
        }
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
        ObjectKey(format!(
            "{}/part-{}-{:020}-{:020}.parquet",
            Self::partition(table, dt),
            writer.as_str(),
            first.0,
            last.0
        ))
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

    #[test]
    fn the_instance_id_survives_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("instance-id");
        let first = WriterId::load_or_create(&path).unwrap();
        assert_eq!(WriterId::load_or_create(&path).unwrap(), first);
        std::fs::write(&path, "not/valid").unwrap();
        assert!(WriterId::load_or_create(&path).unwrap_err().to_string().contains("instance-id"));
    }
}
