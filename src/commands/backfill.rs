//! `backfill`: the bookings and contacts from before the bridge was installed (see
//! [`crate::backfill`]), delivered to the running receiver at `--url`, signed with its secret.
//! A progress bar on a terminal: the list being read, pages, rows, and how much of the list's
//! time range is behind it with the ETA that gives (the API gives no total; lists go newest
//! first); a line per 1,000 bookings or contacts otherwise; one summary line at the end.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context;
use chrono::{DateTime, NaiveDate, Utc};
use indicatif::{ProgressBar, ProgressStyle};

use crate::backfill::{Backfill, Cursor, Deliver, Start};
use crate::cli::BackfillArgs;
use crate::config::ApiSettings;
use crate::oncehub::OnceHubClient;
use crate::secret::WebhookSecret;

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
    let start = match (args.resume, args.since.trim()) {
        (true, _) => Start::Resume,
        (false, "last") => Start::Last { overlap: args.overlap },
        (false, date) => Start::Since(day_start(date)?),
    };
    let until = args.until.as_deref().map(day_start).transpose()?.map(|d| d + chrono::Duration::days(1));
    let backfill = Backfill::new(client, Deliver::http(&args.url, secret), &args.data.data_dir);
    let bar = progress_bar();
    let reported = AtomicU64::new(0);
    let on_page = |c: &Cursor| {
        bar.set_message(format!(
            "{}: {} pages, {} bookings, {} contacts",
            c.resource.name(),
            c.pages,
            c.rows,
            c.contacts
        ));
        bar.set_position((c.done() * 1000.0) as u64);
        let thousands = (c.rows + c.contacts) / 1000;
        if bar.is_hidden() && thousands > reported.swap(thousands, Ordering::Relaxed) {
            println!("{} bookings and {} contacts sent ({} pages)", c.rows, c.contacts, c.pages);
        }
    };
    let summary = backfill.run(start, until, &on_page).await;
    bar.finish_and_clear();
    println!("{}", summary?);
    Ok(())
}

/// The start of a `YYYY-MM-DD` day, in UTC.
pub fn day_start(date: &str) -> anyhow::Result<DateTime<Utc>> {
    let day = NaiveDate::parse_from_str(date.trim(), "%Y-%m-%d")
        .with_context(|| format!("{date}: expected YYYY-MM-DD or last"))?;
    Ok(day.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc())
}

fn progress_bar() -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let style = ProgressStyle::with_template("{msg} [{bar:30}] {percent}% of the time range, ETA {eta}")
        .map(|s| s.progress_chars("=> "))
        .unwrap_or_else(|_| ProgressStyle::default_bar());
    ProgressBar::new(1000).with_style(style)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_day_is_its_utc_midnight() {
        assert_eq!(day_start(" 2024-01-01 ").unwrap().to_rfc3339(), "2024-01-01T00:00:00+00:00");
        assert!(day_start("01/01/2024").unwrap_err().to_string().contains("YYYY-MM-DD"));
    }
}
