//! Property: whatever a signed delivery holds, it is answered 200, the service never stops, and
//! the rows across the tables equal the deliveries accepted (duplicates answered
//! `duplicate` add none). Random envelopes (random JSON trees, unicode, empty or odd
//! `id`/`type`/`data`, huge strings, duplicate keys, bytes that are not JSON) go through the whole
//! path: the real binary, the spool, the batcher, the encoder, a real S3 server; DuckDB counts.
//! The regression corpus (`tests/corpus/`, the bodies of issue 14) goes first.

use std::path::Path;
use std::time::Duration;

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{Map, Value, json};

use crate::helpers::{Binary, S3Server, SECRET, post_signed_to};

/// Random cases per run, on top of the corpus.
const CASES: usize = 400;

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => Just(Value::Null),
        4 => any::<bool>().prop_map(Value::Bool),
        4 => any::<i64>().prop_map(Value::from),
        4 => any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
        8 => "\\PC{0,24}".prop_map(Value::String),
        4 => Just(Value::String(String::new())),
        1 => (1usize..4).prop_map(|n| Value::String("\u{1F680}é\0".repeat(n * 10_000))),
    ]
}

fn tree() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(5, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("\\PC{0,10}", inner, 0..6).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// An id-or-object, as OnceHub sends id-like fields.
fn id_like(prefix: &'static str) -> impl Strategy<Value = Value> {
    prop_oneof![
        (0u32..50).prop_map(move |n| json!(format!("{prefix}-{n}"))),
        (0u32..50).prop_map(move |n| json!({"id": format!("{prefix}-{n}"), "object": "x", "name": "n"})),
        tree(),
    ]
}

fn data() -> impl Strategy<Value = Value> {
    let object = prop_oneof![Just(json!("booking")), Just(json!("conversation")), Just(json!("contact")), tree()];
    let fields = (object, id_like("USR"), id_like("BKC"), id_like("BP"), tree(), tree(), any::<bool>());
    prop_oneof![
        8 => fields.prop_map(|(object, owner, calendar, page, status, extra, with_object)| {
            let mut m = Map::new();
            if with_object {
                m.insert("object".into(), object);
            }
            m.insert("owner".into(), owner);
            m.insert("booking_calendar".into(), calendar);
            m.insert("booking_page".into(), page);
            m.insert("status".into(), status);
            m.insert("starting_time".into(), json!("2026-11-30T10:00:00Z"));
            m.insert("extra".into(), extra);
            Value::Object(m)
        }),
        1 => tree(),
    ]
}

fn envelope_field(valid: impl Strategy<Value = Value> + 'static) -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        6 => valid.prop_map(Some),
        1 => Just(None),
        1 => Just(Some(json!(""))),
        1 => tree().prop_map(Some),
    ]
}

/// One body: an envelope written key by key (so keys can repeat), random JSON, or random bytes.
fn body() -> impl Strategy<Value = Vec<u8>> {
    let id = envelope_field((0u32..120).prop_map(|n| json!(format!("EVNT-FUZZ-{n}"))));
    let ty = envelope_field(prop_oneof![
        Just(json!("booking.scheduled")),
        Just(json!("booking.no_show")),
        Just(json!("conversation.closed")),
        "\\PC{1,16}".prop_map(Value::String),
    ]);
    let envelope = (id, ty, envelope_field(data()), prop::collection::vec(("\\PC{0,8}", tree()), 0..3), any::<u8>())
        .prop_map(|(id, ty, data, extra, dup)| {
            let mut fields: Vec<(String, Value)> = Vec::new();
            for (k, v) in [
                ("id", id.clone()),
                ("type", ty),
                ("creation_time", Some(json!("2026-11-30T09:59:00Z"))),
                ("data", data),
            ] {
                if let Some(v) = v {
                    fields.push((k.into(), v));
                }
            }
            fields.extend(extra);
            match dup % 8 {
                0 => fields.push(("id".into(), id.unwrap_or(json!("EVNT-FUZZ-LATE")))),
                1 => fields.push(("data".into(), json!(5))),
                _ => {}
            }
            let text: Vec<String> = fields.iter().map(|(k, v)| format!("{}:{}", Value::from(k.as_str()), v)).collect();
            format!("{{{}}}", text.join(",")).into_bytes()
        });
    prop_oneof![
        18 => envelope,
        1 => tree().prop_map(|v| v.to_string().into_bytes()),
        1 => prop::collection::vec(any::<u8>(), 0..64),
    ]
}

fn corpus() -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    files
        .into_iter()
        .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&p).unwrap()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_signed_body_is_200_and_every_accepted_one_is_exactly_one_row() {
    let dir = tempfile::tempdir().unwrap();
    let s3 = S3Server::start(&dir.path().join("s3"));
    let args = [
        "--storage-url",
        "s3://lake/fuzz",
        "--webhook-secret",
        SECRET,
        "--flush-interval",
        "1s",
        "--flush-max-rows",
        "97",
        "--max-body-bytes",
        "64MiB",
    ];
    let mut bin = Binary::serve(&dir.path().join("data"), &args, &S3Server::env(s3.port));

    let mut bodies = corpus();
    assert!(bodies.len() >= 15, "the regression corpus is there");
    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        proptest::test_runner::TestRng::deterministic_rng(proptest::test_runner::RngAlgorithm::ChaCha),
    );
    let strategy = body();
    for i in 0..CASES {
        bodies.push((format!("case {i}"), strategy.new_tree(&mut runner).unwrap().current()));
    }

    let client = reqwest::Client::new();
    let (mut accepted, mut duplicates) = (0usize, 0usize);
    for (name, body) in &bodies {
        let sig =
            oncehub_bridge::oncehub::signature::sign(&crate::helpers::secret(), chrono::Utc::now().timestamp(), body);
        let resp = client.post(bin.url()).header("Oncehub-Signature", sig).body(body.clone()).send().await.unwrap();
        let status = resp.status();
        let answer: Value = resp.json().await.unwrap_or(Value::Null);
        assert_eq!(status, 200, "{name}: {answer} for {}", String::from_utf8_lossy(&body[..body.len().min(300)]));
        match answer["status"].as_str() {
            Some("accepted") => accepted += 1,
            Some("duplicate") => duplicates += 1,
            other => panic!("{name}: {other:?}"),
        }
    }
    assert!(duplicates > 0, "the id pool makes repeats: the dedup path is exercised");
    // Still serving after every flush, then a clean stop.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        post_signed_to(&client, &bin.url(), br#"{"id":"EVNT-FUZZ-END","type":"t","data":{}}"#.to_vec()).await,
        200
    );
    accepted += 1;
    let status = bin.terminate(Duration::from_secs(60));
    assert!(status.success(), "the service stopped cleanly: {}", bin.stderr());

    let counts = s3.duck(
        "SELECT split_part(filename, '/', 5) AS t, count(*) FROM read_parquet('s3://lake/fuzz/*/dt=*/*.parquet', filename = true, union_by_name = true) GROUP BY ALL ORDER BY 1",
    );
    let total: i64 = counts.rows.iter().map(|r| r[1].as_i64().unwrap()).sum();
    assert_eq!(
        total as usize, accepted,
        "rows across the tables {:?} = accepted ({accepted}), duplicates ({duplicates}) add none",
        counts.rows
    );
    let tables: Vec<&str> = counts.rows.iter().map(|r| r[0].as_str().unwrap()).collect();
    assert!(tables.contains(&"dead_letter") && tables.contains(&"bookings"), "{tables:?}");
    let per_id = s3.duck(
        "SELECT event_id, count(*) FROM read_parquet('s3://lake/fuzz/*/dt=*/*.parquet', filename = true, union_by_name = true) \
         WHERE split_part(filename, '/', 5) <> 'dead_letter' GROUP BY ALL HAVING count(*) > 1",
    );
    assert!(per_id.rows.is_empty(), "an event id stored twice: {:?}", per_id.rows);
}
