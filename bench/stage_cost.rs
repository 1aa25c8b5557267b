//! What the hot path's library calls cost on this CPU, outside valgrind: the receiver's HMAC-SHA256
//! check of the signed body and its dedup key (SHA-256 of the event id), the batcher's JSON parse
//! (`serde_json::Value`, the call `Event::parse` makes), and the Parquet encoding of `raw_event`
//! (the whole body stored again beside its typed columns) at zstd level 3, which every file uses,
//! and at level 1 for comparison. Each stage runs over the same deliveries, single-threaded; the
//! figures are nanoseconds per delivery (the fastest of 3 passes) and, under
//! `valgrind --tool=callgrind`, the instruction counts that `bench/profile.sh` reports, so the two
//! can be set side by side (`bench/stage_cost.sh` does both).
//!
//!   cargo run --release --example stage-cost -- PAYLOADS SECRET [MAX_DELIVERIES]
//!
//! PAYLOADS is a `gen-payloads` file (`<Oncehub-Signature>\n<body>\n` pairs).

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use arrow_array::{ArrayRef, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use oncehub_bridge::oncehub::signature::{SignatureHeader, Verifier};
use oncehub_bridge::secret::WebhookSecret;
use oncehub_bridge::sink::FileWriter;
use oncehub_bridge::sink::encode::writer_properties;
use oncehub_bridge::spool::EventKey;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};

/// Rows per batch handed to the Parquet writer (the batcher's chunks are of this order).
const CHUNK: usize = 4096;

#[derive(serde::Deserialize)]
struct Envelope {
    id: String,
}

struct Delivery {
    header: SignatureHeader,
    body: String,
    id: String,
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, path, secret, rest @ ..] = args.as_slice() else {
        anyhow::bail!("usage: stage-cost PAYLOADS SECRET [MAX_DELIVERIES]");
    };
    let max: usize = rest.first().map(|n| n.parse()).transpose()?.unwrap_or(usize::MAX);
    let secret = WebhookSecret::parse(secret).context("empty secret")?;
    let deliveries = load(path, max)?;
    let n = deliveries.len();
    let bytes: usize = deliveries.iter().map(|d| d.body.len()).sum();
    println!("{n} deliveries, {} B of JSON on average; CPU flags: {}", bytes / n.max(1), cpu_flags());

    let verifier = Verifier::new(&[secret], 0);
    let hmac = fastest(|| {
        for d in &deliveries {
            verifier.verify(&d.header, d.body.as_bytes(), d.header.timestamp()).expect("signed with SECRET");
        }
    });
    let key = fastest(|| {
        deliveries.iter().for_each(|d| {
            black_box(EventKey::of(&d.id));
        })
    });
    let parse = fastest(|| {
        for d in &deliveries {
            let value: serde_json::Value = serde_json::from_str(&d.body).expect("a JSON body");
            black_box(value);
        }
    });
    let mut sizes = (0, 0);
    let level3 = fastest(|| sizes.0 = encode_raw_events(&deliveries, None));
    let level1 = fastest(|| sizes.1 = encode_raw_events(&deliveries, Some(1)));

    let per = |d: Duration| d.as_nanos() as f64 / n.max(1) as f64;
    println!("{:<48} {:>12} {:>12}", "stage", "ns/delivery", "ns/KB");
    let kb = bytes as f64 / 1024.0 / n.max(1) as f64;
    for (name, d) in [
        ("HMAC-SHA256 verify of the body (receiver)", hmac),
        ("dedup key, SHA-256 of the event id (receiver)", key),
        ("JSON parse into serde_json::Value (batcher)", parse),
        ("raw_event Parquet, zstd level 3 (batcher)", level3),
        ("raw_event Parquet, zstd level 1 (comparison)", level1),
    ] {
        println!("{name:<48} {:>12.0} {:>12.0}", per(d), per(d) / kb);
    }
    println!(
        "raw_event column: {:.1} % of the JSON at level 3, {:.1} % at level 1",
        100.0 * sizes.0 as f64 / bytes.max(1) as f64,
        100.0 * sizes.1 as f64 / bytes.max(1) as f64
    );
    Ok(())
}

/// The deliveries of a `gen-payloads` file, up to `max`.
fn load(path: &str, max: usize) -> anyhow::Result<Vec<Delivery>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
    let mut lines = text.lines();
    let mut out = Vec::new();
    while let (Some(sig), Some(body), true) = (lines.next(), lines.next(), out.len() < max) {
        let header = SignatureHeader::parse(sig).map_err(|e| anyhow::anyhow!("{e}"))?;
        // Not a `Value`: under callgrind, `from_str::<Value>` counts the timed parses only.
        let Envelope { id } = serde_json::from_str(body).context("a body without a string id")?;
        out.push(Delivery { header, body: body.to_owned(), id });
    }
    anyhow::ensure!(!out.is_empty(), "no deliveries in {path}");
    Ok(out)
}

/// Writes every body as the `raw_event` column of one Parquet file (the bridge's properties, or
/// the same at another zstd level); returns the file's size.
fn encode_raw_events(deliveries: &[Delivery], zstd_level: Option<i32>) -> usize {
    let schema = Arc::new(Schema::new(vec![Field::new("raw_event", DataType::Utf8, true)]));
    let batches = deliveries.chunks(CHUNK).map(|chunk| {
        let column: ArrayRef = Arc::new(StringArray::from_iter_values(chunk.iter().map(|d| d.body.as_str())));
        RecordBatch::try_new(schema.clone(), vec![column]).expect("one string column")
    });
    match zstd_level {
        None => {
            let mut writer = FileWriter::new(schema.clone(), None).expect("a writer");
            batches.for_each(|b| writer.write(&b).expect("encodes"));
            writer.finish().expect("a file").bytes.len()
        }
        Some(level) => {
            let level = ZstdLevel::try_new(level).expect("a zstd level");
            let props = writer_properties().into_builder().set_compression(Compression::ZSTD(level)).build();
            let mut writer = ArrowWriter::try_new(Vec::new(), schema.clone(), Some(props)).expect("a writer");
            batches.for_each(|b| writer.write(&b).expect("encodes"));
            writer.into_inner().expect("a file").len()
        }
    }
}

/// How often each stage runs (the fastest run counts; under callgrind, each stage's instructions
/// are for this many passes).
const PASSES: usize = 3;

/// The fastest of [`PASSES`] runs of `f`.
fn fastest(mut f: impl FnMut()) -> Duration {
    (0..PASSES)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .min()
        .unwrap_or_default()
}

/// The CPU's SHA and AVX flags, as the kernel reports them (valgrind may hide some from the code).
fn cpu_flags() -> String {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let flags = info.lines().find(|l| l.starts_with("flags")).unwrap_or_default();
    let wanted = ["sha_ni", "avx2", "bmi2"];
    wanted.iter().filter(|f| flags.split_whitespace().any(|x| x == **f)).copied().collect::<Vec<_>>().join(" ")
}
