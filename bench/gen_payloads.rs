//! Writes signed, realistic OnceHub deliveries for load generators: every trigger and shape
//! variant in turn, each with a unique event id, as pairs of lines `<Oncehub-Signature>\n<body>\n`.
//!
//! `cargo run --release --example gen-payloads -- COUNT SECRET OUT [TAG]`
//!
//! Signatures carry one fixed timestamp, so run the receiver with `--signature-tolerance 0`.
//! `GEN_TIME` (RFC 3339) sets the events' creation time (so their `dt` partition) instead of now;
//! `GEN_TRIGGERS` keeps only triggers starting with it (`booking.`: the bookings table only);
//! `GEN_BODY_BYTES` lengthens each body's free text (the note, a chat answer) to about that size.
//!
//! Customer names, emails, notes and chat answers vary from delivery to delivery (a fixed-seed
//! generator, so every run writes the same file): identical bodies would compress far better in
//! Parquet than real traffic does. Notes and answers bring the average body to about 1.7 KB.

use std::io::Write;

use chrono::Utc;
use oncehub_bridge::commands::samples;
use oncehub_bridge::oncehub::signature::sign;
use oncehub_bridge::secret::WebhookSecret;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, count, secret, out, rest @ ..] = args.as_slice() else {
        anyhow::bail!("usage: gen-payloads COUNT SECRET OUT [TAG]");
    };
    let count: usize = count.parse()?;
    let tag = rest.first().map(String::as_str).unwrap_or("bench");
    let secret = WebhookSecret::parse(secret).ok_or_else(|| anyhow::anyhow!("empty secret"))?;
    let t = Utc::now().timestamp();
    let now = match std::env::var("GEN_TIME") {
        Ok(at) => chrono::DateTime::parse_from_rfc3339(&at)?.to_utc(),
        Err(_) => Utc::now(),
    };
    let only = std::env::var("GEN_TRIGGERS").unwrap_or_default();
    let body_bytes: usize = std::env::var("GEN_BODY_BYTES").ok().map(|b| b.parse()).transpose()?.unwrap_or(0);
    let shapes: Vec<(String, usize)> = samples::all_events("shape", now)
        .iter()
        .enumerate()
        .map(|(i, e)| (e["type"].as_str().unwrap_or("booking.scheduled").to_owned(), i))
        .filter(|(t, _)| t.starts_with(&only))
        .collect();
    anyhow::ensure!(!shapes.is_empty(), "no trigger starts with GEN_TRIGGERS={only}");
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut file = std::io::BufWriter::new(std::fs::File::create(out)?);
    let mut bytes = 0usize;
    for n in 0..count {
        let (event_type, variant) = &shapes[n % shapes.len()];
        let mut event = samples::event(event_type, &format!("EVNT-{tag}-{n:09}"), *variant, now);
        vary(&mut event, &mut rng);
        let mut body = serde_json::to_vec(&event)?;
        if body.len() < body_bytes {
            lengthen(&mut event, &mut rng, body_bytes - body.len());
            body = serde_json::to_vec(&event)?;
        }
        bytes += body.len();
        writeln!(file, "{}", sign(&secret, t, &body))?;
        file.write_all(&body)?;
        file.write_all(b"\n")?;
    }
    file.flush()?;
    eprintln!("{count} deliveries, {} bytes of JSON, {} bytes on average", bytes, bytes / count.max(1));
    Ok(())
}

/// xorshift64*: reproducible variety without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[(self.next() % from.len() as u64) as usize]
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const FIRST: [&str; 12] =
    ["Carrie", "Dmitri", "Aisha", "Jürgen", "Mei", "Lucas", "Priya", "Tomás", "Ngozi", "Olga", "Kenji", "Sofia"];
const LAST: [&str; 12] =
    ["Customer", "Ivanov", "Khan", "Müller", "Chen", "Martin", "Patel", "García", "Okafor", "Nowak", "Sato", "Rossi"];
const DOMAINS: [&str; 6] = ["example.org", "acme.io", "contoso.com", "globex.net", "initech.co", "umbrella.de"];
const WORDS: [&str; 32] = [
    "we",
    "are",
    "evaluating",
    "your",
    "pricing",
    "for",
    "a",
    "team",
    "of",
    "forty",
    "seats",
    "and",
    "need",
    "SSO",
    "integration",
    "with",
    "Salesforce",
    "before",
    "next",
    "quarter",
    "please",
    "send",
    "the",
    "security",
    "review",
    "documents",
    "ahead",
    "call",
    "budget",
    "approved",
    "migration",
    "timeline",
];

fn sentence(rng: &mut Rng, words: u64) -> String {
    (0..words).map(|_| rng.pick(&WORDS)).collect::<Vec<_>>().join(" ")
}

/// Per-delivery customer details, a free-text note (bookings) or extra chat answers (conversations).
fn vary(event: &mut serde_json::Value, rng: &mut Rng) {
    let (first, last, domain) = (rng.pick(&FIRST), rng.pick(&LAST), rng.pick(&DOMAINS));
    let email = format!("{}.{}{}@{domain}", first.to_lowercase(), last.to_lowercase(), rng.below(1000));
    let Some(data) = event.get_mut("data") else { return };
    if let Some(form) = data.get_mut("form_submission").and_then(|f| f.as_object_mut()) {
        form.insert("name".into(), format!("{first} {last}").into());
        form.insert("email".into(), email.into());
        let words = rng.below(110);
        form.insert("note".into(), sentence(rng, words).into());
    } else if let Some(answers) = data.get_mut("answers").and_then(|a| a.as_array_mut()) {
        let words = 20 + rng.below(80);
        answers.push(serde_json::json!({"id": format!("INT-{:010X}", rng.next() >> 24), "internal_label": "need",
            "question": "What brings you here today?", "value": sentence(rng, words)}));
        answers.push(serde_json::json!({"id": "INT-EMAIL00001", "internal_label": "email", "question": "Work email", "value": email}));
    }
}

/// Adds about `extra` bytes of words to the body's free text: the booking's note, a chat answer,
/// or else a `description` in `data` (kept in `raw_event` only).
fn lengthen(event: &mut serde_json::Value, rng: &mut Rng, extra: usize) {
    let mut text = String::with_capacity(extra + 16);
    while text.len() < extra {
        text.push(' ');
        text.push_str(rng.pick(&WORDS));
    }
    let Some(data) = event.get_mut("data") else { return };
    let target = if let Some(note) = data.pointer_mut("/form_submission/note") {
        note
    } else if let Some(answer) = data.pointer_mut("/answers/0/value") {
        answer
    } else {
        &mut data["description"]
    };
    let mut joined = target.as_str().unwrap_or_default().to_owned();
    joined.push_str(&text);
    *target = joined.into();
}
