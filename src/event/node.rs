//! A delivery's JSON as a tree that borrows its text: a string without escapes points into the
//! body, an object is its entries in document order. Building it allocates one vector per object
//! and array, not a `String` per key and value and a `BTreeMap` per object as `serde_json::Value`
//! does; the batcher parses each delivery once and reads a few dozen paths of it.
//!
//! It reads as `serde_json::Value` does wherever a row can tell: the same parser and limits
//! (`deserialize_any`: number ranges, UTF-8, the recursion limit), the same numbers, a key given
//! twice counts by its last value ([`Node::get`] looks from the end), and written as JSON text
//! (`json` columns, [`fmt::Display`]) an object's keys are sorted and unique, as `Value` writes
//! them.

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::Number;

/// One JSON value of a delivery, borrowing the delivery's text where it can.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Node<'a> {
    Null,
    Bool(bool),
    Number(Number),
    Str(Cow<'a, str>),
    Array(Vec<Node<'a>>),
    Object(Vec<(Cow<'a, str>, Node<'a>)>),
}

impl<'a> Node<'a> {
    /// Parses JSON text; the errors are `serde_json`'s.
    pub(crate) fn parse(text: &'a str) -> Result<Node<'a>, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// An object's value for `key` (its last, when the key is given twice).
    pub(crate) fn get(&self, key: &str) -> Option<&Node<'a>> {
        match self {
            Node::Object(entries) => entries.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    pub(crate) fn as_str(&self) -> Option<&str> {
        match self {
            Node::Str(s) => Some(s),
            _ => None,
        }
    }
}

impl<'de> Deserialize<'de> for Node<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Node<'de>, D::Error> {
        deserializer.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, b: bool) -> Result<Node<'de>, E> {
        Ok(Node::Bool(b))
    }

    fn visit_i64<E>(self, n: i64) -> Result<Node<'de>, E> {
        Ok(Node::Number(n.into()))
    }

    fn visit_u64<E>(self, n: u64) -> Result<Node<'de>, E> {
        Ok(Node::Number(n.into()))
    }

    fn visit_f64<E>(self, f: f64) -> Result<Node<'de>, E> {
        Ok(Number::from_f64(f).map_or(Node::Null, Node::Number))
    }

    fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Node<'de>, E> {
        Ok(Node::Str(Cow::Borrowed(s)))
    }

    fn visit_str<E>(self, s: &str) -> Result<Node<'de>, E> {
        Ok(Node::Str(Cow::Owned(s.to_owned())))
    }

    fn visit_string<E>(self, s: String) -> Result<Node<'de>, E> {
        Ok(Node::Str(Cow::Owned(s)))
    }

    fn visit_unit<E>(self) -> Result<Node<'de>, E> {
        Ok(Node::Null)
    }

    fn visit_none<E>(self) -> Result<Node<'de>, E> {
        Ok(Node::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Node<'de>, D::Error> {
        Node::deserialize(d)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node<'de>, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Node::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node<'de>, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<Node<'de>>()? {
            let Node::Str(key) = key else { return Err(serde::de::Error::custom("an object key that is not text")) };
            entries.push((key, map.next_value()?));
        }
        Ok(Node::Object(entries))
    }
}

impl Serialize for Node<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Node::Null => s.serialize_unit(),
            Node::Bool(b) => s.serialize_bool(*b),
            Node::Number(n) => n.serialize(s),
            Node::Str(t) => s.serialize_str(t),
            Node::Array(items) => items.serialize(s),
            Node::Object(entries) => {
                let sorted = sorted_unique(entries);
                let mut map = s.serialize_map(Some(sorted.len()))?;
                for (k, v) in sorted {
                    map.serialize_entry(k, v)?;
                }
                map.end()
            }
        }
    }
}

/// An object's entries by key (bytewise, as `BTreeMap<String, _>` orders them), each key once
/// with its last value.
fn sorted_unique<'n, 'a>(entries: &'n [(Cow<'a, str>, Node<'a>)]) -> Vec<(&'n str, &'n Node<'a>)> {
    let mut sorted: Vec<(&str, &Node<'a>)> = entries.iter().map(|(k, v)| (k.as_ref(), v)).collect();
    sorted.sort_by(|a, b| a.0.cmp(b.0)); // stable: a repeated key's entries stay in document order
    let mut unique: Vec<(&str, &Node<'a>)> = Vec::with_capacity(sorted.len());
    for entry in sorted {
        match unique.last_mut() {
            Some(last) if last.0 == entry.0 => *last = entry,
            _ => unique.push(entry),
        }
    }
    unique
}

/// Compact JSON text, as `serde_json::Value`'s `Display` writes the same value.
impl fmt::Display for Node<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = serde_json::to_string(self).map_err(|_| fmt::Error)?;
        f.write_str(&text)
    }
}

/// What the coercion rules (`normalize`) read of a JSON value, whichever tree holds it: the
/// batcher's [`Node`], or `serde_json::Value` (the reference the tests check the batcher against).
pub(crate) trait Json: Sized {
    fn view(&self) -> View<'_>;
    /// An object's value for `key` (the last, for a repeated key); `None` for anything else.
    fn get_key(&self, key: &str) -> Option<&Self>;
}

/// One JSON value's kind and scalar content.
pub(crate) enum View<'v> {
    Null,
    Bool(bool),
    Number(&'v Number),
    Str(&'v str),
    Array,
    Object,
}

impl Json for Node<'_> {
    fn view(&self) -> View<'_> {
        match self {
            Node::Null => View::Null,
            Node::Bool(b) => View::Bool(*b),
            Node::Number(n) => View::Number(n),
            Node::Str(s) => View::Str(s),
            Node::Array(_) => View::Array,
            Node::Object(_) => View::Object,
        }
    }

    fn get_key(&self, key: &str) -> Option<&Self> {
        self.get(key)
    }
}

impl Json for serde_json::Value {
    fn view(&self) -> View<'_> {
        use serde_json::Value;
        match self {
            Value::Null => View::Null,
            Value::Bool(b) => View::Bool(*b),
            Value::Number(n) => View::Number(n),
            Value::String(s) => View::Str(s),
            Value::Array(_) => View::Array,
            Value::Object(_) => View::Object,
        }
    }

    fn get_key(&self, key: &str) -> Option<&Self> {
        self.as_object()?.get(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    /// Parsed both ways, then written as JSON text: the same text, for every kind of value.
    #[test]
    fn reads_and_writes_as_value_does() {
        let bodies = [
            r#"{"b":1,"a":[true,null,-2,3.5,1e300,18446744073709551615],"c":{"z":"\u00e9\n\"q\"","y":{}}}"#,
            r#"{"k":"first","k":"last","a":{"k":1,"k":2}}"#,
            r#"[1,"two",{"3":[]},-0,0.1]"#,
            r#""plain""#,
            r#"{"esc\"aped key":"x","":""}"#,
        ];
        for body in bodies {
            let node = Node::parse(body).unwrap();
            let value: Value = serde_json::from_str(body).unwrap();
            assert_eq!(node.to_string(), value.to_string(), "{body}");
        }
    }

    #[test]
    fn a_repeated_key_reads_as_its_last_value() {
        let node = Node::parse(r#"{"id":"A","x":1,"id":"B"}"#).unwrap();
        assert_eq!(node.get("id").and_then(Node::as_str), Some("B"));
        assert_eq!(node.get_key("missing"), None);
        assert_eq!(Node::parse("[1]").unwrap().get("id"), None);
    }

    #[test]
    fn strings_without_escapes_borrow_the_text() {
        let Node::Object(entries) = Node::parse(r#"{"plain":"text","esc":"t\u00e9"}"#).unwrap() else { panic!() };
        assert!(matches!(&entries[0], (Cow::Borrowed("plain"), Node::Str(Cow::Borrowed("text")))));
        assert!(matches!(&entries[1].1, Node::Str(Cow::Owned(s)) if s == "té"));
    }

    #[test]
    fn what_value_refuses_is_refused() {
        for body in ["{\"n\":1e999}", "{} trailing", "{\"a\":", "[1,]", "nul"] {
            assert!(Node::parse(body).is_err(), "{body}");
            assert!(serde_json::from_str::<Value>(body).is_err(), "{body}");
        }
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        assert!(Node::parse(&deep).is_err(), "the recursion limit holds");
    }
}
