//! Bayesian personalized ranking (Rendle et al. 2009) with SGD, as `implicit` runs it: each step
//! takes a random observed (user, item) pair and a negative item drawn from the observed items
//! (so negatives follow popularity), skips negatives the user has, and moves the factors along
//! the gradient of ln σ(x_u · (y_i − y_j)). The last factor is an item bias (the user side of it
//! starts at 1).

use crate::als::ItemTiles;
use crate::data::Csr;
use crate::split::splitmix64;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BprConfig {
    pub factors: usize,
    pub epochs: usize,
    pub learning_rate: f32,
    pub regularization: f32,
    pub seed: u64,
}

impl Default for BprConfig {
    fn default() -> Self {
        BprConfig {
            factors: 64,
            epochs: 100,
            learning_rate: 0.01,
            regularization: 0.01,
            seed: 42,
        }
    }
}

#[derive(Debug, Clone)]
pub struct BprModel {
    /// factors + 1 (the bias)
    pub width: usize,
    pub user_factors: Vec<f32>,
    pub item_factors: Vec<f32>,
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        splitmix64(self.0)
    }

    fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next()) * n as u128) >> 64) as usize
    }

    fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32
    }
}

impl BprModel {
    /// Fits on the observed pairs of `matrix` (users x items; values ignored).
    pub fn fit(matrix: &Csr, config: &BprConfig, on_epoch: &mut dyn FnMut(usize)) -> BprModel {
        let w = config.factors + 1;
        let mut rng = Rng(config.seed);
        let init = |n: usize, rng: &mut Rng| -> Vec<f32> {
            (0..n * w)
                .map(|_| (rng.unit() - 0.5) / config.factors as f32)
                .collect()
        };
        let mut x = init(matrix.n_rows, &mut rng);
        let mut y = init(matrix.n_cols, &mut rng);
        for u in 0..matrix.n_rows {
            x[u * w + config.factors] = 1.0;
        }
        // the owner of each observed pair, aligned with `matrix.indices`
        let mut owners = Vec::with_capacity(matrix.nnz());
        for u in 0..matrix.n_rows {
            owners.extend(std::iter::repeat_n(
                u as u32,
                matrix.indptr[u + 1] - matrix.indptr[u],
            ));
        }
        let samples = matrix.nnz();
        let (lr, reg) = (config.learning_rate, config.regularization);
        for epoch in 0..config.epochs {
            for _ in 0..samples {
                let liked = rng.below(samples);
                let u = owners[liked] as usize;
                let i = matrix.indices[liked] as usize;
                let j = matrix.indices[rng.below(samples)] as usize;
                if matrix.row(u).0.binary_search(&(j as u32)).is_ok() {
                    continue;
                }
                let (xu, yi, yj) = (u * w, i * w, j * w);
                let mut z = 0f32;
                for f in 0..w {
                    z += x[xu + f] * (y[yi + f] - y[yj + f]);
                }
                let z = 1.0 / (1.0 + z.exp());
                for f in 0..w {
                    let t = x[xu + f];
                    x[xu + f] += lr * (z * (y[yi + f] - y[yj + f]) - reg * t);
                    y[yi + f] += lr * (z * t - reg * y[yi + f]);
                    y[yj + f] += lr * (-z * t - reg * y[yj + f]);
                }
            }
            on_epoch(epoch);
        }
        BprModel {
            width: w,
            user_factors: x,
            item_factors: y,
        }
    }

    pub fn user(&self, u: usize) -> &[f32] {
        &self.user_factors[u * self.width..(u + 1) * self.width]
    }

    /// The item factors tiled for fast scoring.
    pub fn tiles(&self) -> ItemTiles {
        ItemTiles::new(&self.item_factors, self.width)
    }
}
