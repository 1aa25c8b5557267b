//! For tests: does a reference row (see `row::build_row`) fit its table the way the Arrow JSON
//! decoder reads it? The batcher checks rows with `columns` instead; this is its oracle.
//!
//! The check follows the Arrow JSON decoder's rules for the types our schemas use: nulls only
//! where the field is nullable, strings for text, binary (hex) and decimal-free numbers, integers
//! for `Int64` and timestamps (microseconds), any number for `Float64`, objects for structs
//! (every child checked, absent children being null), arrays for lists.

use arrow_schema::{DataType, Field, Fields, Schema};
use serde_json::Value;

pub(crate) use super::columns::Misfit;

/// Checks `row` (a JSON object keyed by column name) against `schema`.
pub(crate) fn check(schema: &Schema, row: &Value) -> Result<(), Misfit> {
    let Value::Object(map) = row else {
        return Err(Misfit { path: String::new(), problem: "the row is not an object".into() });
    };
    fields(schema.fields(), |name| map.get(name), None)
}

/// Where a value sits in the row, spelled out only when something does not fit (the check runs
/// for every row, so it allocates nothing on the way).
#[derive(Clone, Copy)]
enum Step<'a> {
    Field(&'a str),
    Item,
}

struct At<'a> {
    step: Step<'a>,
    parent: Option<&'a At<'a>>,
}

impl At<'_> {
    fn spell(&self) -> String {
        let parent = self.parent.map(At::spell);
        match (parent, self.step) {
            (None, Step::Field(name)) => name.to_owned(),
            (Some(p), Step::Field(name)) => format!("{p}.{name}"),
            (p, Step::Item) => format!("{}[]", p.unwrap_or_default()),
        }
    }
}

fn fields<'a>(fields: &Fields, get: impl Fn(&str) -> Option<&'a Value>, parent: Option<&At<'_>>) -> Result<(), Misfit> {
    for field in fields {
        value(field, get(field.name()), &At { step: Step::Field(field.name()), parent })?;
    }
    Ok(())
}

fn value(field: &Field, value: Option<&Value>, at: &At<'_>) -> Result<(), Misfit> {
    let misfit = |problem: &str| Err(Misfit { path: at.spell(), problem: problem.to_owned() });
    let value = match value {
        None | Some(Value::Null) if field.is_nullable() => return Ok(()),
        None | Some(Value::Null) => return misfit("null in a non-nullable column"),
        Some(v) => v,
    };
    match (field.data_type(), value) {
        (DataType::Utf8 | DataType::LargeUtf8 | DataType::Binary | DataType::LargeBinary, Value::String(_)) => Ok(()),
        (DataType::Int64 | DataType::Timestamp(_, _), Value::Number(n)) if n.is_i64() => Ok(()),
        (DataType::Float64, Value::Number(_)) => Ok(()),
        (DataType::Boolean, Value::Bool(_)) => Ok(()),
        (DataType::Struct(children), Value::Object(map)) => fields(children, |name| map.get(name), Some(at)),
        (DataType::List(item) | DataType::LargeList(item), Value::Array(items)) => {
            let at = At { step: Step::Item, parent: Some(at) };
            items.iter().try_for_each(|i| self::value(item, Some(i), &at))
        }
        (other, v) => misfit(&format!("{} where {other} was expected", kind(v))),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{RowInput, build_row};
    use crate::schema::{Catalog, Table};
    use chrono::Utc;
    use serde_json::json;

    #[test]
    fn normalized_rows_of_every_table_fit() {
        let catalog = Catalog::load().unwrap();
        let body = br#"{"id":"E","type":"booking.scheduled","data":{"object":"booking","owner":{"id":"U"}}}"#;
        let parsed: Value = serde_json::from_slice(body).unwrap();
        for table in Table::ALL {
            let schema = catalog.table(table);
            let dead = (table == Table::DeadLetter).then_some(("not_json", "e"));
            let input = RowInput { json: Some(&parsed), text: None, body, received_at: Utc::now(), dead };
            check(&schema.arrow, &build_row(schema, &input)).unwrap();
        }
    }

    #[test]
    fn a_null_where_none_may_be_is_named() {
        let catalog = Catalog::load().unwrap();
        let schema = catalog.table(Table::Bookings);
        let body = br#"{"id":"E","type":"","data":{"object":"booking"}}"#;
        let parsed: Value = serde_json::from_slice(body).unwrap();
        let input = RowInput { json: Some(&parsed), text: None, body, received_at: Utc::now(), dead: None };
        let e = check(&schema.arrow, &build_row(schema, &input)).unwrap_err();
        assert_eq!(e.path, "event_type");
        assert!(e.to_string().contains("non-nullable"), "{e}");
    }

    #[test]
    fn wrong_json_types_are_named_with_their_path() {
        let schema = Schema::new(vec![
            Field::new("n", DataType::Int64, true),
            Field::new("s", DataType::Struct(vec![Field::new("b", DataType::Boolean, true)].into()), true),
            Field::new("l", DataType::List(Field::new("item", DataType::Utf8, false).into()), true),
        ]);
        assert!(check(&schema, &json!({"n": 1, "s": {"b": true}, "l": ["x"]})).is_ok());
        assert_eq!(check(&schema, &json!({"n": 1.5})).unwrap_err().path, "n");
        assert_eq!(check(&schema, &json!({"s": {"b": "yes"}})).unwrap_err().path, "s.b");
        assert_eq!(check(&schema, &json!({"l": [null]})).unwrap_err().path, "l[]");
        assert!(check(&schema, &json!([1])).is_err());
    }
}
