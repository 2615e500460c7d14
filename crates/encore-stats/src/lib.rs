//! `encore-stats`: the statistics behind experiment analysis and drift monitoring, checked
//! field by field against reference vectors (`../shared/oracles/stats-vectors.json`, computed
//! with scipy, statsmodels, gbstats and spotify-confidence) by [`oracle`].
//!
//! - [`Moments`]: per-arm sufficient statistics (count, mean, sum of squared deviations) kept
//!   with Welford's update and merged with Chan's formula, so they stay exact where the naive
//!   sum of squares loses every digit;
//! - [`welch`], [`two_proportions`]: the fixed-horizon tests for mean and conversion metrics;
//! - [`cuped`], [`ratio_comparison`]: variance reduction with a pre-period covariate, for mean
//!   metrics and for ratio metrics (delta method);
//! - [`srm`]: the sample-ratio-mismatch chi-square over k variants;
//! - [`adjust`]: Bonferroni, Holm, Hochberg, Benjamini-Hochberg and Benjamini-Yekutieli;
//! - [`msprt`]: the always-valid normal-mixture sequential test;
//! - [`categorical_drift`]: Jensen-Shannon, chi-square, PSI and Hellinger between two samples;
//! - [`profile`]: mergeable profiles of rows (counts per value, fixed-bin histograms) and
//!   their drift, attribute by attribute.

pub mod dist;
pub mod ks;
pub mod oracle;
pub mod profile;

use serde::Serialize;

/// Which side a test looks at: `b - a` different from, greater than or less than zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alternative {
    TwoSided,
    Greater,
    Less,
}

impl Alternative {
    pub fn parse(s: &str) -> Option<Alternative> {
        match s {
            "two-sided" | "two_sided" => Some(Alternative::TwoSided),
            "greater" | "larger" => Some(Alternative::Greater),
            "less" | "smaller" => Some(Alternative::Less),
            _ => None,
        }
    }
}

/// Count, mean and sum of squared deviations of a sample.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Moments {
    pub n: f64,
    pub mean: f64,
    /// Σ (x − mean)²
    pub m2: f64,
}

impl Moments {
    pub fn from_slice(xs: &[f64]) -> Moments {
        let mut m = Moments::default();
        for &x in xs {
            m.push(x);
        }
        m
    }

    /// From a count, mean and sample variance (ddof 1).
    pub fn from_var(n: f64, mean: f64, var_ddof1: f64) -> Moments {
        Moments {
            n,
            mean,
            m2: var_ddof1 * (n - 1.0),
        }
    }

    /// From a count, sum and sum of squares (exact only when the sums are).
    pub fn from_sums(n: f64, sum: f64, sum_squares: f64) -> Moments {
        let mean = sum / n;
        Moments {
            n,
            mean,
            m2: (sum_squares - sum * mean).max(0.0),
        }
    }

    /// Welford's update.
    pub fn push(&mut self, x: f64) {
        self.n += 1.0;
        let d = x - self.mean;
        self.mean += d / self.n;
        self.m2 += d * (x - self.mean);
    }

    /// Chan et al.'s parallel merge: the moments of both samples together.
    pub fn merge(&self, o: &Moments) -> Moments {
        let n = self.n + o.n;
        if n == 0.0 {
            return Moments::default();
        }
        let d = o.mean - self.mean;
        Moments {
            n,
            mean: self.mean + d * o.n / n,
            m2: self.m2 + o.m2 + d * d * self.n * o.n / n,
        }
    }

    /// Sample variance, ddof 1.
    pub fn var(&self) -> f64 {
        self.m2 / (self.n - 1.0)
    }
}

/// An estimate with its interval and p-value, under the t (or normal) reference.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Inference {
    pub estimate: f64,
    pub se: f64,
    pub stat: f64,
    pub p_value: f64,
    pub ci: (f64, f64),
}

/// `estimate ± quantile · se` and the p-value of `estimate / se`, against Student's t with
/// `df` degrees of freedom (`None`: the standard normal).
pub fn infer(estimate: f64, se: f64, df: Option<f64>, alpha: f64, alt: Alternative) -> Inference {
    let stat = estimate / se;
    let sf = |x: f64| match df {
        Some(df) => dist::t_sf(x, df),
        None => dist::norm_sf(x),
    };
    let q = |p: f64| match df {
        Some(df) => dist::t_ppf(p, df),
        None => dist::norm_ppf(p),
    };
    let (p_value, ci) = match alt {
        Alternative::TwoSided => {
            let h = q(1.0 - alpha / 2.0) * se;
            (
                (2.0 * sf(stat.abs())).min(1.0),
                (estimate - h, estimate + h),
            )
        }
        Alternative::Greater => (sf(stat), (estimate - q(1.0 - alpha) * se, f64::INFINITY)),
        Alternative::Less => (
            sf(-stat),
            (f64::NEG_INFINITY, estimate + q(1.0 - alpha) * se),
        ),
    };
    Inference {
        estimate,
        se,
        stat,
        p_value,
        ci,
    }
}

/// Welch-Satterthwaite degrees of freedom of a difference with per-arm variances of the mean
/// `va_n = var_a / n_a` and `vb_n`.
pub fn welch_df(va_n: f64, vb_n: f64, n_a: f64, n_b: f64) -> f64 {
    (va_n + vb_n).powi(2) / (va_n * va_n / (n_a - 1.0) + vb_n * vb_n / (n_b - 1.0))
}

/// Welch's t-test of `mean_b − mean_a`, with its degrees of freedom.
pub fn welch(a: &Moments, b: &Moments, alpha: f64, alt: Alternative) -> (Inference, f64) {
    let (va, vb) = (a.var() / a.n, b.var() / b.n);
    let df = welch_df(va, vb, a.n, b.n);
    let se = (va + vb).sqrt();
    (infer(b.mean - a.mean, se, Some(df), alpha, alt), df)
}

/// Count, means, and sums of squared and cross deviations of paired values (x, y).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CoMoments {
    pub n: f64,
    pub mean_x: f64,
    pub mean_y: f64,
    pub m2x: f64,
    pub m2y: f64,
    pub cxy: f64,
}

impl CoMoments {
    pub fn from_slices(x: &[f64], y: &[f64]) -> CoMoments {
        let mut m = CoMoments::default();
        for (&a, &b) in x.iter().zip(y) {
            m.push(a, b);
        }
        m
    }

    /// From sums, sums of squares and the sum of products.
    pub fn from_sums(n: f64, sx: f64, sxx: f64, sy: f64, syy: f64, sxy: f64) -> CoMoments {
        CoMoments {
            n,
            mean_x: sx / n,
            mean_y: sy / n,
            m2x: sxx - sx * sx / n,
            m2y: syy - sy * sy / n,
            cxy: sxy - sx * sy / n,
        }
    }

    /// Welford's update for two variables and their co-moment.
    pub fn push(&mut self, x: f64, y: f64) {
        self.n += 1.0;
        let dx = x - self.mean_x;
        self.mean_x += dx / self.n;
        let dy = y - self.mean_y;
        self.mean_y += dy / self.n;
        self.m2x += dx * (x - self.mean_x);
        self.m2y += dy * (y - self.mean_y);
        self.cxy += dx * (y - self.mean_y);
    }

    /// Chan's merge.
    pub fn merge(&self, o: &CoMoments) -> CoMoments {
        let n = self.n + o.n;
        if n == 0.0 {
            return CoMoments::default();
        }
        let (dx, dy) = (o.mean_x - self.mean_x, o.mean_y - self.mean_y);
        let w = self.n * o.n / n;
        CoMoments {
            n,
            mean_x: self.mean_x + dx * o.n / n,
            mean_y: self.mean_y + dy * o.n / n,
            m2x: self.m2x + o.m2x + dx * dx * w,
            m2y: self.m2y + o.m2y + dy * dy * w,
            cxy: self.cxy + o.cxy + dx * dy * w,
        }
    }

    pub fn var_x(&self) -> f64 {
        self.m2x / (self.n - 1.0)
    }

    pub fn var_y(&self) -> f64 {
        self.m2y / (self.n - 1.0)
    }

    pub fn cov(&self) -> f64 {
        self.cxy / (self.n - 1.0)
    }
}

/// A relative change `b / a − 1` by the delta method, gbstats' conventions: per-arm means and
/// variances (of one unit), Welch degrees of freedom on the unscaled variances.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Arm {
    pub n: f64,
    pub mean: f64,
    pub var: f64,
}

/// `(t inference, z inference, df)` of the relative lift of `b` over `a`.
pub fn relative_lift(
    a: &Arm,
    b: &Arm,
    alpha: f64,
    alt: Alternative,
) -> (Inference, Inference, f64) {
    let lift = b.mean / a.mean - 1.0;
    let var = b.var / (b.n * a.mean * a.mean) + a.var * b.mean * b.mean / (a.n * a.mean.powi(4));
    let df = welch_df(a.var / a.n, b.var / b.n, a.n, b.n);
    let se = var.sqrt();
    (
        infer(lift, se, Some(df), alpha, alt),
        infer(lift, se, None, alpha, alt),
        df,
    )
}

/// A ratio metric `Σm / Σd` per arm (e.g. skips per stream, unit = listener): the delta-method
/// variance of one unit, `var_m/μd² − 2 cov μm/μd³ + μm² var_d/μd⁴`.
pub fn ratio_arm(md: &CoMoments) -> (f64, f64) {
    // x = denominator d, y = numerator m
    let (mm, md_) = (md.mean_y, md.mean_x);
    let ratio = mm / md_;
    let unit_var = md.var_y() / (md_ * md_) - 2.0 * md.cov() * mm / md_.powi(3)
        + mm * mm * md.var_x() / md_.powi(4);
    (ratio, unit_var)
}

/// Per-unit sufficient statistics of a ratio metric with a pre-period covariate: the count,
/// means and co-moment matrix of (numerator, denominator, pre-period numerator, pre-period
/// denominator), kept with Welford's update and merged with Chan's formula like [`CoMoments`].
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RatioMoments {
    pub n: f64,
    pub mean: [f64; 4],
    /// sums of cross deviations
    pub c: [[f64; 4]; 4],
}

// 4 × 4 matrix arithmetic reads clearest with indices
#[allow(clippy::needless_range_loop)]
impl RatioMoments {
    /// One unit's `[numerator, denominator, pre numerator, pre denominator]`.
    pub fn push(&mut self, v: [f64; 4]) {
        self.n += 1.0;
        let mut d = [0.0; 4];
        for i in 0..4 {
            d[i] = v[i] - self.mean[i];
            self.mean[i] += d[i] / self.n;
        }
        for i in 0..4 {
            for j in 0..4 {
                self.c[i][j] += d[i] * (v[j] - self.mean[j]);
            }
        }
    }

    pub fn merge(&self, o: &RatioMoments) -> RatioMoments {
        let n = self.n + o.n;
        if n == 0.0 {
            return RatioMoments::default();
        }
        let w = self.n * o.n / n;
        let mut m = RatioMoments {
            n,
            ..Default::default()
        };
        let d: [f64; 4] = std::array::from_fn(|i| o.mean[i] - self.mean[i]);
        for i in 0..4 {
            m.mean[i] = self.mean[i] + d[i] * o.n / n;
            for j in 0..4 {
                m.c[i][j] = self.c[i][j] + o.c[i][j] + d[i] * d[j] * w;
            }
        }
        m
    }

    /// The sample covariance of the linear combinations `a·v` and `b·v`.
    fn cov(&self, a: &[f64; 4], b: &[f64; 4]) -> f64 {
        let mut s = 0.0;
        for i in 0..4 {
            for j in 0..4 {
                s += a[i] * b[j] * self.c[i][j];
            }
        }
        s / (self.n - 1.0)
    }

    /// `(ratio, pre-period ratio, linearized post value, linearized pre value)`: a unit's
    /// contribution to the ratio by the delta method, `(m − R·d) / mean(d)`, as coefficients of
    /// the four values (zero for the pre period when nobody listened in it).
    fn linearized(&self) -> (f64, f64, [f64; 4], [f64; 4]) {
        let [m, d, m0, d0] = self.mean;
        let r = m / d;
        let y = [1.0 / d, -r / d, 0.0, 0.0];
        if d0 > 0.0 {
            let r0 = m0 / d0;
            (r, r0, y, [0.0, 0.0, 1.0 / d0, -r0 / d0])
        } else {
            (r, 0.0, y, [0.0; 4])
        }
    }
}

/// A ratio metric's comparison (`Σm/Σd` of `b` against `a`, unit = listener), unadjusted by the
/// delta method and CUPED-adjusted on the linearized pre-period ratio (Deng et al. 2013/2018):
/// effect `(R_b − R_a) − θ(R0_b − R0_a)`, θ pooled within arms.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RatioComparison {
    pub ratio_a: f64,
    pub ratio_b: f64,
    pub theta: f64,
    pub abs: Inference,
    pub rel: Inference,
    pub abs_adjusted: Inference,
    pub rel_adjusted: Inference,
    /// Welch degrees of freedom, unadjusted and adjusted
    pub df: f64,
    pub df_adjusted: f64,
    /// 1 − se²(adjusted) / se²(unadjusted)
    pub variance_reduction: f64,
}

pub fn ratio_comparison(
    a: &RatioMoments,
    b: &RatioMoments,
    alpha: f64,
    alt: Alternative,
) -> RatioComparison {
    let (ra, r0a, ya, xa) = a.linearized();
    let (rb, r0b, yb, xb) = b.linearized();
    let (vya, vyb) = (a.cov(&ya, &ya), b.cov(&yb, &yb));
    let (vxa, vxb) = (a.cov(&xa, &xa), b.cov(&xb, &xb));
    let (cxa, cxb) = (a.cov(&xa, &ya), b.cov(&xb, &yb));
    let pooled_vx = vxa * (a.n - 1.0) + vxb * (b.n - 1.0);
    let theta = if pooled_vx > 0.0 {
        (cxa * (a.n - 1.0) + cxb * (b.n - 1.0)) / pooled_vx
    } else {
        0.0
    };
    let compare = |effect: f64, va: f64, vb: f64| {
        let df = welch_df(va / a.n, vb / b.n, a.n, b.n);
        let se = (va / a.n + vb / b.n).sqrt();
        let rel_se = (vb / (b.n * ra * ra) + va * rb * rb / (a.n * ra.powi(4))).sqrt();
        (
            infer(effect, se, Some(df), alpha, alt),
            infer(effect / ra, rel_se, Some(df), alpha, alt),
            df,
        )
    };
    let (abs, rel, df) = compare(rb - ra, vya, vyb);
    let adjusted = |vy: f64, vx: f64, c: f64| vy - 2.0 * theta * c + theta * theta * vx;
    let (abs_adjusted, rel_adjusted, df_adjusted) = compare(
        (rb - ra) - theta * (r0b - r0a),
        adjusted(vya, vxa, cxa),
        adjusted(vyb, vxb, cxb),
    );
    RatioComparison {
        ratio_a: ra,
        ratio_b: rb,
        theta,
        abs,
        rel,
        abs_adjusted,
        rel_adjusted,
        df,
        df_adjusted,
        variance_reduction: 1.0 - (abs_adjusted.se / abs.se).powi(2),
    }
}

/// CUPED (regression adjustment on a pre-period covariate x, theta pooled over both arms).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cuped {
    pub theta: f64,
    pub adj_mean_a: f64,
    pub adj_mean_b: f64,
    pub adj_var_a: f64,
    pub adj_var_b: f64,
    pub df: f64,
    pub abs: Inference,
    pub abs_z: Inference,
    pub rel: Inference,
    pub se_unadjusted: f64,
    /// 1 − se² / se_unadjusted²
    pub variance_reduction: f64,
}

/// `a`, `b`: per-arm co-moments of (x = covariate, y = metric).
pub fn cuped(a: &CoMoments, b: &CoMoments, alpha: f64, alt: Alternative) -> Cuped {
    let pooled = a.merge(b);
    // a covariate without variance (nobody listened before exposure, or everyone alike)
    // explains nothing: no adjustment, the unadjusted estimate (not 0 / 0)
    let theta = if pooled.var_x() > 0.0 {
        pooled.cov() / pooled.var_x()
    } else {
        0.0
    };
    let adj_var = |m: &CoMoments| m.var_y() + theta * theta * m.var_x() - 2.0 * theta * m.cov();
    let (va, vb) = (adj_var(a), adj_var(b));
    let (adj_mean_a, adj_mean_b) = (a.mean_y - theta * a.mean_x, b.mean_y - theta * b.mean_x);
    let df = welch_df(va / a.n, vb / b.n, a.n, b.n);
    let se = (va / a.n + vb / b.n).sqrt();
    let effect = adj_mean_b - adj_mean_a;
    let (ma, mb) = (a.mean_y, b.mean_y);
    let rel_se = (vb / (b.n * ma * ma) + va * mb * mb / (a.n * ma.powi(4))).sqrt();
    let se_unadjusted = (a.var_y() / a.n + b.var_y() / b.n).sqrt();
    Cuped {
        theta,
        adj_mean_a,
        adj_mean_b,
        adj_var_a: va,
        adj_var_b: vb,
        df,
        abs: infer(effect, se, Some(df), alpha, alt),
        abs_z: infer(effect, se, None, alpha, alt),
        rel: infer(effect / ma, rel_se, Some(df), alpha, alt),
        se_unadjusted,
        variance_reduction: 1.0 - (se / se_unadjusted).powi(2),
    }
}

/// GrowthBook's sequential test: an asymptotic confidence sequence (Waudby-Smith et al. 2023,
/// eq. 9) around `estimate` with standard error `se`, `n` units in all, the mixture tuned for
/// `tuning` units. Returns (rho, interval, always-valid p-value).
pub fn confidence_sequence(
    estimate: f64,
    se: f64,
    n: f64,
    tuning: f64,
    alpha: f64,
) -> (f64, (f64, f64), f64) {
    let l = -2.0 * alpha.ln();
    let rho = ((l + (l + 1.0).ln()) / tuning).sqrt();
    let nr2 = n * rho * rho;
    let half = se
        * n.sqrt()
        * (2.0 * (nr2 + 1.0) * ((nr2 + 1.0).sqrt() / alpha).ln() / (n * rho).powi(2)).sqrt();
    let z = estimate / se;
    let e = (nr2 * z * z / (2.0 * (nr2 + 1.0))).exp() / (nr2 + 1.0).sqrt();
    (rho, (estimate - half, estimate + half), (1.0 / e).min(1.0))
}

/// `P(p_b > p_a)` for independent `p_a ~ Beta(aa, ba)`, `p_b ~ Beta(ab, bb)` with integer `ab`
/// (Evan Miller's closed form: a sum of `ab` terms, each in log space).
pub fn beta_chance_to_win(aa: f64, ba: f64, ab: f64, bb: f64) -> f64 {
    use statrs::function::beta::ln_beta;
    let base = ln_beta(aa, ba);
    (0..ab.round() as u64)
        .map(|i| {
            let i = i as f64;
            (ln_beta(aa + i, ba + bb) - (bb + i).ln() - ln_beta(1.0 + i, bb) - base).exp()
        })
        .sum()
}

/// The Beta-Binomial comparison of two conversion rates under a `Beta(alpha0, beta0)` prior.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BetaBinomial {
    pub posterior_a: (f64, f64),
    pub posterior_b: (f64, f64),
    /// P(p_b > p_a)
    pub chance_to_win_b: f64,
    /// E[max(p_a − p_b, 0)]: what choosing b costs when a is better
    pub expected_loss_choose_b: f64,
    /// E[max(p_b − p_a, 0)]
    pub expected_loss_choose_a: f64,
}

pub fn beta_binomial(
    x_a: f64,
    n_a: f64,
    x_b: f64,
    n_b: f64,
    alpha0: f64,
    beta0: f64,
) -> BetaBinomial {
    let (aa, ba) = (alpha0 + x_a, beta0 + n_a - x_a);
    let (ab, bb) = (alpha0 + x_b, beta0 + n_b - x_b);
    let (ma, mb) = (aa / (aa + ba), ab / (ab + bb));
    // E[p 1{event}] = mean x P(event) with p drawn from its size-biased Beta(alpha + 1, beta)
    let b_beats_a_sized = beta_chance_to_win(aa + 1.0, ba, ab, bb);
    let b_sized_beats_a = beta_chance_to_win(aa, ba, ab + 1.0, bb);
    BetaBinomial {
        posterior_a: (aa, ba),
        posterior_b: (ab, bb),
        chance_to_win_b: beta_chance_to_win(aa, ba, ab, bb),
        expected_loss_choose_b: ma * (1.0 - b_beats_a_sized) - mb * (1.0 - b_sized_beats_a),
        expected_loss_choose_a: mb * b_sized_beats_a - ma * b_beats_a_sized,
    }
}

/// GrowthBook's default Bayesian summary of a relative lift: normal approximation with a flat
/// prior. Returns (chance to win, lift, interval, [risk of keeping a, risk of choosing b]).
pub fn bayes_normal_lift(a: &Arm, b: &Arm, alpha: f64) -> (f64, f64, (f64, f64), [f64; 2]) {
    let lift = b.mean / a.mean - 1.0;
    let sd =
        (b.var / (b.n * a.mean * a.mean) + a.var * b.mean * b.mean / (a.n * a.mean.powi(4))).sqrt();
    let z = dist::norm_ppf(1.0 - alpha / 2.0);
    let u = lift / sd;
    let pdf = (-0.5 * u * u).exp() / (2.0 * std::f64::consts::PI).sqrt();
    // E[max(X, 0)] and E[max(−X, 0)] for X ~ N(lift, sd²)
    let up = lift * dist::norm_cdf(u) + sd * pdf;
    let down = -lift * dist::norm_cdf(-u) + sd * pdf;
    (
        dist::norm_cdf(u),
        lift,
        (lift - z * sd, lift + z * sd),
        [up, down],
    )
}

/// Group-sequential efficacy bounds (z scale) at `fractions` of the planned information, with
/// Lan-DeMets power-family spending `alpha_side · t^rho` for the upper boundary (the lower one
/// truncated at `-ztrun`, i.e. none). Look k's bound makes the probability of first crossing
/// there equal the alpha spent between looks k − 1 and k; the crossing probabilities come from
/// the density of the score statistic on the continuation region, integrated look by look on a
/// grid (Simpson's rule; Armitage, McPherson and Rowe 1969).
pub fn gst_bounds(fractions: &[f64], alpha_side: f64, rho: f64, ztrun: f64) -> Vec<f64> {
    const GRID: usize = 1201; // odd: Simpson
    let spent = |t: f64| alpha_side * t.clamp(0.0, 1.0).powf(rho);
    let mut bounds = Vec::with_capacity(fractions.len());
    // the continuation density of S_k = Z_k √t_k on an even grid: (start, step, values)
    let mut density: Option<(f64, f64, Vec<f64>)> = None;
    let mut t_prev = 0.0;
    let mut spent_prev = 0.0;
    for &t in fractions {
        let target = spent(t) - spent_prev;
        let b = match &density {
            None => dist::norm_ppf(1.0 - target),
            Some((start, h, f)) => {
                let sd = (t - t_prev).sqrt();
                let cross = |b: f64| -> f64 {
                    simpson(f.len(), *h, |j| {
                        let s = start + j as f64 * h;
                        f[j] * dist::norm_sf((b * t.sqrt() - s) / sd)
                    })
                };
                // the crossing probability falls as the bound rises: bisection
                let (mut lo, mut hi) = (-ztrun, ztrun);
                for _ in 0..100 {
                    let mid = 0.5 * (lo + hi);
                    if cross(mid) > target {
                        lo = mid;
                    } else {
                        hi = mid;
                    }
                }
                0.5 * (lo + hi)
            }
        };
        bounds.push(b);
        // the density of S_t on (−ztrun √t, b √t), given no crossing so far
        let (lo, hi) = (-ztrun * t.sqrt(), b * t.sqrt());
        let h = (hi - lo) / (GRID - 1) as f64;
        let next: Vec<f64> = (0..GRID)
            .map(|i| {
                let s = lo + i as f64 * h;
                match &density {
                    None => normal_pdf(s / t.sqrt()) / t.sqrt(),
                    Some((start, hp, f)) => {
                        let sd = (t - t_prev).sqrt();
                        simpson(f.len(), *hp, |j| {
                            f[j] * normal_pdf((s - (start + j as f64 * hp)) / sd) / sd
                        })
                    }
                }
            })
            .collect();
        density = Some((lo, h, next));
        t_prev = t;
        spent_prev = spent(t);
    }
    bounds
}

fn normal_pdf(x: f64) -> f64 {
    (-0.5 * x * x).exp() / (2.0 * std::f64::consts::PI).sqrt()
}

/// Simpson's rule over `n` (odd) equally spaced points `g(0..n)` with spacing `h`.
fn simpson(n: usize, h: f64, g: impl Fn(usize) -> f64) -> f64 {
    let mut sum = g(0) + g(n - 1);
    for j in 1..n - 1 {
        sum += if j % 2 == 1 { 4.0 } else { 2.0 } * g(j);
    }
    sum * h / 3.0
}

/// Numeric drift between a reference and a current sample.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NumericDrift {
    /// PSI on the reference's deciles (numpy's linear quantiles, duplicate edges merged)
    pub decile_edges: Vec<f64>,
    pub decile_ref_counts: Vec<u64>,
    pub decile_cur_counts: Vec<u64>,
    pub decile_psi: f64,
    /// PSI on Sturges' equal-width bins over both samples (Evidently's numeric PSI)
    pub sturges_bins: usize,
    pub sturges_edges: Vec<f64>,
    pub sturges_ref_counts: Vec<u64>,
    pub sturges_cur_counts: Vec<u64>,
    pub sturges_psi: f64,
    /// the two-sample KS statistic and its p-values: one-sample exact distribution at the
    /// effective size (scipy's `asymp`), the Kolmogorov limit, and the exact two-sample null
    /// (`None` above 4e6 pairs)
    pub ks: f64,
    pub ks_p_asymp: f64,
    pub ks_p_limit: f64,
    pub ks_p_exact: Option<f64>,
    pub wasserstein_1: f64,
    pub wasserstein_1_over_ref_std: f64,
}

/// Bins of `x` under sorted inner `edges`: the index is the number of edges <= x.
fn bin_counts(x: &[f64], edges: &[f64], bins: usize, last_closed: bool) -> Vec<u64> {
    let mut counts = vec![0u64; bins];
    for &v in x {
        let mut i = edges.partition_point(|&e| e <= v);
        if last_closed && i >= bins {
            i = bins - 1;
        }
        if let Some(c) = counts.get_mut(i) {
            *c += 1;
        }
    }
    counts
}

fn psi_terms(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(a, b)| (b - a) * (b / a).ln()).sum()
}

pub fn numeric_drift(reference: &[f64], current: &[f64]) -> NumericDrift {
    let sorted = |x: &[f64]| {
        let mut v = x.to_vec();
        v.sort_by(f64::total_cmp);
        v
    };
    let (r, c) = (sorted(reference), sorted(current));
    let (n1, n2) = (r.len(), c.len());
    // deciles of the reference, numpy's default (Hyndman-Fan type 7) arithmetic
    let mut edges: Vec<f64> = (1..10)
        .map(|j| {
            let h = (n1 - 1) as f64 * (j as f64 / 10.0);
            let i = h.floor() as usize;
            let g = h - i as f64;
            let (lo, hi) = (r[i], r[(i + 1).min(n1 - 1)]);
            if g < 0.5 {
                lo + (hi - lo) * g
            } else {
                hi - (hi - lo) * (1.0 - g)
            }
        })
        .collect();
    edges.dedup();
    let props = |counts: &[u64], n: usize| -> Vec<f64> {
        counts
            .iter()
            .map(|&k| if k == 0 { 1e-4 } else { k as f64 / n as f64 })
            .collect()
    };
    let bins = edges.len() + 1;
    let (rc, cc) = (
        bin_counts(&r, &edges, bins, false),
        bin_counts(&c, &edges, bins, false),
    );
    let decile_psi = psi_terms(&props(&rc, n1), &props(&cc, n2));
    // Sturges' bins over both samples, as numpy.histogram_bin_edges and numpy.linspace compute
    let (lo, hi) = (r[0].min(c[0]), r[n1 - 1].max(c[n2 - 1]));
    let n = (n1 + n2) as f64;
    let width = (hi - lo) / (n.log2() + 1.0);
    let nb = (((hi - lo) / width).ceil() as usize).max(1);
    let step = (hi - lo) / nb as f64;
    let mut sturges_edges: Vec<f64> = (0..=nb).map(|i| i as f64 * step + lo).collect();
    sturges_edges[nb] = hi;
    let inner = &sturges_edges[1..];
    let (rs, cs) = (
        bin_counts(&r, inner, nb, true),
        bin_counts(&c, inner, nb, true),
    );
    let filled = |counts: &[u64], total: usize| -> Vec<f64> {
        let p: Vec<f64> = counts.iter().map(|&k| k as f64 / total as f64).collect();
        let min_nonzero = p
            .iter()
            .copied()
            .filter(|&x| x > 0.0)
            .fold(f64::INFINITY, f64::min);
        let fill = if min_nonzero <= 1e-4 {
            min_nonzero / 1e6
        } else {
            1e-4
        };
        p.into_iter()
            .map(|x| if x == 0.0 { fill } else { x })
            .collect()
    };
    let sturges_psi = psi_terms(&filled(&cs, n2), &filled(&rs, n1));
    // KS: the largest gap between the right-continuous ECDFs at every pooled value
    let ecdf = |x: &[f64], v: f64| x.partition_point(|&e| e <= v) as f64 / x.len() as f64;
    let ks = r
        .iter()
        .chain(&c)
        .map(|&v| (ecdf(&r, v) - ecdf(&c, v)).abs())
        .fold(0.0, f64::max);
    let (n1f, n2f) = (n1 as f64, n2 as f64);
    let effective = (n1f * n2f / (n1f + n2f)).round_ties_even() as usize;
    // Wasserstein-1: the area between the ECDFs
    let mut all: Vec<f64> = r.iter().chain(&c).copied().collect();
    all.sort_by(f64::total_cmp);
    let wasserstein_1: f64 = all
        .windows(2)
        .map(|w| (ecdf(&r, w[0]) - ecdf(&c, w[0])).abs() * (w[1] - w[0]))
        .sum();
    let mean = r.iter().sum::<f64>() / n1f;
    let std = (r.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n1f).sqrt();
    NumericDrift {
        decile_edges: edges,
        decile_ref_counts: rc,
        decile_cur_counts: cc,
        decile_psi,
        sturges_bins: nb,
        sturges_edges,
        sturges_ref_counts: rs,
        sturges_cur_counts: cs,
        sturges_psi,
        ks,
        ks_p_asymp: ks::kolmogorov_sf(effective, ks),
        ks_p_limit: ks::kolmogorov_limit_sf((n1f * n2f / (n1f + n2f)).sqrt() * ks),
        ks_p_exact: (n1f * n2f <= 4e6).then(|| ks::two_sample_exact_sf(n1, n2, ks)),
        wasserstein_1,
        wasserstein_1_over_ref_std: wasserstein_1 / std,
    }
}

/// The two-proportion z-test of `p_b − p_a`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Proportions {
    pub p_a: f64,
    pub p_b: f64,
    pub effect: f64,
    pub p_pooled: f64,
    pub se_pooled: f64,
    pub z_pooled: f64,
    pub p_value_pooled: f64,
    /// Wald: unpooled variance
    pub unpooled: Inference,
    /// Pearson chi-square of the 2 x 2 table, without Yates' correction (= z_pooled²)
    pub chi2: f64,
}

pub fn two_proportions(x_a: f64, n_a: f64, x_b: f64, n_b: f64, alpha: f64) -> Proportions {
    let (p_a, p_b) = (x_a / n_a, x_b / n_b);
    let effect = p_b - p_a;
    let p = (x_a + x_b) / (n_a + n_b);
    let se_pooled = (p * (1.0 - p) * (1.0 / n_a + 1.0 / n_b)).sqrt();
    let z_pooled = effect / se_pooled;
    let se = (p_a * (1.0 - p_a) / n_a + p_b * (1.0 - p_b) / n_b).sqrt();
    Proportions {
        p_a,
        p_b,
        effect,
        p_pooled: p,
        se_pooled,
        z_pooled,
        p_value_pooled: (2.0 * dist::norm_sf(z_pooled.abs())).min(1.0),
        unpooled: infer(effect, se, None, alpha, Alternative::TwoSided),
        chi2: z_pooled * z_pooled,
    }
}

/// Sample-ratio mismatch: Pearson's chi-square of observed counts against `weights` (any
/// scale), with k − 1 degrees of freedom. Returns (chi2, df, p-value, expected counts).
pub fn srm(observed: &[f64], weights: &[f64]) -> (f64, usize, f64, Vec<f64>) {
    let total: f64 = observed.iter().sum();
    let wsum: f64 = weights.iter().sum();
    let expected: Vec<f64> = weights.iter().map(|w| w / wsum * total).collect();
    let chi2: f64 = observed
        .iter()
        .zip(&expected)
        .map(|(o, e)| (o - e) * (o - e) / e)
        .sum();
    let df = observed.len().saturating_sub(1);
    (chi2, df, dist::chi2_sf(chi2, df as f64), expected)
}

/// A multiple-testing correction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Correction {
    Bonferroni,
    Holm,
    Hochberg,
    BenjaminiHochberg,
    BenjaminiYekutieli,
}

/// Adjusted p-values, in the input order.
pub fn adjust(p: &[f64], method: Correction) -> Vec<f64> {
    let m = p.len();
    let mf = m as f64;
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|&a, &b| p[a].total_cmp(&p[b]));
    let mut out = vec![0.0; m];
    match method {
        Correction::Bonferroni => {
            for (o, &x) in out.iter_mut().zip(p) {
                *o = (mf * x).min(1.0);
            }
        }
        Correction::Holm => {
            // step-down: running maximum over the sorted p-values
            let mut running: f64 = 0.0;
            for (rank, &i) in order.iter().enumerate() {
                running = running.max(((mf - rank as f64) * p[i]).min(1.0));
                out[i] = running;
            }
        }
        Correction::Hochberg | Correction::BenjaminiHochberg | Correction::BenjaminiYekutieli => {
            let c: f64 = if method == Correction::BenjaminiYekutieli {
                (1..=m).map(|k| 1.0 / k as f64).sum()
            } else {
                1.0
            };
            // step-up: running minimum from the largest p-value down
            let mut running: f64 = 1.0;
            for (rank, &i) in order.iter().enumerate().rev() {
                let j = rank as f64 + 1.0;
                let v = match method {
                    Correction::Hochberg => (mf - j + 1.0) * p[i],
                    _ => c * mf * p[i] / j,
                };
                running = running.min(v.min(1.0));
                out[i] = running;
            }
        }
    }
    out
}

/// One look of the normal-mixture mSPRT on a difference of proportions.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct MsprtLook {
    pub lambda: f64,
    /// always valid: the running minimum of 1/Λ over looks so far
    pub p_value: f64,
    pub ci: (f64, f64),
}

/// The mixture sequential probability ratio test (normal mixing prior with variance `tau2` on
/// the effect `p_b − p_a`, plug-in variance), look by look on cumulative counts
/// `(n_a, x_a, n_b, x_b)`.
pub fn msprt(looks: &[(f64, f64, f64, f64)], tau2: f64, alpha: f64) -> Vec<MsprtLook> {
    let mut p_min: f64 = 1.0;
    looks
        .iter()
        .map(|&(n_a, x_a, n_b, x_b)| {
            let (p_a, p_b) = (x_a / n_a, x_b / n_b);
            let effect = p_b - p_a;
            let v = p_a * (1.0 - p_a) / n_a + p_b * (1.0 - p_b) / n_b;
            let lambda =
                (v / (v + tau2)).sqrt() * (tau2 * effect * effect / (2.0 * v * (v + tau2))).exp();
            p_min = p_min.min((1.0 / lambda).min(1.0));
            let h = (v * (v + tau2) / tau2 * (-2.0 * alpha.ln() - (v / (v + tau2)).ln())).sqrt();
            MsprtLook {
                lambda,
                p_value: p_min,
                ci: (effect - h, effect + h),
            }
        })
        .collect()
}

/// Drift between two categorical samples given as counts over the same categories.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CategoricalDrift {
    pub ref_props: Vec<f64>,
    pub cur_props: Vec<f64>,
    /// sqrt of the JS divergence, natural log
    pub js_distance: f64,
    /// the same in base 2 (in [0, 1])
    pub js_distance_base2: f64,
    pub js_divergence: f64,
    /// 2 x k homogeneity test: (statistic, df, p)
    pub chi2_contingency: (f64, usize, f64),
    /// current counts against reference proportions; `None` when a reference proportion is 0
    pub chi2_goodness_of_fit: Option<(f64, usize, f64)>,
    /// zero proportions replaced by 1e-4
    pub psi: f64,
    pub hellinger: f64,
}

pub fn categorical_drift(ref_counts: &[f64], cur_counts: &[f64]) -> CategoricalDrift {
    let props = |c: &[f64]| {
        let t: f64 = c.iter().sum();
        c.iter().map(|x| x / t).collect::<Vec<f64>>()
    };
    let (r, c) = (props(ref_counts), props(cur_counts));
    let kl = |p: &[f64], q: &[f64]| -> f64 {
        p.iter()
            .zip(q)
            .filter(|(p, _)| **p > 0.0)
            .map(|(p, q)| p * (p / q).ln())
            .sum()
    };
    let m: Vec<f64> = r.iter().zip(&c).map(|(a, b)| (a + b) / 2.0).collect();
    let js_divergence = 0.5 * kl(&r, &m) + 0.5 * kl(&c, &m);
    let k = r.len();
    let df = k.saturating_sub(1);
    // homogeneity: expected = row total x column total / grand total
    let (nr, nc): (f64, f64) = (ref_counts.iter().sum(), cur_counts.iter().sum());
    let total = nr + nc;
    let mut chi2 = 0.0;
    for (o_r, o_c) in ref_counts.iter().zip(cur_counts) {
        let col = o_r + o_c;
        for (o, row) in [(o_r, nr), (o_c, nc)] {
            let e = row * col / total;
            if e > 0.0 {
                chi2 += (o - e) * (o - e) / e;
            }
        }
    }
    let gof = if r.contains(&0.0) {
        None
    } else {
        let s: f64 = cur_counts
            .iter()
            .zip(&r)
            .map(|(o, p)| {
                let e = p * nc;
                (o - e) * (o - e) / e
            })
            .sum();
        Some((s, df, dist::chi2_sf(s, df as f64)))
    };
    let floor = |x: f64| if x == 0.0 { 1e-4 } else { x };
    let psi = r
        .iter()
        .zip(&c)
        .map(|(a, b)| {
            let (a, b) = (floor(*a), floor(*b));
            (b - a) * (b / a).ln()
        })
        .sum();
    let bc: f64 = r.iter().zip(&c).map(|(a, b)| (a * b).sqrt()).sum();
    CategoricalDrift {
        js_distance: js_divergence.sqrt(),
        js_distance_base2: (js_divergence / std::f64::consts::LN_2).sqrt(),
        js_divergence,
        chi2_contingency: (chi2, df, dist::chi2_sf(chi2, df as f64)),
        chi2_goodness_of_fit: gof,
        psi,
        hellinger: (1.0 - bc).max(0.0).sqrt(),
        ref_props: r,
        cur_props: c,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuped_on_a_constant_covariate_is_the_unadjusted_test() {
        // nobody listened before exposure: x is 0 for everyone, and CUPED must fall back to
        // Welch's test on y (it gave 0 / 0, a NaN lift and p = 1)
        let ya: Vec<f64> = (0..400).map(|i| f64::from(i % 13)).collect();
        let yb: Vec<f64> = (0..400).map(|i| f64::from(i % 13) + 0.8).collect();
        let zeros = vec![0.0; 400];
        let c = cuped(
            &CoMoments::from_slices(&zeros, &ya),
            &CoMoments::from_slices(&zeros, &yb),
            0.05,
            Alternative::TwoSided,
        );
        let (w, _) = welch(
            &Moments::from_slice(&ya),
            &Moments::from_slice(&yb),
            0.05,
            Alternative::TwoSided,
        );
        assert_eq!(c.theta, 0.0);
        assert!((c.abs.estimate - w.estimate).abs() < 1e-12);
        assert!(
            (c.abs.p_value - w.p_value).abs() < 1e-12,
            "{} vs {}",
            c.abs.p_value,
            w.p_value
        );
        assert!(c.abs.p_value < 0.01 && c.rel.estimate.is_finite());
        assert!(c.variance_reduction.abs() < 1e-12);
    }

    #[test]
    fn welford_and_chan_survive_a_large_offset() {
        // values around 1e9 with unit spread: the naive sum of squares cancels catastrophically
        let xs: Vec<f64> = (0..1000).map(|i| 1e9 + (i % 7) as f64).collect();
        let whole = Moments::from_slice(&xs);
        let (a, b) = xs.split_at(337);
        let merged = Moments::from_slice(a).merge(&Moments::from_slice(b));
        let exact_var = {
            let mean = xs.iter().map(|x| x - 1e9).sum::<f64>() / 1000.0;
            xs.iter().map(|x| (x - 1e9 - mean).powi(2)).sum::<f64>() / 999.0
        };
        // deviations of unit size at 1e9 keep about 7 digits in any update form
        assert!(
            (whole.var() - exact_var).abs() < 1e-6,
            "{} vs {exact_var}",
            whole.var()
        );
        assert!(
            (merged.var() - exact_var).abs() < 1e-6,
            "{} vs {exact_var}",
            merged.var()
        );
        let sum: f64 = xs.iter().sum();
        let ss: f64 = xs.iter().map(|x| x * x).sum();
        let naive = Moments::from_sums(1000.0, sum, ss).var();
        assert!(
            (naive - exact_var).abs() > 1e-3,
            "the naive form should fail here: {naive}"
        );
    }

    #[test]
    fn corrections_on_a_hand_worked_case() {
        let p = [0.01, 0.04, 0.03, 0.005];
        let close = |a: Vec<f64>, b: [f64; 4]| a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-12);
        // sorted 0.005, 0.01, 0.03, 0.04 -> 0.02, 0.03, 0.06, 0.06 (running max)
        assert!(close(
            adjust(&p, Correction::Holm),
            [0.03, 0.06, 0.06, 0.02]
        ));
        // m p / j: 0.02, 0.02, 0.04, 0.04 -> step-up minimum
        assert!(close(
            adjust(&p, Correction::BenjaminiHochberg),
            [0.02, 0.04, 0.04, 0.02]
        ));
        assert!(close(
            adjust(&p, Correction::Bonferroni),
            [0.04, 0.16, 0.12, 0.02]
        ));
    }
}
