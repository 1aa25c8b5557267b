//! Reading a commit back. A Delta commit is safe only where the store's create-only PUT is atomic
//! (S3, MinIO, R2, GCS, Azure, local files). A store that checks for the object and then writes it
//! (s3s-fs does; Garage ignores the condition) lets two writers both "create" `<v>.json`, and the
//! later one replaces the earlier commit. Reading the entry back after the PUT finds most of those
//! losses: the commit is then treated as a conflict and made again on the next version.

use object_store::ObjectStoreExt;
use object_store::path::Path;

use super::{DeltaLake, LakeError};
use crate::schema::Table;

impl DeltaLake {
    /// True when log entry `table_version` of `table` carries this app's `txn` at `txn_version`.
    pub(super) fn entry_is_ours(&self, table: Table, table_version: u64, txn_version: i64) -> Result<bool, LakeError> {
        Ok(carries_txn(&self.read_entry(table, table_version)?, &self.app_id, txn_version))
    }

    /// True when log entry `table_version` of `table` adds the file at `path`.
    pub(super) fn entry_adds(&self, table: Table, table_version: u64, path: &str) -> Result<bool, LakeError> {
        let name = path.rsplit('/').next().unwrap_or(path);
        Ok(Entry::parse(&self.read_entry(table, table_version)?, &self.app_id).added.iter().any(|a| a == name))
    }

    /// The bytes of log entry `table_version`.
    pub(super) fn read_entry(&self, table: Table, table_version: u64) -> Result<bytes::Bytes, LakeError> {
        let url = self.table_url(table)?;
        let path = Path::from_url_path(format!("{}_delta_log/{table_version:020}.json", url.path()))
            .map_err(|e| LakeError::Other { table: table.name(), message: format!("log entry path: {e}") })?;
        let read = async { self.store.get(&path).await?.bytes().await };
        tokio::runtime::Handle::current().block_on(read).map_err(LakeError::store(table))
    }
}

/// The newline-delimited actions of a log entry hold `txn {appId, version}`.
fn carries_txn(entry: &[u8], app_id: &str, version: i64) -> bool {
    Entry::parse(entry, app_id).txn == Some(version)
}

/// What a log entry says of one app.
#[derive(Debug, Default)]
pub(super) struct Entry {
    /// The app's `txn` version in the entry.
    pub(super) txn: Option<i64>,
    /// The file names (last path segment) of its `add` actions.
    pub(super) added: Vec<String>,
}

impl Entry {
    pub(super) fn parse(entry: &[u8], app_id: &str) -> Entry {
        let mut parsed = Entry::default();
        for action in entry.split(|b| *b == b'\n').filter_map(|l| serde_json::from_slice::<serde_json::Value>(l).ok()) {
            if action["txn"]["appId"].as_str() == Some(app_id) {
                parsed.txn = action["txn"]["version"].as_i64();
            }
            if let Some(path) = action["add"]["path"].as_str() {
                parsed.added.extend(path.rsplit('/').next().map(str::to_owned));
            }
        }
        parsed
    }
}

#[cfg(test)]
mod tests {
    use super::carries_txn;

    #[test]
    fn the_entry_must_carry_this_app_and_version() {
        let entry = b"{\"commitInfo\":{}}\n{\"txn\":{\"appId\":\"oncehub-bridge-a\",\"version\":7}}\n{\"add\":{}}\n";
        assert!(carries_txn(entry, "oncehub-bridge-a", 7));
        assert!(!carries_txn(entry, "oncehub-bridge-a", 8));
        assert!(!carries_txn(entry, "oncehub-bridge-b", 7));
        assert!(!carries_txn(b"not json", "oncehub-bridge-a", 7));
    }

    #[test]
    fn an_entry_names_the_files_it_added() {
        let entry = b"{\"add\":{\"path\":\"dt=2026-01-01/part-w-1-9.parquet\"}}\n{\"remove\":{\"path\":\"dt=2026-01-01/part-x.parquet\"}}\n";
        let parsed = super::Entry::parse(entry, "oncehub-bridge-a");
        assert_eq!(parsed.added, ["part-w-1-9.parquet"]);
        assert_eq!(parsed.txn, None);
    }
}
