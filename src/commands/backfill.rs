//! `backfill`: the bookings made before the bridge was installed, from OnceHub's REST API
//! (`GET /v2/bookings`, shared/oncehub-api.md §11), through the same durable path as webhooks.
//!
//! Each listed booking (and the conversation embedded in it, when `expand` gave the object: the
//! API has no list of conversations) becomes a signed delivery to the running receiver (`--url`), so it is
//! spooled, de-duplicated, batched and committed exactly like a webhook: an envelope with a
//! synthetic id `BKFL-<hash of booking id and last_updated_time>` (stable across runs, never an
//! `EVNT-` id, so re-reading a booking adds no row), `type: "backfill"`, `creation_time` =
//! the booking's `last_updated_time`, and the REST booking as `data`.
//!
//! Pages are walked newest first with `after`, `limit=100`, `expand=owner,contact,conversation`,
//! within `last_updated_time.gt/.lt`, at most 5 requests/s and 200 per 5 minutes (the client
//! paces both; a 429 backs off). After each page is acknowledged the cursor is saved in
//! `<data-dir>/backfill.json`: `--resume` goes on from there; `--since last` starts where the
//! last complete run started, minus `--overlap`, since the filters are strict and may be
//! day-resolution.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use chrono::{DateTime, NaiveDate, Utc};
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::cli::BackfillArgs;
use crate::config::ApiSettings;
use crate::oncehub::OnceHubClient;
use crate::oncehub::signature::sign;
use crate::secret::WebhookSecret;

/// Posting a delivery: attempts before giving up (the receiver restarting, its spool full).
const POST_ATTEMPTS: u32 = 10;

/// What `<data-dir>/backfill.json` keeps between runs.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackfillState {
    /// The run in progress (or interrupted): its range and the last booking id acknowledged.
    pub current: Option<Cursor>,
    /// When the last complete run started: `--since last` reads from there (minus the overlap).
    pub last_complete_start: Option<DateTime<Utc>>,
}

/// An unfinished walk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cursor {
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
    pub started: DateTime<Utc>,
    pub after: Option<String>,
    pub pages: u64,
    pub rows: u64,
}

impl BackfillState {
    pub fn path(data_dir: &Path) -> PathBuf {
        data_dir.join("backfill.json")
    }

    fn load(path: &Path) -> anyhow::Result<BackfillState> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).with_context(|| format!("{} is damaged", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BackfillState::default()),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    fn save(&self, path: &Path) -> anyhow::Result<()> {
        let bytes = serde_json::to_vec_pretty(self)?;
        crate::fsutil::replace(path, &bytes, false).with_context(|| format!("cannot write {}", path.display()))
    }
}

/// The envelope a listed booking is delivered in.
pub fn envelope(booking: &Value) -> Option<Value> {
    let updated = booking["last_updated_time"].as_str().or_else(|| booking["creation_time"].as_str())?;
    wrap(booking, "booking", updated)
}

/// The envelope of the conversation embedded in an expanded booking (there is no list of
/// conversations): a `conversations` row, at the booking's time unless it has its own.
pub fn conversation_envelope(booking: &Value) -> Option<Value> {
    let conversation = booking.get("conversation").filter(|c| c.is_object())?;
    let updated = conversation["last_updated_time"]
        .as_str()
        .or_else(|| booking["last_updated_time"].as_str())
        .or_else(|| booking["creation_time"].as_str())?;
    wrap(conversation, "conversation", updated)
}

fn wrap(object: &Value, kind: &str, updated: &str) -> Option<Value> {
    let id = object["id"].as_str()?;
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

pub async fn run(args: BackfillArgs) -> anyhow::Result<()> {
    let api = ApiSettings::from_args(&args.api)?.context("backfill needs --api-key (ONCEHUB_API_KEY)")?;
    let mut client = OnceHubClient::new(&api.base, api.key)?;
    if let Some(requests) = args.rate_window_requests {
        client = client.with_window(requests, args.rate_window);
    }
    let configured = args.webhook_secret.first().and_then(|s| WebhookSecret::parse(s));
    let secret = super::signing_secret(configured.as_ref(), &args.data.data_dir)?.with_context(|| {
        format!("no --webhook-secret given and no secret in {}: start `serve` once", args.data.data_dir.display())
    })?;
    let path = BackfillState::path(&args.data.data_dir);
    let mut state = BackfillState::load(&path)?;
    let mut cursor = match (&state.current, args.resume) {
        (Some(c), true) => c.clone(),
        (None, true) => bail!("--resume: no interrupted backfill in {}", path.display()),
        (_, false) => {
            let since = match args.since.trim() {
                "last" => {
                    let start = state
                        .last_complete_start
                        .context("--since last: no complete backfill yet; give a date (--since 2024-01-01)")?;
                    start - chrono::Duration::from_std(args.overlap)?
                }
                date => day_start(date)?,
            };
            let until = match &args.until {
                Some(date) => day_start(date)? + chrono::Duration::days(1),
                None => Utc::now(),
            };
            if since >= until {
                bail!("--since {} is not before --until {}", since.to_rfc3339(), until.to_rfc3339());
            }
            Cursor { since, until, started: Utc::now(), after: None, pages: 0, rows: 0 }
        }
    };
    let bar = progress_bar();
    let http = reqwest::Client::new();
    let query = [
        ("last_updated_time.gt", cursor.since.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
        ("last_updated_time.lt", cursor.until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
        ("expand", "owner,contact,conversation".to_owned()),
    ];
    let (mut accepted, mut duplicates) = (0u64, 0u64);
    loop {
        let page = client.bookings_page(&query, cursor.after.as_deref()).await.context("cannot list bookings")?;
        for booking in &page.data {
            let Some(event) = envelope(booking) else {
                bar.suspend(|| eprintln!("skipping a listed booking without id or times: {booking}"));
                continue;
            };
            for event in std::iter::once(event).chain(conversation_envelope(booking)) {
                match post(&http, &args.url, &secret, &event).await? {
                    Posted::Accepted => accepted += 1,
                    Posted::Duplicate => duplicates += 1,
                }
            }
            cursor.rows += 1;
            if cursor.rows.is_multiple_of(1000) && bar.is_hidden() {
                println!("{} bookings sent ({} pages)", cursor.rows, cursor.pages + 1);
            }
        }
        cursor.pages += 1;
        cursor.after = page.data.last().and_then(|b| b["id"].as_str()).map(str::to_owned);
        bar.set_message(format!("{} pages, {} bookings", cursor.pages, cursor.rows));
        bar.tick();
        if !page.has_more || cursor.after.is_none() {
            break;
        }
        state.current = Some(cursor.clone());
        state.save(&path)?;
    }
    bar.finish_and_clear();
    state.current = None;
    state.last_complete_start = Some(cursor.started);
    state.save(&path)?;
    println!(
        "backfill done: {} bookings in {} pages ({accepted} new rows, {duplicates} already in the lake, embedded conversations included), last_updated_time {} to {}",
        cursor.rows,
        cursor.pages,
        cursor.since.to_rfc3339(),
        cursor.until.to_rfc3339()
    );
    Ok(())
}

fn day_start(date: &str) -> anyhow::Result<DateTime<Utc>> {
    let day = NaiveDate::parse_from_str(date.trim(), "%Y-%m-%d")
        .with_context(|| format!("{date}: expected YYYY-MM-DD or last"))?;
    Ok(day.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc())
}

enum Posted {
    Accepted,
    Duplicate,
}

/// Delivers one envelope to the receiver, retrying while it is unavailable (restarting, spool
/// full: 503) or unreachable; a refusal (wrong secret: 401) stops the backfill.
async fn post(http: &reqwest::Client, url: &str, secret: &WebhookSecret, event: &Value) -> anyhow::Result<Posted> {
    let body = serde_json::to_vec(event)?;
    let mut delay = Duration::from_millis(200);
    for attempt in 1..=POST_ATTEMPTS {
        let sent = http
            .post(url)
            .header("Content-Type", "application/json")
            .header("Oncehub-Signature", sign(secret, Utc::now().timestamp(), &body))
            .body(body.clone())
            .send()
            .await;
        match sent {
            Ok(r) if r.status().is_success() => {
                let answer: Value = r.json().await.unwrap_or_default();
                return Ok(if answer["status"] == "duplicate" { Posted::Duplicate } else { Posted::Accepted });
            }
            Ok(r) if r.status().is_client_error() && r.status() != reqwest::StatusCode::REQUEST_TIMEOUT => {
                bail!(
                    "the receiver at {url} refused a backfilled booking: {} (is --webhook-secret the one serve uses?)",
                    r.status()
                )
            }
            Ok(r) => tracing::warn!(status = %r.status(), attempt, "the receiver is not taking deliveries; retrying"),
            Err(e) => tracing::warn!(error = %e, attempt, "cannot reach the receiver; retrying"),
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(10));
    }
    bail!("the receiver at {url} did not take a delivery after {POST_ATTEMPTS} attempts; run again with --resume")
}

fn progress_bar() -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let style =
        ProgressStyle::with_template("{spinner} {msg} {elapsed}").unwrap_or_else(|_| ProgressStyle::default_spinner());
    ProgressBar::new_spinner().with_style(style)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_synthetic_id_is_stable_and_never_a_webhook_id() {
        let b = json!({"id": "BKNG-1", "object": "booking", "last_updated_time": "2026-01-02T03:04:05Z"});
        let (e1, e2) = (envelope(&b).unwrap(), envelope(&b).unwrap());
        assert_eq!(e1["id"], e2["id"]);
        assert!(e1["id"].as_str().unwrap().starts_with("BKFL-"));
        assert_eq!(e1["type"], "backfill");
        assert_eq!(e1["creation_time"], "2026-01-02T03:04:05Z");
        let later = json!({"id": "BKNG-1", "object": "booking", "last_updated_time": "2026-01-03T00:00:00Z"});
        assert_ne!(envelope(&later).unwrap()["id"], e1["id"], "a newer state is a new row");
        assert!(envelope(&json!({"object": "booking"})).is_none());
    }

    #[test]
    fn an_expanded_conversation_is_a_row_of_its_own_an_id_is_not() {
        let b = json!({"id": "BKNG-1", "last_updated_time": "2026-01-02T03:04:05Z",
            "conversation": {"object": "conversation", "id": "CNV-1", "status": "closed"}});
        let c = conversation_envelope(&b).unwrap();
        assert_eq!(c["data"]["object"], "conversation");
        assert_eq!(c["creation_time"], "2026-01-02T03:04:05Z");
        assert_ne!(c["id"], envelope(&b).unwrap()["id"]);
        assert!(
            conversation_envelope(&json!({"id": "BKNG-2", "last_updated_time": "x", "conversation": "CNV-2"}))
                .is_none()
        );
    }
}
