//! `encore-server`: the HTTP API. One module per resource; handlers unpack the request, call one
//! operation of the application layer (`encore-app`) or a domain crate, and map its error to a
//! status in one place ([`error`]). No module here starts a thread or joins two domains.
//!
//! ```no_run
//! # async fn run(ingestor: std::sync::Arc<encore_ingest::Ingestor>) -> std::io::Result<()> {
//! let state = encore_server::AppState::new(ingestor, encore_server::Limits::default());
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:7878").await?;
//! encore_server::serve(listener, state, std::future::pending()).await
//! # }
//! ```

/// the blocking HTTP client of encore's tools and tests
pub use encore_http as client;
pub mod auth;
pub mod error;
pub mod evals;
mod events;
pub mod experiments;
pub mod features;
mod health;
pub mod metrics;
mod models;
pub mod openapi;
pub mod privacy;
pub mod recs;
pub mod tls;
pub mod traces;

use axum::Router;
use encore_app::experiments::Experiments;
use encore_app::features::OnlineFeatures;
use encore_app::ingest::Pipeline;
use encore_app::serving::{RecentPlays, Serving};
use encore_app::telemetry::Telemetry;
use encore_ingest::Ingestor;
use std::future::Future;
use std::sync::Arc;
use tokio::sync::Semaphore;

/// Request limits.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_body_bytes: usize,
    pub max_batch_rows: usize,
    /// ingest requests being processed at once; beyond it the server answers 503
    pub max_in_flight: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 16 << 20,
            max_batch_rows: 10_000,
            max_in_flight: 64,
        }
    }
}

/// Where the model registry is and the gate its `production` alias goes through.
#[derive(Debug, Clone)]
pub struct RegistryAccess {
    pub root: std::path::PathBuf,
    pub gate: encore_registry::Gate,
}

/// What every handler can reach.
#[derive(Debug, Clone)]
pub struct AppState {
    pub ingestor: Arc<Ingestor>,
    /// ingestion and who hears of stored rows
    pub pipeline: Arc<Pipeline>,
    pub limits: Limits,
    pub registry: Option<RegistryAccess>,
    /// the served model, when this server serves recommendations
    pub serving: Option<Arc<Serving>>,
    pub experiments: Option<Arc<Experiments>>,
    /// the trace store, when this server takes traces
    pub telemetry: Option<Arc<Telemetry>>,
    /// evaluation of LLM features and alerts, when this server runs them
    pub evals: Option<Arc<encore_app::evals::Evals>>,
    /// the online feature store, when definitions are applied
    pub features: Option<Arc<OnlineFeatures>>,
    pub metrics: Arc<metrics::Metrics>,
    /// keys, scopes and the audit log
    pub auth: auth::Auth,
    /// erasures over HTTP, when the server has the data directory's privacy key
    pub privacy: Option<privacy::PrivacyAccess>,
    in_flight: Arc<Semaphore>,
}

impl AppState {
    pub fn new(ingestor: Arc<Ingestor>, limits: Limits) -> AppState {
        let in_flight = Arc::new(Semaphore::new(limits.max_in_flight));
        AppState {
            pipeline: Arc::new(Pipeline::new(Arc::clone(&ingestor))),
            ingestor,
            limits,
            registry: None,
            serving: None,
            experiments: None,
            telemetry: None,
            evals: None,
            features: None,
            metrics: Arc::default(),
            auth: auth::Auth::off(),
            privacy: None,
            in_flight,
        }
    }

    /// Erases listeners over HTTP with the data directory's privacy key.
    pub fn with_privacy(mut self, privacy: privacy::PrivacyAccess) -> Self {
        self.privacy = Some(privacy);
        self
    }

    /// Requires keys (or not) and audits through `auth`.
    pub fn with_auth(mut self, auth: auth::Auth) -> Self {
        self.auth = auth;
        self
    }

    /// Answers `/v1/assignments` from `experiments` too.
    pub fn with_experiments(mut self, experiments: Arc<Experiments>) -> Self {
        self.experiments = Some(experiments);
        self
    }

    /// Takes OTLP traces into `telemetry` and answers span queries too.
    pub fn with_telemetry(mut self, telemetry: Arc<Telemetry>) -> Self {
        self.telemetry = Some(telemetry);
        self
    }

    /// Evaluates, labels and alerts through `evals` too.
    pub fn with_evals(mut self, evals: Arc<encore_app::evals::Evals>) -> Self {
        self.evals = Some(evals);
        self
    }

    /// Serves online features from `features` too (and feeds it stored plays).
    pub fn with_features(mut self, features: Arc<OnlineFeatures>) -> Self {
        self.pipeline.subscribe(Arc::clone(&features) as _);
        self.features = Some(features);
        self
    }

    /// Serves recommendations from `serving` too (and folds stored plays in).
    pub fn with_serving(mut self, serving: Arc<Serving>) -> Self {
        self.pipeline
            .subscribe(Arc::new(RecentPlays(Arc::clone(&serving.served))));
        self.metrics.register_serving(&serving.counters);
        self.serving = Some(serving);
        self
    }

    /// Serves the model registry of the data directory `root` too (`/v1/models...`).
    pub fn with_registry(mut self, root: std::path::PathBuf, gate: encore_registry::Gate) -> Self {
        self.registry = Some(RegistryAccess { root, gate });
        self
    }
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(health::routes())
        .merge(events::routes())
        .merge(models::routes())
        .merge(recs::routes())
        .merge(experiments::routes())
        .merge(traces::routes())
        .merge(evals::routes())
        .merge(features::routes())
        .merge(auth::routes())
        .merge(privacy::routes())
        .route("/metrics", axum::routing::get(metrics::render))
        .route("/openapi.json", axum::routing::get(openapi::openapi_json))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::authorize,
        ))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            metrics::track,
        ))
        .fallback(error::not_found)
        .layer(axum::extract::DefaultBodyLimit::max(
            state.limits.max_body_bytes,
        ))
        .layer(axum::middleware::from_fn(error::identity_only))
        .layer(axum::middleware::from_fn(error::json_by_default))
        .layer(axum::middleware::from_fn(error::json_errors))
        .with_state(state)
}

/// Serves `state` over TLS (`config`, see [`tls::server_config`]) on `listener` until
/// `shutdown` completes; in-flight requests finish first.
pub async fn serve_tls(
    listener: tokio::net::TcpListener,
    state: AppState,
    config: Arc<tokio_rustls::rustls::ServerConfig>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use axum::serve::ListenerExt;
    // tap_io: the client's address reaches handlers as ConnectInfo<SocketAddr>, as over TCP
    let listener = tls::TlsListener::new(listener, config)?.tap_io(|_| {});
    let app = router(state).into_make_service_with_connect_info::<std::net::SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

/// Serves `state` on `listener` until `shutdown` completes; in-flight requests finish first.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = router(state).into_make_service_with_connect_info::<std::net::SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}
