//! The envelope rule: which `id`, `type` and `data` make a signed delivery an event. It is one
//! rule in one place, applied by the receiver (to pick the dedup key without building the
//! document) and by the batcher (to pick the row's table), so the two always agree: a delivery the
//! receiver keys for dedup is exactly a delivery the batcher stores as an event.
//!
//! The rule: `id` and `type` are non-empty strings and `data` is an object. A key given twice
//! counts by its last value, as the batcher's `Node` (like `serde_json::Value` and JavaScript's
//! `JSON.parse`) reads it. The receiver's reading accepts and refuses exactly the bodies the
//! batcher's parse does: both go through serde_json's `deserialize_any` path (number ranges,
//! UTF-8, the recursion limit), the receiver without keeping what it reads.

use std::borrow::Cow;
use std::fmt;

use serde::Deserializer;
use serde::de::{DeserializeSeed, MapAccess, SeqAccess, Visitor};

use super::DeadReason;
use super::node::{Json, View};

mod skip;

use skip::{Skip, SkipVisitor};

/// What an envelope field holds, as far as the rule cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Shape {
    Absent,
    Null,
    EmptyText,
    Text,
    Object,
    Other,
}

impl Shape {
    pub(super) fn of<J: Json>(value: Option<&J>) -> Shape {
        match value.map(Json::view) {
            None => Shape::Absent,
            Some(View::Null) => Shape::Null,
            Some(View::Str("")) => Shape::EmptyText,
            Some(View::Str(_)) => Shape::Text,
            Some(View::Object) => Shape::Object,
            Some(_) => Shape::Other,
        }
    }
}

/// Applies the rule to the shapes of `id`, `type` and `data`.
pub(super) fn check(id: Shape, event_type: Shape, data: Shape) -> Result<(), (DeadReason, &'static str)> {
    let missing = |s: Shape| matches!(s, Shape::Absent | Shape::Null);
    if missing(id) {
        return Err((DeadReason::MissingField, "envelope has no `id`"));
    }
    if missing(event_type) {
        return Err((DeadReason::MissingField, "envelope has no `type`"));
    }
    if missing(data) {
        return Err((DeadReason::MissingField, "envelope has no `data`"));
    }
    if id != Shape::Text {
        return Err((DeadReason::WrongType, "envelope `id` must be a non-empty string"));
    }
    if event_type != Shape::Text {
        return Err((DeadReason::WrongType, "envelope `type` must be a non-empty string"));
    }
    if data != Shape::Object {
        return Err((DeadReason::WrongType, "envelope `data` must be an object"));
    }
    Ok(())
}

/// The receiver's reading of a body: the envelope's `id` and `type` text and the rule's verdict.
#[derive(Debug, Default)]
pub(super) struct Read<'a> {
    pub id: Option<Cow<'a, str>>,
    pub event_type: Option<Cow<'a, str>>,
    /// The body is a JSON object that passes [`check`].
    pub is_event: bool,
}

/// Reads `body` as the batcher will; anything the batcher's parse refuses gives `is_event: false`.
pub(super) fn read(body: &[u8]) -> Read<'_> {
    // One pass over the whole body is cheaper than checking each string as it is read, and
    // refuses the same bodies (invalid UTF-8 outside a string is invalid JSON anyway).
    let Ok(text) = std::str::from_utf8(body) else { return Read::default() };
    let mut de = serde_json::Deserializer::from_str(text);
    let Ok(top) = de.deserialize_any(TopVisitor) else { return Read::default() };
    if de.end().is_err() {
        return Read::default();
    }
    let Some(Top { id, event_type, data }) = top else { return Read::default() };
    let is_event = check(id.shape(), event_type.shape(), data.shape()).is_ok();
    Read { id: id.into_text(), event_type: event_type.into_text(), is_event }
}

/// One top-level field as read: its text when it is a string, else its shape.
#[derive(Debug, Default)]
enum Field<'a> {
    #[default]
    Absent,
    Text(Cow<'a, str>),
    Shaped(Shape),
}

impl<'a> Field<'a> {
    fn into_text(self) -> Option<Cow<'a, str>> {
        match self {
            Field::Text(t) => Some(t),
            _ => None,
        }
    }

    fn shape(&self) -> Shape {
        match self {
            Field::Absent => Shape::Absent,
            Field::Text(t) if t.is_empty() => Shape::EmptyText,
            Field::Text(_) => Shape::Text,
            Field::Shaped(s) => *s,
        }
    }
}

#[derive(Default)]
struct Top<'a> {
    id: Field<'a>,
    event_type: Field<'a>,
    data: Field<'a>,
}

/// The top level: `Some` for an object, `None` for any other valid JSON value.
struct TopVisitor;

impl<'de> Visitor<'de> for TopVisitor {
    type Value = Option<Top<'de>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut top = Top::default();
        while let Some(key) = map.next_key_seed(KeySeed)? {
            match key {
                Key::Id => top.id = map.next_value_seed(FieldSeed)?,
                Key::Type => top.event_type = map.next_value_seed(FieldSeed)?,
                Key::Data => top.data = map.next_value_seed(FieldSeed)?,
                Key::Other => map.next_value_seed(Skip)?,
            }
        }
        Ok(Some(top))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element_seed(Skip)?.is_some() {}
        Ok(None)
    }

    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
}

/// A top-level key, told apart without allocating (escaped keys included: the visitor sees them
/// unescaped).
enum Key {
    Id,
    Type,
    Data,
    Other,
}

struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Key;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Key, D::Error> {
        d.deserialize_str(KeySeed)
    }
}

impl<'de> Visitor<'de> for KeySeed {
    type Value = Key;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_str<E>(self, key: &str) -> Result<Key, E> {
        Ok(match key {
            "id" => Key::Id,
            "type" => Key::Type,
            "data" => Key::Data,
            _ => Key::Other,
        })
    }
}

/// Reads a field's value: its text when a string, else its shape (skipping the contents).
struct FieldSeed;

impl<'de> DeserializeSeed<'de> for FieldSeed {
    type Value = Field<'de>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(FieldVisitor)
    }
}

struct FieldVisitor;

impl<'de> Visitor<'de> for FieldVisitor {
    type Value = Field<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Field::Text(Cow::Borrowed(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Field::Text(Cow::Owned(v.to_owned())))
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        SkipVisitor.visit_map(map).map(|()| Field::Shaped(Shape::Object))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        SkipVisitor.visit_seq(seq).map(|()| Field::Shaped(Shape::Other))
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Field::Shaped(Shape::Null))
    }
    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Field::Shaped(Shape::Other))
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Field::Shaped(Shape::Other))
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Field::Shaped(Shape::Other))
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Field::Shaped(Shape::Other))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Event, Parsed};

    /// The receiver's verdict and the batcher's always match.
    fn agree(body: &[u8]) -> bool {
        let receiver = read(body).is_event;
        let batcher = matches!(Event::parse(body), Parsed::Event(_));
        assert_eq!(receiver, batcher, "receiver and batcher disagree on {}", String::from_utf8_lossy(body));
        receiver
    }

    #[test]
    fn the_poison_delivery_is_not_an_event_on_either_side() {
        assert!(!agree(br#"{"id":"EVNT-POISON-1","type":"","data":{"object":"booking","id":"X1"}}"#));
        assert!(!agree(br#"{"id":"E","type":7,"data":{}}"#));
        assert!(!agree(br#"{"id":"E","type":"t","data":[1]}"#));
        assert!(agree(br#"{"id":"E","type":"t","data":{}}"#));
    }

    #[test]
    fn a_duplicated_key_counts_by_its_last_value_on_both_sides() {
        assert!(agree(br#"{"id":"X","id":"X","type":"t","data":{}}"#));
        assert_eq!(read(br#"{"id":"A","id":"B","type":"t","data":{}}"#).id.as_deref(), Some("B"));
        let Parsed::Event(e) = Event::parse(br#"{"id":"A","id":"B","type":"t","data":{}}"#) else { panic!() };
        assert_eq!(e.json.get("id").and_then(crate::event::Node::as_str), Some("B"));
        assert!(!agree(br#"{"id":"X","type":"t","data":{},"data":5}"#));
        assert!(agree(br#"{"id":"X","type":"t","data":5,"data":{}}"#));
    }

    #[test]
    fn bodies_value_refuses_are_refused_here_too() {
        assert!(!agree(br#"{"id":"X","type":"t","data":{},"n":1e999}"#));
        assert!(!agree(br#"{"id":"X","type":"t","data":{}} trailing"#));
        assert!(!agree(b"{\"id\":\"X\",\"type\":\"t\",\"data\":{},\"s\":\"\xff\"}"));
        let deep = format!(r#"{{"id":"X","type":"t","data":{{}},"d":{}{}}}"#, "[".repeat(200), "]".repeat(200));
        assert!(!agree(deep.as_bytes()));
        let fine = format!(r#"{{"id":"X","type":"t","data":{{}},"d":{}{}}}"#, "[".repeat(100), "]".repeat(100));
        assert!(agree(fine.as_bytes()));
        assert!(agree(br#"{"id":"\u0058","type":"t","data":{"object":"booking"}}"#));
    }
}
