//! Writes signed, realistic OnceHub deliveries for load generators: every trigger and shape
//! variant in turn, each with a unique event id, as pairs of lines `<Oncehub-Signature>\n<body>\n`.
//!
//! `cargo run --release --example gen-payloads -- COUNT SECRET OUT [TAG]`
//!
//! Signatures carry one fixed timestamp, so run the receiver with `--signature-tolerance 0`.

use std::io::Write;

use chrono::Utc;
use oncehub_bridge::http::signature::sign;
use oncehub_bridge::samples;
use oncehub_bridge::secret::WebhookSecret;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, count, secret, out, rest @ ..] = args.as_slice() else {
        anyhow::bail!("usage: gen-payloads COUNT SECRET OUT [TAG]");
    };
    let count: usize = count.parse()?;
    let tag = rest.first().map(String::as_str).unwrap_or("bench");
    let secret = WebhookSecret::parse(secret).ok_or_else(|| anyhow::anyhow!("empty secret"))?;
    let now = Utc::now();
    let t = now.timestamp();
    let shapes: Vec<(String, usize)> = samples::all_events("shape", now)
        .iter()
        .enumerate()
        .map(|(i, e)| (e["type"].as_str().unwrap_or("booking.scheduled").to_owned(), i))
        .collect();
    let mut file = std::io::BufWriter::new(std::fs::File::create(out)?);
    let mut bytes = 0usize;
    for n in 0..count {
        let (event_type, variant) = &shapes[n % shapes.len()];
        let event = samples::event(event_type, &format!("EVNT-{tag}-{n:09}"), *variant, now);
        let body = serde_json::to_vec(&event)?;
        bytes += body.len();
        writeln!(file, "{}", sign(&secret, t, &body))?;
        file.write_all(&body)?;
        file.write_all(b"\n")?;
    }
    file.flush()?;
    eprintln!("{count} deliveries, {} bytes of JSON, {} bytes on average", bytes, bytes / count.max(1));
    Ok(())
}
