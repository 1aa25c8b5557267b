//! The sink: Arrow batches become Parquet files (`encode`), named deterministically (`key`), and
//! are written create-only to an object store chosen by URL (`store`) with retries (`upload`).

pub mod encode;
pub mod key;
pub mod store;
pub mod upload;

pub use encode::{EncodeError, FileWriter};
pub use key::{ObjectKey, WriterId};
pub use store::{StorageUrl, StoreError, open_store};
pub use upload::{PutOutcome, Uploader};
