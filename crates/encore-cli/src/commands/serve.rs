//! `encore serve`: the HTTP API over the data directory, until SIGINT or SIGTERM.

use crate::cli::ServeArgs;
use crate::commands::events::open;
use crate::error::CliError;
use crate::output::Output;
use encore_config::Loaded;
use encore_ingest::Table;
use encore_server::{AppState, Limits};
use std::io::Write;
use std::sync::Arc;

async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = interrupt => {},
        () = terminate => {},
    }
    tracing::info!("shutting down: finishing requests, sealing the event log");
}

pub fn run(loaded: &Loaded, args: &ServeArgs, out: &Output) -> Result<(), CliError> {
    let (dir, ingestor) = open(loaded)?;
    let ingestor = Arc::new(ingestor);
    let c = &loaded.config.ingest;
    let limits = Limits {
        max_body_bytes: usize::try_from(c.max_body_bytes).unwrap_or(usize::MAX),
        max_batch_rows: c.max_batch_rows as usize,
        max_in_flight: (c.write_queue as usize).max(1) * 2,
    };
    let bind = args.bind.unwrap_or(loaded.config.server.bind);
    let _watch = watch_registry(loaded, dir.path())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| {
            CliError::failed(
                format!("cannot start the async runtime: {e}"),
                "check system limits",
            )
        })?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(bind).await.map_err(|e| {
            CliError::failed(
                format!("cannot listen on {bind}: {e}"),
                "pass --bind with a free address, e.g. --bind 127.0.0.1:0",
            )
        })?;
        let addr = listener
            .local_addr()
            .map_err(|e| CliError::failed(format!("no local address: {e}"), "retry"))?;
        let report = serde_json::json!({
            "listening": format!("http://{addr}"),
            "data_dir": dir.path(),
            "endpoints": [
                "POST /v1/events", "GET /v1/events/stats", "GET /healthz", "GET /v1/models",
                "GET /v1/models/{name}/versions", "GET /v1/models/{name}/history",
                "POST /v1/models/{name}/aliases/{alias}",
            ],
        });
        out.emit(&report, || {
            format!(
                "listening on http://{addr}\n  POST http://{addr}/v1/events        (JSON array or NDJSON)\n  \
                 GET  http://{addr}/v1/events/stats\n  GET  http://{addr}/healthz\n  \
                 GET  http://{addr}/v1/models             (and /v1/models/NAME/versions, /history)\n  \
                 POST http://{addr}/v1/models/NAME/aliases/production  {{\"version\": N}}\n\
                 data directory {}",
                dir.path().display()
            )
        });
        let _ = std::io::stdout().flush();
        let gate = crate::cli::GateArgs::default().gate(&loaded.config.registry);
        let state = AppState::new(Arc::clone(&ingestor), limits)
            .with_registry(dir.path().to_path_buf(), gate);
        encore_server::serve(listener, state, shutdown_signal())
            .await
            .map_err(|e| CliError::failed(format!("server error: {e}"), "see the log"))
    })?;
    for t in Table::ALL {
        ingestor.log(t).seal()?;
    }
    Ok(())
}

/// Logs every alias move (from this server or any other process) and posts it to the configured
/// webhooks; stops when the returned watcher is dropped.
fn watch_registry(
    loaded: &Loaded,
    root: &std::path::Path,
) -> Result<encore_registry::Watcher, CliError> {
    let watcher = encore_registry::Watcher::start(root, std::time::Duration::from_millis(500))?;
    let log = watcher.subscribe();
    std::thread::spawn(move || {
        for m in log {
            tracing::info!(model = %m.model, alias = %m.alias, from = ?m.from, to = m.to,
                action = %m.action, forced = m.forced, actor = %m.actor, "alias moved");
        }
    });
    let c = &loaded.config.registry;
    if !c.webhooks.is_empty() {
        let config = encore_registry::WebhookConfig {
            urls: c.webhooks.clone(),
            attempts: c.webhook_attempts,
            backoff: std::time::Duration::from_millis(c.webhook_backoff_ms),
        };
        encore_registry::webhooks(watcher.subscribe(), config, |url, m, tries, ok| {
            if ok {
                tracing::info!(url, id = m.id, tries, "webhook delivered");
            } else {
                tracing::warn!(url, id = m.id, tries, "webhook failed after every attempt");
            }
        })
        .map_err(|e| {
            CliError::failed(format!("cannot start webhooks: {e}"), "check system limits")
        })?;
    }
    Ok(watcher)
}
