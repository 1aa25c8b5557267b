//! A small, consistent history for `send-test-event --all`, so the README's queries have
//! something to answer on the sample data: bookings that go through several events (scheduled,
//! rescheduled, completed; a no-show; a cancellation), conversations that turn into bookings and
//! one that is abandoned, a OnceHub retry of an event already sent (answered `duplicate`), a
//! contact event (`contacts`), an event of another object (`other_events`) and a signed delivery
//! that is not an event (`dead_letter`). Every table gets rows.

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use serde_json::{Value, json};

use super::samples;

/// One booking's life: its number, owner, meeting start (days from now), events, conversation.
struct Life {
    n: u32,
    owner: &'static str,
    start_days: i64,
    events: &'static [&'static str],
    conversation: Option<u32>,
}

const LIVES: [Life; 5] = [
    Life {
        n: 1,
        owner: "USR-ALEX000001",
        start_days: -2,
        events: &["booking.scheduled", "booking.rescheduled", "booking.completed"],
        conversation: None,
    },
    Life {
        n: 2,
        owner: "USR-ALEX000001",
        start_days: -1,
        events: &["booking.scheduled", "booking.no_show"],
        conversation: None,
    },
    Life {
        n: 3,
        owner: "USR-BLAIR00001",
        start_days: 2,
        events: &["booking.scheduled", "booking.canceled"],
        conversation: None,
    },
    Life {
        n: 4,
        owner: "USR-BLAIR00001",
        start_days: -1,
        events: &["booking.scheduled", "booking.completed"],
        conversation: Some(1),
    },
    Life { n: 5, owner: "USR-CASEY00001", start_days: 3, events: &["booking.scheduled"], conversation: Some(2) },
];

/// Conversations: number, bot, events, the booking it led to.
const CONVERSATIONS: [(u32, &str, &[&str], Option<u32>); 3] = [
    (1, "BOT-SALES00001", &["conversation.started", "conversation.closed"], Some(4)),
    (2, "BOT-SALES00001", &["conversation.started", "conversation.closed"], Some(5)),
    (3, "BOT-SUPPORT001", &["conversation.started", "conversation.abandoned"], None),
];

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// The history, in sending order; event ids are `EVNT-<tag>-s<n>`, one of them sent twice.
pub fn story(tag: &str, now: DateTime<Utc>) -> Vec<Value> {
    let booking_id = |n: u32| format!("BKNG-{tag}-{n}");
    let conversation_id = |n: u32| format!("CVR-{tag}-{n}");
    let mut out: Vec<Value> = Vec::new();
    let next_id = |out: &Vec<Value>| format!("EVNT-{tag}-s{}", out.len());
    for (n, bot, events, booking) in CONVERSATIONS {
        for (i, trigger) in events.iter().enumerate() {
            let updated = now - Duration::days(6) + Duration::hours(i64::from(n) * 3 + i as i64);
            let mut e = samples::event(trigger, &next_id(&out), 0, now);
            let data = &mut e["data"];
            data["id"] = json!(conversation_id(n));
            data["bot"] = json!({"id": bot, "object": "bot", "name": bot});
            data["last_updated_time"] = json!(ts(updated));
            data["bookings"] =
                json!(booking.filter(|_| i + 1 == events.len()).map(booking_id).into_iter().collect::<Vec<_>>());
            e["creation_time"] = json!(ts(updated));
            out.push(e);
        }
    }
    for life in &LIVES {
        for (i, trigger) in life.events.iter().enumerate() {
            let updated = now - Duration::days(5) + Duration::hours(i64::from(life.n) + 24 * i as i64);
            // The meeting was a day earlier until it was rescheduled.
            let moved = life.events[i..].contains(&"booking.rescheduled");
            let start = now + Duration::days(life.start_days - i64::from(moved)) + Duration::hours(10);
            let mut e = samples::event(trigger, &next_id(&out), 0, now);
            let data = &mut e["data"];
            data["id"] = json!(booking_id(life.n));
            data["owner"] = json!(life.owner);
            data["starting_time"] = json!(ts(start));
            data["last_updated_time"] = json!(ts(updated));
            data["conversation"] = life.conversation.map_or(
                Value::Null,
                |c| json!({"object": "conversation", "id": conversation_id(c), "status": "closed"}),
            );
            e["creation_time"] = json!(ts(updated));
            out.push(e);
        }
    }
    // OnceHub retries a delivery it did not see answered: the same event again.
    let retried = out.iter().find(|e| e["data"]["id"] == json!(booking_id(1))).cloned();
    out.extend(retried);
    let id = next_id(&out);
    out.push(json!({
        "id": id, "object": "event", "type": "contact.created", "creation_time": ts(now), "api_version": "v2",
        "data": {"object": "contact", "id": format!("CTC-{tag}-1"), "email": "new.lead@example.org",
            "creation_time": ts(now), "last_updated_time": ts(now)},
    }));
    let id = next_id(&out);
    out.push(json!({
        "id": id, "object": "event", "type": "user.updated", "creation_time": ts(now), "api_version": "v2",
        "data": {"object": "user", "id": format!("USR-{tag}-9"), "email": "new.member@example.org"},
    }));
    let id = next_id(&out);
    out.push(json!({"id": id, "object": "event", "type": "booking.scheduled", "creation_time": ts(now), "data": "not an object"}));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Event, Parsed};
    use crate::schema::Table;

    #[test]
    fn the_story_fills_every_table_and_sends_one_retry() {
        let events = story("t", Utc::now());
        let tables: std::collections::HashSet<Table> =
            events.iter().map(|e| Event::parse(&serde_json::to_vec(e).unwrap()).table()).collect();
        assert_eq!(tables.len(), Table::ALL.len(), "{tables:?}");
        let ids: Vec<&str> = events.iter().map(|e| e["id"].as_str().unwrap()).collect();
        let unique: std::collections::HashSet<&&str> = ids.iter().collect();
        assert_eq!(ids.len() - unique.len(), 1, "exactly one retry");
        let completed = events.iter().filter(|e| e["type"] == "booking.completed").count();
        assert_eq!(completed, 2);
        assert!(matches!(Event::parse(&serde_json::to_vec(events.last().unwrap()).unwrap()), Parsed::Dead(_)));
    }
}
