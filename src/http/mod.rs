//! The HTTP receiver: routes, shared state, and the one error type that maps to statuses.
//!
//! `POST /webhooks/oncehub` takes deliveries (see `webhook`); `GET /healthz`, `GET /readyz` and
//! `GET /metrics` are for operators (see `health`), with the delivery inspector at `/` (see
//! `inspector`), on the same listener or on `--admin-listen`.
//! Nothing under this module knows about Arrow, Parquet or storage: a verified delivery goes to
//! the spool and that is all.

mod body;
mod error;
mod health;
mod inspector;
pub(crate) mod tls;
mod webhook;

pub(crate) use error::WebhookError;
pub(crate) use health::AdminState;
pub(crate) use inspector::InspectorAccess;

use actix_web::web;

use crate::oncehub::WEBHOOK_PATH;
use crate::oncehub::signature::Verifier;
use crate::spool::Spool;

/// What the webhook handler needs, shared by all workers.
#[derive(Debug)]
pub(crate) struct WebhookState {
    pub verifier: Verifier,
    pub spool: Spool,
    pub max_body_bytes: usize,
    pub body_timeout: std::time::Duration,
    /// Set unless `--inspector off`: every delivery is recorded there after it is answered.
    pub inspector: Option<std::sync::Arc<crate::inspector::Inspector>>,
}

/// The webhook route, and `/healthz` (container health checks look for it on the main port).
pub(crate) fn configure_webhook(cfg: &mut web::ServiceConfig, state: web::Data<WebhookState>) {
    cfg.app_data(state)
        .route(WEBHOOK_PATH, web::post().to(webhook::receive))
        .route("/healthz", get_or_head().to(health::healthz));
}

/// A route answering GET, and HEAD the same way (actix sends HEAD answers without their body).
fn get_or_head() -> actix_web::Route {
    use actix_web::guard;
    web::route().guard(guard::Any(guard::Get()).or(guard::Head()))
}

/// `/readyz` and `/metrics` (plus `/healthz` when on a listener of their own), and the delivery
/// inspector (`/`, `/api/*`) unless it is off.
pub(crate) fn configure_admin(cfg: &mut web::ServiceConfig, state: web::Data<AdminState>, with_healthz: bool) {
    if state.inspector.is_some() {
        inspector::configure(cfg);
    }
    cfg.app_data(state)
        .route("/readyz", get_or_head().to(health::readyz))
        .route("/metrics", web::get().to(health::metrics));
    if with_healthz {
        cfg.route("/healthz", get_or_head().to(health::healthz));
    }
}
