//! oncehub-bridge: OnceHub webhook deliveries in, typed Parquet tables out.
//!
//! Data path, one direction:
//!
//! ```text
//! OnceHub ──POST──▶ http (verify raw bytes) ──▶ spool.append ──2xx──▶ sender
//!                                                   │
//!                                                   ▼
//!              batcher (parse once, rows per table/dt, cut by rows/bytes/age)
//!                 ──▶ sink::encode (Arrow → Parquet) ──▶ sink::upload (create-only PUT)
//!                 ──▶ spool.ack(up to seq)
//! ```
//!
//! Columns come from `schemas/` only (see `schema`); `event` turns a delivery into a row.
//!
//! Rooms: `http` (the receiver and the admin routes), `spool` (the write-ahead log), `batcher`,
//! `sink` (encode, store, upload), `oncehub` (everything OnceHub defines: webhook path, signature,
//! API client, subscription), `commands` (one file per CLI command), `startup` (serve's wiring).

#![warn(unreachable_pub)]

pub mod backfill;
pub mod batcher;
pub(crate) mod cli;
pub mod commands;
pub mod compact;
pub mod config;
pub(crate) mod event;
pub(crate) mod fsutil;
pub(crate) mod http;
pub mod inspector;
pub(crate) mod instance;
pub mod lake;
pub(crate) mod metrics;
pub mod oncehub;
pub(crate) mod schema;
pub mod secret;
pub(crate) mod shutdown;
pub mod sink;
pub mod spool;
pub mod startup;
pub mod telemetry;

use cli::{Command, ConfigCommand};
use config::file::Layered;

/// Runs one parsed CLI command to completion.
pub async fn run(layered: Layered) -> anyhow::Result<()> {
    match layered.cli.command {
        Command::Serve(args) => {
            let settings = config::ServeSettings::from_args(args)?;
            // Listening before the build ends (the listeners are bound first): a SIGTERM during
            // the build, the spool's replay say, must stop the service cleanly, not kill it.
            let stop = shutdown::on_signal();
            let app = startup::Application::build(settings).await?;
            app.run_until_stopped(stop).await?;
            Ok(())
        }
        Command::SendTestEvent(args) => commands::send_test::run(args).await,
        Command::Register(args) => commands::subscriptions::register(args).await,
        Command::List(args) => commands::subscriptions::list(args).await,
        Command::Unregister(args) => commands::subscriptions::unregister(args).await,
        Command::Check(args) => commands::check::run(args).await,
        Command::Config(ConfigCommand::Check(args)) => commands::config_check::run(&layered.provenance, args),
        Command::Compact(args) => commands::compact::run(args).await,
        Command::Backfill(args) => commands::backfill::run(args).await,
        Command::Current(args) => commands::compact::current(args).await,
        Command::Vacuum(args) => commands::compact::vacuum(args).await,
        Command::Spool(cli::SpoolCommand::Verify(args)) => commands::spool::verify(&args),
        Command::Spool(cli::SpoolCommand::Repair(args)) => commands::spool::repair(&args),
        Command::Schema(cli::SchemaCommand::Ddl { engine, location, table_format }) => {
            let catalog = schema::Catalog::load()?;
            print!("{}", schema::ddl::ddl(&catalog, engine, table_format, &location));
            Ok(())
        }
    }
}
