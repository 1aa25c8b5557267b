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
use crate::inspector::{Outcome, Seen};
use crate::metrics;
use crate::oncehub::signature::{SignatureError, SignatureHeader};
use crate::spool::{Appended, Delivery, EventKey};

pub(super) async fn receive(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<WebhookState>,
) -> Result<HttpResponse, WebhookError> {
    let arrived = Instant::now();
    let mut seen = Observed::default();
    let result = accept(&req, payload, &state, &mut seen).await;
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
    if let Some(inspector) = &state.inspector {
        // After the spool's answer: never on the fsync path.
        inspector.record(seen.finish(&req, &result));
    }
    result.map(|(appended, _)| {
        let status = match appended {
            Appended::Stored(_) => "accepted",
            Appended::Duplicate => "duplicate",
        };
        HttpResponse::Ok().json(serde_json::json!({ "status": status }))
    })
}

/// What `accept` learnt of a delivery, for the inspector.
#[derive(Default)]
struct Observed {
    received_at: Option<chrono::DateTime<Utc>>,
    /// Set once the signature verified.
    body: Option<bytes::Bytes>,
    size: Option<usize>,
    event_id: Option<String>,
    trigger: Option<&'static str>,
    signature: Option<String>,
}

impl Observed {
    fn finish(self, req: &HttpRequest, result: &Result<(Appended, Option<Trigger>), WebhookError>) -> Seen {
        let outcome = match result {
            Ok((Appended::Stored(_), _)) => Outcome::Accepted,
            Ok((Appended::Duplicate, _)) => Outcome::Duplicate,
            Err(e) => Outcome::Rejected { status: actix_web::ResponseError::status_code(e).as_u16(), reason: e.code() },
        };
        let seq = match result {
            Ok((Appended::Stored(seq), _)) => Some(seq.0),
            _ => None,
        };
        let headers = if self.body.is_some() { redacted_headers(req) } else { Vec::new() };
        let declared = || req.headers().get("content-length").and_then(|v| v.to_str().ok()?.parse().ok());
        Seen {
            received_at: self.received_at.unwrap_or_else(Utc::now),
            event_id: self.event_id,
            trigger: self.trigger,
            outcome,
            signature: self.signature.unwrap_or_else(|| "no Oncehub-Signature header".to_owned()),
            remote: req.peer_addr(),
            size: self.size.or_else(declared).unwrap_or(0),
            body: self.body,
            headers,
            seq,
        }
    }
}

/// Headers whose values the inspector shows (the signature's `s` redacted); any other header is
/// listed by name only, so a credential a proxy adds never reaches the page.
const SHOWN_HEADERS: [&str; 12] = [
    "host",
    "user-agent",
    "content-type",
    "content-length",
    "content-encoding",
    "accept",
    "accept-encoding",
    "oncehub-signature",
    "x-request-id",
    "traceparent",
    "connection",
    "expect",
];

/// The request's headers as the inspector shows them.
fn redacted_headers(req: &HttpRequest) -> Vec<(String, String)> {
    req.headers()
        .iter()
        .map(|(name, value)| {
            let text = value.to_str().unwrap_or("<not text>");
            let shown = match name.as_str() {
                "oncehub-signature" => match text.split(',').find(|p| p.trim().starts_with("t=")) {
                    Some(t) => format!("{},s=<redacted>", t.trim()),
                    None => "<redacted>".to_owned(),
                },
                n if SHOWN_HEADERS.contains(&n) => text.to_owned(),
                _ => "<not shown>".to_owned(),
            };
            (name.as_str().to_owned(), shown)
        })
        .collect()
}

async fn accept(
    req: &HttpRequest,
    payload: web::Payload,
    state: &WebhookState,
    seen: &mut Observed,
) -> Result<(Appended, Option<Trigger>), WebhookError> {
    let header = req.headers().get("oncehub-signature");
    seen.signature = Some(match header {
        None => "no Oncehub-Signature header".to_owned(),
        Some(_) => "malformed Oncehub-Signature header".to_owned(),
    });
    let header = header.ok_or(SignatureError::Missing)?.to_str().map_err(|_| SignatureError::Malformed)?;
    let header = SignatureHeader::parse(header)?;
    seen.signature = Some("not checked: the body did not arrive whole".to_owned());
    let body = read_limited(req, payload, state.max_body_bytes, state.body_timeout).await?;
    let received_at = Utc::now();
    seen.received_at = Some(received_at);
    seen.size = Some(body.len());
    let verified = state.verifier.verify(&header, &body, received_at.timestamp());
    if state.inspector.is_some() {
        seen.signature = Some(state.verifier.describe(&verified, Some(header.timestamp()), received_at.timestamp()));
    }
    verified?;
    let peeked = peek(&body);
    if state.inspector.is_some() {
        seen.body = Some(body.clone());
        seen.trigger = match (peeked.trigger, &peeked.id) {
            (Some(t), _) => Some(t.name()),
            (None, Some(_)) => Some("other"),
            (None, None) => None,
        };
        seen.event_id = peeked.id.clone();
    }
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
