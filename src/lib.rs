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

pub mod batcher;
pub mod cli;
pub mod config;
pub mod event;
pub mod http;
pub mod metrics;
pub mod samples;
pub mod schema;
pub mod secret;
pub mod send_test;
pub mod shutdown;
pub mod sink;
pub mod spool;
pub mod startup;
pub mod telemetry;

use cli::{Cli, Command};

/// Runs one CLI command to completion.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => {
            let settings = config::ServeSettings::from_args(args)?;
            let app = startup::Application::build(settings).await?;
            app.run_until_stopped(shutdown::on_signal()).await?;
            Ok(())
        }
        Command::SendTestEvent(args) => send_test::run(args).await,
        Command::Schema(cli::SchemaCommand::Ddl { engine, location }) => {
            let catalog = schema::Catalog::load()?;
            print!("{}", schema::ddl::ddl(&catalog, engine, &location));
            Ok(())
        }
    }
}
