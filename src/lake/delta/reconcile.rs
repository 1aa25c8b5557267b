//! After a restart: which of the files the spool says may not be committed are in fact in the
//! table. A crash between a commit and the spool checkpoint leaves files committed that the
//! spool still lists; re-adding them would double their rows. Such a file may even be gone from
//! the table since, replaced by a compaction (another replica's, or `compact` run while this one
//! was down): the log entries of this app's recent commits are read for it then, since
//! re-adding it would resurrect rows the compacted file already holds.

use std::collections::HashSet;

use super::{DeltaLake, LakeError};
use crate::schema::Table;
use crate::sink::WriterId;

impl DeltaLake {
    /// The file names (`part-….parquet`) of `writer`'s files in the table. Reads the whole file
    /// list, so the batcher calls it only when this app has committed to the table before.
    pub fn committed_names(&self, table: Table, writer: &WriterId) -> Result<HashSet<String>, LakeError> {
        let snapshot = {
            let tables = self.state();
            match tables.get(&table) {
                Some(state) if state.app_version.is_some() => state.snapshot.clone(),
                _ => return Ok(HashSet::new()),
            }
        };
        let engine = self.engine.as_ref();
        let scan = snapshot.scan_builder().build().map_err(LakeError::kernel(table))?;
        let marker = format!("part-{}-", writer.as_str());
        let mut names = HashSet::new();
        for metadata in scan.scan_metadata(engine).map_err(LakeError::kernel(table))? {
            let metadata = metadata.map_err(LakeError::kernel(table))?;
            let paths = metadata
                .visit_scan_files(Vec::new(), |paths: &mut Vec<String>, file| paths.push(file.path))
                .map_err(LakeError::kernel(table))?;
            names.extend(
                paths
                    .into_iter()
                    .filter_map(|p| p.rsplit('/').next().map(str::to_owned))
                    .filter(|n| n.starts_with(&marker)),
            );
        }
        Ok(names)
    }

    /// Of `names` (file names of this app's files), those a commit of this app with a `txn`
    /// version of at least `from` added, whether or not the table still holds them. Reads log
    /// entries from the newest back to this app's last commit below `from` (a commit of a file
    /// whose records end at sequence `s` carries a version of at least `s`).
    pub fn added_since(&self, table: Table, names: &HashSet<String>, from: i64) -> Result<HashSet<String>, LakeError> {
        let mut found = HashSet::new();
        let Some(snapshot) = self.state().get(&table).map(|s| s.snapshot.clone()) else { return Ok(found) };
        let mut version = snapshot.version();
        let mut read = 0;
        loop {
            let bytes = match self.read_entry(table, version) {
                Ok(bytes) => bytes,
                // Cleaned up by another engine's log retention: nothing older can be read.
                Err(e) if matches!(e.store_error(), Some(object_store::Error::NotFound { .. })) => break,
                Err(e) => return Err(e),
            };
            read += 1;
            let entry = super::verify::Entry::parse(&bytes, &self.app_id);
            found.extend(entry.added.into_iter().filter(|name| names.contains(name)));
            if entry.txn.is_some_and(|v| v < from) || version == 0 || found.len() == names.len() {
                break;
            }
            version -= 1;
        }
        tracing::debug!(
            table = table.name(),
            entries = read,
            found = found.len(),
            "read log entries for files compacted since"
        );
        Ok(found)
    }

    /// This app's last `txn` version in the table, as of the last read.
    pub fn app_version(&self, table: Table) -> Option<i64> {
        self.state().get(&table).and_then(|s| s.app_version)
    }
}
