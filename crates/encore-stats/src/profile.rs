//! Profiles: mergeable summaries of a stream of rows (what a model was trained on, one day of
//! traffic), compared for drift. Each attribute is a count per value (categorical) or a count
//! per bin over fixed edges (numeric), so profiles of days, hours or shards add up exactly, and
//! the comparison is [`categorical_drift`] over the aligned counts: Jensen-Shannon distance,
//! PSI and Hellinger, effect sizes that stay meaningful at streaming volumes where every
//! p-value is tiny.

use crate::{CategoricalDrift, categorical_drift};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A numeric attribute's counts over fixed bins: `counts[i]` holds values `< edges[i]` (and
/// `>= edges[i - 1]`), the last holds values `>= edges[last]`; `missing` counts absent values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Histogram {
    pub edges: Vec<f64>,
    pub counts: Vec<u64>,
    pub missing: u64,
}

impl Histogram {
    /// Empty, over sorted `edges` (`edges.len() + 1` bins).
    pub fn new(edges: &[f64]) -> Histogram {
        debug_assert!(edges.windows(2).all(|w| w[0] < w[1]), "edges must increase");
        Histogram {
            edges: edges.to_vec(),
            counts: vec![0; edges.len() + 1],
            missing: 0,
        }
    }

    pub fn push(&mut self, x: Option<f64>) {
        match x {
            Some(x) if !x.is_nan() => {
                let bin = self.edges.partition_point(|e| *e <= x);
                self.counts[bin] += 1;
            }
            _ => self.missing += 1,
        }
    }

    /// Adds `other`'s counts; `false` (nothing added) when its edges differ.
    pub fn merge(&mut self, other: &Histogram) -> bool {
        if self.edges != other.edges {
            return false;
        }
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.missing += other.missing;
        true
    }

    /// Counts per bin, with missing values as one more bin (a jump in missing values is
    /// drift too).
    fn with_missing(&self) -> Vec<f64> {
        self.counts
            .iter()
            .chain(std::iter::once(&self.missing))
            .map(|c| *c as f64)
            .collect()
    }
}

/// Two profiles bin an attribute differently: they cannot be merged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BinsDiffer {
    pub attribute: String,
}

impl std::fmt::Display for BinsDiffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "attribute {:?} is binned differently in the two profiles",
            self.attribute
        )
    }
}

impl std::error::Error for BinsDiffer {}

/// A mergeable summary of rows: per attribute, counts per value or per bin.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    pub rows: u64,
    pub categorical: BTreeMap<String, BTreeMap<String, u64>>,
    pub numeric: BTreeMap<String, Histogram>,
}

/// How far one attribute moved between two profiles.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AttributeDrift {
    pub attribute: String,
    /// Jensen-Shannon distance (base e), PSI, Hellinger, chi-square homogeneity
    pub drift: CategoricalDrift,
    /// the values (or bins) whose share moved most, with their shares in the reference and now
    pub largest_moves: Vec<(String, f64, f64)>,
}

/// The value of a categorical attribute whose share grew most.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ShareGain {
    pub value: String,
    /// its share in the reference and now
    pub reference: f64,
    pub current: f64,
    /// `current − reference`: [`crate::two_proportions`]'s effect
    pub gain: f64,
}

impl Profile {
    /// Counts one value of the categorical attribute `name`.
    pub fn count(&mut self, name: &str, value: &str) {
        *self
            .categorical
            .entry(name.to_owned())
            .or_default()
            .entry(value.to_owned())
            .or_default() += 1;
    }

    /// Counts one value of the numeric attribute `name`, binned by `edges` (fixed for the
    /// attribute: profiles compared or merged must use the same).
    pub fn observe(&mut self, name: &str, edges: &[f64], x: Option<f64>) {
        self.numeric
            .entry(name.to_owned())
            .or_insert_with(|| Histogram::new(edges))
            .push(x);
    }

    /// Adds `other` to this profile. An attribute binned differently in the two is an error
    /// naming it (nothing is added then).
    pub fn merge(&mut self, other: &Profile) -> Result<(), BinsDiffer> {
        for (name, h) in &other.numeric {
            if let Some(mine) = self.numeric.get(name)
                && mine.edges != h.edges
            {
                return Err(BinsDiffer {
                    attribute: name.clone(),
                });
            }
        }
        self.rows += other.rows;
        for (name, values) in &other.categorical {
            let mine = self.categorical.entry(name.clone()).or_default();
            for (v, c) in values {
                *mine.entry(v.clone()).or_default() += c;
            }
        }
        for (name, h) in &other.numeric {
            match self.numeric.get_mut(name) {
                Some(mine) => {
                    mine.merge(h);
                }
                None => {
                    self.numeric.insert(name.clone(), h.clone());
                }
            }
        }
        Ok(())
    }

    /// Every attribute both profiles hold, compared (`self` is the reference), most moved
    /// first by Jensen-Shannon distance. A value seen on one side only counts as 0 on the
    /// other.
    pub fn drift(&self, current: &Profile) -> Vec<AttributeDrift> {
        let mut out = Vec::new();
        for (name, reference) in &self.categorical {
            let Some(now) = current.categorical.get(name) else {
                continue;
            };
            let values: Vec<&String> = {
                let mut v: Vec<&String> = reference.keys().chain(now.keys()).collect();
                v.sort();
                v.dedup();
                v
            };
            let r: Vec<f64> = values
                .iter()
                .map(|v| reference.get(*v).copied().unwrap_or(0) as f64)
                .collect();
            let c: Vec<f64> = values
                .iter()
                .map(|v| now.get(*v).copied().unwrap_or(0) as f64)
                .collect();
            let labels: Vec<String> = values.iter().map(|v| (*v).clone()).collect();
            if let Some(d) = compare(name, &labels, &r, &c) {
                out.push(d);
            }
        }
        for (name, reference) in &self.numeric {
            let Some(now) = current.numeric.get(name) else {
                continue;
            };
            if now.edges != reference.edges {
                continue;
            }
            let mut labels: Vec<String> = Vec::with_capacity(reference.edges.len() + 2);
            for i in 0..=reference.edges.len() {
                labels.push(match i {
                    0 => format!("< {}", reference.edges[0]),
                    i if i == reference.edges.len() => format!(">= {}", reference.edges[i - 1]),
                    i => format!("[{}, {})", reference.edges[i - 1], reference.edges[i]),
                });
            }
            labels.push("missing".to_owned());
            if let Some(d) = compare(
                name,
                &labels,
                &reference.with_missing(),
                &now.with_missing(),
            ) {
                out.push(d);
            }
        }
        out.sort_by(|a, b| b.drift.js_distance.total_cmp(&a.drift.js_distance));
        out
    }
}

impl Profile {
    /// The value of the categorical attribute `name` whose share of rows grew most from this
    /// profile (the reference) to `current`, leaving out the values in `skip` (a catch-all
    /// bucket); `None` when either side has no rows or no value is left.
    pub fn share_gain(&self, current: &Profile, name: &str, skip: &[&str]) -> Option<ShareGain> {
        let (reference, now) = (self.categorical.get(name)?, current.categorical.get(name)?);
        let nr: u64 = reference.values().sum();
        let nc: u64 = now.values().sum();
        if nr == 0 || nc == 0 {
            return None;
        }
        let mut best: Option<ShareGain> = None;
        for v in reference.keys().chain(now.keys()) {
            if skip.contains(&v.as_str()) {
                continue;
            }
            let a = reference.get(v).copied().unwrap_or(0) as f64;
            let b = now.get(v).copied().unwrap_or(0) as f64;
            let p = crate::two_proportions(a, nr as f64, b, nc as f64, 0.05);
            if best.as_ref().is_none_or(|x| p.effect > x.gain) {
                best = Some(ShareGain {
                    value: v.clone(),
                    reference: p.p_a,
                    current: p.p_b,
                    gain: p.effect,
                });
            }
        }
        best
    }
}

/// One attribute's drift, `None` when either side has no rows.
fn compare(name: &str, labels: &[String], r: &[f64], c: &[f64]) -> Option<AttributeDrift> {
    let (nr, nc): (f64, f64) = (r.iter().sum(), c.iter().sum());
    if nr == 0.0 || nc == 0.0 {
        return None;
    }
    let drift = categorical_drift(r, c);
    let mut moves: Vec<(String, f64, f64)> = labels
        .iter()
        .zip(r.iter().zip(c))
        .map(|(l, (a, b))| (l.clone(), a / nr, b / nc))
        .collect();
    moves.sort_by(|a, b| (b.2 - b.1).abs().total_cmp(&(a.2 - a.1).abs()));
    moves.truncate(3);
    Some(AttributeDrift {
        attribute: name.to_owned(),
        drift,
        largest_moves: moves,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(platforms: &[(&str, u64)], ms: &[f64]) -> Profile {
        let mut p = Profile::default();
        for (v, n) in platforms {
            for _ in 0..*n {
                p.count("platform", v);
                p.rows += 1;
            }
        }
        for x in ms {
            p.observe("ms_played", &[1.0, 30_000.0, 120_000.0], Some(*x));
        }
        p
    }

    #[test]
    fn profiles_merge_exactly_and_refuse_other_bins() {
        let a = day(&[("ios", 3), ("android", 1)], &[0.0, 50_000.0]);
        let b = day(&[("android", 2), ("web", 1)], &[200_000.0]);
        let mut m = a;
        m.merge(&b).unwrap();
        assert_eq!(m.rows, 7);
        assert_eq!(m.categorical["platform"]["android"], 3);
        assert_eq!(m.categorical["platform"]["web"], 1);
        assert_eq!(m.numeric["ms_played"].counts, [1, 0, 1, 1]);
        let mut other = Profile::default();
        other.observe("ms_played", &[5.0], Some(1.0));
        let e = m.merge(&other).unwrap_err().to_string();
        assert!(e.contains("ms_played"), "{e}");
        assert_eq!(m.rows, 7, "nothing added");
    }

    #[test]
    fn a_zeroed_platform_is_the_largest_move_and_an_unchanged_day_hardly_moves() {
        let normal: Vec<f64> = (0..1_000)
            .map(|i| 20_000.0 + 200.0 * f64::from(i))
            .collect();
        let reference = day(&[("ios", 500), ("android", 500)], &normal);
        let same = day(&[("ios", 495), ("android", 505)], &normal);
        let mut zeroed = normal;
        zeroed[..500].iter_mut().for_each(|x| *x = 0.0);
        let bug = day(&[("ios", 500), ("android", 500)], &zeroed);
        let quiet = reference.drift(&same);
        assert!(
            quiet.iter().all(|d| d.drift.js_distance < 0.01),
            "{quiet:?}"
        );
        let loud = reference.drift(&bug);
        assert_eq!(loud[0].attribute, "ms_played");
        assert!(loud[0].drift.js_distance > 0.3, "{:?}", loud[0]);
        assert_eq!(loud[0].largest_moves[0].0, "< 1");
        let mut hit = reference.clone();
        for _ in 0..250 {
            hit.count("platform", "car");
        }
        let gain = reference.share_gain(&hit, "platform", &[]).unwrap();
        assert_eq!(gain.value, "car");
        assert!((gain.current - 0.2).abs() < 1e-12 && gain.reference == 0.0);
        let rest = reference.share_gain(&hit, "platform", &["car"]).unwrap();
        assert!(
            (rest.gain - (0.4 - 0.5)).abs() < 1e-12,
            "with car left out, the best is a loss: {rest:?}"
        );
        assert_eq!(loud[0].largest_moves[0].1, 0.0);
        assert!((loud[0].largest_moves[0].2 - 0.5).abs() < 1e-12);
    }
}
