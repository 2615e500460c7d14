//! Evaluation of LLM features on a running node: the evals store, online evaluation of newly
//! stored spans, and the alert engine evaluated on a schedule.

use crate::AppError;
use crate::telemetry::Telemetry;
use encore_evals::alerts::Engine;
use encore_evals::online::OnlineEvaluator;
use encore_evals::ops::{self, Delivery};
use encore_evals::spec::Context;
use encore_evals::store::EvalStore;
use std::sync::{Arc, Mutex};

/// The evals store, online evaluation and alerting of a node.
#[derive(Debug)]
pub struct Evals {
    pub store: Arc<Mutex<EvalStore>>,
    pub ctx: Context,
    pub online: Arc<OnlineEvaluator>,
    pub engine: Mutex<Engine>,
    pub delivery: Delivery,
    pub telemetry: Option<Arc<Telemetry>>,
}

impl Evals {
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

    /// Evaluates the alert rules every `interval`, until this is dropped.
    pub fn start_alerts(self: &Arc<Self>, interval: std::time::Duration) -> Result<(), AppError> {
        crate::worker::every(
            "alerts",
            interval,
            true,
            Arc::downgrade(self),
            |a: &Evals| {
                let now = encore_core::time::now_ms();
                if let Err(e) = ops::alerts_tick(&a.engine, &a.store, a.spans(), now, &a.delivery) {
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
