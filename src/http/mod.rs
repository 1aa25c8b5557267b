//! The HTTP receiver: routes, shared state, and the one error type that maps to statuses.
//!
//! `POST /webhooks/oncehub` takes deliveries (see `webhook`), `GET /healthz` answers liveness.
//! Nothing under this module knows about Arrow, Parquet or storage: a verified delivery goes to
//! the spool and that is all.

mod body;
mod error;
mod health;
pub mod signature;
mod webhook;

pub use error::WebhookError;

use actix_web::web;

use crate::spool::Spool;
use signature::Verifier;

/// The path OnceHub posts to.
pub const WEBHOOK_PATH: &str = "/webhooks/oncehub";

/// What the webhook handler needs, shared by all workers.
#[derive(Debug)]
pub struct WebhookState {
    pub verifier: Verifier,
    pub spool: Spool,
    pub max_body_bytes: usize,
}

/// Registers every route.
pub fn configure(cfg: &mut web::ServiceConfig, state: web::Data<WebhookState>) {
    cfg.app_data(state)
        .route(WEBHOOK_PATH, web::post().to(webhook::receive))
        .route("/healthz", web::get().to(health::healthz));
}
