//! `check`: is this deployment working? One line per check, `ok`, `skip` or `FAIL` with what to do,
//! and a non-zero exit on any failure. It reads the same settings as `serve` (flags, environment,
//! `--config`), so it checks what `serve` runs with:
//!
//! 1. the API key (`GET /v2/test`), when one is set;
//! 2. the subscription: one points at `<public-url>/webhooks/oncehub` with the configured events,
//!    and its secret is kept in the data dir;
//! 3. the store: a probe object is written and deleted;
//! 4. the receiver answers `GET /healthz`;
//! 5. end to end: a signed synthetic delivery (table `other_events`, `data.object` =
//!    `oncehub_bridge_check`) is accepted, then found in the lake by its event id.

use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::Utc;
use futures_util::TryStreamExt;
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::cli::CheckArgs;
use crate::config::{SecretSource, ServeSettings};
use crate::oncehub::{OnceHubClient, SubscriptionState};
use crate::oncehub::{WEBHOOK_PATH, signature::sign};
use crate::schema::Table;
use crate::sink::{ObjectKey, open_store};

/// One check's outcome: `Ok(detail)`, `Err(what failed; what to do)`, or skipped with a reason.
enum Outcome {
    Ok(String),
    Skip(String),
    Fail(String),
}

struct Report {
    failed: usize,
}

impl Report {
    fn line(&mut self, name: &str, outcome: Outcome) {
        let (tag, text) = match outcome {
            Outcome::Ok(t) => ("ok  ", t),
            Outcome::Skip(t) => ("skip", t),
            Outcome::Fail(t) => {
                self.failed += 1;
                ("FAIL", t)
            }
        };
        println!("{tag}  {name}: {text}");
    }
}

pub async fn run(args: CheckArgs) -> anyhow::Result<()> {
    let settings = ServeSettings::from_args(args.serve.clone())?;
    let mut report = Report { failed: 0 };
    let client = match &settings.subscription {
        Some(sub) => Some(OnceHubClient::new(&sub.api.base, sub.api.key.clone())?),
        None => None,
    };
    match &client {
        Some(client) => report.line(
            "api key",
            match client.check_key().await {
                Ok(message) => Outcome::Ok(message),
                Err(e) => Outcome::Fail(e.to_string()),
            },
        ),
        None => report
            .line("api key", Outcome::Skip("no --api-key: the subscription is managed outside oncehub-bridge".into())),
    }
    report.line("subscription", subscription(&settings, client.as_ref()).await);
    let store = open_store(&settings.storage)?;
    report.line("storage", storage(store.as_ref(), &settings).await);
    let receiver = args.receiver_url.clone().unwrap_or_else(|| default_receiver(&settings));
    let receiving = receiver_answers(&receiver).await;
    let up = matches!(receiving, Outcome::Ok(_));
    report.line("receiver", receiving);
    let timeout = args.probe_timeout.unwrap_or(settings.flush.max_age + Duration::from_secs(30));
    let e2e = if up {
        end_to_end(&settings, store.as_ref(), &receiver, timeout).await
    } else {
        Outcome::Fail("not tried: the receiver does not answer".into())
    };
    report.line("end-to-end", e2e);
    if report.failed > 0 {
        anyhow::bail!("{} of 5 checks failed", report.failed);
    }
    Ok(())
}

async fn subscription(settings: &ServeSettings, client: Option<&OnceHubClient>) -> Outcome {
    let (Some(sub), Some(client)) = (&settings.subscription, client) else {
        return Outcome::Skip("no --api-key: check the webhook in OnceHub (Settings > API & webhooks)".into());
    };
    let hooks = match client.list_webhooks().await {
        Ok(hooks) => hooks,
        Err(e) => return Outcome::Fail(e.to_string()),
    };
    let want = &sub.desired;
    let Some(hook) = hooks.iter().find(|w| w.url == want.url) else {
        return Outcome::Fail(format!(
            "no subscription posts to {}; start `serve` with --api-key, or run `oncehub-bridge register --url {}`",
            want.url, want.url
        ));
    };
    let mut events = hook.events.clone();
    events.sort();
    events.dedup();
    if events != want.events {
        let missing: Vec<&str> = want.events.iter().filter(|e| !events.contains(e)).map(String::as_str).collect();
        let extra: Vec<&str> = events.iter().filter(|e| !want.events.contains(e)).map(String::as_str).collect();
        return Outcome::Fail(format!(
            "{} has other events (missing: {}; extra: {}); restart `serve` and it is replaced",
            hook.id,
            list_or_none(&missing),
            list_or_none(&extra)
        ));
    }
    match SubscriptionState::load(&SubscriptionState::path(&settings.data_dir)) {
        Ok(Some(state)) if state.id == hook.id && state.secret().is_some() => {
            Outcome::Ok(format!("{} -> {} ({} events)", hook.id, hook.url, hook.events.len()))
        }
        Ok(_) => Outcome::Fail(format!(
            "{} is in place but its secret is not kept in {}; restart `serve` and it is replaced",
            hook.id,
            settings.data_dir.display()
        )),
        Err(e) => Outcome::Fail(e.to_string()),
    }
}

fn list_or_none(items: &[&str]) -> String {
    if items.is_empty() { "none".into() } else { items.join(",") }
}

async fn storage(store: &dyn ObjectStore, settings: &ServeSettings) -> Outcome {
    let probe = StorePath::from(format!("_oncehub_bridge_check/{}", uuid::Uuid::now_v7()));
    let result = async {
        store.put(&probe, PutPayload::from_static(b"oncehub-bridge check")).await?;
        store.delete(&probe).await
    };
    match tokio::time::timeout(Duration::from_secs(30), result).await {
        Ok(Ok(())) => Outcome::Ok(format!("wrote and deleted a probe object in {}", settings.storage)),
        Ok(Err(e)) => Outcome::Fail(format!(
            "cannot write to {}: {e}; check the bucket and the AWS_* (or GOOGLE_*/AZURE_*) credentials",
            settings.storage
        )),
        Err(_) => Outcome::Fail(format!(
            "{} did not answer within 30 s; check AWS_ENDPOINT_URL and the network",
            settings.storage
        )),
    }
}

/// `http(s)://<listen>` with an unspecified address replaced by loopback.
fn default_receiver(settings: &ServeSettings) -> String {
    let mut addr = settings.listen;
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let scheme = if settings.tls.is_some() { "https" } else { "http" };
    format!("{scheme}://{addr}")
}

async fn receiver_answers(base: &str) -> Outcome {
    let url = format!("{}/healthz", base.trim_end_matches('/'));
    match reqwest::Client::new().get(&url).timeout(Duration::from_secs(10)).send().await {
        Ok(r) if r.status().is_success() => Outcome::Ok(format!("{url} answered {}", r.status().as_u16())),
        Ok(r) => Outcome::Fail(format!("{url} answered {}; is this oncehub-bridge?", r.status().as_u16())),
        Err(_) => {
            Outcome::Fail(format!("nothing answers at {url}; start `oncehub-bridge serve`, or pass --receiver-url"))
        }
    }
}

async fn end_to_end(settings: &ServeSettings, store: &dyn ObjectStore, receiver: &str, timeout: Duration) -> Outcome {
    let configured = match &settings.secrets {
        SecretSource::Configured(list) => list.first(),
        SecretSource::LocalFile => None,
    };
    let Ok(Some(secret)) = super::signing_secret(configured, &settings.data_dir) else {
        return Outcome::Fail(format!("no webhook secret found in {} or the settings", settings.data_dir.display()));
    };
    let id = format!("EVNT-check-{}", uuid::Uuid::now_v7().simple());
    let now = Utc::now();
    let body = serde_json::json!({
        "id": id, "object": "event", "type": "oncehub_bridge.check", "api_version": "v2",
        "creation_time": now.to_rfc3339(), "data": {"object": "oncehub_bridge_check", "id": id},
    });
    let body = serde_json::to_vec(&body).unwrap_or_default();
    let url = format!("{}{WEBHOOK_PATH}", receiver.trim_end_matches('/'));
    let sent = reqwest::Client::new()
        .post(&url)
        .header("Oncehub-Signature", sign(&secret, now.timestamp(), &body))
        .header("Content-Type", "application/json")
        .body(body)
        .send()
        .await;
    match sent {
        Ok(r) if r.status().is_success() => {}
        Ok(r) if r.status().as_u16() == 401 => {
            return Outcome::Fail(format!(
                "{url} refused the probe's signature (401): `check` and `serve` use different secrets or data dirs"
            ));
        }
        Ok(r) => return Outcome::Fail(format!("{url} answered {} to the probe", r.status().as_u16())),
        Err(e) => return Outcome::Fail(format!("cannot post the probe to {url}: {e}")),
    }
    let accepted = Instant::now();
    let partition = ObjectKey::partition(Table::OtherEvents, now.date_naive());
    // The probe lands with the receiver's next flush: say so, or the wait looks like a hang.
    let mut said = Instant::now();
    eprintln!(
        "waiting for the probe {id} to reach {}/{partition}: up to {} s (the receiver writes it at its next flush, --flush-interval)",
        settings.storage,
        timeout.as_secs()
    );
    loop {
        if said.elapsed() >= Duration::from_secs(10) {
            eprintln!("  still waiting ({} s of {} s)", accepted.elapsed().as_secs(), timeout.as_secs());
            said = Instant::now();
        }
        match find(store, &partition, &id, now - chrono::Duration::minutes(5)).await {
            Ok(true) => {
                return Outcome::Ok(format!(
                    "a signed probe delivery was in the lake {:.1} s after its 2xx",
                    accepted.elapsed().as_secs_f64()
                ));
            }
            Ok(false) if accepted.elapsed() < timeout => tokio::time::sleep(Duration::from_millis(500)).await,
            Ok(false) => {
                return Outcome::Fail(format!(
                    "the probe was accepted but not in {}/{partition} after {} s; is the store reachable from `serve` (its log says)?",
                    settings.storage,
                    timeout.as_secs()
                ));
            }
            Err(e) => return Outcome::Fail(format!("cannot read the lake: {e}")),
        }
    }
}

/// Whether some Parquet file under `partition` written since `since` holds a row with `event_id`
/// (`since` is a few minutes before the probe: the store's clock need not match ours).
async fn find(
    store: &dyn ObjectStore,
    partition: &str,
    event_id: &str,
    since: chrono::DateTime<Utc>,
) -> anyhow::Result<bool> {
    let objects: Vec<_> = store.list(Some(&StorePath::from(partition))).try_collect().await?;
    let fresh = objects.iter().filter(|o| o.location.as_ref().ends_with(".parquet") && o.last_modified >= since);
    for object in fresh {
        let bytes: Bytes = store.get(&object.location).await?.bytes().await?;
        let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)?.build()?;
        for batch in reader {
            let batch = batch?;
            let Some(column) = batch.column_by_name("event_id") else { continue };
            let Some(ids) = column.as_any().downcast_ref::<arrow_array::StringArray>() else { continue };
            if ids.iter().any(|v| v == Some(event_id)) {
                return Ok(true);
            }
        }
    }
    Ok(false)
}
