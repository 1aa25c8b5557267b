//! Hostile and odd input: every refusal has a clear status and JSON body and stores nothing; every
//! signed body is kept, in its table or in dead_letter with the reason.

use chrono::Utc;
use oncehub_bridge::commands::samples;
use oncehub_bridge::oncehub::signature::sign;
use oncehub_bridge::secret::WebhookSecret;
use serde_json::{Value, json};

use crate::helpers::{TestApp, duck, parquet_files, secret};

fn body(id: &str) -> Vec<u8> {
    serde_json::to_vec(&samples::event("booking.scheduled", id, 0, Utc::now())).unwrap()
}

async fn error_code(resp: reqwest::Response) -> (u16, String) {
    let status = resp.status().as_u16();
    let v: Value = resp.json().await.expect("error bodies are JSON");
    (status, v["error"].as_str().unwrap_or_default().to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_signatures_and_oversized_bodies_are_refused_and_nothing_is_stored() {
    let app = TestApp::spawn(|s| s.max_body_bytes = std::num::NonZeroUsize::new(4096).unwrap()).await;
    let now = Utc::now().timestamp();
    let b = body("EVNT-REFUSED");

    assert_eq!(error_code(app.post_with(b.clone(), None).await).await, (401, "missing_signature".into()));
    let malformed = app.post_with(b.clone(), Some("sha256=abc".into())).await;
    assert_eq!(error_code(malformed).await, (401, "malformed_signature".into()));
    let other = WebhookSecret::parse("not-the-secret").unwrap();
    let wrong = app.post_with(b.clone(), Some(sign(&other, now, &b))).await;
    assert_eq!(error_code(wrong).await, (401, "invalid_signature".into()));
    let stale = app.post_with(b.clone(), Some(sign(&secret(), now - 301, &b))).await;
    assert_eq!(error_code(stale).await, (401, "stale_signature".into()));
    let future = app.post_with(b.clone(), Some(sign(&secret(), now + 301, &b))).await;
    assert_eq!(error_code(future).await, (401, "stale_signature".into()));
    let mut tampered = b.clone();
    tampered.extend_from_slice(b" ");
    let t = app.post_with(tampered, Some(sign(&secret(), now, &b))).await;
    assert_eq!(error_code(t).await, (401, "invalid_signature".into()));
    let big = vec![b' '; 5000];
    let too_big = app.post_with(big.clone(), Some(sign(&secret(), now, &big))).await;
    assert_eq!(error_code(too_big).await, (413, "body_too_large".into()));

    // Only this one is accepted.
    assert_eq!(app.post_signed(body("EVNT-ACCEPTED")).await.status(), 200);
    let stopped = app.stop().await;
    let (lake, report) = (stopped.lake.clone(), stopped.report);
    assert_eq!(report.records, 1);
    let files = parquet_files(&lake);
    assert_eq!(files.len(), 1, "{files:?}");
    let d = duck(&format!("SELECT event_id FROM read_parquet('{}/*/dt=*/*.parquet')", lake.display()));
    assert_eq!(d.rows, vec![vec![json!("EVNT-ACCEPTED")]]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_odd_bodies_are_kept_with_a_reason_and_answered_2xx() {
    let app = TestApp::spawn(|_| {}).await;
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"{not json".to_vec(), "not_json"),
        (b"[1,2,3]".to_vec(), "not_object"),
        (br#"{"type":"booking.scheduled","data":{"object":"booking"}}"#.to_vec(), "missing_field"),
        (br#"{"id":42,"type":"booking.scheduled","data":{"object":"booking"}}"#.to_vec(), "wrong_type"),
        (b"\xff\xfe\x00binary".to_vec(), "not_utf8"),
    ];
    for (b, _) in &cases {
        assert_eq!(app.post_signed(b.clone()).await.status(), 200);
    }
    let new_trigger =
        br#"{"id":"EVNT-NEWTRIGGER","type":"booking.teleported","data":{"object":"booking","id":"BKNG-X"}}"#;
    let other = br#"{"id":"EVNT-OTHER","type":"invoice.paid","data":{"object":"invoice","id":"INV-1"}}"#;
    assert_eq!(app.post_signed(new_trigger.to_vec()).await.status(), 200);
    assert_eq!(app.post_signed(other.to_vec()).await.status(), 200);
    let stopped = app.stop().await;
    let lake = stopped.lake.clone();

    let d = duck(&format!(
        "SELECT reason, raw_body, event_id, error FROM read_parquet('{}/dead_letter/dt=*/*.parquet') ORDER BY received_at",
        lake.display()
    ));
    assert_eq!(d.rows.len(), cases.len());
    for (row, (b, reason)) in d.rows.iter().zip(&cases) {
        assert_eq!(row[0], json!(reason));
        assert!(!row[3].as_str().unwrap().is_empty());
        let hex_of_blob = duck(&format!(
            "SELECT hex(raw_body) FROM read_parquet('{}/dead_letter/dt=*/*.parquet') WHERE reason = '{reason}'",
            lake.display()
        ));
        assert_eq!(hex_of_blob.rows[0][0], json!(hex::encode_upper(b)), "{reason}: raw bytes kept exactly");
    }
    let b =
        duck(&format!("SELECT event_type, booking_id FROM read_parquet('{}/bookings/dt=*/*.parquet')", lake.display()));
    assert_eq!(b.rows, vec![vec![json!("booking.teleported"), json!("BKNG-X")]]);
    let o = duck(&format!(
        "SELECT event_id, data_object, raw_event FROM read_parquet('{}/other_events/dt=*/*.parquet')",
        lake.display()
    ));
    assert_eq!(o.rows, vec![vec![json!("EVNT-OTHER"), json!("invoice"), json!(std::str::from_utf8(other).unwrap())]]);
}
