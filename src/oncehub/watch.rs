//! The subscription's part of `/readyz`: is the subscription `serve` put in place still there?
//!
//! Asked of the API at most once per [`RECHECK`] (the account's rate limit is shared with
//! everything else). Only a definite answer makes the service not ready: the subscription is gone
//! (404: deleted by hand, or auto-disabled and removed). An API that cannot be reached says
//! nothing about the subscription, so it is reported but does not fail readiness.

use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

use super::client::OnceHubClient;
use super::error::ApiErrorKind;

/// How long one answer is reused.
pub const RECHECK: Duration = Duration::from_secs(60);
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// Ready (with a note), or not ready (with the reason).
pub type WatchResult = Result<String, String>;

#[derive(Debug)]
pub struct SubscriptionWatch {
    client: OnceHubClient,
    id: String,
    last: Mutex<Option<(Instant, WatchResult)>>,
}

impl SubscriptionWatch {
    pub fn new(client: OnceHubClient, id: String) -> SubscriptionWatch {
        SubscriptionWatch { client, id, last: Mutex::new(None) }
    }

    pub async fn status(&self) -> WatchResult {
        let mut last = self.last.lock().await;
        if let Some((at, result)) = last.as_ref()
            && at.elapsed() < RECHECK
        {
            return result.clone();
        }
        let result = match tokio::time::timeout(CALL_TIMEOUT, self.client.get_webhook(&self.id)).await {
            Ok(Ok(_)) => Ok("ok".to_owned()),
            Ok(Err(e)) if e.kind == ApiErrorKind::NotFound => Err(format!(
                "subscription {} no longer exists in OnceHub; restart the service to create it again",
                self.id
            )),
            Ok(Err(e)) => Ok(format!("ok (not verified just now: {e})")),
            Err(_) => Ok("ok (not verified just now: the OnceHub API did not answer in time)".to_owned()),
        };
        *last = Some((Instant::now(), result.clone()));
        result
    }
}
