//! What a row is built from ([`RowInput`]), and, for tests, the reference row builder: one table
//! row as a JSON object keyed by column name, driven entirely by the table's column definitions.
//! The batcher builds Arrow columns directly (`columns`); its tests check it against this.

use chrono::{DateTime, Utc};
#[cfg(test)]
use serde_json::{Map, Value};

use super::node::Node;

#[cfg(test)]
use super::normalize::{lookup, normalize, normalize_ids};
#[cfg(test)]
use crate::schema::{ColumnType, MetaField, Source, TableSchema};

/// How the ids of `backfill`'s synthetic events start (OnceHub's own start with `EVNT-`).
pub(crate) const BACKFILL_ID_PREFIX: &str = "BKFL-";

/// What a row is built from. `J` is the parsed delivery's tree: the batcher's [`Node`], or
/// `serde_json::Value` for the reference row builder.
#[derive(Debug)]
pub(crate) struct RowInput<'a, J = Node<'a>> {
    /// The parsed delivery, when the body was JSON.
    pub json: Option<&'a J>,
    /// The body as text, when it is valid UTF-8 (validated once, by the parse).
    pub text: Option<&'a str>,
    /// The exact delivered bytes.
    pub body: &'a [u8],
    pub received_at: DateTime<Utc>,
    /// `(reason, error)` for dead letters.
    pub dead: Option<(&'a str, &'a str)>,
}

impl<J> Clone for RowInput<'_, J> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<J> Copy for RowInput<'_, J> {}

/// One row for `schema`, every value already coerced to its column type.
#[cfg(test)]
pub(crate) fn build_row(schema: &TableSchema, input: &RowInput<'_, Value>) -> Value {
    let row: Map<String, Value> = schema
        .columns
        .iter()
        .map(|col| {
            let value = match &col.source {
                Source::Path(p) => normalize(input.json.and_then(|j| lookup(j, p)), &col.ty),
                Source::IdOf(p) => normalize_ids(input.json.and_then(|j| lookup(j, p)), &col.ty),
                Source::Meta(m) => meta(*m, input, &col.ty),
            };
            (col.name.clone(), value)
        })
        .collect();
    Value::Object(row)
}

#[cfg(test)]
fn meta(field: MetaField, input: &RowInput<'_, Value>, ty: &ColumnType) -> Value {
    let text = |s: &str| Value::String(s.to_owned());
    match field {
        MetaField::ReceivedAt => Value::from(input.received_at.timestamp_micros()),
        MetaField::Origin => {
            let backfilled = input.json.is_some_and(|j| {
                j["type"] == "backfill" && j["id"].as_str().is_some_and(|id| id.starts_with(BACKFILL_ID_PREFIX))
            });
            text(if backfilled { "api" } else { "webhook" })
        }
        MetaField::RawEvent => match (input.json, std::str::from_utf8(input.body)) {
            (Some(_), Ok(s)) => text(s),
            _ => Value::Null,
        },
        MetaField::RawBody if *ty == ColumnType::Binary => Value::String(hex::encode(input.body)),
        MetaField::RawBody => Value::String(String::from_utf8_lossy(input.body).into_owned()),
        MetaField::Reason => input.dead.map_or(Value::Null, |(r, _)| text(r)),
        MetaField::Error => input.dead.map_or(Value::Null, |(_, e)| text(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{Catalog, Table};
    use serde_json::json;

    fn row(table: Table, body: &str) -> Value {
        let catalog = Catalog::load().unwrap();
        let json: Value = serde_json::from_str(body).unwrap();
        let received_at = DateTime::parse_from_rfc3339("2026-05-04T14:02:12Z").unwrap().to_utc();
        let input = RowInput { json: Some(&json), text: Some(body), body: body.as_bytes(), received_at, dead: None };
        build_row(catalog.table(table), &input)
    }

    #[test]
    fn owner_as_string_or_object_gives_owner_id() {
        let s = row(
            Table::Bookings,
            r#"{"id":"E1","type":"booking.scheduled","data":{"object":"booking","owner":"USR-1"}}"#,
        );
        assert_eq!(s["owner_id"], json!("USR-1"));
        assert_eq!(s["owner"], Value::Null);
        let o = row(
            Table::Bookings,
            r#"{"id":"E2","type":"booking.scheduled","data":{"object":"booking","owner":{"id":"USR-2","object":"user","email":"a@b.c"}}}"#,
        );
        assert_eq!(o["owner_id"], json!("USR-2"));
        assert_eq!(o["owner"]["email"], json!("a@b.c"));
    }

    #[test]
    fn empty_null_and_absent_all_become_null_and_unicode_survives() {
        let body = r#"{"id":"E3","type":"booking.canceled","data":{"object":"booking","rescheduled_booking_id":"","location_description":null,"subject":"Café ☕ 会议","form_submission":{"name":"Zoë","guests":["", "g@x.y"],"custom_fields":[{"name":"n","value":3},{"name":"o","value":{"k":[1]}}]}}}"#;
        let r = row(Table::Bookings, body);
        assert_eq!(r["rescheduled_booking_id"], Value::Null);
        assert_eq!(r["location_description"], Value::Null);
        assert_eq!(r["customer_timezone"], Value::Null);
        assert_eq!(r["subject"], json!("Café ☕ 会议"));
        assert_eq!(r["customer_name"], json!("Zoë"));
        assert_eq!(r["form_submission"]["guests"], json!([null, "g@x.y"]));
        assert_eq!(r["form_submission"]["custom_fields"][1]["value"], json!(r#"{"k":[1]}"#));
        assert_eq!(r["raw_event"], json!(body));
        assert_eq!(r["received_at"], json!(1_777_903_332_000_000_i64));
    }

    #[test]
    fn dead_letters_keep_the_bytes_and_reason() {
        let catalog = Catalog::load().unwrap();
        let received_at = Utc::now();
        let input =
            RowInput { json: None, text: None, body: b"\x00oops", received_at, dead: Some(("not_json", "bad")) };
        let r = build_row(catalog.table(Table::DeadLetter), &input);
        assert_eq!(r["raw_body"], json!("006f6f7073"));
        assert_eq!(r["reason"], json!("not_json"));
        assert_eq!(r["raw_event"], Value::Null);
        assert_eq!(r["event_id"], Value::Null);
    }

    #[test]
    fn expanded_id_fields_give_their_id_in_both_tables() {
        let b = row(
            Table::Bookings,
            r#"{"id":"E4","type":"booking.scheduled","data":{"object":"booking","booking_calendar":{"id":"BKC-03WJV0R52Z","object":"booking_calendar","name":"Sales","published":true}}}"#,
        );
        assert_eq!(b["booking_calendar_id"], json!("BKC-03WJV0R52Z"));
        let s = row(
            Table::Bookings,
            r#"{"id":"E5","type":"booking.scheduled","data":{"object":"booking","booking_calendar":"BKC-1"}}"#,
        );
        assert_eq!(s["booking_calendar_id"], json!("BKC-1"));
        let c = row(
            Table::Conversations,
            r#"{"id":"E6","type":"conversation.closed","data":{"object":"conversation","bookings":["BKNG-1",{"id":"BKNG-2","object":"booking"}]}}"#,
        );
        assert_eq!(c["booking_ids"], json!(["BKNG-1", "BKNG-2"]));
    }

    /// Every id-like column of the two object tables reads an id-or-object value (api doc §7).
    #[test]
    fn every_id_like_column_accepts_an_expanded_object() {
        let catalog = Catalog::load().unwrap();
        for table in [Table::Bookings, Table::Conversations] {
            for col in &catalog.table(table).columns {
                let own_id = matches!(&col.source, Source::Path(p) if p == &["id"] || p == &["data", "id"] || p == &["data", "tracking_id"]);
                let id_like = col.name.ends_with("_id") || col.name.ends_with("_ids");
                if id_like && !own_id {
                    assert!(matches!(col.source, Source::IdOf(_)), "{}.{} should be id_of:", table.name(), col.name);
                }
            }
        }
    }
}
