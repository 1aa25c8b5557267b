//! The OnceHub v2 API: a client (`client`, wire types in `dto`, one error type in `error`) and
//! subscription management on top of it (`subscription`, with its local state in `state`).
//! Facts about the API: shared/oncehub-api.md.

pub mod client;
pub mod dto;
pub mod error;
pub mod state;
pub mod subscription;
pub mod watch;

pub use client::{DEFAULT_BASE_URL, OnceHubClient};
pub use error::{ApiError, ApiErrorKind};
pub use state::SubscriptionState;
pub use subscription::{Desired, Ensured, SubscriptionError, ensure};
pub use watch::SubscriptionWatch;
