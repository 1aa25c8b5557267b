//! Every trigger and shape variant lands in its table with its values, typed as the schema says.

use chrono::{DateTime, Utc};
use oncehub_bridge::commands::samples;
use serde_json::{Value, json};

use crate::helpers::{TestApp, duck};

/// The expected column value for a JSON string field: "" / null / absent → null.
fn text(v: &Value) -> Value {
    match v {
        Value::String(s) if !s.is_empty() => v.clone(),
        _ => Value::Null,
    }
}

fn id_or_object(v: &Value) -> Value {
    match v {
        Value::Object(o) => text(o.get("id").unwrap_or(&Value::Null)),
        other => text(other),
    }
}

fn micros(v: &Value) -> Value {
    v.as_str().and_then(|s| DateTime::parse_from_rfc3339(s).ok()).map_or(Value::Null, |t| json!(t.timestamp_micros()))
}

fn by_id<'a>(rows: &'a [Vec<Value>], id: &str) -> &'a Vec<Value> {
    rows.iter().find(|r| r[0] == json!(id)).unwrap_or_else(|| panic!("{id} not in the table"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_trigger_and_shape_lands_in_its_table_with_its_values() {
    let app = TestApp::spawn(|_| {}).await;
    let events = samples::all_events("pipe", Utc::now());
    for e in &events {
        let resp = app.post_signed(serde_json::to_vec(e).unwrap()).await;
        assert_eq!(resp.status(), 200, "{}", e["type"]);
    }
    let stopped = app.stop().await;
    let (lake, report) = (stopped.lake.clone(), stopped.report);
    assert_eq!(report.records, events.len() as u64);

    let b = duck(&format!(
        "SELECT event_id, event_type, booking_id, tracking_id, status, subject, epoch_us(starting_time),
                duration_minutes, owner_id, customer_timezone, customer_name, customer_email, in_trash,
                raw_event, epoch_us(event_time), booking_page_id, booking_page.name, owner.email,
                form_submission.custom_fields, payment_information.amount_charged, attendees,
                rescheduled_booking_id, conversation_id, booking_event_type_id, CAST(dt AS VARCHAR)
         FROM read_parquet('{}/bookings/dt=*/*.parquet', hive_partitioning = true)",
        lake.display()
    ));
    let bookings: Vec<&Value> = events.iter().filter(|e| e["data"]["object"] == "booking").collect();
    assert_eq!(b.rows.len(), bookings.len(), "one row per booking delivery");
    for e in bookings {
        let d = &e["data"];
        let r = by_id(&b.rows, e["id"].as_str().unwrap());
        let expected = [
            e["id"].clone(),
            e["type"].clone(),
            text(&d["id"]),
            text(&d["tracking_id"]),
            text(&d["status"]),
            text(&d["subject"]),
            micros(&d["starting_time"]),
            d["duration_minutes"].clone(),
            id_or_object(&d["owner"]),
            text(&d["customer_timezone"]),
            text(&d["form_submission"]["name"]),
            text(&d["form_submission"]["email"]),
            d["in_trash"].clone(),
            json!(serde_json::to_string(e).unwrap()),
            micros(&e["creation_time"]),
            id_or_object(&d["booking_page"]),
            d["booking_page"].get("name").map_or(Value::Null, text),
            d["owner"].get("email").map_or(Value::Null, text),
        ];
        for (i, want) in expected.iter().enumerate() {
            assert_eq!(&r[i], want, "{} column {} of {}", e["type"], b.columns[i], e["id"]);
        }
        let cf = r[18].as_array().map_or(0, Vec::len);
        assert_eq!(cf, d["form_submission"]["custom_fields"].as_array().map_or(0, Vec::len));
        assert_eq!(r[19], d["payment_information"].get("amount_charged").cloned().unwrap_or(Value::Null));
        assert_eq!(r[21], text(&d["rescheduled_booking_id"]));
        assert_eq!(r[22], id_or_object(&d["conversation"]));
        assert_eq!(r[23], id_or_object(&d["event_type"]));
        assert_eq!(r[24], json!(Utc::now().date_naive().to_string()));
    }

    let c = duck(&format!(
        "SELECT event_id, event_type, conversation_id, status, initiated_by, contact_id, contact_email,
                owner_id, bot_id, website_id, audience_id, epoch_us(last_updated_time), len(answers),
                answers[1].question, booking_ids, owner.teams, contact.employees
         FROM read_parquet('{}/conversations/dt=*/*.parquet', hive_partitioning = true)",
        lake.display()
    ));
    let conversations: Vec<&Value> = events.iter().filter(|e| e["data"]["object"] == "conversation").collect();
    assert_eq!(c.rows.len(), conversations.len());
    for e in conversations {
        let d = &e["data"];
        let r = by_id(&c.rows, e["id"].as_str().unwrap());
        let expected = [
            e["id"].clone(),
            e["type"].clone(),
            text(&d["id"]),
            text(&d["status"]),
            text(&d["initiated_by"]),
            id_or_object(&d["contact"]),
            d["contact"].get("email").map_or(Value::Null, text),
            id_or_object(&d["owner"]),
            id_or_object(&d["bot"]),
            id_or_object(&d["website"]),
            id_or_object(&d["audience"]),
            micros(&d["last_updated_time"]),
            json!(d["answers"].as_array().unwrap().len()),
            d["answers"][0]["question"].clone(),
            d["bookings"].clone(),
            d["owner"].get("teams").cloned().unwrap_or(Value::Null),
            d["contact"].get("employees").cloned().unwrap_or(Value::Null),
        ];
        for (i, want) in expected.iter().enumerate() {
            assert_eq!(&r[i], want, "{} column {} of {}", e["type"], c.columns[i], e["id"]);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duckdb_reads_the_columns_with_their_types() {
    let app = TestApp::spawn(|_| {}).await;
    for e in samples::all_events("types", Utc::now()) {
        assert_eq!(app.post_signed(serde_json::to_vec(&e).unwrap()).await.status(), 200);
    }
    assert_eq!(app.post_signed(b"not json".to_vec()).await.status(), 200);
    let stopped = app.stop().await;
    let lake = stopped.lake.clone();
    let q = |table: &str| {
        duck(&format!(
            "SELECT * FROM read_parquet('{}/{table}/dt=*/*.parquet', hive_partitioning = true) LIMIT 1",
            lake.display()
        ))
    };
    let b = q("bookings");
    for (col, ty) in [
        ("event_time", "TIMESTAMP WITH TIME ZONE"),
        ("received_at", "TIMESTAMP WITH TIME ZONE"),
        ("starting_time", "TIMESTAMP WITH TIME ZONE"),
        ("duration_minutes", "BIGINT"),
        ("in_trash", "BOOLEAN"),
        ("attendees", "VARCHAR[]"),
        ("event_id", "VARCHAR"),
        ("dt", "DATE"),
    ] {
        assert_eq!(b.type_of(col), ty, "bookings.{col}");
    }
    assert!(b.type_of("form_submission").starts_with("STRUCT("), "{}", b.type_of("form_submission"));
    assert!(b.type_of("custom_fields").ends_with("[]"), "{}", b.type_of("custom_fields"));
    let c = q("conversations");
    assert!(c.type_of("answers").starts_with("STRUCT("));
    assert_eq!(c.type_of("booking_ids"), "VARCHAR[]");
    let d = q("dead_letter");
    assert_eq!(d.type_of("raw_body"), "BLOB");
    assert_eq!(d.type_of("reason"), "VARCHAR");
}
