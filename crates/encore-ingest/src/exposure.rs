//! Outcomes of an experiment's listeners from the event log: each exposed listener's first
//! exposure (variant and time), and their listening before it (the CUPED covariate window) and
//! after it.

use crate::error::IngestError;
use crate::ingest::Ingestor;
use crate::table::Table;
use arrow::array::{
    Array, BooleanArray, Int64Array, ListArray, StringArray, StructArray, UInt32Array,
};
use encore_core::time::MS_PER_DAY;
use encore_storage::StorageError;
use std::collections::HashMap;

/// A listener's listening in one period.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Listening {
    pub plays: f64,
    /// plays of at least 30 s
    pub streams: f64,
    pub minutes: f64,
    pub saves: f64,
}

impl Listening {
    pub fn skips(&self) -> f64 {
        self.plays - self.streams
    }

    /// streams / plays (0 without plays)
    pub fn stream_rate(&self) -> f64 {
        if self.plays > 0.0 {
            self.streams / self.plays
        } else {
            0.0
        }
    }

    pub fn skip_rate(&self) -> f64 {
        if self.plays > 0.0 {
            self.skips() / self.plays
        } else {
            0.0
        }
    }
}

/// One exposed listener.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub variant: String,
    pub exposed_ms: i64,
    /// the `pre_days` before exposure
    pub pre: Listening,
    /// from exposure on
    pub post: Listening,
}

fn arrow_err(what: &str) -> StorageError {
    StorageError::Arrow {
        message: format!("unexpected {what} column types"),
    }
}

/// Every listener exposed to `experiment`, with their outcomes.
pub fn outcomes(
    ingestor: &Ingestor,
    experiment: &str,
    pre_days: u32,
) -> Result<HashMap<String, Outcome>, IngestError> {
    // first exposures
    let mut first: HashMap<String, (i64, String)> = HashMap::new();
    let mut saves: Vec<(String, i64)> = Vec::new();
    // per listener, the newest event's analytics consent: without it they are left out
    let mut analytics: HashMap<String, (i64, bool)> = HashMap::new();
    let mut note = |user: &str, ts: i64, allowed: bool| match analytics.get_mut(user) {
        Some(e) if ts > e.0 || (ts == e.0 && !allowed) => *e = (ts, allowed),
        Some(_) => {}
        None => {
            analytics.insert(user.to_owned(), (ts, allowed));
        }
    };
    ingestor.log(Table::Interaction).scan(
        Some(&["user_id", "kind", "ts_ms", "experiments", "consent"]),
        |b| {
            let any = |i: usize| b.column(i).as_any();
            let (Some(user), Some(kind), Some(ts), Some(exps), Some(consent)) = (
                any(0).downcast_ref::<StringArray>(),
                any(1).downcast_ref::<StringArray>(),
                any(2).downcast_ref::<Int64Array>(),
                any(3).downcast_ref::<ListArray>(),
                any(4).downcast_ref::<StructArray>(),
            ) else {
                return Err(arrow_err("interaction"));
            };
            let allowed = analytics_column(consent);
            for i in 0..b.num_rows() {
                // exposures and impressions are written by the server, not sent by the
                // listener's client: they say nothing about consent
                if !matches!(kind.value(i), "exposure" | "impression") {
                    note(
                        user.value(i),
                        ts.value(i),
                        allowed.is_some_and(|a| a.is_valid(i) && a.value(i)),
                    );
                }
                match kind.value(i) {
                    "save" => saves.push((user.value(i).to_owned(), ts.value(i))),
                    "exposure" => {
                        let list = exps.value(i);
                        let Some(s) = list.as_any().downcast_ref::<StructArray>() else {
                            return Err(arrow_err("experiments"));
                        };
                        let (Some(id), Some(variant)) = (
                            s.column(0).as_any().downcast_ref::<StringArray>(),
                            s.column(1).as_any().downcast_ref::<StringArray>(),
                        ) else {
                            return Err(arrow_err("experiments"));
                        };
                        for j in 0..s.len() {
                            if id.value(j) != experiment {
                                continue;
                            }
                            let entry = first
                                .entry(user.value(i).to_owned())
                                .or_insert((ts.value(i), variant.value(j).to_owned()));
                            if ts.value(i) < entry.0 {
                                *entry = (ts.value(i), variant.value(j).to_owned());
                            }
                        }
                    }
                    _ => {}
                }
            }
            Ok(())
        },
    )?;
    let window = i64::from(pre_days) * MS_PER_DAY;
    let mut out: HashMap<String, Outcome> = first
        .into_iter()
        .map(|(u, (at, variant))| {
            (
                u,
                Outcome {
                    variant,
                    exposed_ms: at,
                    pre: Listening::default(),
                    post: Listening::default(),
                },
            )
        })
        .collect();
    fn period(o: &mut Outcome, ts: i64, window: i64) -> Option<&mut Listening> {
        if ts >= o.exposed_ms {
            Some(&mut o.post)
        } else if ts >= o.exposed_ms - window {
            Some(&mut o.pre)
        } else {
            None
        }
    }
    ingestor.log(Table::Playback).scan(
        Some(&[
            "user_id",
            "ms_played",
            "ts_start_ms",
            "private_session",
            "consent",
        ]),
        |b| {
            let any = |i: usize| b.column(i).as_any();
            let (Some(user), Some(ms), Some(ts), Some(_private), Some(consent)) = (
                any(0).downcast_ref::<StringArray>(),
                any(1).downcast_ref::<UInt32Array>(),
                any(2).downcast_ref::<Int64Array>(),
                any(3).downcast_ref::<BooleanArray>(),
                any(4).downcast_ref::<StructArray>(),
            ) else {
                return Err(arrow_err("playback"));
            };
            let allowed = analytics_column(consent);
            for i in 0..b.num_rows() {
                note(
                    user.value(i),
                    ts.value(i),
                    allowed.is_some_and(|a| a.is_valid(i) && a.value(i)),
                );
                let Some(o) = out.get_mut(user.value(i)) else {
                    continue;
                };
                if let Some(l) = period(o, ts.value(i), window) {
                    let played = f64::from(ms.value(i));
                    l.plays += 1.0;
                    l.minutes += played / 60_000.0;
                    if ms.value(i) >= encore_core::event::STREAM_THRESHOLD_MS {
                        l.streams += 1.0;
                    }
                }
            }
            Ok(())
        },
    )?;
    for (u, ts) in saves {
        if let Some(o) = out.get_mut(&u)
            && let Some(l) = period(o, ts, window)
        {
            l.saves += 1.0;
        }
    }
    // listeners whose newest event withheld analytics consent are not analysed
    out.retain(|u, _| analytics.get(u).is_none_or(|(_, allowed)| *allowed));
    Ok(out)
}

fn analytics_column(consent: &StructArray) -> Option<&BooleanArray> {
    consent
        .column_by_name("analytics")
        .and_then(|c| c.as_any().downcast_ref::<BooleanArray>())
}
