//! `register`, `list` and `unregister`: the OnceHub subscription from the command line. Each
//! prints what it did in a line or a table and fails with one clear line (never the API key).

use anyhow::{Context, bail};

use crate::cli::{ApiArgs, ListArgs, RegisterArgs, UnregisterArgs};
use crate::config::ApiSettings;
use crate::oncehub::subscription::{Action, webhook_url};
use crate::oncehub::{Desired, OnceHubClient, SubscriptionState, ensure};

/// The client for `args`, or the error saying a key is needed.
pub fn client(args: &ApiArgs) -> anyhow::Result<OnceHubClient> {
    let settings = ApiSettings::from_args(args)?
        .context("no OnceHub API key: pass --api-key or set ONCEHUB_API_KEY (OnceHub: Settings > API & webhooks)")?;
    Ok(OnceHubClient::new(&settings.base, settings.key)?)
}

pub async fn register(args: RegisterArgs) -> anyhow::Result<()> {
    let client = client(&args.api)?;
    let desired = Desired::new(&args.url, &args.subscription.events, args.subscription.subscription_name.as_deref())?;
    std::fs::create_dir_all(&args.data.data_dir)
        .with_context(|| format!("cannot create {}", args.data.data_dir.display()))?;
    // Registering again with the same settings is not an error, and nothing changes.
    let ensured = ensure(&client, &desired, &args.data.data_dir, std::time::Duration::from_secs(3600)).await?;
    let state = &ensured.state;
    let path = SubscriptionState::path(&args.data.data_dir);
    match &ensured.action {
        Action::Reused => println!("already registered: {} -> {} ({} events)", state.id, state.url, state.events.len()),
        Action::Created { deleted } => {
            println!(
                "registered {} -> {} ({} events: {})",
                state.id,
                state.url,
                state.events.len(),
                state.events.join(",")
            );
            for id in deleted {
                println!("deleted {id} (replaced)");
            }
        }
    }
    println!(
        "secret kept in {} (mode 0600); `serve --data-dir {}` verifies with it",
        path.display(),
        args.data.data_dir.display()
    );
    if args.show_secret
        && let Some(secret) = state.secret()
    {
        println!("secret: {}", secret.expose());
    }
    Ok(())
}

pub async fn list(args: ListArgs) -> anyhow::Result<()> {
    let client = client(&args.api)?;
    let hooks = client.list_webhooks().await?;
    if hooks.is_empty() {
        println!("no webhook subscriptions");
        return Ok(());
    }
    let rows: Vec<[String; 5]> = hooks
        .iter()
        .map(|w| {
            [
                w.id.clone(),
                w.name.clone(),
                w.url.clone(),
                w.events.join(","),
                w.creation_time.clone().unwrap_or_default(),
            ]
        })
        .collect();
    let header = ["ID", "NAME", "URL", "EVENTS", "CREATED"].map(str::to_owned);
    let widths: Vec<usize> =
        (0..5).map(|i| rows.iter().chain([&header]).map(|r| r[i].chars().count()).max().unwrap_or(0)).collect();
    for row in [&header].into_iter().chain(rows.iter()) {
        let cells: Vec<String> = row.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        println!("{}", cells.join("  ").trim_end());
    }
    Ok(())
}

pub async fn unregister(args: UnregisterArgs) -> anyhow::Result<()> {
    let client = client(&args.api)?;
    let targets: Vec<String> = match (&args.id, &args.url, &args.name) {
        (Some(id), _, _) => vec![id.clone()],
        (_, Some(url), _) => {
            // The base URL as `register` and `serve` take it, or the exact URL of the subscription.
            let full = webhook_url(url).ok();
            let all = client.list_webhooks().await?;
            all.into_iter().filter(|w| w.url == url.trim() || Some(&w.url) == full.as_ref()).map(|w| w.id).collect()
        }
        (_, _, Some(name)) => {
            let all = client.list_webhooks().await?;
            all.into_iter().filter(|w| &w.name == name).map(|w| w.id).collect()
        }
        _ => bail!("give a subscription id, --url or --name"),
    };
    if targets.is_empty() {
        bail!("no subscription matches; `oncehub-bridge list` shows what exists");
    }
    let path = SubscriptionState::path(&args.data.data_dir);
    let kept = SubscriptionState::load(&path).ok().flatten();
    for id in &targets {
        client.delete_webhook(id).await?;
        println!("deleted {id}");
        if kept.as_ref().is_some_and(|s| &s.id == id) {
            SubscriptionState::remove(&path)?;
            println!("forgot its secret in {}", path.display());
        }
    }
    Ok(())
}
