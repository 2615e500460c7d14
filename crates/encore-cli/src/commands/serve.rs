//! `encore serve`: the HTTP API over the data directory, until SIGINT or SIGTERM.

use crate::cli::ServeArgs;
use crate::commands::events::open;
use crate::error::CliError;
use crate::output::Output;
use encore_config::Loaded;
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
    let mut with_role;
    let loaded = match args.role {
        Some(role) => {
            with_role = loaded.clone();
            with_role.config.server.role = role.into();
            if with_role.config.server.role != encore_config::Role::All
                && with_role.config.storage.bus.is_empty()
            {
                return Err(CliError::usage(
                    format!("--role {role:?} needs the shared bus").to_lowercase(),
                    "set [storage] bus = \"nats://host:4222\" (or ENCORE__STORAGE__BUS)",
                ));
            }
            &with_role
        }
        None => loaded,
    };
    let bind = args.bind.unwrap_or(loaded.config.server.bind);
    if args.repair_damage {
        // told to start over damage: repair it first, reported like `events repair`
        let dir = encore_storage::DataDir::open(&loaded.config.data.dir)?;
        let mut tables = crate::commands::events::tables(dir.path(), 0);
        tables.extend(crate::commands::traces::tables(dir.path()));
        for (table, report) in crate::commands::integrity::repair_tables(&dir, &tables)? {
            if !report.is_empty() {
                tracing::warn!(table, report = %serde_json::to_string(&report).unwrap_or_default(),
                    "repaired damaged files before starting (originals in quarantine)");
            }
        }
    }
    let scheme = if loaded.config.server.tls_cert.is_empty() {
        "http"
    } else {
        "https"
    };
    serve_until(
        loaded,
        bind,
        |addr, grpc, data_dir| {
            let report = serde_json::json!({
                "listening": format!("{scheme}://{addr}"),
                "otlp_grpc": grpc.map(|g| g.to_string()),
                "data_dir": data_dir,
                "endpoints": [
                    "POST /v1/events", "GET /v1/events/stats", "GET /healthz", "GET /v1/models",
                    "GET /v1/models/{name}/versions", "GET /v1/models/{name}/history",
                    "POST /v1/models/{name}/aliases/{alias}", "GET /readyz",
                    "GET /v1/users/{id}/recommendations", "POST /v1/recommendations",
                    "GET /v1/items/{id}/similar", "POST /v1/radio",
                ],
            });
            out.emit(&report, || {
                format!(
                    "listening on {scheme}://{addr}\n  POST {scheme}://{addr}/v1/events        (JSON array or NDJSON)\n  \
                     GET  {scheme}://{addr}/v1/events/stats\n  GET  {scheme}://{addr}/healthz\n  \
                     GET  {scheme}://{addr}/v1/models             (and /v1/models/NAME/versions, /history)\n  \
                     POST {scheme}://{addr}/v1/models/NAME/aliases/production  {{\"version\": N}}\n  \
                     GET  {scheme}://{addr}/v1/users/USER/recommendations?n=10\n  \
                     GET  {scheme}://{addr}/v1/items/ITEM/similar?n=10\n  \
                     POST {scheme}://{addr}/v1/recommendations  {{\"seed_items\": [...]}}\n  \
                     POST {scheme}://{addr}/v1/radio            {{\"seeds\": [...]}}\n  \
                     POST {scheme}://{addr}/v1/traces           (OTLP/HTTP; OTLP/gRPC on {})\n  \
                     GET  {scheme}://{addr}/v1/spans?project=NAME\n\
                     data directory {}",
                    grpc.map_or("no port".to_string(), |g| g.to_string()),
                    data_dir.display()
                )
            });
            let _ = std::io::stdout().flush();
        },
        shutdown_signal(),
    )
}

/// Serves the data directory on `bind` until `shutdown` completes: calls `on_listening` with
/// the bound address once requests are accepted, then drains requests and seals the event log.
pub fn serve_until(
    loaded: &Loaded,
    bind: std::net::SocketAddr,
    on_listening: impl FnOnce(std::net::SocketAddr, Option<std::net::SocketAddr>, &std::path::Path),
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), CliError> {
    let mode = auth_mode(loaded, bind)?;
    let tls = tls_files(loaded)?;
    if tls.is_none() && !bind.ip().is_loopback() {
        tracing::warn!(%bind, "serving plain HTTP beyond loopback: API keys and listening data \
            cross the network in clear text; set [server] tls_cert and tls_key, or terminate TLS \
            in front of encore");
    }
    let (dir, ingestor) = open(loaded)?;
    let auth =
        encore_server::keys::Auth::open(dir.path(), mode, &loaded.config.server.open_routes)?;
    if mode == encore_server::keys::Mode::Required
        && encore_access::Keys::open(dir.path())?
            .list()?
            .iter()
            .all(|k| k.revoked_ms.is_some())
    {
        tracing::warn!(
            "no API keys yet: every request but {:?} is refused; create one with \
             `encore keys create --name NAME --scopes admin`",
            loaded.config.server.open_routes
        );
    }
    let c = &loaded.config.ingest;
    let limits = Limits {
        max_body_bytes: usize::try_from(c.max_body_bytes).unwrap_or(usize::MAX),
        max_batch_rows: c.max_batch_rows as usize,
        max_in_flight: (c.write_queue as usize).max(1) * 2,
    };
    let node = encore_app::node::Node::start(&loaded.config, dir.path(), Arc::new(ingestor))?;
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
        // OTLP/gRPC beside the HTTP API; a port that cannot be had is logged, not fatal (the
        // OTLP/HTTP route takes the same exports)
        let grpc = match loaded.config.server.otlp_grpc.as_str() {
            "" => None,
            a => match tokio::net::TcpListener::bind(a).await {
                Ok(l) => Some(l),
                Err(e) => {
                    tracing::warn!("no OTLP/gRPC receiver: cannot listen on {a}: {e}");
                    None
                }
            },
        };
        let grpc_addr = grpc.as_ref().and_then(|l| l.local_addr().ok());
        let tls_config = match &tls {
            Some((cert, key)) => Some(
                encore_server::tls::server_config(cert, key, &[b"http/1.1"]).map_err(|e| {
                    CliError::usage(
                        format!("[server] tls_cert / tls_key: {e}"),
                        "name a PEM certificate chain and its PEM private key",
                    )
                })?,
            ),
            None => None,
        };
        on_listening(addr, grpc_addr, dir.path());
        let gate = crate::cli::GateArgs::default().gate(&loaded.config.registry);
        let privacy = encore_server::privacy::PrivacyAccess {
            root: node.root.clone(),
            key: Arc::clone(&node.privacy_key),
        };
        let state = AppState::new(Arc::clone(&node.ingestor), limits)
            .with_node(&node)
            .with_auth(auth)
            .with_privacy(privacy)
            .with_registry(node.root.clone(), gate);
        state.metrics.set_build_sha(env!("ENCORE_GIT_SHA"));
        let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
        let grpc_task = grpc.map(|l| {
            let state = state.clone();
            let max = state.limits.max_body_bytes;
            let tls = tls.clone();
            tokio::spawn(async move {
                let stopped = async move {
                    let _ = stop_rx.changed().await;
                };
                if let Err(e) =
                    encore_server::traces::serve_grpc(l, &state, max, tls, stopped).await
                {
                    tracing::error!("OTLP/gRPC receiver stopped: {e}");
                }
            })
        });
        let shutdown = async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        };
        let served = match tls_config {
            Some(config) => encore_server::serve_tls(listener, state, config, shutdown).await,
            None => encore_server::serve(listener, state, shutdown).await,
        }
        .map_err(|e| CliError::failed(format!("server error: {e}"), "see the log"));
        // exports in flight on gRPC finish before the logs are sealed
        if let Some(t) = grpc_task {
            let _ = t.await;
        }
        served
    })?;
    node.seal()?;
    Ok(())
}

/// A PEM certificate chain and its PEM private key.
type PemPair = (Vec<u8>, Vec<u8>);

/// `[server] tls_cert` and `tls_key`, read: both or neither.
fn tls_files(loaded: &Loaded) -> Result<Option<PemPair>, CliError> {
    let s = &loaded.config.server;
    let read = |what: &str, f: &str| {
        std::fs::read(f).map_err(|e| {
            CliError::usage(
                format!("[server] {what} {f}: {e}"),
                "name a readable PEM file",
            )
        })
    };
    match (s.tls_cert.as_str(), s.tls_key.as_str()) {
        ("", "") => Ok(None),
        ("", _) | (_, "") => Err(CliError::usage(
            "[server] tls_cert and tls_key go together: one is set, the other is empty",
            "set both (PEM certificate chain and PEM private key), or neither",
        )),
        (cert, key) => Ok(Some((read("tls_cert", cert)?, read("tls_key", key)?))),
    }
}

/// `[server] auth`, refused as `off` on any address but loopback: without keys, whoever reaches
/// the port could move production, read prompts and post events for any listener.
fn auth_mode(
    loaded: &Loaded,
    bind: std::net::SocketAddr,
) -> Result<encore_server::keys::Mode, CliError> {
    use encore_config::AuthMode;
    match loaded.config.server.auth {
        AuthMode::Required => Ok(encore_server::keys::Mode::Required),
        AuthMode::Off => {
            let grpc = loaded.config.server.otlp_grpc.as_str();
            let grpc_local = grpc.is_empty()
                || grpc
                    .parse::<std::net::SocketAddr>()
                    .is_ok_and(|a| a.ip().is_loopback())
                || grpc.starts_with("localhost:");
            if !bind.ip().is_loopback() || !grpc_local {
                let addr = if bind.ip().is_loopback() {
                    grpc.to_string()
                } else {
                    bind.to_string()
                };
                return Err(CliError::usage(
                    format!(
                        "refusing to listen on {addr} with [server] auth = \"off\": anyone who \
                         reaches it could move production, read prompts and post events for any \
                         listener"
                    ),
                    "listen on a loopback address (127.0.0.1), or keep auth = \"required\" and \
                     give clients keys from `encore keys create`",
                ));
            }
            tracing::warn!("authentication is off: every local caller may do everything");
            Ok(encore_server::keys::Mode::Off)
        }
    }
}
