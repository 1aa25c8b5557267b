//! The plain layout (`--table-format parquet`): partitions are the `<table>/dt=<date>/` folders,
//! and a compaction is made visible by deleting its inputs once its outputs are in the store.
//! Between the two, a reader listing the folder sees the rows twice; two compactions of one
//! folder at once may both land (run `compact` from one place for this layout).

use std::collections::BTreeMap;

use chrono::NaiveDate;
use futures_util::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use tokio::runtime::Handle;

use super::{CompactError, Input};
use crate::schema::Table;

/// The data files of `table`, by partition; the zero-row file that keeps an empty table
/// readable is not one.
pub(super) fn partitions(
    runtime: &Handle,
    store: &dyn ObjectStore,
    table: Table,
) -> Result<BTreeMap<NaiveDate, Vec<Input>>, CompactError> {
    let prefix = Path::from(table.name());
    let listed: Vec<object_store::ObjectMeta> = runtime.block_on(store.list(Some(&prefix)).try_collect())?;
    let mut by_dt: BTreeMap<NaiveDate, Vec<Input>> = BTreeMap::new();
    for object in listed {
        let parts: Vec<&str> = object.location.as_ref().split('/').collect();
        let [_, folder, name] = parts.as_slice() else { continue };
        let Some(dt) = folder.strip_prefix("dt=").and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok()) else {
            continue;
        };
        if !name.ends_with(".parquet") || name.starts_with("part-empty-") {
            continue;
        }
        let path = format!("{folder}/{name}");
        let input = Input { key: object.location.to_string(), path, size: object.size, rows: None };
        by_dt.entry(dt).or_default().push(input);
    }
    Ok(by_dt)
}

/// Deletes the inputs of a compaction whose outputs are in the store.
pub(super) fn delete(runtime: &Handle, store: &dyn ObjectStore, inputs: &[Input]) -> Result<(), CompactError> {
    for input in inputs {
        match runtime.block_on(store.delete(&Path::from(input.key.as_str()))) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}
