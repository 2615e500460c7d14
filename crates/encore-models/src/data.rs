//! Interaction data for training and evaluation: dense indices over the original ids, and CSR
//! matrices (users x items) of weights.

use crate::ModelError;
use crate::split::Triple;
use std::path::Path;

/// Rows of `indptr`/`indices`/`values` per user; columns are item indices, sorted.
#[derive(Debug, Clone, Default)]
pub struct Csr {
    pub n_rows: usize,
    pub n_cols: usize,
    pub indptr: Vec<usize>,
    pub indices: Vec<u32>,
    pub values: Vec<f32>,
}

impl Csr {
    /// Builds from (row, col, value) entries; duplicates are summed.
    pub fn from_entries(n_rows: usize, n_cols: usize, mut entries: Vec<(u32, u32, f32)>) -> Csr {
        entries.sort_by_key(|e| (e.0, e.1));
        let mut m = Csr {
            n_rows,
            n_cols,
            indptr: vec![0; n_rows + 1],
            ..Csr::default()
        };
        let mut prev = None;
        for (r, c, v) in entries {
            if prev == Some((r, c)) {
                if let Some(last) = m.values.last_mut() {
                    *last += v;
                }
                continue;
            }
            m.indices.push(c);
            m.values.push(v);
            m.indptr[r as usize + 1] += 1;
            prev = Some((r, c));
        }
        for r in 0..n_rows {
            m.indptr[r + 1] += m.indptr[r];
        }
        m
    }

    pub fn row(&self, r: usize) -> (&[u32], &[f32]) {
        let (a, b) = (self.indptr[r], self.indptr[r + 1]);
        (&self.indices[a..b], &self.values[a..b])
    }

    pub fn nnz(&self) -> usize {
        self.indices.len()
    }

    /// The transpose (items x users).
    pub fn transpose(&self) -> Csr {
        let mut entries = Vec::with_capacity(self.nnz());
        for r in 0..self.n_rows {
            let (cols, vals) = self.row(r);
            for (c, v) in cols.iter().zip(vals) {
                entries.push((*c, r as u32, *v));
            }
        }
        Csr::from_entries(self.n_cols, self.n_rows, entries)
    }

    /// A copy with every value `v` replaced by `f(v)`.
    pub fn map_values(&self, f: impl Fn(f32) -> f32) -> Csr {
        Csr {
            values: self.values.iter().map(|v| f(*v)).collect(),
            ..self.clone()
        }
    }
}

/// A train/test pair over one index space: users and items are the sorted distinct ids of both.
#[derive(Debug, Clone)]
pub struct Dataset {
    pub users: Vec<u64>,
    pub items: Vec<u64>,
    /// weights (play counts) of training pairs
    pub train: Csr,
    /// 1.0 for every test pair
    pub test: Csr,
}

impl Dataset {
    pub fn new(train: &[Triple], test: &[Triple]) -> Dataset {
        let mut users: Vec<u64> = train.iter().chain(test).map(|t| t.user).collect();
        let mut items: Vec<u64> = train.iter().chain(test).map(|t| t.item).collect();
        users.sort_unstable();
        users.dedup();
        items.sort_unstable();
        items.dedup();
        let index = |ids: &[u64], id: u64| ids.binary_search(&id).unwrap_or(0) as u32;
        let entries = |rows: &[Triple], one: bool| {
            rows.iter()
                .map(|t| {
                    (
                        index(&users, t.user),
                        index(&items, t.item),
                        if one { 1.0 } else { t.weight as f32 },
                    )
                })
                .collect::<Vec<_>>()
        };
        let (nu, ni) = (users.len(), items.len());
        Dataset {
            train: Csr::from_entries(nu, ni, entries(train, false)),
            test: Csr::from_entries(nu, ni, entries(test, true)),
            users,
            items,
        }
    }

    /// Users with at least one test item.
    pub fn eval_users(&self) -> Vec<usize> {
        (0..self.users.len())
            .filter(|&u| self.test.indptr[u + 1] > self.test.indptr[u])
            .collect()
    }
}

/// Reads the split TSV format: a header line (`userID<TAB>artistID<TAB>weight`), then numeric
/// rows. CRLF line ends are fine.
pub fn read_tsv(path: &Path) -> Result<Vec<Triple>, ModelError> {
    let text = std::fs::read_to_string(path).map_err(|e| ModelError::Io {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate().skip(1) {
        let line = line.trim_end_matches('\r');
        if line.is_empty() {
            continue;
        }
        let bad = |what: &str| ModelError::Malformed {
            path: path.to_path_buf(),
            line: n + 1,
            message: format!("{what} in {line:?}, expected userID<TAB>itemID<TAB>weight"),
        };
        let mut parts = line.split('\t');
        let user = parts
            .next()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad("bad user id"))?;
        let item = parts
            .next()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad("bad item id"))?;
        let weight = parts
            .next()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad("bad weight"))?;
        out.push(Triple { user, item, weight });
    }
    Ok(out)
}

/// Writes the split TSV format, sorted by user then item.
pub fn write_tsv(rows: &[Triple]) -> String {
    let mut out = String::from("userID\tartistID\tweight\n");
    for r in rows {
        out.push_str(&format!("{}\t{}\t{}\n", r.user, r.item, r.weight));
    }
    out
}
