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
use crate::inspector::{Outcome, Seen, Signature};
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
        let body = match appended {
            Appended::Stored(_) => r#"{"status":"accepted"}"#,
            Appended::Duplicate => r#"{"status":"duplicate"}"#,
        };
        HttpResponse::Ok().content_type("application/json").body(body)
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
    signature: Option<Signature>,
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
        let headers = match self.body {
            Some(_) => crate::inspector::header_lines(req.headers().iter().map(|(k, v)| (k.as_str(), v.as_bytes()))),
            None => bytes::Bytes::new(),
        };
        let declared = || req.headers().get("content-length").and_then(|v| v.to_str().ok()?.parse().ok());
        Seen {
            received_at: self.received_at.unwrap_or_else(Utc::now),
            event_id: self.event_id,
            trigger: self.trigger,
            outcome,
            signature: self.signature.unwrap_or(Signature::NoHeader),
            remote: req.peer_addr(),
            size: self.size.or_else(declared).unwrap_or(0),
            body: self.body,
            headers,
            seq,
        }
    }
}

async fn accept(
    req: &HttpRequest,
    payload: web::Payload,
    state: &WebhookState,
    seen: &mut Observed,
) -> Result<(Appended, Option<Trigger>), WebhookError> {
    let header = req.headers().get("oncehub-signature");
    seen.signature = Some(if header.is_some() { Signature::Malformed } else { Signature::NoHeader });
    let header = header.ok_or(SignatureError::Missing)?.to_str().map_err(|_| SignatureError::Malformed)?;
    let header = SignatureHeader::parse(header)?;
    seen.signature = Some(Signature::BodyIncomplete);
    let body = read_limited(req, payload, state.max_body_bytes, state.body_timeout).await?;
    let received_at = Utc::now();
    seen.received_at = Some(received_at);
    seen.size = Some(body.len());
    let verified = state.verifier.verify(&header, &body, received_at.timestamp());
    seen.signature = Some(match &verified {
        Ok(index) => Signature::Matched { index: *index, current: state.verifier.current_secrets() },
        Err(SignatureError::Stale) => Signature::Stale {
            offset_secs: header.timestamp() - received_at.timestamp(),
            tolerance_secs: state.verifier.tolerance_secs(),
        },
        Err(_) => Signature::NoMatch { configured: state.verifier.secrets() },
    });
    verified?;
    let peeked = peek(&body);
    if state.inspector.is_some() {
        seen.body = Some(body.clone());
        seen.trigger = match (peeked.trigger, &peeked.id) {
            (Some(t), _) => Some(t.name()),
            (None, Some(_)) => Some("other"),
            (None, None) => None,
        };
    }
    let event_key = peeked.id.as_deref().map(EventKey::of);
    if state.inspector.is_some() {
        seen.event_id = peeked.id;
    }
    let delivery = Delivery {
        received_at,
        remote_addr: req.peer_addr(),
        signature_timestamp: header.timestamp(),
        event_key,
        body,
    };
    Ok((state.spool.append(delivery).await?, peeked.trigger))
}
