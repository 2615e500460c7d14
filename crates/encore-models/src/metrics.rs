//! Offline ranking metrics at k, macro-averaged over evaluated users, binary relevance; the
//! definitions of `../shared/bench/recsys/common.py` (`ranking_metrics`), so numbers compare.

use serde::Serialize;
use std::collections::{BTreeMap, HashSet};

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RankingMetrics {
    pub precision: f64,
    pub recall: f64,
    pub ndcg: f64,
    pub map: f64,
    pub hit_rate: f64,
    pub coverage: f64,
    pub users: usize,
}

impl RankingMetrics {
    /// `{"precision@10": ..., ...}`
    pub fn named(&self, k: usize) -> BTreeMap<String, f64> {
        [
            ("precision", self.precision),
            ("recall", self.recall),
            ("ndcg", self.ndcg),
            ("map", self.map),
            ("hit_rate", self.hit_rate),
            ("coverage", self.coverage),
        ]
        .into_iter()
        .map(|(n, v)| (format!("{n}@{k}"), v))
        .collect()
    }
}

/// `recs[u]` are user `u`'s top items (best first), `test[u]` the held-out items.
pub fn ranking_metrics(
    recs: &[Vec<u32>],
    test: &[&[u32]],
    k: usize,
    n_catalogue: usize,
) -> RankingMetrics {
    let disc: Vec<f64> = (0..k).map(|r| 1.0 / ((r + 2) as f64).log2()).collect();
    let mut m = RankingMetrics::default();
    let mut covered = HashSet::new();
    let mut n = 0usize;
    for (row, t) in recs.iter().zip(test) {
        if t.is_empty() {
            continue;
        }
        n += 1;
        let truth: HashSet<u32> = t.iter().copied().collect();
        let (mut hits, mut dcg, mut ap) = (0usize, 0.0, 0.0);
        for (r, item) in row.iter().take(k).enumerate() {
            covered.insert(*item);
            if truth.contains(item) {
                hits += 1;
                dcg += disc[r];
                ap += hits as f64 / (r + 1) as f64;
            }
        }
        let nt = truth.len();
        let ideal: f64 = disc[..k.min(nt)].iter().sum();
        m.precision += hits as f64 / k as f64;
        m.recall += hits as f64 / nt as f64;
        m.hit_rate += f64::from(u8::from(hits > 0));
        m.ndcg += dcg / ideal;
        m.map += ap / k.min(nt) as f64;
    }
    let nf = n.max(1) as f64;
    m.precision /= nf;
    m.recall /= nf;
    m.hit_rate /= nf;
    m.ndcg /= nf;
    m.map /= nf;
    m.coverage = covered.len() as f64 / n_catalogue.max(1) as f64;
    m.users = n;
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_computed_case() {
        // user 0: hits at ranks 1 and 3 of 3 test items; user 1: no hit; user 2: no test items
        let recs = vec![vec![1, 9, 2], vec![5, 6, 7], vec![1, 2, 3]];
        let test: Vec<&[u32]> = vec![&[1, 2, 4], &[8], &[]];
        let m = ranking_metrics(&recs, &test, 3, 10);
        assert_eq!(m.users, 2);
        assert!((m.precision - (2.0 / 3.0) / 2.0).abs() < 1e-12);
        assert!((m.recall - (2.0 / 3.0) / 2.0).abs() < 1e-12);
        assert!((m.hit_rate - 0.5).abs() < 1e-12);
        let d = |r: f64| 1.0 / (r + 1.0).log2();
        let ndcg0 = (d(1.0) + d(3.0)) / (d(1.0) + d(2.0) + d(3.0));
        assert!((m.ndcg - ndcg0 / 2.0).abs() < 1e-12);
        let ap0 = (1.0 + 2.0 / 3.0) / 3.0;
        assert!((m.map - ap0 / 2.0).abs() < 1e-12);
        assert!((m.coverage - 6.0 / 10.0).abs() < 1e-12);
    }
}
