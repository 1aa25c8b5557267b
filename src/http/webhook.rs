//! `POST /webhooks/oncehub`: an adapter. Signature header, then bounded body, then verification
//! over the raw bytes, then one `spool.append`; 200 only once that returns (the delivery is
//! fsynced, or its event id was already accepted: `{"status":"duplicate"}`).
//!
//! A signed body is never refused for its content: what is not a well-formed event is still kept
//! (the batcher routes it to `dead_letter`), because OnceHub retries any non-2xx for days and then
//! disables the subscription.

use actix_web::{HttpRequest, HttpResponse, web};
use chrono::Utc;

use super::body::read_limited;
use super::signature::{SignatureError, SignatureHeader};
use super::{WebhookError, WebhookState};
use crate::event::peek_id;
use crate::spool::{Appended, Delivery, EventKey};

pub(super) async fn receive(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<WebhookState>,
) -> Result<HttpResponse, WebhookError> {
    let result = accept(&req, payload, &state).await;
    match &result {
        Ok(Appended::Stored(seq)) => tracing::debug!(seq = seq.0, "delivery accepted"),
        Ok(Appended::Duplicate) => {}
        Err(e) => tracing::warn!(
            status = actix_web::ResponseError::status_code(e).as_u16(),
            peer = ?req.peer_addr(),
            error = %e,
            "delivery rejected"
        ),
    }
    result.map(|appended| {
        let status = match appended {
            Appended::Stored(_) => "accepted",
            Appended::Duplicate => "duplicate",
        };
        HttpResponse::Ok().json(serde_json::json!({ "status": status }))
    })
}

async fn accept(req: &HttpRequest, payload: web::Payload, state: &WebhookState) -> Result<Appended, WebhookError> {
    let header = req
        .headers()
        .get("oncehub-signature")
        .ok_or(SignatureError::Missing)?
        .to_str()
        .map_err(|_| SignatureError::Malformed)?;
    let header = SignatureHeader::parse(header)?;
    let body = read_limited(req, payload, state.max_body_bytes).await?;
    let received_at = Utc::now();
    state.verifier.verify(&header, &body, received_at.timestamp())?;
    let event_key = peek_id(&body).map(|id| EventKey::of(&id));
    let delivery = Delivery {
        received_at,
        remote_addr: req.peer_addr(),
        signature_timestamp: header.timestamp(),
        event_key,
        body,
    };
    Ok(state.spool.append(delivery).await?)
}
