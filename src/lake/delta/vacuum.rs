//! Deleting what no reader can need any more: files compaction removed more than the retention
//! window ago, and objects no commit ever added (a compaction or upload that crashed before its
//! commit), once they are older than the window.
//!
//! A file is kept when the newest version references it (read before and after the listing),
//! when the version that was current at the window's start references it, or when the object
//! itself is younger than the window (it may be an upload whose commit is still to come, or a
//! file added and removed inside the window). So time travel to any version inside the window
//! works, except to a file uploaded before the window, committed inside it and removed since (a
//! replica that replayed week-old uploads after an outage). The log itself is never touched.

use std::collections::HashSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use delta_kernel::Snapshot;
use delta_kernel::scan::state::ScanFile;
use futures_util::TryStreamExt;
use object_store::ObjectStoreExt;
use object_store::path::Path;

use super::{DeltaLake, LakeError};
use crate::schema::Table;

/// What a vacuum found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VacuumReport {
    /// Data objects under the table's directory.
    pub objects: usize,
    /// Of those, referenced by the newest version or the one current at the window's start.
    pub referenced: usize,
    /// Unreferenced, but younger than the window: kept.
    pub young: usize,
    /// Deleted (or, on a dry run, to be deleted).
    pub deleted: usize,
    pub deleted_bytes: u64,
    /// The version current at the window's start, when the table is older than the window.
    pub window_version: Option<u64>,
}

impl DeltaLake {
    /// Deletes the table's data objects no version inside `retention` can need; `dry_run` only
    /// counts them.
    pub fn vacuum(&self, table: Table, retention: Duration, dry_run: bool) -> Result<VacuumReport, LakeError> {
        let engine = self.engine.as_ref();
        let snapshot = self.refresh(table)?;
        let horizon = Utc::now()
            - chrono::Duration::from_std(retention)
                .map_err(|e| LakeError::Other { table: table.name(), message: format!("retention: {e}") })?;
        let url = self.table_url(table)?;
        let prefix = Path::from_url_path(url.path())
            .map_err(|e| LakeError::Other { table: table.name(), message: format!("table path: {e}") })?;
        let runtime = tokio::runtime::Handle::current();
        let listed: Vec<object_store::ObjectMeta> =
            runtime.block_on(self.store.list(Some(&prefix)).try_collect()).map_err(LakeError::store(table))?;

        let mut keep = referenced(table, &snapshot, engine)?;
        let window_version = version_at(&prefix, &listed, horizon);
        if let Some(version) = window_version.filter(|v| *v < snapshot.version()) {
            let old = Snapshot::builder_for(url.as_str())
                .at_version(version)
                .build(engine)
                .map_err(LakeError::kernel(table))?;
            keep.extend(referenced(table, &old, engine)?);
        }

        // Listed after the first snapshot: read the table once more, so a file committed in
        // between (an old upload replayed after an outage, say) is not taken for garbage.
        keep.extend(referenced(table, &self.refresh(table)?, engine)?);
        let mut report = VacuumReport { window_version, ..VacuumReport::default() };
        let mut doomed = Vec::new();
        for object in &listed {
            let Some(relative) = relative(&prefix, &object.location) else { continue };
            if relative.split('/').any(|part| part.starts_with('_') || part.starts_with('.')) {
                continue; // the log, and what Delta calls hidden
            }
            report.objects += 1;
            if keep.contains(&relative) {
                report.referenced += 1;
            } else if object.last_modified > horizon {
                report.young += 1;
            } else {
                report.deleted += 1;
                report.deleted_bytes += object.size;
                doomed.push(object.location.clone());
            }
        }
        if !dry_run {
            for location in &doomed {
                match runtime.block_on(self.store.delete(location)) {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => return Err(LakeError::store(table)(e)),
                }
                tracing::debug!(table = table.name(), key = %location, "vacuum deleted an unreferenced file");
            }
        }
        Ok(report)
    }
}

/// The data files of `snapshot`, relative to the table's directory, percent-decoded.
fn referenced(
    table: Table,
    snapshot: &delta_kernel::SnapshotRef,
    engine: &super::Engine,
) -> Result<HashSet<String>, LakeError> {
    let scan = snapshot.clone().scan_builder().build().map_err(LakeError::kernel(table))?;
    let mut paths = HashSet::new();
    for metadata in scan.scan_metadata(engine).map_err(LakeError::kernel(table))? {
        paths = metadata
            .map_err(LakeError::kernel(table))?
            .visit_scan_files(paths, |paths: &mut HashSet<String>, file: ScanFile| {
                let decoded = Path::from_url_path(&file.path).map(|p| p.to_string()).unwrap_or(file.path);
                paths.insert(decoded);
            })
            .map_err(LakeError::kernel(table))?;
    }
    Ok(paths)
}

/// `location` relative to `prefix`, when it is under it.
fn relative(prefix: &Path, location: &Path) -> Option<String> {
    let parts: Vec<_> = location.prefix_match(prefix)?.map(|p| p.as_ref().to_owned()).collect();
    (!parts.is_empty()).then(|| parts.join("/"))
}

/// The newest log version written at or before `horizon`: the table's state when the window
/// starts.
fn version_at(prefix: &Path, listed: &[object_store::ObjectMeta], horizon: DateTime<Utc>) -> Option<u64> {
    listed
        .iter()
        .filter(|o| o.last_modified <= horizon)
        .filter_map(|o| {
            let relative = relative(prefix, &o.location)?;
            let name = relative.strip_prefix("_delta_log/")?.strip_suffix(".json")?;
            (name.len() == 20).then(|| name.parse::<u64>().ok()).flatten()
        })
        .max()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_starts_at_the_newest_entry_written_before_it() {
        let at = |s: i64| DateTime::from_timestamp(s, 0).unwrap();
        let meta = |key: &str, s: i64| object_store::ObjectMeta {
            location: Path::from(key),
            last_modified: at(s),
            size: 1,
            e_tag: None,
            version: None,
        };
        let prefix = Path::from("lake/bookings");
        let listed = vec![
            meta("lake/bookings/_delta_log/00000000000000000000.json", 10),
            meta("lake/bookings/_delta_log/00000000000000000001.json", 20),
            meta("lake/bookings/_delta_log/00000000000000000001.checkpoint.parquet", 21),
            meta("lake/bookings/_delta_log/00000000000000000002.json", 30),
            meta("lake/bookings/dt=2026-01-01/part-a.parquet", 5),
        ];
        assert_eq!(version_at(&prefix, &listed, at(25)), Some(1));
        assert_eq!(version_at(&prefix, &listed, at(5)), None);
        assert_eq!(relative(&prefix, &listed[4].location).as_deref(), Some("dt=2026-01-01/part-a.parquet"));
    }
}
