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
    let privacy = encore_server::privacy::PrivacyAccess {
        root: dir.path().to_path_buf(),
        key: crate::commands::access::privacy_key(dir.path())?,
    };
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
    let ingestor = Arc::new(ingestor);
    let c = &loaded.config.ingest;
    let limits = Limits {
        max_body_bytes: usize::try_from(c.max_body_bytes).unwrap_or(usize::MAX),
        max_batch_rows: c.max_batch_rows as usize,
        max_in_flight: (c.write_queue as usize).max(1) * 2,
    };
    let sc = &loaded.config.serving;
    // traces: OTLP in, spans out, beside the event log in the same data directory
    let telemetry = Arc::new(encore_app::telemetry::Telemetry::new(
        encore_telemetry::SpanStore::open(
            dir.path(),
            encore_storage::LogOptions {
                seal_rows: loaded.config.telemetry.seal_rows as usize,
                seal_interval: loaded.config.storage.seal_interval(),
                ..Default::default()
            },
        )?,
        normalizer(&loaded.config.telemetry, dir.path())?,
        64,
    ));
    telemetry.trace_own_requests(loaded.config.telemetry.self_trace_rate)?;
    retain_spans(&telemetry, &loaded.config.telemetry)?;
    retain_events(&ingestor, loaded.config.ingest.retention_days)?;
    // the catalog, read once for catalog grounding and for features keyed by artist
    let items = crate::commands::features::catalog_items(&ingestor.catalog());
    let evals = crate::commands::llm_evals::start(
        loaded,
        dir.path(),
        crate::commands::llm_evals::catalog_index(&items),
        &telemetry,
    )?;
    let artists = crate::commands::features::artists(&items);
    drop(items);
    let cache_users = if sc.cache_seconds == 0 {
        0
    } else {
        sc.cache_users as usize
    };
    let served = Arc::new(encore_serving::Served::new(
        encore_serving::RecentActivity::new(sc.recent_users as usize, 200),
        encore_serving::SlateCache::new(
            cache_users,
            std::time::Duration::from_secs(u64::from(sc.cache_seconds)),
        ),
    ));
    // listeners who withdrew personalization are served nothing personal from the first request
    let withdrawn = encore_app::serving::load_consent(&served, &ingestor)?;
    tracing::info!(listeners = withdrawn, "personalization withdrawn");
    let hot = encore_app::serving::HotSwap {
        served: Arc::downgrade(&served),
        ingestor: Arc::downgrade(&ingestor),
        root: dir.path().to_path_buf(),
        model: sc.model.clone(),
        choice: retrieval(loaded),
    };
    hot.load_production();
    let _watch = watch_registry(loaded, dir.path(), &hot)?;
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
        let state = AppState::new(Arc::clone(&ingestor), limits)
            .with_auth(auth)
            .with_privacy(privacy)
            .with_registry(dir.path().to_path_buf(), gate)
            .with_telemetry(Arc::clone(&telemetry))
            .with_evals(evals);
        state.metrics.set_build_sha(env!("ENCORE_GIT_SHA"));
        let state = match features(loaded, dir.path(), artists)? {
            Some(f) => state.with_features(f),
            None => state,
        };
        // the models that running experiments' treatments name are loaded beside the default
        // one, before their plan is used
        let experiments = match encore_app::experiments::Experiments::watch(
            dir.path().to_path_buf(),
            move |defs| hot.keep_aliases(defs),
        ) {
            Ok(e) => Some(e),
            Err(e) => {
                tracing::warn!("experiments not served: {e}");
                None
            }
        };
        let mut serving =
            encore_app::serving::Serving::new(Arc::clone(&served), sc.max_in_flight as usize);
        serving.experiments = experiments.clone();
        serving.features = state.features.clone();
        serving.telemetry = Some(Arc::clone(&telemetry));
        if sc.impressions {
            serving = serving.log_impressions(&state.pipeline)?;
        }
        let state = match experiments {
            Some(e) => state.with_experiments(e),
            None => state,
        };
        let state = state.with_serving(Arc::new(serving));
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
    for t in Table::ALL {
        ingestor.log(t).seal()?;
    }
    telemetry.store.seal()?;
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

/// The online feature store with the current definitions, when some are applied.
fn features(
    loaded: &Loaded,
    root: &std::path::Path,
    artists: std::collections::HashMap<String, String>,
) -> Result<Option<Arc<encore_app::features::OnlineFeatures>>, CliError> {
    let Some(cur) = encore_features::versions::Versions::new(root).current()? else {
        return Ok(None);
    };
    let sc = &loaded.config.serving;
    let rerank = match sc.rerank_feature.as_str() {
        "" => None,
        name => Some(
            encore_app::features::Rerank::new(&cur.definitions, name, sc.rerank_weight).map_err(
                |e| {
                    CliError::usage(
                        format!("[serving] rerank_feature: {e}"),
                        "name a feature of a view keyed by user_id and artist_id, or set \"\"",
                    )
                },
            )?,
        ),
    };
    let store = encore_features::online::OnlineStore::open(root)?
        .with_cache(loaded.config.serving.feature_cache_mb as usize * (1 << 20));
    tracing::info!(
        version = cur.version,
        views = cur.definitions.views.len(),
        "online features"
    );
    Ok(Some(encore_app::features::OnlineFeatures::start(
        store,
        cur.version,
        cur.definitions,
        artists,
        rerank,
    )?))
}

/// Logs every alias move (from this server or any other process), serves the moves of the
/// served model (see [`encore_app::serving::HotSwap`]) and posts them to the configured
/// webhooks; stops when the returned watcher is dropped.
fn watch_registry(
    loaded: &Loaded,
    root: &std::path::Path,
    hot: &encore_app::serving::HotSwap,
) -> Result<encore_registry::Watcher, CliError> {
    let watcher = encore_registry::Watcher::start(root, std::time::Duration::from_millis(200))?;
    let secret = crate::commands::access::webhook_secret(loaded, root)?;
    hot.clone().follow(watcher.subscribe()).map_err(|e| {
        CliError::failed(
            format!("cannot start the hot swap: {e}"),
            "check system limits",
        )
    })?;
    let c = &loaded.config.registry;
    if !c.webhooks.is_empty() {
        let client =
            crate::commands::access::webhook_client(loaded, std::time::Duration::from_secs(10))?;
        for url in &c.webhooks {
            client.allow.check_url(url).map_err(|e| {
                CliError::usage(
                    format!("[registry] webhooks: {e}"),
                    "add the destination to [server] webhook_allow",
                )
            })?;
        }
        let retry = encore_http::outbound::Retry {
            attempts: c.webhook_attempts,
            backoff: std::time::Duration::from_millis(c.webhook_backoff_ms),
            max_wait: std::time::Duration::from_secs(60),
        };
        let deliver = move |url: &str, body: &[u8]| {
            let d =
                encore_http::outbound::deliver(&client, "webhook", url, body, Some(&secret), retry);
            if let Some(e) = &d.last_error {
                tracing::debug!(url, attempts = d.attempts, "webhook: {e}");
            }
            (d.attempts, d.delivered)
        };
        encore_registry::webhooks(
            watcher.subscribe(),
            c.webhooks.clone(),
            deliver,
            |url, m, tries, ok| {
                if ok {
                    tracing::info!(url, id = m.id, tries, "webhook delivered");
                } else {
                    tracing::warn!(url, id = m.id, tries, "webhook failed after every attempt");
                }
            },
        )
        .map_err(|e| {
            CliError::failed(format!("cannot start webhooks: {e}"), "check system limits")
        })?;
    }
    Ok(watcher)
}

/// `[ingest] retention_days`: drops the event segments past it, now and every hour.
fn retain_events(ingestor: &Arc<encore_ingest::Ingestor>, days: u32) -> Result<(), CliError> {
    if days == 0 {
        return Ok(());
    }
    let hourly = std::time::Duration::from_secs(3_600);
    encore_app::worker::every(
        "event-retention",
        hourly,
        false,
        Arc::downgrade(ingestor),
        move |ingestor: &encore_ingest::Ingestor| {
            let cutoff =
                encore_core::time::now_ms() - i64::from(days) * encore_core::time::MS_PER_DAY;
            for t in Table::ALL {
                match ingestor.log(t).drop_before(cutoff) {
                    Ok((0, _)) => {}
                    Ok((segments, rows)) => tracing::info!(
                        table = t.name(),
                        segments,
                        rows,
                        "events past [ingest] retention_days dropped"
                    ),
                    Err(e) => tracing::warn!(table = t.name(), "event retention: {e}"),
                }
            }
        },
    )
    .map_err(|e| {
        CliError::failed(
            format!("cannot start event retention: {e}"),
            "check system limits",
        )
    })
}

/// Applies `[telemetry]` retention now and every hour.
fn retain_spans(
    telemetry: &Arc<encore_app::telemetry::Telemetry>,
    c: &encore_config::TelemetryConfig,
) -> Result<(), CliError> {
    let map = |m: &std::collections::BTreeMap<String, u32>| {
        m.iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect::<std::collections::HashMap<_, _>>()
    };
    let policy = encore_telemetry::store::Retention {
        default_days: c.retention_days,
        by_project: map(&c.retention_days_by_project),
        by_service: map(&c.retention_days_by_service),
        sample_after_days: c.sample_after_days,
        sample_rate: c.compaction_sample_rate,
        keep_slower_than_ms: c.keep_slower_than_ms,
    };
    let hourly = std::time::Duration::from_secs(3_600);
    encore_app::worker::every(
        "span-retention",
        hourly,
        false,
        Arc::downgrade(telemetry),
        move |t: &encore_app::telemetry::Telemetry| match t
            .store
            .apply_retention(encore_core::time::now_ms(), &policy)
        {
            Ok(0) => {}
            Ok(n) => tracing::info!(spans = n, "expired or thinned spans dropped"),
            Err(e) => tracing::warn!("span retention: {e}"),
        },
    )
    .map_err(|e| {
        CliError::failed(
            format!("cannot start span retention: {e}"),
            "check system limits",
        )
    })
}

/// `[telemetry]` as the normalizer of incoming spans.
pub(crate) fn normalizer(
    c: &encore_config::TelemetryConfig,
    root: &std::path::Path,
) -> Result<encore_telemetry::Normalizer, CliError> {
    let redactor = encore_telemetry::Redactor::new(&c.redact_patterns).map_err(|e| {
        CliError::usage(
            format!("bad value for `telemetry.redact_patterns`: {e}"),
            "each pattern is a regular expression (Rust regex syntax)",
        )
    })?;
    Ok(encore_telemetry::Normalizer {
        redactor,
        content: c.content,
        user_id_key: (!c.user_id_key.is_empty()).then(|| c.user_id_key.as_bytes().to_vec()),
        id_key: crate::commands::access::privacy_key(root)?.to_vec(),
        content_by_service: c
            .content_by_service
            .iter()
            .map(|(service, p)| (service.clone(), *p))
            .collect(),
        prices: crate::commands::traces::price_table(c),
        sampling: encore_telemetry::otlp::Sampling {
            rate: c.sample_rate,
            keep_slower_than_ms: c.keep_slower_than_ms,
        },
    })
}

/// `[serving] retrieval` as the index's choice.
fn retrieval(loaded: &Loaded) -> encore_index::Choice {
    let sc = &loaded.config.serving;
    match sc.retrieval {
        encore_config::Retrieval::Exact => encore_index::Choice::Exact,
        encore_config::Retrieval::Hnsw => encore_index::Choice::Hnsw(Default::default()),
        encore_config::Retrieval::Auto => encore_index::Choice::Auto {
            threshold: sc.hnsw_threshold as usize,
        },
    }
}
