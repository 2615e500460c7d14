//! Typed, layered configuration.
//!
//! Layers, lowest first: built-in defaults < `encore.toml` < environment `ENCORE__SECTION__KEY` <
//! command-line flags. Every leaf value remembers which layer set it, so `encore config show` can
//! say where a value came from, and every error names the key, the file and line (or the variable
//! or flag) and what is allowed.
//!
//! ```
//! use encore_config::{Layers, Source};
//! let layers = Layers {
//!     file: Some(("encore.toml".into(), "[server]\nbind = \"127.0.0.1:9000\"\n".into())),
//!     env: vec![("ENCORE__LOG__LEVEL".into(), "debug".into())],
//!     flags: vec![],
//! };
//! let loaded = layers.load().unwrap();
//! assert_eq!(loaded.config.server.bind.port(), 9000);
//! assert_eq!(loaded.source("log.level"), Some(&Source::Env { var: "ENCORE__LOG__LEVEL".into() }));
//! ```

mod error;
mod layers;
mod template;

pub use error::ConfigError;
pub use layers::{Flag, Layers, Loaded, Source};
pub use template::default_file_text;

use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::PathBuf;

/// The name of the config file looked up in the working directory when `--config` is not given.
pub const DEFAULT_FILE: &str = "encore.toml";

/// Prefix of environment overrides: `ENCORE__SERVER__BIND=0.0.0.0:7878`.
pub const ENV_PREFIX: &str = "ENCORE__";

/// The whole effective configuration.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub data: DataConfig,
    pub log: LogConfig,
    pub server: ServerConfig,
    pub ingest: IngestConfig,
    pub storage: StorageConfig,
    pub registry: RegistryConfig,
    pub serving: ServingConfig,
    pub telemetry: TelemetryConfig,
    pub evals: EvalsConfig,
    pub monitors: MonitorsConfig,
    pub demo: DemoConfig,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataConfig {
    /// The data directory: event log, metadata, models. Locked against a second process.
    pub dir: PathBuf,
}

impl Default for DataConfig {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("./encore-data"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

impl LogLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

impl LogFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    pub level: LogLevel,
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: LogLevel::Info,
            format: LogFormat::Text,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address the HTTP server listens on.
    pub bind: SocketAddr,
    /// Address of the OTLP/gRPC trace receiver (empty: none).
    pub otlp_grpc: String,
    /// Whether requests must carry an API key; `off` is refused unless every listener is on a
    /// loopback address.
    pub auth: AuthMode,
    /// Routes answered without a key.
    pub open_routes: Vec<String>,
    /// Where webhooks and API-given task endpoints may send: `*` (any public address), host
    /// names, `*.suffix`, IP addresses or CIDR networks. Private and loopback addresses only
    /// when listed.
    pub webhook_allow: Vec<String>,
    /// The HMAC-SHA256 key webhook bodies are signed with (`X-Encore-Signature`); empty: a
    /// random key kept in `<data dir>/webhook-secret`.
    pub webhook_secret: String,
    /// PEM certificates trusted for outbound https besides Mozilla's roots (a company CA).
    pub ca_file: String,
    /// PEM certificate chain and private key: the HTTP API and the OTLP/gRPC receiver speak
    /// TLS (both empty: plain TCP).
    pub tls_cert: String,
    pub tls_key: String,
    /// What this node does in a deployment of several (`all`: everything, one machine;
    /// `ingest`: takes events and passes them to the shared bus; `serve`: answers
    /// recommendation and feature requests, following the bus; `worker`: writes the bus into
    /// the event log and its segments). Every role but `all` needs `[storage] bus`.
    pub role: Role,
    /// The node's name among the deployment's (its bus consumer is `serve-<node>`): stable
    /// across restarts; "" takes one from the data directory's path.
    pub node: String,
}

/// `[server] role`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    #[default]
    All,
    Ingest,
    Serve,
    Worker,
}

/// `[server] auth`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    Required,
    Off,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 7878)),
            otlp_grpc: "127.0.0.1:4317".into(),
            auth: AuthMode::Required,
            open_routes: ["/healthz", "/readyz", "/metrics", "/openapi.json"]
                .map(String::from)
                .to_vec(),
            webhook_allow: vec!["*".into()],
            webhook_secret: String::new(),
            ca_file: String::new(),
            tls_cert: String::new(),
            tls_key: String::new(),
            role: Role::All,
            node: String::new(),
        }
    }
}

/// The stores' files: how soon rows reach the Parquet segments other tools read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// Rows held in memory (durable in the write-ahead log) are sealed into Parquet segments at
    /// the latest this many seconds after they arrived, so DuckDB, Spark or pandas reading the
    /// segments see them (0: only when `seal_rows` is reached or the server stops).
    pub seal_interval_s: u32,
    /// Where the metadata (registry, experiments, evaluations, keys, audit, feature
    /// definitions) lives: "" for SQLite files in the data directory, or a PostgreSQL URL
    /// (`postgres://user:password@host:5432/db`) that every node of a deployment shares.
    pub metadata: String,
    /// The prefix of the PostgreSQL schemas (`<prefix>_registry`, `<prefix>_experiments`, ...):
    /// deployments sharing one database use different prefixes.
    pub metadata_schema: String,
    /// Where model artifacts and HNSW indexes live: "" for files in the data directory, or
    /// `s3://bucket/prefix` that every node shares (endpoint, region and credentials the usual
    /// AWS way: `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, `AWS_ENDPOINT_URL`).
    pub objects: String,
    /// The event bus between ingest, worker and serving nodes: "" for a file in the data
    /// directory (one machine), or a NATS server with JetStream (`nats://host:4222`) that
    /// every node of a deployment shares.
    pub bus: String,
    /// The JetStream stream's name on that server (deployments sharing a server use
    /// different names).
    pub bus_stream: String,
    /// The online store: "" for a file in the data directory, or a Redis server
    /// (`redis://[:password@]host:6379/0`) every node shares; workers write it from the bus,
    /// serving nodes read it.
    pub online: String,
    /// The prefix of the keys written to that Redis (deployments sharing a server differ).
    pub online_prefix: String,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            seal_interval_s: 60,
            metadata: String::new(),
            metadata_schema: "encore".into(),
            objects: String::new(),
            bus: String::new(),
            bus_stream: "encore".into(),
            online: String::new(),
            online_prefix: "encore".into(),
        }
    }
}

impl StorageConfig {
    /// The interval as the logs take it.
    pub fn seal_interval(&self) -> Option<std::time::Duration> {
        (self.seal_interval_s > 0)
            .then(|| std::time::Duration::from_secs(u64::from(self.seal_interval_s)))
    }
}

/// The ingest path: deduplication, the event log, request limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    /// An event id seen again within this many days (of event time) is a duplicate.
    pub dedup_window_days: u32,
    /// Rows held in memory (and in the WAL) before they are sealed into Parquet segments.
    pub seal_rows: u32,
    /// Batches waiting for the log writer; when full, HTTP ingest answers 503.
    pub write_queue: u32,
    /// Most rows accepted in one request.
    pub max_batch_rows: u32,
    /// Largest request body, in bytes.
    pub max_body_bytes: u64,
    /// Days listening events are kept, by event time, in whole days (0: forever). Checked when
    /// the server starts and every hour.
    pub retention_days: u32,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            dedup_window_days: 7,
            seal_rows: 1_000_000,
            write_queue: 64,
            max_batch_rows: 10_000,
            max_body_bytes: 16 * 1024 * 1024,
            retention_days: 0,
        }
    }
}

/// The model registry: the gate in front of `production`, and who hears about alias moves.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegistryConfig {
    /// The offline metric a new production version must not lose on.
    pub gate_metric: String,
    /// How much lower than production's that metric may be.
    pub gate_tolerance: f64,
    /// The least catalogue coverage@10 a production version must have.
    pub gate_min_coverage: f64,
    /// URLs that receive a POST (JSON) for every alias move.
    pub webhooks: Vec<String>,
    /// Attempts per webhook delivery, with exponential backoff from `webhook_backoff_ms`.
    pub webhook_attempts: u32,
    pub webhook_backoff_ms: u64,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        Self {
            gate_metric: "ndcg@10".into(),
            gate_tolerance: 0.005,
            gate_min_coverage: 0.001,
            webhooks: Vec::new(),
            webhook_attempts: 5,
            webhook_backoff_ms: 200,
        }
    }
}

/// Recommendations served by `encore serve`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServingConfig {
    /// The registered model whose `production` version is served (and hot-swapped).
    pub model: String,
    /// Recommendation requests computed at once; beyond it the server answers 503 at once.
    pub max_in_flight: u32,
    /// Log every list served to a known listener as `impression` events.
    pub impressions: bool,
    /// Listeners whose plays since training are kept for fold-in.
    pub recent_users: u32,
    /// Candidate retrieval: `auto` (exact up to `hnsw_threshold` items, HNSW above), `exact`, `hnsw`.
    pub retrieval: Retrieval,
    pub hnsw_threshold: u32,
    /// Home lists are cached per listener this many seconds (0: no cache); a play drops them.
    pub cache_seconds: u32,
    /// Listeners whose home lists are cached.
    pub cache_users: u32,
    /// A user-artist feature (`<view>__<feature>`, e.g. `user_artist__skip_rate_30d`) that
    /// demotes artists in home lists by `rerank_weight × value`; empty: none.
    pub rerank_feature: String,
    pub rerank_weight: f32,
    /// Online feature reads keep up to this many MB of entities in memory (0: no cache).
    pub feature_cache_mb: u32,
}

/// How serving finds candidates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Retrieval {
    Auto,
    Exact,
    Hnsw,
}

impl Default for ServingConfig {
    fn default() -> Self {
        Self {
            model: "recommender".into(),
            max_in_flight: 64,
            impressions: true,
            recent_users: 100_000,
            retrieval: Retrieval::Auto,
            hnsw_threshold: 250_000,
            cache_seconds: 30,
            cache_users: 100_000,
            rerank_feature: String::new(),
            rerank_weight: 0.5,
            feature_cache_mb: 256,
        }
    }
}

/// Traces taken by `encore serve` (OTLP).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// What is kept of prompts and completions: `full` (redacted), `metadata_only`, `none`.
    pub content: ContentPolicy,
    /// Extra patterns (regular expressions) replaced by `[REDACTED]` before storage.
    pub redact_patterns: Vec<String>,
    /// When not empty, user ids are stored as a keyed hash (HMAC-SHA256) with this key.
    pub user_id_key: String,
    /// Spans held in memory and in the write-ahead log before they are sealed into segments.
    pub seal_rows: u32,
    /// Share of encore's own recommendation requests stored as spans (project `encore`).
    pub self_trace_rate: f64,
    /// Share of traces stored (by trace id); traces with an error or a slow span are always kept.
    pub sample_rate: f64,
    /// A span at least this slow keeps its trace whatever the sample rate.
    pub keep_slower_than_ms: f64,
    /// Days of spans kept (whole days are dropped once older); 0 keeps everything.
    pub retention_days: u32,
    /// Per project, days kept instead of `retention_days`.
    pub retention_days_by_project: std::collections::BTreeMap<String, u32>,
    /// Per service, days kept instead (the shorter of a project's and a service's applies).
    pub retention_days_by_service: std::collections::BTreeMap<String, u32>,
    /// Past this many days, stored traces are thinned to `compaction_sample_rate` (0: never).
    pub sample_after_days: u32,
    pub compaction_sample_rate: f64,
    /// Per service, the content policy instead of `content`.
    pub content_by_service: std::collections::BTreeMap<String, ContentPolicy>,
    /// Prices (USD per million tokens) that replace or extend the built-in table.
    pub prices: Vec<PriceConfig>,
}

/// Evaluation of LLM features by `encore serve`: online rules, judges and alerts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EvalsConfig {
    /// Spans waiting for online evaluation; past it, sampled spans are dropped (and counted).
    pub queue: u32,
    /// Threads scoring sampled spans.
    pub workers: u32,
    /// How often alert rules are evaluated, in milliseconds.
    pub alert_interval_ms: u64,
    /// Webhook delivery: retries after the first attempt, and the timeout of each.
    pub webhook_retries: u32,
    pub webhook_timeout_ms: u64,
    pub judge: JudgeConfig,
}

impl Default for EvalsConfig {
    fn default() -> Self {
        Self {
            queue: 10_000,
            workers: 2,
            alert_interval_ms: 15_000,
            webhook_retries: 3,
            webhook_timeout_ms: 5_000,
            judge: JudgeConfig::default(),
        }
    }
}

/// Monitoring of the listening data by `encore serve` (roles `all` and `worker`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MonitorsConfig {
    /// How often new playback segments are profiled and complete windows judged, in seconds
    /// (0: never; `encore monitors run` still does it by hand).
    pub interval_s: u32,
}

impl Default for MonitorsConfig {
    fn default() -> Self {
        Self { interval_s: 60 }
    }
}

/// The OpenAI-compatible endpoint LLM judges and chat tasks call (`[evals.judge]`), as
/// `encore-evals` defines it.
pub use encore_evals::judge::JudgeConfig;

/// One model's prices, USD per million tokens.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceConfig {
    /// a model name; its dated versions match too (`gpt-4o-mini` prices
    /// `gpt-4o-mini-2024-07-18`), a longer name does not (`gpt-4o-mini-tts`)
    pub model: String,
    pub input: f64,
    pub output: f64,
    #[serde(default)]
    pub cached_input: Option<f64>,
    #[serde(default)]
    pub cache_write: Option<f64>,
    #[serde(default)]
    pub reasoning: Option<f64>,
    /// above this many input tokens, the long-context prices apply to the whole call
    #[serde(default)]
    pub long_context_threshold: Option<i64>,
    #[serde(default)]
    pub long_input: Option<f64>,
    #[serde(default)]
    pub long_output: Option<f64>,
}

/// What of an LLM call's content is stored (`[telemetry] content`), as `encore-telemetry`
/// defines it.
pub use encore_telemetry::ContentPolicy;

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            content: ContentPolicy::Full,
            redact_patterns: Vec::new(),
            user_id_key: String::new(),
            seal_rows: 100_000,
            self_trace_rate: 0.01,
            sample_rate: 1.0,
            keep_slower_than_ms: 2_000.0,
            retention_days: 30,
            retention_days_by_project: Default::default(),
            retention_days_by_service: Default::default(),
            sample_after_days: 0,
            compaction_sample_rate: 0.1,
            content_by_service: Default::default(),
            prices: Vec::new(),
        }
    }
}

/// Size of the world `encore demo` simulates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DemoConfig {
    pub users: u32,
    pub days: u32,
    pub seed: u64,
}

impl Default for DemoConfig {
    fn default() -> Self {
        Self {
            users: 2_000,
            days: 30,
            seed: 42,
        }
    }
}

/// A semantic rule broken by an otherwise well-typed value.
#[derive(Debug, Clone, PartialEq)]
pub struct Violation {
    pub key: &'static str,
    pub message: String,
}

impl Config {
    /// Rules serde cannot express. Each violation names its dotted key.
    pub fn validate(&self) -> Vec<Violation> {
        let mut out = Vec::new();
        if self.data.dir.as_os_str().is_empty() {
            out.push(Violation {
                key: "data.dir",
                message: "must not be empty".into(),
            });
        }
        if !self.server.otlp_grpc.is_empty() && self.server.otlp_grpc.parse::<SocketAddr>().is_err()
        {
            out.push(Violation {
                key: "server.otlp_grpc",
                message: format!(
                    "{:?} is not an address, expected host:port (e.g. 127.0.0.1:4317) or \"\" for none",
                    self.server.otlp_grpc
                ),
            });
        }
        let m = &self.storage.metadata;
        if !(m.is_empty() || m.starts_with("postgres://") || m.starts_with("postgresql://")) {
            out.push(Violation {
                key: "storage.metadata",
                message: "expected \"\" (SQLite in the data directory) or a postgres:// URL".into(),
            });
        }
        let o = &self.storage.objects;
        if !(o.is_empty() || o.starts_with("s3://")) {
            out.push(Violation {
                key: "storage.objects",
                message: "expected \"\" (files in the data directory) or s3://bucket/prefix".into(),
            });
        }
        let b = &self.storage.bus;
        if !(b.is_empty() || b.starts_with("nats://")) {
            out.push(Violation {
                key: "storage.bus",
                message: "expected \"\" (a file in the data directory) or nats://host:port".into(),
            });
        }
        let r = &self.storage.online;
        if !(r.is_empty() || r.starts_with("redis://")) {
            out.push(Violation {
                key: "storage.online",
                message: "expected \"\" (a file in the data directory) or redis://host:port/db"
                    .into(),
            });
        }
        let op = &self.storage.online_prefix;
        if !(1..=64).contains(&op.len())
            || !op
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            out.push(Violation {
                key: "storage.online_prefix",
                message: format!("{op:?}: expected 1 to 64 letters, digits, '-', '_' or '.'"),
            });
        }
        if self.server.role != Role::All && b.is_empty() {
            out.push(Violation {
                key: "server.role",
                message: format!(
                    "{:?} needs the shared bus: set [storage] bus = \"nats://host:4222\"",
                    self.server.role
                )
                .to_lowercase(),
            });
        }
        let stream = &self.storage.bus_stream;
        if !(1..=128).contains(&stream.len())
            || !stream
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            out.push(Violation {
                key: "storage.bus_stream",
                message: format!("{stream:?}: expected 1 to 128 letters, digits, '-' or '_'"),
            });
        }
        let prefix = &self.storage.metadata_schema;
        let prefix_ok = prefix.len() <= 40
            && prefix.starts_with(|c: char| c.is_ascii_lowercase())
            && prefix
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !prefix_ok {
            out.push(Violation {
                key: "storage.metadata_schema",
                message: format!(
                    "{prefix:?}: expected lowercase letters, digits and '_' (40 at most), \
                     starting with a letter"
                ),
            });
        }
        if !(1..=10_000_000).contains(&self.demo.users) {
            out.push(Violation {
                key: "demo.users",
                message: format!("{} is out of range, expected 1..=10000000", self.demo.users),
            });
        }
        let positive = [
            ("ingest.seal_rows", u64::from(self.ingest.seal_rows)),
            ("ingest.write_queue", u64::from(self.ingest.write_queue)),
            (
                "ingest.max_batch_rows",
                u64::from(self.ingest.max_batch_rows),
            ),
            ("ingest.max_body_bytes", self.ingest.max_body_bytes),
            ("telemetry.seal_rows", u64::from(self.telemetry.seal_rows)),
        ];
        for (key, value) in positive {
            if value == 0 {
                out.push(Violation {
                    key,
                    message: "must be at least 1".into(),
                });
            }
        }
        if !(0.0..=1.0).contains(&self.telemetry.compaction_sample_rate) {
            out.push(Violation {
                key: "telemetry.compaction_sample_rate",
                message: format!(
                    "{} is out of range, expected 0..=1",
                    self.telemetry.compaction_sample_rate
                ),
            });
        }
        if !(0.0..=1.0).contains(&self.telemetry.sample_rate) {
            out.push(Violation {
                key: "telemetry.sample_rate",
                message: format!(
                    "{} is out of range, expected 0..=1",
                    self.telemetry.sample_rate
                ),
            });
        }
        if !(0.0..=1.0).contains(&self.telemetry.self_trace_rate) {
            out.push(Violation {
                key: "telemetry.self_trace_rate",
                message: format!(
                    "{} is out of range, expected 0..=1",
                    self.telemetry.self_trace_rate
                ),
            });
        }
        if !(0.0..=1.0).contains(&self.registry.gate_tolerance) {
            out.push(Violation {
                key: "registry.gate_tolerance",
                message: format!(
                    "{} is out of range, expected 0..=1",
                    self.registry.gate_tolerance
                ),
            });
        }
        for url in &self.registry.webhooks {
            if !url.starts_with("http://") {
                out.push(Violation {
                    key: "registry.webhooks",
                    message: format!("{url:?} is not an http:// URL"),
                });
            }
        }
        if self.serving.max_in_flight == 0 {
            out.push(Violation {
                key: "serving.max_in_flight",
                message: "must be at least 1".into(),
            });
        }
        if self.registry.webhook_attempts == 0 {
            out.push(Violation {
                key: "registry.webhook_attempts",
                message: "must be at least 1".into(),
            });
        }
        if !(1..=3_650).contains(&self.demo.days) {
            out.push(Violation {
                key: "demo.days",
                message: format!("{} is out of range, expected 1..=3650", self.demo.days),
            });
        }
        out
    }
}
