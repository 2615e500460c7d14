//! Scoring every item for many users at once: the item vectors regrouped in tiles of eight,
//! a matrix-vector kernel for one user, and a blocked matrix-matrix kernel with a streaming
//! top-k for recommend-for-all, which keeps a slice of the catalogue in cache while a block of
//! users is scored against it (the per-user kernel streams the whole catalogue from memory once
//! per user).

use crate::recommend::TopK;
use rayon::prelude::*;

/// Item factors regrouped for scoring: tiles of 8 items, factor-major inside a tile
/// (`tile[t * k + f][j]` = factor `f` of item `8t + j`). Scoring a user is then
/// `acc[j] += x[f] * tile[f][j]`, which vectorizes across items with no horizontal sums.
#[derive(Debug, Clone)]
pub struct ItemTiles {
    factors: usize,
    items: usize,
    tiles: Vec<[f32; 8]>,
}

impl ItemTiles {
    pub fn new(item_factors: &[f32], k: usize) -> ItemTiles {
        let items = item_factors.len() / k;
        let n_tiles = items.div_ceil(8);
        let mut tiles = vec![[0f32; 8]; n_tiles * k];
        for i in 0..items {
            for f in 0..k {
                tiles[(i / 8) * k + f][i % 8] = item_factors[i * k + f];
            }
        }
        ItemTiles {
            factors: k,
            items,
            tiles,
        }
    }

    /// `out[i]` = `x` · item `i`, for every item.
    pub fn scores(&self, x: &[f32], out: &mut [f32]) {
        tile_scores(&self.tiles, self.factors, self.items, x, out);
    }
}

/// Scoring kernel of [`ItemTiles::scores`], compiled for AVX2 + FMA too (chosen at run time).
#[multiversion::multiversion(targets("x86_64+avx2+fma", "x86_64+sse4.2"))]
fn tile_scores(tiles: &[[f32; 8]], k: usize, items: usize, x: &[f32], out: &mut [f32]) {
    for (t, tile) in tiles.chunks_exact(k).enumerate() {
        // four accumulators over the factors: four independent chains of multiply-adds keep the
        // pipeline full where one chain would wait on each add
        let mut acc = [[0f32; 8]; 4];
        let (xs, ys) = (x.chunks_exact(4), tile.chunks_exact(4));
        let (xr, yr) = (xs.remainder(), ys.remainder());
        for (x4, y4) in xs.zip(ys) {
            for ((a, xf), yf) in acc.iter_mut().zip(x4).zip(y4) {
                for (a, y) in a.iter_mut().zip(yf) {
                    *a += xf * y;
                }
            }
        }
        for (xf, yf) in xr.iter().zip(yr) {
            for (a, y) in acc[0].iter_mut().zip(yf) {
                *a += xf * y;
            }
        }
        let mut sum = [0f32; 8];
        for a in &acc {
            for (s, v) in sum.iter_mut().zip(a) {
                *s += v;
            }
        }
        let start = t * 8;
        let n = 8.min(items - start);
        out[start..start + n].copy_from_slice(&sum[..n]);
    }
}

/// Dot product with eight independent accumulators: the compiler may not reorder a float sum,
/// so one accumulator would keep this scalar; eight lanes become SIMD.
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for ((a, x), y) in acc.iter_mut().zip(x).zip(y) {
            *a += x * y;
        }
    }
    let tail: f32 = ra.iter().zip(rb).map(|(x, y)| x * y).sum();
    acc.iter().sum::<f32>() + tail
}

/// Items per cache block: 1,024 items of 64 factors are 256 KiB, which stays in L2.
const CHUNK_TILES: usize = 128;
/// Users per parallel task: each block streams the catalogue from memory once.
const USER_BLOCK: usize = 64;

impl ItemTiles {
    pub fn factors(&self) -> usize {
        self.factors
    }

    pub fn items(&self) -> usize {
        self.items
    }

    /// The top `k` items of every user of `users` (row-major, `factors` wide), skipping
    /// `exclude(u)` (sorted item indices) for user `u`; in parallel on the current rayon pool.
    /// The same lists as scoring each user with [`ItemTiles::scores`] and
    /// [`crate::recommend::top_k_masked`].
    pub fn top_k_all<'e>(
        &self,
        users: &[f32],
        exclude: &(dyn Fn(usize) -> &'e [u32] + Sync),
        k: usize,
    ) -> Vec<Vec<u32>> {
        let f = self.factors;
        let n_users = users.len() / f.max(1);
        let blocks: Vec<Vec<Vec<u32>>> = (0..n_users.div_ceil(USER_BLOCK))
            .into_par_iter()
            .map(|b| {
                let first = b * USER_BLOCK;
                let last = (first + USER_BLOCK).min(n_users);
                self.block_top_k(&users[first * f..last * f], first, exclude, k)
            })
            .collect();
        blocks.into_iter().flatten().collect()
    }

    fn block_top_k<'e>(
        &self,
        users: &[f32],
        first: usize,
        exclude: &(dyn Fn(usize) -> &'e [u32] + Sync),
        k: usize,
    ) -> Vec<Vec<u32>> {
        let f = self.factors;
        let n = users.len() / f;
        let mut tops: Vec<TopK> = (0..n).map(|_| TopK::new(k)).collect();
        let mut cursors = vec![0usize; n];
        let chunk_items = CHUNK_TILES * 8;
        let mut scores = vec![0f32; 4 * chunk_items];
        // four users' vectors, factor-major: xt[f] = [x0[f], x1[f], x2[f], x3[f]]
        let mut xt = vec![[0f32; 4]; f];
        for (c, tiles) in self.tiles.chunks(CHUNK_TILES * f).enumerate() {
            let base = c * chunk_items;
            let len = (tiles.len() / f * 8).min(self.items - base);
            for g in (0..n).step_by(4) {
                let group = (n - g).min(4);
                for (fi, x) in xt.iter_mut().enumerate() {
                    for (u, v) in x.iter_mut().enumerate() {
                        *v = if u < group {
                            users[(g + u) * f + fi]
                        } else {
                            0.0
                        };
                    }
                }
                let stride = tiles.len() / f * 8;
                scores4(tiles, &xt, &mut scores[..4 * stride]);
                for u in 0..group {
                    let row = &mut scores[u * stride..u * stride + len];
                    let ex = exclude(first + g + u);
                    let cursor = &mut cursors[g + u];
                    while let Some(&e) = ex.get(*cursor) {
                        let e = e as usize;
                        if e >= base + len {
                            break;
                        }
                        if e >= base {
                            row[e - base] = f32::NEG_INFINITY;
                        }
                        *cursor += 1;
                    }
                    tops[g + u].offer(row, base as u32);
                }
            }
        }
        tops.into_iter().map(TopK::into_items).collect()
    }
}

/// Scores of four users (`xt`, factor-major) against `tiles` (whole tiles of `xt.len()`
/// factors): `out[u * stride + i]`, stride = 8 x tiles. Two tiles at a time: eight accumulator
/// vectors, two item loads and four broadcasts per factor, so the multiply-adds, not the loads,
/// set the pace.
#[multiversion::multiversion(targets("x86_64+avx2+fma", "x86_64+sse4.2"))]
fn scores4(tiles: &[[f32; 8]], xt: &[[f32; 4]], out: &mut [f32]) {
    let k = xt.len();
    let n = tiles.len() / k;
    let stride = n * 8;
    let mut t = 0;
    while t < n {
        let two = t + 1 < n;
        let ta = &tiles[t * k..(t + 1) * k];
        let tb = if two {
            &tiles[(t + 1) * k..(t + 2) * k]
        } else {
            ta
        };
        let mut acc = [[[0f32; 8]; 2]; 4];
        for ((ya, yb), x) in ta.iter().zip(tb).zip(xt) {
            for ([acc_a, acc_b], xu) in acc.iter_mut().zip(x) {
                for (a, va) in acc_a.iter_mut().zip(ya) {
                    *a += xu * va;
                }
                for (b, vb) in acc_b.iter_mut().zip(yb) {
                    *b += xu * vb;
                }
            }
        }
        for (u, acc) in acc.iter().enumerate() {
            let at = u * stride + t * 8;
            out[at..at + 8].copy_from_slice(&acc[0]);
            if two {
                out[at + 8..at + 16].copy_from_slice(&acc[1]);
            }
        }
        t += 2;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocked_top_k_matches_scoring_user_by_user() {
        // sizes that leave partial tiles, chunks, user groups and blocks
        let (n_users, n_items, f) = (131, 2_100, 13);
        let mut s = 7u64;
        let mut rand = || {
            s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
            (crate::split::splitmix64(s) >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        };
        let users: Vec<f32> = (0..n_users * f).map(|_| rand()).collect();
        let items: Vec<f32> = (0..n_items * f).map(|_| rand()).collect();
        let exclude: Vec<Vec<u32>> = (0..n_users)
            .map(|u| {
                (0..n_items as u32)
                    .filter(|i| (i * 7 + u as u32).is_multiple_of(11))
                    .collect()
            })
            .collect();
        let tiles = ItemTiles::new(&items, f);
        let all = tiles.top_k_all(&users, &|u| &exclude[u], 10);
        let mut scores = vec![0f32; n_items];
        for u in 0..n_users {
            tiles.scores(&users[u * f..(u + 1) * f], &mut scores);
            let want = crate::recommend::top_k_masked(&mut scores, &exclude[u], 10);
            assert_eq!(all[u], want, "user {u}");
        }
    }
}
