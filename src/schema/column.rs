//! One column definition: its type grammar, its source grammar, and its Arrow field.
//!
//! Types: `utf8 | int64 | float64 | bool | timestamp | json | binary | struct | list<T>`.
//! Sources: a dotted path (`data.owner.email`), `id_of:PATH`, or `@meta` (see [`MetaField`]).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use arrow_schema::{DataType, Field, Fields, TimeUnit};
use serde::Deserialize;

/// A column as written in a schema file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawColumn {
    name: String,
    #[serde(rename = "type")]
    ty: String,
    #[serde(default = "yes")]
    nullable: bool,
    source: String,
    doc: String,
    #[serde(default)]
    fields: Vec<RawColumn>,
}

fn yes() -> bool {
    true
}

/// A parsed column: name, type, where its value comes from, and its documentation.
#[derive(Debug, Clone)]
pub struct ColumnDef {
    pub name: String,
    pub ty: ColumnType,
    pub nullable: bool,
    pub source: Source,
    pub doc: String,
}

/// The column types a schema file may use.
#[derive(Debug, Clone, PartialEq)]
pub enum ColumnType {
    Utf8,
    Int64,
    Float64,
    Bool,
    /// Arrow `Timestamp(Microsecond, "UTC")`, parsed from RFC 3339 text.
    Timestamp,
    /// UTF-8 text holding any JSON value, re-serialized.
    Json,
    Binary,
    Struct(Vec<ColumnDef>),
    List(Box<ColumnType>),
}

/// Where a column's value comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    /// The value at this path (object keys, from the row's root or the parent struct).
    Path(Vec<String>),
    /// An id-or-object field: the string itself, or the object's `id`.
    IdOf(Vec<String>),
    /// Receive metadata, not in the JSON.
    Meta(MetaField),
}

/// Values that come from the receiver rather than the delivered JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetaField {
    ReceivedAt,
    /// `webhook`, or `api` for a row `backfill` delivered.
    Origin,
    RawEvent,
    RawBody,
    Reason,
    Error,
}

impl PartialEq for ColumnDef {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && self.ty == other.ty && self.source == other.source
    }
}

impl TryFrom<RawColumn> for ColumnDef {
    type Error = String;

    fn try_from(raw: RawColumn) -> Result<Self, String> {
        let fields = raw.fields.into_iter().map(ColumnDef::try_from).collect::<Result<Vec<_>, _>>()?;
        let ty = parse_type(&raw.ty, fields).map_err(|m| format!("column {}: {m}", raw.name))?;
        let source = parse_source(&raw.source).map_err(|m| format!("column {}: {m}", raw.name))?;
        if let ColumnType::Struct(f) = &ty {
            check_unique(f).map_err(|m| format!("column {}: {m}", raw.name))?;
        }
        Ok(ColumnDef { name: raw.name, ty, nullable: raw.nullable, source, doc: raw.doc })
    }
}

fn parse_type(text: &str, fields: Vec<ColumnDef>) -> Result<ColumnType, String> {
    let scalar = match text {
        "utf8" => Some(ColumnType::Utf8),
        "int64" => Some(ColumnType::Int64),
        "float64" => Some(ColumnType::Float64),
        "bool" => Some(ColumnType::Bool),
        "timestamp" => Some(ColumnType::Timestamp),
        "json" => Some(ColumnType::Json),
        "binary" => Some(ColumnType::Binary),
        _ => None,
    };
    if let Some(ty) = scalar {
        return if fields.is_empty() { Ok(ty) } else { Err(format!("type {text} takes no fields")) };
    }
    if text == "struct" {
        return if fields.is_empty() { Err("struct needs fields".into()) } else { Ok(ColumnType::Struct(fields)) };
    }
    if let Some(inner) = text.strip_prefix("list<").and_then(|t| t.strip_suffix('>')) {
        return Ok(ColumnType::List(Box::new(parse_type(inner, fields)?)));
    }
    Err(format!("unknown type {text:?}"))
}

fn parse_path(text: &str) -> Result<Vec<String>, String> {
    let parts: Vec<String> = text.split('.').map(str::to_owned).collect();
    if parts.iter().any(|p| p.is_empty()) {
        return Err(format!("bad source path {text:?}"));
    }
    Ok(parts)
}

fn parse_source(text: &str) -> Result<Source, String> {
    if let Some(meta) = text.strip_prefix('@') {
        let field = match meta {
            "received_at" => MetaField::ReceivedAt,
            "source" => MetaField::Origin,
            "raw_event" => MetaField::RawEvent,
            "raw_body" => MetaField::RawBody,
            "reason" => MetaField::Reason,
            "error" => MetaField::Error,
            _ => return Err(format!("unknown metadata source {text:?}")),
        };
        return Ok(Source::Meta(field));
    }
    match text.strip_prefix("id_of:") {
        Some(path) => Ok(Source::IdOf(parse_path(path)?)),
        None => Ok(Source::Path(parse_path(text)?)),
    }
}

pub(super) fn check_unique(columns: &[ColumnDef]) -> Result<(), String> {
    let mut seen = HashSet::new();
    match columns.iter().find(|c| !seen.insert(c.name.as_str())) {
        Some(dup) => Err(format!("column {} appears twice", dup.name)),
        None => Ok(()),
    }
}

impl ColumnType {
    /// The Arrow type this column is stored as.
    pub fn arrow_type(&self) -> DataType {
        match self {
            ColumnType::Utf8 | ColumnType::Json => DataType::Utf8,
            ColumnType::Int64 => DataType::Int64,
            ColumnType::Float64 => DataType::Float64,
            ColumnType::Bool => DataType::Boolean,
            ColumnType::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            ColumnType::Binary => DataType::Binary,
            ColumnType::Struct(fields) => {
                DataType::Struct(fields.iter().map(ColumnDef::arrow_field).collect::<Fields>())
            }
            ColumnType::List(inner) => DataType::List(Arc::new(Field::new("item", inner.arrow_type(), true))),
        }
    }
}

impl ColumnDef {
    /// The Arrow field, with the column's doc as `description` metadata.
    pub fn arrow_field(&self) -> Field {
        let metadata = HashMap::from([("description".to_owned(), self.doc.clone())]);
        Field::new(&self.name, self.ty.arrow_type(), self.nullable).with_metadata(metadata)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_parse_including_nested_lists() {
        assert_eq!(parse_type("list<utf8>", vec![]).unwrap(), ColumnType::List(Box::new(ColumnType::Utf8)));
        assert!(parse_type("list<struct>", vec![]).is_err());
        assert!(parse_type("int64", vec![]).is_ok());
        assert!(parse_type("list<int32>", vec![]).is_err());
    }

    #[test]
    fn sources_parse() {
        assert_eq!(parse_source("data.owner").unwrap(), Source::Path(vec!["data".into(), "owner".into()]));
        assert_eq!(parse_source("id_of:data.owner").unwrap(), Source::IdOf(vec!["data".into(), "owner".into()]));
        assert_eq!(parse_source("@raw_event").unwrap(), Source::Meta(MetaField::RawEvent));
        assert!(parse_source("@nope").is_err());
        assert!(parse_source("data..x").is_err());
    }
}
