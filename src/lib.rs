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
pub mod check;
pub mod cli;
pub mod config;
pub mod event;
pub mod http;
pub mod manage;
pub mod metrics;
pub mod oncehub;
pub mod samples;
pub mod schema;
pub mod secret;
pub mod send_test;
pub mod shutdown;
pub mod sink;
pub mod spool;
pub mod spool_command;
pub mod startup;
pub mod telemetry;
pub mod tls;

use clap::CommandFactory;

use cli::{Cli, Command, ConfigCommand};
use config::file::Layered;

/// Runs one parsed CLI command to completion.
pub async fn run(layered: Layered) -> anyhow::Result<()> {
    match layered.cli.command {
        Command::Serve(args) => {
            let settings = config::ServeSettings::from_args(args)?;
            let app = startup::Application::build(settings).await?;
            app.run_until_stopped(shutdown::on_signal()).await?;
            Ok(())
        }
        Command::SendTestEvent(args) => send_test::run(args).await,
        Command::Register(args) => manage::register(args).await,
        Command::List(args) => manage::list(args).await,
        Command::Unregister(args) => manage::unregister(args).await,
        Command::Check(args) => check::run(args).await,
        Command::Config(ConfigCommand::Check(args)) => config_check(&layered.provenance, args),
        Command::Spool(cli::SpoolCommand::Verify(args)) => spool_command::verify(&args),
        Command::Spool(cli::SpoolCommand::Repair(args)) => spool_command::repair(&args),
        Command::Schema(cli::SchemaCommand::Ddl { engine, location }) => {
            let catalog = schema::Catalog::load()?;
            print!("{}", schema::ddl::ddl(&catalog, engine, &location));
            Ok(())
        }
    }
}

/// `config check`: prints the effective settings (secrets redacted), then validates them.
fn config_check(provenance: &config::file::Provenance, args: cli::ServeArgs) -> anyhow::Result<()> {
    let mut command = Cli::command();
    command.build();
    if let Some(check) = command.find_subcommand("config").and_then(|c| c.find_subcommand("check")) {
        print!("{}", config::show::render(provenance, check));
    }
    let settings = config::ServeSettings::from_args(args)?;
    eprintln!("the configuration is valid (storage: {}, data dir: {})", settings.storage, settings.data_dir.display());
    Ok(())
}
