//! A model loaded for serving: the artifact's vectors, indexes from ids to rows, what each
//! listener already played, popularity, and the catalogue facts the business rules need.

use encore_models::artifact::Artifact;
use encore_models::data::Csr;
use encore_models::model::{Model, ModelConfig};
use encore_models::scoring::{ItemTiles, dot};

use std::collections::HashMap;

/// What the rules need to know of an item.
#[derive(Debug, Clone, Default)]
pub struct ItemFacts {
    pub title: String,
    pub artist_id: Option<String>,
    pub explicit: bool,
}

/// How a query vector is made for someone, by model kind.
#[derive(Debug)]
enum FoldIn {
    /// least squares against the ALS item factors
    Als {
        solver: encore_models::als::FoldIn,
        confidence: encore_models::weighting::Confidence,
    },
    /// the mean of the items' vectors (BPR)
    Mean,
}

#[derive(Debug)]
pub struct ServingModel {
    pub name: String,
    pub version: u32,
    pub kind: &'static str,
    pub(crate) users: HashMap<String, u32>,
    pub(crate) item_ids: Vec<String>,
    pub(crate) items: HashMap<String, u32>,
    model: Model,
    pub(crate) width: usize,
    /// candidates by inner product: exact for small catalogues, HNSW for large ones
    pub(crate) retriever: encore_index::Retriever,
    /// item vectors scaled to unit length, tiled: cosine similarity between items
    pub(crate) unit_tiles: ItemTiles,
    pub(crate) unit: Vec<f32>,
    /// per user: the items they played in training, and how often
    pub(crate) seen: Csr,
    /// what each trained listener skipped (empty rows for an artifact without skips)
    pub(crate) skipped: Csr,
    /// items by distinct listeners, most first
    pub(crate) popular: Vec<u32>,
    /// per item: artist index (into `artists`) and facts
    pub(crate) artist_of: Vec<Option<u32>>,
    pub(crate) artists: Vec<String>,
    pub(crate) explicit: Vec<u32>,
    pub(crate) titles: Vec<String>,
    fold: FoldIn,
}

/// Why a model cannot be served.
#[derive(Debug, thiserror::Error)]
#[error("model {name} v{version} cannot be served: {reason}")]
pub struct NotServable {
    pub name: String,
    pub version: u32,
    pub reason: String,
}

impl encore_core::Coded for NotServable {
    fn code(&self) -> encore_core::ErrorCode {
        encore_core::ErrorCode::FailedPrecondition
    }
}

impl ServingModel {
    /// Prepares `artifact` (registered as `name` v`version`) for serving, with catalogue facts
    /// by item id (items without facts have no artist and are not explicit).
    pub fn new(
        name: &str,
        version: u32,
        artifact: Artifact,
        facts: &HashMap<String, ItemFacts>,
    ) -> Result<ServingModel, NotServable> {
        Self::with_retrieval(name, version, artifact, facts, Retrieval::default())
    }

    /// As [`ServingModel::new`], choosing the candidate retrieval; an HNSW graph is loaded
    /// (memory-mapped) from `retrieval.cache` when it is there, else built and saved there.
    pub fn with_retrieval(
        name: &str,
        version: u32,
        artifact: Artifact,
        facts: &HashMap<String, ItemFacts>,
        retrieval: Retrieval,
    ) -> Result<ServingModel, NotServable> {
        let refuse = |reason: String| NotServable {
            name: name.into(),
            version,
            reason,
        };
        let (item_vectors, width) = artifact
            .model
            .item_vectors()
            .map(|(v, w)| (v.to_vec(), w))
            .ok_or_else(|| {
                refuse(format!(
                    "a {} model has no item vectors; serve ALS or BPR",
                    artifact.model.kind()
                ))
            })?;
        let seen = artifact.interactions.clone().ok_or_else(|| {
            refuse("the artifact has no training interactions (retrain with this encore)".into())
        })?;
        let n_items = artifact.items.len();
        let mut unit = item_vectors.clone();
        for v in unit.chunks_mut(width) {
            let norm = dot(v, v).sqrt().max(1e-12);
            v.iter_mut().for_each(|x| *x /= norm);
        }
        let mut listeners = vec![0u32; n_items];
        for &i in &seen.indices {
            listeners[i as usize] += 1;
        }
        let mut popular: Vec<u32> = (0..n_items as u32).collect();
        popular.sort_by(|a, b| {
            listeners[*b as usize]
                .cmp(&listeners[*a as usize])
                .then(a.cmp(b))
        });
        let mut artist_index: HashMap<String, u32> = HashMap::new();
        let (mut artist_of, mut artists, mut explicit, mut titles) = (
            Vec::with_capacity(n_items),
            Vec::new(),
            Vec::new(),
            Vec::with_capacity(n_items),
        );
        for (i, id) in artifact.items.iter().enumerate() {
            let f = facts.get(id);
            artist_of.push(f.and_then(|f| f.artist_id.as_ref()).map(|a| {
                *artist_index.entry(a.clone()).or_insert_with(|| {
                    artists.push(a.clone());
                    artists.len() as u32 - 1
                })
            }));
            if f.is_some_and(|f| f.explicit) {
                explicit.push(i as u32);
            }
            titles.push(f.map(|f| f.title.clone()).unwrap_or_default());
        }
        let fold = match (&artifact.config, &artifact.model) {
            (ModelConfig::Als(c), Model::Als(m)) => FoldIn::Als {
                solver: m.fold_in_solver(c.regularization),
                confidence: c.confidence,
            },
            _ => FoldIn::Mean,
        };
        Ok(ServingModel {
            name: name.into(),
            version,
            kind: artifact.model.kind(),
            users: index(&artifact.users),
            items: index(&artifact.items),
            item_ids: artifact.items,
            width,
            retriever: retriever(&item_vectors, width, &retrieval)
                .map_err(|e| refuse(e.to_string()))?,
            unit_tiles: ItemTiles::new(&unit, width),
            unit,
            skipped: artifact.skipped.clone().unwrap_or_else(|| Csr {
                n_rows: seen.n_rows,
                n_cols: seen.n_cols,
                indptr: vec![0; seen.n_rows + 1],
                ..Csr::default()
            }),
            seen,
            popular,
            artist_of,
            artists,
            explicit,
            titles,
            fold,
            model: artifact.model,
        })
    }

    pub fn n_items(&self) -> usize {
        self.item_ids.len()
    }

    pub fn n_users(&self) -> usize {
        self.users.len()
    }

    pub fn user_index(&self, id: &str) -> Option<u32> {
        self.users.get(id).copied()
    }

    pub fn item_index(&self, id: &str) -> Option<u32> {
        self.items.get(id).copied()
    }

    /// The trained vector of user `u`.
    pub(crate) fn user_vector(&self, u: u32) -> Option<&[f32]> {
        let (users, w) = self.model.user_vectors()?;
        users.get(u as usize * w..(u as usize + 1) * w)
    }

    pub(crate) fn unit_vector(&self, i: u32) -> &[f32] {
        &self.unit[i as usize * self.width..(i as usize + 1) * self.width]
    }

    /// A query vector from items and their plays (fold-in).
    pub(crate) fn fold_in(&self, items: &[u32], plays: &[f32]) -> Vec<f32> {
        match (&self.fold, &self.model) {
            (FoldIn::Als { solver, confidence }, Model::Als(m)) => {
                let conf: Vec<f32> = plays.iter().map(|&p| confidence.apply(p)).collect();
                solver.solve(m, items, &conf)
            }
            _ => {
                let (vectors, w) = self.model.item_vectors().unwrap_or((&[], 1));
                let mut q = vec![0f32; w];
                for &i in items {
                    let v = &vectors[i as usize * w..(i as usize + 1) * w];
                    q.iter_mut().zip(v).for_each(|(a, b)| *a += b);
                }
                q
            }
        }
    }
}

/// How candidates are retrieved.
#[derive(Debug, Clone, Default)]
pub struct Retrieval {
    pub choice: encore_index::Choice,
    /// where the HNSW graph of this model is kept between loads
    pub cache: Option<IndexCache>,
}

/// A model's HNSW graph kept in an object store between loads, memory-mapped from the store's
/// local copy.
#[derive(Debug, Clone)]
pub struct IndexCache {
    pub objects: std::sync::Arc<dyn encore_storage::objects::ObjectStore>,
    pub key: String,
}

impl IndexCache {
    fn load(&self, vectors: &[f32], width: usize) -> Option<encore_index::Retriever> {
        let path = self.objects.local_path(&self.key).ok()??;
        encore_index::Retriever::load_hnsw(&path, vectors, width, true).ok()
    }

    /// Saves `built`'s graph; a failure costs the next load a rebuild, nothing more.
    fn store(&self, built: &encore_index::Retriever) {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = std::env::temp_dir().join(format!("encore-index-{}-{n}", std::process::id()));
        if built.save_hnsw(&tmp).is_ok()
            && let Ok(bytes) = std::fs::read(&tmp)
        {
            let _ = self.objects.put(&self.key, &bytes);
        }
        let _ = std::fs::remove_file(&tmp);
    }
}

fn retriever(
    vectors: &[f32],
    width: usize,
    r: &Retrieval,
) -> Result<encore_index::Retriever, encore_index::IndexError> {
    use encore_index::{Choice, Retriever};
    let items = vectors.len() / width.max(1);
    let wants_graph = match r.choice {
        Choice::Exact => false,
        Choice::Hnsw(_) => true,
        Choice::Auto { threshold } => items > threshold,
    };
    if wants_graph && let Some(loaded) = r.cache.as_ref().and_then(|c| c.load(vectors, width)) {
        return Ok(loaded);
    }
    let built = Retriever::build(vectors, width, r.choice)?;
    if built.kind() == "hnsw"
        && let Some(cache) = &r.cache
    {
        cache.store(&built);
    }
    Ok(built)
}

fn index(ids: &[String]) -> HashMap<String, u32> {
    ids.iter()
        .enumerate()
        .map(|(i, id)| (id.clone(), i as u32))
        .collect()
}
