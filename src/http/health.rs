//! Operations endpoints: `GET /healthz` (the process answers), `GET /readyz` (every part a
//! delivery needs works: 200, or 503 naming the failing part), `GET /metrics` (Prometheus text).
//!
//! `/readyz` checks, each on every call: the spool would take a delivery (open, under its size
//! limit, disk not nearly full); the store answers a listing of the lake's root within
//! [`STORE_PROBE_TIMEOUT`] and did not refuse the last write for good (access denied, no bucket); and, when the service manages its OnceHub subscription, that the
//! subscription is in place (see `oncehub::watch`). Messages name the part and the reason, never a credential.

use std::sync::Arc;
use std::time::Duration;

use actix_web::{HttpResponse, web};
use object_store::ObjectStore;
use serde_json::{Map, Value, json};

use crate::metrics;
use crate::oncehub::SubscriptionWatch;
use crate::sink::Uploader;
use crate::spool::Spool;

/// A store that does not answer a listing within this is reported unreachable.
pub(super) const STORE_PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// What the operations endpoints look at.
#[derive(Debug, Clone)]
pub(crate) struct AdminState {
    pub spool: Spool,
    pub store: Arc<dyn ObjectStore>,
    /// The batcher's uploads: a permanent refusal of the last write fails the store check.
    pub uploads: Uploader,
    /// Set when `serve` manages its OnceHub subscription.
    pub subscription: Option<Arc<SubscriptionWatch>>,
    /// The delivery inspector, unless `--inspector off`.
    pub inspector: Option<super::inspector::InspectorAccess>,
}

pub(super) async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

pub(super) async fn readyz(state: web::Data<AdminState>) -> HttpResponse {
    let (ready, checks) = readiness(&state).await;
    let status = if ready { "ready" } else { "not_ready" };
    let body = json!({ "status": status, "checks": checks });
    if ready { HttpResponse::Ok().json(body) } else { HttpResponse::ServiceUnavailable().json(body) }
}

/// Every check, each `ok` (or a note) or the reason it fails; whether all pass.
pub(super) async fn readiness(state: &AdminState) -> (bool, Map<String, Value>) {
    let store = match state.uploads.refusal() {
        Some(refusal) => Err(format!("the store refuses writes: {refusal}")),
        None => store_check(state.store.as_ref()).await,
    };
    let mut checks = vec![("spool", spool_check(&state.spool)), ("store", store)];
    if let Some(watch) = &state.subscription {
        checks.push(("subscription", watch.status().await));
    }
    let ready = checks.iter().all(|(_, r)| r.is_ok());
    let mut body = Map::new();
    for (part, result) in checks {
        let text = match result {
            Ok(note) => note,
            Err(reason) => {
                tracing::warn!(part, reason = %reason, "not ready");
                reason
            }
        };
        body.insert(part.to_owned(), Value::String(text));
    }
    (ready, body)
}

fn spool_check(spool: &Spool) -> Result<String, String> {
    spool.readiness().map(|()| "ok".to_owned()).map_err(|e| e.to_string())
}

async fn store_check(store: &dyn ObjectStore) -> Result<String, String> {
    match tokio::time::timeout(STORE_PROBE_TIMEOUT, store.list_with_delimiter(None)).await {
        Ok(Ok(_)) => Ok("ok".to_owned()),
        Ok(Err(e)) => Err(format!("the store refused a listing: {e}")),
        Err(_) => Err(format!("the store did not answer within {}s", STORE_PROBE_TIMEOUT.as_secs())),
    }
}

pub(super) async fn metrics(state: web::Data<AdminState>) -> HttpResponse {
    let stats = state.spool.stats();
    metrics::spool_state(stats.disk_bytes, stats.backlog);
    HttpResponse::Ok().content_type("text/plain; version=0.0.4; charset=utf-8").body(metrics::handle().render())
}
