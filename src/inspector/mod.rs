//! The delivery inspector: what OnceHub sent, what the receiver answered and where each event
//! landed, in memory, for the page at `/` of the admin routes (`http::inspector`) and its JSON
//! (`GET /api/deliveries`, `GET /api/status`).
//!
//! The receiver records every delivery after it has answered it (off the fsync path: the spool
//! append is already done) with one short lock; the batcher reports each file once it is in its
//! table. Memory is bounded by [`ring::Ring`]'s two limits whatever the traffic. Bodies and headers
//! are kept only for signed deliveries (an unsigned body may be anyone's), shared with the request
//! rather than copied, and shown with the signature redacted; no secret is ever recorded.

mod counters;
mod ring;

pub use ring::{Entry, Landed, Outcome, Seen, Signature};

use std::sync::{Mutex, MutexGuard};

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use counters::Counters;
use ring::Ring;

/// The inspector's limits.
#[derive(Debug, Clone)]
pub struct InspectorSettings {
    pub max_deliveries: usize,
    pub max_bytes: usize,
}

/// Which deliveries `GET /api/deliveries` lists.
#[derive(Debug, Default, Clone)]
pub struct Filter {
    /// `accepted`, `duplicate`, `rejected` (any rejection) or a rejection reason.
    pub outcome: Option<String>,
    pub trigger: Option<String>,
    pub limit: Option<usize>,
}

#[derive(Debug)]
struct State {
    ring: Ring,
    counters: Counters,
}

/// Shared by the receiver, the batcher and the admin routes.
#[derive(Debug)]
pub struct Inspector {
    state: Mutex<State>,
    started: DateTime<Utc>,
}

impl Inspector {
    pub fn new(settings: &InspectorSettings) -> Inspector {
        let state =
            State { ring: Ring::new(settings.max_deliveries, settings.max_bytes), counters: Counters::default() };
        Inspector { state: Mutex::new(state), started: Utc::now() }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A delivery the receiver answered.
    pub fn record(&self, seen: Seen) {
        let dropped = {
            let mut state = self.state();
            match &seen.outcome {
                Outcome::Accepted => state.counters.accepted(seen.trigger.unwrap_or("not_an_event"), seen.received_at),
                Outcome::Duplicate => state.counters.duplicate(),
                Outcome::Rejected { reason, .. } => state.counters.rejected(reason),
            }
            state.ring.push(seen).1
        };
        // Freed after the lock: the next delivery does not wait for it.
        drop(dropped);
    }

    /// A file holding the rows of the deliveries `seqs` (received at `received_at`) is in `table`.
    pub fn landed(&self, table: &'static str, key: &str, seqs: &[u64], received_at: &[DateTime<Utc>]) {
        let now = Utc::now();
        let lags = received_at.iter().map(|r| (now - *r).num_microseconds().unwrap_or(0) as f64 / 1e6);
        let mut state = self.state();
        state.counters.landed(table, seqs.len() as u64, lags);
        state.ring.landed(seqs, table, key, now);
    }

    /// The counters, for `GET /api/status`.
    pub fn status(&self) -> Value {
        let now = Utc::now();
        let state = self.state();
        let mut status = state.counters.to_json(now);
        status["started"] = json!(self.started.to_rfc3339());
        status["inspector"] = json!({"deliveries_kept": state.ring.len(), "bytes_kept": state.ring.bytes()});
        status
    }

    /// The newest deliveries matching `filter`, one line each (no bodies).
    pub fn deliveries(&self, filter: &Filter) -> Value {
        let limit = filter.limit.unwrap_or(usize::MAX);
        let state = self.state();
        let lines: Vec<Value> = state.ring.newest().filter(|e| matches(e, filter)).take(limit).map(line).collect();
        json!({"deliveries": lines, "kept": state.ring.len()})
    }

    /// One delivery with its body and headers (signed deliveries only).
    pub fn delivery(&self, id: u64) -> Option<Value> {
        let state = self.state();
        let entry = state.ring.get(id)?;
        let mut out = line(entry);
        let body = entry.seen.body.as_ref().map(|b| match serde_json::from_slice::<Value>(b) {
            Ok(v) => serde_json::to_string_pretty(&v).unwrap_or_default(),
            Err(_) => String::from_utf8_lossy(b).into_owned(),
        });
        out["body"] = json!(body);
        out["headers"] =
            json!(shown_headers(&entry.seen.headers).into_iter().map(|(k, v)| json!([k, v])).collect::<Vec<_>>());
        Some(out)
    }
}

fn matches(e: &Entry, filter: &Filter) -> bool {
    let outcome = filter.outcome.as_deref().is_none_or(|want| match (&e.seen.outcome, want) {
        (Outcome::Rejected { .. }, "rejected") => true,
        (o, want) => o.name() == want,
    });
    let trigger = filter.trigger.as_deref().is_none_or(|want| e.seen.trigger == Some(want));
    outcome && trigger
}

fn line(e: &Entry) -> Value {
    let s = &e.seen;
    let status = match s.outcome {
        Outcome::Rejected { status, .. } => status,
        _ => 200,
    };
    let landed = e.landed.as_ref().map(|l| {
        let dead = (l.table == "dead_letter").then(|| dead_reason(s.body.as_deref())).flatten();
        json!({"table": l.table, "key": l.key, "at": l.at.to_rfc3339(), "reason": dead})
    });
    json!({
        "id": e.id,
        "received_at": s.received_at.to_rfc3339(),
        "event_id": s.event_id,
        "trigger": s.trigger,
        "outcome": s.outcome.name(),
        "status": status,
        "signature": s.signature.text(),
        "remote": s.remote.map(|a| a.to_string()),
        "size": s.size,
        "has_body": s.body.is_some(),
        "landed": landed,
    })
}

/// Headers whose values are shown (the signature's `s` redacted); any other header is listed by
/// name only, so a credential a proxy adds never reaches the page.
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

/// The `name: value` lines a request's headers are kept as.
pub fn header_lines<'a>(headers: impl Iterator<Item = (&'a str, &'a [u8])>) -> bytes::Bytes {
    let mut out = Vec::with_capacity(512);
    for (name, value) in headers {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        // A value never holds a line break (HTTP forbids it), so lines split back unambiguously.
        out.extend(value.iter().map(|b| if *b == b'\n' { b' ' } else { *b }));
        out.push(b'\n');
    }
    out.into()
}

/// A delivery's headers as the page shows them.
fn shown_headers(headers: &[u8]) -> Vec<(String, String)> {
    String::from_utf8_lossy(headers)
        .lines()
        .filter_map(|line| line.split_once(": "))
        .map(|(name, text)| {
            let shown = match name {
                "oncehub-signature" => match text.split(',').find(|p| p.trim().starts_with("t=")) {
                    Some(t) => format!("{},s=<redacted>", t.trim()),
                    None => "<redacted>".to_owned(),
                },
                n if SHOWN_HEADERS.contains(&n) => text.to_owned(),
                _ => "<not shown>".to_owned(),
            };
            (name.to_owned(), shown)
        })
        .collect()
}

/// Why a delivery became a dead letter, read from its body when asked (not on the hot path).
fn dead_reason(body: Option<&[u8]>) -> Option<&'static str> {
    match crate::event::Event::parse(body?) {
        crate::event::Parsed::Dead(d) => Some(d.reason.code()),
        crate::event::Parsed::Event(_) => Some("encode_error"),
    }
}
