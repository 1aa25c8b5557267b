//! The lists a backfill walks (shared/oncehub-api.md §11), in order: `GET /v2/bookings` (with
//! `expand`, so owner, contact and conversation come as objects) and `GET /v2/contacts`. Both are
//! bounded by `last_updated_time.gt/.lt` and paged newest first with `after`.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::envelope;

/// One list endpoint.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Resource {
    #[default]
    Bookings,
    Contacts,
}

impl Resource {
    /// In walking order.
    pub const ALL: [Resource; 2] = [Resource::Bookings, Resource::Contacts];

    pub fn path(self) -> &'static str {
        match self {
            Resource::Bookings => "/bookings",
            Resource::Contacts => "/contacts",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Resource::Bookings => "bookings",
            Resource::Contacts => "contacts",
        }
    }

    /// The list after this one, if any.
    pub fn next(self) -> Option<Resource> {
        Resource::ALL.into_iter().skip_while(|r| *r != self).nth(1)
    }

    /// The filters of a walk over `(since, until)`.
    pub fn query(self, since: DateTime<Utc>, until: DateTime<Utc>) -> Vec<(&'static str, String)> {
        let mut query = vec![
            ("last_updated_time.gt", since.to_rfc3339_opts(SecondsFormat::Secs, true)),
            ("last_updated_time.lt", until.to_rfc3339_opts(SecondsFormat::Secs, true)),
        ];
        if self == Resource::Bookings {
            query.push(("expand", "owner,contact,conversation".to_owned()));
        }
        query
    }

    /// The deliveries one listed object becomes: a booking and the conversation it embeds, or a
    /// contact. Empty for an object without an id or times.
    pub fn envelopes(self, object: &Value) -> Vec<Value> {
        match self {
            Resource::Bookings => envelope::booking(object).into_iter().chain(envelope::conversation(object)).collect(),
            Resource::Contacts => envelope::contact(object).into_iter().collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bookings_come_first_and_only_they_are_expanded() {
        assert_eq!(Resource::Bookings.next(), Some(Resource::Contacts));
        assert_eq!(Resource::Contacts.next(), None);
        let t = Utc::now();
        assert!(Resource::Bookings.query(t, t).iter().any(|(k, _)| *k == "expand"));
        assert!(!Resource::Contacts.query(t, t).iter().any(|(k, _)| *k == "expand"));
    }
}
