//! `config check`: the effective settings of `serve`, one `key = value  # source` line each, in
//! TOML (so the output can seed a config file), with every secret replaced by a comment saying
//! where it came from and how many values it has. Credentials the store reads from the
//! environment (`AWS_*`, `GOOGLE_*`, `AZURE_*`) are listed by name only.

use std::fmt::Write;

use super::file::{Provenance, is_setting};

/// Environment variables holding store credentials: shown as set or not, never their values.
const CREDENTIAL_VARS: &[&str] = &[
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "GOOGLE_SERVICE_ACCOUNT",
    "GOOGLE_SERVICE_ACCOUNT_KEY",
    "AZURE_STORAGE_ACCOUNT_KEY",
    "AZURE_STORAGE_SAS_KEY",
];

/// Renders the effective configuration of `command`, the leaf subcommand `layered` describes.
pub fn render(layered: &Provenance, command: &clap::Command) -> String {
    let mut out = String::from("# effective configuration: flags > environment > config file > defaults\n");
    if let Some(file) = &layered.file {
        let _ = writeln!(out, "# config file: {}", file.display());
    }
    for arg in command.get_arguments() {
        if !is_setting(arg) || arg.is_global_set() {
            continue;
        }
        let id = arg.get_id().as_str();
        let source = layered.source(id);
        let values: Vec<String> = layered
            .matches
            .get_raw(id)
            .map(|raw| raw.map(|v| v.to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        let secret = arg.is_hide_env_values_set();
        let line = match (values.as_slice(), secret) {
            ([], _) => format!("# {id} is not set"),
            (v, true) if v.iter().all(|s| s.trim().is_empty()) => format!("# {id} is empty  # {source}"),
            (v, true) => {
                format!("# {id} = <redacted: {} value{}>  # {source}", v.len(), if v.len() == 1 { "" } else { "s" })
            }
            ([one], false) if !is_list(arg) => {
                format!("{id} = {}  # {source}", toml::Value::String(one.clone()))
            }
            (many, false) => {
                let items: Vec<String> = many.iter().map(|s| toml::Value::String(s.clone()).to_string()).collect();
                format!("{id} = [{}]  # {source}", items.join(", "))
            }
        };
        out.push_str(&line);
        out.push('\n');
    }
    for var in CREDENTIAL_VARS {
        if std::env::var_os(var).is_some() {
            let _ = writeln!(out, "# {var} is set (value not shown)");
        }
    }
    out
}

fn is_list(arg: &clap::Arg) -> bool {
    matches!(arg.get_action(), clap::ArgAction::Append) || arg.get_value_delimiter().is_some()
}
