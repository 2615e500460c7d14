//! The popularity baseline: items ranked by the number of distinct training users (ties by item
//! index), the same list for everyone minus their own items.

use crate::data::Csr;
use crate::recommend::top_k;

#[derive(Debug, Clone)]
pub struct Popularity {
    /// distinct users per item
    pub counts: Vec<f32>,
}

impl Popularity {
    pub fn fit(train: &Csr) -> Popularity {
        let mut counts = vec![0f32; train.n_cols];
        for (c, v) in train.indices.iter().zip(&train.values) {
            if *v > 0.0 {
                counts[*c as usize] += 1.0;
            }
        }
        Popularity { counts }
    }

    pub fn recommend(&self, train: &Csr, user: usize, k: usize) -> Vec<u32> {
        top_k(&self.counts, train.row(user).0, k)
    }
}
