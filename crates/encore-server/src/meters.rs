//! What the server counts: requests and latency by route and status, spans stored and sampled
//! out, redactions, refusals and audit failures, and the counters of the application layer it
//! exports (serving). Rendered by [`crate::metrics`].

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::Mutex;

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
    pub(crate) registry: Mutex<Registry>,
    pub requests: Family<RouteLabels, Counter>,
    pub latency: Family<RouteLabels, Histogram>,
    pub(crate) spans_stored: Counter,
    pub spans_sampled_out: Counter,
    pub(crate) redactions: Family<KindLabel, Counter>,
    /// spans with token counts that no price matched (no cost stored)
    pub spans_unpriced: Counter,
    pub(crate) auth_refused: Family<KindLabel, Counter>,
    pub(crate) audit_failures: Counter,
    /// the commit the binary was built from, for `encore_build_info`
    pub(crate) build_sha: std::sync::OnceLock<String>,
}

impl Metrics {
    /// Exports what serving counts (requests shed, candidates scored, impressions, treatments
    /// not available) from now on.
    pub fn register_serving(&self, c: &encore_app::serving::ServingCounters) {
        let mut r = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        r.register(
            "requests_shed",
            "recommendation requests refused with 503 (over the in-flight limit)",
            c.shed.clone(),
        );
        r.register(
            "candidates_scored",
            "items scored for recommendation requests",
            c.candidates_scored.clone(),
        );
        r.register(
            "impressions_logged",
            "impression events written",
            c.impressions_logged.clone(),
        );
        r.register(
            "impressions_dropped",
            "impression events dropped (write queue full)",
            c.impressions_dropped.clone(),
        );
        r.register(
            "experiment_treatments_unavailable",
            "listeners served the default model because their variant's model alias was not loaded (not counted as exposed)",
            c.treatments_unavailable.clone(),
        );
    }

    /// The commit this binary was built from (shown by `encore_build_info`).
    pub fn set_build_sha(&self, sha: &str) {
        let _ = self.build_sha.set(sha.to_owned());
    }

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
            spans_stored: Counter::default(),
            spans_sampled_out: Counter::default(),
            redactions: Family::default(),
            spans_unpriced: Counter::default(),
            auth_refused: Family::default(),
            audit_failures: Counter::default(),
            build_sha: std::sync::OnceLock::new(),
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
            "spans_unpriced",
            "trace spans with token counts whose model has no price (stored without a cost)",
            m.spans_unpriced.clone(),
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
