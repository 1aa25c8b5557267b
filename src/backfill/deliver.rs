//! Where a backfilled envelope goes: to a running receiver over HTTP, signed like a webhook (the
//! `backfill` command), or straight into the spool of the `serve` it runs in (`serve
//! --backfill-since`). Either way it is fsynced and de-duplicated by event id before it counts.

use std::time::Duration;

use bytes::Bytes;
use chrono::Utc;
use serde_json::Value;

use super::BackfillError;
use crate::event::peek;
use crate::oncehub::signature::sign;
use crate::secret::WebhookSecret;
use crate::spool::{Appended, Delivery, EventKey, Spool, SpoolError};

/// Attempts before giving up while the receiver is unavailable (restarting, its spool full).
const ATTEMPTS: u32 = 10;

/// How envelopes reach the spool.
pub enum Deliver {
    Http { client: reqwest::Client, url: String, secret: WebhookSecret },
    Spool(Spool),
}

/// What the spool said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Posted {
    Accepted,
    Duplicate,
    /// The receiver refused it as larger than its `--max-body-bytes` (413): skipped, logged;
    /// stopping would stop every later run on the same page.
    TooLarge,
}

impl Deliver {
    pub fn http(url: &str, secret: WebhookSecret) -> Deliver {
        Deliver::Http { client: reqwest::Client::new(), url: url.to_owned(), secret }
    }

    /// Delivers one envelope, retrying while the receiver or the spool is unavailable.
    pub async fn send(&self, event: &Value) -> Result<Posted, BackfillError> {
        let body = Bytes::from(serde_json::to_vec(event).map_err(|e| BackfillError::Receiver(e.to_string()))?);
        let mut delay = Duration::from_millis(200);
        for attempt in 1..=ATTEMPTS {
            match self.try_send(&body).await {
                Ok(posted) => return Ok(posted),
                Err(Failure::Fatal(e)) => return Err(e),
                Err(Failure::Retry(why)) => {
                    tracing::warn!(attempt, why, "a backfilled delivery was not taken; retrying")
                }
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(10));
        }
        Err(BackfillError::Receiver(format!(
            "{} did not take a delivery after {ATTEMPTS} attempts; run again with --resume",
            self.target()
        )))
    }

    fn target(&self) -> String {
        match self {
            Deliver::Http { url, .. } => format!("the receiver at {url}"),
            Deliver::Spool(_) => "the spool".to_owned(),
        }
    }

    async fn try_send(&self, body: &Bytes) -> Result<Posted, Failure> {
        match self {
            Deliver::Http { client, url, secret } => {
                let sent = client
                    .post(url)
                    .header("Content-Type", "application/json")
                    .header("Oncehub-Signature", sign(secret, Utc::now().timestamp(), body))
                    .body(body.clone())
                    .send()
                    .await;
                match sent {
                    Ok(r) if r.status().is_success() => {
                        let answer: Value = r.json().await.unwrap_or_default();
                        Ok(if answer["status"] == "duplicate" { Posted::Duplicate } else { Posted::Accepted })
                    }
                    Ok(r) if r.status() == reqwest::StatusCode::PAYLOAD_TOO_LARGE => {
                        let id = serde_json::from_slice::<Value>(body)
                            .ok()
                            .and_then(|v| v["data"]["id"].as_str().map(str::to_owned));
                        tracing::warn!(object = ?id, bytes = body.len(), "the receiver refused a backfilled object as too large (raise serve's --max-body-bytes to keep it); skipped");
                        Ok(Posted::TooLarge)
                    }
                    Ok(r) if r.status().is_client_error() && r.status() != reqwest::StatusCode::REQUEST_TIMEOUT => {
                        Err(Failure::Fatal(BackfillError::Receiver(format!(
                            "the receiver at {url} refused a backfilled delivery: {} (is --webhook-secret the one serve uses?)",
                            r.status()
                        ))))
                    }
                    Ok(r) => Err(Failure::Retry(format!("the receiver answered {}", r.status()))),
                    Err(e) => Err(Failure::Retry(format!("cannot reach the receiver: {e}"))),
                }
            }
            Deliver::Spool(spool) => {
                let delivery = Delivery {
                    received_at: Utc::now(),
                    remote_addr: None,
                    signature_timestamp: Utc::now().timestamp(),
                    event_key: peek(body).id.as_deref().map(EventKey::of),
                    body: body.clone(),
                };
                match spool.append(delivery).await {
                    Ok(Appended::Stored(_)) => Ok(Posted::Accepted),
                    Ok(Appended::Duplicate) => Ok(Posted::Duplicate),
                    Err(SpoolError::Closed) => Err(Failure::Fatal(BackfillError::Stopped)),
                    Err(e @ (SpoolError::Full { .. } | SpoolError::DiskFull)) => Err(Failure::Retry(e.to_string())),
                    Err(e) => Err(Failure::Fatal(BackfillError::Receiver(e.to_string()))),
                }
            }
        }
    }
}

enum Failure {
    Retry(String),
    Fatal(BackfillError),
}
