//! Item-based k-nearest neighbours. Similarity between two items is computed from their user
//! vectors, either the cosine of their confidences or the dot product of their BM25 weights
//! (as `implicit`'s `CosineRecommender` and `BM25Recommender`); the `neighbors` most similar are
//! kept per item. A user's score for an item is the sum of its similarities to the user's items,
//! weighted by the user's confidence in them.

use crate::data::Csr;
use crate::recommend::top_k_masked;
use crate::weighting::{Confidence, bm25};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum Similarity {
    Cosine,
    /// BM25-weighted dot product; `implicit`'s defaults are k1 = 1.2, b = 0.75
    Bm25 {
        k1: f32,
        b: f32,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ItemKnnConfig {
    /// neighbours kept per item
    pub neighbors: usize,
    pub similarity: Similarity,
    /// the user-side weights when scoring (and the item vectors for cosine)
    #[serde(default)]
    pub confidence: Confidence,
}

impl Default for ItemKnnConfig {
    fn default() -> Self {
        ItemKnnConfig {
            neighbors: 100,
            similarity: Similarity::Cosine,
            confidence: Confidence::default(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct ItemKnn {
    /// per item: (neighbour, similarity), best first
    pub neighbors: Vec<Vec<(u32, f32)>>,
    pub confidence: Confidence,
}

impl ItemKnn {
    /// Fits on `plays` (users x items, raw weights).
    pub fn fit(plays: &Csr, config: &ItemKnnConfig) -> ItemKnn {
        let items = match config.similarity {
            Similarity::Cosine => {
                let mut t = config.confidence.matrix(plays).transpose();
                for i in 0..t.n_rows {
                    let (a, b) = (t.indptr[i], t.indptr[i + 1]);
                    let norm = t.values[a..b].iter().map(|v| v * v).sum::<f32>().sqrt();
                    t.values[a..b]
                        .iter_mut()
                        .for_each(|v| *v /= norm.max(1e-12));
                }
                t
            }
            Similarity::Bm25 { k1, b } => bm25(&plays.transpose(), k1, b),
        };
        ItemKnn {
            neighbors: all_pairs_top_k(&items, config.neighbors),
            confidence: config.confidence,
        }
    }

    /// Top `k` items for the user with `row` = (items, plays), excluding those items; `scores`
    /// is scratch space of catalogue length.
    pub fn recommend(&self, row: (&[u32], &[f32]), k: usize, scores: &mut [f32]) -> Vec<u32> {
        scores.fill(0.0);
        let (items, plays) = row;
        for (&i, &w) in items.iter().zip(plays) {
            let c = self.confidence.apply(w);
            for &(j, s) in &self.neighbors[i as usize] {
                scores[j as usize] += c * s;
            }
        }
        top_k_masked(scores, items, k)
    }
}

/// For every row of `items` (items x users), the `k` other rows with the largest dot product
/// (ties by lower index), computed sparsely through the users the two items share.
fn all_pairs_top_k(items: &Csr, k: usize) -> Vec<Vec<(u32, f32)>> {
    let users = items.transpose();
    (0..items.n_rows)
        .into_par_iter()
        .map_init(
            || (vec![0f32; items.n_rows], Vec::<u32>::new()),
            |(acc, touched), i| {
                let (us, w_i) = items.row(i);
                for (&u, &wu) in us.iter().zip(w_i) {
                    let (js, w_u) = users.row(u as usize);
                    for (&j, &wj) in js.iter().zip(w_u) {
                        if j as usize != i {
                            if acc[j as usize] == 0.0 {
                                touched.push(j);
                            }
                            acc[j as usize] += wu * wj;
                        }
                    }
                }
                let mut sims: Vec<(u32, f32)> = touched
                    .drain(..)
                    .map(|j| (j, std::mem::take(&mut acc[j as usize])))
                    .filter(|(_, s)| *s != 0.0)
                    .collect();
                let by_score =
                    |a: &(u32, f32), b: &(u32, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
                if sims.len() > k {
                    sims.select_nth_unstable_by(k, by_score);
                    sims.truncate(k);
                }
                sims.sort_by(by_score);
                sims
            },
        )
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cosine_neighbours_of_a_small_matrix() {
        // users x items: items 0 and 1 are played by the same users, item 2 by another
        let plays = Csr::from_entries(
            3,
            3,
            vec![
                (0, 0, 1.0),
                (0, 1, 1.0),
                (1, 0, 1.0),
                (1, 1, 1.0),
                (2, 2, 1.0),
                (2, 0, 1.0),
            ],
        );
        let config = ItemKnnConfig {
            confidence: Confidence {
                scale: crate::weighting::Scale::Binary,
                alpha: 0.0,
            },
            ..ItemKnnConfig::default()
        };
        let knn = ItemKnn::fit(&plays, &config);
        // item 1's users {0, 1} ⊂ item 0's {0, 1, 2}: cosine 2 / (√2 √3)
        let s = knn.neighbors[1][0];
        assert_eq!(s.0, 0);
        assert!((s.1 - 2.0 / (2f32.sqrt() * 3f32.sqrt())).abs() < 1e-6);
        assert_eq!(knn.neighbors[0].len(), 2);
        assert_eq!(
            knn.neighbors[0][0].0, 1,
            "item 1 shares two users with item 0, item 2 one"
        );
        let mut scores = vec![0.0; 3];
        // a user who played item 2 gets item 0 (its only neighbour) first
        assert_eq!(knn.recommend((&[2], &[1.0]), 2, &mut scores)[0], 0);
    }
}
