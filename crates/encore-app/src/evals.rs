//! Evaluation of LLM features on a running node: the evals store, online evaluation of newly
//! stored spans, and the alert engine evaluated on a schedule.

use crate::AppError;
use crate::telemetry::Telemetry;
use encore_evals::alerts::Engine;
use encore_evals::catalog::CatalogIndex;
use encore_evals::judge::{JudgeCall, Tracer};
use encore_evals::online::OnlineEvaluator;
use encore_evals::ops::{self, Delivery};
use encore_evals::spec::Context;
use encore_evals::store::EvalStore;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The evals store, online evaluation and alerting of a node.
#[derive(Debug)]
pub struct Evals {
    pub store: Arc<Mutex<EvalStore>>,
    pub ctx: Context,
    pub online: Arc<OnlineEvaluator>,
    pub engine: Mutex<Engine>,
    pub delivery: Delivery,
    pub telemetry: Option<Arc<Telemetry>>,
    /// the node's monitors, whose verdicts alert rules of kind `monitor_fired` read
    pub monitors: std::sync::OnceLock<Arc<crate::monitors::Monitoring>>,
}

impl Evals {
    /// Online evaluation and alerting for a node: judge calls are traced into the trace store
    /// (project `encore`, service `encore-evals`), every newly stored span is offered to the
    /// rules, and alert rules are evaluated every `[evals] alert_interval_ms`.
    pub fn start(
        config: &encore_config::Config,
        root: &std::path::Path,
        catalog: Option<Arc<CatalogIndex>>,
        telemetry: &Arc<Telemetry>,
    ) -> Result<Arc<Evals>, AppError> {
        let store = Arc::new(Mutex::new(EvalStore::open(root)?));
        let weak = Arc::downgrade(telemetry);
        let seq = AtomicU64::new(0);
        let tracer: Tracer = Arc::new(move |call: JudgeCall| {
            if let Some(t) = weak.upgrade() {
                t.record(call.span("encore", seq.fetch_add(1, Ordering::Relaxed)));
            }
        });
        let mut ctx = crate::setup::eval_context(config, catalog, Some(tracer))?;
        // what API callers name (a task's endpoint) goes only where webhooks may go
        ctx.destinations = Some(crate::setup::webhook_allow(&config.server)?);
        let (rules, errors) = ops::compiled_rules(&store, &ctx)?;
        for e in errors {
            tracing::warn!("online evaluation rule left out: {e}");
        }
        let c = &config.evals;
        let online = Arc::new(OnlineEvaluator::start(
            rules,
            Arc::clone(&store),
            c.queue as usize,
            c.workers as usize,
        ));
        let _ = telemetry.online.set(Arc::clone(&online));
        let evals = Arc::new(Evals {
            store,
            ctx,
            online,
            engine: Mutex::new(Engine::default()),
            delivery: crate::setup::alert_delivery(config, root)?,
            telemetry: Some(Arc::clone(telemetry)),
            monitors: std::sync::OnceLock::new(),
        });
        evals.start_alerts(Duration::from_millis(c.alert_interval_ms.max(100)))?;
        Ok(evals)
    }

    /// Rebuilds the online rules from the store; the rules that do not build are named.
    pub fn reload_rules(&self) -> Result<Vec<String>, AppError> {
        let (rules, errors) = ops::compiled_rules(&self.store, &self.ctx)?;
        for e in &errors {
            tracing::warn!("online evaluation rule left out: {e}");
        }
        self.online.set_rules(rules);
        Ok(errors)
    }

    /// The trace store, when this node keeps traces.
    pub fn spans(&self) -> Option<&encore_telemetry::SpanStore> {
        self.telemetry.as_ref().map(|t| &t.store)
    }

    /// The verdicts of monitor `name` on its latest judged window, per slice (and attribute):
    /// 1 fired, 0 not.
    pub fn monitor_verdicts(&self, name: &str) -> Vec<encore_evals::alerts::Observation> {
        let Some(m) = self.monitors.get() else {
            return Vec::new();
        };
        m.latest()
            .into_iter()
            .filter(|r| r.monitor == name)
            .map(|r| encore_evals::alerts::Observation {
                slice: match &r.attribute {
                    Some(a) => format!("{} {a}", r.slice),
                    None => r.slice,
                },
                value: f64::from(u8::from(r.fired)),
                count: r.rows,
            })
            .collect()
    }

    /// Evaluates the alert rules every `interval`, until this is dropped.
    pub fn start_alerts(self: &Arc<Self>, interval: Duration) -> Result<(), AppError> {
        crate::worker::every(
            "alerts",
            interval,
            true,
            Arc::downgrade(self),
            |a: &Evals| {
                let now = encore_core::time::now_ms();
                let monitors = |name: &str| a.monitor_verdicts(name);
                if let Err(e) =
                    ops::alerts_tick(&a.engine, &a.store, a.spans(), &monitors, now, &a.delivery)
                {
                    tracing::warn!("alerts not evaluated: {e}");
                }
            },
        )
        .map_err(|e| {
            AppError::new(
                encore_core::ErrorCode::Internal,
                format!("alerts thread: {e}"),
            )
        })
    }
}
