//! Quality metrics from stored scores, with intervals: per evaluator (and optionally per
//! service, model or user), the mean score, the pass rate (score >= 0.5) and the fail rate with
//! Wilson score intervals (hallucination rate is the fail rate of a hallucination evaluator),
//! the labels given, and the cost and latency of the evaluated spans per item. And judge
//! calibration against the human labels given on the same spans.

use crate::calibration::{Calibration, calibration};
use crate::store::StoredScore;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};

/// The Wilson score interval of a proportion `k / n` at `z` (1.96 for 95 %).
pub fn wilson(k: u64, n: u64, z: f64) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let (n, p) = (n as f64, k as f64 / n as f64);
    let z2 = z * z;
    let centre = (p + z2 / (2.0 * n)) / (1.0 + z2 / n);
    let half = z / (1.0 + z2 / n) * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    ((centre - half).max(0.0), (centre + half).min(1.0))
}

/// What quality is sliced by.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Slice {
    Service,
    Model,
    User,
}

impl Slice {
    pub fn of(self, s: &StoredScore) -> String {
        let v = match self {
            Slice::Service => &s.target.service,
            Slice::Model => &s.target.model,
            Slice::User => &s.target.user,
        };
        v.clone().unwrap_or_default()
    }
}

/// The quality of one evaluator (in one slice).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Quality {
    pub evaluator: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slice: Option<String>,
    pub n: u64,
    pub mean: f64,
    pub pass_rate: f64,
    /// `[low, high]`
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<f64>))]
    pub pass_ci: (f64, f64),
    /// 1 − pass rate: for a hallucination evaluator, the hallucination rate
    pub fail_rate: f64,
    /// `[low, high]`
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<f64>))]
    pub fail_ci: (f64, f64),
    pub labels: BTreeMap<String, u64>,
    /// of the evaluated spans, per item (those that report it)
    pub cost_per_item_usd: Option<f64>,
    pub latency_ms_per_item: Option<f64>,
}

#[derive(Default)]
struct Acc {
    n: u64,
    sum: f64,
    pass: u64,
    labels: BTreeMap<String, u64>,
    cost: (f64, u64),
    latency: (f64, u64),
}

/// Quality per evaluator (and slice), ordered by evaluator then slice.
pub fn quality(scores: &[StoredScore], slice: Option<Slice>) -> Vec<Quality> {
    let mut groups: BTreeMap<(String, Option<String>), Acc> = BTreeMap::new();
    for s in scores {
        let key = (s.score.evaluator.clone(), slice.map(|sl| sl.of(s)));
        let a = groups.entry(key).or_default();
        a.n += 1;
        a.sum += s.score.value;
        a.pass += u64::from(s.score.value >= 0.5);
        if let Some(l) = &s.score.label {
            *a.labels.entry(l.clone()).or_default() += 1;
        }
        if let Some(c) = s.target.cost_usd {
            a.cost.0 += c;
            a.cost.1 += 1;
        }
        if let Some(l) = s.target.latency_ms {
            a.latency.0 += l;
            a.latency.1 += 1;
        }
    }
    groups
        .into_iter()
        .map(|((evaluator, slice), a)| {
            let pass_ci = wilson(a.pass, a.n, 1.96);
            let per = |(sum, k): (f64, u64)| (k > 0).then(|| sum / k as f64);
            Quality {
                evaluator,
                slice,
                n: a.n,
                mean: a.sum / a.n as f64,
                pass_rate: a.pass as f64 / a.n as f64,
                pass_ci,
                fail_rate: 1.0 - a.pass as f64 / a.n as f64,
                fail_ci: (1.0 - pass_ci.1, 1.0 - pass_ci.0),
                labels: a.labels,
                cost_per_item_usd: per(a.cost),
                latency_ms_per_item: per(a.latency),
            }
        })
        .collect()
}

/// A judge measured against human labels on the same spans.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JudgeCalibration {
    pub judge: String,
    pub human: String,
    /// spans scored by both
    pub pairs: usize,
    #[serde(flatten)]
    pub report: Calibration,
}

/// Pairs each span's `judge` score with its human `human` score (the latest labeller's, when
/// several labelled it) and measures the judge: the positive class is the bad outcome
/// (score < 0.5, e.g. "hallucinated"), predicted with probability `1 − judge score`.
pub fn calibrate(
    scores: &[StoredScore],
    judge: &str,
    human: &str,
    bins: usize,
) -> JudgeCalibration {
    let key = |s: &StoredScore| (s.target.trace_id.clone(), s.target.span_id.clone());
    let mut humans: HashMap<(String, String), &StoredScore> = HashMap::new();
    for s in scores
        .iter()
        .filter(|s| s.score.evaluator == human && s.source.starts_with("human:"))
    {
        let e = humans.entry(key(s)).or_insert(s);
        if s.created_ms > e.created_ms {
            *e = s;
        }
    }
    let mut seen = std::collections::HashSet::new();
    let pairs: Vec<(f64, bool)> = scores
        .iter()
        .filter(|s| s.score.evaluator == judge && !s.source.starts_with("human:"))
        .filter(|s| seen.insert(key(s)))
        .filter_map(|s| {
            humans
                .get(&key(s))
                .map(|h| (1.0 - s.score.value, h.score.value < 0.5))
        })
        .collect();
    JudgeCalibration {
        judge: judge.into(),
        human: human.into(),
        pairs: pairs.len(),
        report: calibration(&pairs, 0.5, bins),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{ScoreValue, Target};

    #[test]
    fn wilson_matches_reference_values() {
        // Newcombe (1998), table I: 81 / 263 gives 0.2553 to 0.3662
        let (lo, hi) = wilson(81, 263, 1.959963984540054);
        assert!(
            (lo - 0.2553).abs() < 5e-5 && (hi - 0.3662).abs() < 5e-5,
            "{lo} {hi}"
        );
        // the closed form evaluated in Python
        assert!(
            (lo - 0.2552885198782742).abs() < 1e-12 && (hi - 0.36620957698280004).abs() < 1e-12
        );
        let (lo, hi) = wilson(0, 10, 1.959963984540054);
        assert!(lo == 0.0 && (hi - 0.2775327998628892).abs() < 1e-12, "{hi}");
        let (lo, hi) = wilson(10, 10, 1.959963984540054);
        assert!(
            (lo - 0.7224672001371107).abs() < 1e-12 && (hi - 1.0).abs() < 1e-12,
            "{lo}"
        );
        assert_eq!(wilson(0, 0, 1.96), (0.0, 1.0));
    }

    fn s(span: &str, evaluator: &str, value: f64, source: &str, model: &str) -> StoredScore {
        StoredScore {
            target: Target {
                project: "p".into(),
                trace_id: "t".into(),
                span_id: span.into(),
                model: Some(model.into()),
                cost_usd: Some(0.002),
                latency_ms: Some(100.0),
                ..Default::default()
            },
            score: ScoreValue {
                evaluator: evaluator.into(),
                version: 1,
                value,
                label: Some(
                    if value >= 0.5 {
                        "factual"
                    } else {
                        "hallucinated"
                    }
                    .into(),
                ),
                explanation: None,
            },
            source: source.into(),
            created_ms: 0,
        }
    }

    #[test]
    fn quality_per_evaluator_and_slice() {
        let scores = vec![
            s("1", "j", 1.0, "rule:r", "a"),
            s("2", "j", 0.0, "rule:r", "a"),
            s("3", "j", 0.9, "rule:r", "b"),
            s("4", "k", 0.2, "rule:r", "b"),
        ];
        let q = quality(&scores, None);
        assert_eq!(q.len(), 2);
        assert_eq!((q[0].n, q[0].labels["hallucinated"]), (3, 1));
        assert!((q[0].fail_rate - 1.0 / 3.0).abs() < 1e-12);
        assert_eq!(q[0].cost_per_item_usd, Some(0.002));
        let (lo, hi) = wilson(2, 3, 1.96);
        assert_eq!(q[0].pass_ci, (lo, hi));
        assert_eq!(q[0].fail_ci, (1.0 - hi, 1.0 - lo));
        let by_model = quality(&scores, Some(Slice::Model));
        assert_eq!(by_model.len(), 3);
        assert_eq!(
            (by_model[0].slice.as_deref(), by_model[0].n),
            (Some("a"), 2)
        );
    }

    #[test]
    fn calibration_pairs_judge_and_human_scores_by_span() {
        let scores = vec![
            s("1", "judge_hallucination", 0.9, "rule:r", "a"),
            s("1", "hallucination", 1.0, "human:ann", "a"),
            s("2", "judge_hallucination", 0.1, "rule:r", "a"),
            s("2", "hallucination", 0.0, "human:ann", "a"),
            s("3", "judge_hallucination", 0.2, "rule:r", "a"),
            s("3", "hallucination", 1.0, "human:bob", "a"),
            // no human label: not paired
            s("4", "judge_hallucination", 0.2, "rule:r", "a"),
        ];
        let c = calibrate(&scores, "judge_hallucination", "hallucination", 5);
        assert_eq!(c.pairs, 3);
        // predictions (positive = hallucinated): 0.1 / no, 0.9 / yes, 0.8 / no
        assert!((c.report.agreement - 2.0 / 3.0).abs() < 1e-12);
        let brier = (0.1f64.powi(2) + 0.1f64.powi(2) + 0.8f64.powi(2)) / 3.0;
        assert!((c.report.brier - brier).abs() < 1e-12);
    }
}
