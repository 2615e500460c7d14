//! `encore keys` and `encore audit`: API keys and the audit log of the data directory. Both
//! work beside a running server (they open `access.sqlite`, not the data directory's lock), and
//! every key change is itself audited, with the CLI's user as the actor.

use crate::cli::{AuditCommand, KeysCommand};
use crate::error::CliError;
use crate::output::Output;
use encore_access::audit::{AuditLog, Entry};
use encore_access::{Key, Keys, NewKey};
use encore_config::Loaded;

fn root(loaded: &Loaded) -> Result<std::path::PathBuf, CliError> {
    let dir = &loaded.config.data.dir;
    // a new data directory is made as any command makes one (with its FORMAT file); one in
    // use by a running server is not locked again: SQLite takes turns with it
    if !dir.join("FORMAT").exists() {
        encore_storage::DataDir::open(dir)?;
    }
    Ok(dir.clone())
}

/// Records a CLI action in the audit log, with the OS user as the actor.
pub(crate) fn audit_local(root: &std::path::Path, action: &str, target: &str, detail: &str) {
    let user = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
    let mut entry = Entry {
        seq: 0,
        ts_ms: encore_core::time::now_ms(),
        key_id: String::new(),
        key_name: format!("cli:{user}"),
        source: "local".into(),
        method: "CLI".into(),
        route: action.into(),
        target: target.into(),
        status: 200,
        detail: detail.into(),
    };
    let written = AuditLog::open(root).and_then(|a| a.append(std::slice::from_mut(&mut entry)));
    if let Err(e) = written {
        tracing::error!("audit entry for `{action}` not written: {e}");
    }
}

fn describe(k: &Key) -> String {
    let scopes: Vec<&str> = k.scopes.iter().map(|s| s.as_str()).collect();
    let mut line = format!("{}  {:<20} {}", k.id, k.name, scopes.join(","));
    if let Some(p) = &k.projects {
        line += &format!("  projects={}", p.join(","));
    }
    if let Some(e) = k.expires_ms {
        line += &format!("  expires={}", encore_core::time::format_ms(e));
    }
    if let Some(r) = k.revoked_ms {
        line += &format!("  REVOKED {}", encore_core::time::format_ms(r));
    }
    line + "\n"
}

pub fn keys(loaded: &Loaded, cmd: KeysCommand, out: &Output) -> Result<(), CliError> {
    let root = root(loaded)?;
    let keys = Keys::open(&root)?;
    match cmd {
        KeysCommand::Create {
            name,
            scopes,
            projects,
            expires,
            key_only,
        } => {
            let ttl = expires
                .map(|e| {
                    encore_features::def::duration_ms(&e)
                        .map(|ms| std::time::Duration::from_millis(ms.unsigned_abs()))
                        .map_err(|m| {
                            CliError::usage(format!("--expires: {m}"), "e.g. --expires 30d")
                        })
                })
                .transpose()?;
            let new = NewKey {
                name,
                scopes: encore_access::parse_scope_list(&scopes)?,
                projects: projects.map(|p| {
                    p.split(',')
                        .map(|x| x.trim().to_owned())
                        .filter(|x| !x.is_empty())
                        .collect()
                }),
                ttl,
            };
            let created = keys.create(&new)?;
            audit_local(
                &root,
                "keys create",
                &created.key.id,
                &format!("name={} scopes={scopes}", created.key.name),
            );
            if key_only {
                out.line(&created.secret);
                return Ok(());
            }
            out.emit(&created, || {
                format!(
                    "{}\nkey (shown once; only its hash is stored):\n{}\n",
                    describe(&created.key).trim_end(),
                    created.secret
                )
            });
        }
        KeysCommand::List => {
            let list = keys.list()?;
            out.emit(&list, || {
                if list.is_empty() {
                    "no keys: create one with `encore keys create --name NAME --scopes admin`\n"
                        .into()
                } else {
                    list.iter().map(describe).collect()
                }
            });
        }
        KeysCommand::Revoke { id } => {
            let key = keys.revoke(&id)?;
            audit_local(&root, "keys revoke", &id, &format!("name={}", key.name));
            out.emit(&key, || format!("revoked {}", describe(&key)));
        }
    }
    Ok(())
}

/// `--since`: epoch ms, a date, or an age (`24h`, `7d`).
fn since_ms(s: &str) -> Result<i64, CliError> {
    if let Ok(ms) = s.parse::<i64>() {
        return Ok(ms);
    }
    if let Some(d) = encore_core::time::Date::parse(s) {
        return Ok(d.to_epoch_ms());
    }
    encore_features::def::duration_ms(s)
        .map(|age| encore_core::time::now_ms() - age)
        .map_err(|_| {
            CliError::usage(
                format!("--since {s:?} is not epoch ms, a date or an age"),
                "e.g. --since 2026-12-01 or --since 24h",
            )
        })
}

pub fn audit(loaded: &Loaded, cmd: AuditCommand, out: &Output) -> Result<(), CliError> {
    let log = AuditLog::open(&root(loaded)?)?;
    match cmd {
        AuditCommand::List { since, limit } => {
            let since = since.as_deref().map(since_ms).transpose()?.unwrap_or(0);
            let entries = log.list(since, limit)?;
            out.emit(&entries, || {
                entries
                    .iter()
                    .map(|e| {
                        format!(
                            "{:>6} {} {:<16} {:<21} {} {} {}{}\n",
                            e.seq,
                            encore_core::time::format_ms(e.ts_ms),
                            e.key_name,
                            e.source,
                            e.method,
                            e.target,
                            e.status,
                            if e.detail.is_empty() {
                                String::new()
                            } else {
                                format!("  {}", e.detail)
                            }
                        )
                    })
                    .collect()
            });
        }
        AuditCommand::Verify => {
            let n = log.verify()?;
            out.emit(&serde_json::json!({ "entries": n, "intact": true }), || {
                format!("audit log intact: {n} entries, hash chain verified\n")
            });
        }
    }
    Ok(())
}
