//! Experiment analysis and the ship decision.
//!
//! Per metric and treatment: the effect against control, its relative lift, interval and
//! p-value, unadjusted (Welch) and CUPED-adjusted (with the metric's pre-exposure value as the
//! covariate) side by side. The sample-ratio check comes first: a failed SRM makes the whole
//! result untrustworthy. Success metrics are corrected for multiplicity (Holm); the decision is
//! Spotify's risk-aware rule: ship only if some success metric is significantly better, no
//! guardrail is worse than its non-inferiority margin, and no metric deteriorates.

use encore_stats::{Alternative, CoMoments, Correction, RatioMoments};
use serde::{Deserialize, Serialize};

/// What a metric is for in the decision.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
/// In JSON: `"success"`, `{"guardrail": {"margin": 0.01}}`, `"deterioration"`, `"quality"`.
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// the change is meant to move it
    Success,
    /// must not get worse by more than `margin` (relative, e.g. 0.01 = 1 %)
    Guardrail { margin: f64 },
    /// any significant harm blocks shipping
    Deterioration,
    /// reported, not decided on
    Quality,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricSpec {
    pub name: String,
    pub role: Role,
    /// false for metrics where lower is better (skip rate)
    pub higher_is_better: bool,
}

/// The metrics an experiment is judged on when its definition names none: streams per
/// listener (success), listening minutes (guardrail, 1 % margin), skip rate (deterioration).
pub fn default_metrics() -> Vec<MetricSpec> {
    vec![
        MetricSpec {
            name: "streams_per_user".into(),
            role: Role::Success,
            higher_is_better: true,
        },
        MetricSpec {
            name: "listening_minutes".into(),
            role: Role::Guardrail { margin: 0.01 },
            higher_is_better: true,
        },
        MetricSpec {
            name: "skip_rate".into(),
            role: Role::Deterioration,
            higher_is_better: false,
        },
    ]
}

/// One metric's sufficient statistics over an arm's listeners.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MetricData {
    /// a per-listener mean (streams per listener): co-moments of (pre-exposure value,
    /// post-exposure value)
    Mean(CoMoments),
    /// a ratio of sums (stream rate = streams / plays), analysed by the delta method: moments of
    /// (numerator, denominator, pre numerator, pre denominator)
    Ratio(RatioMoments),
}

/// One arm's data: per metric, its sufficient statistics.
#[derive(Debug, Clone)]
pub struct ArmData {
    pub variant: String,
    pub users: f64,
    pub metrics: Vec<MetricData>,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize)]
pub struct Estimate {
    pub effect: f64,
    pub lift: f64,
    /// `[low, high]`
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<f64>))]
    pub ci: (f64, f64),
    /// `[low, high]`
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<f64>))]
    pub lift_ci: (f64, f64),
    pub p_value: f64,
    pub se: f64,
    pub lift_se: f64,
    /// Welch degrees of freedom
    pub df: f64,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize)]
pub struct MetricResult {
    pub metric: String,
    pub variant: String,
    pub control_mean: f64,
    pub treatment_mean: f64,
    pub unadjusted: Estimate,
    pub cuped: Estimate,
    pub variance_reduction: f64,
    /// Holm-adjusted over the success metrics (success metrics only)
    pub p_adjusted: Option<f64>,
    /// significantly better / worse in the metric's good direction (CUPED, adjusted p for
    /// success metrics)
    pub better: bool,
    pub worse: bool,
    /// guardrails: the one-sided bound of the relative change lies beyond the margin
    pub inferior: bool,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    Ship,
    DoNotShip,
    Inconclusive,
    /// the sample ratio does not match the allocation
    Untrustworthy,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub srm_chi2: f64,
    pub srm_p_value: f64,
    pub srm_ok: bool,
    pub results: Vec<MetricResult>,
    pub decision: Decision,
    pub reasons: Vec<String>,
}

fn estimate(inf: &encore_stats::Inference, rel: &encore_stats::Inference, df: f64) -> Estimate {
    Estimate {
        effect: inf.estimate,
        lift: rel.estimate,
        ci: inf.ci,
        lift_ci: rel.ci,
        p_value: inf.p_value,
        se: inf.se,
        lift_se: rel.se,
        df,
    }
}

/// A mean metric: Welch on the post-exposure values, and CUPED on the pre-exposure ones.
/// Returns (control mean, treatment mean, unadjusted, CUPED, variance reduction).
fn compare_means(a: &CoMoments, b: &CoMoments, alpha: f64) -> (f64, f64, Estimate, Estimate, f64) {
    let c = encore_stats::cuped(a, b, alpha, Alternative::TwoSided);
    let post = |m: &CoMoments| encore_stats::Moments {
        n: m.n,
        mean: m.mean_y,
        m2: m.m2y,
    };
    let (plain, df) = encore_stats::welch(&post(a), &post(b), alpha, Alternative::TwoSided);
    let arm = |m: &CoMoments| encore_stats::Arm {
        n: m.n,
        mean: m.mean_y,
        var: m.var_y(),
    };
    let (plain_rel, _, _) =
        encore_stats::relative_lift(&arm(a), &arm(b), alpha, Alternative::TwoSided);
    (
        a.mean_y,
        b.mean_y,
        estimate(&plain, &plain_rel, df),
        estimate(&c.abs, &c.rel, c.df),
        c.variance_reduction,
    )
}

/// Analyzes `arms` (the first is control) for `metrics`, with allocation `weights` (one per
/// arm), at level `alpha`; SRM is checked at `srm_alpha`.
pub fn analyze(
    metrics: &[MetricSpec],
    arms: &[ArmData],
    weights: &[f64],
    alpha: f64,
    srm_alpha: f64,
) -> Report {
    let observed: Vec<f64> = arms.iter().map(|a| a.users).collect();
    let (srm_chi2, _, srm_p, _) = encore_stats::srm(&observed, weights);
    let srm_ok = srm_p >= srm_alpha;
    let mut results = Vec::new();
    let control = &arms[0];
    for treatment in &arms[1..] {
        for (m, spec) in metrics.iter().enumerate() {
            let (control_mean, treatment_mean, unadjusted, cuped, variance_reduction) =
                match (&control.metrics[m], &treatment.metrics[m]) {
                    (MetricData::Mean(a), MetricData::Mean(b)) => compare_means(a, b, alpha),
                    (MetricData::Ratio(a), MetricData::Ratio(b)) => {
                        let r = encore_stats::ratio_comparison(a, b, alpha, Alternative::TwoSided);
                        (
                            r.ratio_a,
                            r.ratio_b,
                            estimate(&r.abs, &r.rel, r.df),
                            estimate(&r.abs_adjusted, &r.rel_adjusted, r.df_adjusted),
                            r.variance_reduction,
                        )
                    }
                    _ => unreachable!("arms of one metric share its kind"),
                };
            // the one-sided bound in the harmful direction, for non-inferiority
            let toward_harm = if spec.higher_is_better {
                Alternative::Greater
            } else {
                Alternative::Less
            };
            let bound = encore_stats::infer(
                cuped.lift,
                cuped.lift_se,
                Some(cuped.df),
                alpha,
                toward_harm,
            );
            let inferior = match spec.role {
                Role::Guardrail { margin } if spec.higher_is_better => bound.ci.0 < -margin,
                Role::Guardrail { margin } => bound.ci.1 > margin,
                _ => false,
            };
            results.push(MetricResult {
                metric: spec.name.clone(),
                variant: treatment.variant.clone(),
                control_mean,
                treatment_mean,
                unadjusted,
                cuped,
                variance_reduction,
                p_adjusted: None,
                better: false,
                worse: false,
                inferior,
            });
        }
    }
    // Holm over every (treatment, success metric) pair
    let success: Vec<usize> = results
        .iter()
        .enumerate()
        .filter(|(i, _)| metrics[i % metrics.len()].role == Role::Success)
        .map(|(i, _)| i)
        .collect();
    let adjusted = encore_stats::adjust(
        &success
            .iter()
            .map(|&i| results[i].cuped.p_value)
            .collect::<Vec<_>>(),
        Correction::Holm,
    );
    for (&i, p) in success.iter().zip(adjusted) {
        results[i].p_adjusted = Some(p);
    }
    for (i, r) in results.iter_mut().enumerate() {
        let spec = &metrics[i % metrics.len()];
        let p = r.p_adjusted.unwrap_or(r.cuped.p_value);
        let up = r.cuped.effect > 0.0;
        let good = up == spec.higher_is_better;
        r.better = p < alpha && good;
        r.worse = p < alpha && !good;
    }
    let mut reasons = Vec::new();
    let decision = if !srm_ok {
        reasons.push(format!(
            "sample ratio mismatch: chi-square {srm_chi2:.2}, p {srm_p:.2e} < {srm_alpha}"
        ));
        Decision::Untrustworthy
    } else {
        let wins: Vec<&MetricResult> = results
            .iter()
            .enumerate()
            .filter(|(i, r)| metrics[i % metrics.len()].role == Role::Success && r.better)
            .map(|(_, r)| r)
            .collect();
        let breaches: Vec<&MetricResult> = results.iter().filter(|r| r.inferior).collect();
        let harms: Vec<&MetricResult> = results
            .iter()
            .enumerate()
            .filter(|(i, r)| metrics[i % metrics.len()].role != Role::Quality && r.worse)
            .map(|(_, r)| r)
            .collect();
        for r in &breaches {
            reasons.push(format!(
                "guardrail {} of {} may be worse than its margin (lift {:+.4})",
                r.metric, r.variant, r.cuped.lift
            ));
        }
        for r in &harms {
            reasons.push(format!(
                "{} of {} is significantly worse (lift {:+.4})",
                r.metric, r.variant, r.cuped.lift
            ));
        }
        if !breaches.is_empty() || !harms.is_empty() {
            Decision::DoNotShip
        } else if wins.is_empty() {
            reasons.push("no success metric is significantly better".into());
            Decision::Inconclusive
        } else {
            for r in &wins {
                reasons.push(format!(
                    "{} of {} is better: lift {:+.4} (adjusted p {:.2e})",
                    r.metric,
                    r.variant,
                    r.cuped.lift,
                    r.p_adjusted.unwrap_or(r.cuped.p_value)
                ));
            }
            Decision::Ship
        }
    };
    Report {
        srm_chi2,
        srm_p_value: srm_p,
        srm_ok,
        results,
        decision,
        reasons,
    }
}
