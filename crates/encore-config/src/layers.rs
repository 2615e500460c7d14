//! Merging the layers and remembering where each value came from.

use crate::{Config, ConfigError, DEFAULT_FILE, ENV_PREFIX};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use toml::{Table, Value};

/// Where an effective value came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "layer", rename_all = "snake_case")]
pub enum Source {
    Default,
    File { path: PathBuf, line: usize },
    Env { var: String },
    Flag { name: String },
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => f.write_str("default"),
            Source::File { path, line } => write!(f, "file {}:{line}", path.display()),
            Source::Env { var } => write!(f, "env {var}"),
            Source::Flag { name } => write!(f, "flag {name}"),
        }
    }
}

/// A command-line flag that overrides a config key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flag {
    /// dotted key, e.g. `data.dir`
    pub key: &'static str,
    /// as typed by the user, e.g. `--data-dir`
    pub name: &'static str,
    pub raw: String,
}

/// The raw inputs of every layer above the defaults.
#[derive(Debug, Clone, Default)]
pub struct Layers {
    /// path (for messages) and text of the config file, if any
    pub file: Option<(PathBuf, String)>,
    /// every environment variable; only those starting with `ENCORE__` are read
    pub env: Vec<(String, String)>,
    pub flags: Vec<Flag>,
}

/// The effective configuration and the source of each leaf value.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Config,
    /// the config file that was read, if any
    pub file: Option<PathBuf>,
    values: BTreeMap<String, (Value, Source)>,
}

impl Loaded {
    pub fn source(&self, key: &str) -> Option<&Source> {
        self.values.get(key).map(|(_, s)| s)
    }

    /// Every leaf key (dotted, sorted) with its effective value and source.
    pub fn entries(&self) -> impl Iterator<Item = (&str, &Value, &Source)> {
        self.values.iter().map(|(k, (v, s))| (k.as_str(), v, s))
    }
}

impl Layers {
    /// Reads the config file: `explicit` must exist when given; otherwise `./encore.toml` is used
    /// when present. `env` is usually `std::env::vars()`.
    pub fn discover(
        explicit: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
        flags: Vec<Flag>,
    ) -> Result<Layers, ConfigError> {
        let path = match explicit {
            Some(p) => Some(p.to_path_buf()),
            None => Some(PathBuf::from(DEFAULT_FILE)).filter(|p| p.is_file()),
        };
        let file = match path {
            Some(path) => {
                let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
                    path: path.clone(),
                    source,
                })?;
                Some((path, text))
            }
            None => None,
        };
        let env = env
            .into_iter()
            .filter(|(k, _)| k.starts_with(ENV_PREFIX))
            .collect();
        Ok(Layers { file, env, flags })
    }

    pub fn load(&self) -> Result<Loaded, ConfigError> {
        let defaults = to_table(&Config::default());
        let mut values = BTreeMap::new();
        flatten(&defaults, "", &mut |key, value| {
            values.insert(key, (value.clone(), Source::Default));
        });

        if let Some((path, text)) = &self.file {
            apply_file(path, text, &mut values)?;
        }
        for (var, raw) in &self.env {
            let key = var[ENV_PREFIX.len()..]
                .to_ascii_lowercase()
                .replace("__", ".");
            let source = Source::Env { var: var.clone() };
            apply_override(&key, raw, source, &mut values)?;
        }
        for flag in &self.flags {
            let source = Source::Flag {
                name: flag.name.to_owned(),
            };
            apply_override(flag.key, &flag.raw, source, &mut values)?;
        }

        let config = build(&values).map_err(|message| ConfigError::Internal { message })?;
        if let Some(v) = config.validate().into_iter().next() {
            let source = values
                .get(v.key)
                .map(|(_, s)| s.clone())
                .unwrap_or(Source::Default);
            return Err(ConfigError::Invalid {
                key: v.key.to_owned(),
                origin: source,
                message: v.message,
            });
        }
        let file = self.file.as_ref().map(|(p, _)| p.clone());
        Ok(Loaded {
            config,
            file,
            values,
        })
    }
}

fn to_table(config: &Config) -> Table {
    match Value::try_from(config) {
        Ok(Value::Table(t)) => t,
        // Config is a struct of structs of scalars: it always serializes to a table
        other => unreachable!("config serialized to {other:?}"),
    }
}

/// Calls `f` with every leaf (non-table value) and its dotted key.
fn flatten(table: &Table, prefix: &str, f: &mut impl FnMut(String, &Value)) {
    for (k, v) in table {
        let key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            Value::Table(t) => flatten(t, &key, f),
            leaf => f(key, leaf),
        }
    }
}

/// Rebuilds the nested table from dotted leaves and deserializes it.
fn build(values: &BTreeMap<String, (Value, Source)>) -> Result<Config, String> {
    let mut root = Table::new();
    for (key, (value, _)) in values {
        let mut parts: Vec<&str> = key.split('.').collect();
        let leaf = parts.pop().unwrap_or_default();
        let mut table = &mut root;
        for part in parts {
            let entry = table
                .entry(part.to_owned())
                .or_insert_with(|| Value::Table(Table::new()));
            table = match entry {
                Value::Table(t) => t,
                _ => return Err(format!("key `{key}` is both a value and a table")),
            };
        }
        table.insert(leaf.to_owned(), value.clone());
    }
    Value::Table(root)
        .try_into::<Config>()
        .map_err(|e| e.message().trim().to_owned())
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before
        .rfind('\n')
        .map_or(before.len(), |nl| before.len() - nl - 1)
        + 1;
    (line, col)
}

fn apply_file(
    path: &Path,
    text: &str,
    values: &mut BTreeMap<String, (Value, Source)>,
) -> Result<(), ConfigError> {
    let spans = key_spans(text);
    // Deserializing straight into Config checks unknown keys and types with exact spans.
    if let Err(e) = toml::from_str::<Config>(text) {
        let offset = e.span().map_or(0, |s| s.start);
        let (line, column) = line_col(text, offset);
        // the innermost key whose span holds the error, for a message that names it
        let key = spans
            .iter()
            .filter(|(_, (start, end))| (*start..=*end).contains(&offset))
            .max_by_key(|(k, _)| k.len())
            .map(|(k, _)| k.clone());
        return Err(ConfigError::File {
            path: path.to_path_buf(),
            line,
            column,
            key,
            message: e.message().trim().to_owned(),
        });
    }
    let table: Table = toml::from_str(text).map_err(|e| ConfigError::Internal {
        message: format!(
            "{} parsed as config but not as a table: {e}",
            path.display()
        ),
    })?;
    flatten(&table, "", &mut |key, value| {
        let offset = spans.get(&key).map_or(0, |s| s.0);
        let (line, _) = line_col(text, offset);
        let source = Source::File {
            path: path.to_path_buf(),
            line,
        };
        values.insert(key, (value.clone(), source));
    });
    Ok(())
}

/// Dotted key -> byte span from the key to the end of its value, for every key in the file.
fn key_spans(text: &str) -> BTreeMap<String, (usize, usize)> {
    fn walk(
        table: &toml::de::DeTable<'_>,
        prefix: &str,
        out: &mut BTreeMap<String, (usize, usize)>,
    ) {
        for (k, v) in table {
            let key = if prefix.is_empty() {
                k.get_ref().to_string()
            } else {
                format!("{prefix}.{}", k.get_ref())
            };
            out.insert(
                key.clone(),
                (k.span().start, v.span().end.max(k.span().end)),
            );
            if let Some(inner) = v.get_ref().as_table() {
                walk(inner, &key, out);
            }
        }
    }
    let mut out = BTreeMap::new();
    if let Ok(table) = toml::de::DeTable::parse(text) {
        walk(table.get_ref(), "", &mut out);
    }
    out
}

/// Applies one env or flag override, typed after the default value at that key, and checks it.
fn apply_override(
    key: &str,
    raw: &str,
    source: Source,
    values: &mut BTreeMap<String, (Value, Source)>,
) -> Result<(), ConfigError> {
    let Some((default, _)) = values.get(key) else {
        return Err(ConfigError::UnknownKey {
            key: key.to_owned(),
            origin: source,
            known: values.keys().cloned().collect(),
        });
    };
    let bad = |message: String| ConfigError::Invalid {
        key: key.to_owned(),
        origin: source.clone(),
        message: format!("{raw:?} is not valid: {message}"),
    };
    let value = match default {
        Value::String(_) => Value::String(raw.to_owned()),
        Value::Integer(_) => Value::Integer(
            raw.trim()
                .parse()
                .map_err(|_| bad("expected an integer".to_owned()))?,
        ),
        Value::Float(_) => Value::Float(
            raw.trim()
                .parse()
                .map_err(|_| bad("expected a number".to_owned()))?,
        ),
        Value::Boolean(_) => match raw.trim() {
            "true" => Value::Boolean(true),
            "false" => Value::Boolean(false),
            _ => return Err(bad("expected true or false".to_owned())),
        },
        Value::Array(_) | Value::Datetime(_) | Value::Table(_) => {
            let doc: Table = toml::from_str(&format!("v = {raw}"))
                .map_err(|_| bad("expected a TOML value".to_owned()))?;
            doc.get("v")
                .cloned()
                .ok_or_else(|| bad("expected a TOML value".to_owned()))?
        }
    };
    let previous = values.insert(key.to_owned(), (value, source.clone()));
    // type-check now, so the error names this override and not a later one
    if let Err(message) = build(values) {
        if let Some(previous) = previous {
            values.insert(key.to_owned(), previous);
        }
        return Err(bad(message));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use encore_core::Coded;

    fn file(text: &str) -> Layers {
        Layers {
            file: Some(("encore.toml".into(), text.into())),
            ..Layers::default()
        }
    }

    fn env(var: &str, value: &str) -> Layers {
        Layers {
            env: vec![(var.into(), value.into())],
            ..Layers::default()
        }
    }

    #[test]
    fn defaults_only() {
        let loaded = Layers::default().load().unwrap();
        assert_eq!(loaded.config, Config::default());
        assert!(loaded.entries().all(|(_, _, s)| *s == Source::Default));
        assert_eq!(loaded.entries().count(), 72);
    }

    #[test]
    fn layers_override_in_order_and_remember_sources() {
        let mut layers = file("[log]\nlevel = \"warn\"\nformat = \"json\"\n\n[demo]\nusers = 50\n");
        layers.env = vec![("ENCORE__DEMO__USERS".into(), "70".into())];
        layers.flags = vec![Flag {
            key: "log.level",
            name: "--log-level",
            raw: "debug".into(),
        }];
        let loaded = layers.load().unwrap();
        assert_eq!(loaded.config.demo.users, 70);
        assert_eq!(loaded.config.log.level, crate::LogLevel::Debug);
        assert_eq!(loaded.config.log.format, crate::LogFormat::Json);
        assert_eq!(
            loaded.source("log.format"),
            Some(&Source::File {
                path: "encore.toml".into(),
                line: 3
            })
        );
        assert_eq!(
            loaded.source("demo.users").unwrap().to_string(),
            "env ENCORE__DEMO__USERS"
        );
        assert_eq!(
            loaded.source("log.level").unwrap().to_string(),
            "flag --log-level"
        );
        assert_eq!(loaded.source("data.dir"), Some(&Source::Default));
    }

    #[test]
    fn unknown_key_in_file_names_key_file_and_line() {
        let fixture = include_str!("../tests/fixtures/wrongkey.toml");
        let err = file(fixture).load().unwrap_err();
        let msg = err.to_string();
        assert_eq!(
            msg,
            "invalid config encore.toml:6:1: key `server.bnid`: unknown field `bnid`, \
             expected one of `bind`, `otlp_grpc`, `auth`, `open_routes`, `webhook_allow`, `webhook_secret`, `ca_file`, `tls_cert`, `tls_key`, `role`, `node`",
            "{msg}"
        );
        assert_eq!(
            err.hint().unwrap(),
            "run `encore config init` to see every key, its type and default"
        );
    }

    #[test]
    fn wrong_type_in_file_names_key_and_expected_type() {
        let err = file("[demo]\nusers = \"many\"\n").load().unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with("invalid config encore.toml:2:9: key `demo.users`: "),
            "{msg}"
        );
        assert!(
            msg.contains("invalid type: string \"many\", expected u32"),
            "{msg}"
        );
    }

    #[test]
    fn bad_enum_lists_allowed_values() {
        let err = file("[log]\nformat = \"xml\"\n").load().unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("key `log.format`"), "{msg}");
        assert!(
            msg.contains("unknown variant `xml`, expected `text` or `json`"),
            "{msg}"
        );
    }

    #[test]
    fn syntax_error_has_line() {
        let err = file("[server\nbind = 1\n").load().unwrap_err();
        assert!(
            err.to_string().starts_with("invalid config encore.toml:1:"),
            "{err}"
        );
    }

    #[test]
    fn bad_env_override_names_variable_and_expectation() {
        let err = env("ENCORE__SERVER__BIND", "localhost").load().unwrap_err();
        assert_eq!(
            err.to_string(),
            "bad value for `server.bind` from env ENCORE__SERVER__BIND: \"localhost\" is not \
             valid: invalid socket address syntax"
        );
        let err = env("ENCORE__DEMO__DAYS", "ten").load().unwrap_err();
        assert_eq!(
            err.to_string(),
            "bad value for `demo.days` from env ENCORE__DEMO__DAYS: \"ten\" is not valid: \
             expected an integer"
        );
        let err = env("ENCORE__LOG__LEVEL", "loud").load().unwrap_err();
        assert!(err.to_string().contains("unknown variant `loud`"), "{err}");
    }

    #[test]
    fn unknown_env_key_is_an_error_listing_known_keys() {
        let err = env("ENCORE__SERVER__PORT", "80").load().unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown config key `server.port` (from env ENCORE__SERVER__PORT)"
        );
        assert!(err.hint().unwrap().contains("server.bind"));
    }

    #[test]
    fn semantic_violation_names_key_and_source() {
        let err = file("[demo]\ndays = 0\n").load().unwrap_err();
        assert_eq!(
            err.to_string(),
            "bad value for `demo.days` from file encore.toml:2: 0 is out of range, expected 1..=3650"
        );
    }

    #[test]
    fn discover_requires_an_explicit_file_to_exist() {
        let err = Layers::discover(Some(Path::new("/nonexistent/encore.toml")), vec![], vec![])
            .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("cannot read config file /nonexistent/encore.toml")
        );
    }

    #[test]
    fn discover_ignores_unrelated_env() {
        let vars = vec![
            ("HOME".into(), "/root".into()),
            ("ENCORE_CONFIG".into(), "x".into()),
        ];
        let layers = Layers::discover(None, vars, vec![]).unwrap();
        assert!(layers.env.is_empty());
    }
}
