//! `encore config init|show`

use crate::cli::ConfigCommand;
use crate::error::CliError;
use crate::output::Output;
use encore_config::{ConfigError, Loaded, Source, default_file_text};
use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Serialize)]
struct Entry<'a> {
    value: &'a toml::Value,
    source: &'a Source,
}

pub fn run(loaded: &Loaded, cmd: ConfigCommand, out: &Output) -> Result<(), CliError> {
    match cmd {
        ConfigCommand::Init { path, force } => {
            if path.exists() && !force {
                return Err(CliError::config(ConfigError::Exists { path }));
            }
            std::fs::write(&path, default_file_text()).map_err(|source| {
                CliError::config(ConfigError::Write {
                    path: path.clone(),
                    source,
                })
            })?;
            out.emit(&serde_json::json!({ "written": path }), || {
                format!(
                    "wrote {} (every key at its default, with comments)",
                    path.display()
                )
            });
        }
        ConfigCommand::Show => {
            let values: BTreeMap<&str, Entry<'_>> = loaded
                .entries()
                .map(|(k, value, source)| (k, Entry { value, source }))
                .collect();
            let report = serde_json::json!({ "config_file": loaded.file, "values": values });
            out.emit(&report, || {
                let mut text = match &loaded.file {
                    Some(f) => format!("# config file: {}\n", f.display()),
                    None => "# config file: none (defaults, env and flags only)\n".to_owned(),
                };
                let width = values.keys().map(|k| k.len()).max().unwrap_or(0);
                for (key, e) in &values {
                    let value = e.value.to_string();
                    text.push_str(&format!("{key:<width$} = {value:<24} # {}\n", e.source));
                }
                text
            });
        }
    }
    Ok(())
}
