//! Create-only uploads with retries: the one place that repeats store writes.
//!
//! A file goes up with `PutMode::Create`, or, above the multipart threshold, as a multipart upload
//! after a `HEAD` finds no object of that name. An existing object counts as written: keys are
//! deterministic (see `key`), so it holds the same rows. Where a backend refuses conditional puts
//! (`NotImplemented`), the upload falls back to `HEAD` then an overwriting `PUT`.
//!
//! A failure that retrying can fix (a timeout, a 5xx, a dropped connection: object_store's
//! `Generic`) is retried with capped exponential backoff. One that it cannot (access denied, bad
//! credentials, no such bucket, an invalid path) is reported at once: an ERROR naming the cause,
//! `oncehub_bridge_store_errors_total{kind="permanent"}`, and `/readyz` (see [`Uploader::refusal`]).
//! It is still retried, at the longest interval, until the settings are fixed: a batch is never
//! dropped because of a store error, and it stays in the spool meanwhile.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, WriteMultipart};
use tokio::io::AsyncReadExt;
use tokio_util::sync::CancellationToken;

use super::key::ObjectKey;
use super::staging::FileBody;

/// How an upload ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    Created,
    /// An object with this key was already there (a replay after a crash): nothing written.
    AlreadyExisted,
}

/// The caller gave up before the store accepted the file.
#[derive(Debug, thiserror::Error)]
#[error("upload of {key} aborted after {attempts} failed attempts; last error: {last_error}")]
pub struct UploadAborted {
    pub key: String,
    pub attempts: u32,
    pub last_error: String,
}

/// Writes files to the store.
#[derive(Debug, Clone)]
pub struct Uploader {
    store: Arc<dyn ObjectStore>,
    multipart_threshold: usize,
    backoff_max: Duration,
    /// The last write's permanent refusal (its kind and text), until a write succeeds; shared by
    /// clones.
    refusal: Arc<Mutex<Option<(&'static str, String)>>>,
}

/// The kind of a store error that retrying cannot fix, or `None` when it can.
pub fn permanent_kind(e: &object_store::Error) -> Option<&'static str> {
    use object_store::Error as E;
    Some(match e {
        E::PermissionDenied { .. } => "permission denied",
        E::Unauthenticated { .. } => "not authenticated",
        E::NotFound { .. } => "not found",
        E::InvalidPath { .. } => "invalid path",
        E::NotSupported { .. } => "not supported",
        E::UnknownConfigurationKey { .. } => "unknown configuration key",
        // object_store maps 401/403 to the kinds above for object requests, but a listing's
        // refusal stays `Generic`: its text names the status (the type holding it is private).
        E::Generic { source, .. } if refused_by_status(source.as_ref()) => "permission denied",
        _ => return None,
    })
}

/// The error, or one of its sources, is an HTTP 401 or 403 answer.
fn refused_by_status(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(e);
    while let Some(e) = next {
        let text = e.to_string();
        if text.contains("status code: 401") || text.contains("status code: 403") {
            return true;
        }
        next = e.source();
    }
    false
}

const PART_SIZE: usize = 8 * 1024 * 1024;
/// Parts of one staged file being uploaded at once.
const MAX_PARTS_IN_FLIGHT: usize = 2;

impl Uploader {
    pub fn new(store: Arc<dyn ObjectStore>) -> Uploader {
        let refusal = Arc::new(Mutex::new(None));
        Uploader { store, multipart_threshold: 16 * 1024 * 1024, backoff_max: Duration::from_secs(30), refusal }
    }

    /// Why the store refuses writes, when the last one failed for a reason retrying cannot fix.
    pub fn refusal(&self) -> Option<String> {
        self.refusal.lock().unwrap_or_else(|p| p.into_inner()).as_ref().map(|(_, text)| text.clone())
    }

    /// Notes the current refusal; true when its kind changed (a new state worth a log line).
    fn set_refusal(&self, refusal: Option<(&'static str, String)>) -> bool {
        let mut current = self.refusal.lock().unwrap_or_else(|p| p.into_inner());
        let changed = current.as_ref().map(|(k, _)| *k) != refusal.as_ref().map(|(k, _)| *k);
        *current = refusal;
        changed
    }

    /// Files larger than this go up by multipart upload.
    pub fn with_multipart_threshold(mut self, bytes: usize) -> Uploader {
        self.multipart_threshold = bytes;
        self
    }

    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// Uploads, retrying every failure until success or `abort` is cancelled.
    pub async fn put(
        &self,
        key: &ObjectKey,
        bytes: Bytes,
        abort: &CancellationToken,
    ) -> Result<PutOutcome, UploadAborted> {
        self.retrying(key, abort, || self.put_once(key, bytes.clone())).await
    }

    /// Uploads a finished file from memory or from its staging file, retrying like [`Uploader::put`].
    pub async fn put_file(
        &self,
        key: &ObjectKey,
        body: &FileBody,
        abort: &CancellationToken,
    ) -> Result<PutOutcome, UploadAborted> {
        match body {
            FileBody::Memory(bytes) => self.put(key, bytes.clone(), abort).await,
            FileBody::Disk { path, len } => self.retrying(key, abort, || self.put_staged_once(key, path, *len)).await,
        }
    }

    async fn retrying<F, Fut>(
        &self,
        key: &ObjectKey,
        abort: &CancellationToken,
        mut attempt: F,
    ) -> Result<PutOutcome, UploadAborted>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = object_store::Result<PutOutcome>>,
    {
        let mut attempts = 0u32;
        let mut delay = Duration::from_millis(200);
        loop {
            attempts += 1;
            let e = match attempt().await {
                Ok(outcome) => {
                    self.succeeded(key.as_str());
                    return Ok(outcome);
                }
                Err(e) => e,
            };
            let wait = self.failed(key.as_str(), &e, attempts, delay);
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = abort.cancelled() => {
                    return Err(UploadAborted { key: key.to_string(), attempts, last_error: e.to_string() });
                }
            }
            delay = (wait * 2).min(self.backoff_max);
        }
    }

    /// A write to the store (an upload, a Delta log entry) succeeded: clears a refusal.
    pub fn succeeded(&self, what: &str) {
        if self.set_refusal(None) {
            tracing::info!(key = %what, "the store accepts writes again");
        }
    }

    /// A write to the store failed: counts and logs it (a refusal retrying cannot fix once, as
    /// an ERROR, and in `/readyz`); returns how long to wait before the next attempt.
    pub fn failed(&self, what: &str, e: &object_store::Error, attempts: u32, delay: Duration) -> Duration {
        let last_error = e.to_string();
        if let Some(kind) = permanent_kind(e) {
            crate::metrics::store_error("put", "permanent");
            let delay = self.backoff_max;
            if self.set_refusal(Some((kind, last_error.clone()))) {
                tracing::error!(
                    key = %what, kind, error = %last_error, retry_in_ms = delay.as_millis() as u64,
                    "the store refuses writes, and retrying will not fix it: check the storage URL, bucket and credentials; the batch stays in the spool and is retried"
                );
            }
            delay
        } else {
            crate::metrics::store_error("put", "transient");
            tracing::warn!(key = %what, attempts, error = %last_error, retry_in_ms = delay.as_millis() as u64, "store write failed; retrying");
            delay
        }
    }

    /// One attempt, no retries.
    pub async fn put_once(&self, key: &ObjectKey, bytes: Bytes) -> object_store::Result<PutOutcome> {
        let path = Path::from(key.as_str());
        if bytes.len() > self.multipart_threshold {
            return self.put_multipart(&path, bytes).await;
        }
        let opts = PutOptions { mode: PutMode::Create, ..Default::default() };
        match self.store.put_opts(&path, PutPayload::from_bytes(bytes.clone()), opts).await {
            Ok(_) => Ok(PutOutcome::Created),
            Err(object_store::Error::AlreadyExists { .. }) => Ok(PutOutcome::AlreadyExisted),
            Err(object_store::Error::NotImplemented { .. }) => self.put_if_absent(&path, bytes).await,
            Err(e) => Err(e),
        }
    }

    async fn exists(&self, path: &Path) -> object_store::Result<bool> {
        match self.store.head(path).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn put_if_absent(&self, path: &Path, bytes: Bytes) -> object_store::Result<PutOutcome> {
        if self.exists(path).await? {
            return Ok(PutOutcome::AlreadyExisted);
        }
        self.store.put(path, PutPayload::from_bytes(bytes)).await?;
        Ok(PutOutcome::Created)
    }

    async fn put_multipart(&self, path: &Path, bytes: Bytes) -> object_store::Result<PutOutcome> {
        if self.exists(path).await? {
            return Ok(PutOutcome::AlreadyExisted);
        }
        let upload = self.store.put_multipart(path).await?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
        writer.put(bytes);
        writer.finish().await?;
        Ok(PutOutcome::Created)
    }

    /// One attempt at a staged file: a small one is read whole and put create-only; a large one
    /// goes up part by part, so memory holds a few parts, never the file.
    async fn put_staged_once(
        &self,
        key: &ObjectKey,
        staged: &std::path::Path,
        len: u64,
    ) -> object_store::Result<PutOutcome> {
        let mut file = tokio::fs::File::open(staged).await.map_err(|e| staging_read(staged, e))?;
        if len <= self.multipart_threshold as u64 {
            let mut bytes = Vec::with_capacity(len as usize);
            file.read_to_end(&mut bytes).await.map_err(|e| staging_read(staged, e))?;
            return self.put_once(key, Bytes::from(bytes)).await;
        }
        let path = Path::from(key.as_str());
        if self.exists(&path).await? {
            return Ok(PutOutcome::AlreadyExisted);
        }
        let mut writer = WriteMultipart::new_with_chunk_size(self.store.put_multipart(&path).await?, PART_SIZE);
        let sent = async {
            loop {
                let mut part = Vec::with_capacity(PART_SIZE);
                (&mut file).take(PART_SIZE as u64).read_to_end(&mut part).await.map_err(|e| staging_read(staged, e))?;
                if part.is_empty() {
                    return Ok(());
                }
                writer.wait_for_capacity(MAX_PARTS_IN_FLIGHT).await?;
                writer.put(Bytes::from(part));
            }
        }
        .await;
        match sent {
            Ok(()) => writer.finish().await?,
            Err(e) => {
                let _ = writer.abort().await;
                return Err(e);
            }
        };
        Ok(PutOutcome::Created)
    }
}

/// A staging file could not be read back: retried like a store failure (the disk may recover;
/// the rows are in the spool either way).
fn staging_read(path: &std::path::Path, e: std::io::Error) -> object_store::Error {
    object_store::Error::Generic { store: "staging", source: format!("reading {}: {e}", path.display()).into() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::Table;
    use crate::sink::key::WriterId;
    use crate::spool::Seq;
    use object_store::memory::InMemory;

    fn key() -> ObjectKey {
        let dt = chrono::NaiveDate::from_ymd_opt(2026, 1, 1).unwrap();
        ObjectKey::for_batch(Table::Bookings, dt, &WriterId::parse("w").unwrap(), Seq(1), Seq(2))
    }

    #[test]
    fn a_refused_listing_is_permanent_and_a_server_error_is_not() {
        let generic = |text: &str| object_store::Error::Generic { store: "S3", source: text.to_owned().into() };
        let refused =
            generic("Error performing list request: Server returned non-2xx status code: 403 Forbidden: <Error/>");
        assert_eq!(permanent_kind(&refused), Some("permission denied"));
        assert_eq!(permanent_kind(&generic("Server returned non-2xx status code: 503 Service Unavailable")), None);
        assert_eq!(permanent_kind(&generic("error sending request")), None);
    }

    #[tokio::test]
    async fn second_write_of_a_key_counts_as_written_and_keeps_the_first() {
        let up = Uploader::new(Arc::new(InMemory::new()));
        assert_eq!(up.put_once(&key(), Bytes::from_static(b"one")).await.unwrap(), PutOutcome::Created);
        assert_eq!(up.put_once(&key(), Bytes::from_static(b"two")).await.unwrap(), PutOutcome::AlreadyExisted);
        let got = up.store().get(&Path::from(key().as_str())).await.unwrap().bytes().await.unwrap();
        assert_eq!(got, "one");
    }

    #[tokio::test]
    async fn large_files_go_multipart_and_are_also_create_only() {
        let up = Uploader::new(Arc::new(InMemory::new())).with_multipart_threshold(4);
        let big = Bytes::from(vec![7u8; PART_SIZE + 10]);
        assert_eq!(up.put_once(&key(), big.clone()).await.unwrap(), PutOutcome::Created);
        assert_eq!(up.put_once(&key(), big.clone()).await.unwrap(), PutOutcome::AlreadyExisted);
        let got = up.store().get(&Path::from(key().as_str())).await.unwrap().bytes().await.unwrap();
        assert_eq!(got.len(), big.len());
    }

    #[tokio::test]
    async fn staged_files_go_up_whole_or_part_by_part_and_create_only() {
        let tmp = tempfile::tempdir().unwrap();
        let staged = tmp.path().join("f.parquet");
        let big: Vec<u8> = (0..(2 * PART_SIZE + 123)).map(|i| (i % 251) as u8).collect();
        std::fs::write(&staged, &big).unwrap();
        let body = FileBody::Disk { path: staged, len: big.len() as u64 };
        let abort = CancellationToken::new();
        for threshold in [usize::MAX, 4] {
            let up = Uploader::new(Arc::new(InMemory::new())).with_multipart_threshold(threshold);
            assert_eq!(up.put_file(&key(), &body, &abort).await.unwrap(), PutOutcome::Created);
            assert_eq!(up.put_file(&key(), &body, &abort).await.unwrap(), PutOutcome::AlreadyExisted);
            let got = up.store().get(&Path::from(key().as_str())).await.unwrap().bytes().await.unwrap();
            assert!(got == big, "threshold {threshold}: {} bytes came back of {}", got.len(), big.len());
        }
    }

    #[tokio::test]
    async fn a_staged_file_that_cannot_be_read_is_retried_until_the_abort() {
        let up = Uploader::new(Arc::new(InMemory::new()));
        let body = FileBody::Disk { path: "/nonexistent/staged.parquet".into(), len: 3 };
        let abort = CancellationToken::new();
        abort.cancel();
        let e = up.put_file(&key(), &body, &abort).await.unwrap_err();
        assert!(e.last_error.contains("/nonexistent/staged.parquet"), "{e}");
        assert!(up.store().head(&Path::from(key().as_str())).await.is_err(), "nothing was written");
    }
}
