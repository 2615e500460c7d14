//! What every handler can reach: the application layer's parts this server serves, the limits,
//! keys and metrics.

use crate::keys::Auth;
use crate::meters::Metrics;
use encore_app::evals::Evals;
use encore_app::experiments::Experiments;
use encore_app::features::OnlineFeatures;
use encore_app::ingest::Pipeline;
use encore_app::serving::{RecentPlays, Serving};
use encore_app::telemetry::Telemetry;
use encore_ingest::Ingestor;
use std::sync::Arc;
use tokio::sync::Semaphore;

/// The privacy key of the data directory, for erasures over HTTP.
#[derive(Debug, Clone)]
pub struct PrivacyAccess {
    pub root: std::path::PathBuf,
    pub key: Arc<[u8]>,
}

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
    pub evals: Option<Arc<Evals>>,
    /// the online feature store, when definitions are applied
    pub features: Option<Arc<OnlineFeatures>>,
    pub metrics: Arc<Metrics>,
    /// keys, scopes and the audit log
    pub auth: Auth,
    /// erasures over HTTP, when the server has the data directory's privacy key
    pub privacy: Option<PrivacyAccess>,
    /// monitors of the listening data and their verdicts
    pub monitors: Option<Arc<encore_app::monitors::Monitoring>>,
    pub(crate) in_flight: Arc<Semaphore>,
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
            auth: Auth::off(),
            privacy: None,
            monitors: None,
            in_flight,
        }
    }

    /// Serves every part of `node`: its ingest pipeline (whose subscribers the node chose),
    /// recommendations, experiments, traces, evaluations and online features.
    pub fn with_node(mut self, node: &encore_app::node::Node) -> Self {
        self.ingestor = Arc::clone(&node.ingestor);
        self.pipeline = Arc::clone(&node.pipeline);
        self.metrics.register_serving(&node.serving.counters);
        self.serving = Some(Arc::clone(&node.serving));
        self.experiments = node.experiments.clone();
        self.telemetry = Some(Arc::clone(&node.telemetry));
        self.evals = Some(Arc::clone(&node.evals));
        self.features = node.features.clone();
        self.monitors = node.monitors.clone();
        self
    }

    /// Erases listeners over HTTP with the data directory's privacy key.
    pub fn with_privacy(mut self, privacy: PrivacyAccess) -> Self {
        self.privacy = Some(privacy);
        self
    }

    /// Requires keys (or not) and audits through `auth`.
    pub fn with_auth(mut self, auth: Auth) -> Self {
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
    pub fn with_evals(mut self, evals: Arc<Evals>) -> Self {
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
