//! `OnceHubClient`: the OnceHub v2 REST API over reqwest + rustls.
//!
//! Guarantees: every request carries the `API-Key` header and nothing else of the key (never in
//! a URL, a log line or an error); requests are paced to stay under the documented 5 requests/s
//! per account; 429 is retried with exponential backoff on every method, 5xx and transport
//! failures only on idempotent ones (a `POST` that failed with 5xx may have happened: the caller
//! reconciles by listing); the `Request-Id` of every failed call is logged and kept in the error;
//! lists are read to the end with `has_more` + `after`.

use std::collections::VecDeque;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use tokio::sync::Mutex;
use tokio::time::Instant;
use url::Url;

use super::dto::{CreateWebhook, ErrorBody, KeyCheck, Page, Webhook};
use super::error::{ApiError, ApiErrorKind};
use crate::secret::ApiKey;

/// The documented default.
pub const DEFAULT_BASE_URL: &str = "https://api.oncehub.com/v2";
/// 5 requests/s per account, with a margin for clock and network jitter.
const MIN_INTERVAL: Duration = Duration::from_millis(220);
/// 200 requests per 5 minutes per IP: the documented cap, which binds first on long listings.
pub const WINDOW_REQUESTS: usize = 200;
pub const WINDOW: Duration = Duration::from_secs(300);
const PAGE_SIZE: u32 = 100;

/// Failed calls: at most this many attempts, backing off from the first delay, doubling up to the cap.
const ATTEMPTS: u32 = 6;
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(8);

/// A client for one account (one API key).
pub struct OnceHubClient {
    http: reqwest::Client,
    base: String,
    key: ApiKey,
    next_slot: Mutex<Pacing>,
}

/// When the next request may go: one per [`MIN_INTERVAL`], and at most `window.0` in any
/// `window.1` (the per-IP cap), from the times of the last requests.
struct Pacing {
    next: Option<Instant>,
    window: (usize, Duration),
    sent: VecDeque<Instant>,
}

impl std::fmt::Debug for OnceHubClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnceHubClient").field("base", &self.base).finish_non_exhaustive()
    }
}

impl OnceHubClient {
    pub fn new(base: &Url, key: ApiKey) -> Result<OnceHubClient, ApiError> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("oncehub-bridge/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| ApiError::new(ApiErrorKind::Transport, format!("cannot build the HTTP client: {e}")))?;
        let base = base.as_str().trim_end_matches('/').to_owned();
        let pacing = Pacing { next: None, window: (WINDOW_REQUESTS, WINDOW), sent: VecDeque::new() };
        Ok(OnceHubClient { http, base, key, next_slot: Mutex::new(pacing) })
    }

    /// At most `requests` per `period` instead of the documented 200 per 5 minutes (a proxy or
    /// NAT shared with other clients of the account's IP, or a test's scaled-down stand-in).
    pub fn with_window(self, requests: usize, period: Duration) -> OnceHubClient {
        let pacing = Pacing { next: None, window: (requests.max(1), period), sent: VecDeque::new() };
        OnceHubClient { next_slot: Mutex::new(pacing), ..self }
    }

    /// One page of a list endpoint (`/bookings`, `/contacts`; newest first) with `query`'s
    /// filters, after the object `after`; objects are kept as the JSON the API sent (their shape
    /// varies).
    pub async fn list_page(
        &self,
        path: &str,
        query: &[(&str, String)],
        after: Option<&str>,
    ) -> Result<Page<serde_json::Value>, ApiError> {
        let mut query = query.to_vec();
        query.push(("limit", PAGE_SIZE.to_string()));
        if let Some(after) = after {
            query.push(("after", after.to_owned()));
        }
        self.call(Method::GET, path, &query, None).await
    }

    /// `GET /test`: the key is valid; returns the API's message (it names the account).
    pub async fn check_key(&self) -> Result<String, ApiError> {
        let body: KeyCheck = self.call(Method::GET, "/test", &[], None).await?;
        Ok(body.message)
    }

    /// Every subscription of the account, all pages.
    pub async fn list_webhooks(&self) -> Result<Vec<Webhook>, ApiError> {
        let mut all: Vec<Webhook> = Vec::new();
        loop {
            let mut query = vec![("limit", PAGE_SIZE.to_string())];
            if let Some(last) = all.last() {
                query.push(("after", last.id.clone()));
            }
            let page: Page<Webhook> = self.call(Method::GET, "/webhooks", &query, None).await?;
            let more = page.has_more && !page.data.is_empty();
            all.extend(page.data);
            if !more {
                return Ok(all);
            }
        }
    }

    pub async fn get_webhook(&self, id: &str) -> Result<Webhook, ApiError> {
        self.call(Method::GET, &format!("/webhooks/{}", encode(id)), &[], None).await
    }

    /// `POST /webhooks`; the answer carries the signing secret (only this once).
    pub async fn create_webhook(&self, request: &CreateWebhook<'_>) -> Result<Webhook, ApiError> {
        let body = serde_json::to_value(request).map_err(|e| ApiError::new(ApiErrorKind::Decode, e.to_string()))?;
        self.call(Method::POST, "/webhooks", &[], Some(body)).await
    }

    /// `DELETE /webhooks/{id}`.
    pub async fn delete_webhook(&self, id: &str) -> Result<(), ApiError> {
        let _: serde_json::Value = self.call(Method::DELETE, &format!("/webhooks/{}", encode(id)), &[], None).await?;
        Ok(())
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<serde_json::Value>,
    ) -> Result<T, ApiError> {
        let idempotent = method != Method::POST;
        let mut backoff = FIRST_BACKOFF;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let error = match self.once(method.clone(), path, query, body.as_ref()).await {
                Ok(bytes) => {
                    return serde_json::from_slice(&bytes).map_err(|e| {
                        ApiError::new(ApiErrorKind::Decode, format!("{method} {path}: unexpected answer: {e}"))
                    });
                }
                Err(e) => e,
            };
            let retryable = match error.kind {
                ApiErrorKind::RateLimited => true,
                ApiErrorKind::Server | ApiErrorKind::Transport => idempotent,
                _ => false,
            };
            tracing::warn!(
                method = %method, path, status = error.status, request_id = error.request_id.as_deref().unwrap_or("-"),
                attempt, retry = retryable && attempt < ATTEMPTS, error = %error.message, "OnceHub API call failed"
            );
            if !retryable || attempt >= ATTEMPTS {
                return Err(error);
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// One paced request; the body bytes of a 2xx, or the error it maps to.
    async fn once(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&serde_json::Value>,
    ) -> Result<bytes::Bytes, ApiError> {
        self.pace().await;
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("API-Key", self.key.expose())
            .header("Accept", "application/json")
            .query(query);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response =
            request.send().await.map_err(|e| ApiError::new(ApiErrorKind::Transport, transport_reason(&e)))?;
        let status = response.status();
        let request_id = response.headers().get("request-id").and_then(|v| v.to_str().ok()).map(str::to_owned);
        let bytes = response.bytes().await.map_err(|e| ApiError::new(ApiErrorKind::Transport, transport_reason(&e)))?;
        if status.is_success() {
            return Ok(bytes);
        }
        let parsed: ErrorBody = serde_json::from_slice(&bytes).unwrap_or_default();
        let message = if parsed.message.is_empty() {
            status.canonical_reason().unwrap_or("error").to_owned()
        } else {
            parsed.message
        };
        Err(ApiError { kind: kind_of(status), status: Some(status.as_u16()), message, param: parsed.param, request_id })
    }

    /// Waits for this client's next request slot (at most one per [`MIN_INTERVAL`], and within
    /// the window cap).
    async fn pace(&self) {
        let mut pacing = self.next_slot.lock().await;
        let now = Instant::now();
        let mut slot = pacing.next.map_or(now, |n| n.max(now));
        let (cap, period) = pacing.window;
        while pacing.sent.len() >= cap {
            let Some(oldest) = pacing.sent.pop_front() else { break };
            // The request `cap` back must have left the window (plus the jitter margin).
            slot = slot.max(oldest + period + (MIN_INTERVAL / 4));
        }
        pacing.sent.push_back(slot);
        pacing.next = Some(slot + MIN_INTERVAL);
        drop(pacing);
        tokio::time::sleep_until(slot).await;
    }
}

fn kind_of(status: StatusCode) -> ApiErrorKind {
    match status.as_u16() {
        401 => ApiErrorKind::Unauthorized,
        403 => ApiErrorKind::Forbidden,
        404 => ApiErrorKind::NotFound,
        409 => ApiErrorKind::Conflict,
        429 => ApiErrorKind::RateLimited,
        500..=599 => ApiErrorKind::Server,
        _ => ApiErrorKind::Invalid,
    }
}

/// The transport failure without the request (whose headers hold the key; reqwest's `Display`
/// shows only the URL, which holds nothing secret, but be explicit).
fn transport_reason(e: &reqwest::Error) -> String {
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    let mut reason = what.to_owned();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let text = s.to_string();
        if !reason.contains(&text) {
            reason = format!("{reason}: {text}");
        }
        source = s.source();
    }
    reason
}

fn encode(segment: &str) -> String {
    url::form_urlencoded::byte_serialize(segment.as_bytes()).collect()
}
