//! Keeping exactly one OnceHub subscription pointed at this service.
//!
//! [`ensure`] lists the account's subscriptions and finds ours: those whose URL is our webhook
//! URL, plus the one recorded in the state file (its URL may have changed). One of them is reused
//! when its URL and events match and its secret is known (in the state file); otherwise a new one
//! is created and the old ones are deleted. There is no update endpoint, and create comes before
//! delete, so no event fires while no subscription exists: OnceHub may then deliver an event to
//! both, and the receiver's dedup by event id keeps one. The replaced secret stays valid for a
//! grace period. Restarting N times leaves one subscription, not N.

use std::time::Duration;

use chrono::Utc;
use url::Url;

use super::WEBHOOK_PATH;
use super::client::OnceHubClient;
use super::dto::{CreateWebhook, Webhook};
use super::error::{ApiError, ApiErrorKind};
use super::state::{StateFileError, SubscriptionState};
use crate::event::{BOOKING_TRIGGERS, CONVERSATION_TRIGGERS};

/// Composite triggers (every booking / conversation event), documented in older references.
const COMPOSITES: [&str; 2] = ["booking", "conversation"];

/// The subscription could not be put in place.
#[derive(Debug, thiserror::Error)]
pub enum SubscriptionError {
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error(transparent)]
    State(#[from] StateFileError),
    #[error("the public URL must be https:// (OnceHub only posts to https URLs), not {0}")]
    NotHttps(String),
    #[error("the public URL is not a URL: {0}")]
    BadUrl(String),
    #[error("unknown event trigger `{0}`; known: {known}", known = known_events().join(", "))]
    UnknownEvent(String),
    #[error("OnceHub created subscription {0} without returning its signing secret; it was deleted again")]
    NoSecret(String),
}

/// The subscription we want.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Desired {
    /// `<public-url>/webhooks/oncehub`.
    pub url: String,
    /// Sorted, without repeats.
    pub events: Vec<String>,
    pub name: String,
}

/// Every trigger `--events` accepts.
pub fn known_events() -> Vec<&'static str> {
    BOOKING_TRIGGERS.iter().chain(CONVERSATION_TRIGGERS.iter()).chain(COMPOSITES.iter()).copied().collect()
}

/// The default `--events`: every documented booking and conversation trigger.
pub fn default_events() -> Vec<String> {
    BOOKING_TRIGGERS.iter().chain(CONVERSATION_TRIGGERS.iter()).map(|s| (*s).to_owned()).collect()
}

impl Desired {
    /// `public_url` is the service's https base (or the full webhook URL); `name` defaults to
    /// `oncehub-bridge <host>`.
    pub fn new(public_url: &str, events: &[String], name: Option<&str>) -> Result<Desired, SubscriptionError> {
        let url = webhook_url(public_url)?;
        let mut events: Vec<String> = events.iter().map(|e| e.trim().to_owned()).filter(|e| !e.is_empty()).collect();
        if events.is_empty() {
            events = default_events();
        }
        if let Some(bad) = events.iter().find(|e| !known_events().contains(&e.as_str())) {
            return Err(SubscriptionError::UnknownEvent(bad.clone()));
        }
        events.sort();
        events.dedup();
        let host = Url::parse(&url).ok().and_then(|u| u.host_str().map(str::to_owned)).unwrap_or_default();
        let name = name
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map_or_else(|| format!("oncehub-bridge {host}"), str::to_owned);
        Ok(Desired { url, events, name })
    }

    fn matches(&self, w: &Webhook) -> bool {
        let mut events = w.events.clone();
        events.sort();
        events.dedup();
        w.url == self.url && events == self.events
    }
}

/// `<public-url>/webhooks/oncehub`, or the URL itself when it already ends with that path.
pub fn webhook_url(public_url: &str) -> Result<String, SubscriptionError> {
    let url = Url::parse(public_url.trim()).map_err(|e| SubscriptionError::BadUrl(format!("{public_url}: {e}")))?;
    if url.scheme() != "https" {
        return Err(SubscriptionError::NotHttps(public_url.to_owned()));
    }
    let base = url.as_str().trim_end_matches('/');
    Ok(if base.ends_with(WEBHOOK_PATH) { base.to_owned() } else { format!("{base}{WEBHOOK_PATH}") })
}

/// What [`ensure`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Reused,
    /// Created, and deleted these (drifted, secret unknown, or duplicates).
    Created {
        deleted: Vec<String>,
    },
}

/// The subscription in place.
#[derive(Debug)]
pub struct Ensured {
    pub state: SubscriptionState,
    pub action: Action,
}

/// Makes sure exactly one subscription matches `desired`, with its secret in `data_dir`.
pub async fn ensure(
    client: &OnceHubClient,
    desired: &Desired,
    data_dir: &std::path::Path,
    grace: Duration,
) -> Result<Ensured, SubscriptionError> {
    let path = SubscriptionState::path(data_dir);
    let state = SubscriptionState::load(&path)?;
    let known = state.as_ref().filter(|s| s.secret().is_some());
    let all = client.list_webhooks().await?;
    let ours: Vec<&Webhook> =
        all.iter().filter(|w| w.url == desired.url || known.is_some_and(|s| s.id == w.id)).collect();
    let keep = known.and_then(|s| ours.iter().find(|w| w.id == s.id && desired.matches(w)));
    if let (Some(keep), Some(state)) = (keep, state.as_ref()) {
        for extra in ours.iter().filter(|w| w.id != keep.id) {
            delete(client, extra, "a second subscription for this URL").await;
        }
        tracing::info!(id = %keep.id, url = %keep.url, events = keep.events.len(), "reusing the OnceHub subscription");
        return Ok(Ensured { state: state.clone(), action: Action::Reused });
    }

    // Create before deleting, so there is no moment without a subscription. The name must be
    // unique in the account: while an old one of ours holds it, the new one gets a suffix.
    let name = if ours.iter().any(|w| w.name == desired.name) {
        format!("{} {}", desired.name, Utc::now().format("%Y%m%d%H%M%S"))
    } else {
        desired.name.clone()
    };
    let created =
        client.create_webhook(&CreateWebhook { name: &name, url: &desired.url, events: &desired.events }).await?;
    let Some(secret) = created.secret.clone() else {
        delete(client, &created, "created without a secret").await;
        return Err(SubscriptionError::NoSecret(created.id));
    };
    let grace_until = Utc::now() + chrono::Duration::from_std(grace).unwrap_or(chrono::Duration::hours(1));
    let new_state = SubscriptionState::created(
        created.id.clone(),
        name,
        desired.url.clone(),
        desired.events.clone(),
        &secret,
        state.as_ref(),
        grace_until,
    );
    new_state.save(&path)?;
    tracing::info!(id = %created.id, url = %desired.url, events = desired.events.len(), path = %path.display(), "created the OnceHub subscription; its secret is kept here (mode 0600)");
    let mut deleted = Vec::new();
    for old in &ours {
        let reason = match known {
            Some(s) if s.id == old.id && old.url != desired.url => "its URL changed",
            Some(s) if s.id == old.id => "its events changed",
            _ => "its secret is not known here",
        };
        if delete(client, old, reason).await {
            deleted.push(old.id.clone());
        }
    }
    Ok(Ensured { state: new_state, action: Action::Created { deleted } })
}

/// Deletes `w`; true when it is gone (also when it already was). Other failures are logged: a
/// leftover subscription only duplicates deliveries, which dedup absorbs; the next start retries.
async fn delete(client: &OnceHubClient, w: &Webhook, reason: &str) -> bool {
    match client.delete_webhook(&w.id).await {
        Ok(()) => {
            tracing::info!(id = %w.id, url = %w.url, reason, "deleted an old OnceHub subscription");
            true
        }
        Err(e) if e.kind == ApiErrorKind::NotFound => true,
        Err(e) => {
            tracing::warn!(id = %w.id, error = %e, "cannot delete an old OnceHub subscription; the next start tries again");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_webhook_url_is_https_and_ends_with_the_receiver_path() {
        assert_eq!(webhook_url("https://hooks.example.com").unwrap(), "https://hooks.example.com/webhooks/oncehub");
        assert_eq!(webhook_url("https://h.example.com/base/").unwrap(), "https://h.example.com/base/webhooks/oncehub");
        assert_eq!(
            webhook_url("https://h.example.com/webhooks/oncehub").unwrap(),
            "https://h.example.com/webhooks/oncehub"
        );
        assert!(matches!(webhook_url("http://h.example.com"), Err(SubscriptionError::NotHttps(_))));
        assert!(matches!(webhook_url("h.example.com"), Err(SubscriptionError::BadUrl(_))));
    }

    #[test]
    fn events_default_to_every_trigger_and_typos_are_refused() {
        let d = Desired::new("https://h.example.com", &[], None).unwrap();
        assert_eq!(d.events.len(), 11);
        assert_eq!(d.name, "oncehub-bridge h.example.com");
        let d =
            Desired::new("https://h", &["booking.no_show".into(), "booking".into(), "booking".into()], Some("mine"))
                .unwrap();
        assert_eq!((d.events, d.name.as_str()), (vec!["booking".to_owned(), "booking.no_show".to_owned()], "mine"));
        let e = Desired::new("https://h", &["booking.noshow".into()], None).unwrap_err().to_string();
        assert!(e.contains("booking.noshow") && e.contains("booking.no_show"), "{e}");
    }
}
