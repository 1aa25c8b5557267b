//! After a restart: which of the files the spool says may not be committed are in fact in the
//! table. A crash between a commit and the spool checkpoint leaves files committed that the
//! spool still lists; re-adding them would double their rows.

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

    /// This app's last `txn` version in the table, as of the last read.
    pub fn app_version(&self, table: Table) -> Option<i64> {
        self.state().get(&table).and_then(|s| s.app_version)
    }
}
