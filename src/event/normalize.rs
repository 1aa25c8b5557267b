//! Coerces a JSON value to a column type, so every row fits its Arrow schema.
//!
//! Rules (the same for every column): `""`, `null` and absent become null; a value of the wrong
//! JSON type becomes null, except that scalars are accepted as text for `utf8` columns and numeric
//! text for numeric ones; `json` columns hold the value re-serialized. The output only holds JSON
//! types the Arrow JSON decoder accepts for the column, so encoding a normalized row cannot fail.

use chrono::DateTime;
use serde_json::Number;
#[cfg(test)]
use serde_json::{Map, Value};

use super::node::{Json, View};

use crate::schema::ColumnType;
#[cfg(test)]
use crate::schema::{ColumnDef, Source};

/// Parses RFC 3339 text (with or without fractional seconds) to UTC.
pub(crate) fn parse_timestamp(text: &str) -> Option<DateTime<chrono::Utc>> {
    DateTime::parse_from_rfc3339(text).ok().map(|t| t.to_utc())
}

/// Follows object keys from `root`.
pub(super) fn lookup<'a, J: Json>(root: &'a J, path: &[String]) -> Option<&'a J> {
    path.iter().try_fold(root, |v, key| v.get_key(key))
}

/// The id of an id-or-object value: the string itself, or the object's `id`.
pub(super) fn id_of<J: Json>(value: Option<&J>) -> Option<&J> {
    let value = value?;
    match value.view() {
        View::Str(_) => Some(value),
        View::Object => value.get_key("id"),
        _ => None,
    }
}

/// An id-or-object value as its id, coerced to `ty`; for a list column, each item so.
#[cfg(test)]
pub(super) fn normalize_ids(value: Option<&Value>, ty: &ColumnType) -> Value {
    match (value, ty) {
        (Some(Value::Array(items)), ColumnType::List(inner)) => {
            Value::Array(items.iter().map(|i| normalize(id_of(Some(i)), inner)).collect())
        }
        _ => normalize(id_of(value), ty),
    }
}

/// Coerces `value` to `ty`; `Value::Null` when it does not fit (the reference for `columns`).
#[cfg(test)]
pub(super) fn normalize(value: Option<&Value>, ty: &ColumnType) -> Value {
    let Some(scalar) = coerce(ty, value) else { return Value::Null };
    match (ty, scalar) {
        (_, Scalar::Str(s)) => Value::String(s.to_owned()),
        (_, Scalar::Number(n)) => Value::String(n.to_string()),
        (ColumnType::Utf8, Scalar::Bool(b)) => Value::String(b.to_string()),
        (_, Scalar::Bool(b)) => Value::Bool(b),
        (_, Scalar::Int(i)) => Value::from(i),
        (_, Scalar::Float(f)) => Number::from_f64(f).map_or(Value::Null, Value::Number),
        (ColumnType::Struct(fields), Scalar::Present(v)) => Value::Object(struct_fields(v, fields)),
        (ColumnType::List(inner), Scalar::Present(Value::Array(items))) => {
            Value::Array(items.iter().map(|i| normalize(Some(i), inner)).collect())
        }
        (_, Scalar::Present(v)) => Value::String(v.to_string()),
    }
}

/// A JSON value coerced to a column type: a scalar, or "present" for json, struct and list.
pub(super) enum Scalar<'a, J> {
    Str(&'a str),
    Number(&'a Number),
    Bool(bool),
    Int(i64),
    Float(f64),
    Present(&'a J),
}

/// `value` coerced to `ty`, or `None` for null (blank, absent, or of a type that does not fit):
/// the one statement of the rules above, for the batcher's builders and the reference alike.
pub(super) fn coerce<'a, J: Json>(ty: &ColumnType, value: Option<&'a J>) -> Option<Scalar<'a, J>> {
    let value = value.filter(|v| !is_blank(*v))?;
    let view = value.view();
    Some(match ty {
        ColumnType::Utf8 => match view {
            View::Str(s) => Scalar::Str(s),
            View::Number(n) => Scalar::Number(n),
            View::Bool(b) => Scalar::Bool(b),
            _ => return None,
        },
        ColumnType::Json => Scalar::Present(value),
        ColumnType::Int64 => Scalar::Int(match view {
            View::Number(n) => {
                n.as_i64().or_else(|| n.as_f64().filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15).map(|f| f as i64))
            }
            View::Str(s) => s.trim().parse().ok(),
            _ => None,
        }?),
        ColumnType::Float64 => Scalar::Float(match view {
            View::Number(n) => n.as_f64().filter(|f| f.is_finite()),
            View::Str(s) => s.trim().parse::<f64>().ok().filter(|f| f.is_finite()),
            _ => None,
        }?),
        ColumnType::Bool => Scalar::Bool(match view {
            View::Bool(b) => b,
            View::Str(s) if s == "true" || s == "false" => s == "true",
            _ => return None,
        }),
        ColumnType::Timestamp => match view {
            View::Str(s) => Scalar::Int(parse_timestamp(s)?.timestamp_micros()),
            _ => return None,
        },
        ColumnType::Binary => match view {
            View::Str(s) => Scalar::Str(s),
            _ => return None,
        },
        ColumnType::Struct(_) => match view {
            View::Object => Scalar::Present(value),
            _ => return None,
        },
        ColumnType::List(_) => match view {
            View::Array => Scalar::Present(value),
            _ => return None,
        },
    })
}

pub(super) fn is_blank<J: Json>(v: &J) -> bool {
    matches!(v.view(), View::Null | View::Str(""))
}

/// The fields of a struct column, each taken from `parent` by its relative source.
#[cfg(test)]
fn struct_fields(parent: &Value, fields: &[ColumnDef]) -> Map<String, Value> {
    fields
        .iter()
        .map(|f| {
            let value = match &f.source {
                Source::Path(p) => normalize(lookup(parent, p), &f.ty),
                Source::IdOf(p) => normalize_ids(lookup(parent, p), &f.ty),
                Source::Meta(_) => Value::Null,
            };
            (f.name.clone(), value)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn blanks_and_wrong_types_become_null() {
        assert_eq!(normalize(Some(&json!("")), &ColumnType::Utf8), Value::Null);
        assert_eq!(normalize(None, &ColumnType::Int64), Value::Null);
        assert_eq!(normalize(Some(&json!({"a":1})), &ColumnType::Utf8), Value::Null);
        assert_eq!(normalize(Some(&json!("abc")), &ColumnType::Int64), Value::Null);
        assert_eq!(normalize(Some(&json!(1.5)), &ColumnType::Int64), Value::Null);
        assert_eq!(normalize(Some(&json!("yes")), &ColumnType::Bool), Value::Null);
        assert_eq!(normalize(Some(&json!("not a time")), &ColumnType::Timestamp), Value::Null);
        assert_eq!(normalize(Some(&json!("BP-1")), &ColumnType::Struct(vec![])), Value::Null);
    }

    #[test]
    fn scalars_are_coerced_where_unambiguous() {
        assert_eq!(normalize(Some(&json!(30)), &ColumnType::Utf8), json!("30"));
        assert_eq!(normalize(Some(&json!("45")), &ColumnType::Int64), json!(45));
        assert_eq!(normalize(Some(&json!(30.0)), &ColumnType::Int64), json!(30));
        assert_eq!(normalize(Some(&json!("true")), &ColumnType::Bool), json!(true));
    }

    #[test]
    fn timestamps_with_and_without_millis_become_micros() {
        let a = normalize(Some(&json!("2026-05-04T14:02:11.512Z")), &ColumnType::Timestamp);
        let b = normalize(Some(&json!("2026-05-04T14:02:11Z")), &ColumnType::Timestamp);
        assert_eq!(a.as_i64().unwrap() - b.as_i64().unwrap(), 512_000);
        assert_eq!(b, json!(1_777_903_331_000_000_i64));
    }

    #[test]
    fn json_columns_keep_any_value_as_text() {
        for v in [json!(1), json!(true), json!(["a", 2]), json!({"k": "ü"}), json!("x")] {
            let out = normalize(Some(&v), &ColumnType::Json);
            let back: Value = serde_json::from_str(out.as_str().unwrap()).unwrap();
            assert_eq!(back, v);
        }
    }

    #[test]
    fn id_of_accepts_both_shapes() {
        assert_eq!(id_of(Some(&json!("USR-1"))), Some(&json!("USR-1")));
        assert_eq!(id_of(Some(&json!({"id": "USR-2", "object": "user"}))), Some(&json!("USR-2")));
        assert_eq!(id_of(Some(&json!(5))), None);
        assert_eq!(id_of::<Value>(None), None);
    }
}
