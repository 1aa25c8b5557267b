//! The event model: a signed delivery's bytes become either an [`Event`] routed to its table, or a
//! [`DeadLetter`] with the reason it is not one.
//!
//! Guarantees: parsing never fails and never drops a delivery; routing looks at `data.object`
//! ("booking", "conversation", anything else → other_events), never at the type string, so new
//! triggers still land in the right table. Only `id` and `type` (non-empty strings) and `data`
//! (an object) are required of the envelope, by one rule the receiver shares (see `envelope`).

mod columns;
mod envelope;
#[cfg(test)]
pub(crate) mod fit;
mod node;
mod normalize;
mod row;

pub(crate) use columns::{Columns, Misfit};
pub(crate) use node::Node;
#[cfg(test)]
pub(crate) use row::build_row;
pub(crate) use row::{BACKFILL_ID_PREFIX, RowInput};

use chrono::{DateTime, NaiveDate, Utc};

use crate::schema::Table;

/// The 8 documented booking triggers (shared/oncehub-api.md §3).
pub const BOOKING_TRIGGERS: [&str; 8] = [
    "booking.scheduled",
    "booking.rescheduled",
    "booking.reassigned",
    "booking.canceled_then_rescheduled",
    "booking.canceled_reschedule_requested",
    "booking.canceled",
    "booking.completed",
    "booking.no_show",
];

/// The 3 documented conversation triggers (`conversation.reached_out` is unverified: not listed).
pub const CONVERSATION_TRIGGERS: [&str; 3] = ["conversation.started", "conversation.closed", "conversation.abandoned"];

/// A documented trigger: its position in [`BOOKING_TRIGGERS`] then [`CONVERSATION_TRIGGERS`], so
/// per-trigger tables (metric handles) are indexed, not searched again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Trigger(usize);

impl Trigger {
    /// Every documented trigger's name, in index order.
    pub(crate) fn names() -> impl Iterator<Item = &'static str> {
        BOOKING_TRIGGERS.iter().chain(CONVERSATION_TRIGGERS.iter()).copied()
    }

    /// `event_type` as one of the documented triggers, or `None`.
    pub(crate) fn parse(event_type: &str) -> Option<Trigger> {
        Self::names().position(|t| t == event_type).map(Trigger)
    }

    pub(crate) fn index(self) -> usize {
        self.0
    }

    pub(crate) fn name(self) -> &'static str {
        Self::names().nth(self.0).unwrap_or("other")
    }
}

/// What the receiver reads of a body without building the document.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Peeked {
    /// The envelope `id`, the dedup key: set only when the body is an event by the envelope rule
    /// (see `envelope`), so a dead letter never takes an id that a real event may carry later.
    pub id: Option<String>,
    /// The envelope `type`, when it is a documented trigger (a bounded metric label).
    pub trigger: Option<Trigger>,
}

/// Reads the envelope's `id` and `type`. Never fails: what cannot be read is `None`.
pub(crate) fn peek(body: &[u8]) -> Peeked {
    let read = envelope::read(body);
    let trigger = read.event_type.as_deref().and_then(Trigger::parse);
    Peeked { id: read.is_event.then(|| read.id.map(|id| id.into_owned())).flatten(), trigger }
}

/// A well-formed event, parsed once (a tree borrowing the body's text). Its `id` and `type`
/// passed the envelope rule; the row takes them (like every column) from `json` through the
/// schema.
#[derive(Debug, Clone)]
pub(crate) struct Event<'a> {
    pub table: Table,
    /// The envelope's `creation_time`, when present and valid RFC 3339.
    pub time: Option<DateTime<Utc>>,
    pub json: Node<'a>,
}

/// Why a signed delivery is not an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DeadReason {
    NotUtf8,
    NotJson,
    NotObject,
    MissingField,
    WrongType,
    /// An event whose row does not fit its table (see `fit`): kept whole as a dead letter.
    EncodeError,
}

impl DeadReason {
    pub(crate) fn code(self) -> &'static str {
        match self {
            DeadReason::NotUtf8 => "not_utf8",
            DeadReason::NotJson => "not_json",
            DeadReason::NotObject => "not_object",
            DeadReason::MissingField => "missing_field",
            DeadReason::WrongType => "wrong_type",
            DeadReason::EncodeError => "encode_error",
        }
    }
}

/// A signed delivery that is not a well-formed event; kept in `dead_letter`.
#[derive(Debug, Clone)]
pub(crate) struct DeadLetter<'a> {
    pub reason: DeadReason,
    pub error: String,
    /// The parsed JSON, when the body was JSON at all.
    pub json: Option<Node<'a>>,
}

/// The outcome of parsing one delivery.
#[derive(Debug, Clone)]
pub(crate) enum Parsed<'a> {
    Event(Event<'a>),
    Dead(DeadLetter<'a>),
}

impl Parsed<'_> {
    pub(crate) fn table(&self) -> Table {
        match self {
            Parsed::Event(e) => e.table,
            Parsed::Dead(_) => Table::DeadLetter,
        }
    }

    /// The partition date: the event's UTC date, else the receive date.
    pub(crate) fn partition_date(&self, received_at: DateTime<Utc>) -> NaiveDate {
        match self {
            Parsed::Event(Event { time: Some(t), .. }) => t.date_naive(),
            _ => received_at.date_naive(),
        }
    }
}

impl<'a> Event<'a> {
    /// Parses a delivery body. Never fails: what is not an event is a [`DeadLetter`].
    pub(crate) fn parse(body: &'a [u8]) -> Parsed<'a> {
        Self::parse_text(body).0
    }

    /// [`Event::parse`], also giving the body as text when it is UTF-8 (validated once here:
    /// the JSON parser reads the text without checking it again).
    pub(crate) fn parse_text(body: &'a [u8]) -> (Parsed<'a>, Option<&'a str>) {
        match std::str::from_utf8(body) {
            Ok(text) => (Self::parse_utf8(text), Some(text)),
            Err(_) => {
                let error = "body is not valid UTF-8".into();
                (Parsed::Dead(DeadLetter { reason: DeadReason::NotUtf8, error, json: None }), None)
            }
        }
    }

    fn parse_utf8(text: &'a str) -> Parsed<'a> {
        let dead = |reason, error: String, json| Parsed::Dead(DeadLetter { reason, error, json });
        let json = match Node::parse(text) {
            Ok(v) => v,
            Err(e) => return dead(DeadReason::NotJson, format!("body is not JSON: {e}"), None),
        };
        if !matches!(json, Node::Object(_)) {
            return dead(DeadReason::NotObject, "body is not a JSON object".into(), Some(json));
        }
        let field = |name| envelope::Shape::of(json.get(name));
        if let Err((reason, error)) = envelope::check(field("id"), field("type"), field("data")) {
            return dead(reason, error.into(), Some(json));
        }
        let data_object = json.get("data").and_then(|d| d.get("object")).and_then(Node::as_str);
        let table = match data_object {
            Some("booking") => Table::Bookings,
            Some("conversation") => Table::Conversations,
            Some("contact") => Table::Contacts,
            _ => Table::OtherEvents,
        };
        let time = json.get("creation_time").and_then(Node::as_str).and_then(normalize::parse_timestamp);
        Parsed::Event(Event { table, time, json })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peek_reads_only_a_usable_id_and_a_documented_type() {
        let id = |body: &[u8]| peek(body).id;
        assert_eq!(id(br#"{"type":"x","id":"EVNT-1","data":{"id":"inner"}}"#).as_deref(), Some("EVNT-1"));
        assert_eq!(id(br#"{"id":"EV\u004eT","type":"t","data":{}}"#).as_deref(), Some("EVNT"));
        assert_eq!(id(br#"{"id":"EVNT"}"#), None, "not an event: no key, the batcher keeps it as a dead letter");
        assert_eq!(id(br#"{"id":"EVNT","type":"","data":{}}"#), None);
        assert_eq!(id(br#"{"id":""}"#), None);
        assert_eq!(id(br#"{"id":5}"#), None);
        assert_eq!(id(b"[1]"), None);
        assert_eq!(id(b"not json"), None);
        let no_show = peek(br#"{"id":"E","type":"booking.no_show"}"#).trigger.unwrap();
        assert_eq!(Trigger::names().nth(no_show.index()), Some("booking.no_show"));
        assert_eq!(peek(br#"{"id":"E","type":"booking.invented"}"#).trigger, None);
        let odd = peek(br#"{"id":"E","type":{"nested":[1]},"data":{}}"#);
        assert_eq!((odd.id.as_deref(), odd.trigger), (None, None));
    }

    fn reason(body: &[u8]) -> DeadReason {
        match Event::parse(body) {
            Parsed::Dead(d) => d.reason,
            Parsed::Event(e) => panic!("parsed as event {e:?}"),
        }
    }

    #[test]
    fn routes_by_data_object_not_type() {
        let b = br#"{"id":"EVNT-1","type":"booking.brand_new_trigger","data":{"object":"booking"}}"#;
        let Parsed::Event(e) = Event::parse(b) else { panic!() };
        assert_eq!(e.table, Table::Bookings);
        let c = br#"{"id":"EVNT-2","type":"booking.scheduled","data":{"object":"conversation"}}"#;
        assert!(matches!(Event::parse(c), Parsed::Event(Event { table: Table::Conversations, .. })));
        let k = br#"{"id":"EVNT-3","type":"contact.created","data":{"object":"contact"}}"#;
        assert!(matches!(Event::parse(k), Parsed::Event(Event { table: Table::Contacts, .. })));
        let o = br#"{"id":"EVNT-5","type":"bot.updated","data":{"object":"bot"}}"#;
        assert!(matches!(Event::parse(o), Parsed::Event(Event { table: Table::OtherEvents, .. })));
        let none = br#"{"id":"EVNT-4","type":"x","data":{}}"#;
        assert!(matches!(Event::parse(none), Parsed::Event(Event { table: Table::OtherEvents, .. })));
    }

    #[test]
    fn malformed_envelopes_become_dead_letters_with_a_reason() {
        assert_eq!(reason(b"\xff\xfe"), DeadReason::NotUtf8);
        assert_eq!(reason(b"{not json"), DeadReason::NotJson);
        assert_eq!(reason(b"[1,2]"), DeadReason::NotObject);
        assert_eq!(reason(br#"{"type":"booking.scheduled","data":{}}"#), DeadReason::MissingField);
        assert_eq!(reason(br#"{"id":"E","type":"t","data":null}"#), DeadReason::MissingField);
        assert_eq!(reason(br#"{"id":7,"type":"t","data":{}}"#), DeadReason::WrongType);
        assert_eq!(reason(br#"{"id":"","type":"t","data":{}}"#), DeadReason::WrongType);
        assert_eq!(reason(br#"{"id":"E","type":"t","data":"BKNG-1"}"#), DeadReason::WrongType);
    }

    #[test]
    fn partition_date_is_the_event_date_in_utc() {
        let b = br#"{"id":"E","type":"t","creation_time":"2026-05-04T23:30:00-02:00","data":{}}"#;
        let received = DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z").unwrap().to_utc();
        let p = Event::parse(b);
        assert_eq!(p.partition_date(received).to_string(), "2026-05-05");
        let no_time = Event::parse(br#"{"id":"E","type":"t","data":{}}"#);
        assert_eq!(no_time.partition_date(received).to_string(), "2026-01-01");
    }
}
