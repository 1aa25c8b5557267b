//! `send-test-event`: signs sample deliveries and posts them to a receiver, so the pipeline can be
//! tried without a OnceHub account. Prints one line per delivery with the HTTP status.

use anyhow::{Context, bail};
use chrono::Utc;

use super::samples;
use crate::cli::SendTestArgs;
use crate::oncehub::signature::sign;
use crate::secret::WebhookSecret;

pub async fn run(args: SendTestArgs) -> anyhow::Result<()> {
    let configured = args.webhook_secret.first().and_then(|s| WebhookSecret::parse(s));
    let secret = super::signing_secret(configured.as_ref(), &args.data.data_dir)?.with_context(|| {
        format!(
            "no --webhook-secret given and no secret in {}: start `oncehub-bridge serve` once, or pass --webhook-secret",
            args.data.data_dir.display()
        )
    })?;
    let now = Utc::now();
    let tag = uuid::Uuid::now_v7().simple().to_string();
    let events = match (&args.event_type, args.all) {
        (Some(t), _) => vec![samples::event(t, &format!("EVNT-{tag}"), 0, now)],
        (None, true) => samples::all_events(&tag, now).into_iter().chain(super::story::story(&tag, now)).collect(),
        (None, false) => vec![samples::event("booking.scheduled", &format!("EVNT-{tag}"), 0, now)],
    };
    let client = reqwest::Client::new();
    let (mut failed, mut duplicates) = (0, 0);
    for event in &events {
        let body = serde_json::to_vec(event)?;
        let header = sign(&secret, Utc::now().timestamp(), &body);
        let response = client
            .post(&args.url)
            .header("Content-Type", "application/json")
            .header("Oncehub-Signature", header)
            .body(body)
            .send()
            .await
            .with_context(|| format!("cannot reach {}", args.url))?;
        let status = response.status();
        let answer: serde_json::Value = response.json().await.unwrap_or_default();
        let outcome = answer["status"].as_str().unwrap_or_default();
        println!(
            "{} {} -> {} {outcome}",
            event["type"].as_str().unwrap_or("?"),
            event["id"].as_str().unwrap_or("?"),
            status
        );
        if !status.is_success() {
            failed += 1;
        }
        if outcome == "duplicate" {
            duplicates += 1;
        }
    }
    if failed > 0 {
        bail!("{failed} of {} deliveries were not accepted", events.len());
    }
    println!(
        "sent {} signed deliveries ({duplicates} a retry of one already sent, answered duplicate); they land in the lake within --flush-interval",
        events.len()
    );
    Ok(())
}
