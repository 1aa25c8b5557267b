//! Create-only uploads with retries: the one place that repeats store writes.
//!
//! A file goes up with `PutMode::Create`, or, above the multipart threshold, as a multipart upload
//! after a `HEAD` finds no object of that name. An existing object counts as written: keys are
//! deterministic (see `key`), so it holds the same rows. Where a backend refuses conditional puts
//! (`NotImplemented`), the upload falls back to `HEAD` then an overwriting `PUT`. Every other error
//! is retried with capped exponential backoff until it succeeds or the caller aborts: a batch is
//! never dropped because of a store error.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, WriteMultipart};
use tokio_util::sync::CancellationToken;

use super::key::ObjectKey;

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
}

const PART_SIZE: usize = 8 * 1024 * 1024;

impl Uploader {
    pub fn new(store: Arc<dyn ObjectStore>) -> Uploader {
        Uploader { store, multipart_threshold: 16 * 1024 * 1024, backoff_max: Duration::from_secs(30) }
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
        let mut attempts = 0u32;
        let mut delay = Duration::from_millis(200);
        loop {
            attempts += 1;
            let last_error = match self.put_once(key, bytes.clone()).await {
                Ok(outcome) => return Ok(outcome),
                Err(e) => e.to_string(),
            };
            crate::metrics::store_error("put");
            tracing::warn!(key = %key, attempts, error = %last_error, retry_in_ms = delay.as_millis() as u64, "store write failed; retrying");
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = abort.cancelled() => return Err(UploadAborted { key: key.to_string(), attempts, last_error }),
            }
            delay = (delay * 2).min(self.backoff_max);
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
}
