//! The envelope a listed object is delivered in, so it lands like a webhook: a synthetic id
//! `BKFL-<hash of the object's id and last_updated_time>` (stable across runs, never an `EVNT-`
//! id, so re-reading an object adds no row while a newer state is a new row), `type: "backfill"`,
//! `creation_time` = the object's `last_updated_time`, and the REST object as `data`.

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// A listed booking.
pub(super) fn booking(booking: &Value) -> Option<Value> {
    let updated = booking["last_updated_time"].as_str().or_else(|| booking["creation_time"].as_str())?;
    wrap(booking, "booking", updated)
}

/// The conversation embedded in an expanded booking (there is no list of conversations): a
/// `conversations` row, at the booking's time unless it has its own.
pub(super) fn conversation(booking: &Value) -> Option<Value> {
    let conversation = booking.get("conversation").filter(|c| c.is_object())?;
    let updated = conversation["last_updated_time"]
        .as_str()
        .or_else(|| booking["last_updated_time"].as_str())
        .or_else(|| booking["creation_time"].as_str())?;
    wrap(conversation, "conversation", updated)
}

/// A listed contact: a `contacts` row.
pub(super) fn contact(contact: &Value) -> Option<Value> {
    let updated = contact["last_updated_time"].as_str().or_else(|| contact["creation_time"].as_str())?;
    wrap(contact, "contact", updated)
}

fn wrap(object: &Value, kind: &str, updated: &str) -> Option<Value> {
    let id = object["id"].as_str().filter(|id| !id.is_empty())?;
    let digest = Sha256::digest(format!("{id}|{updated}").as_bytes());
    let event_id = format!("{}{}", crate::event::BACKFILL_ID_PREFIX, &hex::encode(digest)[..32]);
    let mut data = object.clone();
    if data.get("object").is_none() {
        data["object"] = json!(kind);
    }
    Some(json!({
        "id": event_id, "object": "event", "type": "backfill", "creation_time": updated,
        "api_version": "v2", "data": data,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_synthetic_id_is_stable_and_never_a_webhook_id() {
        let b = json!({"id": "BKNG-1", "object": "booking", "last_updated_time": "2026-01-02T03:04:05Z"});
        let (e1, e2) = (booking(&b).unwrap(), booking(&b).unwrap());
        assert_eq!(e1["id"], e2["id"]);
        assert!(e1["id"].as_str().unwrap().starts_with("BKFL-"));
        assert_eq!(e1["type"], "backfill");
        assert_eq!(e1["creation_time"], "2026-01-02T03:04:05Z");
        let later = json!({"id": "BKNG-1", "object": "booking", "last_updated_time": "2026-01-03T00:00:00Z"});
        assert_ne!(booking(&later).unwrap()["id"], e1["id"], "a newer state is a new row");
        assert!(booking(&json!({"object": "booking"})).is_none());
        assert!(booking(&json!({"id": "", "last_updated_time": "2026-01-02T03:04:05Z"})).is_none());
    }

    #[test]
    fn an_expanded_conversation_is_a_row_of_its_own_an_id_is_not() {
        let b = json!({"id": "BKNG-1", "last_updated_time": "2026-01-02T03:04:05Z",
            "conversation": {"object": "conversation", "id": "CNV-1", "status": "closed"}});
        let c = conversation(&b).unwrap();
        assert_eq!(c["data"]["object"], "conversation");
        assert_eq!(c["creation_time"], "2026-01-02T03:04:05Z");
        assert_ne!(c["id"], booking(&b).unwrap()["id"]);
        assert!(conversation(&json!({"id": "BKNG-2", "last_updated_time": "x", "conversation": "CNV-2"})).is_none());
    }

    #[test]
    fn a_contact_is_routed_by_its_object() {
        let k = contact(&json!({"id": "CTC-1", "last_updated_time": "2026-01-02T03:04:05Z"})).unwrap();
        assert_eq!(k["data"]["object"], "contact");
        let body = serde_json::to_vec(&k).unwrap();
        let crate::event::Parsed::Event(e) = crate::event::Event::parse(&body) else { panic!("not an event") };
        assert_eq!(e.table, crate::schema::Table::Contacts);
    }
}
