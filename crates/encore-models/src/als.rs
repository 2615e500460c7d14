//! Alternating least squares for implicit feedback (Hu, Koren, Volinsky 2008), solved with a few
//! warm-started conjugate-gradient steps per row (Takács, Pilászy, Tikk 2011), as `implicit` does.
//!
//! The input matrix holds the confidence `c_ui` of each observed pair (preference 1); unobserved
//! pairs have confidence 1 and preference 0. Each half-iteration solves, for every row x,
//! `(YᵀY + λI + Σ_i (c_i − 1) y_i y_iᵀ) x = Σ_i c_i y_i`.

use crate::data::Csr;
use crate::scoring::dot;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// Hyper-parameters of ALS.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlsConfig {
    pub factors: usize,
    pub iterations: usize,
    pub regularization: f32,
    /// CG steps per row and half-iteration
    pub cg_steps: usize,
    pub seed: u64,
    /// solve each row exactly (Cholesky) instead of with `cg_steps` CG steps
    #[serde(default)]
    pub exact: bool,
    /// how play counts become confidences
    #[serde(default)]
    pub confidence: crate::weighting::Confidence,
}

impl Default for AlsConfig {
    fn default() -> Self {
        AlsConfig {
            factors: 64,
            iterations: 15,
            regularization: 0.05,
            cg_steps: 3,
            seed: 42,
            exact: false,
            confidence: crate::weighting::Confidence::default(),
        }
    }
}

/// Row-major factor matrices.
#[derive(Debug, Clone)]
pub struct AlsModel {
    pub factors: usize,
    pub user_factors: Vec<f32>,
    pub item_factors: Vec<f32>,
}

/// `YᵀY + λI` (k x k, row-major).
fn gram(y: &[f32], k: usize, reg: f32) -> Vec<f32> {
    let rows = y.len() / k;
    let partial = (0..rows)
        .into_par_iter()
        .with_min_len(1_024)
        .fold(
            || vec![0f32; k * k],
            |mut g, r| {
                let v = &y[r * k..(r + 1) * k];
                for a in 0..k {
                    let va = v[a];
                    let row = &mut g[a * k..(a + 1) * k];
                    for (g, vb) in row.iter_mut().zip(v) {
                        *g += va * vb;
                    }
                }
                g
            },
        )
        .reduce(
            || vec![0f32; k * k],
            |mut a, b| {
                a.iter_mut().zip(b).for_each(|(x, y)| *x += y);
                a
            },
        );
    let mut g = partial;
    for a in 0..k {
        g[a * k + a] += reg;
    }
    g
}

/// `out = m v` for a symmetric `m` (k x k): summed as columns, `Σ_f v_f m_f`, which vectorizes
/// without a horizontal sum per entry.
#[inline]
fn mat_vec(m: &[f32], v: &[f32], out: &mut [f32]) {
    let k = v.len();
    out.fill(0.0);
    for (f, &vf) in v.iter().enumerate() {
        for (o, mf) in out.iter_mut().zip(&m[f * k..(f + 1) * k]) {
            *o += vf * mf;
        }
    }
}

/// One half-iteration: updates every row of `x` against fixed `y`, using the confidences of `c`
/// (rows of `c` = rows of `x`).
fn solve(c: &Csr, x: &mut [f32], y: &[f32], k: usize, reg: f32, steps: usize, exact: bool) {
    let yty = gram(y, k, reg);
    x.par_chunks_mut(k).enumerate().for_each(|(u, xu)| {
        let (items, conf) = c.row(u);
        if exact {
            exact_row(&yty, y, items, conf, xu);
        } else {
            cg_row(&yty, y, items, conf, xu, steps);
        }
    });
}

/// The exact solution for one row: `A = YᵀY + λI + Σ (c_i − 1) y_i y_iᵀ`, `b = Σ c_i y_i`,
/// solved by Cholesky in f64 (A is symmetric positive definite for λ > 0).
fn exact_row(yty: &[f32], y: &[f32], items: &[u32], conf: &[f32], xu: &mut [f32]) {
    let k = xu.len();
    let mut a: Vec<f64> = yty.iter().map(|v| f64::from(*v)).collect();
    let mut b = vec![0f64; k];
    for (&i, &ci) in items.iter().zip(conf) {
        let yi = &y[i as usize * k..(i as usize + 1) * k];
        let w = f64::from(ci) - 1.0;
        for r in 0..k {
            let yr = f64::from(yi[r]);
            b[r] += f64::from(ci) * yr;
            let row = &mut a[r * k..(r + 1) * k];
            for (c, v) in row.iter_mut().zip(yi) {
                *c += w * yr * f64::from(*v);
            }
        }
    }
    // in-place Cholesky: a = L Lᵀ, L in the lower triangle
    for j in 0..k {
        let mut d = a[j * k + j];
        for p in 0..j {
            d -= a[j * k + p] * a[j * k + p];
        }
        let d = d.max(1e-12).sqrt();
        a[j * k + j] = d;
        for i in j + 1..k {
            let mut s = a[i * k + j];
            for p in 0..j {
                s -= a[i * k + p] * a[j * k + p];
            }
            a[i * k + j] = s / d;
        }
    }
    // L z = b, then Lᵀ x = z
    for i in 0..k {
        let mut s = b[i];
        for p in 0..i {
            s -= a[i * k + p] * b[p];
        }
        b[i] = s / a[i * k + i];
    }
    for i in (0..k).rev() {
        let mut s = b[i];
        for p in i + 1..k {
            s -= a[p * k + i] * b[p];
        }
        b[i] = s / a[i * k + i];
    }
    for (x, v) in xu.iter_mut().zip(&b) {
        *x = *v as f32;
    }
}

/// A few conjugate-gradient steps for one row, warm-started at `xu`. Compiled for AVX2 + FMA as
/// well as the baseline, chosen at run time: this loop is most of the training time.
#[multiversion::multiversion(targets("x86_64+avx2+fma", "x86_64+sse4.2"))]
fn cg_row(yty: &[f32], y: &[f32], items: &[u32], conf: &[f32], xu: &mut [f32], steps: usize) {
    let k = xu.len();
    let mut r = vec![0f32; k];
    let mut ap = vec![0f32; k];
    // r = b − A x
    mat_vec(yty, xu, &mut r);
    r.iter_mut().for_each(|v| *v = -*v);
    for (&i, &ci) in items.iter().zip(conf) {
        let yi = &y[i as usize * k..(i as usize + 1) * k];
        let w = ci - (ci - 1.0) * dot(yi, xu);
        r.iter_mut().zip(yi).for_each(|(r, y)| *r += w * y);
    }
    let mut p = r.clone();
    let mut rs_old = dot(&r, &r);
    for _ in 0..steps {
        if rs_old < 1e-20 {
            break;
        }
        mat_vec(yty, &p, &mut ap);
        for (&i, &ci) in items.iter().zip(conf) {
            let yi = &y[i as usize * k..(i as usize + 1) * k];
            let w = (ci - 1.0) * dot(yi, &p);
            ap.iter_mut().zip(yi).for_each(|(a, y)| *a += w * y);
        }
        let alpha = rs_old / dot(&p, &ap);
        xu.iter_mut().zip(&p).for_each(|(x, p)| *x += alpha * p);
        r.iter_mut().zip(&ap).for_each(|(r, a)| *r -= alpha * a);
        let rs_new = dot(&r, &r);
        let beta = rs_new / rs_old;
        p.iter_mut().zip(&r).for_each(|(p, r)| *p = r + beta * *p);
        rs_old = rs_new;
    }
}

/// Uniform [0, 0.01) initial factors from a seeded SplitMix64 stream.
fn init(n: usize, k: usize, seed: u64) -> Vec<f32> {
    let mut s = seed;
    (0..n * k)
        .map(|_| {
            s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let z = crate::split::splitmix64(s);
            (z >> 40) as f32 / (1u64 << 24) as f32 * 0.01
        })
        .collect()
}

impl AlsModel {
    /// Fits on `confidence` (users x items, the confidences `c_ui` already applied; see
    /// [`AlsConfig::confidence`]). `on_iteration(i, model)` is called after each iteration.
    pub fn fit(
        confidence: &Csr,
        config: &AlsConfig,
        on_iteration: &mut dyn FnMut(usize, &AlsModel),
    ) -> AlsModel {
        let k = config.factors;
        let transposed = confidence.transpose();
        let mut model = AlsModel {
            factors: k,
            user_factors: init(confidence.n_rows, k, config.seed),
            item_factors: init(confidence.n_cols, k, config.seed ^ 0xA5A5_A5A5),
        };
        for it in 0..config.iterations {
            let (reg, steps, exact) = (config.regularization, config.cg_steps, config.exact);
            let (x, y) = (&mut model.user_factors, &mut model.item_factors);
            solve(confidence, x, y, k, reg, steps, exact);
            solve(&transposed, y, x, k, reg, steps, exact);
            on_iteration(it, &model);
        }
        model
    }

    /// The weighted squared error the fit minimizes, per unit of confidence, as `implicit`
    /// reports it: `(Σ_u Σ_i c_ui (p_ui − x_u·y_i)² + λ (‖X‖² + ‖Y‖²)) / Σ_u Σ_i c_ui` over all
    /// pairs (unobserved ones have c = 1, p = 0). The sum over all items is computed as
    /// `x_uᵀ YᵀY x_u` plus a correction over the observed items, so it costs about one CG step.
    pub fn loss(&self, confidence: &Csr, regularization: f32) -> f64 {
        let k = self.factors;
        let yty = gram(&self.item_factors, k, 0.0);
        let (error, observed_conf) = (0..confidence.n_rows)
            .into_par_iter()
            .map_init(
                || vec![0f32; k],
                |r, u| {
                    let xu = self.user(u);
                    mat_vec(&yty, xu, r);
                    let mut e = f64::from(dot(xu, r));
                    let mut c_sum = 0f64;
                    let (items, conf) = confidence.row(u);
                    for (&i, &c) in items.iter().zip(conf) {
                        let s = f64::from(dot(xu, self.item(i as usize)));
                        let c = f64::from(c);
                        e += c * (1.0 - s) * (1.0 - s) - s * s;
                        c_sum += c;
                    }
                    (e, c_sum)
                },
            )
            .reduce(|| (0.0, 0.0), |a, b| (a.0 + b.0, a.1 + b.1));
        let norm = |v: &[f32]| v.iter().map(|x| f64::from(*x) * f64::from(*x)).sum::<f64>();
        let unobserved =
            (confidence.n_rows * confidence.n_cols).saturating_sub(confidence.nnz()) as f64;
        (error + f64::from(regularization) * (norm(&self.user_factors) + norm(&self.item_factors)))
            / (observed_conf + unobserved).max(1.0)
    }

    pub fn user(&self, u: usize) -> &[f32] {
        &self.user_factors[u * self.factors..(u + 1) * self.factors]
    }

    pub fn item(&self, i: usize) -> &[f32] {
        &self.item_factors[i * self.factors..(i + 1) * self.factors]
    }

    /// The fold-in solver with `YᵀY + λI` computed once, for serving many fold-ins.
    pub fn fold_in_solver(&self, regularization: f32) -> FoldIn {
        FoldIn {
            yty: gram(&self.item_factors, self.factors, regularization),
        }
    }

    /// A user vector for someone the model has not seen (or whose items changed), from their
    /// items and confidences with the item factors fixed: the same least-squares problem as a
    /// training step, solved from zero with enough CG steps to converge (CG is exact after k).
    pub fn fold_in(&self, items: &[u32], confidence: &[f32], regularization: f32) -> Vec<f32> {
        self.fold_in_solver(regularization)
            .solve(self, items, confidence)
    }

    /// Scores of every item for user `u`.
    pub fn scores(&self, u: usize, out: &mut [f32]) {
        let xu = self.user(u);
        for (i, s) in out.iter_mut().enumerate() {
            *s = dot(xu, self.item(i));
        }
    }
}

/// Fold-in with the Gram matrix of the item factors precomputed: one solve costs
/// O(k² + |items| k) instead of O(|catalogue| k²).
#[derive(Debug, Clone)]
pub struct FoldIn {
    yty: Vec<f32>,
}

impl FoldIn {
    /// The user vector for `items` with `confidence`, against `model`'s item factors.
    pub fn solve(&self, model: &AlsModel, items: &[u32], confidence: &[f32]) -> Vec<f32> {
        let k = model.factors;
        let mut x = vec![0f32; k];
        cg_row(&self.yty, &model.item_factors, items, confidence, &mut x, k);
        x
    }
}
