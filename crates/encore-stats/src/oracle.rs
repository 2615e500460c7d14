//! The conformance runner for reference vectors (`stats-vectors.json`): [`run`] computes a
//! vector's outputs in the shape of its `expected`, and [`grade`] compares them field by field
//! under the vector's tolerances (looked up by dotted path, then top-level key, then `default`;
//! integers, booleans, strings and null exactly; `"informational"` fields skipped).

use crate::{
    Alternative, Arm, CoMoments, Correction, Moments, adjust, categorical_drift,
    confidence_sequence, cuped, msprt, ratio_arm, relative_lift, srm, two_proportions, welch,
};
use serde_json::{Map, Value, json};

/// A number as the vectors write it: infinities as the strings "inf" / "-inf".
fn num(x: f64) -> Value {
    if x == f64::INFINITY {
        json!("inf")
    } else if x == f64::NEG_INFINITY {
        json!("-inf")
    } else {
        json!(x)
    }
}

fn pair(ci: (f64, f64)) -> Value {
    json!([num(ci.0), num(ci.1)])
}

fn f(v: &Value, key: &str) -> Option<f64> {
    v.get(key)?.as_f64()
}

fn floats(v: &Value) -> Option<Vec<f64>> {
    v.as_array()?.iter().map(Value::as_f64).collect()
}

/// An arm's moments: the summary's mean and variance when it has them (exact sums rounded
/// once, the most accurate form), else its raw values (Welford), else its sums.
fn moments(inputs: &Value, arm: &str) -> Option<Moments> {
    let summary = inputs.get(format!("{arm}_summary"));
    if let Some(s) = summary
        && let (Some(n), Some(mean), Some(var)) = (f(s, "n"), f(s, "mean"), f(s, "var_ddof1"))
    {
        return Some(Moments::from_var(n, mean, var));
    }
    if let Some(xs) = inputs.get(arm).and_then(floats) {
        return Some(Moments::from_slice(&xs));
    }
    let s = summary?;
    Some(Moments::from_sums(
        f(s, "n")?,
        f(s, "sum")?,
        f(s, "sum_squares")?,
    ))
}

fn alpha(params: &Value) -> f64 {
    f(params, "alpha").unwrap_or(0.05)
}

fn alternative(params: &Value) -> Alternative {
    params
        .get("alternative")
        .and_then(Value::as_str)
        .and_then(Alternative::parse)
        .unwrap_or(Alternative::TwoSided)
}

/// The outputs of `vector`, or `None` when its method is not supported (yet).
pub fn run(vector: &Value) -> Option<Value> {
    let method = vector.get("method")?.as_str()?;
    let params = vector.get("params").unwrap_or(&Value::Null);
    let inputs = vector.get("inputs")?;
    match method {
        "welch_ttest" => {
            let (a, b) = (moments(inputs, "a")?, moments(inputs, "b")?);
            let (alpha, alt) = (alpha(params), alternative(params));
            let (t, df) = welch(&a, &b, alpha, alt);
            let z = crate::infer(t.estimate, t.se, None, alpha, alt);
            let t_crit = match alt {
                Alternative::TwoSided => crate::dist::t_ppf(1.0 - alpha / 2.0, df),
                _ => crate::dist::t_ppf(1.0 - alpha, df),
            };
            Some(json!({
                "mean_a": a.mean, "mean_b": b.mean, "var_a": a.var(), "var_b": b.var(),
                "effect": t.estimate, "se": t.se, "t_stat": t.stat, "df": df, "t_crit": t_crit,
                "p_value": t.p_value, "ci": pair(t.ci), "z_p_value": z.p_value, "z_ci": pair(z.ci),
            }))
        }
        "two_proportion_ztest" => {
            let r = two_proportions(
                f(inputs, "x_a")?,
                f(inputs, "n_a")?,
                f(inputs, "x_b")?,
                f(inputs, "n_b")?,
                alpha(params),
            );
            Some(json!({
                "p_a": r.p_a, "p_b": r.p_b, "effect": r.effect, "p_pooled": r.p_pooled,
                "se_pooled": r.se_pooled, "z_pooled": r.z_pooled, "p_value_pooled": r.p_value_pooled,
                "se_unpooled": r.unpooled.se, "z_unpooled": r.unpooled.stat,
                "p_value_unpooled": r.unpooled.p_value, "ci_unpooled": pair(r.unpooled.ci),
                "chi2_2x2_no_yates": r.chi2,
            }))
        }
        "srm_chisquare" => {
            let observed = floats(inputs.get("observed")?)?;
            let weights = floats(inputs.get("weights")?)?;
            let (chi2, df, p, expected) = srm(&observed, &weights);
            Some(json!({"chi2": chi2, "df": df, "p_value": p, "expected_counts": expected}))
        }
        "multiple_testing" => {
            let p = floats(inputs.get("p_values")?)?;
            let a = alpha(params);
            let mut out = Map::new();
            for (name, method) in [
                ("bonferroni", Correction::Bonferroni),
                ("holm", Correction::Holm),
                ("hochberg", Correction::Hochberg),
                ("fdr_bh", Correction::BenjaminiHochberg),
                ("fdr_by", Correction::BenjaminiYekutieli),
            ] {
                let adjusted = adjust(&p, method);
                let reject: Vec<bool> = adjusted.iter().map(|&x| x <= a).collect();
                out.insert(
                    name.into(),
                    json!({"p_adjusted": adjusted, "reject": reject}),
                );
            }
            Some(Value::Object(out))
        }
        "msprt_normal" => {
            let looks: Option<Vec<(f64, f64, f64, f64)>> = inputs
                .get("looks")?
                .as_array()?
                .iter()
                .map(|l| Some((f(l, "n_a")?, f(l, "x_a")?, f(l, "n_b")?, f(l, "x_b")?)))
                .collect();
            let r = msprt(&looks?, f(params, "tau2")?, alpha(params));
            Some(json!({
                "lambda": r.iter().map(|l| l.lambda).collect::<Vec<_>>(),
                "p_value": r.iter().map(|l| l.p_value).collect::<Vec<_>>(),
                "ci": r.iter().map(|l| pair(l.ci)).collect::<Vec<_>>(),
            }))
        }
        "drift_categorical" => {
            let d = categorical_drift(
                &floats(inputs.get("ref_counts")?)?,
                &floats(inputs.get("cur_counts")?)?,
            );
            let test = |t: (f64, usize, f64)| json!({"statistic": t.0, "df": t.1, "p_value": t.2});
            Some(json!({
                "ref_props": d.ref_props, "cur_props": d.cur_props,
                "jensen_shannon_distance_base_e": d.js_distance,
                "jensen_shannon_distance_base_2": d.js_distance_base2,
                "jensen_shannon_divergence_base_e": d.js_divergence,
                "chi2_contingency": test(d.chi2_contingency),
                "chi2_goodness_of_fit": d.chi2_goodness_of_fit.map_or(Value::Null, test),
                "psi": d.psi, "hellinger": d.hellinger,
            }))
        }
        "relative_lift_delta" => {
            let (a, b) = (arm(inputs, "a")?, arm(inputs, "b")?);
            let (t, z, df) = relative_lift(&a, &b, alpha(params), alternative(params));
            Some(json!({
                "mean_a": a.mean, "mean_b": b.mean, "lift": t.estimate, "se": t.se, "df": df,
                "p_value": t.p_value, "ci": pair(t.ci), "z_p_value": z.p_value, "z_ci": pair(z.ci),
            }))
        }
        "ratio_metric_delta" => {
            // x = denominator d, y = numerator m
            let co = |arm: &str| -> Option<CoMoments> {
                let raw = inputs.get(arm)?;
                match (raw.get("d").and_then(floats), raw.get("m").and_then(floats)) {
                    (Some(d), Some(m)) => Some(CoMoments::from_slices(&d, &m)),
                    _ => {
                        let s = inputs.get(format!("{arm}_summary"))?;
                        Some(CoMoments::from_sums(
                            f(s, "n")?,
                            f(s, "d_sum")?,
                            f(s, "d_sum_squares")?,
                            f(s, "m_sum")?,
                            f(s, "m_sum_squares")?,
                            f(s, "md_sum_products")?,
                        ))
                    }
                }
            };
            let (ca, cb) = (co("a")?, co("b")?);
            let ((ra, va), (rb, vb)) = (ratio_arm(&ca), ratio_arm(&cb));
            let (alpha, alt) = (alpha(params), alternative(params));
            let df = crate::welch_df(va / ca.n, vb / cb.n, ca.n, cb.n);
            let abs = crate::infer(
                rb - ra,
                (va / ca.n + vb / cb.n).sqrt(),
                Some(df),
                alpha,
                alt,
            );
            let (rel, _, _) = relative_lift(
                &Arm {
                    n: ca.n,
                    mean: ra,
                    var: va,
                },
                &Arm {
                    n: cb.n,
                    mean: rb,
                    var: vb,
                },
                alpha,
                alt,
            );
            Some(json!({
                "ratio_a": ra, "ratio_b": rb, "unit_var_a": va, "unit_var_b": vb,
                "cov_md_a": ca.cov(), "cov_md_b": cb.cov(), "effect_abs": abs.estimate,
                "se_abs": abs.se, "df": df, "p_value_abs": abs.p_value, "ci_abs": pair(abs.ci),
                "lift_rel": rel.estimate, "se_rel": rel.se, "p_value_rel": rel.p_value,
                "ci_rel": pair(rel.ci),
            }))
        }
        "cuped" => {
            let co = |arm: &str| -> Option<CoMoments> {
                let raw = inputs.get(arm)?;
                match (raw.get("x").and_then(floats), raw.get("y").and_then(floats)) {
                    (Some(x), Some(y)) => Some(CoMoments::from_slices(&x, &y)),
                    _ => {
                        let s = inputs.get(format!("{arm}_summary"))?;
                        Some(CoMoments::from_sums(
                            f(s, "n")?,
                            f(s, "x_sum")?,
                            f(s, "x_sum_squares")?,
                            f(s, "y_sum")?,
                            f(s, "y_sum_squares")?,
                            f(s, "xy_sum_products")?,
                        ))
                    }
                }
            };
            let (a, b) = (co("a")?, co("b")?);
            let c = cuped(&a, &b, alpha(params), alternative(params));
            Some(json!({
                "theta": c.theta, "mean_y_a": a.mean_y, "mean_y_b": b.mean_y,
                "mean_x_a": a.mean_x, "mean_x_b": b.mean_x, "adj_mean_a": c.adj_mean_a,
                "adj_mean_b": c.adj_mean_b, "adj_var_a": c.adj_var_a, "adj_var_b": c.adj_var_b,
                "effect": c.abs.estimate, "se": c.abs.se, "df": c.df, "p_value": c.abs.p_value,
                "ci": pair(c.abs.ci), "z_ci": pair(c.abs_z.ci), "z_p_value": c.abs_z.p_value,
                "lift_rel": c.rel.estimate, "se_rel": c.rel.se, "p_value_rel": c.rel.p_value,
                "ci_rel": pair(c.rel.ci), "se_unadjusted": c.se_unadjusted,
                "variance_reduction": c.variance_reduction,
            }))
        }
        "gbstats_sequential" => {
            let (a, b) = (arm(inputs, "a")?, arm(inputs, "b")?);
            let alpha = alpha(params);
            let relative =
                params.get("difference_type").and_then(Value::as_str) == Some("relative");
            let (estimate, se) = if relative {
                let (t, _, _) = relative_lift(&a, &b, alpha, Alternative::TwoSided);
                (t.estimate, t.se)
            } else {
                (b.mean - a.mean, (a.var / a.n + b.var / b.n).sqrt())
            };
            let tuning = f(params, "sequential_tuning_parameter").unwrap_or(5000.0);
            let (rho, ci, p) = confidence_sequence(estimate, se, a.n + b.n, tuning, alpha);
            let df = crate::welch_df(a.var / a.n, b.var / b.n, a.n, b.n);
            let fixed = crate::infer(estimate, se, Some(df), alpha, Alternative::TwoSided);
            Some(json!({
                "estimate": estimate, "se": se, "rho": rho, "ci": pair(ci), "p_value": p,
                "fixed_horizon_ci": pair(fixed.ci), "fixed_horizon_p_value": fixed.p_value,
            }))
        }
        "bayes_binomial_ctw" => {
            let prior = params.get("prior");
            let a0 = prior.and_then(|p| f(p, "alpha0")).unwrap_or(1.0);
            let b0 = prior.and_then(|p| f(p, "beta0")).unwrap_or(1.0);
            let (xa, na, xb, nb) = (
                f(inputs, "x_a")?,
                f(inputs, "n_a")?,
                f(inputs, "x_b")?,
                f(inputs, "n_b")?,
            );
            let r = crate::beta_binomial(xa, na, xb, nb, a0, b0);
            let conv = |x: f64, n: f64| {
                let p = x / n;
                Arm {
                    n,
                    mean: p,
                    var: p * (1.0 - p),
                }
            };
            let (ctw, lift, ci, risk) = crate::bayes_normal_lift(
                &conv(xa, na),
                &conv(xb, nb),
                f(params, "alpha").unwrap_or(0.05),
            );
            Some(json!({
                "alpha_a": r.posterior_a.0, "beta_a": r.posterior_a.1,
                "alpha_b": r.posterior_b.0, "beta_b": r.posterior_b.1,
                "chance_to_win_b": r.chance_to_win_b,
                "expected_loss_choose_b": r.expected_loss_choose_b,
                "expected_loss_choose_a": r.expected_loss_choose_a,
                "gbstats_normal_approx": {
                    "chance_to_win": ctw, "expected_lift": lift, "ci": pair(ci), "risk": risk,
                },
            }))
        }
        "gst_bounds" | "gst_worked_example" => {
            let fractions = floats(inputs.get("information_fractions")?)?;
            let alpha = alpha(params);
            let sides = f(params, "sides").unwrap_or(2.0);
            let ztrun = f(params, "ztrun").unwrap_or(8.0);
            let bounds = crate::gst_bounds(&fractions, alpha / sides, 2.0, ztrun);
            if method == "gst_bounds" {
                let nominal: Vec<f64> = bounds
                    .iter()
                    .map(|&b| sides * crate::dist::norm_sf(b))
                    .collect();
                return Some(json!({
                    "z_bounds": bounds, "z_bounds_highres": bounds, "nominal_alpha": nominal,
                    "fixed_horizon_z": crate::dist::norm_ppf(1.0 - alpha / sides),
                }));
            }
            let z: Option<Vec<f64>> = inputs
                .get("looks")?
                .as_array()?
                .iter()
                .map(|l| {
                    let r = two_proportions(
                        f(l, "x_a")?,
                        f(l, "n_a")?,
                        f(l, "x_b")?,
                        f(l, "n_b")?,
                        alpha,
                    );
                    Some(r.unpooled.stat)
                })
                .collect();
            let z = z?;
            let reject: Vec<bool> = z.iter().zip(&bounds).map(|(z, b)| z.abs() >= *b).collect();
            let stopping = reject.iter().position(|&r| r).map(|i| i + 1);
            Some(json!({"z": z, "bounds": bounds, "reject": reject, "stopping_look": stopping}))
        }
        "drift_numeric" => {
            let d =
                crate::numeric_drift(&floats(inputs.get("ref")?)?, &floats(inputs.get("cur")?)?);
            Some(json!({
                "psi_ref_deciles": {
                    "inner_edges": d.decile_edges, "ref_counts": d.decile_ref_counts,
                    "cur_counts": d.decile_cur_counts, "psi": d.decile_psi,
                },
                "psi_evidently_sturges": {
                    "n_bins": d.sturges_bins, "edges": d.sturges_edges,
                    "ref_counts": d.sturges_ref_counts, "cur_counts": d.sturges_cur_counts,
                    "psi": d.sturges_psi,
                },
                "ks": {
                    "statistic": d.ks, "p_value_asymp_scipy": d.ks_p_asymp,
                    "p_value_kolmogorov_limit": d.ks_p_limit, "p_value_exact": d.ks_p_exact,
                },
                "wasserstein_1": d.wasserstein_1,
                "wasserstein_1_normed_by_ref_std_ddof0": d.wasserstein_1_over_ref_std,
            }))
        }
        _ => None,
    }
}

/// An arm as (n, mean, variance of one unit): a conversion summary `{n, x}` (variance
/// p(1 − p), ddof 0) or a mean metric (raw values, or a summary).
fn arm(inputs: &Value, name: &str) -> Option<Arm> {
    if let Some(s) = inputs.get(format!("{name}_summary"))
        && let (Some(n), Some(x)) = (f(s, "n"), f(s, "x"))
    {
        let p = x / n;
        return Some(Arm {
            n,
            mean: p,
            var: p * (1.0 - p),
        });
    }
    let m = moments(inputs, name)?;
    Some(Arm {
        n: m.n,
        mean: m.mean,
        var: m.var(),
    })
}

/// A tolerance: `Some((abs, rel))`, `None` for exact comparison; informational fields are
/// skipped before this is asked.
fn tolerance_for(tol: &Value, path: &str) -> Option<(f64, f64)> {
    let top = path.split(['.', '[']).next().unwrap_or(path);
    let t = tol
        .get(path)
        .or_else(|| tol.get(top))
        .or_else(|| tol.get("default"))?;
    if t.as_str() == Some("exact") {
        return None;
    }
    Some((f(t, "abs").unwrap_or(0.0), f(t, "rel").unwrap_or(0.0)))
}

fn informational(tol: &Value, path: &str) -> bool {
    let top = path.split(['.', '[']).next().unwrap_or(path);
    [path, top]
        .iter()
        .any(|k| tol.get(*k).and_then(Value::as_str) == Some("informational"))
}

/// Every field of `expected` that `actual` misses, as "path: expected X, got Y" lines.
pub fn grade(expected: &Value, actual: &Value, tolerance: &Value) -> Vec<String> {
    let mut failures = Vec::new();
    walk(expected, actual, tolerance, "", "", &mut failures);
    failures
}

/// `path` names the field for tolerance look-up (no list indices), `shown` for messages.
fn walk(e: &Value, a: &Value, tol: &Value, path: &str, shown: &str, out: &mut Vec<String>) {
    if !path.is_empty() && informational(tol, path) {
        return;
    }
    match e {
        Value::Object(map) => {
            for (k, ev) in map {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                let s = if shown.is_empty() {
                    k.clone()
                } else {
                    format!("{shown}.{k}")
                };
                walk(ev, a.get(k).unwrap_or(&Value::Null), tol, &p, &s, out);
            }
        }
        Value::Array(items) => {
            let empty = Vec::new();
            let got = a.as_array().unwrap_or(&empty);
            if got.len() != items.len() {
                out.push(format!(
                    "{shown}: expected {} elements, got {}",
                    items.len(),
                    got.len()
                ));
                return;
            }
            for (i, (ev, av)) in items.iter().zip(got).enumerate() {
                walk(ev, av, tol, path, &format!("{shown}[{i}]"), out);
            }
        }
        Value::Number(n) if n.is_f64() => {
            let ok = match (tolerance_for(tol, path), a.as_f64(), n.as_f64()) {
                (Some((abs, rel)), Some(x), Some(want)) => {
                    (x - want).abs() <= abs + rel * want.abs()
                }
                (None, Some(x), Some(want)) => x == want,
                _ => false,
            };
            if !ok {
                out.push(format!("{shown}: expected {e}, got {a}"));
            }
        }
        // integers, booleans, strings ("inf"), null: exactly
        _ => {
            let same = match (e.as_i64(), a.as_f64()) {
                (Some(i), Some(x)) => x == i as f64,
                _ => e == a,
            };
            if !same {
                out.push(format!("{shown}: expected {e}, got {a}"));
            }
        }
    }
}

/// The results of every supported vector of a vector file, and the failures of each.
#[derive(Debug, Default)]
pub struct Verification {
    pub results: Map<String, Value>,
    pub failures: Vec<(String, Vec<String>)>,
    pub unsupported: Vec<String>,
}

pub fn verify(file: &Value) -> Verification {
    let mut v = Verification::default();
    for vector in file
        .get("vectors")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        let id = vector
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or("?")
            .to_string();
        match run(vector) {
            None => v.unsupported.push(id),
            Some(actual) => {
                let expected = vector.get("expected").unwrap_or(&Value::Null);
                let tol = vector.get("tolerance").unwrap_or(&Value::Null);
                let failed = grade(expected, &actual, tol);
                if !failed.is_empty() {
                    v.failures.push((id.clone(), failed));
                }
                v.results.insert(id, actual);
            }
        }
    }
    v
}
