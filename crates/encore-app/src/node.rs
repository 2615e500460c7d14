//! A node: the parts `encore serve` runs beside its transport, composed from the configuration
//! over one data directory (ingest and who hears of stored rows; traces and their evaluation;
//! online features; served models kept in step with the registry; running experiments), and the
//! background work that keeps them current (retention, registry webhooks). A transport (the
//! HTTP and OTLP/gRPC server) serves a node; [`Node::seal`] ends it.

use crate::AppError;
use crate::evals::Evals;
use crate::experiments::Experiments;
use crate::features::{OnlineFeatures, Rerank};
use crate::ingest::Pipeline;
use crate::serving::{HotSwap, RecentPlays, Serving};
use crate::setup;
use crate::telemetry::Telemetry;
use encore_config::Config;
use encore_ingest::{Ingestor, Table};
use encore_serving::Served;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Every part of a running node.
#[derive(Debug)]
pub struct Node {
    pub root: PathBuf,
    pub ingestor: Arc<Ingestor>,
    /// ingestion and who hears of stored rows (recent plays, online features)
    pub pipeline: Arc<Pipeline>,
    pub telemetry: Arc<Telemetry>,
    pub evals: Arc<Evals>,
    /// the online feature store, when definitions are applied
    pub features: Option<Arc<OnlineFeatures>>,
    /// running experiments, when their store can be read
    pub experiments: Option<Arc<Experiments>>,
    pub serving: Arc<Serving>,
    /// the key identifiers carrying personal data are hashed under
    pub privacy_key: Arc<[u8]>,
    /// monitoring of the listening data (its job runs on roles `all` and `worker`)
    pub monitors: Option<Arc<crate::monitors::Monitoring>>,
    /// alias moves, while the node runs
    _watcher: encore_registry::Watcher,
    /// the node's work on the shared bus (its role's), while it runs
    _bus: Option<crate::bus::Following>,
}

impl Node {
    /// Composes a node over the data directory `root` (whose event log `ingestor` writes) and
    /// starts its background work; it stops when the node is dropped.
    pub fn start(config: &Config, root: &Path, ingestor: Arc<Ingestor>) -> Result<Node, AppError> {
        let pipeline = Arc::new(Pipeline::new(Arc::clone(&ingestor)));
        let telemetry = telemetry(config, root)?;
        retain_spans(&telemetry, &config.telemetry)?;
        retain_events(&ingestor, config.ingest.retention_days)?;
        // the catalog, read once for catalog grounding and for features keyed by artist
        let items = setup::catalog_items(&ingestor.catalog());
        let evals = Evals::start(config, root, setup::catalog_index(&items), &telemetry)?;
        let artists = setup::artists(&items);
        drop(items);
        let sc = &config.serving;
        let served = served(sc);
        // listeners who withdrew personalization are served nothing personal from the start
        let withdrawn = crate::serving::load_consent(&served, &ingestor)?;
        tracing::info!(listeners = withdrawn, "personalization withdrawn");
        let hot = HotSwap {
            served: Arc::downgrade(&served),
            ingestor: Arc::downgrade(&ingestor),
            root: root.to_path_buf(),
            model: sc.model.clone(),
            choice: setup::retrieval(sc),
        };
        hot.load_production();
        let watcher = watch_registry(config, root, &hot)?;
        let features = online_features(config, root, artists)?;
        // a shared online store (Redis) is written by the worker alone (or the one node of a
        // single-machine deployment); serving and ingest nodes only read it
        let writes_features = !encore_storage::kv::backend(root).is_shared()
            || matches!(
                config.server.role,
                encore_config::Role::All | encore_config::Role::Worker
            );
        if let Some(f) = &features
            && writes_features
        {
            pipeline.subscribe(Arc::clone(f) as _);
        }
        // the models that running experiments' treatments name are loaded beside the default
        // one, before their plan is used
        let experiments =
            match Experiments::watch(root.to_path_buf(), move |defs| hot.keep_aliases(defs)) {
                Ok(e) => Some(e),
                Err(e) => {
                    tracing::warn!("experiments not served: {e}");
                    None
                }
            };
        let mut serving = Serving::new(Arc::clone(&served), sc.max_in_flight as usize);
        serving.experiments = experiments.clone();
        serving.features = features.clone();
        serving.telemetry = Some(Arc::clone(&telemetry));
        if sc.impressions {
            serving = serving.log_impressions(&pipeline)?;
        }
        pipeline.subscribe(Arc::new(RecentPlays(served)));
        let bus = on_the_bus(config, root, &ingestor, &pipeline)?;
        mirror_lake(config, root, &ingestor)?;
        let monitors = monitoring(config, root, &ingestor)?;
        if let Some(m) = &monitors {
            let _ = evals.monitors.set(Arc::clone(m));
        }
        Ok(Node {
            root: root.to_path_buf(),
            privacy_key: setup::privacy_key(root)?,
            ingestor,
            pipeline,
            telemetry,
            evals,
            features,
            experiments,
            serving: Arc::new(serving),
            monitors,
            _watcher: watcher,
            _bus: bus,
        })
    }

    /// Makes every event and span written so far readable in the sealed, open format.
    pub fn seal(&self) -> Result<(), AppError> {
        for t in Table::ALL {
            self.ingestor.log(t).seal()?;
        }
        self.telemetry.store.seal()?;
        Ok(())
    }
}

/// The node's name: `[server] node`, or one from the data directory's path (stable across
/// restarts of the same node).
pub fn node_name(config: &Config, root: &Path) -> String {
    if !config.server.node.is_empty() {
        return config.server.node.clone();
    }
    let path = std::path::absolute(root).unwrap_or_else(|_| root.to_path_buf());
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for b in path.as_os_str().as_encoded_bytes() {
        h = (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("node-{:08x}", h >> 32)
}

/// What the node's role does on the shared bus: an ingest node sends what it stores (through
/// its outbox, forwarding what is left there), a worker writes the bus into its event log (and
/// a shared online store), a serving node follows it for recent plays and online features kept
/// in its own store. One machine (`all`) has no bus.
fn on_the_bus(
    config: &Config,
    root: &Path,
    ingestor: &Arc<Ingestor>,
    pipeline: &Arc<Pipeline>,
) -> Result<Option<crate::bus::Following>, AppError> {
    use crate::bus::{Following, Outbox};
    use encore_config::Role;
    let role = config.server.role;
    if role == Role::All {
        return Ok(None);
    }
    let bus = encore_storage::bus::open(root, Duration::from_secs(30))?;
    let node = node_name(config, root);
    tracing::info!(?role, node, "on the shared bus");
    Ok(Some(match role {
        Role::All => return Ok(None),
        Role::Ingest => {
            let outbox = Outbox::open(root, &node, bus)?;
            pipeline.send_to(Arc::clone(&outbox) as _);
            Following::forwarder(&outbox)?
        }
        Role::Worker => {
            let lease = crate::lease::Lease::open(root, "lake", &node, Duration::from_secs(15))?;
            Following::lake(bus, ingestor, pipeline, lease)?
        }
        Role::Serve => Following::serving(bus, &node, pipeline)?,
    }))
}

/// Traces: OTLP in, spans out, beside the event log in the same data directory, and the node's
/// own requests traced at `[telemetry] self_trace_rate`.
fn telemetry(config: &Config, root: &Path) -> Result<Arc<Telemetry>, AppError> {
    let store = encore_telemetry::SpanStore::open(
        root,
        encore_storage::LogOptions {
            seal_rows: config.telemetry.seal_rows as usize,
            seal_interval: config.storage.seal_interval(),
            ..Default::default()
        },
    )?;
    let telemetry = Arc::new(Telemetry::new(
        store,
        setup::normalizer(&config.telemetry, root)?,
        64,
    ));
    telemetry.trace_own_requests(config.telemetry.self_trace_rate)?;
    Ok(telemetry)
}

/// The served models with their recent plays and slate cache, per `[serving]`.
fn served(sc: &encore_config::ServingConfig) -> Arc<Served> {
    let cache_users = if sc.cache_seconds == 0 {
        0
    } else {
        sc.cache_users as usize
    };
    Arc::new(Served::new(
        encore_serving::RecentActivity::new(sc.recent_users as usize, 200),
        encore_serving::SlateCache::new(
            cache_users,
            Duration::from_secs(u64::from(sc.cache_seconds)),
        ),
    ))
}

/// The online feature store with the current definitions, when some are applied.
fn online_features(
    config: &Config,
    root: &Path,
    artists: HashMap<String, String>,
) -> Result<Option<Arc<OnlineFeatures>>, AppError> {
    let Some(cur) = encore_features::versions::Versions::new(root).current()? else {
        return Ok(None);
    };
    let sc = &config.serving;
    let rerank = match sc.rerank_feature.as_str() {
        "" => None,
        name => Some(
            Rerank::new(&cur.definitions, name, sc.rerank_weight).map_err(|e| {
                AppError::invalid(format!(
                    "[serving] rerank_feature: {} (name a feature of a view keyed by user_id \
                     and artist_id, or set \"\")",
                    e.message
                ))
            })?,
        ),
    };
    let store = encore_features::online::OnlineStore::open(root)?
        .with_cache(sc.feature_cache_mb as usize * (1 << 20));
    tracing::info!(
        version = cur.version,
        views = cur.definitions.views.len(),
        "online features"
    );
    Ok(Some(OnlineFeatures::start(
        store,
        cur.version,
        cur.definitions,
        artists,
        rerank,
    )?))
}

fn thread_failed(what: &str) -> impl Fn(std::io::Error) -> AppError + '_ {
    move |e| {
        AppError::new(
            encore_core::ErrorCode::Internal,
            format!("cannot start {what}: {e} (check system limits)"),
        )
    }
}

/// Logs every alias move (from this node or any other process), serves the moves of the served
/// model (see [`HotSwap`]) and posts them to `[registry] webhooks`; stops when the returned
/// watcher is dropped.
fn watch_registry(
    config: &Config,
    root: &Path,
    hot: &HotSwap,
) -> Result<encore_registry::Watcher, AppError> {
    let watcher = encore_registry::Watcher::start(root, Duration::from_millis(200))?;
    hot.clone()
        .follow(watcher.subscribe())
        .map_err(thread_failed("the hot swap"))?;
    let c = &config.registry;
    if c.webhooks.is_empty() {
        return Ok(watcher);
    }
    let secret = setup::webhook_secret(&config.server, root)?;
    let client = setup::webhook_client(&config.server, Duration::from_secs(10))?;
    for url in &c.webhooks {
        client.allow.check_url(url).map_err(|e| {
            AppError::invalid(format!(
                "[registry] webhooks: {e} (add the destination to [server] webhook_allow)"
            ))
        })?;
    }
    let retry = encore_http::outbound::Retry {
        attempts: c.webhook_attempts,
        backoff: Duration::from_millis(c.webhook_backoff_ms),
        max_wait: Duration::from_secs(60),
    };
    let deliver = move |url: &str, body: &[u8]| {
        let d = encore_http::outbound::deliver(&client, "webhook", url, body, Some(&secret), retry);
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
    .map_err(thread_failed("webhooks"))?;
    Ok(watcher)
}

/// The node's sealed segments mirrored to the lake on the object store every 5 s, when the
/// objects are shared (S3) and the node keeps the event log (a worker, or the one node).
fn mirror_lake(config: &Config, root: &Path, ingestor: &Arc<Ingestor>) -> Result<(), AppError> {
    use encore_config::Role;
    let shared = encore_storage::objects::backend(root) != encore_storage::objects::Backend::Local;
    if !shared || !matches!(config.server.role, Role::All | Role::Worker) {
        return Ok(());
    }
    let objects = encore_storage::objects::open(root)?;
    let node = node_name(config, root);
    crate::worker::every(
        "lake-mirror",
        Duration::from_secs(5),
        false,
        Arc::downgrade(ingestor),
        move |ingestor: &Ingestor| match crate::lake::mirror(ingestor, objects.as_ref(), &node) {
            Ok(m) if m.uploaded + m.deleted > 0 => tracing::info!(
                uploaded = m.uploaded,
                deleted = m.deleted,
                bytes = m.bytes,
                segments = m.segments,
                "lake mirrored"
            ),
            Ok(_) => {}
            Err(e) => tracing::warn!("lake mirror: {e}"),
        },
    )
    .map_err(thread_failed("lake-mirror"))
}

/// Monitoring: nodes with the deployment's event log (`all`, `worker`) profile their new
/// playback segments and judge complete windows every `[monitors] interval_s` (judging under
/// the `monitors` lease when the metadata is shared); other nodes read the verdicts.
fn monitoring(
    config: &Config,
    root: &Path,
    ingestor: &Arc<Ingestor>,
) -> Result<Option<Arc<crate::monitors::Monitoring>>, AppError> {
    use encore_config::Role;
    let m = match crate::monitors::Monitoring::open(root, &config.serving.model) {
        Ok(m) => Arc::new(m),
        Err(e) => {
            tracing::warn!("monitors not run: {e}");
            return Ok(None);
        }
    };
    let period = Duration::from_secs(u64::from(config.monitors.interval_s));
    if period.is_zero() {
        return Ok(Some(m));
    }
    if matches!(config.server.role, Role::All | Role::Worker) {
        let node = node_name(config, root);
        let shared = encore_storage::metadata::backend_of(root)
            != encore_storage::metadata::Backend::Embedded;
        let lease = if shared {
            Some(crate::lease::Lease::open(
                root,
                "monitors",
                &node,
                Duration::from_secs(15),
            )?)
        } else {
            None
        };
        m.start(ingestor, node, period, lease)
            .map_err(thread_failed("monitors"))?;
    } else {
        let me = Arc::clone(&m);
        crate::worker::every(
            "monitors",
            period,
            true,
            Arc::downgrade(ingestor),
            move |_| {
                if let Err(e) = me.refresh() {
                    tracing::warn!("monitors: {e}");
                }
            },
        )
        .map_err(thread_failed("monitors"))?;
    }
    Ok(Some(m))
}

/// `[ingest] retention_days`: drops the event segments past it, now and every hour.
fn retain_events(ingestor: &Arc<Ingestor>, days: u32) -> Result<(), AppError> {
    if days == 0 {
        return Ok(());
    }
    crate::worker::every(
        "event-retention",
        Duration::from_secs(3_600),
        false,
        Arc::downgrade(ingestor),
        move |ingestor: &Ingestor| {
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
    .map_err(thread_failed("event retention"))
}

/// Applies `[telemetry]` retention now and every hour.
fn retain_spans(
    telemetry: &Arc<Telemetry>,
    c: &encore_config::TelemetryConfig,
) -> Result<(), AppError> {
    let map = |m: &std::collections::BTreeMap<String, u32>| {
        m.iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect::<HashMap<_, _>>()
    };
    let policy = encore_telemetry::store::Retention {
        default_days: c.retention_days,
        by_project: map(&c.retention_days_by_project),
        by_service: map(&c.retention_days_by_service),
        sample_after_days: c.sample_after_days,
        sample_rate: c.compaction_sample_rate,
        keep_slower_than_ms: c.keep_slower_than_ms,
    };
    crate::worker::every(
        "span-retention",
        Duration::from_secs(3_600),
        false,
        Arc::downgrade(telemetry),
        move |t: &Telemetry| match t
            .store
            .apply_retention(encore_core::time::now_ms(), &policy)
        {
            Ok(0) => {}
            Ok(n) => tracing::info!(spans = n, "expired or thinned spans dropped"),
            Err(e) => tracing::warn!("span retention: {e}"),
        },
    )
    .map_err(thread_failed("span retention"))
}
