//! Everything OnceHub defines: the webhook path and the `Oncehub-Signature` scheme (`signature`,
//! sign and verify), the v2 API client (`client`, wire types in `dto`, one error type in `error`)
//! and subscription management on top of it (`subscription`, with its local state in `state`).
//! Facts about the API: shared/oncehub-api.md. This module imports neither `http` nor the
//! commands; they import it.

pub mod client;
pub mod dto;
pub mod error;
pub mod signature;
pub mod state;
pub mod subscription;
pub mod watch;

pub use client::{DEFAULT_BASE_URL, OnceHubClient};
pub use error::{ApiError, ApiErrorKind};
pub use state::SubscriptionState;
pub use subscription::{Desired, Ensured, SubscriptionError, ensure};
pub use watch::SubscriptionWatch;

/// The path OnceHub posts to (the receiver serves it; the subscription URL ends with it).
pub const WEBHOOK_PATH: &str = "/webhooks/oncehub";
