//! Feature values as of a time, from an entity's events sorted by time.
//!
//! [`value`] computes one feature at one time (online reads: binary search, then one pass over
//! the window). [`column`] computes one feature at many times in one sweep (training sets): two
//! pointers slide over the sorted events while running sums, counts and distinct-value counts
//! are updated as events enter and leave the window, so a column costs O(events + rows).

use crate::def::{Agg, Feature, Filter};
use crate::event::FeatureEvent;
use serde::Serialize;
use std::collections::HashMap;

/// Whether a view has a value for an entity at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Live,
    /// the entity's newest event at or before the time is older than the TTL
    Expired,
    /// the entity has no event at or before the time
    Missing,
}

/// Events with `ts <= t`: the end of the prefix.
fn upto(events: &[FeatureEvent], t: i64) -> usize {
    events.partition_point(|e| e.ts <= t)
}

pub fn status(events: &[FeatureEvent], t: i64, ttl_ms: i64) -> Status {
    match upto(events, t) {
        0 => Status::Missing,
        hi if events[hi - 1].ts <= t - ttl_ms => Status::Expired,
        _ => Status::Live,
    }
}

fn part(field: Option<usize>, e: &FeatureEvent) -> f64 {
    field.map_or(1.0, |i| e.num[i])
}

/// `f` as of `t` (the view being live).
pub fn value(f: &Feature, events: &[FeatureEvent], t: i64) -> Option<f64> {
    let hi = upto(events, t);
    let lo = upto(&events[..hi], t - f.span_ms);
    let w = &events[lo..hi];
    let pass = |e: &&FeatureEvent| f.filter.accepts(e);
    match &f.agg {
        Agg::Count => Some(w.iter().filter(pass).count() as f64),
        Agg::Sum(i) => Some(w.iter().filter(pass).map(|e| e.num[*i]).sum()),
        Agg::Mean(i) => {
            let (n, s) = w
                .iter()
                .filter(pass)
                .fold((0usize, 0.0), |(n, s), e| (n + 1, s + e.num[*i]));
            (n > 0).then(|| s / n as f64)
        }
        Agg::Distinct(i) => {
            let set: std::collections::HashSet<u64> =
                w.iter().filter(pass).map(|e| e.cat[*i]).collect();
            Some(set.len() as f64)
        }
        Agg::Last(i) => w.iter().rev().find(pass).map(|e| e.num[*i]),
        // attributes come from tables, not events
        Agg::Value(_) => None,
        Agg::Ratio { num, den } => {
            let sum = |(field, filter): &(Option<usize>, Filter)| -> f64 {
                w.iter()
                    .filter(|e| filter.accepts(e))
                    .map(|e| part(*field, e))
                    .sum()
            };
            let d = sum(den);
            (d != 0.0).then(|| sum(num) / d)
        }
    }
}

/// Every feature of `features` as of `t`, in one pass over the events from the newest back
/// (what online reads do): the same values as [`value`] per feature.
pub fn values(features: &[Feature], events: &[FeatureEvent], t: i64) -> Vec<Option<f64>> {
    values_of(&features.iter().collect::<Vec<_>>(), events, t)
}

/// [`values`] of some features.
pub fn values_of(features: &[&Feature], events: &[FeatureEvent], t: i64) -> Vec<Option<f64>> {
    #[derive(Default, Clone)]
    struct Acc {
        n: u64,
        sum: f64,
        den_n: u64,
        den: f64,
        last: Option<f64>,
        seen: Vec<u64>,
    }
    let hi = upto(events, t);
    // features by look-back, longest first: as events get older, only a prefix is still open
    let mut order: Vec<usize> = (0..features.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(features[i].span_ms));
    let mut open = order.len();
    let mut acc = vec![Acc::default(); features.len()];
    for e in events[..hi].iter().rev() {
        while open > 0 && e.ts <= t - features[order[open - 1]].span_ms {
            open -= 1;
        }
        if open == 0 {
            break;
        }
        for &k in &order[..open] {
            let (f, a) = (features[k], &mut acc[k]);
            match &f.agg {
                Agg::Ratio { num, den } => {
                    if num.1.accepts(e) {
                        a.n += 1;
                        a.sum += part(num.0, e);
                    }
                    if den.1.accepts(e) {
                        a.den_n += 1;
                        a.den += part(den.0, e);
                    }
                }
                agg => {
                    if !f.filter.accepts(e) {
                        continue;
                    }
                    a.n += 1;
                    match agg {
                        Agg::Sum(i) | Agg::Mean(i) => a.sum += e.num[*i],
                        Agg::Last(i) if a.last.is_none() => a.last = Some(e.num[*i]),
                        Agg::Distinct(i) => a.seen.push(e.cat[*i]),
                        _ => {}
                    }
                }
            }
        }
    }
    features
        .iter()
        .zip(acc)
        .map(|(f, a)| match &f.agg {
            Agg::Count => Some(a.n as f64),
            Agg::Sum(_) => Some(a.sum),
            Agg::Mean(_) => (a.n > 0).then(|| a.sum / a.n as f64),
            Agg::Distinct(_) => {
                let mut seen = a.seen;
                seen.sort_unstable();
                seen.dedup();
                Some(seen.len() as f64)
            }
            Agg::Last(_) => a.last,
            Agg::Value(_) => None,
            Agg::Ratio { .. } => (a.den_n > 0 && a.den != 0.0).then(|| a.sum / a.den),
        })
        .collect()
}

/// Running state of one feature over a sliding window.
#[derive(Default)]
struct Window {
    /// events counted (for a ratio: in the numerator)
    n: u64,
    sum: f64,
    den_n: u64,
    den: f64,
    distinct: HashMap<u64, u32>,
}

fn step(n: &mut u64, sum: &mut f64, x: f64, sign: f64) {
    if sign > 0.0 {
        *n += 1;
        *sum += x;
    } else {
        *n -= 1;
        // an empty window sums to exactly 0, whatever rounding left behind
        *sum = if *n == 0 { 0.0 } else { *sum - x };
    }
}

impl Window {
    fn update(&mut self, f: &Feature, e: &FeatureEvent, sign: f64) {
        match &f.agg {
            Agg::Ratio { num, den } => {
                if num.1.accepts(e) {
                    step(&mut self.n, &mut self.sum, part(num.0, e), sign);
                }
                if den.1.accepts(e) {
                    step(&mut self.den_n, &mut self.den, part(den.0, e), sign);
                }
            }
            agg => {
                if !f.filter.accepts(e) {
                    return;
                }
                let x = match agg {
                    Agg::Sum(i) | Agg::Mean(i) => e.num[*i],
                    _ => 0.0,
                };
                step(&mut self.n, &mut self.sum, x, sign);
                if let Agg::Distinct(i) = agg {
                    let c = self.distinct.entry(e.cat[*i]).or_default();
                    if sign > 0.0 {
                        *c += 1;
                    } else {
                        *c -= 1;
                        if *c == 0 {
                            self.distinct.remove(&e.cat[*i]);
                        }
                    }
                }
            }
        }
    }
}

/// `f` at each of `times` (sorted ascending) over `events` (sorted by time); `None` where the
/// aggregate is undefined (a mean or last of nothing, a ratio over zero). TTL is not applied
/// here: see [`statuses`].
pub fn column(f: &Feature, events: &[FeatureEvent], times: &[i64]) -> Vec<Option<f64>> {
    let mut out = Vec::with_capacity(times.len());
    let (mut lo, mut hi) = (0usize, 0usize);
    let mut w = Window::default();
    // for `last`: the newest passing event before `hi`
    let mut last_pass: Option<usize> = None;
    for &t in times {
        while hi < events.len() && events[hi].ts <= t {
            w.update(f, &events[hi], 1.0);
            if f.filter.accepts(&events[hi]) {
                last_pass = Some(hi);
            }
            hi += 1;
        }
        while lo < hi && events[lo].ts <= t - f.span_ms {
            w.update(f, &events[lo], -1.0);
            lo += 1;
        }
        out.push(match &f.agg {
            Agg::Count => Some(w.n as f64),
            Agg::Sum(_) => Some(w.sum),
            Agg::Mean(_) => (w.n > 0).then(|| w.sum / w.n as f64),
            Agg::Distinct(_) => Some(w.distinct.len() as f64),
            Agg::Last(i) => last_pass.filter(|&j| j >= lo).map(|j| events[j].num[*i]),
            Agg::Value(_) => None,
            Agg::Ratio { .. } => (w.den_n > 0 && w.den != 0.0).then(|| w.sum / w.den),
        });
    }
    out
}

/// The view's status at each of `times` (sorted ascending).
pub fn statuses(events: &[FeatureEvent], times: &[i64], ttl_ms: i64) -> Vec<Status> {
    let mut hi = 0usize;
    times
        .iter()
        .map(|&t| {
            while hi < events.len() && events[hi].ts <= t {
                hi += 1;
            }
            match hi {
                0 => Status::Missing,
                h if events[h - 1].ts <= t - ttl_ms => Status::Expired,
                _ => Status::Live,
            }
        })
        .collect()
}
