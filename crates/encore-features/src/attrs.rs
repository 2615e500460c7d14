//! Attribute views: values read from a table rather than aggregated from events, from the
//! imported catalog (an item's duration or popularity, an artist's number of genres) or from a
//! Parquet or CSV file (a listener's plan, a track's audio features).
//!
//! Per entity, the table gives rows of values, each in effect from its time (a file's
//! `timestamp` column; always, without one or from the catalog). As of `t`, a view's values are
//! those of the entity's newest row at or before `t`: point in time, the same rule offline and
//! online. A row older than the view's TTL reads as expired; no row, as missing.

use crate::compute::Status;
use crate::def::{Agg, Source, View};
use crate::offline::{EntityRows, OfflineError, ViewColumns};
use std::collections::HashMap;

/// A row: when it takes effect (ms since the epoch) and a value per feature.
pub type Row = (i64, Vec<Option<f64>>);

/// An attribute view's rows by entity key (key fields joined by U+001F), each sorted by time.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct AttrTable {
    pub rows: HashMap<String, Vec<Row>>,
}

fn input(message: String) -> OfflineError {
    OfflineError::Input(message)
}

/// The attribute names of `view`'s features.
fn columns(view: &View) -> Vec<&str> {
    view.features
        .iter()
        .map(|f| match &f.agg {
            Agg::Value(c) => c.as_str(),
            _ => f.name.as_str(),
        })
        .collect()
}

/// A catalog value as a number: numbers as they are, booleans as 0 or 1, lists as their length.
fn catalog_number(v: &serde_json::Value) -> Option<f64> {
    match v {
        serde_json::Value::Number(n) => n.as_f64(),
        serde_json::Value::Bool(b) => Some(f64::from(u8::from(*b))),
        serde_json::Value::Array(a) => Some(a.len() as f64),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

impl AttrTable {
    /// The view's attributes from catalog records of its entity (`(id, record)`), in effect
    /// from the epoch. An attribute no record has is an error naming it.
    pub fn from_catalog(
        view: &View,
        records: &[(String, serde_json::Value)],
    ) -> Result<AttrTable, OfflineError> {
        let cols = columns(view);
        if !records.is_empty() {
            for (f, c) in view.features.iter().zip(&cols) {
                if !records.iter().any(|(_, r)| r.get(*c).is_some()) {
                    let some: Vec<&str> = records[0]
                        .1
                        .as_object()
                        .map(|o| o.keys().map(String::as_str).collect())
                        .unwrap_or_default();
                    return Err(input(format!(
                        "view {}: feature {}: no catalog record has the attribute {c:?} (they have {})",
                        view.name,
                        f.name,
                        some.join(", ")
                    )));
                }
            }
        }
        let mut t = AttrTable::default();
        for (id, r) in records {
            let values = cols
                .iter()
                .map(|c| r.get(*c).and_then(catalog_number))
                .collect();
            t.rows.insert(id.clone(), vec![(0, values)]);
        }
        Ok(t)
    }

    /// The view's rows from its file source (`.parquet` or `.csv`): the entity's key columns,
    /// the features' columns and, when the view names one, the timestamp column.
    pub fn from_file(view: &View) -> Result<AttrTable, OfflineError> {
        let Source::File { path, timestamp } = &view.source else {
            return Err(input(format!("view {} has no file source", view.name)));
        };
        let mut need: Vec<&str> = view.kind.keys().to_vec();
        need.extend(columns(view));
        if let Some(ts) = timestamp {
            need.push(ts);
        }
        let table = if path.ends_with(".csv") {
            read_csv(path, &need)?
        } else {
            read_parquet(path, &need)?
        };
        let nkeys = view.kind.keys().len();
        let nvals = view.features.len();
        let mut t = AttrTable::default();
        for (line, rec) in table {
            let key = rec[..nkeys]
                .iter()
                .map(|k| k.as_deref().unwrap_or(""))
                .collect::<Vec<_>>()
                .join("\u{1f}");
            let number = |i: usize| -> Result<Option<f64>, OfflineError> {
                match rec[i].as_deref().map(str::trim) {
                    None | Some("") => Ok(None),
                    Some("true") => Ok(Some(1.0)),
                    Some("false") => Ok(Some(0.0)),
                    Some(s) => s.parse().map(Some).map_err(|_| {
                        input(format!(
                            "{path}:{line}: column {}: {s:?} is not a number",
                            need[i]
                        ))
                    }),
                }
            };
            let values = (nkeys..nkeys + nvals)
                .map(number)
                .collect::<Result<Vec<_>, _>>()?;
            let ts = match timestamp {
                None => 0,
                Some(c) => match number(nkeys + nvals)? {
                    Some(x) if x.fract() == 0.0 => x as i64,
                    _ => {
                        return Err(input(format!(
                            "{path}:{line}: column {c}: expected a time in ms since the epoch"
                        )));
                    }
                },
            };
            t.rows.entry(key).or_default().push((ts, values));
        }
        for rows in t.rows.values_mut() {
            rows.sort_by_key(|r| r.0);
        }
        Ok(t)
    }

    /// `view` for each entity row: the newest row of the entity at or before the row's time.
    pub fn compute(&self, view: &View, rows: &EntityRows) -> Result<ViewColumns, OfflineError> {
        let cols = rows.key_columns(view)?;
        let n = rows.ts.len();
        let mut values = vec![vec![None; n]; view.features.len()];
        let mut status = vec![Status::Missing; n];
        let mut key = String::new();
        for i in 0..n {
            key.clear();
            for (j, &c) in cols.iter().enumerate() {
                if j > 0 {
                    key.push('\u{1f}');
                }
                key.push_str(&rows.keys[i][c]);
            }
            let (st, v) = as_of(
                view,
                self.rows.get(&key).map_or(&[], Vec::as_slice),
                rows.ts[i],
            );
            status[i] = st;
            if let Some(v) = v {
                for (f, x) in v.iter().enumerate() {
                    values[f][i] = *x;
                }
            }
        }
        Ok(ViewColumns { values, status })
    }
}

/// The view's status and values as of `t` from an entity's rows (sorted by time).
pub fn as_of<'a>(view: &View, rows: &'a [Row], t: i64) -> (Status, Option<&'a [Option<f64>]>) {
    let hi = rows.partition_point(|r| r.0 <= t);
    match hi {
        0 => (Status::Missing, None),
        h if rows[h - 1].0 <= t.saturating_sub(view.ttl_ms) => (Status::Expired, None),
        h => (Status::Live, Some(&rows[h - 1].1)),
    }
}

/// Records of a table as text cells in the order of `need`, with their line (CSV) or row
/// number (Parquet, from 1).
type Records = Vec<(usize, Vec<Option<String>>)>;

fn read_csv(path: &str, need: &[&str]) -> Result<Records, OfflineError> {
    let mut r = csv::ReaderBuilder::new()
        .from_path(path)
        .map_err(|e| input(format!("{path}: {e}")))?;
    let header: Vec<String> = r
        .headers()
        .map_err(|e| input(format!("{path}:1: {e}")))?
        .iter()
        .map(|h| h.trim().to_owned())
        .collect();
    let idx = need
        .iter()
        .map(|c| {
            header.iter().position(|h| h == c).ok_or_else(|| {
                input(format!(
                    "{path}:1: no column {c:?} (the view needs {})",
                    need.join(", ")
                ))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut out = Vec::new();
    for (i, rec) in r.records().enumerate() {
        let line = i + 2;
        let rec = rec.map_err(|e| input(format!("{path}:{line}: {e}")))?;
        out.push((
            line,
            idx.iter().map(|&j| rec.get(j).map(str::to_owned)).collect(),
        ));
    }
    Ok(out)
}

fn read_parquet(path: &str, need: &[&str]) -> Result<Records, OfflineError> {
    use arrow::array::{Array, StringArray};
    use arrow::datatypes::DataType;
    let file = std::fs::File::open(path).map_err(|e| input(format!("{path}: {e}")))?;
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| input(format!("{path}: {e}")))?
        .build()
        .map_err(|e| input(format!("{path}: {e}")))?;
    let mut out = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| input(format!("{path}: {e}")))?;
        let mut cols = Vec::with_capacity(need.len());
        for c in need {
            let col = batch.column_by_name(c).ok_or_else(|| {
                input(format!(
                    "{path}: no column {c:?} (the view needs {})",
                    need.join(", ")
                ))
            })?;
            let text = arrow::compute::cast(col, &DataType::Utf8)
                .map_err(|e| input(format!("{path}: column {c}: {e}")))?;
            cols.push(text);
        }
        let cols: Vec<&StringArray> = cols
            .iter()
            .map(|a| {
                a.as_any()
                    .downcast_ref::<StringArray>()
                    .expect("cast to Utf8")
            })
            .collect();
        for i in 0..batch.num_rows() {
            let row = cols
                .iter()
                .map(|a| (!a.is_null(i)).then(|| a.value(i).to_owned()))
                .collect();
            out.push((out.len() + 1, row));
        }
    }
    Ok(out)
}
