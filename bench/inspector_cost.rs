//! What recording a delivery in the inspector costs (issue 21: well under 1 µs per delivery):
//! the receiver's part after it has answered, building the record (the redacted headers of a
//! signed delivery, its body kept by reference) and the ring's insert under its lock, with the
//! ring full (every insert also evicts), on 1 thread and on 4 at once.
//!
//!   cargo run --release --example inspector-cost [deliveries per thread]

use std::sync::Arc;
use std::time::Instant;

use actix_web::http::header::{HeaderName, HeaderValue};
use bytes::Bytes;
use chrono::Utc;
use oncehub_bridge::inspector::{Inspector, InspectorSettings, Outcome, Seen, Signature};

const HEADERS: [(&str, &str); 6] = [
    ("host", "bridge.example.com"),
    ("user-agent", "OnceHub-Webhooks/2.0"),
    ("content-type", "application/json"),
    ("content-length", "1536"),
    ("oncehub-signature", "t=1767225600,s=5b1f6e0ae6d0a1f7c6e1a1b5d0f6c0e8a4d4c3b2a1f0e9d8c7b6a5f4e3d2c1b0"),
    ("accept-encoding", "gzip"),
];

/// A request's headers as the server parsed them (values in shared buffers).
fn request_headers() -> Vec<(HeaderName, HeaderValue)> {
    HEADERS
        .iter()
        .map(|(k, v)| {
            (HeaderName::from_static(k), HeaderValue::from_maybe_shared(Bytes::from(*v)).expect("a header value"))
        })
        .collect()
}

fn seen(body: &Bytes, headers: &[(HeaderName, HeaderValue)], event_id: String, seq: u64) -> Seen {
    // As the receiver does: the headers copied into one buffer of their own.
    let headers = oncehub_bridge::inspector::header_lines(headers.iter().map(|(k, v)| (k.as_str(), v.as_bytes())));
    Seen {
        received_at: Utc::now(),
        event_id: Some(event_id),
        trigger: Some("booking.scheduled"),
        outcome: Outcome::Accepted,
        signature: Signature::Matched { index: 0, current: 1 },
        remote: "10.0.0.7:51234".parse().ok(),
        size: body.len(),
        body: Some(body.clone()),
        headers,
        seq: Some(seq),
    }
}

fn main() {
    let per_thread: u64 = std::env::args().nth(1).and_then(|n| n.parse().ok()).unwrap_or(1_000_000);
    let body = Bytes::from(vec![b'x'; 1536]);
    let settings = InspectorSettings { max_deliveries: 500, max_bytes: 16 << 20 };
    for threads in [1u64, 2, 4] {
        let inspector = Arc::new(Inspector::new(&settings));
        let headers = request_headers();
        for i in 0..1000 {
            inspector.record(seen(&body, &headers, format!("EVNT-{i:012}"), i));
        }
        // The event ids exist before the record (peek made them; the receiver moves its id in).
        let ids: Vec<Vec<String>> =
            (0..threads).map(|t| (0..per_thread).map(|i| format!("EVNT-{t}-{i:012}")).collect()).collect();
        let started = Instant::now();
        let workers: Vec<_> = ids
            .into_iter()
            .enumerate()
            .map(|(t, ids)| {
                let t = t as u64;
                let (inspector, body, headers) = (inspector.clone(), body.clone(), request_headers());
                std::thread::spawn(move || {
                    for (i, id) in ids.into_iter().enumerate() {
                        inspector.record(seen(&body, &headers, id, t * per_thread + i as u64));
                    }
                })
            })
            .collect();
        for w in workers {
            w.join().expect("worker");
        }
        let elapsed = started.elapsed();
        let total = threads * per_thread;
        println!(
            "inspector record: {threads} thread(s), {total} deliveries in {:.2} s: {:.0} ns per delivery per thread ({:.0} ns of wall time per delivery)",
            elapsed.as_secs_f64(),
            elapsed.as_nanos() as f64 * threads as f64 / total as f64,
            elapsed.as_nanos() as f64 / total as f64,
        );
    }
}
