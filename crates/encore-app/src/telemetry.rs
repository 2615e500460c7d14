//! Traces of model-driven features: OTLP exports normalized, redacted, priced and stored, their
//! GenAI log events kept as span content, newly stored spans offered to online evaluation, and
//! encore's own requests sampled into the same store.

use crate::AppError;
use crate::admission::Limit;
use crate::worker::{BatchWriter, Batching};
use encore_access::Principal;
use encore_core::ErrorCode;
use encore_telemetry::{Normalizer, Redactions, Span, SpanStore};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use std::sync::{Arc, Mutex, OnceLock};

/// The trace store and how spans are normalized on the way in.
#[derive(Debug)]
pub struct Telemetry {
    pub store: SpanStore,
    pub normalizer: Normalizer,
    /// exports being stored at once
    pub exports: Limit,
    /// redactions so far, by kind
    pub redactions: Mutex<Redactions>,
    /// encore's own requests as spans, when sampled
    self_tracer: OnceLock<SelfTracer>,
    /// online evaluation, offered every newly stored span
    pub online: OnceLock<Arc<encore_evals::online::OnlineEvaluator>>,
}

/// Samples encore's own recommendation requests into the trace store (project `encore`), so
/// model serving and LLM features are seen side by side. Spans go through a bounded queue to a
/// writer that stores them in batches; a full queue drops them.
#[derive(Debug)]
struct SelfTracer {
    /// requests kept, out of 2^32
    threshold: u64,
    writer: BatchWriter<Span>,
}

/// What one export did.
#[derive(Debug, Default, Clone)]
pub struct Stored {
    /// spans newly stored (a span sent again is stored once)
    pub spans: usize,
    /// spans left out by sampling
    pub sampled_out: usize,
    /// spans with token counts that no price matched
    pub unpriced: usize,
    pub redactions: Redactions,
}

impl Telemetry {
    pub fn new(store: SpanStore, normalizer: Normalizer, max_in_flight: usize) -> Telemetry {
        Telemetry {
            store,
            normalizer,
            exports: Limit::new(max_in_flight),
            redactions: Mutex::default(),
            self_tracer: OnceLock::new(),
            online: OnceLock::new(),
        }
    }

    /// Stores `span` (say, an LLM judge's call) through the background writer, dropping it
    /// when the writer's queue is full.
    pub fn record(&self, span: Span) {
        if let Some(t) = self.self_tracer.get() {
            let _ = t.writer.try_send(vec![span]);
        }
    }

    /// Starts the background span writer, and traces `rate` (0 to 1) of encore's own
    /// recommendation requests into the store through it.
    pub fn trace_own_requests(self: &Arc<Self>, rate: f64) -> Result<(), AppError> {
        if self.self_tracer.get().is_some() {
            return Ok(());
        }
        let weak = Arc::downgrade(self);
        let writer = BatchWriter::start(
            "self-trace-writer",
            Batching {
                queue: 10_000,
                max_items: 5_000,
                linger: std::time::Duration::from_millis(500),
            },
            move |batch: Vec<Span>| {
                let Some(t) = weak.upgrade() else { return };
                if let Err(e) = t.store.append(&batch) {
                    tracing::warn!("own request spans not stored: {e}");
                }
            },
        )
        .map_err(|e| AppError::new(ErrorCode::Internal, format!("span writer: {e}")))?;
        let _ = self.self_tracer.set(SelfTracer {
            threshold: (rate.clamp(0.0, 1.0) * f64::from(u32::MAX)) as u64,
            writer,
        });
        Ok(())
    }

    /// Records one of encore's own requests if it is sampled: `name` as a server span of
    /// service `encore-serving` in project `encore`.
    pub fn own_request(
        &self,
        name: &str,
        user: &str,
        slate: &encore_serving::Slate,
        started: (i64, std::time::Instant),
        cached: bool,
    ) {
        let Some(tracer) = self.self_tracer.get().filter(|t| t.threshold > 0) else {
            return;
        };
        let request_id = &slate.request_id;
        let h = encore_experiments::assignment::hash("encore-self-trace", request_id);
        if (h >> 32) > tracer.threshold {
            return;
        }
        let mut mapped = encore_telemetry::normalize::Mapped {
            operation: Some("recommend".into()),
            request_model: Some(slate.model.clone()),
            response_model: Some(format!("{}@{}", slate.model, slate.model_version)),
            user: Some(self.normalizer.user_id(user)),
            ai_kind: Some("RECOMMENDER".into()),
            ..Default::default()
        };
        let a = &mut mapped.attributes;
        a.insert("request_id".into(), request_id.as_str().into());
        a.insert("items".into(), slate.items.len().into());
        a.insert("cached".into(), cached.into());
        a.insert(
            "strategy".into(),
            serde_json::to_value(slate.strategy).unwrap_or_default(),
        );
        if !slate.experiments.is_empty() {
            a.insert(
                "experiments".into(),
                serde_json::to_value(&slate.experiments).unwrap_or_default(),
            );
        }
        let elapsed = started.1.elapsed().as_nanos() as i64;
        let span = Span {
            project: "encore".into(),
            trace_id: format!("{h:016x}{:016x}", h.rotate_left(17) ^ 0x9E37_79B9_7F4A_7C15),
            span_id: format!("{:016x}", h.rotate_left(31)),
            parent_span_id: None,
            name: name.into(),
            kind: "server",
            service: "encore-serving".into(),
            start_ns: started.0,
            end_ns: started.0 + elapsed,
            status: "ok",
            status_message: None,
            mapped,
            cost: None,
        };
        let _ = tracer.writer.try_send(vec![span]);
    }

    /// Normalizes, redacts, samples, prices and stores one trace export from `caller`; the
    /// spans newly stored (never one sent before) are offered to online evaluation.
    pub fn store_export(
        &self,
        request: &ExportTraceServiceRequest,
        caller: &Principal,
    ) -> Result<Stored, AppError> {
        let mut redactions = Redactions::default();
        let mut spans = self.normalizer.spans(request, &mut redactions);
        // a key limited to projects writes only those: one span of another refuses the export
        if let Some(other) = spans.iter().find(|s| !caller.allows_project(&s.project)) {
            return Err(AppError::new(
                ErrorCode::PermissionDenied,
                format!(
                    "the key {:?} may not write spans of project {:?}",
                    caller.name, other.project
                ),
            ));
        }
        let sampled_out = self.normalizer.sampling.apply(&mut spans);
        let unpriced = spans
            .iter()
            .filter(|s| {
                s.cost.is_none()
                    && (s.mapped.tokens.input.is_some() || s.mapped.tokens.output.is_some())
            })
            .count();
        let fresh = self.store.append_fresh(&spans)?;
        if let Some(online) = self.online.get() {
            online.offer(&fresh);
        }
        self.redactions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .add(&redactions);
        Ok(Stored {
            spans: fresh.len(),
            sampled_out,
            unpriced,
            redactions,
        })
    }

    /// Stores what one log export's GenAI events say of their spans; returns the spans given
    /// content.
    pub fn store_logs(
        &self,
        request: &ExportLogsServiceRequest,
        caller: &Principal,
    ) -> Result<usize, AppError> {
        let mut counts = Redactions::default();
        let content = self.normalizer.log_content(request, &mut counts);
        if let Some(other) = content
            .spans
            .iter()
            .find(|c| !caller.allows_project(&c.project))
        {
            return Err(AppError::new(
                ErrorCode::PermissionDenied,
                format!(
                    "the key {:?} may not write events of project {:?}",
                    caller.name, other.project
                ),
            ));
        }
        let stored = self.store.append_content(&content.spans)?;
        self.redactions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .add(&counts);
        Ok(stored)
    }
}
