//! Commits against an in-memory store: an answer lost after the log entry was written, a store
//! whose create-only PUT let another writer replace the entry, and a conflict with another writer.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use arrow_array::RecordBatch;
use futures_util::stream::BoxStream;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore, ObjectStoreExt,
    PutMultipartOptions, PutOptions, PutPayload, PutResult,
};

use super::DeltaLake;
use crate::lake::StagedFile;
use crate::schema::{Catalog, Table};
use crate::sink::{FileWriter, ObjectKey, StoreRoot, WriterId};
use crate::spool::Seq;

/// An in-memory store with one fault on one chosen object (also used by the batcher's tests).
#[derive(Debug)]
pub(crate) struct LosesAnswer {
    pub(crate) inner: InMemory,
    pub(crate) target: String,
    pub(crate) lost: AtomicBool,
    /// Instead of losing the answer: right after the write, another writer's entry replaces it
    /// (a create-only PUT that is not atomic).
    pub(crate) clobber: bool,
    /// Before writing the target, wait for a permit (the test decides when the write happens).
    pub(crate) gate: Option<tokio::sync::Semaphore>,
}

impl LosesAnswer {
    /// A store that holds the write of `target` until the gate opens, and does nothing else.
    pub(crate) fn gated(target: &str) -> LosesAnswer {
        LosesAnswer {
            inner: InMemory::new(),
            target: target.into(),
            lost: AtomicBool::new(true),
            clobber: false,
            gate: Some(tokio::sync::Semaphore::new(0)),
        }
    }
}

impl std::fmt::Display for LosesAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LosesAnswer({})", self.target)
    }
}

#[async_trait::async_trait]
impl ObjectStore for LosesAnswer {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        if let Some(gate) = &self.gate
            && location.as_ref() == self.target
        {
            let _ = gate.acquire().await;
        }
        let result = self.inner.put_opts(location, payload, opts).await;
        if result.is_ok() && location.as_ref() == self.target && !self.lost.swap(true, Ordering::SeqCst) {
            if self.clobber {
                let other = "{\"commitInfo\":{}}\n{\"txn\":{\"appId\":\"oncehub-bridge-other\",\"version\":1}}\n";
                self.inner.put(location, PutPayload::from_static(other.as_bytes())).await?;
                return result;
            }
            return Err(object_store::Error::Generic { store: "test", source: "connection reset by peer".into() });
        }
        result
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> object_store::Result<GetResult> {
        self.inner.get_opts(location, options).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

fn lake(store: Arc<dyn ObjectStore>, writer: &str) -> Arc<DeltaLake> {
    let root = StoreRoot { store, url: url::Url::parse("memory:///").unwrap() };
    Arc::new(DeltaLake::new(&root, None, &WriterId::parse(writer).unwrap(), Arc::new(Catalog::load().unwrap())))
}

/// A staged (zero-row) bookings file of `writer` for records `first..=last`, with real statistics.
fn staged(lake: &DeltaLake, writer: &str, first: u64, last: u64) -> StagedFile {
    let spec = lake.prepare(Table::Bookings).unwrap();
    let schema = Catalog::load().unwrap().table(Table::Bookings).arrow.clone();
    let mut file = FileWriter::new(schema.clone(), Some(&spec)).unwrap();
    file.write(&RecordBatch::new_empty(schema)).unwrap();
    let encoded = file.finish().unwrap();
    let dt = chrono::NaiveDate::from_ymd_opt(2026, 12, 1).unwrap();
    let writer = WriterId::parse(writer).unwrap();
    StagedFile {
        table: Table::Bookings,
        dt,
        key: ObjectKey::for_batch(Table::Bookings, dt, &writer, Seq(first), Seq(last)),
        size: encoded.bytes.len() as u64,
        rows: 0,
        stats: encoded.stats.unwrap(),
        first: Seq(first),
        last: Seq(last),
        received_at: Vec::new(),
        seqs: Vec::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_whose_answer_was_lost_is_found_in_the_table_not_made_twice() {
    let store = Arc::new(LosesAnswer {
        inner: InMemory::new(),
        target: "bookings/_delta_log/00000000000000000001.json".into(),
        lost: AtomicBool::new(false),
        clobber: false,
        gate: None,
    });
    let lake = lake(store.clone(), "w1");
    let outcome = tokio::task::spawn_blocking(move || {
        let file = staged(&lake, "w1", 1, 5);
        let first = lake.commit(Table::Bookings, std::slice::from_ref(&file));
        let again = lake.commit(Table::Bookings, std::slice::from_ref(&file)).unwrap();
        let names = lake.committed_names(Table::Bookings, &WriterId::parse("w1").unwrap()).unwrap();
        (first.is_err(), again, names.len(), lake.app_version(Table::Bookings))
    })
    .await
    .unwrap();
    let (first_failed, again, files, app_version) = outcome;
    assert!(first_failed, "the lost answer is an error");
    assert!(again.already_landed, "the retry finds the marker: {again:?}");
    assert_eq!((again.table_version, again.txn_version), (1, 5));
    assert_eq!((files, app_version), (1, Some(5)), "the file is in the table once");
    let second = Path::from("bookings/_delta_log/00000000000000000002.json");
    assert!(store.inner.head(&second).await.is_err(), "no second log entry was written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conflict_with_another_writer_is_retried_on_the_new_version() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let (a, b) = (lake(store.clone(), "a"), lake(store, "b"));
    let (ra, rb, names) = tokio::task::spawn_blocking(move || {
        let (fa, fb) = (staged(&a, "a", 1, 3), staged(&b, "b", 1, 4));
        // Both read version 0; a commits first, so b's snapshot is stale.
        let ra = a.commit(Table::Bookings, &[fa]).unwrap();
        let rb = b.commit(Table::Bookings, &[fb]).unwrap();
        let names = (
            a.committed_names(Table::Bookings, &WriterId::parse("a").unwrap()).unwrap().len(),
            b.committed_names(Table::Bookings, &WriterId::parse("b").unwrap()).unwrap().len(),
        );
        (ra, rb, names)
    })
    .await
    .unwrap();
    assert_eq!((ra.table_version, ra.conflicts), (1, 0));
    assert_eq!((rb.table_version, rb.conflicts), (2, 1), "b lost version 1 and took 2: {rb:?}");
    assert_eq!(names, (1, 1), "each file once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_another_writer_replaced_is_found_by_reading_it_back_and_made_again() {
    let store = Arc::new(LosesAnswer {
        inner: InMemory::new(),
        target: "bookings/_delta_log/00000000000000000001.json".into(),
        lost: AtomicBool::new(false),
        clobber: true,
        gate: None,
    });
    let lake = lake(store.clone(), "w1");
    let (report, files) = tokio::task::spawn_blocking(move || {
        let file = staged(&lake, "w1", 1, 5);
        let report = lake.commit(Table::Bookings, &[file]).unwrap();
        (report, lake.committed_names(Table::Bookings, &WriterId::parse("w1").unwrap()).unwrap().len())
    })
    .await
    .unwrap();
    assert_eq!((report.table_version, report.conflicts), (2, 1), "made again on the next version: {report:?}");
    assert_eq!(files, 1, "the file is in the table once");
}
