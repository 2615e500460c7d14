//! How play counts become the weights models train on: confidence for ALS and item-kNN
//! (`1 + α ln(1 + plays)` in the benchmark protocol), and BM25 for item-kNN.

use crate::data::Csr;
use serde::{Deserialize, Serialize};

/// The shape of the confidence curve over play counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scale {
    /// `1 + α ln(1 + w)`: repeated plays count, with diminishing returns
    Log,
    /// `1 + α w` (Hu, Koren, Volinsky's original form)
    Linear,
    /// `1 + α` for every observed pair: plays do not count
    Binary,
}

/// Confidence `c(w)` of an observed pair with weight (plays) `w`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Confidence {
    pub scale: Scale,
    pub alpha: f32,
}

impl Default for Confidence {
    fn default() -> Self {
        Confidence {
            scale: Scale::Log,
            alpha: 1.0,
        }
    }
}

impl Confidence {
    pub fn apply(&self, w: f32) -> f32 {
        match self.scale {
            Scale::Log => 1.0 + self.alpha * w.ln_1p(),
            Scale::Linear => 1.0 + self.alpha * w,
            Scale::Binary => 1.0 + self.alpha,
        }
    }

    /// `matrix` with every weight replaced by its confidence.
    pub fn matrix(&self, matrix: &Csr) -> Csr {
        matrix.map_values(|w| self.apply(w))
    }
}

/// BM25 weights of an items x users matrix (items are the "documents", users the "terms"), as
/// `implicit.nearest_neighbours.bm25_weight`: `w (k1 + 1) / (k1 · norm_i + w) · idf_u` with
/// `norm_i = 1 − b + b · len_i / mean len` (len = the item's total weight) and
/// `idf_u = ln N − ln(1 + items of u)` (N = items).
pub fn bm25(items: &Csr, k1: f32, b: f32) -> Csr {
    let n = items.n_rows as f32;
    let mut per_user = vec![0u32; items.n_cols];
    for &u in &items.indices {
        per_user[u as usize] += 1;
    }
    let idf: Vec<f32> = per_user
        .iter()
        .map(|&c| n.ln() - (c as f32).ln_1p())
        .collect();
    let lengths: Vec<f32> = (0..items.n_rows)
        .map(|i| items.row(i).1.iter().sum())
        .collect();
    let mean = lengths.iter().sum::<f32>() / n.max(1.0);
    let mut out = items.clone();
    for (i, len) in lengths.iter().enumerate() {
        let norm = (1.0 - b) + b * len / mean.max(f32::MIN_POSITIVE);
        let (a, e) = (items.indptr[i], items.indptr[i + 1]);
        for p in a..e {
            let w = items.values[p];
            out.values[p] = w * (k1 + 1.0) / (k1 * norm + w) * idf[items.indices[p] as usize];
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confidence_curves() {
        let c = |scale, alpha| Confidence { scale, alpha };
        assert!((c(Scale::Log, 1.0).apply(0.0) - 1.0).abs() < 1e-6);
        assert!((c(Scale::Log, 2.0).apply(std::f32::consts::E - 1.0) - 3.0).abs() < 1e-5);
        assert_eq!(c(Scale::Linear, 40.0).apply(2.0), 81.0);
        assert_eq!(c(Scale::Binary, 1.0).apply(500.0), 2.0);
    }

    #[test]
    fn bm25_matches_a_hand_computed_case() {
        // 2 items x 2 users: item 0 has weights (1, 3), item 1 has (2, _)
        let m = Csr::from_entries(2, 2, vec![(0, 0, 1.0), (0, 1, 3.0), (1, 0, 2.0)]);
        let w = bm25(&m, 1.0, 0.5);
        // lengths 4 and 2, mean 3; norms 1/2 + 4/6 and 1/2 + 2/6
        // idf: user 0 is in 2 items -> ln 2 - ln 3; user 1 in 1 item -> ln 2 - ln 2 = 0
        let (n0, n1) = (0.5 + 4.0 / 6.0, 0.5 + 2.0 / 6.0);
        let idf0 = 2f32.ln() - 3f32.ln();
        let want = [
            1.0 * 2.0 / (n0 + 1.0) * idf0,
            0.0,
            2.0 * 2.0 / (n1 + 2.0) * idf0,
        ];
        for (g, w) in w.values.iter().zip(want) {
            assert!((g - w).abs() < 1e-6, "{g} vs {w}");
        }
    }
}
