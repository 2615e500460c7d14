//! `encore-evals`: is an LLM feature's output good? Evaluators score one sample (input, output,
//! and optionally the expected output and the retrieved context) and say how they scored it.
//!
//! - [`heuristic`] and [`schema`]: deterministic, free evaluators (exact match, contains, regex,
//!   JSON validity and JSON-schema conformance, length bounds, token F1, ROUGE-L, refusal,
//!   lexical grounding in the retrieved context); [`catalog`]: tracks and artists named by an
//!   output that are not in the catalog (the hallucination rate of music features).
//! - [`judge`]: LLM-as-judge rubrics over any OpenAI-compatible endpoint, with retries,
//!   timeouts, a concurrency limit, token and cost accounting, and traced calls.
//! - [`spec`]: evaluators by description (JSON/TOML), as rules and runs name them.
//! - [`store`]: scores linked to spans and traces, versioned datasets, annotation queues and
//!   human labels, rules, runs and alert history, in SQLite.
//! - [`online`]: rules that sample ingested spans and score them off the ingest path; backfill.
//! - [`dataset`] and [`experiment`]: datasets from JSONL or traces; a task run over a dataset
//!   and two runs compared with a paired t-test.
//! - [`quality`] and [`calibration`]: rates with Wilson intervals; a judge against human labels
//!   (agreement, Cohen's kappa, precision and recall, Brier, ECE, reliability table).
//! - [`alerts`]: rules on trace and score metrics over rolling windows, per slice, with
//!   for-duration, cooldown, webhooks and history.
//!
//! Every score names its evaluator and version, so scores from different versions are never
//! mixed.

pub mod alerts;
pub mod calibration;
pub mod catalog;
pub mod dataset;
pub mod experiment;
pub mod heuristic;
pub mod judge;
pub mod online;
pub mod ops;
pub mod quality;
pub mod schema;
pub mod spec;
pub mod store;
pub mod text;

use serde::Serialize;

/// What an evaluator looks at.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sample<'a> {
    pub input: &'a str,
    pub output: &'a str,
    /// the reference answer, when there is one
    pub expected: Option<&'a str>,
    /// retrieved documents the answer should rest on
    pub context: Option<&'a str>,
}

/// One evaluation result, in the shape of `gen_ai.evaluation.result`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Score {
    pub evaluator: String,
    pub version: u32,
    /// in [0, 1] for every built-in evaluator (1 is good)
    pub value: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub explanation: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("evaluator {evaluator} needs {what}, which the sample does not have")]
    Missing {
        evaluator: String,
        what: &'static str,
    },
    #[error("evaluator {evaluator}: {message}")]
    Config { evaluator: String, message: String },
}

/// Scores one sample.
pub trait Evaluator: Send + Sync + std::fmt::Debug {
    fn name(&self) -> &str;
    fn version(&self) -> u32;
    fn evaluate(&self, sample: &Sample<'_>) -> Result<Score, EvalError>;

    /// A score of this evaluator.
    fn score(&self, value: f64, label: Option<&str>, explanation: Option<String>) -> Score {
        Score {
            evaluator: self.name().to_owned(),
            version: self.version(),
            value,
            label: label.map(str::to_owned),
            explanation,
        }
    }
}
