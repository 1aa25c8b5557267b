//! `config check`: prints the effective settings of `serve` (secrets redacted), then validates them.

use clap::CommandFactory;

use crate::cli::{Cli, ServeArgs};
use crate::config::{self, file::Provenance};

pub fn run(provenance: &Provenance, args: ServeArgs) -> anyhow::Result<()> {
    let mut command = Cli::command();
    command.build();
    if let Some(check) = command.find_subcommand("config").and_then(|c| c.find_subcommand("check")) {
        print!("{}", config::show::render(provenance, check));
    }
    let settings = config::ServeSettings::from_args(args)?;
    eprintln!("the configuration is valid (storage: {}, data dir: {})", settings.storage, settings.data_dir.display());
    Ok(())
}
