//! A table's rows built straight into Arrow: each column's value is read from the parsed delivery
//! by its source, coerced by the rules of `normalize`, and appended to a typed builder. No row
//! object is built, nothing is serialized again, and no text is copied more than once (into the
//! column's buffer).
//!
//! Invariants: [`Columns::check`] refuses exactly the rows that would put a null in a
//! non-nullable field (every other value is coerced to its column's type, or null), so
//! [`Columns::append`] of a checked row always succeeds, and [`Columns::finish`] gives a batch of
//! the table's Arrow schema (field names, types, metadata and nullability).

use std::fmt::Write as _;
use std::sync::Arc;

use arrow_array::builder::{
    BinaryBuilder, BooleanBuilder, Float64Builder, Int64Builder, StringBuilder, TimestampMicrosecondBuilder,
};
use arrow_array::{ArrayRef, ListArray, RecordBatch, StructArray};
use arrow_buffer::{NullBufferBuilder, OffsetBuffer, ScalarBuffer};
use arrow_schema::{ArrowError, DataType, FieldRef, Fields, SchemaRef};

use super::RowInput;
use super::node::Node;
use super::normalize::{Scalar, coerce, id_of, lookup};
use super::row::BACKFILL_ID_PREFIX;
use crate::schema::{ColumnDef, ColumnType, MetaField, Source, TableSchema};

/// Why a row does not fit its table; the text names the column path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("column `{path}`: {problem}")]
pub(crate) struct Misfit {
    pub path: String,
    pub problem: String,
}

/// A value as it reaches a column, before coercion.
#[derive(Clone, Copy)]
enum Input<'a> {
    Json(Option<&'a Node<'a>>),
    /// Each item of an array is an id-or-object (an `id_of:` list column).
    Ids(Option<&'a Node<'a>>),
    Text(Option<&'a str>),
    Bytes(&'a [u8]),
    Micros(i64),
}

/// One column (or struct field, or list item) being built.
enum Builder {
    Utf8(StringBuilder),
    Json(StringBuilder),
    Int64(Int64Builder),
    Float64(Float64Builder),
    Bool(BooleanBuilder),
    Timestamp(TimestampMicrosecondBuilder),
    Binary(BinaryBuilder),
    Struct { fields: Fields, children: Vec<Child>, nulls: NullBufferBuilder },
    List { item: FieldRef, values: Box<Builder>, offsets: Vec<i32>, nulls: NullBufferBuilder },
}

/// A struct's field: where it is read from in the struct's object, and its builder.
struct Child {
    source: Source,
    list: bool,
    builder: Builder,
}

/// The rows of one table being built, column by column.
pub(crate) struct Columns {
    schema: SchemaRef,
    columns: Vec<Builder>,
    /// Columns (by position) that hold a non-nullable field at any depth: the only ones checked.
    strict: Vec<usize>,
    defs: Vec<ColumnDef>,
    rows: usize,
}

impl Columns {
    pub(crate) fn new(table: &TableSchema) -> Columns {
        let columns = table.columns.iter().map(|c| Builder::new(&c.ty)).collect();
        let strict = table.columns.iter().enumerate().filter(|(_, c)| has_required(c)).map(|(i, _)| i).collect();
        Columns { schema: table.arrow.clone(), columns, strict, defs: table.columns.clone(), rows: 0 }
    }

    pub(crate) fn rows(&self) -> usize {
        self.rows
    }

    /// Would this row put a null where the schema allows none? The text names the column path.
    pub(crate) fn check(&self, input: &RowInput<'_>) -> Result<(), Misfit> {
        for &i in &self.strict {
            let def = &self.defs[i];
            required(def, source_input(&def.source, &def.ty, input), &def.name)?;
        }
        Ok(())
    }

    /// Appends a row that passed [`Columns::check`].
    pub(crate) fn append(&mut self, input: &RowInput<'_>) {
        for (builder, def) in self.columns.iter_mut().zip(&self.defs) {
            builder.append(source_input(&def.source, &def.ty, input));
        }
        self.rows += 1;
    }

    /// The rows appended since the last call, as one batch of the table's schema.
    pub(crate) fn finish(&mut self) -> Result<RecordBatch, ArrowError> {
        self.rows = 0;
        let arrays = self.columns.iter_mut().map(Builder::finish).collect::<Result<Vec<_>, _>>()?;
        RecordBatch::try_new(self.schema.clone(), arrays)
    }
}

/// Where a top-level column's value comes from in this delivery.
fn source_input<'a>(source: &Source, ty: &ColumnType, input: &RowInput<'a>) -> Input<'a> {
    match source {
        Source::Meta(m) => meta(*m, input),
        _ => read(source, matches!(ty, ColumnType::List(_)), input.json),
    }
}

/// The value at `source` under `root` (the delivery, or a struct's object); `list`: the column is
/// a list, so an `id_of:` source reads each item as an id.
fn read<'a>(source: &Source, list: bool, root: Option<&'a Node<'a>>) -> Input<'a> {
    let at = |p: &[String]| root.and_then(|r| lookup(r, p));
    match source {
        Source::Path(p) => Input::Json(at(p)),
        Source::IdOf(p) if list => Input::Ids(at(p)),
        Source::IdOf(p) => Input::Json(id_of(at(p))),
        Source::Meta(_) => Input::Json(None),
    }
}

fn meta<'a>(field: MetaField, input: &RowInput<'a>) -> Input<'a> {
    match field {
        MetaField::ReceivedAt => Input::Micros(input.received_at.timestamp_micros()),
        MetaField::Origin => {
            let backfilled = input.json.is_some_and(|j| {
                j.get("type").and_then(Node::as_str) == Some("backfill")
                    && j.get("id").and_then(Node::as_str).is_some_and(|id| id.starts_with(BACKFILL_ID_PREFIX))
            });
            Input::Text(Some(if backfilled { "api" } else { "webhook" }))
        }
        MetaField::RawEvent => Input::Text(input.json.and(input.text)),
        MetaField::RawBody => Input::Bytes(input.body),
        MetaField::Reason => Input::Text(input.dead.map(|(r, _)| r)),
        MetaField::Error => Input::Text(input.dead.map(|(_, e)| e)),
    }
}

fn has_required(def: &ColumnDef) -> bool {
    !def.nullable
        || match &def.ty {
            ColumnType::Struct(fields) => fields.iter().any(has_required),
            _ => false,
        }
}

/// Checks the non-nullable fields of `def`'s subtree for this value.
fn required(def: &ColumnDef, input: Input<'_>, path: &str) -> Result<(), Misfit> {
    let null = is_null(&def.ty, input);
    if null && !def.nullable {
        return Err(Misfit { path: path.to_owned(), problem: "null in a non-nullable column".into() });
    }
    if let (false, ColumnType::Struct(fields), Input::Json(Some(parent))) = (null, &def.ty, input) {
        for f in fields.iter().filter(|f| has_required(f)) {
            let list = matches!(f.ty, ColumnType::List(_));
            required(f, read(&f.source, list, Some(parent)), &format!("{path}.{}", f.name))?;
        }
    }
    Ok(())
}

/// Is this value null once coerced to `ty` (the rules of `normalize`)?
fn is_null(ty: &ColumnType, input: Input<'_>) -> bool {
    match input {
        Input::Json(v) | Input::Ids(v) => coerce(ty, v).is_none(),
        Input::Text(t) => t.is_none(),
        Input::Bytes(_) | Input::Micros(_) => false,
    }
}

impl Builder {
    fn new(ty: &ColumnType) -> Builder {
        match ty {
            ColumnType::Utf8 => Builder::Utf8(StringBuilder::new()),
            ColumnType::Json => Builder::Json(StringBuilder::new()),
            ColumnType::Int64 => Builder::Int64(Int64Builder::new()),
            ColumnType::Float64 => Builder::Float64(Float64Builder::new()),
            ColumnType::Bool => Builder::Bool(BooleanBuilder::new()),
            ColumnType::Timestamp => Builder::Timestamp(TimestampMicrosecondBuilder::new().with_timezone("UTC")),
            ColumnType::Binary => Builder::Binary(BinaryBuilder::new()),
            ColumnType::Struct(fields) => Builder::Struct {
                fields: fields.iter().map(ColumnDef::arrow_field).collect(),
                children: fields
                    .iter()
                    .map(|f| Child {
                        source: f.source.clone(),
                        list: matches!(f.ty, ColumnType::List(_)),
                        builder: Builder::new(&f.ty),
                    })
                    .collect(),
                nulls: NullBufferBuilder::new(0),
            },
            ColumnType::List(inner) => {
                let DataType::List(item) = ty.arrow_type() else { unreachable!("a list column's type is a list") };
                Builder::List {
                    item,
                    values: Box::new(Builder::new(inner)),
                    offsets: vec![0],
                    nulls: NullBufferBuilder::new(0),
                }
            }
        }
    }

    fn append(&mut self, input: Input<'_>) {
        match input {
            Input::Json(v) => self.append_json(v, false),
            Input::Ids(v) => self.append_json(v, true),
            Input::Text(t) => self.append_text(t),
            Input::Bytes(b) => match self {
                Builder::Binary(out) => out.append_value(b),
                // A text column holding the delivered bytes: as text, invalid UTF-8 replaced.
                _ => self.append_text(Some(&String::from_utf8_lossy(b))),
            },
            Input::Micros(m) => match self {
                Builder::Timestamp(out) => out.append_value(m),
                Builder::Int64(out) => out.append_value(m),
                _ => self.append_null(),
            },
        }
    }

    fn append_text(&mut self, text: Option<&str>) {
        match (self, text) {
            (Builder::Utf8(out) | Builder::Json(out), Some(t)) => out.append_value(t),
            (Builder::Binary(out), Some(t)) => out.append_value(t.as_bytes()),
            (b, _) => b.append_null(),
        }
    }

    fn append_null(&mut self) {
        match self {
            Builder::Utf8(b) | Builder::Json(b) => b.append_null(),
            Builder::Int64(b) => b.append_null(),
            Builder::Float64(b) => b.append_null(),
            Builder::Bool(b) => b.append_null(),
            Builder::Timestamp(b) => b.append_null(),
            Builder::Binary(b) => b.append_null(),
            Builder::Struct { children, nulls, .. } => {
                children.iter_mut().for_each(|c| c.builder.append_null());
                nulls.append_null();
            }
            Builder::List { offsets, nulls, .. } => {
                offsets.push(offsets.last().copied().unwrap_or(0));
                nulls.append_null();
            }
        }
    }

    /// Appends a JSON value coerced to this column's type; `ids`: each list item is an id.
    fn append_json(&mut self, value: Option<&Node<'_>>, ids: bool) {
        let ty_null = match self {
            Builder::Struct { .. } => !matches!(value, Some(Node::Object(_))),
            Builder::List { .. } => !matches!(value, Some(Node::Array(_))),
            _ => false,
        };
        if ty_null {
            return self.append_null();
        }
        match self {
            Builder::Struct { children, nulls, .. } => {
                for child in children.iter_mut() {
                    child.builder.append(read(&child.source, child.list, value));
                }
                nulls.append_non_null();
            }
            Builder::List { values, offsets, nulls, .. } => {
                let items = match value {
                    Some(Node::Array(items)) => items.as_slice(),
                    _ => &[],
                };
                for item in items {
                    let item = if ids { id_of(Some(item)) } else { Some(item) };
                    values.append_json(item, false);
                }
                offsets.push(offsets.last().copied().unwrap_or(0) + items.len() as i32);
                nulls.append_non_null();
            }
            scalar => scalar.append_scalar(value),
        }
    }

    fn append_scalar(&mut self, value: Option<&Node<'_>>) {
        let ty = match self {
            Builder::Utf8(_) => ColumnType::Utf8,
            Builder::Json(_) => ColumnType::Json,
            Builder::Int64(_) => ColumnType::Int64,
            Builder::Float64(_) => ColumnType::Float64,
            Builder::Bool(_) => ColumnType::Bool,
            Builder::Timestamp(_) => ColumnType::Timestamp,
            Builder::Binary(_) => ColumnType::Binary,
            Builder::Struct { .. } | Builder::List { .. } => return,
        };
        let Some(scalar) = coerce(&ty, value) else { return self.append_null() };
        match (self, scalar) {
            (Builder::Utf8(out), Scalar::Str(s)) => out.append_value(s),
            (Builder::Utf8(out), Scalar::Number(n)) => {
                let _ = write!(out, "{n}");
                out.append_value("");
            }
            (Builder::Utf8(out), Scalar::Bool(b)) => out.append_value(if b { "true" } else { "false" }),
            (Builder::Json(out), Scalar::Present(v)) => {
                let _ = write!(out, "{v}");
                out.append_value("");
            }
            (Builder::Int64(out), Scalar::Int(i)) => out.append_value(i),
            (Builder::Timestamp(out), Scalar::Int(i)) => out.append_value(i),
            (Builder::Float64(out), Scalar::Float(f)) => out.append_value(f),
            (Builder::Bool(out), Scalar::Bool(b)) => out.append_value(b),
            (Builder::Binary(out), Scalar::Str(s)) => match hex::decode(s) {
                Ok(bytes) => out.append_value(bytes),
                Err(_) => out.append_null(),
            },
            (b, _) => b.append_null(),
        }
    }

    fn finish(&mut self) -> Result<ArrayRef, ArrowError> {
        Ok(match self {
            Builder::Utf8(b) | Builder::Json(b) => Arc::new(b.finish()),
            Builder::Int64(b) => Arc::new(b.finish()),
            Builder::Float64(b) => Arc::new(b.finish()),
            Builder::Bool(b) => Arc::new(b.finish()),
            Builder::Timestamp(b) => Arc::new(b.finish()),
            Builder::Binary(b) => Arc::new(b.finish()),
            Builder::Struct { fields, children, nulls } => {
                let arrays = children.iter_mut().map(|c| c.builder.finish()).collect::<Result<Vec<_>, _>>()?;
                Arc::new(StructArray::try_new(fields.clone(), arrays, nulls.finish())?)
            }
            Builder::List { item, values, offsets, nulls } => {
                let offsets = OffsetBuffer::new(ScalarBuffer::from(std::mem::replace(offsets, vec![0])));
                Arc::new(ListArray::try_new(item.clone(), offsets, values.finish()?, nulls.finish())?)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Event, Parsed, build_row};
    use crate::schema::{Catalog, Table};
    use arrow_json::ReaderBuilder;
    use chrono::{DateTime, Utc};
    use serde_json::{Value, json};

    fn received() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-05-04T14:02:12.345Z").unwrap().to_utc()
    }

    /// The batch `Columns` builds equals the Arrow JSON decoder's reading of the reference rows
    /// (`build_row`, over the body parsed into `serde_json::Value`), for each table the bodies
    /// route to.
    fn same_as_reference(bodies: &[Vec<u8>]) {
        let catalog = Catalog::load().unwrap();
        for table in Table::ALL {
            let schema = catalog.table(table);
            let (mut columns, mut reference) = (Columns::new(schema), Vec::new());
            for body in bodies {
                let (parsed, text) = Event::parse_text(body);
                if parsed.table() != table {
                    continue;
                }
                let (json, dead) = match &parsed {
                    Parsed::Event(e) => (Some(&e.json), None),
                    Parsed::Dead(d) => (d.json.as_ref(), Some((d.reason.code(), d.error.as_str()))),
                };
                let input = RowInput { json, text, body, received_at: received(), dead };
                columns.check(&input).unwrap();
                columns.append(&input);
                let value: Option<Value> = text.and_then(|t| serde_json::from_str(t).ok());
                assert_eq!(value.is_some(), json.is_some(), "both parsers take the same bodies");
                let input = RowInput { json: value.as_ref(), text, body, received_at: received(), dead };
                reference.push(build_row(schema, &input));
            }
            if reference.is_empty() {
                continue;
            }
            let ours = columns.finish().unwrap();
            let mut decoder = ReaderBuilder::new(schema.arrow.clone()).build_decoder().unwrap();
            decoder.serialize(&reference).unwrap();
            let theirs = decoder.flush().unwrap().unwrap();
            assert_eq!(ours.num_rows(), reference.len());
            for (i, field) in schema.arrow.fields().iter().enumerate() {
                assert_eq!(ours.column(i), theirs.column(i), "{}.{}", table.name(), field.name());
            }
            assert_eq!(ours, theirs);
            assert_eq!(columns.rows(), 0, "finish starts the next chunk empty");
        }
    }

    #[test]
    fn every_sample_event_builds_the_reference_row() {
        let bodies: Vec<Vec<u8>> = crate::commands::samples::all_events("cols", received())
            .iter()
            .map(|e| e.to_string().into_bytes())
            .collect();
        assert!(bodies.len() > 20);
        same_as_reference(&bodies);
    }

    #[test]
    fn odd_values_coerce_as_the_reference_does() {
        let bodies = [
            json!({"id":"E1","type":"booking.scheduled","data":{"object":"booking","owner":"USR-1","duration_minutes":"45","price":"12.5"}}),
            json!({"id":"E2","type":"booking.scheduled","data":{"object":"booking","owner":{"id":"USR-2","object":"user","email":"a@b.c"},"duration_minutes":30.0}}),
            json!({"id":"E3","type":"booking.canceled","data":{"object":"booking","rescheduled_booking_id":"","location_description":null,"subject":"Café ☕ 会议","form_submission":{"name":"Zoë","guests":["", "g@x.y", 5],"custom_fields":[{"name":"n","value":3},{"name":"o","value":{"k":[1]}}]}}}),
            json!({"id":"E4","type":"booking.scheduled","creation_time":"2026-05-04T23:30:00-02:00","data":{"object":"booking","starting_time":"not a time","duration_minutes":1.5,"form_submission":"text","booking_calendar":{"id":"BKC-1","object":"booking_calendar"}}}),
            json!({"id":"E5","type":"conversation.closed","data":{"object":"conversation","bookings":["BKNG-1",{"id":"BKNG-2","object":"booking"},7,null],"answers":"no"}}),
            json!({"id":"E6","type":"contact.updated","data":{"object":"contact","employees":"250","has_consent":"true","terms_of_sevice":false,"custom_fields":[{"name":"x","value":[1,2]}],"owner":{"id":"USR-3"}}}),
            json!({"id":"E7","type":"user.updated","api_version":7,"data":{"object":"user","name":true}}),
            json!({"id":"BKFL-1","type":"backfill","data":{"object":"booking","subject":12}}),
        ];
        let mut bodies: Vec<Vec<u8>> = bodies.iter().map(|b| b.to_string().into_bytes()).collect();
        bodies.extend([
            b"\xff\xfe".to_vec(),
            b"{not json".to_vec(),
            b"[1,2]".to_vec(),
            br#"{"id":7,"type":"t","data":{}}"#.to_vec(),
            // Keys out of order and given twice, a string with escapes: as `Value` reads them.
            br#"{"type":"booking.scheduled","id":"E8","data":{"subject":"a","object":"booking","subject":"b\u00e9\"","form_submission":{"custom_fields":[{"value":{"z":1,"a":[2],"z":3},"name":"k"}]}}}"#.to_vec(),
        ]);
        same_as_reference(&bodies);
    }

    #[test]
    fn a_required_value_that_is_missing_is_named() {
        let catalog = Catalog::load().unwrap();
        let columns = Columns::new(catalog.table(Table::Bookings));
        let json = Node::parse(r#"{"id": "E", "type": "", "data": {"object": "booking"}}"#).unwrap();
        let input = RowInput { json: Some(&json), text: Some("{}"), body: b"{}", received_at: received(), dead: None };
        let misfit = columns.check(&input).unwrap_err();
        assert_eq!((misfit.path.as_str(), misfit.problem.as_str()), ("event_type", "null in a non-nullable column"));
        let ok = Node::parse(r#"{"id": "E", "type": "t", "data": {"object": "booking"}}"#).unwrap();
        assert!(columns.check(&RowInput { json: Some(&ok), ..input }).is_ok());
    }
}
