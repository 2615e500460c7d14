//! How far a judge can be trusted: its scores against human labels.
//!
//! For a binary property (say "hallucinated"), each item has the judge's probability `p` and the
//! human label `y`. The report gives agreement and Cohen's kappa of the judge's decision
//! (`p >= threshold`) with the labels, precision and recall of the positive class, the Brier score
//! (mean of `(p − y)²`), and the expected calibration error over equal-width bins of `p`
//! (`Σ n_b / N · |mean p_b − positive rate_b|`) with the reliability table it comes from.

use serde::Serialize;

/// One bin of the reliability table.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Bin {
    pub lo: f64,
    pub hi: f64,
    pub count: usize,
    /// mean judge probability in the bin (0 when empty)
    pub mean_predicted: f64,
    /// share of positive labels in the bin (0 when empty)
    pub observed_rate: f64,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Calibration {
    pub items: usize,
    pub positives: usize,
    pub threshold: f64,
    pub agreement: f64,
    pub kappa: f64,
    pub precision: f64,
    pub recall: f64,
    pub brier: f64,
    pub ece: f64,
    pub reliability: Vec<Bin>,
}

/// The calibration report of `(probability, label)` pairs; `bins` equal-width bins on [0, 1]
/// (a probability of exactly 1 falls in the last).
pub fn calibration(pairs: &[(f64, bool)], threshold: f64, bins: usize) -> Calibration {
    let n = pairs.len();
    let bins = bins.max(1);
    let (mut tp, mut fp, mut fneg, mut tn) = (0usize, 0usize, 0usize, 0usize);
    let mut brier = 0.0;
    let mut sums = vec![(0usize, 0.0f64, 0usize); bins];
    for &(p, y) in pairs {
        let p = p.clamp(0.0, 1.0);
        match (p >= threshold, y) {
            (true, true) => tp += 1,
            (true, false) => fp += 1,
            (false, true) => fneg += 1,
            (false, false) => tn += 1,
        }
        brier += (p - f64::from(u8::from(y))).powi(2);
        let b = ((p * bins as f64) as usize).min(bins - 1);
        sums[b].0 += 1;
        sums[b].1 += p;
        sums[b].2 += usize::from(y);
    }
    let nf = n.max(1) as f64;
    let agreement = (tp + tn) as f64 / nf;
    let (pred_yes, label_yes) = ((tp + fp) as f64 / nf, (tp + fneg) as f64 / nf);
    let chance = pred_yes * label_yes + (1.0 - pred_yes) * (1.0 - label_yes);
    let kappa = if chance < 1.0 {
        (agreement - chance) / (1.0 - chance)
    } else {
        0.0
    };
    let ratio = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    let reliability: Vec<Bin> = sums
        .iter()
        .enumerate()
        .map(|(i, &(count, sum_p, pos))| Bin {
            lo: i as f64 / bins as f64,
            hi: (i + 1) as f64 / bins as f64,
            count,
            mean_predicted: if count == 0 {
                0.0
            } else {
                sum_p / count as f64
            },
            observed_rate: ratio(pos, count),
        })
        .collect();
    let ece = reliability
        .iter()
        .map(|b| b.count as f64 / nf * (b.mean_predicted - b.observed_rate).abs())
        .sum();
    Calibration {
        items: n,
        positives: tp + fneg,
        threshold,
        agreement,
        kappa,
        precision: ratio(tp, tp + fp),
        recall: ratio(tp, tp + fneg),
        brier: brier / nf,
        ece,
        reliability,
    }
}
