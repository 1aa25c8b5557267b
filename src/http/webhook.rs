//! `POST /webhooks/oncehub`: an adapter. Signature header, then bounded body, then verification
//! over the raw bytes, then one `spool.append`; 200 only once that returns (the delivery is
//! fsynced, or its event id was already accepted: `{"status":"duplicate"}`).
//!
//! A signed body is never refused for its content: what is not a well-formed event is still kept
//! (the batcher routes it to `dead_letter`), because OnceHub retries any non-2xx for days and then
//! disables the subscription.

use actix_web::{HttpRequest, HttpResponse, web};
use std::time::Instant;

use chrono::Utc;

use super::body::read_limited;
use super::{WebhookError, WebhookState};
use crate::event::{Trigger, peek};
use crate::metrics;
use crate::oncehub::signature::{SignatureError, SignatureHeader};
use crate::spool::{Appended, Delivery, EventKey};

pub(super) async fn receive(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<WebhookState>,
) -> Result<HttpResponse, WebhookError> {
    let arrived = Instant::now();
    let result = accept(&req, payload, &state).await;
    match &result {
        Ok((Appended::Stored(seq), trigger)) => {
            metrics::delivery_received(*trigger, arrived.elapsed());
            tracing::debug!(seq = seq.0, "delivery accepted");
        }
        Ok((Appended::Duplicate, _)) => metrics::duplicate(arrived.elapsed()),
        Err(e) => {
            metrics::delivery_rejected(e.code());
            tracing::warn!(
                status = actix_web::ResponseError::status_code(e).as_u16(),
                reason = e.code(),
                peer = %req.peer_addr().map_or_else(|| "unknown".to_owned(), |a| a.to_string()),
                error = %e,
                "delivery rejected"
            );
        }
    }
    result.map(|(appended, _)| {
        let status = match appended {
            Appended::Stored(_) => "accepted",
            Appended::Duplicate => "duplicate",
        };
        HttpResponse::Ok().json(serde_json::json!({ "status": status }))
    })
}

/// Keeps the delivery; returns what the spool did and the envelope's documented trigger, if any.
async fn accept(
    req: &HttpRequest,
    payload: web::Payload,
    state: &WebhookState,
) -> Result<(Appended, Option<Trigger>), WebhookError> {
    let header = req
        .headers()
        .get("oncehub-signature")
        .ok_or(SignatureError::Missing)?
        .to_str()
        .map_err(|_| SignatureError::Malformed)?;
    let header = SignatureHeader::parse(header)?;
    let body = read_limited(req, payload, state.max_body_bytes, state.body_timeout).await?;
    let received_at = Utc::now();
    state.verifier.verify(&header, &body, received_at.timestamp())?;
    let peeked = peek(&body);
    let event_key = peeked.id.as_deref().map(EventKey::of);
    let delivery = Delivery {
        received_at,
        remote_addr: req.peer_addr(),
        signature_timestamp: header.timestamp(),
        event_key,
        body,
    };
    Ok((state.spool.append(delivery).await?, peeked.trigger))
}
