//! The start-up step that opens the lake: for Delta tables, build the kernel's engine and try to
//! create or open every table once, so a schema in `schemas/` the tables cannot take stops the
//! start with the column's name. A store that does not answer in time does not stop the start:
//! the batcher keeps trying (deliveries wait in the spool meanwhile).

use std::sync::Arc;
use std::time::Duration;

use crate::config::ServeSettings;
use crate::lake::{DeltaLake, Lake, LakeError, TableFormat};
use crate::schema::{Catalog, Table};
use crate::sink::{StorageUrl, StoreRoot, WriterId};

/// How long the start waits for the store before leaving the tables to the batcher.
const PREPARE_WAIT: Duration = Duration::from_secs(10);

pub(super) async fn open(
    settings: &ServeSettings,
    root: &StoreRoot,
    writer: &WriterId,
    catalog: Arc<Catalog>,
) -> Result<Lake, LakeError> {
    if settings.table_format == TableFormat::Parquet {
        return Ok(Lake::Parquet);
    }
    let local_dir = match &settings.storage {
        StorageUrl::Local(path) => Some(path.clone()),
        _ => None,
    };
    let lake = Arc::new(DeltaLake::new(root, local_dir, writer, catalog));
    let preparing = lake.clone();
    let prepared =
        tokio::task::spawn_blocking(move || Table::LAKE.into_iter().try_for_each(|t| preparing.prepare(t).map(drop)));
    match tokio::time::timeout(PREPARE_WAIT, prepared).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) if e.is_permanent() => return Err(e),
        Ok(Ok(Err(e))) => {
            tracing::warn!(error = %e, "cannot open the delta tables yet; serving anyway, the batcher keeps trying")
        }
        Ok(Err(e)) => tracing::warn!(error = %e, "opening the delta tables failed; the batcher tries again"),
        Err(_) => tracing::warn!(
            wait_s = PREPARE_WAIT.as_secs(),
            "the store did not answer in time; serving anyway, the batcher keeps opening the delta tables"
        ),
    }
    Ok(Lake::Delta(lake))
}
