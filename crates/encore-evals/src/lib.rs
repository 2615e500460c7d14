//! `encore-evals`: is an LLM feature's output good? Evaluators score one sample (input, output,
//! and optionally the expected output and the retrieved context) and say how they scored it.
//!
//! Heuristic evaluators ([`heuristic`]) are deterministic and free: exact match, contains, regex,
//! JSON validity, length bounds, token F1, ROUGE-L, refusal detection, and lexical grounding in
//! the retrieved context. Every score names its evaluator and version, so scores from different
//! versions are never mixed. [`calibration`] measures a judge against human labels: agreement,
//! Cohen's kappa, precision and recall, Brier score, expected calibration error and the
//! reliability table.

pub mod calibration;
pub mod catalog;
pub mod heuristic;
pub mod judge;
pub mod online;
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
