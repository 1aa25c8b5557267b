//! Sample OnceHub deliveries of every documented trigger and shape variant (shared/oncehub-api.md
//! §4–§8): owner/booking_page/contact/bot/website/audience as ids or objects, `""` vs `null` vs
//! absent, custom-field values of every JSON type, unknown extra fields, unicode. Used by
//! `send-test-event`, the tests and the benchmark. Values are invented; shapes follow the docs.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};

pub use crate::event::{BOOKING_TRIGGERS, CONVERSATION_TRIGGERS};

/// Booking shape variants, conversation shape variants.
pub const BOOKING_VARIANTS: usize = 3;
pub const CONVERSATION_VARIANTS: usize = 2;

fn ts(t: DateTime<Utc>, millis: bool) -> String {
    t.to_rfc3339_opts(if millis { SecondsFormat::Millis } else { SecondsFormat::Secs }, true)
}

/// One event envelope of `event_type` with id `id`, in shape `variant`, created at `now`.
/// Unknown triggers get a booking body when they start with `booking.`, a conversation body when
/// they start with `conversation.`, and an `other` body otherwise.
pub fn event(event_type: &str, id: &str, variant: usize, now: DateTime<Utc>) -> Value {
    let data = if event_type.starts_with("booking.") {
        booking(event_type, id, variant % BOOKING_VARIANTS, now)
    } else if event_type.starts_with("conversation.") {
        conversation(event_type, id, variant % CONVERSATION_VARIANTS, now)
    } else {
        json!({"object": "widget", "id": format!("WDG-{id}"), "note": "not a documented object"})
    };
    json!({
        "id": id, "object": "event", "creation_time": ts(now, variant.is_multiple_of(2)),
        "type": event_type, "api_version": "v2", "data": data,
    })
}

/// Every trigger in every shape variant: 8×3 + 3×2 = 30 events, ids `EVNT-<tag>-<n>`.
pub fn all_events(tag: &str, now: DateTime<Utc>) -> Vec<Value> {
    let bookings = BOOKING_TRIGGERS.iter().flat_map(|t| (0..BOOKING_VARIANTS).map(move |v| (*t, v)));
    let conversations = CONVERSATION_TRIGGERS.iter().flat_map(|t| (0..CONVERSATION_VARIANTS).map(move |v| (*t, v)));
    bookings.chain(conversations).enumerate().map(|(n, (t, v))| event(t, &format!("EVNT-{tag}-{n}"), v, now)).collect()
}

fn status_of(event_type: &str) -> &'static str {
    match event_type {
        "booking.rescheduled" | "booking.canceled_then_rescheduled" => "rescheduled",
        "booking.canceled" | "booking.canceled_reschedule_requested" => "canceled",
        "booking.completed" => "completed",
        "booking.no_show" => "no_show",
        "conversation.started" => "started",
        "conversation.closed" => "closed",
        "conversation.abandoned" => "abandoned",
        _ => "scheduled",
    }
}

fn booking(event_type: &str, id: &str, variant: usize, now: DateTime<Utc>) -> Value {
    let booking_id = format!("BKNG-{}", id.trim_start_matches("EVNT-"));
    let created = ts(now - chrono::Duration::days(2), true);
    let start = ts(now + chrono::Duration::days(3), true);
    let status = status_of(event_type);
    match variant {
        // Booking Calendar style (8a): owner id string, attendees, payment, custom fields of many types.
        0 => json!({
            "object": "booking", "id": booking_id, "tracking_id": booking_id, "subject": "Intro call",
            "status": status, "in_trash": false, "creation_time": created, "starting_time": start,
            "customer_timezone": "Europe/Berlin", "last_updated_time": ts(now, true), "owner": "USR-YX0J4ANZTV",
            "duration_minutes": 30, "virtual_conferencing": {"join_url": "https://meet.example.com/abc-defg-hij"},
            "location_description": "", "rescheduled_booking_id": "",
            "cancel_reschedule_url": format!("https://oncehub.com/m/{booking_id}"),
            "cancel_reschedule_information": {"reason": "", "actioned_by": "", "user_id": ""},
            "attendees": ["rep@example.com", "carrie@example.org"],
            "form_submission": {"name": "Carrie Customer", "email": "carrie@example.org", "phone": null,
                "mobile_phone": "+4915112345678", "note": "", "company": null, "guests": [],
                "custom_fields": [{"name": "lead_id", "value": "lead_123"}, {"name": "seats", "value": 4},
                    {"name": "vip", "value": true}, {"name": "tags", "value": ["a", "b"]}, {"name": "none", "value": null}]},
            "external_calendar": {"type": "google", "name": "rep@example.com", "id": "rep@example.com", "event_id": "8kvu74dda8kcv0gm"},
            "booking_calendar": "BKC-03WJV0R52Z", "ics_url": "https://oncehub.com/ics/x.ics",
            "cancel_url": format!("https://oncehub.com/m/{booking_id}/cancel"),
            "reschedule_url": format!("https://oncehub.com/m/{booking_id}/reschedule"),
            "payment_information": {"amount_charged": 4999, "currency": "EUR", "transaction_id": "ch_3Nabc"},
            "custom_fields": [{"name": "region", "value": "EMEA"}], "conversation": null
        }),
        // Booking Page style (8b): expanded page and event type, cancel info, null master page.
        1 => json!({
            "object": "booking", "id": booking_id, "tracking_id": "D36E0002", "subject": "15-minute meeting",
            "status": status, "in_trash": false, "creation_time": created, "starting_time": start,
            "customer_timezone": "America/New_York", "last_updated_time": ts(now, true), "owner": "USR-YX0J4ANZTV",
            "duration_minutes": 15, "virtual_conferencing": {"join_url": ""}, "location_description": "123 Office Street",
            "rescheduled_booking_id": "BKNG-PREVIOUS01",
            "cancel_reschedule_url": "https://go.oncehub.com/Michael4?Params=20F2DAE",
            "cancel_reschedule_information": {"reason": "Double booked", "actioned_by": "customer", "user_id": ""},
            "form_submission": {"name": "Carrie", "email": "carrie@customer.com", "phone": "", "mobile_phone": "",
                "note": "", "company": "", "guests": ["", "guest@example.net"], "custom_fields": []},
            "booking_page": {"id": "BP-L5SMQPFA1V", "object": "booking_page", "name": "Michael", "label": "Michael4",
                "url": "https://go.oncehub.com/Michael4", "active": true},
            "master_page": null,
            "event_type": {"id": "ET-E8DL20JT5U", "object": "event_type", "name": "15-minute meeting", "description": ""},
            "external_calendar": {"type": "none", "name": "", "id": "", "event_id": ""},
            "custom_fields": [], "conversation": null
        }),
        // 2021 signature-page style: owner object, ids as strings, absent optional fields, unicode,
        // an unknown field, an embedded conversation, a cancel info that is null.
        _ => json!({
            "object": "booking", "id": booking_id, "tracking_id": booking_id, "subject": "Beratung für Zoë ☕ 会议",
            "status": status, "in_trash": true, "creation_time": created, "starting_time": start,
            "last_updated_time": ts(now, false),
            "owner": {"id": "USR-FSUZ3WZCNO", "object": "user", "first_name": "Jürgen", "last_name": "Ødegård",
                "email": "jurgen@example.com", "status": "active"},
            "duration_minutes": 45, "virtual_conferencing": null, "location_description": null,
            "rescheduled_booking_id": null, "cancel_reschedule_information": null,
            "form_submission": {"name": "Zoë Ñúñez", "email": "zoe@example.es", "phone": "+34 600 000 000",
                "mobile_phone": "", "note": "Hola 👋", "company": "Ñandú SL", "guests": ["g@example.es"],
                "custom_fields": [{"name": "¿Presupuesto?", "value": 1234.5}, {"name": "obj", "value": {"k": [1, "x"]}}]},
            "booking_page": "BP-STRINGID01", "master_page": "MP-STRINGID01", "event_type": "ET-STRINGID01",
            "external_calendar": {"type": "office_365", "name": "Cal", "id": "c1", "event_id": "e1"},
            "custom_fields": [{"name": "score", "value": 7}],
            "conversation": {"object": "conversation", "id": "CVR-EMBEDDED01", "status": "closed"},
            "a_field_added_later": {"nested": true}
        }),
    }
}

fn conversation(event_type: &str, id: &str, variant: usize, now: DateTime<Utc>) -> Value {
    let conversation_id = format!("CVR-{}", id.trim_start_matches("EVNT-"));
    let status = status_of(event_type);
    let started = ts(now - chrono::Duration::minutes(12), false);
    match variant {
        // 8c: contact, owner, bot and website expanded; audience null.
        0 => json!({
            "object": "conversation", "id": conversation_id, "creation_time": started, "initiated_by": "contact",
            "last_updated_time": ts(now, false), "last_interacted_time": ts(now, false), "status": status,
            "contact": {"object": "contact", "id": "CTC-9QEG09XXYN", "creation_time": started,
                "last_updated_time": ts(now, false), "last_interacted_time": null, "owner": "USR-GNSBE50D6A",
                "status": null, "company": "Acme Inc", "email": "carrie@example.org", "first_name": "Carrie",
                "last_name": "Customer", "has_consent": true, "phone": null, "employees": 250,
                "timezone": "Europe/London", "custom_fields": [{"name": "segment", "value": "smb"}]},
            "owner": {"object": "user", "id": "USR-GNSBE50D6A", "first_name": "Andrea", "last_name": "Hartie",
                "email": "andrea@example.com", "status": "active", "role_name": "Member",
                "timezone": "Europe/London", "teams": ["TM-GCJU8DLBTPY1"]},
            "bot": {"id": "BOT-62774A40FB", "object": "bot", "name": "Sales Assistant Bot"},
            "website": {"id": "WEB-B1D45D12BB", "object": "website", "name": "Company Website", "url": "https://www.example.com"},
            "audience": null,
            "answers": [{"id": "INT-5D22DCBE36", "internal_label": "", "question": "Full name", "value": "Carrie Customer"},
                {"id": "INT-4CC379BB35", "internal_label": null, "question": "Email address", "value": "carrie@example.org"}],
            "bookings": ["BKNG-3KM0HY2BF9SL"]
        }),
        // REST-like ids for contact/owner/bot/website, audience object, unicode, an extra field.
        _ => json!({
            "object": "conversation", "id": conversation_id, "creation_time": started, "initiated_by": "",
            "last_updated_time": ts(now, true), "status": status,
            "contact": "CTC-STRINGID01", "owner": "USR-STRINGID01", "bot": "BOT-STRINGID01", "website": "WEB-STRINGID01",
            "audience": {"id": "AUD-1", "object": "audience", "name": "Visiteurs 🇫🇷"},
            "answers": [{"id": "INT-1", "internal_label": "budget", "question": "Budget ?", "value": "https://files.example.com/a.pdf"}],
            "bookings": [], "sentiment": "positive"
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Event, Parsed};
    use crate::schema::Table;

    #[test]
    fn all_events_cover_every_trigger_and_route_by_object() {
        let events = all_events("t", Utc::now());
        assert_eq!(events.len(), 8 * BOOKING_VARIANTS + 3 * CONVERSATION_VARIANTS);
        for e in &events {
            let body = serde_json::to_vec(e).unwrap();
            let Parsed::Event(parsed) = Event::parse(&body) else { panic!("sample is not an event") };
            let expected = if e["type"].as_str().unwrap().starts_with("booking.") {
                Table::Bookings
            } else {
                Table::Conversations
            };
            assert_eq!(parsed.table, expected);
        }
        let types: std::collections::HashSet<_> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
        assert_eq!(types.len(), 11);
    }
}
