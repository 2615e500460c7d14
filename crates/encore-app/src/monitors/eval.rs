//! A monitor evaluated on one window: the window's profile per slice against its baseline (the
//! same window on each of the previous days), with the statistic, the threshold and the values
//! that moved most.

use super::profiling::OTHER;
use super::spec::{Baseline, Kind, Monitor, SliceBy, Source, Statistic};
use encore_stats::profile::{AttributeDrift, Profile};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};

const DAY_MS: i64 = 86_400_000;

/// A value whose share moved: its share in the baseline and in the window.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Move {
    pub value: String,
    pub baseline: f64,
    pub current: f64,
}

/// A 95 % confidence interval.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    pub low: f64,
    pub high: f64,
}

/// A monitor's verdict on one window, slice and (for drift) attribute.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MonitorResult {
    pub monitor: String,
    pub window_start_ms: i64,
    pub window_end_ms: i64,
    /// `all`, `platform=ios`, `country=SE`
    pub slice: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attribute: Option<String>,
    /// `js_distance`, `psi`, `hellinger`, `relative_change` or `lag_p95_s`
    pub statistic: String,
    pub value: f64,
    pub threshold: f64,
    pub fired: bool,
    /// rows in the window's slice
    pub rows: u64,
    /// rows in the baseline windows (all of them together)
    pub baseline_rows: u64,
    pub baseline_windows: u32,
    /// drift: how far the baseline windows drift from one another (the largest, each
    /// against the others): a drift fires only well beyond it
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub noise: Option<f64>,
    /// quality: the 95 % interval of the difference from the incumbent (this version's rate
    /// minus the incumbent's)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<Interval>,
    /// drift: the values whose share moved most
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub moves: Vec<Move>,
}

/// Hourly profiles (every segment's added up), by hour and slice, and the window profiles made
/// of them (each built once).
#[derive(Debug, Default)]
pub struct Hours {
    hours: BTreeMap<(i64, String), Profile>,
    windows: HashMap<(i64, i64, String), Option<Profile>>,
    /// what the production model was trained on, for monitors with a reference baseline
    reference: Option<Reference>,
}

/// The profiles of a model version's training window, per slice of plays, saved when it was
/// registered.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Reference {
    pub model: String,
    pub version: u32,
    pub from_ms: i64,
    pub to_ms: i64,
    pub slices: BTreeMap<String, Profile>,
}

impl Hours {
    /// Adds one hour's profile of a slice (segments of the same hour add up).
    pub fn add(
        &mut self,
        hour_ms: i64,
        slice: &str,
        p: &Profile,
    ) -> Result<(), encore_stats::profile::BinsDiffer> {
        match self.hours.get_mut(&(hour_ms, slice.to_owned())) {
            Some(mine) => mine.merge(p)?,
            None => {
                self.hours.insert((hour_ms, slice.to_owned()), p.clone());
            }
        }
        self.windows.clear();
        Ok(())
    }

    /// Judges monitors with a reference baseline against `reference`.
    pub fn set_reference(&mut self, reference: Option<Reference>) {
        self.reference = reference;
    }

    /// Every hourly profile held, with its slice.
    pub fn profiles(&self) -> impl Iterator<Item = (&str, &Profile)> {
        self.hours.iter().map(|((_, s), p)| (s.as_str(), p))
    }

    /// The first and last hour held.
    pub fn span(&self) -> Option<(i64, i64)> {
        let first = self.hours.keys().next()?.0;
        let last = self.hours.keys().next_back()?.0;
        Some((first, last))
    }

    pub fn is_empty(&self) -> bool {
        self.hours.is_empty()
    }

    /// The profile of `slice` over `[start, start + len)`, `None` when it has no rows.
    pub fn window(&mut self, start: i64, len: i64, slice: &str) -> Option<Profile> {
        let key = (start, len, slice.to_owned());
        if let Some(p) = self.windows.get(&key) {
            return p.clone();
        }
        let mut out: Option<Profile> = None;
        for ((_, s), p) in self
            .hours
            .range((start, String::new())..(start + len, String::new()))
        {
            if s != slice {
                continue;
            }
            match &mut out {
                // profiles of one deployment bin alike; one that does not is left out
                Some(o) => {
                    let _ = o.merge(p);
                }
                None => out = Some(p.clone()),
            }
        }
        let out = out.filter(|p| p.rows > 0);
        self.windows.insert(key, out.clone());
        out
    }

    /// The slices of `source` by `by` seen in `[from, to)`.
    fn slices(&self, from: i64, to: i64, source: Source, by: Option<SliceBy>) -> Vec<String> {
        use super::profiling::{ALL, SERVED, SERVED_MODEL};
        let prefix = match (source, by) {
            (Source::Plays, None) => return vec![ALL.to_owned()],
            (Source::Served, None) => return vec![SERVED.to_owned()],
            (_, Some(SliceBy::Platform)) => "platform=",
            (_, Some(SliceBy::Country)) => "country=",
            (_, Some(SliceBy::Model)) => SERVED_MODEL,
        };
        let set: BTreeSet<&String> = self
            .hours
            .range((from, String::new())..(to, String::new()))
            .map(|((_, s), _)| s)
            .filter(|s| s.starts_with(prefix))
            .collect();
        set.into_iter().cloned().collect()
    }
}

/// The start of the window of `m` holding `t`.
pub fn window_start(m: &Monitor, t: i64) -> i64 {
    let len = m.window.ms();
    t.div_euclid(len) * len
}

/// `m`'s verdicts on the window starting at `start`: one per slice (and attribute), none for
/// a slice with too few rows or too short a baseline.
pub fn evaluate(m: &Monitor, hours: &mut Hours, start: i64) -> Vec<MonitorResult> {
    let len = m.window.ms();
    let baseline_starts: Vec<i64> = (1..=i64::from(m.baseline_days))
        .map(|k| start - k * DAY_MS)
        .collect();
    let earliest = baseline_starts.last().copied().unwrap_or(start);
    let mut out = Vec::new();
    for slice in hours.slices(earliest, start + len, m.source, m.slice_by) {
        let current = hours.window(start, len, &slice);
        let reference = m.baseline == Baseline::Reference;
        let baseline: Vec<Profile> = if reference {
            let Some(p) = hours
                .reference
                .as_ref()
                .and_then(|r| r.slices.get(&slice))
                .filter(|p| p.rows > 0)
            else {
                continue;
            };
            vec![p.clone()]
        } else {
            baseline_starts
                .iter()
                .filter_map(|b| hours.window(*b, len, &slice))
                .collect()
        };
        let result = |statistic: &str, value: f64, fired: bool, rows: u64| MonitorResult {
            monitor: m.name.clone(),
            window_start_ms: start,
            window_end_ms: start + len,
            slice: slice.clone(),
            attribute: None,
            statistic: statistic.to_owned(),
            value,
            threshold: m.threshold,
            fired,
            rows,
            baseline_rows: baseline.iter().map(|p| p.rows).sum(),
            baseline_windows: baseline.len() as u32,
            noise: None,
            interval: None,
            moves: Vec::new(),
        };
        let enough_baseline = reference || baseline.len() as u32 >= m.min_baseline_windows;
        let rows = current.as_ref().map_or(0, |p| p.rows);
        match m.kind {
            Kind::Volume => {
                if !enough_baseline {
                    continue;
                }
                let mean =
                    baseline.iter().map(|p| p.rows as f64).sum::<f64>() / baseline.len() as f64;
                if mean < m.min_rows as f64 {
                    continue;
                }
                let change = rows as f64 / mean - 1.0;
                // beyond the threshold from the mean, and from the quietest (or busiest)
                // baseline window too: a slice whose volume swings from day to day does not
                // alarm on an ordinary swing
                let (lo, hi) = baseline.iter().fold((u64::MAX, 0), |(lo, hi), p| {
                    (lo.min(p.rows), hi.max(p.rows))
                });
                let (rows_f, lo, hi) = (rows as f64, lo as f64, hi as f64);
                let fired = change.abs() > m.threshold
                    && (rows_f < lo * (1.0 - m.threshold) || rows_f > hi * (1.0 + m.threshold));
                out.push(result(m.statistic_name(), change, fired, rows));
            }
            Kind::Freshness => {
                let Some(p95) = current
                    .as_ref()
                    .filter(|_| rows >= m.min_rows)
                    .and_then(lag_p95)
                else {
                    continue;
                };
                out.push(result(m.statistic_name(), p95, p95 > m.threshold, rows));
            }
            // judged from the event logs (see `quality`)
            Kind::Quality => {}
            Kind::Drift => {
                let Some(current) = current.filter(|p| p.rows >= m.min_rows) else {
                    continue;
                };
                if !enough_baseline {
                    continue;
                }
                let reference = merged(baseline.iter());
                let noise = noise(m, &baseline);
                for d in reference.drift(&current) {
                    if !m.attributes.contains(&d.attribute) {
                        continue;
                    }
                    let (value, moves) = statistic(m, &reference, &current, &d);
                    let noise = noise.get(&d.attribute).copied().unwrap_or(0.0);
                    let fired = value > m.threshold && value > m.noise_factor * noise;
                    let mut r = result(m.statistic_name(), value, fired, rows);
                    r.noise = Some(noise);
                    r.attribute = Some(d.attribute.clone());
                    r.moves = moves;
                    out.push(r);
                }
            }
        }
    }
    out
}

/// The monitor's statistic for one attribute, with the values that moved most (the one that
/// gained most first, for a share gain).
fn statistic(
    m: &Monitor,
    reference: &Profile,
    current: &Profile,
    d: &AttributeDrift,
) -> (f64, Vec<Move>) {
    let mut moves: Vec<Move> = d
        .largest_moves
        .iter()
        .map(|(v, b, c)| Move {
            value: v.clone(),
            baseline: *b,
            current: *c,
        })
        .collect();
    let value = match m.statistic {
        Statistic::JsDistance => d.drift.js_distance,
        Statistic::Psi => d.drift.psi,
        Statistic::Hellinger => d.drift.hellinger,
        Statistic::ShareGain => {
            // the catch-all bucket of items is not a value that can gain
            let Some(g) = reference.share_gain(current, &d.attribute, &[OTHER]) else {
                return (0.0, moves);
            };
            moves.retain(|x| x.value != g.value);
            moves.insert(
                0,
                Move {
                    value: g.value,
                    baseline: g.reference,
                    current: g.current,
                },
            );
            g.gain
        }
    };
    (value, moves)
}

/// The profiles added up (profiles of one deployment bin alike; one that does not is left
/// out).
fn merged<'a>(profiles: impl Iterator<Item = &'a Profile>) -> Profile {
    let mut out = Profile::default();
    for p in profiles {
        let _ = out.merge(p);
    }
    out
}

/// How far each baseline window drifts from the other baseline windows, per attribute (the
/// largest): the ordinary day-to-day movement a window must clearly exceed. Few listeners
/// make many plays each, so plays are far from independent and this, not the number of
/// plays, sets how much a distribution moves by chance.
fn noise(m: &Monitor, baseline: &[Profile]) -> HashMap<String, f64> {
    let mut out: HashMap<String, f64> = HashMap::new();
    for (i, held_out) in baseline.iter().enumerate() {
        let rest = merged(
            baseline
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, p)| p),
        );
        for d in rest.drift(held_out) {
            if m.attributes.contains(&d.attribute) {
                let v = statistic(m, &rest, held_out, &d).0;
                let e = out.entry(d.attribute).or_default();
                *e = e.max(v);
            }
        }
    }
    out
}

/// The 95th percentile of arrival lag in seconds: the upper edge of the bin it falls in (the
/// last edge when it is beyond every edge), `None` when no row's arrival is known.
fn lag_p95(p: &Profile) -> Option<f64> {
    let h = p.numeric.get("lag_s")?;
    let known: u64 = h.counts.iter().sum();
    if known == 0 {
        return None;
    }
    let target = (known as f64 * 0.95).ceil() as u64;
    let mut seen = 0;
    for (i, c) in h.counts.iter().enumerate() {
        seen += c;
        if seen >= target {
            return Some(h.edges.get(i).or(h.edges.last()).copied().unwrap_or(0.0));
        }
    }
    h.edges.last().copied()
}
