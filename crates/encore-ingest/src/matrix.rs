//! The user x item interaction matrix that training reads: CSR rows per user, with the number of
//! plays and the last play time per (user, item). Built from the playback log (plays that count
//! for taste: not private, not taste-excluded, with personalization consent) and from aggregated
//! play counts imported as interactions.

use crate::error::IngestError;
use crate::ingest::Ingestor;
use crate::table::Table;
use arrow::array::{
    Array, BooleanArray, Int64Array, StringArray, StructArray, UInt32Array, UInt64Array,
};
use encore_storage::StorageError;
use rayon::prelude::*;
use serde::Serialize;
use std::collections::HashMap;

/// The listeners whose newest play (by end time) came without personalization consent, with
/// that play's end time: they withdrew it. At equal times a withdrawal wins.
pub fn withdrawn_personalization(ingestor: &Ingestor) -> Result<Vec<(String, i64)>, StorageError> {
    let mut newest: HashMap<String, (i64, bool)> = HashMap::new();
    let cols = ["user_id", "ts_end_ms", "consent"];
    ingestor.log(Table::Playback).scan(Some(&cols), |b| {
        let col = |n: &str| b.column_by_name(n).map(|c| c.as_any());
        let (Some(user), Some(ts), Some(consent)) = (
            col("user_id").and_then(|c| c.downcast_ref::<StringArray>()),
            col("ts_end_ms").and_then(|c| c.downcast_ref::<Int64Array>()),
            col("consent").and_then(|c| c.downcast_ref::<StructArray>()),
        ) else {
            return Err(StorageError::Arrow {
                message: "playback log: unexpected user_id, ts_end_ms or consent columns".into(),
            });
        };
        let personal = consent
            .column_by_name("personalization")
            .and_then(|c| c.as_any().downcast_ref::<BooleanArray>());
        for i in 0..b.num_rows() {
            let allowed = personal.is_some_and(|p| p.is_valid(i) && p.value(i));
            let t = ts.value(i);
            match newest.get_mut(user.value(i)) {
                Some(e) => {
                    if t > e.0 || (t == e.0 && !allowed) {
                        *e = (t, allowed);
                    }
                }
                None => {
                    newest.insert(user.value(i).to_owned(), (t, allowed));
                }
            }
        }
        Ok(())
    })?;
    let mut out: Vec<(String, i64)> = newest
        .into_iter()
        .filter(|(_, (_, allowed))| !allowed)
        .map(|(u, (t, _))| (u, t))
        .collect();
    out.sort_unstable();
    Ok(out)
}

/// Which plays count.
#[derive(Debug, Clone, Copy)]
pub struct MatrixOptions {
    /// plays shorter than this are ignored (30 000 keeps streams only; 0 keeps every play)
    pub min_ms_played: u32,
    /// add `play_count` interactions (imported aggregates) to the counts
    pub include_play_counts: bool,
    /// only plays that started before this time (epoch ms), for time-based splits
    pub until_ms: Option<i64>,
}

impl Default for MatrixOptions {
    fn default() -> Self {
        MatrixOptions {
            min_ms_played: encore_core::event::STREAM_THRESHOLD_MS,
            include_play_counts: true,
            until_ms: None,
        }
    }
}

/// Compressed sparse rows: the items of user `u` are `indices[indptr[u]..indptr[u + 1]]`,
/// sorted, with their play counts and last play times alongside.
#[derive(Debug, Clone, Default, Serialize)]
pub struct InteractionMatrix {
    pub users: Vec<String>,
    pub items: Vec<String>,
    pub indptr: Vec<u64>,
    pub indices: Vec<u32>,
    pub plays: Vec<u32>,
    pub last_ts_ms: Vec<i64>,
    /// first play time per (user, item)
    pub first_ts_ms: Vec<i64>,
    /// (user, item, plays) of plays shorter than `min_ms_played` (skips, with the default)
    /// where the user and the item are in the matrix, sorted: serving never recommends back
    /// what a listener skipped
    pub skipped: Vec<(u32, u32, u32)>,
}

impl InteractionMatrix {
    pub fn nnz(&self) -> usize {
        self.indices.len()
    }

    /// (item index, plays) of user `u`.
    pub fn row(&self, u: usize) -> impl Iterator<Item = (u32, u32)> + '_ {
        let (a, b) = (self.indptr[u] as usize, self.indptr[u + 1] as usize);
        self.indices[a..b]
            .iter()
            .copied()
            .zip(self.plays[a..b].iter().copied())
    }
}

#[derive(Default)]
struct Interner {
    ids: HashMap<Box<str>, u32>,
    names: Vec<String>,
}

impl Interner {
    fn get(&mut self, s: &str) -> u32 {
        if let Some(&i) = self.ids.get(s) {
            return i;
        }
        let i = self.names.len() as u32;
        self.ids.insert(s.into(), i);
        self.names.push(s.to_owned());
        i
    }
}

/// Builds the matrix from the log.
pub fn build_matrix(
    ingestor: &Ingestor,
    options: MatrixOptions,
) -> Result<InteractionMatrix, IngestError> {
    let mut users = Interner::default();
    let mut items = Interner::default();
    // (user, item, plays, ts) triples
    let mut triples: Vec<(u32, u32, u32, i64)> = Vec::new();
    // shorter plays, interned apart so that an id only ever skipped does not enter the matrix
    let (mut short_users, mut short_items) = (Interner::default(), Interner::default());
    let mut short: Vec<(u32, u32)> = Vec::new();
    let cols = [
        "user_id",
        "item_id",
        "ms_played",
        "ts_start_ms",
        "private_session",
        "taste_excluded",
        "consent",
    ];
    ingestor.log(Table::Playback).scan(Some(&cols), |b| {
        let any = |i: usize| b.column(i).as_any();
        let (
            Some(user),
            Some(item),
            Some(ms),
            Some(ts),
            Some(private),
            Some(excluded),
            Some(consent),
        ) = (
            any(0).downcast_ref::<StringArray>(),
            any(1).downcast_ref::<StringArray>(),
            any(2).downcast_ref::<UInt32Array>(),
            any(3).downcast_ref::<Int64Array>(),
            any(4).downcast_ref::<BooleanArray>(),
            any(5).downcast_ref::<BooleanArray>(),
            any(6).downcast_ref::<StructArray>(),
        )
        else {
            return Err(StorageError::Arrow {
                message: "unexpected playback column types".into(),
            });
        };
        let personalization = consent.column(0).as_any().downcast_ref::<BooleanArray>();
        for i in 0..b.num_rows() {
            let allowed = !private.value(i)
                && !excluded.value(i)
                && personalization.is_some_and(|p| p.value(i));
            let too_late = options.until_ms.is_some_and(|until| ts.value(i) >= until);
            if !allowed || too_late {
                continue;
            }
            if ms.value(i) < options.min_ms_played {
                short.push((
                    short_users.get(user.value(i)),
                    short_items.get(item.value(i)),
                ));
                continue;
            }
            triples.push((
                users.get(user.value(i)),
                items.get(item.value(i)),
                1,
                ts.value(i),
            ));
        }
        Ok(())
    })?;
    if options.include_play_counts {
        ingestor.log(Table::Interaction).scan(
            Some(&["user_id", "item_id", "kind", "count", "ts_ms"]),
            |b| {
                let any = |i: usize| b.column(i).as_any();
                let (Some(user), Some(item), Some(kind), Some(count), Some(ts)) = (
                    any(0).downcast_ref::<StringArray>(),
                    any(1).downcast_ref::<StringArray>(),
                    any(2).downcast_ref::<StringArray>(),
                    any(3).downcast_ref::<UInt64Array>(),
                    any(4).downcast_ref::<Int64Array>(),
                ) else {
                    return Err(StorageError::Arrow {
                        message: "unexpected interaction column types".into(),
                    });
                };
                for i in 0..b.num_rows() {
                    if kind.value(i) == "play_count" && !item.is_null(i) && !count.is_null(i) {
                        let plays = u32::try_from(count.value(i)).unwrap_or(u32::MAX);
                        triples.push((
                            users.get(user.value(i)),
                            items.get(item.value(i)),
                            plays,
                            ts.value(i),
                        ));
                    }
                }
                Ok(())
            },
        )?;
    }
    triples.par_sort_unstable_by_key(|t| (t.0, t.1));
    let n_users = users.names.len();
    let mut m = InteractionMatrix {
        indptr: vec![0; n_users + 1],
        ..InteractionMatrix::default()
    };
    let mut counts = vec![0u64; n_users];
    let mut prev = None;
    for (u, i, plays, ts) in triples {
        if prev == Some((u, i)) {
            let k = m.indices.len() - 1;
            m.plays[k] = m.plays[k].saturating_add(plays);
            m.last_ts_ms[k] = m.last_ts_ms[k].max(ts);
            m.first_ts_ms[k] = m.first_ts_ms[k].min(ts);
        } else {
            m.indices.push(i);
            m.plays.push(plays);
            m.last_ts_ms.push(ts);
            m.first_ts_ms.push(ts);
            counts[u as usize] += 1;
            prev = Some((u, i));
        }
    }
    for (u, count) in counts.iter().enumerate() {
        m.indptr[u + 1] = m.indptr[u] + count;
    }
    let user_of: Vec<Option<u32>> = short_users
        .names
        .iter()
        .map(|n| users.ids.get(n.as_str()).copied())
        .collect();
    let item_of: Vec<Option<u32>> = short_items
        .names
        .iter()
        .map(|n| items.ids.get(n.as_str()).copied())
        .collect();
    let mut pairs: Vec<(u32, u32)> = short
        .into_iter()
        .filter_map(|(u, i)| Some((user_of[u as usize]?, item_of[i as usize]?)))
        .collect();
    pairs.par_sort_unstable();
    for (u, i) in pairs {
        match m.skipped.last_mut() {
            Some(last) if (last.0, last.1) == (u, i) => last.2 = last.2.saturating_add(1),
            _ => m.skipped.push((u, i, 1)),
        }
    }
    m.users = users.names;
    m.items = items.names;
    Ok(m)
}
