//! `encore-index`: top-k retrieval by inner product over item vectors.
//!
//! Two implementations behind one [`Retriever`]:
//! - **exact**: every item scored with the tiled SIMD kernel of `encore-models`, then a partial
//!   selection; right for catalogues up to a few hundred thousand items, where one query costs
//!   well under a millisecond;
//! - **HNSW** (usearch, inner-product metric) for larger catalogues. Items are inserted in
//!   descending order of vector norm: maximum inner product search favours long vectors, and
//!   inserting them first makes them the graph's well-connected hubs (inserting in id order is
//!   the pitfall that leaves Voyager at recall 0.5 on ALS factors). Indexes save to a file and
//!   load either into memory or as a read-only memory map (`view`).
//!
//! [`Choice::Auto`] picks exact below a catalogue size and HNSW above it.

use encore_models::recommend::TopK;
use encore_models::scoring::{ItemTiles, dot};
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("HNSW index: {0}")]
    Hnsw(String),
    #[error("vectors of width {width} do not fill {len} floats")]
    Shape { width: usize, len: usize },
}

impl encore_core::Coded for IndexError {
    fn code(&self) -> encore_core::ErrorCode {
        match self {
            IndexError::Hnsw(_) => encore_core::ErrorCode::Internal,
            IndexError::Shape { .. } => encore_core::ErrorCode::InvalidArgument,
        }
    }
}

fn hnsw_err(e: impl std::fmt::Display) -> IndexError {
    IndexError::Hnsw(e.to_string())
}

/// HNSW construction and search widths.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HnswParams {
    /// graph degree (M)
    pub connectivity: usize,
    /// candidate list while inserting (ef_construction)
    pub expansion_add: usize,
    /// candidate list while searching (ef); raised to k when smaller
    pub expansion_search: usize,
}

impl Default for HnswParams {
    fn default() -> Self {
        HnswParams {
            connectivity: 24,
            expansion_add: 200,
            expansion_search: 128,
        }
    }
}

/// Which retrieval to build.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Choice {
    Exact,
    Hnsw(HnswParams),
    /// exact up to `threshold` items, HNSW with default parameters above
    Auto {
        threshold: usize,
    },
}

impl Default for Choice {
    fn default() -> Self {
        Choice::Auto { threshold: 250_000 }
    }
}

pub struct Retriever {
    width: usize,
    items: usize,
    tiles: ItemTiles,
    hnsw: Option<usearch::Index>,
}

impl std::fmt::Debug for Retriever {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Retriever")
            .field("kind", &self.kind())
            .field("items", &self.items)
            .field("width", &self.width)
            .finish()
    }
}

fn options(width: usize, p: &HnswParams) -> usearch::IndexOptions {
    usearch::IndexOptions {
        dimensions: width,
        metric: usearch::MetricKind::IP,
        quantization: usearch::ScalarKind::F32,
        connectivity: p.connectivity,
        expansion_add: p.expansion_add,
        expansion_search: p.expansion_search,
        multi: false,
    }
}

impl Retriever {
    /// Builds over row-major `vectors` of `width` (item i = row i).
    pub fn build(vectors: &[f32], width: usize, choice: Choice) -> Result<Retriever, IndexError> {
        if width == 0 || !vectors.len().is_multiple_of(width) {
            return Err(IndexError::Shape {
                width,
                len: vectors.len(),
            });
        }
        let items = vectors.len() / width;
        let params = match choice {
            Choice::Exact => None,
            Choice::Hnsw(p) => Some(p),
            Choice::Auto { threshold } => (items > threshold).then(HnswParams::default),
        };
        let hnsw = match params {
            None => None,
            Some(p) => Some(build_hnsw(vectors, width, &p)?),
        };
        Ok(Retriever {
            width,
            items,
            tiles: ItemTiles::new(vectors, width),
            hnsw,
        })
    }

    pub fn kind(&self) -> &'static str {
        if self.hnsw.is_some() { "hnsw" } else { "exact" }
    }

    pub fn items(&self) -> usize {
        self.items
    }

    /// The tiled vectors, for scoring every item at once.
    pub fn tiles(&self) -> &ItemTiles {
        &self.tiles
    }

    /// Sets the HNSW search width (no effect on exact retrieval).
    pub fn set_expansion_search(&self, ef: usize) {
        if let Some(h) = &self.hnsw {
            h.change_expansion_search(ef);
        }
    }

    /// The graph's top `k` by `find`, as (inner product, item); `None` when there is no graph
    /// or it failed.
    fn graph_search(
        &self,
        k: usize,
        find: &dyn Fn(&usearch::Index) -> Option<usearch::ffi::Matches>,
    ) -> Option<Vec<(f32, u32)>> {
        let h = self.hnsw.as_ref()?;
        if h.expansion_search() < k {
            h.change_expansion_search(k);
        }
        let m = find(h)?;
        // usearch's inner-product distance is 1 - dot
        Some(
            m.keys
                .iter()
                .zip(&m.distances)
                .map(|(&key, &d)| (1.0 - d, key as u32))
                .collect(),
        )
    }

    /// The `k` items with the largest inner product with `query` for which `keep(item)` holds,
    /// best first, as (score, item).
    pub fn search(&self, query: &[f32], k: usize, keep: &dyn Fn(u32) -> bool) -> Vec<(f32, u32)> {
        self.graph_search(k, &|h| {
            h.filtered_search(query, k, |key| keep(key as u32)).ok()
        })
        .unwrap_or_else(|| self.exact(query, k, keep))
    }

    /// As [`Retriever::search`] with nothing filtered out.
    pub fn search_all(&self, query: &[f32], k: usize) -> Vec<(f32, u32)> {
        self.graph_search(k, &|h| h.search(query, k).ok())
            .unwrap_or_else(|| self.exact(query, k, &|_| true))
    }

    /// Exact search, whatever was built.
    pub fn exact(&self, query: &[f32], k: usize, keep: &dyn Fn(u32) -> bool) -> Vec<(f32, u32)> {
        let mut scores = vec![0f32; self.items];
        self.tiles.scores(query, &mut scores);
        for (i, s) in scores.iter_mut().enumerate() {
            if !keep(i as u32) {
                *s = f32::NEG_INFINITY;
            }
        }
        let mut top = TopK::new(k);
        top.offer(&scores, 0);
        top.into_scored()
    }

    /// Writes the HNSW graph (with its vectors) to `path`.
    pub fn save_hnsw(&self, path: &Path) -> Result<(), IndexError> {
        let h = self
            .hnsw
            .as_ref()
            .ok_or_else(|| IndexError::Hnsw("this retriever is exact: nothing to save".into()))?;
        h.save(&path.to_string_lossy()).map_err(hnsw_err)
    }

    /// An HNSW retriever from a saved graph: read into memory, or mapped read-only (`view`,
    /// nothing copied: the OS pages it in as queries touch it). `vectors` are the same item
    /// vectors, for exact fallbacks.
    pub fn load_hnsw(
        path: &Path,
        vectors: &[f32],
        width: usize,
        view: bool,
    ) -> Result<Retriever, IndexError> {
        let name = path.to_string_lossy();
        let index = if view {
            usearch::Index::restore_view(&name)
        } else {
            usearch::Index::restore(&name)
        }
        .map_err(|e| IndexError::Hnsw(format!("{}: {e}", path.display())))?;
        if index.dimensions() != width || index.size() * width != vectors.len() {
            return Err(IndexError::Hnsw(format!(
                "{} holds {} vectors of width {}, expected {} of width {width}",
                path.display(),
                index.size(),
                index.dimensions(),
                vectors.len() / width.max(1)
            )));
        }
        Ok(Retriever {
            width,
            items: vectors.len() / width,
            tiles: ItemTiles::new(vectors, width),
            hnsw: Some(index),
        })
    }
}

fn build_hnsw(vectors: &[f32], width: usize, p: &HnswParams) -> Result<usearch::Index, IndexError> {
    let items = vectors.len() / width;
    let index = usearch::Index::new(&options(width, p)).map_err(hnsw_err)?;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    index
        .reserve_capacity_and_threads(items, threads)
        .map_err(hnsw_err)?;
    let row = |i: usize| &vectors[i * width..(i + 1) * width];
    let norms: Vec<f32> = (0..items).map(|i| dot(row(i), row(i))).collect();
    let mut order: Vec<usize> = (0..items).collect();
    order.sort_by(|&a, &b| norms[b].total_cmp(&norms[a]).then(a.cmp(&b)));
    // the longest vectors first, one by one (they become the hubs); the rest in parallel
    let head = order.len().min(1_000);
    for &i in &order[..head] {
        index.add(i as u64, row(i)).map_err(hnsw_err)?;
    }
    let rest = &order[head..];
    let failure = std::sync::Mutex::new(None);
    std::thread::scope(|s| {
        for t in 0..threads {
            let (index, failure) = (&index, &failure);
            s.spawn(move || {
                for &i in rest.iter().skip(t).step_by(threads) {
                    if let Err(e) = index.add(i as u64, row(i)) {
                        *failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
                        return;
                    }
                }
            });
        }
    });
    if let Some(e) = failure.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(IndexError::Hnsw(e));
    }
    Ok(index)
}

/// Mean recall@k of `approx` against `exact` result lists.
pub fn recall(approx: &[Vec<u32>], exact: &[Vec<u32>]) -> f64 {
    let mut sum = 0.0;
    for (a, e) in approx.iter().zip(exact) {
        if e.is_empty() {
            continue;
        }
        let hits = a.iter().filter(|x| e.contains(x)).count();
        sum += hits as f64 / e.len() as f64;
    }
    sum / exact.len().max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Clustered vectors with varied norms, like ALS item factors.
    fn vectors(n: usize, w: usize, seed: u64) -> Vec<f32> {
        let mut s = seed;
        let mut next = move || {
            s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
            (encore_models::split::splitmix64(s) >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        };
        let centers: Vec<Vec<f32>> = (0..32).map(|_| (0..w).map(|_| next()).collect()).collect();
        let mut out = Vec::with_capacity(n * w);
        for i in 0..n {
            let c = &centers[i % 32];
            let scale = 0.2 + (next() + 0.5) * 2.0;
            out.extend(c.iter().map(|x| scale * (x + 0.3 * next())));
        }
        out
    }

    #[test]
    fn hnsw_finds_what_exact_finds_and_survives_save_and_view() {
        let (n, w) = (5_000, 16);
        let items = vectors(n, w, 1);
        let queries = vectors(200, w, 2);
        let hnsw = Retriever::build(&items, w, Choice::Hnsw(HnswParams::default())).unwrap();
        assert_eq!(hnsw.kind(), "hnsw");
        let keep_odd = |i: u32| i % 2 == 1;
        let mut approx = Vec::new();
        let mut exact = Vec::new();
        for q in queries.chunks(w) {
            let a = hnsw.search(q, 10, &keep_odd);
            assert!(a.iter().all(|&(_, i)| i % 2 == 1), "filter not applied");
            assert!(a.windows(2).all(|p| p[0].0 >= p[1].0 - 1e-5));
            approx.push(a.iter().map(|x| x.1).collect::<Vec<_>>());
            exact.push(hnsw.exact(q, 10, &keep_odd).iter().map(|x| x.1).collect());
        }
        let r = recall(&approx, &exact);
        assert!(r >= 0.95, "recall@10 {r}");

        let dir = std::env::temp_dir().join(format!("encore-index-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("items.usearch");
        hnsw.save_hnsw(&path).unwrap();
        for view in [false, true] {
            let loaded = Retriever::load_hnsw(&path, &items, w, view).unwrap();
            let q = &queries[..w];
            assert_eq!(
                loaded.search(q, 10, &|_| true),
                hnsw.search(q, 10, &|_| true)
            );
        }
        assert!(Retriever::load_hnsw(&path, &items[..w * 10], w, true).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn auto_is_exact_for_small_catalogues() {
        let items = vectors(300, 8, 3);
        let r = Retriever::build(&items, 8, Choice::default()).unwrap();
        assert_eq!(r.kind(), "exact");
        let top = r.search(&items[..8], 5, &|i| i != 0);
        assert_eq!(top.len(), 5);
        assert!(top.iter().all(|&(_, i)| i != 0));
        assert!(Retriever::build(&items[..7], 8, Choice::Exact).is_err());
    }
}
