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
            "endpoints": ["POST /v1/events", "GET /v1/events/stats", "GET /healthz"],
        });
        out.emit(&report, || {
            format!(
                "listening on http://{addr}\n  POST http://{addr}/v1/events        (JSON array or NDJSON)\n  \
                 GET  http://{addr}/v1/events/stats\n  GET  http://{addr}/healthz\ndata directory {}",
                dir.path().display()
            )
        });
        let _ = std::io::stdout().flush();
        let state = AppState::new(Arc::clone(&ingestor), limits);
        encore_server::serve(listener, state, shutdown_signal())
            .await
            .map_err(|e| CliError::failed(format!("server error: {e}"), "see the log"))
    })?;
    for t in Table::ALL {
        ingestor.log(t).seal()?;
    }
    Ok(())
}
