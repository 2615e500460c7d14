//! The commented default file written by `encore config init`.

/// A complete `encore.toml` with every key at its default and a comment saying what it does and
/// what it accepts. A test keeps it equal to [`crate::Config::default`].
pub fn default_file_text() -> &'static str {
    r#"# encore configuration.
# Precedence, lowest first: built-in defaults < this file < environment variables
# ENCORE__SECTION__KEY (e.g. ENCORE__SERVER__BIND=0.0.0.0:7878) < command-line flags.
# `encore config show` prints the effective value of every key and where it came from.

[data]
# Directory for the event log, metadata and models. Created on first use and locked so that only
# one encore process uses it at a time. Flag: --data-dir.
dir = "./encore-data"

[log]
# One of: error, warn, info, debug, trace. Flag: --log-level. `debug` also prints error chains.
level = "info"
# One of: text, json (one JSON object per line, for log shippers). Flag: --log-format.
format = "text"

[server]
# Address the HTTP API listens on (host:port).
bind = "127.0.0.1:7878"
# Address of the OTLP/gRPC trace receiver (host:port; "" for none). OTLP/HTTP is always on the
# HTTP API at /v1/traces.
otlp_grpc = "127.0.0.1:4317"
# "required": every request but the open routes carries `Authorization: Bearer KEY` (keys come
# from `encore keys create`). "off": every caller may do everything; refused unless the server
# listens on loopback only.
auth = "required"
# Routes answered without a key.
open_routes = ["/healthz", "/readyz", "/metrics", "/openapi.json"]
# Where alert and registry webhooks (and evaluation tasks given over the API) may send: "*" is
# any public address; host names, "*.example.com", IP addresses and CIDR networks add more.
# Private and loopback addresses are reached only when listed, e.g. ["*", "10.0.0.0/8"].
webhook_allow = ["*"]
# HMAC-SHA256 key of the X-Encore-Signature header on webhook bodies; better set in the
# environment as ENCORE__SERVER__WEBHOOK_SECRET. Empty: a random key in <data dir>/webhook-secret.
webhook_secret = ""
# PEM file of certificates trusted for outbound https (judges, webhooks) besides Mozilla's roots.
ca_file = ""
# PEM certificate chain and private key: the HTTP API and the OTLP/gRPC receiver speak TLS.
tls_cert = ""
tls_key = ""
# What this node does in a deployment of several: "all" (everything, one machine), "ingest"
# (takes events, passes them to the shared bus), "serve" (answers requests, following the bus),
# "worker" (writes the bus into the event log). Every role but "all" needs [storage] bus.
role = "all"
# The node's name among the deployment's (stable across restarts); "" takes one from the
# data directory's path.
node = ""

[ingest]
# An event id seen again within this many days (of event time) is a duplicate and is dropped.
dedup_window_days = 7
# Rows held in memory and in the write-ahead log before they are sealed into Parquet segments.
seal_rows = 1000000
# Batches waiting for the log writer; when it is full, POST /v1/events answers 503.
write_queue = 64
# Most rows in one POST /v1/events request (413 above), and the largest body in bytes.
max_batch_rows = 10000
max_body_bytes = 16777216
# Days listening events are kept, by event time, in whole days (0: forever); checked at start
# and every hour. Erasing one listener: `encore privacy erase USER`.
retention_days = 0

[storage]
# Rows are sealed from the write-ahead log into Parquet segments (what DuckDB, Spark or pandas
# read under <data>/events/*/segments and <data>/traces/*/segments) at the latest this many
# seconds after they arrive; 0: only when seal_rows is reached or the server stops.
seal_interval_s = 60
# Where the metadata (registry, experiments, evaluations, keys, audit, feature definitions)
# lives: "" for SQLite files in the data directory, or a PostgreSQL URL that every node of a
# deployment shares, e.g. "postgres://encore:PASSWORD@db.internal:5432/encore". Each component
# is a schema <metadata_schema>_<component>, created and migrated on first use.
metadata = ""
metadata_schema = "encore"
# Where model artifacts and HNSW indexes live: "" for files in the data directory, or
# "s3://bucket/prefix" that every node shares (endpoint, region and credentials the usual AWS
# way: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION, AWS_ENDPOINT_URL).
objects = ""
# The event bus between ingest, worker and serving nodes: "" for a file in the data directory
# (one machine), or a NATS server with JetStream, e.g. "nats://nats.internal:4222".
bus = ""
# The JetStream stream's name on that server (deployments sharing a server differ).
bus_stream = "encore"
# The online store (online features): "" for a file in the data directory, or a Redis server
# every node shares, e.g. "redis://:PASSWORD@redis.internal:6379/0": workers write it from the
# bus, serving nodes read it through their cache, kept coherent by Redis' change channel.
online = ""
# The prefix of every key encore writes there (deployments sharing a server differ).
online_prefix = "encore"

[registry]
# The gate in front of the `production` alias: a version must score at least production's
# gate_metric minus gate_tolerance (on the same split), have coverage@10 >= gate_min_coverage,
# and its artifact must load. `encore models promote --force --reason ...` overrides it.
gate_metric = "ndcg@10"
gate_tolerance = 0.005
gate_min_coverage = 0.001
# Every alias move is POSTed as JSON to these URLs (http:// only), retried up to
# webhook_attempts times with exponential backoff starting at webhook_backoff_ms.
webhooks = []
webhook_attempts = 5
webhook_backoff_ms = 200

[serving]
# The registered model whose `production` version `encore serve` loads; when the alias moves,
# the new version is loaded in the background and swapped in.
model = "recommender"
# Recommendation requests computed at once; beyond it the answer is 503 with Retry-After.
max_in_flight = 64
# Log every list served to a known listener as `impression` events (for attribution).
impressions = true
# Listeners whose plays since training are remembered for fold-in.
recent_users = 100000
# Candidate retrieval: auto (exact scoring up to hnsw_threshold items, an HNSW graph above),
# exact, or hnsw. The graph is built once per model version and memory-mapped afterwards.
retrieval = "auto"
hnsw_threshold = 250000
# Home lists are cached per listener for cache_seconds (0 turns the cache off) and dropped as soon
# as the listener plays something; at most cache_users listeners are kept.
cache_seconds = 30
cache_users = 100000
# A user-artist feature of the applied feature definitions (`encore features apply`), e.g.
# "user_artist__skip_rate_30d", that demotes artists in home lists by rerank_weight x value
# (the same definition computes it for training sets). Empty: none.
rerank_feature = ""
rerank_weight = 0.5
# Online feature reads (`POST /v1/features`) keep up to this many MB of entities in memory,
# kept current by the writer; 0 reads the store every time.
feature_cache_mb = 256

[telemetry]
# What is stored of prompts and completions: "full" (after redaction), "metadata_only" or "none".
# Emails, card numbers (Luhn-checked), phone numbers and IP addresses are always redacted.
content = "full"
# Extra regular expressions replaced by [REDACTED] in content and attributes before storage.
redact_patterns = []
# When not empty, user ids are stored as a keyed hash (HMAC-SHA256) with this key.
user_id_key = ""
# Spans held in memory and in the write-ahead log before they are sealed into Parquet segments.
seal_rows = 100000
# Share of encore's own recommendation requests stored as spans (project "encore"), so model
# serving and LLM features are seen in one place. 0 turns it off.
self_trace_rate = 0.01
# Share of traces stored, chosen by trace id (a trace is kept or dropped whole); a trace with an
# error or a span slower than keep_slower_than_ms is always kept.
sample_rate = 1.0
keep_slower_than_ms = 2000.0
# Days of spans kept; older days are dropped (checked hourly). 0 keeps everything.
retention_days = 30
# Past sample_after_days (0: never), stored traces without errors or slow spans are thinned to
# compaction_sample_rate (whole traces, by trace id).
sample_after_days = 0
compaction_sample_rate = 0.1
# Per project or per service, days kept instead (e.g. playlists = 7; the shorter applies), and
# per service, the content policy instead (e.g. support-bot = "none"):
# [telemetry.retention_days_by_project]
# [telemetry.retention_days_by_service]
# [telemetry.content_by_service]
# Prices in USD per million tokens that replace or extend the built-in table, e.g.
# prices = [{ model = "my-finetune", input = 0.5, output = 1.5, cached_input = 0.25 }]
prices = []

[evals]
# Spans waiting for online evaluation (rules: `encore evals rules add`); past it, sampled spans
# are dropped and counted rather than slowing ingest. workers score them.
queue = 10000
workers = 2
# How often alert rules (`encore alerts add`) are evaluated, in milliseconds.
alert_interval_ms = 15000
# Webhook delivery: retries after the first attempt (with backoff), and the timeout of each.
webhook_retries = 3
webhook_timeout_ms = 5000

[evals.judge]
# The OpenAI-compatible chat-completions endpoint of LLM judges and chat tasks, e.g. a local
# vLLM, Ollama, llama.cpp or LiteLLM server: "http://127.0.0.1:11434/v1" (plain http only).
base_url = ""
model = ""
# Sent as a bearer token; better set in the environment as ENCORE__EVALS__JUDGE__API_KEY.
api_key = ""
# Per attempt; failed attempts (connection, timeout, 408, 429, 5xx, unparseable reply) are
# retried max_retries times with backoff doubling from backoff_ms. concurrency: calls in flight.
timeout_ms = 30000
max_retries = 3
backoff_ms = 500
concurrency = 4

[monitors]
# How often `encore serve` (roles all and worker) profiles new playback segments and judges the
# monitors' complete windows, in seconds (0: never; `encore monitors run` does it by hand).
interval_s = 60

[demo]
# Size of the simulated world `encore demo` creates: listeners, days of history, and the seed
# (the same seed always gives the same world).
users = 2000
days = 30
seed = 42
"#
}

#[cfg(test)]
mod tests {
    use crate::{Config, Layers, Source};

    #[test]
    fn template_equals_defaults_and_sets_every_key() {
        let layers = Layers {
            file: Some(("t.toml".into(), super::default_file_text().into())),
            ..Layers::default()
        };
        let loaded = layers.load().unwrap();
        assert_eq!(loaded.config, Config::default());
        for (key, _, source) in loaded.entries() {
            assert!(
                matches!(source, Source::File { .. }),
                "template misses `{key}`"
            );
        }
    }
}
