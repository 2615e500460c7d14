//! Item-based k-nearest neighbours: cosine similarity between items' user vectors (weighted by
//! confidence), the `neighbors` most similar kept per item; a user's score for an item is the sum
//! of its similarities to the user's items, weighted by the user's confidence in them.

use crate::data::Csr;
use crate::recommend::top_k_masked;
use rayon::prelude::*;

#[derive(Debug, Clone)]
pub struct ItemKnn {
    /// per item: (neighbour, similarity), best first
    pub neighbors: Vec<Vec<(u32, f32)>>,
}

impl ItemKnn {
    /// `matrix` is users x items (e.g. confidences); `k` neighbours are kept per item.
    pub fn fit(matrix: &Csr, k: usize) -> ItemKnn {
        let items = matrix.transpose();
        let norms: Vec<f32> = (0..items.n_rows)
            .map(|i| items.row(i).1.iter().map(|v| v * v).sum::<f32>().sqrt())
            .collect();
        let neighbors = (0..items.n_rows)
            .into_par_iter()
            .map_init(
                || (vec![0f32; items.n_rows], Vec::<u32>::new()),
                |(acc, touched), i| {
                    let (users, w_i) = items.row(i);
                    for (&u, &wu) in users.iter().zip(w_i) {
                        let (js, w_u) = matrix.row(u as usize);
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
                        .map(|j| {
                            let s = acc[j as usize] / (norms[i] * norms[j as usize]).max(1e-12);
                            acc[j as usize] = 0.0;
                            (j, s)
                        })
                        .collect();
                    sims.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
                    sims.truncate(k);
                    sims
                },
            )
            .collect();
        ItemKnn { neighbors }
    }

    /// Top `k` items for `user` of `matrix`, excluding the user's items.
    pub fn recommend(&self, matrix: &Csr, user: usize, k: usize, scores: &mut [f32]) -> Vec<u32> {
        scores.fill(0.0);
        let (items, weights) = matrix.row(user);
        for (&i, &w) in items.iter().zip(weights) {
            for &(j, s) in &self.neighbors[i as usize] {
                scores[j as usize] += w * s;
            }
        }
        top_k_masked(scores, items, k)
    }
}
