//! `GET /metrics` in the Prometheus text format: requests and latency by route and status, shed
//! requests, candidates scored, impressions, the served model's version, and model swaps.

use crate::AppState;
use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: String,
    pub method: String,
    pub status: String,
}

/// A label with one `kind` value.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: &'static str,
}

#[derive(Debug)]
pub struct Metrics {
    registry: Mutex<Registry>,
    pub requests: Family<RouteLabels, Counter>,
    pub latency: Family<RouteLabels, Histogram>,
    pub shed: Counter,
    pub candidates_scored: Counter,
    pub impressions_logged: Counter,
    pub impressions_dropped: Counter,
    pub treatments_unavailable: Counter,
    spans_stored: Counter,
    pub spans_sampled_out: Counter,
    redactions: Family<KindLabel, Counter>,
    model_version: Gauge,
    model_items: Gauge,
    writes_failing: Family<KindLabel, Gauge>,
    swaps: Counter,
    failed_swaps: Counter,
    cache_hits: Counter,
    cache_misses: Counter,
    auth_refused: Family<KindLabel, Counter>,
    audit_failures: Counter,
    /// counts already added to the counters: swaps, failed swaps, cache hits, cache misses
    seen: [AtomicU64; 4],
}

impl Metrics {
    /// A request refused for want of a valid key (`unauthenticated`) or a scope (`forbidden`).
    pub fn auth_refused(&self, kind: &'static str) {
        self.auth_refused.get_or_create(&KindLabel { kind }).inc();
    }

    /// An audit entry that could not be written.
    pub fn audit_failed(&self) {
        self.audit_failures.inc();
    }

    /// `n` spans stored, with what redaction replaced in them.
    pub fn record_spans(&self, n: u64, r: &encore_telemetry::Redactions) {
        self.spans_stored.inc_by(n);
        for (kind, count) in [
            ("email", r.emails),
            ("card", r.cards),
            ("phone", r.phones),
            ("ip", r.ips),
            ("custom", r.custom),
        ] {
            if count > 0 {
                self.redactions
                    .get_or_create(&KindLabel { kind })
                    .inc_by(count);
            }
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("encore");
        let requests = Family::<RouteLabels, Counter>::default();
        // 50 µs .. ~1.6 s
        let latency = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.000_05, 2.0, 16))
        });
        let m = Metrics {
            requests,
            latency,
            shed: Counter::default(),
            candidates_scored: Counter::default(),
            impressions_logged: Counter::default(),
            impressions_dropped: Counter::default(),
            treatments_unavailable: Counter::default(),
            spans_stored: Counter::default(),
            spans_sampled_out: Counter::default(),
            redactions: Family::default(),
            model_version: Gauge::default(),
            model_items: Gauge::default(),
            writes_failing: Family::default(),
            swaps: Counter::default(),
            failed_swaps: Counter::default(),
            cache_hits: Counter::default(),
            cache_misses: Counter::default(),
            auth_refused: Family::default(),
            audit_failures: Counter::default(),
            seen: Default::default(),
            registry: Mutex::new(Registry::default()),
        };
        registry.register(
            "http_requests",
            "HTTP requests by route, method and status",
            m.requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency by route, method and status",
            m.latency.clone(),
        );
        registry.register(
            "requests_shed",
            "recommendation requests refused with 503 (over the in-flight limit)",
            m.shed.clone(),
        );
        registry.register(
            "candidates_scored",
            "items scored for recommendation requests",
            m.candidates_scored.clone(),
        );
        registry.register(
            "impressions_logged",
            "impression events written",
            m.impressions_logged.clone(),
        );
        registry.register(
            "impressions_dropped",
            "impression events dropped (write queue full)",
            m.impressions_dropped.clone(),
        );
        registry.register(
            "spans_stored",
            "trace spans stored (durable)",
            m.spans_stored.clone(),
        );
        registry.register(
            "spans_sampled_out",
            "trace spans not stored by the sampling rules (traces without errors or slow spans, beyond the rate)",
            m.spans_sampled_out.clone(),
        );
        registry.register(
            "redactions",
            "personal data replaced in spans before storage, by kind",
            m.redactions.clone(),
        );
        registry.register(
            "experiment_treatments_unavailable",
            "listeners served the default model because their variant's model alias was not loaded (not counted as exposed)",
            m.treatments_unavailable.clone(),
        );
        registry.register(
            "model_version",
            "version of the served model (0: none)",
            m.model_version.clone(),
        );
        registry.register(
            "model_items",
            "items in the served model's catalogue",
            m.model_items.clone(),
        );
        registry.register(
            "storage_writes_failing",
            "1 while writes to a store fail (disk full, I/O errors; /readyz says why), else 0",
            m.writes_failing.clone(),
        );
        registry.register("model_swaps", "model versions swapped in", m.swaps.clone());
        registry.register(
            "model_swap_failures",
            "model versions that failed to load",
            m.failed_swaps.clone(),
        );
        registry.register(
            "cache_hits",
            "home lists answered from the per-listener cache",
            m.cache_hits.clone(),
        );
        registry.register(
            "cache_misses",
            "home lists computed (not in the cache)",
            m.cache_misses.clone(),
        );
        registry.register(
            "auth_refused",
            "requests refused: no valid key (unauthenticated) or a key without the scope (forbidden)",
            m.auth_refused.clone(),
        );
        registry.register(
            "audit_failures",
            "audit entries that could not be written (the request was answered)",
            m.audit_failures.clone(),
        );
        *m.registry.lock().unwrap_or_else(|e| e.into_inner()) = registry;
        m
    }
}

/// Records every routed request.
pub async fn track(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let method = req.method().to_string();
    let start = std::time::Instant::now();
    let response = next.run(req).await;
    let labels = RouteLabels {
        route,
        method,
        status: response.status().as_u16().to_string(),
    };
    state.metrics.requests.get_or_create(&labels).inc();
    state
        .metrics
        .latency
        .get_or_create(&labels)
        .observe(start.elapsed().as_secs_f64());
    response
}

#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, description = "Prometheus text format", content_type = "application/openmetrics-text", body = String)))]
pub async fn render(State(state): State<AppState>) -> Response {
    let m = &state.metrics;
    let (events, traces) = crate::health::storage_health(&state);
    for (kind, failing) in [("events", events.is_some()), ("traces", traces.is_some())] {
        m.writes_failing
            .get_or_create(&KindLabel { kind })
            .set(i64::from(failing));
    }
    if let Some(served) = state.serving.as_ref().map(|s| &s.served) {
        match served.get() {
            Some(model) => {
                m.model_version.set(i64::from(model.version));
                m.model_items.set(model.n_items() as i64);
            }
            None => {
                m.model_version.set(0);
                m.model_items.set(0);
            }
        }
        let (swaps, failed) = served.swap_counts();
        let (hits, misses) = served.cache.counts();
        let add = |counter: &Counter, seen: &AtomicU64, now: u64| {
            let before = seen.swap(now, Ordering::Relaxed);
            counter.inc_by(now.saturating_sub(before));
        };
        add(&m.swaps, &m.seen[0], swaps);
        add(&m.failed_swaps, &m.seen[1], failed);
        add(&m.cache_hits, &m.seen[2], hits);
        add(&m.cache_misses, &m.seen[3], misses);
    }
    let mut text = String::new();
    let registry = m.registry.lock().unwrap_or_else(|e| e.into_inner());
    if prometheus_client::encoding::text::encode(&mut text, &registry).is_err() {
        return (
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            "cannot encode metrics",
        )
            .into_response();
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response()
}
