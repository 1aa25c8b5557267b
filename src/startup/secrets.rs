//! The secrets `serve` verifies deliveries with: the configured ones, plus the managed
//! subscription's (auto-registration), plus, with neither, the one generated into the data dir.

use std::sync::Arc;

use crate::config::{SecretSource, ServeSettings, SubscriptionSettings};
use crate::oncehub::{OnceHubClient, SubscriptionError, SubscriptionWatch, ensure};
use crate::secret::{self, WebhookSecret};

use super::StartupError;

/// What verifies deliveries, and the subscription to watch when there is one.
pub(super) struct Secrets {
    pub current: Vec<WebhookSecret>,
    /// Replaced secrets still accepted until their grace period ends (unix seconds).
    pub expiring: Vec<(WebhookSecret, i64)>,
    pub subscription: Option<Arc<SubscriptionWatch>>,
    /// The secret was generated into (or read from) the data dir: `send-test-event` finds it there.
    pub local_file: bool,
}

impl Secrets {
    pub(super) async fn resolve(settings: &ServeSettings) -> Result<Secrets, StartupError> {
        match &settings.subscription {
            Some(sub) => subscribe(settings, sub).await,
            None => local(settings),
        }
    }
}

/// Auto-registration: makes sure the subscription is in place; its secret (plus any configured
/// ones) verifies deliveries at once, and replaced secrets until their grace period ends.
async fn subscribe(settings: &ServeSettings, sub: &SubscriptionSettings) -> Result<Secrets, StartupError> {
    let client = OnceHubClient::new(&sub.api.base, sub.api.key.clone()).map_err(SubscriptionError::from)?;
    let ensured = ensure(&client, &sub.desired, &settings.data_dir, sub.grace).await?;
    let mut current = match &settings.secrets {
        SecretSource::Configured(list) => list.clone(),
        SecretSource::LocalFile => Vec::new(),
    };
    current.extend(ensured.state.secret());
    let expiring = ensured
        .state
        .previous_secrets(chrono::Utc::now())
        .into_iter()
        .map(|(s, until)| (s, until.timestamp()))
        .collect();
    let watch = Arc::new(SubscriptionWatch::new(client, ensured.state.id.clone()));
    Ok(Secrets { current, expiring, subscription: Some(watch), local_file: false })
}

fn local(settings: &ServeSettings) -> Result<Secrets, StartupError> {
    let current = match &settings.secrets {
        SecretSource::Configured(list) => list.clone(),
        SecretSource::LocalFile => {
            let path = secret::secret_file(&settings.data_dir);
            let (secret, generated) = secret::load_or_generate(&path)?;
            if generated {
                tracing::info!(path = %path.display(), "no --webhook-secret given: generated one and kept it here (mode 0600)");
            } else {
                tracing::info!(path = %path.display(), "using the webhook secret kept here");
            }
            return Ok(Secrets { current: vec![secret], expiring: Vec::new(), subscription: None, local_file: true });
        }
    };
    Ok(Secrets { current, expiring: Vec::new(), subscription: None, local_file: false })
}
