//! A view's read layout: what the online store keeps per entity so that a read as of now is a
//! few binary searches and array lookups, whatever the features.
//!
//! The view's features are compiled into prefix columns over the entity's events (sorted by
//! time), each holding the aggregate of events `[0, i]`:
//! - a count per distinct filter (no filter needs none: it is the index);
//! - a sum per distinct (field, filter);
//! - for a distinct count, how many events so far are the last occurrence of their value in
//!   the buffer, so the distinct values of a window that reaches the newest event are the last
//!   occurrences in it;
//! - for a last value, the newest passing event so far and its value.
//!
//! A window `(t - span, t]` is then `[lo, hi)` by binary search on the times, and each feature
//! is a difference of two prefix values. The result equals [`crate::compute::values`] over the
//! same events. Two cases fall back to the events (the caller's job, when [`Layout::read`]
//! answers `None`): a buffer written under other definitions (its fingerprint differs), and a
//! distinct count as of a time before the buffer's newest event.

use crate::compute::Status;
use crate::def::{Agg, Filter, View};
use crate::event::FeatureEvent;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Counter {
    /// every event: the window's length
    All,
    Col(usize),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Part {
    Count(Counter),
    Sum(usize),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Read {
    Count(Counter),
    Sum(usize),
    Mean {
        sum: usize,
        n: Counter,
    },
    Distinct(usize),
    Last(usize),
    Ratio {
        num: Part,
        den: Part,
        den_n: Counter,
    },
    /// an attribute view's column
    Value(usize),
}

/// The compiled layout of one view.
#[derive(Debug, Clone)]
pub struct Layout {
    /// identifies the definitions a stored buffer was written under
    pub fingerprint: u64,
    ttl_ms: i64,
    counters: Vec<Filter>,
    sums: Vec<(usize, Filter)>,
    distincts: Vec<(usize, Filter)>,
    lasts: Vec<(usize, Filter)>,
    reads: Vec<Read>,
    /// the features' look-backs, deduplicated, and each feature's index into them
    spans: Vec<i64>,
    span_of: Vec<usize>,
    /// an attribute view: rows of values in effect from their times, not events
    attributes: bool,
}

const HEADER: usize = 24;
/// The version of the stored form, part of every fingerprint: buffers of an older form are read
/// from their events until rewritten.
const LAYOUT: u32 = 2;

fn index_of<T: PartialEq + Clone>(list: &mut Vec<T>, x: &T) -> usize {
    list.iter().position(|y| y == x).unwrap_or_else(|| {
        list.push(x.clone());
        list.len() - 1
    })
}

impl Layout {
    pub fn of(view: &View) -> Layout {
        let mut l = Layout {
            fingerprint: 0,
            ttl_ms: view.ttl_ms,
            counters: Vec::new(),
            sums: Vec::new(),
            distincts: Vec::new(),
            lasts: Vec::new(),
            reads: Vec::new(),
            spans: Vec::new(),
            span_of: Vec::new(),
            attributes: !view.source.is_events(),
        };
        let counter = |l: &mut Layout, f: &Filter| {
            if f.terms.is_empty() {
                Counter::All
            } else {
                Counter::Col(index_of(&mut l.counters, f))
            }
        };
        let part = |l: &mut Layout, (field, filter): &(Option<usize>, Filter)| match field {
            None => Part::Count(counter(l, filter)),
            Some(k) => Part::Sum(index_of(&mut l.sums, &(*k, filter.clone()))),
        };
        for (i, f) in view.features.iter().enumerate() {
            let read = match &f.agg {
                Agg::Value(_) => Read::Value(i),
                Agg::Count => Read::Count(counter(&mut l, &f.filter)),
                Agg::Sum(k) => Read::Sum(index_of(&mut l.sums, &(*k, f.filter.clone()))),
                Agg::Mean(k) => Read::Mean {
                    sum: index_of(&mut l.sums, &(*k, f.filter.clone())),
                    n: counter(&mut l, &f.filter),
                },
                Agg::Distinct(k) => {
                    Read::Distinct(index_of(&mut l.distincts, &(*k, f.filter.clone())))
                }
                Agg::Last(k) => Read::Last(index_of(&mut l.lasts, &(*k, f.filter.clone()))),
                Agg::Ratio { num, den } => Read::Ratio {
                    num: part(&mut l, num),
                    den: part(&mut l, den),
                    den_n: counter(&mut l, &den.1),
                },
            };
            l.reads.push(read);
            let s = index_of(&mut l.spans, &f.span_ms);
            l.span_of.push(s);
        }
        let text = serde_json::to_string(&(LAYOUT, &view.features, view.ttl_ms, &view.source))
            .unwrap_or_default();
        l.fingerprint = crate::event::hash(&text);
        l
    }

    /// The bytes of one event's prefix record: sums (f64), counts and distinct counts (u32),
    /// then per last value the newest passing index + 1 (u32) and its value (f64).
    fn record_width(&self) -> usize {
        8 * self.sums.len()
            + 4 * (self.counters.len() + self.distincts.len())
            + 12 * self.lasts.len()
    }

    /// The stored form of `events` (sorted by time), updated at `updated_ms`: the times, then
    /// per event a record of every prefix value (so a read at one index touches one record).
    pub fn encode(&self, updated_ms: i64, events: &[FeatureEvent]) -> Vec<u8> {
        let n = events.len();
        let mut out = Vec::with_capacity(HEADER + n * (8 + self.record_width()));
        out.extend_from_slice(&self.fingerprint.to_le_bytes());
        out.extend_from_slice(&updated_ms.to_le_bytes());
        out.extend_from_slice(&(n as u64).to_le_bytes());
        for e in events {
            out.extend_from_slice(&e.ts.to_le_bytes());
        }
        // for distinct counts: which passing events are the last of their value, newest back
        let last_of_value: Vec<Vec<bool>> = self
            .distincts
            .iter()
            .map(|(k, f)| {
                let mut seen = std::collections::HashSet::new();
                let mut last = vec![false; n];
                for (i, e) in events.iter().enumerate().rev() {
                    if f.accepts(e) && seen.insert(e.cat[*k]) {
                        last[i] = true;
                    }
                }
                last
            })
            .collect();
        let mut sums = vec![0f64; self.sums.len()];
        let mut counts = vec![0u32; self.counters.len()];
        let mut distinct = vec![0u32; self.distincts.len()];
        let mut lasts = vec![(0u32, 0f64); self.lasts.len()];
        for (i, e) in events.iter().enumerate() {
            for (s, (k, f)) in sums.iter_mut().zip(&self.sums) {
                if f.accepts(e) {
                    *s += e.num[*k];
                }
                out.extend_from_slice(&s.to_le_bytes());
            }
            for (c, f) in counts.iter_mut().zip(&self.counters) {
                *c += u32::from(f.accepts(e));
                out.extend_from_slice(&c.to_le_bytes());
            }
            for (c, last) in distinct.iter_mut().zip(&last_of_value) {
                *c += u32::from(last[i]);
                out.extend_from_slice(&c.to_le_bytes());
            }
            for (l, (k, f)) in lasts.iter_mut().zip(&self.lasts) {
                if f.accepts(e) {
                    *l = (i as u32 + 1, e.num[*k]);
                }
                out.extend_from_slice(&l.0.to_le_bytes());
                out.extend_from_slice(&l.1.to_le_bytes());
            }
        }
        out
    }

    /// The stored form of an attribute view's rows for one entity: `(time, values)` sorted by
    /// time, a value per feature (null as NaN).
    pub fn encode_rows(&self, updated_ms: i64, rows: &[(i64, Vec<Option<f64>>)]) -> Vec<u8> {
        let k = self.reads.len();
        let mut out = Vec::with_capacity(HEADER + rows.len() * 8 * (1 + k));
        out.extend_from_slice(&self.fingerprint.to_le_bytes());
        out.extend_from_slice(&updated_ms.to_le_bytes());
        out.extend_from_slice(&(rows.len() as u64).to_le_bytes());
        for (ts, _) in rows {
            out.extend_from_slice(&ts.to_le_bytes());
        }
        for (_, values) in rows {
            for i in 0..k {
                let v = values.get(i).copied().flatten().unwrap_or(f64::NAN);
                out.extend_from_slice(&v.to_le_bytes());
            }
        }
        out
    }

    /// An attribute view as of `t`: the newest row at or before `t`.
    fn read_row(
        &self,
        c: &Cols<'_>,
        updated: i64,
        t: i64,
        out: &mut Vec<Option<f64>>,
    ) -> (i64, Status) {
        let k = self.reads.len();
        let hi = c.upto(c.n, t);
        let st = match hi {
            0 => Status::Missing,
            h if c.ts(h - 1) <= t.saturating_sub(self.ttl_ms) => Status::Expired,
            _ => Status::Live,
        };
        if st != Status::Live {
            out.extend(std::iter::repeat_n(None, k));
            return (updated, st);
        }
        let at = HEADER + 8 * c.n + 8 * k * (hi - 1);
        out.extend((0..k).map(|i| {
            let v = f64::from_le_bytes(word(c.b, at + 8 * i));
            (!v.is_nan()).then_some(v)
        }));
        (updated, st)
    }

    /// Whether [`Layout::read`] of `bytes` as of `t` would send the caller to the buffer's
    /// events (so a server store can fetch them with the columns' batch, not one by one).
    pub fn needs_events(&self, bytes: &[u8], t: i64) -> bool {
        if bytes.len() < HEADER || u64::from_le_bytes(word(bytes, 0)) != self.fingerprint {
            return true;
        }
        if self.attributes || self.distincts.is_empty() {
            return false;
        }
        let n = u64::from_le_bytes(word(bytes, 16)) as usize;
        let c = Cols { b: bytes, n };
        let hi = c.upto(n, t);
        hi > 0 && hi < n && c.ts(hi - 1) > t - self.ttl_ms
    }

    /// Every feature of the view as of `t` from a stored buffer, appended to `out`, with the
    /// buffer's update time and the view's status (values are null unless live). `None` (and
    /// nothing appended) when the buffer must be read from its events instead.
    pub fn read(&self, bytes: &[u8], t: i64, out: &mut Vec<Option<f64>>) -> Option<(i64, Status)> {
        if bytes.len() < HEADER || u64::from_le_bytes(word(bytes, 0)) != self.fingerprint {
            return None;
        }
        let updated = i64::from_le_bytes(word(bytes, 8));
        let n = u64::from_le_bytes(word(bytes, 16)) as usize;
        let c = Cols { b: bytes, n };
        if self.attributes {
            return Some(self.read_row(&c, updated, t, out));
        }
        let hi = c.upto(n, t);
        let st = match hi {
            0 if updated > 0 => Status::Expired,
            0 => Status::Missing,
            h if c.ts(h - 1) <= t - self.ttl_ms => Status::Expired,
            _ => Status::Live,
        };
        if st != Status::Live {
            out.extend(std::iter::repeat_n(None, self.reads.len()));
            return Some((updated, st));
        }
        if hi < n && !self.distincts.is_empty() {
            return None;
        }
        // a prefix value over events [0, end): field `at` of record end - 1
        let width = self.record_width();
        let records = HEADER + 8 * n;
        let (counters, distincts) = (
            8 * self.sums.len(),
            8 * self.sums.len() + 4 * self.counters.len(),
        );
        let lasts = distincts + 4 * self.distincts.len();
        let u32_at = |at: usize, end: usize| -> u64 {
            if end == 0 {
                return 0;
            }
            c.u32(records + width * (end - 1) + at)
        };
        let f64_at = |at: usize, end: usize| -> f64 {
            if end == 0 {
                return 0.0;
            }
            f64::from_le_bytes(word(bytes, records + width * (end - 1) + at))
        };
        let mut los = [0usize; 16];
        let mut los_vec = Vec::new();
        let los: &mut [usize] = if self.spans.len() <= los.len() {
            &mut los[..self.spans.len()]
        } else {
            los_vec.resize(self.spans.len(), 0);
            &mut los_vec
        };
        for (lo, span) in los.iter_mut().zip(&self.spans) {
            *lo = c.upto(hi, t - span);
        }
        let count = |k: Counter, lo: usize| -> u64 {
            match k {
                Counter::All => (hi - lo) as u64,
                Counter::Col(j) => u32_at(counters + 4 * j, hi) - u32_at(counters + 4 * j, lo),
            }
        };
        let sum = |j: usize, lo: usize| -> f64 { f64_at(8 * j, hi) - f64_at(8 * j, lo) };
        for (r, &s) in self.reads.iter().zip(&self.span_of) {
            let lo = los[s];
            out.push(match *r {
                Read::Count(k) => Some(count(k, lo) as f64),
                Read::Sum(j) => Some(sum(j, lo)),
                Read::Mean { sum: j, n } => {
                    let m = count(n, lo);
                    (m > 0).then(|| sum(j, lo) / m as f64)
                }
                Read::Distinct(j) => {
                    let at = distincts + 4 * j;
                    Some((u32_at(at, hi) - u32_at(at, lo)) as f64)
                }
                Read::Last(j) => {
                    let at = lasts + 12 * j;
                    let newest = u32_at(at, hi) as usize;
                    (newest > lo).then(|| f64_at(at + 4, hi))
                }
                Read::Ratio { num, den, den_n } => {
                    let part = |p: Part| match p {
                        Part::Count(k) => count(k, lo) as f64,
                        Part::Sum(j) => sum(j, lo),
                    };
                    let d = part(den);
                    (count(den_n, lo) > 0 && d != 0.0).then(|| part(num) / d)
                }
                Read::Value(_) => None,
            });
        }
        Some((updated, st))
    }
}

/// The columns of a stored buffer of `n` events.
struct Cols<'a> {
    b: &'a [u8],
    n: usize,
}

impl Cols<'_> {
    fn ts(&self, i: usize) -> i64 {
        i64::from_le_bytes(word(self.b, HEADER + 8 * i))
    }

    /// Events of `[0, end)` with `ts <= t`. Reads as of now mostly have every event (the
    /// newest is not after now), none (a window longer than the buffer) or a few of the newest
    /// off (a short window): both ends are tried, then the search gallops back from the end.
    fn upto(&self, end: usize, t: i64) -> usize {
        let end = end.min(self.n);
        if end == 0 || self.ts(end - 1) <= t {
            return end;
        }
        if self.ts(0) > t {
            return 0;
        }
        // the answer is in [lo, hi]: ts(lo - 1) <= t < ts(hi)
        let (mut lo, mut hi, mut step) = (1, end - 1, 1);
        while lo + step < hi {
            let probe = hi - step;
            if self.ts(probe) <= t {
                lo = probe + 1;
                break;
            }
            hi = probe;
            step *= 2;
        }
        while lo < hi {
            let mid = (lo + hi) / 2;
            if self.ts(mid) <= t {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }

    fn u32(&self, at: usize) -> u64 {
        let mut w = [0u8; 4];
        w.copy_from_slice(&self.b[at..at + 4]);
        u64::from(u32::from_le_bytes(w))
    }
}

fn word(b: &[u8], at: usize) -> [u8; 8] {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[at..at + 8]);
    w
}
