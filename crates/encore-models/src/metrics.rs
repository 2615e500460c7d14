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

/// Beyond accuracy: what the lists are like, whatever the held-out items.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ListMetrics {
    /// mean self-information of recommended items, −log2(share of training users who have them)
    pub novelty: f64,
    /// mean pairwise cosine distance between the items of a list (by item vectors)
    pub intra_list_diversity: f64,
    /// mean number of training users of the recommended items
    pub average_popularity: f64,
}

/// `popularity[i]` = training users of item `i`; `vectors(i)` = item `i`'s vector for diversity.
pub fn list_metrics<'a>(
    recs: &[Vec<u32>],
    popularity: &[f32],
    n_users: usize,
    vectors: impl Fn(u32) -> &'a [f32],
) -> ListMetrics {
    let cos = |a: &[f32], b: &[f32]| {
        let (mut ab, mut aa, mut bb) = (0f64, 0f64, 0f64);
        for (x, y) in a.iter().zip(b) {
            ab += f64::from(*x) * f64::from(*y);
            aa += f64::from(*x) * f64::from(*x);
            bb += f64::from(*y) * f64::from(*y);
        }
        if aa == 0.0 || bb == 0.0 {
            0.0
        } else {
            ab / (aa.sqrt() * bb.sqrt())
        }
    };
    let (mut novelty, mut pop, mut items) = (0.0, 0.0, 0usize);
    let (mut ild, mut lists) = (0.0, 0usize);
    for row in recs {
        for &i in row {
            let p = f64::from(popularity[i as usize]).max(1.0) / n_users.max(1) as f64;
            novelty += -p.log2();
            pop += f64::from(popularity[i as usize]);
            items += 1;
        }
        if row.len() >= 2 {
            let mut sum = 0.0;
            let mut pairs = 0usize;
            for a in 0..row.len() {
                for b in a + 1..row.len() {
                    sum += 1.0 - cos(vectors(row[a]), vectors(row[b]));
                    pairs += 1;
                }
            }
            ild += sum / pairs as f64;
            lists += 1;
        }
    }
    ListMetrics {
        novelty: novelty / items.max(1) as f64,
        intra_list_diversity: ild / lists.max(1) as f64,
        average_popularity: pop / items.max(1) as f64,
    }
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

    #[test]
    fn list_metrics_hand_computed() {
        // two items used by 1 and 4 of 4 users; orthogonal vectors (distance 1)
        let vecs = [[1.0f32, 0.0], [0.0, 1.0]];
        let m = list_metrics(&[vec![0, 1]], &[1.0, 4.0], 4, |i| &vecs[i as usize][..]);
        assert!((m.novelty - (2.0 + 0.0) / 2.0).abs() < 1e-12);
        assert!((m.average_popularity - 2.5).abs() < 1e-12);
        assert!((m.intra_list_diversity - 1.0).abs() < 1e-12);
    }
}
