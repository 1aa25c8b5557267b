//! Liveness: the process is up and serving HTTP.

use actix_web::HttpResponse;

pub(super) async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "status": "ok" }))
}
