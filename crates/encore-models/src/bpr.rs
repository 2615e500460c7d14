//! Bayesian personalized ranking (Rendle et al. 2009) with SGD, as `implicit` runs it: each step
//! takes a random observed (user, item) pair and a negative item drawn from the observed items
//! (so negatives follow popularity), skips negatives the user has, and moves the factors along
//! the gradient of ln σ(x_u · (y_i − y_j)). The last factor is an item bias (the user side of it
//! starts at 1).

use crate::data::Csr;
use crate::scoring::{ItemTiles, dot};
use crate::split::splitmix64;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU32, Ordering};

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

/// What one epoch did: the mean of `−ln σ(x_u · (y_i − y_j))` over its updates (the BPR loss
/// before regularization), the fraction of sampled pairs already ranked right, and the fraction
/// skipped because the negative was one of the user's items.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Epoch {
    pub index: usize,
    pub loss: f64,
    pub correct: f64,
    pub skipped: f64,
}

/// Factor matrices shared by the SGD workers without locks (Hogwild!, Recht et al. 2011):
/// relaxed atomic loads and stores of the f32 bits, which compile to plain moves. Updates from
/// two workers to the same item may interleave; SGD tolerates that, and with one worker the
/// result is exactly reproducible from the seed.
struct Shared(Vec<AtomicU32>);

/// The factor matrices an SGD worker updates: plain vectors, updated in place, when it is
/// alone; the shared atomics, through local copies, when workers run in parallel.
trait Store {
    /// One step on user `u`'s vector and items `i` and `j` (`i != j`), each of width `w`;
    /// `buf` holds 3 w floats of scratch. Returns the score difference before the step.
    fn step(&mut self, u: usize, i: usize, j: usize, buf: &mut [f32], lr: f32, reg: f32) -> f32;
}

impl Store for (Vec<f32>, Vec<f32>) {
    fn step(&mut self, u: usize, i: usize, j: usize, buf: &mut [f32], lr: f32, reg: f32) -> f32 {
        let w = buf.len() / 3;
        let xu = &mut self.0[u * w..(u + 1) * w];
        match self
            .1
            .get_disjoint_mut([i * w..(i + 1) * w, j * w..(j + 1) * w])
        {
            Ok([yi, yj]) => step(xu, yi, yj, lr, reg),
            Err(_) => 0.0,
        }
    }
}

impl Store for (&Shared, &Shared) {
    fn step(&mut self, u: usize, i: usize, j: usize, buf: &mut [f32], lr: f32, reg: f32) -> f32 {
        let w = buf.len() / 3;
        let (xu, rest) = buf.split_at_mut(w);
        let (yi, yj) = rest.split_at_mut(w);
        self.0.read(u * w, xu);
        self.1.read(i * w, yi);
        self.1.read(j * w, yj);
        let z = step(xu, yi, yj, lr, reg);
        self.0.write(u * w, xu);
        self.1.write(i * w, yi);
        self.1.write(j * w, yj);
        z
    }
}

impl Shared {
    fn read(&self, at: usize, out: &mut [f32]) {
        let n = out.len();
        for (o, a) in out.iter_mut().zip(&self.0[at..at + n]) {
            *o = f32::from_bits(a.load(Ordering::Relaxed));
        }
    }

    fn write(&self, at: usize, values: &[f32]) {
        for (a, v) in self.0[at..at + values.len()].iter().zip(values) {
            a.store(v.to_bits(), Ordering::Relaxed);
        }
    }

    fn new(values: Vec<f32>) -> Shared {
        Shared(
            values
                .into_iter()
                .map(|v| AtomicU32::new(v.to_bits()))
                .collect(),
        )
    }

    fn into_vec(self) -> Vec<f32> {
        self.0
            .into_iter()
            .map(|a| f32::from_bits(a.into_inner()))
            .collect()
    }
}

impl BprModel {
    /// Fits on the observed pairs of `matrix` (users x items; values ignored), with one SGD
    /// worker per thread of the current rayon pool. `on_epoch` is called after each epoch.
    pub fn fit(matrix: &Csr, config: &BprConfig, on_epoch: &mut dyn FnMut(Epoch)) -> BprModel {
        let w = config.factors + 1;
        let mut rng = Rng(config.seed);
        let init = |n: usize, rng: &mut Rng| -> Vec<f32> {
            (0..n * w)
                .map(|_| (rng.unit() - 0.5) / config.factors as f32)
                .collect()
        };
        let mut x = init(matrix.n_rows, &mut rng);
        let y = init(matrix.n_cols, &mut rng);
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
        let workers = rayon::current_num_threads().max(1);
        let setup = Setup {
            matrix,
            owners: &owners,
            config,
            workers,
        };
        let report = |epoch: usize, t: Tally, on_epoch: &mut dyn FnMut(Epoch)| {
            let updates = (t.updates as f64).max(1.0);
            on_epoch(Epoch {
                index: epoch,
                loss: t.loss / updates,
                correct: t.correct as f64 / updates,
                skipped: t.skipped as f64 / samples.max(1) as f64,
            });
        };
        let (x, y) = if workers == 1 {
            let mut factors = (x, y);
            for epoch in 0..config.epochs {
                let mut worker = setup.worker(factors, epoch, 0);
                let tally = worker.run(samples);
                factors = worker.factors;
                report(epoch, tally, on_epoch);
            }
            factors
        } else {
            let (x, y) = (Shared::new(x), Shared::new(y));
            for epoch in 0..config.epochs {
                let tally = (0..workers)
                    .into_par_iter()
                    .map(|worker| {
                        let n = samples / workers + usize::from(worker < samples % workers);
                        setup.worker((&x, &y), epoch, worker).run(n)
                    })
                    .reduce(Tally::default, Tally::add);
                report(epoch, tally, on_epoch);
            }
            (x.into_vec(), y.into_vec())
        };
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

#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    updates: u64,
    correct: u64,
    skipped: u64,
    loss: f64,
}

impl Tally {
    fn add(self, o: Tally) -> Tally {
        Tally {
            updates: self.updates + o.updates,
            correct: self.correct + o.correct,
            skipped: self.skipped + o.skipped,
            loss: self.loss + o.loss,
        }
    }
}

/// What every worker of a fit shares.
struct Setup<'a> {
    matrix: &'a Csr,
    owners: &'a [u32],
    config: &'a BprConfig,
    workers: usize,
}

impl<'a> Setup<'a> {
    /// Worker `worker` of epoch `epoch`, with its own random stream.
    fn worker<S: Store>(&self, factors: S, epoch: usize, worker: usize) -> Sgd<'a, S> {
        let stream = (epoch * self.workers + worker) as u64;
        Sgd {
            matrix: self.matrix,
            owners: self.owners,
            factors,
            rng: Rng(splitmix64(self.config.seed ^ splitmix64(stream))),
            lr: self.config.learning_rate,
            reg: self.config.regularization,
            buf: vec![0f32; 3 * (self.config.factors + 1)],
        }
    }
}

/// One SGD worker's state for an epoch.
struct Sgd<'a, S: Store> {
    matrix: &'a Csr,
    owners: &'a [u32],
    factors: S,
    rng: Rng,
    lr: f32,
    reg: f32,
    /// x_u, y_i, y_j
    buf: Vec<f32>,
}

impl<S: Store> Sgd<'_, S> {
    fn run(&mut self, steps: usize) -> Tally {
        let samples = self.matrix.nnz();
        let mut t = Tally::default();
        for _ in 0..steps {
            let liked = self.rng.below(samples);
            let u = self.owners[liked] as usize;
            let i = self.matrix.indices[liked] as usize;
            let j = self.matrix.indices[self.rng.below(samples)] as usize;
            if self.matrix.row(u).0.binary_search(&(j as u32)).is_ok() {
                t.skipped += 1;
                continue;
            }
            let z = self.factors.step(u, i, j, &mut self.buf, self.lr, self.reg);
            t.updates += 1;
            t.correct += u64::from(z > 0.0);
            // −ln σ(z) = ln(1 + e^(−z))
            t.loss += f64::from((-z).exp().ln_1p());
        }
        t
    }
}

/// One SGD step on local copies of the three vectors; returns the score difference before it.
#[inline]
fn step(xu: &mut [f32], yi: &mut [f32], yj: &mut [f32], lr: f32, reg: f32) -> f32 {
    let z = dot(xu, yi) - dot(xu, yj);
    let g = 1.0 / (1.0 + z.exp());
    for ((x, a), b) in xu.iter_mut().zip(yi.iter_mut()).zip(yj.iter_mut()) {
        let t = *x;
        *x += lr * (g * (*a - *b) - reg * t);
        *a += lr * (g * t - reg * *a);
        *b += lr * (-g * t - reg * *b);
    }
    z
}
