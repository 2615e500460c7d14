//! Alerts on any metric of traces or scores over a rolling window, per slice.
//!
//! A rule names a metric (error rate, p95 latency, cost, span count, a score's mean or fail rate),
//! filters (project, service, model), an optional slice (service, model, user), a window, a
//! comparison with a threshold, a minimum count, how long the condition must hold before the
//! alert fires (`for_s`), and a cooldown between notifications of the same slice. The
//! [`Engine`] is a pure state machine per (rule, slice):
//!
//! ```text
//! ok --breach--> pending --breach held for_s--> firing --no breach--> ok (resolved)
//!                   '--no breach--> ok
//! ```
//!
//! With `for_s = 0` a breach fires at once. A slice with no data in the window does not
//! breach. A firing is notified unless the same slice was notified less than `cooldown_s` ago;
//! the resolution of a notified firing is always notified. Notifications go to the rule's
//! webhook (JSON, retried with backoff) and every state change is kept in the history.

use crate::quality::Slice;
use crate::store::{AlertEvent, ScoreFilter, StoredScore};
use encore_telemetry::store::GroupBy;
use encore_telemetry::{Filter, SpanStore};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Metric {
    /// share of spans with status error
    ErrorRate,
    LatencyP95Ms,
    /// sum of span cost over the window (USD)
    Cost,
    /// spans in the window
    Count,
    /// mean score of `evaluator`
    ScoreMean {
        evaluator: String,
    },
    /// share of `evaluator`'s scores below 0.5 (the hallucination rate of a hallucination
    /// evaluator)
    FailRate {
        evaluator: String,
    },
    /// 1 where the monitor's latest judged window fired, 0 where it did not, per slice (and
    /// attribute) of the monitor (`encore monitors`); the window does not apply: a monitor
    /// judges windows of its own
    MonitorFired {
        monitor: String,
    },
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    Above,
    Below,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertRule {
    pub name: String,
    pub metric: Metric,
    #[serde(default)]
    pub project: Option<String>,
    #[serde(default)]
    pub service: Option<String>,
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub slice_by: Option<Slice>,
    pub window_s: u64,
    pub op: Op,
    pub threshold: f64,
    #[serde(default)]
    pub for_s: u64,
    #[serde(default)]
    pub cooldown_s: u64,
    /// fewer observations than this in the window never breach
    #[serde(default = "one")]
    pub min_count: u64,
    #[serde(default)]
    pub webhook: Option<String>,
}

fn one() -> u64 {
    1
}

impl AlertRule {
    pub fn check(&self) -> Result<(), encore_core::Invalid> {
        if self.name.is_empty() || self.name.contains([' ', '/']) {
            return Err(format!(
                "alert name {:?}: expected a non-empty name without spaces or '/'",
                self.name
            )
            .into());
        }
        if self.window_s == 0 {
            return Err(format!("alert {}: window_s must be positive", self.name).into());
        }
        if !self.threshold.is_finite() {
            return Err(format!("alert {}: threshold must be a number", self.name).into());
        }
        if let Some(w) = &self.webhook {
            encore_http::outbound::host_port(w)
                .map_err(|e| format!("alert {}: webhook {e}", self.name))?;
        }
        Ok(())
    }

    fn breaches(&self, o: &Observation) -> bool {
        o.count >= self.min_count
            && match self.op {
                Op::Above => o.value > self.threshold,
                Op::Below => o.value < self.threshold,
            }
    }
}

/// A metric's value in one slice over the window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Observation {
    pub slice: String,
    pub value: f64,
    pub count: u64,
}

/// A monitor's verdicts on its latest judged window, as alert observations (see
/// [`Metric::MonitorFired`]).
pub type MonitorVerdicts<'a> = &'a dyn Fn(&str) -> Vec<Observation>;

/// The metric of `rule` over `[now − window, now]`, per slice.
pub fn observe(
    rule: &AlertRule,
    spans: Option<&SpanStore>,
    scores: &dyn Fn(&ScoreFilter) -> Vec<StoredScore>,
    monitors: MonitorVerdicts<'_>,
    now_ms: i64,
) -> Result<Vec<Observation>, encore_core::Invalid> {
    let from = now_ms - (rule.window_s as i64) * 1000;
    let slice_name = |s: Slice| match s {
        Slice::Service => "service",
        Slice::Model => "model",
        Slice::User => "user",
    };
    let label = |v: Option<String>| match rule.slice_by {
        None => String::new(),
        Some(s) => format!("{}={}", slice_name(s), v.unwrap_or_default()),
    };
    match &rule.metric {
        Metric::ErrorRate | Metric::LatencyP95Ms | Metric::Cost | Metric::Count => {
            let Some(spans) = spans else {
                return Err(format!("alert {}: this server keeps no traces", rule.name).into());
            };
            let filter = Filter {
                project: rule.project.clone(),
                service: rule.service.clone(),
                model: rule.model.clone(),
                from_ms: Some(from),
                to_ms: Some(now_ms),
                ..Default::default()
            };
            let group = match rule.slice_by {
                None => GroupBy::None,
                Some(Slice::Service) => GroupBy::Service,
                Some(Slice::Model) => GroupBy::Model,
                Some(Slice::User) => GroupBy::User,
            };
            let rows = spans
                .stats(&filter, group, 0)
                .map_err(|e| format!("alert {}: {e}", rule.name))?;
            Ok(rows
                .into_iter()
                .map(|r| Observation {
                    value: match rule.metric {
                        Metric::ErrorRate => r.error_rate,
                        Metric::LatencyP95Ms => r.latency_ms.p95,
                        Metric::Cost => r.cost_usd,
                        _ => r.count as f64,
                    },
                    count: r.count,
                    slice: label(r.group),
                })
                .collect())
        }
        Metric::MonitorFired { monitor } => Ok(monitors(monitor)),
        Metric::ScoreMean { evaluator } | Metric::FailRate { evaluator } => {
            let rows = scores(&ScoreFilter {
                project: rule.project.clone(),
                service: rule.service.clone(),
                model: rule.model.clone(),
                evaluator: Some(evaluator.clone()),
                from_ms: Some(from),
                to_ms: Some(now_ms),
                ..Default::default()
            });
            let mut acc: HashMap<String, (f64, u64)> = HashMap::new();
            for s in &rows {
                let a = acc
                    .entry(label(rule.slice_by.map(|sl| sl.of(s))))
                    .or_default();
                a.0 += match rule.metric {
                    Metric::FailRate { .. } => f64::from(u8::from(s.score.value < 0.5)),
                    _ => s.score.value,
                };
                a.1 += 1;
            }
            let mut out: Vec<Observation> = acc
                .into_iter()
                .map(|(slice, (sum, n))| Observation {
                    slice,
                    value: sum / n as f64,
                    count: n,
                })
                .collect();
            out.sort_by(|a, b| a.slice.cmp(&b.slice));
            Ok(out)
        }
    }
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "phase", rename_all = "snake_case")]
pub enum Phase {
    Ok,
    Pending { since_ms: i64 },
    Firing { since_ms: i64 },
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SliceState {
    #[serde(flatten)]
    pub phase: Phase,
    pub value: f64,
    pub last_notified_ms: Option<i64>,
    /// whether the current firing was notified (its resolution then is too)
    notified: bool,
}

/// A state change the engine decided.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Transition {
    pub rule: String,
    pub slice: String,
    /// `firing` or `resolved`
    pub state: &'static str,
    pub value: f64,
    pub threshold: f64,
    pub at_ms: i64,
    /// false: suppressed by the cooldown
    pub notify: bool,
}

/// Alert states per rule and slice.
#[derive(Debug, Default)]
pub struct Engine {
    states: HashMap<(String, String), SliceState>,
}

impl Engine {
    /// Advances `rule`'s slices to `now_ms` given this window's observations.
    pub fn step(&mut self, rule: &AlertRule, obs: &[Observation], now_ms: i64) -> Vec<Transition> {
        let mut out = Vec::new();
        let mut seen = std::collections::HashSet::new();
        let transition = |slice: &str, state: &'static str, value: f64, notify: bool| Transition {
            rule: rule.name.clone(),
            slice: slice.to_owned(),
            state,
            value,
            threshold: rule.threshold,
            at_ms: now_ms,
            notify,
        };
        for o in obs {
            seen.insert(o.slice.clone());
            let st = self
                .states
                .entry((rule.name.clone(), o.slice.clone()))
                .or_insert(SliceState {
                    phase: Phase::Ok,
                    value: o.value,
                    last_notified_ms: None,
                    notified: false,
                });
            st.value = o.value;
            let breach = rule.breaches(o);
            st.phase = match (st.phase, breach) {
                (Phase::Ok, true) => Phase::Pending { since_ms: now_ms },
                (Phase::Pending { .. }, false) | (Phase::Ok, false) => Phase::Ok,
                (Phase::Firing { .. }, false) => {
                    out.push(transition(&o.slice, "resolved", o.value, st.notified));
                    st.notified = false;
                    Phase::Ok
                }
                (p, true) => p,
            };
            if let Phase::Pending { since_ms } = st.phase
                && now_ms - since_ms >= (rule.for_s as i64) * 1000
            {
                let cooled = st
                    .last_notified_ms
                    .is_none_or(|t| now_ms - t >= (rule.cooldown_s as i64) * 1000);
                out.push(transition(&o.slice, "firing", o.value, cooled));
                if cooled {
                    st.last_notified_ms = Some(now_ms);
                }
                st.notified = cooled;
                st.phase = Phase::Firing { since_ms: now_ms };
            }
        }
        // slices without data in the window: no breach
        for ((r, slice), st) in self.states.iter_mut() {
            if r != &rule.name || seen.contains(slice) {
                continue;
            }
            if let Phase::Firing { .. } = st.phase {
                out.push(transition(slice, "resolved", 0.0, st.notified));
                st.notified = false;
            }
            st.phase = Phase::Ok;
        }
        out
    }

    /// Current states of `rule` (every rule when `None`).
    pub fn states(&self, rule: Option<&str>) -> Vec<(String, String, SliceState)> {
        let mut v: Vec<_> = self
            .states
            .iter()
            .filter(|((r, _), _)| rule.is_none_or(|x| x == r))
            .map(|((r, s), st)| (r.clone(), s.clone(), st.clone()))
            .collect();
        v.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        v
    }

    /// Forgets rules not in `names`.
    pub fn retain(&mut self, names: &[&str]) {
        self.states.retain(|(r, _), _| names.contains(&r.as_str()));
    }
}

/// Delivers `t` to the rule's webhook as signed JSON through `delivery` (retried as its
/// [`encore_http::outbound::Retry`] says); the history event records attempts, delivery and
/// the last error.
pub fn notify(t: &Transition, rule: &AlertRule, delivery: &Delivery) -> AlertEvent {
    let mut event = AlertEvent {
        rule: t.rule.clone(),
        slice: t.slice.clone(),
        state: t.state.into(),
        value: t.value,
        threshold: t.threshold,
        at_ms: t.at_ms,
        attempts: 0,
        delivered: false,
        error: None,
    };
    let Some(url) = rule.webhook.as_deref().filter(|_| t.notify) else {
        return event;
    };
    let body = serde_json::json!({
        "alert": t.rule,
        "state": t.state,
        "slice": t.slice,
        "value": t.value,
        "threshold": t.threshold,
        "op": rule.op,
        "metric": rule.metric,
        "window_s": rule.window_s,
        "at_ms": t.at_ms,
    })
    .to_string();
    let d = encore_http::outbound::deliver(
        &delivery.client,
        "alert",
        url,
        body.as_bytes(),
        delivery.secret.as_deref(),
        delivery.retry,
    );
    event.attempts = d.attempts;
    event.delivered = d.delivered;
    event.error = d.last_error;
    event
}

/// How webhooks are delivered: the outbound client (its allow list is the webhooks'), the
/// signing key, the retries.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub client: encore_http::outbound::Outbound,
    pub secret: Option<std::sync::Arc<[u8]>>,
    pub retry: encore_http::outbound::Retry,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(for_s: u64, cooldown_s: u64) -> AlertRule {
        AlertRule {
            name: "errors".into(),
            metric: Metric::ErrorRate,
            project: None,
            service: None,
            model: None,
            slice_by: Some(Slice::Service),
            window_s: 60,
            op: Op::Above,
            threshold: 0.1,
            for_s,
            cooldown_s,
            min_count: 5,
            webhook: None,
        }
    }

    fn obs(slice: &str, value: f64, count: u64) -> Observation {
        Observation {
            slice: slice.into(),
            value,
            count,
        }
    }

    #[test]
    fn fires_after_the_for_duration_and_resolves() {
        let r = rule(30, 0);
        let mut e = Engine::default();
        assert!(e.step(&r, &[obs("a", 0.5, 10)], 0).is_empty(), "pending");
        assert!(
            e.step(&r, &[obs("a", 0.5, 10)], 20_000).is_empty(),
            "still pending"
        );
        let t = e.step(&r, &[obs("a", 0.5, 10)], 30_000);
        assert_eq!((t.len(), t[0].state, t[0].notify), (1, "firing", true));
        assert!(
            e.step(&r, &[obs("a", 0.6, 10)], 40_000).is_empty(),
            "stays firing"
        );
        let t = e.step(&r, &[obs("a", 0.0, 10)], 50_000);
        assert_eq!((t[0].state, t[0].notify), ("resolved", true));
        // a breach that does not last is never notified
        assert!(e.step(&r, &[obs("a", 0.5, 10)], 60_000).is_empty());
        assert!(e.step(&r, &[obs("a", 0.0, 10)], 70_000).is_empty());
        assert!(e.step(&r, &[obs("a", 0.5, 10)], 100_000).is_empty());
    }

    #[test]
    fn slices_are_independent_and_small_samples_do_not_breach() {
        let r = rule(0, 0);
        let mut e = Engine::default();
        let t = e.step(
            &r,
            &[obs("a", 0.5, 10), obs("b", 0.9, 4), obs("c", 0.05, 100)],
            0,
        );
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].slice, "a");
        // no data for a: resolved
        let t = e.step(&r, &[obs("b", 0.9, 4)], 1000);
        assert_eq!((t[0].slice.as_str(), t[0].state), ("a", "resolved"));
    }

    #[test]
    fn the_cooldown_suppresses_flapping_notifications() {
        let r = rule(0, 300);
        let mut e = Engine::default();
        let mut notified = Vec::new();
        for (i, v) in [0.5, 0.0, 0.5, 0.0, 0.5, 0.0].iter().enumerate() {
            for t in e.step(&r, &[obs("a", *v, 10)], i as i64 * 60_000) {
                notified.push((t.state, t.notify));
            }
        }
        // the first firing and its resolution are notified; the flaps within 300 s are not
        assert_eq!(
            notified,
            vec![
                ("firing", true),
                ("resolved", true),
                ("firing", false),
                ("resolved", false),
                ("firing", false),
                ("resolved", false)
            ]
        );
        let t = e.step(&r, &[obs("a", 0.5, 10)], 400_000);
        assert_eq!((t[0].state, t[0].notify), ("firing", true));
    }

    #[test]
    fn rules_are_checked() {
        let mut r = rule(0, 0);
        assert!(r.check().is_ok());
        // https is spoken; a webhook must still be an http(s) URL with a host
        r.webhook = Some("https://hooks.example.com".into());
        assert!(r.check().is_ok());
        r.webhook = Some("ftp://hooks.example.com".into());
        assert!(r.check().unwrap_err().0.contains("https://"));
        r.webhook = None;
        r.window_s = 0;
        assert!(r.check().is_err());
    }
}
