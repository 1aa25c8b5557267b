//! The batcher against a real spool directory and an in-memory store, on paused tokio time: files
//! are cut by age without waiting for it, by rows, and at shutdown, and the spool is acknowledged
//! only behind what is in the store.

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::TryStreamExt;
use object_store::memory::InMemory;
use object_store::{ObjectStore, ObjectStoreExt};
use tokio_util::sync::CancellationToken;

use super::*;
use crate::spool::{Delivery, SpoolOptions};

struct Rig {
    spool: Spool,
    store: Arc<InMemory>,
    task: tokio::task::JoinHandle<Result<BatcherReport, BatcherError>>,
    staging: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

/// A spool in `dir` holding `bodies`.
async fn spool_holding(dir: &std::path::Path, bodies: Vec<Bytes>) -> (Spool, SpoolReader, crate::spool::Recovered) {
    let opts = SpoolOptions {
        dir: dir.join("spool"),
        max_bytes: 1 << 30,
        segment_bytes: 64 << 20,
        min_free_bytes: 0,
        dedup_window: Duration::from_secs(86_400),
    };
    let (spool, reader, recovered) = Spool::open(opts).unwrap();
    for body in bodies {
        spool.append(Delivery::for_test(body)).await.unwrap();
    }
    (spool, reader, recovered)
}

/// A spool holding `bodies`, and a batcher started on it. The bodies are appended before the
/// batcher starts: with time paused, tokio jumps to the next timer whenever the runtime waits,
/// and an append waits for the spool's fsync on a thread of its own.
async fn rig(limits: FlushLimits, bodies: Vec<Bytes>) -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let (spool, reader, recovered) = spool_holding(dir.path(), bodies).await;
    let store = Arc::new(InMemory::new());
    let batcher = Batcher::new(
        Arc::new(Catalog::load().unwrap()),
        limits,
        WriterId::parse("test").unwrap(),
        Uploader::new(store.clone()),
        spool.clone(),
        (recovered.checkpoint, recovered.intents),
        CancellationToken::new(),
    )
    .with_staging(StagingDir::open(&dir.path().join("staging")).unwrap());
    let task = tokio::spawn(batcher.run(reader));
    Rig { spool, store, task, staging: dir.path().join("staging"), _dir: dir }
}

fn body(id: &str, object: &str) -> Bytes {
    Bytes::from(format!(
        r#"{{"id":"{id}","type":"t","creation_time":"2026-11-30T10:00:00Z","data":{{"object":"{object}"}}}}"#
    ))
}

/// The batch files in the store (not the zero-row file each table of the plain layout has).
async fn keys(store: &InMemory) -> Vec<String> {
    let mut keys: Vec<String> = all_keys(store).await.into_iter().filter(|k| !k.contains("/part-empty-")).collect();
    keys.sort();
    keys
}

async fn all_keys(store: &InMemory) -> Vec<String> {
    store.list(None).map_ok(|m| m.location.to_string()).try_collect().await.unwrap()
}

#[tokio::test(start_paused = true)]
async fn every_table_of_the_plain_layout_has_its_zero_row_file_from_the_start() {
    let rig = rig(limits(1000, Duration::from_secs(60)), vec![]).await;
    rig.spool.close();
    rig.task.await.unwrap().unwrap();
    let mut empty: Vec<String> = all_keys(&rig.store).await;
    empty.sort();
    let names: Vec<String> = Table::ALL
        .iter()
        .map(|t| format!("{}/dt=1970-01-01/part-empty-{:020}-{:020}.parquet", t.name(), 0, 0))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(empty, names);
}

/// Delta tables in memory: a file in the store is not acknowledged until its commit (held here
/// until the test lets the log entry's write through).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_delta_tables_the_spool_is_acknowledged_only_after_the_commit() {
    let dir = tempfile::tempdir().unwrap();
    let bodies = (0..2).map(|i| body(&format!("B{i}"), "booking")).collect();
    let (spool, reader, recovered) = spool_holding(dir.path(), bodies).await;
    let store =
        Arc::new(crate::lake::delta::tests::LosesAnswer::gated("bookings/_delta_log/00000000000000000001.json"));
    let root = crate::sink::StoreRoot { store: store.clone(), url: url::Url::parse("memory:///").unwrap() };
    let catalog = Arc::new(Catalog::load().unwrap());
    let writer = WriterId::parse("test").unwrap();
    let lake = Arc::new(crate::lake::DeltaLake::new(&root, None, &writer, catalog.clone()));
    let batcher = Batcher::new(
        catalog,
        limits(2, Duration::from_secs(3600)),
        writer,
        Uploader::new(store.clone()),
        spool.clone(),
        (recovered.checkpoint, recovered.intents),
        CancellationToken::new(),
    )
    .with_lake(Lake::Delta(lake.clone()), Duration::from_secs(10));
    let task = tokio::spawn(batcher.run(reader));
    let start = std::time::Instant::now();
    while keys(&store.inner).await.iter().all(|k| !k.contains("part-test-")) {
        assert!(start.elapsed() < Duration::from_secs(10), "the file is uploaded");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(spool.acked(), Seq(0), "uploaded, its commit held: nothing acknowledged");
    store.gate.as_ref().unwrap().add_permits(1);
    while spool.acked() != Seq(2) {
        assert!(start.elapsed() < Duration::from_secs(10), "acknowledged after the commit");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(lake.app_version(Table::Bookings), Some(2), "the txn marker is the file's last sequence number");
    spool.close();
    task.await.unwrap().unwrap();
}

fn limits(rows: usize, age: Duration) -> FlushLimits {
    FlushLimits { max_rows: NonZeroUsize::new(rows).unwrap(), max_age: age, ..FlushLimits::default() }
}

#[tokio::test(start_paused = true)]
async fn a_file_is_cut_by_age_with_no_more_traffic() {
    let rig =
        rig(limits(1000, Duration::from_secs(60)), (0..3).map(|i| body(&format!("E{i}"), "booking")).collect()).await;
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert!(keys(&rig.store).await.is_empty(), "not before the age limit");
    tokio::time::sleep(Duration::from_secs(31)).await;
    for _ in 0..100 {
        if rig.spool.acked() == Seq(3) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let files = keys(&rig.store).await;
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(files[0].starts_with("bookings/dt=2026-11-30/part-test-"), "{files:?}");
    assert_eq!(rig.spool.acked(), Seq(3), "acknowledged once the file is in the store");
    rig.spool.close();
    let report = rig.task.await.unwrap().unwrap();
    assert_eq!((report.records, report.files, report.rows_written), (3, 1, 3));
}

#[tokio::test(start_paused = true)]
async fn rows_cut_files_and_shutdown_flushes_the_rest_per_table() {
    let mut bodies: Vec<Bytes> = (0..5).map(|i| body(&format!("B{i}"), "booking")).collect();
    bodies.extend([body("C0", "conversation"), Bytes::from_static(b"not json")]);
    let rig = rig(limits(2, Duration::from_secs(3600)), bodies).await;
    rig.spool.close();
    let report = rig.task.await.unwrap().unwrap();
    assert_eq!(report.rows_written, 7);
    let files = keys(&rig.store).await;
    let count = |prefix: &str| files.iter().filter(|k| k.starts_with(prefix)).count();
    assert_eq!(count("bookings/"), 3, "2 + 2 by rows, 1 at shutdown: {files:?}");
    assert_eq!((count("conversations/"), count("dead_letter/")), (1, 1), "{files:?}");
    assert_eq!(rig.spool.acked(), Seq(7));
    // Every file went up from its staging file, whole, and the staged copies are gone.
    let mut rows = 0;
    for key in &files {
        let bytes = rig.store.get(&object_store::path::Path::from(key.as_str())).await.unwrap().bytes().await.unwrap();
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes).unwrap();
        rows += reader.metadata().file_metadata().num_rows();
    }
    assert_eq!(rows, 7);
    assert_eq!(std::fs::read_dir(&rig.staging).unwrap().count(), 0, "staging files are deleted once uploaded");
}

#[tokio::test(start_paused = true)]
async fn the_checkpoint_stays_behind_a_pending_file() {
    // Seq 1 stays pending; seqs 2-3 make a file by rows.
    let bodies = vec![body("C0", "conversation"), body("B0", "booking"), body("B1", "booking")];
    let rig = rig(limits(2, Duration::from_secs(3600)), bodies).await;
    for _ in 0..100 {
        if !keys(&rig.store).await.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(keys(&rig.store).await.len(), 1);
    assert_eq!(rig.spool.acked(), Seq(0), "seq 1 is not in the store yet, so nothing is acknowledged");
    rig.spool.close();
    rig.task.await.unwrap().unwrap();
    assert_eq!(rig.spool.acked(), Seq(3));
}
