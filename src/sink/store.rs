//! Opening the object store named by the storage URL.
//!
//! `s3://bucket/prefix` (AWS S3, MinIO, R2...: settings from the standard `AWS_*` environment
//! variables, `AWS_ENDPOINT_URL` and `AWS_ALLOW_HTTP` included), `gs://bucket/prefix` (`GOOGLE_*`),
//! `az://container/prefix` (`AZURE_*`), `file:///abs/path` or a plain path, and `memory://`.
//! A URL's path becomes a key prefix. Credentials never appear in this module's errors: they come
//! from the environment, and URLs are shown without any user-info.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use object_store::aws::AmazonS3Builder;
use object_store::azure::MicrosoftAzureBuilder;
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::prefix::PrefixStore;
use object_store::{BackoffConfig, ObjectStore, RetryConfig};
use url::Url;

/// Where the lake lives, parsed from `--storage-url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageUrl {
    S3(Url),
    Gcs(Url),
    Azure(Url),
    Local(PathBuf),
    Memory,
}

/// The storage URL or the store it names is unusable.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("unsupported storage URL scheme {0:?}: use s3://, gs://, az://, file://, memory:// or a path")]
    Scheme(String),
    #[error("invalid storage URL: {0}")]
    Url(String),
    #[error("cannot create the local lake directory {path}: {source}")]
    LocalDir { path: PathBuf, source: std::io::Error },
    #[error("cannot configure the object store for {url}: {message}")]
    Build { url: String, message: String },
}

impl StorageUrl {
    /// Parses a URL or a path; a relative path is taken from `cwd`.
    pub fn parse(text: &str, cwd: &Path) -> Result<StorageUrl, StoreError> {
        let text = text.trim();
        let Some((scheme, _)) = text.split_once("://") else {
            return Ok(StorageUrl::Local(crate::config::resolve(cwd, Path::new(text))));
        };
        let url = Url::parse(text).map_err(|e| StoreError::Url(e.to_string()))?;
        match scheme.to_ascii_lowercase().as_str() {
            "s3" | "s3a" => Ok(StorageUrl::S3(url)),
            "gs" => Ok(StorageUrl::Gcs(url)),
            "az" | "azure" | "abfs" | "abfss" => Ok(StorageUrl::Azure(url)),
            "memory" => Ok(StorageUrl::Memory),
            "file" => url
                .to_file_path()
                .map(StorageUrl::Local)
                .map_err(|()| StoreError::Url("file:// URLs need an absolute path".into())),
            other => Err(StoreError::Scheme(other.to_owned())),
        }
    }

    /// The key prefix inside the bucket (empty for local paths and memory).
    fn prefix(&self) -> &str {
        match self {
            StorageUrl::S3(u) | StorageUrl::Gcs(u) | StorageUrl::Azure(u) => u.path().trim_matches('/'),
            StorageUrl::Local(_) | StorageUrl::Memory => "",
        }
    }
}

impl std::fmt::Display for StorageUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StorageUrl::S3(u) | StorageUrl::Gcs(u) | StorageUrl::Azure(u) => {
                let mut shown = u.clone();
                let _ = shown.set_username("");
                let _ = shown.set_password(None);
                write!(f, "{shown}")
            }
            StorageUrl::Local(p) => write!(f, "{}", p.display()),
            StorageUrl::Memory => f.write_str("memory://"),
        }
    }
}

/// Client-level retries stay short: the uploader's own loop retries without limit and logs.
fn client_retry() -> RetryConfig {
    RetryConfig {
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
            base: 2.0,
        },
        max_retries: 3,
        retry_timeout: Duration::from_secs(30),
    }
}

/// The store at the root of the storage URL's bucket (no key prefix), and the URL of the lake's
/// root in it: what the Delta kernel works with, since it maps a table URL's path to a key.
#[derive(Debug, Clone)]
pub struct StoreRoot {
    pub store: Arc<dyn ObjectStore>,
    /// Ends with `/`: `s3://bucket/prefix/`, `file:///abs/lake/`, `memory:///`.
    pub url: Url,
}

/// Opens the store. Builds clients only; does not touch the network. Keys are relative to the
/// storage URL (its prefix applied).
pub fn open_store(url: &StorageUrl) -> Result<Arc<dyn ObjectStore>, StoreError> {
    from_root(url, open_root(url)?)
}

/// The store whose keys are relative to the storage URL, over its root.
pub fn from_root(url: &StorageUrl, root: StoreRoot) -> Result<Arc<dyn ObjectStore>, StoreError> {
    if let StorageUrl::Local(path) = url {
        let store = LocalFileSystem::new_with_prefix(path)
            .map_err(|e| StoreError::Build { url: url.to_string(), message: e.to_string() })?;
        return Ok(Arc::new(store));
    }
    Ok(match url.prefix() {
        "" => root.store,
        prefix => Arc::new(PrefixStore::new(root.store, prefix)),
    })
}

/// Opens the bucket-level store and names the lake's root URL in it.
pub fn open_root(url: &StorageUrl) -> Result<StoreRoot, StoreError> {
    let build_err = |e: object_store::Error| StoreError::Build { url: url.to_string(), message: e.to_string() };
    let store: Arc<dyn ObjectStore> = match url {
        StorageUrl::S3(u) => Arc::new(
            AmazonS3Builder::from_env().with_url(u.as_str()).with_retry(client_retry()).build().map_err(build_err)?,
        ),
        StorageUrl::Gcs(u) => Arc::new(
            GoogleCloudStorageBuilder::from_env()
                .with_url(u.as_str())
                .with_retry(client_retry())
                .build()
                .map_err(build_err)?,
        ),
        StorageUrl::Azure(u) => Arc::new(
            MicrosoftAzureBuilder::from_env()
                .with_url(u.as_str())
                .with_retry(client_retry())
                .build()
                .map_err(build_err)?,
        ),
        StorageUrl::Memory => Arc::new(InMemory::new()),
        StorageUrl::Local(path) => {
            std::fs::create_dir_all(path).map_err(|source| StoreError::LocalDir { path: path.clone(), source })?;
            Arc::new(LocalFileSystem::new())
        }
    };
    let root = match url {
        StorageUrl::S3(u) | StorageUrl::Gcs(u) | StorageUrl::Azure(u) => bucket_root(u, url.prefix())?,
        StorageUrl::Memory => Url::parse("memory:///").map_err(|e| StoreError::Url(e.to_string()))?,
        StorageUrl::Local(path) => {
            let dir = path.canonicalize().map_err(|source| StoreError::LocalDir { path: path.clone(), source })?;
            Url::from_directory_path(&dir)
                .map_err(|()| StoreError::Url(format!("{} is not an absolute path", dir.display())))?
        }
    };
    Ok(StoreRoot { store, url: root })
}

/// `scheme://bucket/prefix/` without user-info, query or fragment.
fn bucket_root(u: &Url, prefix: &str) -> Result<Url, StoreError> {
    let host = u.host_str().unwrap_or_default();
    let path = if prefix.is_empty() { String::new() } else { format!("{prefix}/") };
    Url::parse(&format!("{}://{host}/{path}", u.scheme())).map_err(|e| StoreError::Url(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_paths_parse() {
        let cwd = Path::new("/work");
        assert_eq!(StorageUrl::parse("lake", cwd).unwrap(), StorageUrl::Local("/work/lake".into()));
        assert_eq!(StorageUrl::parse("/abs/lake", cwd).unwrap(), StorageUrl::Local("/abs/lake".into()));
        assert_eq!(StorageUrl::parse("file:///abs/lake", cwd).unwrap(), StorageUrl::Local("/abs/lake".into()));
        assert_eq!(StorageUrl::parse("memory://", cwd).unwrap(), StorageUrl::Memory);
        let s3 = StorageUrl::parse("s3://bucket/some/prefix/", cwd).unwrap();
        assert_eq!(s3.prefix(), "some/prefix");
        assert!(matches!(StorageUrl::parse("ftp://x/y", cwd), Err(StoreError::Scheme(_))));
    }

    #[test]
    fn display_hides_user_info() {
        let u = StorageUrl::parse("s3://AKIAKEY:hunter2@bucket/p", Path::new("/")).unwrap();
        let shown = u.to_string();
        assert!(!shown.contains("hunter2") && !shown.contains("AKIAKEY"), "{shown}");
    }
}
