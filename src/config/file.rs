//! `--config FILE`: a TOML file under the environment and the flags.
//!
//! Precedence, highest first: command-line flags, environment variables, the config file, the
//! built-in defaults. Keys are the long flag names, with `_` or `-` (`flush_interval = "30s"`,
//! `webhook_secret = ["a", "b"]`); values are strings, numbers, booleans or lists of those. A key
//! that is not a setting of the command is refused with its name, and so is a value of the wrong
//! shape, before anything starts. Values go through exactly the parsers the flags use (the file is
//! turned into flags), so a setting means the same wherever it is given.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches};

use crate::cli::Cli;

/// The arg id of `--config` itself.
pub const CONFIG_ARG: &str = "config";

/// Whether `arg` is a setting a config file may hold (and `config check` shows): a long flag,
/// not `--config`, `--help` or `--version`.
pub fn is_setting(arg: &clap::Arg) -> bool {
    let id = arg.get_id().as_str();
    arg.get_long().is_some() && !arg.is_hide_set() && ![CONFIG_ARG, "help", "version"].contains(&id)
}

/// The command line could not be read into settings.
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    /// Clap's own error (also `--help` and `--version`): print it with `exit()`.
    #[error(transparent)]
    Cli(#[from] clap::Error),
    #[error("cannot read the config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("the config file {path} is not valid TOML: {message}")]
    Toml { path: PathBuf, message: String },
    #[error("the config file {path} has an unknown key `{key}`{hint}; known keys: {known}")]
    UnknownKey { path: PathBuf, key: String, hint: String, known: String },
    #[error("the config file {path}: key `{key}` must be a string, number, boolean or a list of those")]
    Shape { path: PathBuf, key: String },
    #[error("the config file {path}: key `{key}`: {message}")]
    Invalid { path: PathBuf, key: String, message: String },
}

/// The parsed command line with where each setting came from.
#[derive(Debug)]
pub struct Layered {
    pub cli: Cli,
    pub provenance: Provenance,
    /// Things worth a warning once logging is up (a world-readable file holding secrets).
    pub warnings: Vec<String>,
}

/// Where the settings of the command that ran came from.
#[derive(Debug)]
pub struct Provenance {
    /// The final matches of the command that ran (the leaf subcommand).
    pub matches: ArgMatches,
    /// The config file, when one was given.
    pub file: Option<PathBuf>,
    /// Arg ids whose value came from the file.
    pub from_file: BTreeSet<String>,
}

impl Provenance {
    /// Where the value of arg `id` came from, for `config check`.
    pub fn source(&self, id: &str) -> &'static str {
        if self.from_file.contains(id) {
            return "config file";
        }
        match self.matches.value_source(id) {
            Some(ValueSource::CommandLine) => "flag",
            Some(ValueSource::EnvVariable) => "environment",
            Some(ValueSource::DefaultValue) => "default",
            _ => "unset",
        }
    }
}

/// Parses `argv`, layering the `--config` file (if the command has one) under env and flags.
pub fn parse(argv: Vec<OsString>) -> Result<Layered, LayerError> {
    let matches = Cli::command().try_get_matches_from(&argv)?;
    let (path, leaf) = leaf(&matches);
    let config = leaf.try_get_one::<PathBuf>(CONFIG_ARG).ok().flatten().cloned();
    let Some(file) = config else {
        let cli = Cli::from_arg_matches(&matches)?;
        let provenance = Provenance { matches: leaf.clone(), file: None, from_file: BTreeSet::new() };
        return Ok(Layered { cli, provenance, warnings: Vec::new() });
    };
    let table = read(&file)?;
    let mut command = Cli::command();
    command.build();
    let leaf_command = path.iter().try_fold(&command, |c, name| c.find_subcommand(name)).ok_or_else(|| {
        LayerError::Invalid { path: file.clone(), key: CONFIG_ARG.into(), message: "no settings to layer".into() }
    })?;
    let mut extra: Vec<OsString> = Vec::new();
    let mut from_file = BTreeSet::new();
    let mut secrets_in_file = false;
    for (key, value) in &table {
        let id = key.replace('-', "_");
        let arg = leaf_command
            .get_arguments()
            .find(|a| a.get_id().as_str() == id && is_setting(a))
            .ok_or_else(|| unknown_key(&file, key, leaf_command))?;
        if matches!(leaf.value_source(&id), Some(ValueSource::CommandLine | ValueSource::EnvVariable)) {
            continue; // a flag or an environment variable wins over the file
        }
        let long = arg.get_long().unwrap_or_default();
        let flags = to_flags(long, value, arg.get_action().takes_values())
            .ok_or_else(|| LayerError::Shape { path: file.clone(), key: key.clone() })?;
        check_one(&argv, &flags).map_err(|message| LayerError::Invalid {
            path: file.clone(),
            key: key.clone(),
            message,
        })?;
        secrets_in_file |= arg.is_hide_env_values_set();
        extra.extend(flags);
        from_file.insert(id);
    }
    let mut layered_argv = argv;
    layered_argv.extend(extra);
    let matches = Cli::command().try_get_matches_from(&layered_argv)?;
    let cli = Cli::from_arg_matches(&matches)?;
    let leaf = self::leaf(&matches).1.clone();
    let warnings = if secrets_in_file { readable_by_others(&file) } else { Vec::new() };
    Ok(Layered { cli, provenance: Provenance { matches: leaf, file: Some(file), from_file }, warnings })
}

/// The innermost subcommand's name path and matches.
fn leaf(matches: &ArgMatches) -> (Vec<String>, &ArgMatches) {
    let mut path = Vec::new();
    let mut current = matches;
    while let Some((name, sub)) = current.subcommand() {
        path.push(name.to_owned());
        current = sub;
    }
    (path, current)
}

fn read(file: &Path) -> Result<toml::Table, LayerError> {
    let text = std::fs::read_to_string(file).map_err(|source| LayerError::Read { path: file.to_owned(), source })?;
    text.parse::<toml::Table>().map_err(|e| LayerError::Toml { path: file.to_owned(), message: e.message().to_owned() })
}

fn unknown_key(file: &Path, key: &str, command: &clap::Command) -> LayerError {
    let known: Vec<&str> = command.get_arguments().filter(|a| is_setting(a)).map(|a| a.get_id().as_str()).collect();
    let closest =
        known.iter().map(|k| (strsim::jaro_winkler(k, &key.replace('-', "_")), *k)).max_by(|a, b| a.0.total_cmp(&b.0));
    let hint = match closest {
        Some((score, k)) if score > 0.85 => format!(" (did you mean `{k}`?)"),
        _ => String::new(),
    };
    LayerError::UnknownKey { path: file.to_owned(), key: key.to_owned(), hint, known: known.join(", ") }
}

/// `--long=value` for each value; a boolean switch is `--long` when true.
fn to_flags(long: &str, value: &toml::Value, takes_values: bool) -> Option<Vec<OsString>> {
    let scalar = |v: &toml::Value| match v {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(i) => Some(i.to_string()),
        toml::Value::Float(f) => Some(f.to_string()),
        toml::Value::Boolean(b) => Some(b.to_string()),
        _ => None,
    };
    match (value, takes_values) {
        (toml::Value::Boolean(true), false) => Some(vec![format!("--{long}").into()]),
        (toml::Value::Boolean(false), false) => Some(Vec::new()),
        (_, false) => None,
        (toml::Value::Array(items), true) => {
            items.iter().map(|v| scalar(v).map(|s| format!("--{long}={s}").into())).collect()
        }
        (v, true) => scalar(v).map(|s| vec![format!("--{long}={s}").into()]),
    }
}

/// Parses the command line plus one key's flags, to name that key if its value is refused.
fn check_one(argv: &[OsString], flags: &[OsString]) -> Result<(), String> {
    let mut trial = argv.to_vec();
    trial.extend(flags.iter().cloned());
    Cli::command().try_get_matches_from(trial).map(drop).map_err(|e| {
        let text = e.to_string();
        text.lines().next().unwrap_or_default().trim_start_matches("error: ").to_owned()
    })
}

#[cfg(unix)]
fn readable_by_others(file: &Path) -> Vec<String> {
    use std::os::unix::fs::PermissionsExt;
    match std::fs::metadata(file) {
        Ok(m) if m.permissions().mode() & 0o077 != 0 => vec![format!(
            "the config file {} holds secrets and is readable by other users: chmod 600 it",
            file.display()
        )],
        _ => Vec::new(),
    }
}

#[cfg(not(unix))]
fn readable_by_others(_: &Path) -> Vec<String> {
    Vec::new()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(value: toml::Value, takes_values: bool) -> Option<Vec<String>> {
        to_flags("x", &value, takes_values).map(|v| v.into_iter().map(|s| s.into_string().unwrap()).collect())
    }

    #[test]
    fn values_become_the_flags_a_user_would_type() {
        assert_eq!(flags("30s".into(), true), Some(vec!["--x=30s".into()]));
        assert_eq!(flags(5000.into(), true), Some(vec!["--x=5000".into()]));
        assert_eq!(
            flags(toml::Value::Array(vec!["a".into(), "b".into()]), true),
            Some(vec!["--x=a".into(), "--x=b".into()])
        );
        assert_eq!(flags(true.into(), false), Some(vec!["--x".into()]));
        assert_eq!(flags(false.into(), false), Some(vec![]));
        assert_eq!(flags("yes".into(), false), None, "a switch takes a boolean");
        assert_eq!(flags(toml::Value::Table(toml::Table::new()), true), None);
        assert_eq!(flags(toml::Value::Array(vec![toml::Value::Table(toml::Table::new())]), true), None);
    }

    #[test]
    fn without_a_config_file_nothing_is_layered() {
        let layered =
            parse(["oncehub-bridge", "serve", "--listen", "127.0.0.1:1"].map(OsString::from).to_vec()).unwrap();
        assert_eq!(layered.provenance.source("listen"), "flag");
        assert_eq!(layered.provenance.source("data_dir"), "default");
        assert!(layered.provenance.file.is_none() && layered.warnings.is_empty());
    }
}
