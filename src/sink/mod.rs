//! The sink: Arrow batches become Parquet files (`encode`, with Delta statistics: `stats`), staged
//! on local disk while they fill (`staging`), named deterministically (`key`), and are written
//! create-only to an object store chosen by URL (`store`) with retries (`upload`).

pub mod encode;
pub mod key;
pub mod staging;
pub mod stats;
pub mod store;
pub mod upload;

pub use encode::{EncodeError, Encoded, FileWriter};
pub use key::{ObjectKey, WriterId};
pub use staging::{FileBody, StagingDir, StagingSink};
pub use stats::StatsSpec;
pub use store::{StorageUrl, StoreError, StoreRoot, from_root, open_root, open_store};
pub use upload::{PutOutcome, Uploader};
