//! Online evaluation: rules pick ingested spans (by project, service, operation and model) and
//! sample them at a rate; the picked spans are scored asynchronously by the rule's evaluators.
//!
//! Ingest only *offers* spans ([`OnlineEvaluator::offer`]): matching and sampling are a few
//! string compares and one hash per rule, and a sampled span goes into a bounded queue with
//! `try_send`; a full queue drops it (counted) rather than slow ingest down. Worker threads score
//! and store in batches. Sampling is a deterministic draw from the rule's name and the span's
//! ids, so a backfill over the same spans picks exactly the spans online evaluation picked.

use crate::spec::{Context, EvaluatorSpec};
use crate::store::{EvalStore, ScoreValue, StoredScore, Target};
use crate::{Evaluator, Sample};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, RwLock};

/// Which spans a rule scores, how many of them, and with what.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub name: String,
    #[serde(default)]
    pub project: Option<String>,
    #[serde(default)]
    pub service: Option<String>,
    #[serde(default)]
    pub operation: Option<String>,
    /// the response model, else the request model
    #[serde(default)]
    pub model: Option<String>,
    /// the share of matching spans scored, in (0, 1]
    pub rate: f64,
    pub evaluators: Vec<EvaluatorSpec>,
    #[serde(default = "yes")]
    pub enabled: bool,
}

fn yes() -> bool {
    true
}

impl Rule {
    pub fn check(&self) -> Result<(), encore_core::Invalid> {
        if self.name.is_empty() || self.name.contains([' ', '/', ':']) {
            return Err(format!(
                "rule name {:?}: expected a non-empty name without spaces, '/' or ':'",
                self.name
            )
            .into());
        }
        if !(self.rate > 0.0 && self.rate <= 1.0) {
            return Err(format!("rule {}: rate {} is not in (0, 1]", self.name, self.rate).into());
        }
        if self.evaluators.is_empty() {
            return Err(format!("rule {}: names no evaluator", self.name).into());
        }
        Ok(())
    }

    pub fn matches(&self, s: &SpanSample) -> bool {
        let eq = |want: &Option<String>, got: Option<&str>| {
            want.as_deref().is_none_or(|w| got == Some(w))
        };
        self.enabled
            && eq(&self.project, Some(&s.target.project))
            && eq(&self.service, s.target.service.as_deref())
            && eq(&self.operation, s.operation.as_deref())
            && eq(&self.model, s.target.model.as_deref())
    }

    /// The rule's deterministic draw for a span.
    pub fn sampled(&self, trace_id: &str, span_id: &str) -> bool {
        draw(&self.name, trace_id, span_id) < self.rate
    }
}

/// A uniform draw in [0, 1) from a rule name and a span's ids (FNV-1a, then the SplitMix64
/// finalizer so that nearby ids give unrelated draws).
pub fn draw(rule: &str, trace_id: &str, span_id: &str) -> f64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in rule
        .bytes()
        .chain([0])
        .chain(trace_id.bytes())
        .chain([0])
        .chain(span_id.bytes())
    {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^= h >> 31;
    (h >> 11) as f64 / (1u64 << 53) as f64
}

/// A span as online evaluation sees it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SpanSample {
    pub target: Target,
    pub operation: Option<String>,
    pub input: Option<String>,
    pub output: Option<String>,
}

impl SpanSample {
    pub fn from_span(s: &encore_telemetry::Span) -> SpanSample {
        let m = &s.mapped;
        SpanSample {
            target: Target {
                project: s.project.clone(),
                trace_id: s.trace_id.clone(),
                span_id: s.span_id.clone(),
                service: Some(s.service.clone()),
                model: m.response_model.clone().or_else(|| m.request_model.clone()),
                user: m.user.clone(),
                span_ms: s.start_ns.div_euclid(1_000_000),
                cost_usd: s.cost.as_ref().map(|c| c.usd),
                latency_ms: Some(s.duration_ns() as f64 / 1e6),
            },
            operation: m.operation.clone(),
            input: m.input.clone(),
            output: m.output.clone(),
        }
    }
}

impl SpanSample {
    /// A stored span with its content.
    pub fn from_row(
        r: &encore_telemetry::SpanRow,
        content: Option<&(Option<String>, Option<String>)>,
    ) -> SpanSample {
        SpanSample {
            target: Target {
                project: r.project.clone(),
                trace_id: r.trace_id.clone(),
                span_id: r.span_id.clone(),
                service: Some(r.service.clone()),
                model: r.response_model.clone().or_else(|| r.request_model.clone()),
                user: r.user_id.clone(),
                span_ms: r.start_ns.div_euclid(1_000_000),
                cost_usd: r.cost_usd,
                latency_ms: Some(r.duration_ms),
            },
            operation: r.operation.clone(),
            input: content.and_then(|c| c.0.clone()),
            output: content.and_then(|c| c.1.clone()),
        }
    }
}

/// The newest `limit` stored spans matching `filter`, with their content.
pub fn samples(
    spans: &encore_telemetry::SpanStore,
    filter: &encore_telemetry::Filter,
    limit: usize,
) -> Result<Vec<SpanSample>, encore_storage::StorageError> {
    let rows = spans.list(filter, limit, None)?;
    let lo = rows.iter().map(|r| r.start_ns.div_euclid(1_000_000)).min();
    let hi = rows.iter().map(|r| r.start_ns.div_euclid(1_000_000)).max();
    let content = match (lo, hi) {
        (Some(lo), Some(hi)) => spans.contents(&rows, lo, hi)?,
        _ => Default::default(),
    };
    Ok(rows
        .iter()
        .map(|r| SpanSample::from_row(r, content.get(&format!("{}{}", r.trace_id, r.span_id))))
        .collect())
}

/// A rule with its evaluators built.
#[derive(Debug)]
pub struct CompiledRule {
    pub rule: Rule,
    evaluators: Vec<Box<dyn Evaluator>>,
}

impl CompiledRule {
    pub fn new(rule: Rule, ctx: &Context) -> Result<CompiledRule, encore_core::Invalid> {
        rule.check()?;
        let evaluators = rule
            .evaluators
            .iter()
            .map(|e| e.build(ctx))
            .collect::<Result<_, _>>()
            .map_err(|e| format!("rule {}: {e}", rule.name))?;
        Ok(CompiledRule { rule, evaluators })
    }

    /// Scores `s` with every evaluator that can; `source` says where the scores came from.
    /// Returns the scores and the evaluator runs that failed. A span without an output (a
    /// root or tool span, or content not kept) gives no scores.
    pub fn score(&self, s: &SpanSample, source: &str) -> (Vec<StoredScore>, usize) {
        let Some(output) = s.output.as_deref() else {
            return (Vec::new(), 0);
        };
        let sample = Sample {
            input: s.input.as_deref().unwrap_or(""),
            output,
            expected: None,
            context: None,
        };
        let mut failed = 0;
        let now = encore_core::time::now_ms();
        let scores = self
            .evaluators
            .iter()
            .filter_map(|e| match e.evaluate(&sample) {
                Ok(score) => Some(StoredScore {
                    target: s.target.clone(),
                    score: ScoreValue::from(score),
                    source: source.to_owned(),
                    created_ms: now,
                }),
                Err(err) => {
                    tracing::debug!("{source}: span {} not scored: {err}", s.target.span_id);
                    failed += 1;
                    None
                }
            })
            .collect();
        (scores, failed)
    }
}

/// Counters of online evaluation.
#[derive(Debug, Default)]
pub struct OnlineStats {
    /// spans picked by a rule
    pub sampled: AtomicU64,
    /// dropped because the queue was full
    pub dropped: AtomicU64,
    pub scores: AtomicU64,
    /// evaluator runs that gave no score (a failing judge, a sample without what the
    /// evaluator needs)
    pub failures: AtomicU64,
    /// picked spans without an output to score (root or tool spans, content not kept)
    pub skipped: AtomicU64,
    /// spans waiting in the queue
    pub pending: AtomicU64,
    /// when spans were last offered (ms since the epoch)
    last_offer_ms: std::sync::atomic::AtomicI64,
}

/// How long after the last offer ingest counts as busy, and how long a worker then waits.
const BUSY_MS: i64 = 50;
const YIELD: std::time::Duration = std::time::Duration::from_millis(20);

/// A span picked by a rule; the sample is shared by every rule that picked it.
type Job = (Arc<CompiledRule>, Arc<SpanSample>);

/// Rules, the queue to the workers, and the workers.
#[derive(Debug)]
pub struct OnlineEvaluator {
    rules: RwLock<Vec<Arc<CompiledRule>>>,
    queue: SyncSender<Job>,
    pub stats: Arc<OnlineStats>,
}

impl OnlineEvaluator {
    /// Starts `workers` threads that score queued spans into `store`; at most `capacity` spans
    /// wait.
    pub fn start(
        rules: Vec<CompiledRule>,
        store: Arc<Mutex<EvalStore>>,
        capacity: usize,
        workers: usize,
    ) -> OnlineEvaluator {
        let (queue, rx) = std::sync::mpsc::sync_channel::<Job>(capacity.max(1));
        let rx = Arc::new(Mutex::new(rx));
        let stats = Arc::new(OnlineStats::default());
        // workers yield to ingest: while spans were offered in the last BUSY_MS and the backlog
        // is under half the queue, they wait; a sustained load fills the queue to half and
        // they run flat out
        let high = (capacity.max(1) / 2) as u64;
        for _ in 0..workers.max(1) {
            let (rx, store, stats) = (rx.clone(), store.clone(), stats.clone());
            std::thread::spawn(move || work(&rx, &store, &stats, high));
        }
        OnlineEvaluator {
            rules: RwLock::new(rules.into_iter().map(Arc::new).collect()),
            queue,
            stats,
        }
    }

    /// Replaces the rules (new rules apply to spans offered from now on).
    pub fn set_rules(&self, rules: Vec<CompiledRule>) {
        *self.rules.write().unwrap_or_else(|e| e.into_inner()) =
            rules.into_iter().map(Arc::new).collect();
    }

    pub fn rules(&self) -> Vec<Rule> {
        self.rules
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|r| r.rule.clone())
            .collect()
    }

    /// Offers ingested spans: those a rule picks are queued for scoring, never waiting.
    pub fn offer(&self, spans: &[encore_telemetry::Span]) {
        let rules = self.rules.read().unwrap_or_else(|e| e.into_inner());
        if rules.is_empty() {
            return;
        }
        self.stats
            .last_offer_ms
            .store(encore_core::time::now_ms(), Ordering::Relaxed);
        for span in spans {
            let mut sample: Option<Arc<SpanSample>> = None;
            for r in rules.iter() {
                if !r.rule.sampled(&span.trace_id, &span.span_id) {
                    continue;
                }
                let s = sample.get_or_insert_with(|| Arc::new(SpanSample::from_span(span)));
                if !r.rule.matches(s) {
                    continue;
                }
                self.stats.sampled.fetch_add(1, Ordering::Relaxed);
                if s.output.is_none() {
                    self.stats.skipped.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                match self.queue.try_send((r.clone(), s.clone())) {
                    Ok(()) => {
                        self.stats.pending.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                        self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }
    }
}

fn work(rx: &Mutex<Receiver<Job>>, store: &Mutex<EvalStore>, stats: &OnlineStats, high: u64) {
    loop {
        let mut jobs = Vec::new();
        {
            let rx = rx.lock().unwrap_or_else(|e| e.into_inner());
            match rx.recv() {
                Ok(j) => jobs.push(j),
                Err(_) => return,
            }
            while stats.pending.load(Ordering::Relaxed) < high
                && encore_core::time::now_ms() - stats.last_offer_ms.load(Ordering::Relaxed)
                    < BUSY_MS
            {
                std::thread::sleep(YIELD);
            }
            jobs.extend(rx.try_iter().take(255));
        }
        stats
            .pending
            .fetch_sub(jobs.len() as u64, Ordering::Relaxed);
        // stored in chunks, so slow evaluators (judges) show progress as they go
        for chunk in jobs.chunks(32) {
            let mut scores = Vec::new();
            for (rule, s) in chunk {
                let (mut got, failed) = rule.score(s, &format!("rule:{}", rule.rule.name));
                stats.failures.fetch_add(failed as u64, Ordering::Relaxed);
                scores.append(&mut got);
            }
            if scores.is_empty() {
                continue;
            }
            let mut store = store.lock().unwrap_or_else(|e| e.into_inner());
            match store.put_scores(&scores) {
                Ok(n) => {
                    stats.scores.fetch_add(n as u64, Ordering::Relaxed);
                }
                Err(e) => {
                    tracing::warn!("online evaluation: {} scores not stored: {e}", scores.len())
                }
            }
        }
    }
}

/// Scores the spans of `samples` that `rule` picks, as online evaluation would have, with
/// source `backfill:<rule>`; returns (picked, scores stored, failures).
pub fn backfill(
    rule: &CompiledRule,
    samples: &[SpanSample],
    store: &Mutex<EvalStore>,
) -> Result<(usize, usize, usize), crate::store::StoreError> {
    let source = format!("backfill:{}", rule.rule.name);
    let picked: Vec<&SpanSample> = samples
        .iter()
        .filter(|s| {
            rule.rule.matches(s) && rule.rule.sampled(&s.target.trace_id, &s.target.span_id)
        })
        .collect();
    let mut stored = 0;
    let mut failures = 0;
    for chunk in picked.chunks(256) {
        let mut scores = Vec::new();
        for s in chunk {
            let (mut got, failed) = rule.score(s, &source);
            failures += failed;
            scores.append(&mut got);
        }
        stored += store
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .put_scores(&scores)?;
    }
    Ok((picked.len(), stored, failures))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(rate: f64) -> Rule {
        Rule {
            name: "r1".into(),
            project: None,
            service: Some("chat".into()),
            operation: None,
            model: None,
            rate,
            evaluators: vec![EvaluatorSpec::JsonValid],
            enabled: true,
        }
    }

    /// The number of spans sampled out of `n` is Binomial(n, rate): an exact two-sided
    /// binomial test (the sum of the probabilities of outcomes no likelier than the observed
    /// one) must not reject at 0.001 for any of several rates.
    #[test]
    fn sampling_follows_the_configured_rate_by_a_binomial_test() {
        let n = 20_000u64;
        // ln k! for k <= n
        let lf: Vec<f64> = std::iter::once(0.0)
            .chain((1..=n).scan(0.0, |acc, i| {
                *acc += (i as f64).ln();
                Some(*acc)
            }))
            .collect();
        let ln_pmf = |k: u64, n: u64, p: f64| {
            lf[n as usize] - lf[k as usize] - lf[(n - k) as usize]
                + k as f64 * p.ln()
                + (n - k) as f64 * (1.0 - p).ln()
        };
        for rate in [0.01, 0.1, 0.25, 0.5, 0.9] {
            let r = rule(rate);
            let k = (0..n)
                .filter(|i| r.sampled(&format!("{:032x}", i * 7919), &format!("{i:016x}")))
                .count() as u64;
            let observed = ln_pmf(k, n, rate);
            let p_value: f64 = (0..=n)
                .map(|j| ln_pmf(j, n, rate))
                .filter(|l| *l <= observed + 1e-9)
                .map(f64::exp)
                .sum();
            assert!(
                p_value > 0.001,
                "rate {rate}: {k} of {n} sampled, p = {p_value}"
            );
        }
        // and a different rule name draws independently
        let a = rule(0.5);
        let mut b = rule(0.5);
        b.name = "r2".into();
        let both = (0..n)
            .filter(|i| {
                let (t, s) = (format!("{i:032x}"), format!("{i:016x}"));
                a.sampled(&t, &s) && b.sampled(&t, &s)
            })
            .count() as f64;
        assert!((both / n as f64 - 0.25).abs() < 0.02, "{both}");
    }

    #[test]
    fn rules_are_checked() {
        assert!(rule(0.0).check().is_err());
        assert!(rule(1.5).check().is_err());
        let mut r = rule(0.5);
        r.name = "a b".into();
        assert!(r.check().unwrap_err().0.contains("rule name"));
        r = rule(0.5);
        r.evaluators.clear();
        assert!(r.check().is_err());
        assert!(rule(1.0).check().is_ok());
    }
}
