//! What recording a delivery in the inspector costs (issue 21: well under 1 µs per delivery):
//! the receiver's part after it has answered, building the record (the redacted headers of a
//! signed delivery, its body kept by reference) and the ring's insert under its lock, with the
//! ring full (every insert also evicts), on 1 thread and on 4 at once.
//!
//!   cargo run --release --example inspector-cost [deliveries per thread]

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use chrono::Utc;
use oncehub_bridge::inspector::{Inspector, InspectorSettings, Outcome, Seen};

const HEADERS: [(&str, &str); 6] = [
    ("host", "bridge.example.com"),
    ("user-agent", "OnceHub-Webhooks/2.0"),
    ("content-type", "application/json"),
    ("content-length", "1536"),
    ("oncehub-signature", "t=1767225600,s=5b1f6e0ae6d0a1f7c6e1a1b5d0f6c0e8a4d4c3b2a1f0e9d8c7b6a5f4e3d2c1b0"),
    ("accept-encoding", "gzip"),
];

fn seen(body: &Bytes, seq: u64) -> Seen {
    // As the receiver builds it: header names and values copied, the signature's `s` redacted.
    let headers = HEADERS
        .iter()
        .map(|(k, v)| {
            let shown =
                if *k == "oncehub-signature" { "t=1767225600,s=<redacted>".to_owned() } else { (*v).to_owned() };
            ((*k).to_owned(), shown)
        })
        .collect();
    Seen {
        received_at: Utc::now(),
        event_id: Some(format!("EVNT-{seq:012}")),
        trigger: Some("booking.scheduled"),
        outcome: Outcome::Accepted,
        signature: "secret 1 of 1 matched".to_owned(),
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
        for i in 0..1000 {
            inspector.record(seen(&body, i));
        }
        let started = Instant::now();
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let (inspector, body) = (inspector.clone(), body.clone());
                std::thread::spawn(move || {
                    for i in 0..per_thread {
                        inspector.record(seen(&body, t * per_thread + i));
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
