//! `encore-serving`: recommendations from a loaded model, for every product surface.
//!
//! One pipeline serves them all: a query vector (the listener's trained vector; a fold-in of
//! their recent or seed items; or none, and popularity) → exact inner-product candidates over
//! the catalogue with what must not be shown masked out (already played, banned, explicit for
//! listeners who opted out) → business rules (at most N per artist, no artist twice within a
//! window, duplicates by artist and title, MMR diversity) → items with score, position, reason
//! and propensity. Nothing here knows HTTP; `encore-server` calls these functions off its async
//! threads.

mod cache;
mod consent;
mod model;
mod recent;
mod surfaces;

pub use cache::SlateCache;
pub use consent::ConsentBook;
pub use model::{IndexCache, ItemFacts, NotServable, Retrieval, ServingModel};
pub use recent::RecentActivity;
pub use surfaces::{Blend, Mix, Mixes};

use encore_models::recommend::TopK;
use encore_models::scoring::dot;
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

#[derive(Debug, thiserror::Error)]
pub enum ServingError {
    #[error("unknown user {0:?}: the model has not seen them and they have no recent plays")]
    UnknownUser(String),
    #[error("unknown item {0:?}: not in the served model's catalogue")]
    UnknownItem(String),
    #[error("bad parameter `{name}`: {message}")]
    BadParameter { name: &'static str, message: String },
    #[error(
        "listener {0:?} has not allowed personalization: nothing is built from their listening"
    )]
    NotPersonalized(String),
}

impl encore_core::Coded for ServingError {
    fn code(&self) -> encore_core::ErrorCode {
        match self {
            ServingError::UnknownUser(_) | ServingError::UnknownItem(_) => {
                encore_core::ErrorCode::NotFound
            }
            ServingError::BadParameter { .. } => encore_core::ErrorCode::InvalidArgument,
            ServingError::NotPersonalized(_) => encore_core::ErrorCode::FailedPrecondition,
        }
    }
}

/// How the list was made.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// the listener's trained vector
    Personalized,
    /// a vector folded in from recent or seed items
    FoldIn,
    /// the most popular items (nothing to personalize from)
    PopularFallback,
    /// similarity to seed items (similar items, radio)
    ItemSimilarity,
}

/// Why an item is in the list.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Reason {
    /// `similar_to_played`, `similar_to_seed`, `popular`, `for_member`, `familiar`, `new_in_mix`
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub item_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Recommended {
    pub id: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub title: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub artist_id: Option<String>,
    pub score: f32,
    /// 0-based
    pub position: u32,
    pub reason: Reason,
    /// probability that this policy puts this item at this position (1: deterministic ranking)
    pub propensity: f64,
}

/// An experiment variant a list was served under.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExperimentArm {
    pub experiment: String,
    pub variant: String,
}

/// A served list.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize)]
pub struct Slate {
    pub request_id: String,
    pub model: String,
    pub model_version: u32,
    pub strategy: Strategy,
    /// the experiment variants this list was served under
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub experiments: Vec<ExperimentArm>,
    /// why the list is not personalized, when it is not
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<&'static str>,
    pub items: Vec<Recommended>,
}

/// The note on a list made without the listener's history because they have not allowed it.
pub const NOTE_WITHDRAWN: &str = "not personalized: the listener has not allowed personalization";
/// The note on a list for a listener with no history yet (cold start).
pub const NOTE_NO_HISTORY: &str = "not personalized: no listening history yet";

/// Business rules and filters of one request.
#[derive(Debug, Clone)]
pub struct Rules {
    /// most items per artist in the list (0: no cap)
    pub artist_cap: usize,
    /// an artist may not come back within this many positions (0 or 1: no window)
    pub artist_window: usize,
    /// MMR trade-off: 1 ranks by relevance only, lower values favour items unlike those above
    pub relevance_weight: f32,
    pub allow_explicit: bool,
    pub banned_items: Vec<String>,
    pub banned_artists: Vec<String>,
    /// per artist id, a demotion in [0, 1]: the candidate's relevance is scaled by
    /// `1 − demotion` (fed by a feature service, e.g. the listener's recent skip rate of the
    /// artist)
    pub artist_demotion: HashMap<String, f32>,
}

impl Default for Rules {
    fn default() -> Self {
        Rules {
            artist_cap: 2,
            artist_window: 0,
            relevance_weight: 1.0,
            allow_explicit: true,
            banned_items: Vec::new(),
            banned_artists: Vec::new(),
            artist_demotion: HashMap::new(),
        }
    }
}

/// The model being served, swapped atomically when a new version is loaded: a request holds
/// the `Arc` it started with, so in-flight requests finish on the old model.
#[derive(Debug)]
pub struct Served {
    current: RwLock<Option<Arc<ServingModel>>>,
    /// other aliases of the served model that running experiments treat listeners with
    /// (`candidate`, ...), by alias
    alternates: RwLock<HashMap<String, Arc<ServingModel>>>,
    pub recent: RecentActivity,
    pub cache: SlateCache,
    /// listeners who withdrew personalization
    pub consent: ConsentBook,
    swaps: AtomicU64,
    failed_swaps: AtomicU64,
}

impl Served {
    pub fn new(recent: RecentActivity, cache: SlateCache) -> Served {
        Served {
            current: RwLock::new(None),
            alternates: RwLock::new(HashMap::new()),
            recent,
            cache,
            consent: ConsentBook::default(),
            swaps: AtomicU64::new(0),
            failed_swaps: AtomicU64::new(0),
        }
    }

    /// The model now, if one is loaded.
    pub fn get(&self) -> Option<Arc<ServingModel>> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Serves `model` from now on.
    pub fn swap(&self, model: ServingModel) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(model));
        self.swaps.fetch_add(1, Ordering::Relaxed);
    }

    /// The model under `alias`, if it is loaded (the default model is not an alternate).
    pub fn get_alias(&self, alias: &str) -> Option<Arc<ServingModel>> {
        self.alternates
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(alias)
            .cloned()
    }

    /// Serves `model` to listeners treated with `alias` from now on.
    pub fn swap_alias(&self, alias: &str, model: ServingModel) {
        self.alternates
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(alias.to_owned(), Arc::new(model));
        self.swaps.fetch_add(1, Ordering::Relaxed);
    }

    /// The alternate aliases loaded now.
    pub fn aliases(&self) -> Vec<String> {
        let mut a: Vec<String> = self
            .alternates
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .cloned()
            .collect();
        a.sort();
        a
    }

    /// Unloads the alternates not in `keep`.
    pub fn retain_aliases(&self, keep: &HashSet<String>) {
        self.alternates
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|a, _| keep.contains(a));
    }

    /// A version failed to load and was not swapped in.
    pub fn swap_failed(&self) {
        self.failed_swaps.fetch_add(1, Ordering::Relaxed);
    }

    /// (models swapped in, versions that failed to load)
    pub fn swap_counts(&self) -> (u64, u64) {
        (
            self.swaps.load(Ordering::Relaxed),
            self.failed_swaps.load(Ordering::Relaxed),
        )
    }
}

/// Upper bound of `n` on every surface.
pub const MAX_N: usize = 500;

static REQUESTS: AtomicU64 = AtomicU64::new(0);

/// A request id unique within this process and unlikely to repeat across restarts.
pub fn request_id() -> String {
    let n = REQUESTS.fetch_add(1, Ordering::Relaxed);
    let t = encore_core::time::now_ms() as u64;
    format!("{t:011x}-{n:08x}")
}

fn check_n(n: usize) -> Result<usize, ServingError> {
    if n == 0 || n > MAX_N {
        return Err(ServingError::BadParameter {
            name: "n",
            message: format!("{n} is out of range, expected 1..={MAX_N}"),
        });
    }
    Ok(n)
}

/// The candidates' common work: score, mask, take the best, apply the rules.
struct Ranking<'a> {
    m: &'a ServingModel,
    rules: &'a Rules,
    /// items never to show
    exclude: Vec<u32>,
    /// items whose similarity explains a pick (history or seeds), most recent last
    explain: &'a [u32],
    explain_kind: &'static str,
}

impl Ranking<'_> {
    /// What must not be shown: items (sorted; excluded, banned, explicit when not allowed) and
    /// banned artists.
    fn masks(&self) -> (Vec<u32>, HashSet<u32>) {
        let m = self.m;
        let mut items = self.exclude.clone();
        items.extend(
            self.rules
                .banned_items
                .iter()
                .filter_map(|id| m.item_index(id)),
        );
        if !self.rules.allow_explicit {
            items.extend_from_slice(&m.explicit);
        }
        items.sort_unstable();
        let artists = self
            .rules
            .banned_artists
            .iter()
            .filter_map(|a| m.artists.iter().position(|x| x == a))
            .map(|a| a as u32)
            .collect();
        (items, artists)
    }

    /// Candidates kept for the rules to choose `n` from.
    fn pool(&self, n: usize) -> usize {
        (n * 5).max(50).min(self.m.n_items())
    }

    /// The top `n` of `scores` (one per item) under the rules.
    fn select(&self, mut scores: Vec<f32>, n: usize) -> Vec<Recommended> {
        let m = self.m;
        let (items, artists) = self.masks();
        for &e in &items {
            scores[e as usize] = f32::NEG_INFINITY;
        }
        if !artists.is_empty() {
            for (i, a) in m.artist_of.iter().enumerate() {
                if a.is_some_and(|a| artists.contains(&a)) {
                    scores[i] = f32::NEG_INFINITY;
                }
            }
        }
        let mut top = TopK::new(self.pool(n));
        top.offer(&scores, 0);
        self.apply_rules(&top.into_scored(), n)
    }

    /// The top `n` by inner product with `query` under the rules: every item scored when the
    /// catalogue is small, graph (HNSW) candidates with the masks as a filter when it is large.
    fn select_query(&self, query: &[f32], n: usize) -> Vec<Recommended> {
        let m = self.m;
        if m.retriever.kind() == "exact" {
            return self.select(m.scores_for(query), n);
        }
        let (items, artists) = self.masks();
        let keep = |i: u32| {
            items.binary_search(&i).is_err()
                && m.artist_of[i as usize].is_none_or(|a| !artists.contains(&a))
        };
        let candidates = m.retriever.search(query, self.pool(n), &keep);
        self.apply_rules(&candidates, n)
    }

    /// Greedy selection: MMR (relevance against similarity to what is already chosen), artist
    /// cap and window, duplicates by artist and title.
    fn apply_rules(&self, candidates: &[(f32, u32)], n: usize) -> Vec<Recommended> {
        let m = self.m;
        let (hi, lo) = match (candidates.first(), candidates.last()) {
            (Some(a), Some(b)) => (a.0, b.0),
            _ => return Vec::new(),
        };
        let span = (hi - lo).max(1e-12);
        let lambda = self.rules.relevance_weight.clamp(0.0, 1.0);
        let demotion = |artist: Option<u32>| -> f32 {
            if self.rules.artist_demotion.is_empty() {
                return 0.0;
            }
            artist
                .and_then(|a| self.rules.artist_demotion.get(&m.artists[a as usize]))
                .map_or(0.0, |d| d.clamp(0.0, 1.0))
        };
        let mut taken = vec![false; candidates.len()];
        // each candidate's highest similarity to what is chosen, kept current as items are
        // chosen: MMR in O(n x candidates), not O(n^2 x candidates)
        let mmr = lambda < 1.0;
        let mut redundancy = vec![f32::NEG_INFINITY; if mmr { candidates.len() } else { 0 }];
        let mut chosen: Vec<(f32, u32)> = Vec::with_capacity(n);
        let mut per_artist: HashMap<u32, usize> = Default::default();
        let mut titles: HashSet<(Option<u32>, String)> = HashSet::new();
        while chosen.len() < n {
            let mut best: Option<(f32, usize)> = None;
            for (c, &(score, item)) in candidates.iter().enumerate() {
                if taken[c] {
                    continue;
                }
                let artist = m.artist_of[item as usize];
                if let Some(a) = artist {
                    let count = per_artist.get(&a).copied().unwrap_or(0);
                    if self.rules.artist_cap > 0 && count >= self.rules.artist_cap {
                        continue;
                    }
                    let w = self.rules.artist_window;
                    if w > 1
                        && chosen
                            .iter()
                            .rev()
                            .take(w - 1)
                            .any(|&(_, j)| m.artist_of[j as usize] == Some(a))
                    {
                        continue;
                    }
                }
                let mut value = (score - lo) / span * (1.0 - demotion(artist));
                if mmr && !chosen.is_empty() {
                    value = lambda * value - (1.0 - lambda) * redundancy[c];
                }
                if best.is_none_or(|(b, _)| value > b) {
                    best = Some((value, c));
                }
            }
            let Some((_, c)) = best else { break };
            taken[c] = true;
            let (score, item) = candidates[c];
            let artist = m.artist_of[item as usize];
            let title = m.titles[item as usize].to_lowercase();
            if !title.is_empty() && !titles.insert((artist, title)) {
                continue;
            }
            if let Some(a) = artist {
                *per_artist.entry(a).or_default() += 1;
            }
            chosen.push((score, item));
            if mmr {
                let v = m.unit_vector(item);
                for (r, &(_, j)) in redundancy.iter_mut().zip(candidates) {
                    *r = r.max(dot(v, m.unit_vector(j)));
                }
            }
        }
        chosen
            .into_iter()
            .enumerate()
            .map(|(p, (score, item))| Recommended {
                id: m.item_ids[item as usize].clone(),
                title: m.titles[item as usize].clone(),
                artist_id: m.artist_of[item as usize].map(|a| m.artists[a as usize].clone()),
                score,
                position: p as u32,
                reason: self.reason(item),
                propensity: 1.0,
            })
            .collect()
    }

    /// The most similar of the explaining items (the last 50), or popularity.
    fn reason(&self, item: u32) -> Reason {
        let m = self.m;
        let v = m.unit_vector(item);
        let best = self
            .explain
            .iter()
            .rev()
            .take(50)
            .map(|&j| (dot(v, m.unit_vector(j)), j))
            .max_by(|a, b| a.0.total_cmp(&b.0));
        match best {
            Some((_, j)) => Reason {
                kind: self.explain_kind,
                item_id: Some(m.item_ids[j as usize].clone()),
                user_id: None,
            },
            None => Reason {
                kind: "popular",
                item_id: None,
                user_id: None,
            },
        }
    }
}

/// Items and play counts from ids, failing on the first unknown one.
fn resolve(m: &ServingModel, ids: &[String]) -> Result<Vec<u32>, ServingError> {
    ids.iter()
        .map(|id| {
            m.item_index(id)
                .ok_or_else(|| ServingError::UnknownItem(id.clone()))
        })
        .collect()
}

/// Popularity scores (rank-based, so every item has one).
fn popularity_scores(m: &ServingModel) -> Vec<f32> {
    let mut scores = vec![0f32; m.n_items()];
    let n = m.popular.len() as f32;
    for (rank, &i) in m.popular.iter().enumerate() {
        scores[i as usize] = 1.0 - rank as f32 / n.max(1.0);
    }
    scores
}

impl ServingModel {
    fn slate(&self, strategy: Strategy, items: Vec<Recommended>) -> Slate {
        Slate {
            request_id: request_id(),
            model: self.name.clone(),
            model_version: self.version,
            strategy,
            experiments: Vec::new(),
            note: None,
            items,
        }
    }

    /// The most popular items, for a listener whose history may not or cannot be used; `note`
    /// says why.
    pub fn popular(
        &self,
        n: usize,
        rules: &Rules,
        note: &'static str,
    ) -> Result<Slate, ServingError> {
        self.popular_without(n, rules, Vec::new(), note)
    }

    /// The most popular items but `exclude` (item indices).
    fn popular_without(
        &self,
        n: usize,
        rules: &Rules,
        mut exclude: Vec<u32>,
        note: &'static str,
    ) -> Result<Slate, ServingError> {
        let n = check_n(n)?;
        exclude.sort_unstable();
        exclude.dedup();
        let ranking = Ranking {
            m: self,
            rules,
            exclude,
            explain: &[],
            explain_kind: "popular",
        };
        let picks = ranking.select(popularity_scores(self), n);
        let mut slate = self.slate(Strategy::PopularFallback, picks);
        slate.note = Some(note);
        Ok(slate)
    }

    fn scores_for(&self, query: &[f32]) -> Vec<f32> {
        let mut scores = vec![0f32; self.n_items()];
        self.retriever.tiles().scores(query, &mut scores);
        scores
    }

    /// What `user` streamed: training items and plays, then recent items (unknown ids and
    /// recent entries with no stream left out).
    fn history(&self, user: Option<u32>, recent: &[(String, u32)]) -> (Vec<u32>, Vec<f32>) {
        let mut items = Vec::new();
        let mut plays = Vec::new();
        if let Some(u) = user {
            let (i, p) = self.seen.row(u as usize);
            items.extend_from_slice(i);
            plays.extend_from_slice(p);
        }
        for (id, count) in recent.iter().filter(|(_, n)| *n > 0) {
            if let Some(i) = self.item_index(id) {
                match items.iter().position(|&x| x == i) {
                    Some(at) => plays[at] += *count as f32,
                    None => {
                        items.push(i);
                        plays.push(*count as f32);
                    }
                }
            }
        }
        (items, plays)
    }

    /// Home recommendations for `user`. A listener the model was trained on is served from
    /// their vector, or from a fold-in when they have streamed something since (`recent`: item
    /// and streams, 0 for an item only skipped); a new listener with recent streams gets a
    /// fold-in; anyone else (no history yet) the most popular items, with a note saying so.
    /// `exclude_seen` leaves out every item the listener played: streamed or skipped, in
    /// training or since.
    pub fn home(
        &self,
        user: &str,
        recent: &[(String, u32)],
        n: usize,
        exclude_seen: bool,
        rules: &Rules,
    ) -> Result<Slate, ServingError> {
        let n = check_n(n)?;
        let u = self.user_index(user);
        let streamed = recent.iter().any(|(_, n)| *n > 0);
        let mut played = Vec::new();
        if exclude_seen {
            if let Some(u) = u {
                played.extend_from_slice(self.skipped.row(u as usize).0);
            }
            played.extend(recent.iter().filter_map(|(id, _)| self.item_index(id)));
        }
        if u.is_none() && !streamed {
            return self.popular_without(n, rules, played, NOTE_NO_HISTORY);
        }
        let (items, plays) = self.history(u, recent);
        let (query, strategy) = match (u, !streamed) {
            (Some(u), true) => (
                self.user_vector(u).map(<[f32]>::to_vec).unwrap_or_default(),
                Strategy::Personalized,
            ),
            _ => (self.fold_in(&items, &plays), Strategy::FoldIn),
        };
        let mut exclude = played;
        if exclude_seen {
            exclude.extend_from_slice(&items);
        }
        exclude.sort_unstable();
        exclude.dedup();
        let ranking = Ranking {
            m: self,
            rules,
            exclude,
            explain: &items,
            explain_kind: "similar_to_played",
        };
        let picks = ranking.select_query(&query, n);
        Ok(self.slate(strategy, picks))
    }

    /// Recommendations from seed items (an anonymous or new listener, or a context), or popular
    /// items when there are none.
    pub fn from_seeds(
        &self,
        seeds: &[String],
        n: usize,
        rules: &Rules,
    ) -> Result<Slate, ServingError> {
        let n = check_n(n)?;
        let items = resolve(self, seeds)?;
        let ranking = Ranking {
            m: self,
            rules,
            exclude: items.clone(),
            explain: &items,
            explain_kind: "similar_to_seed",
        };
        if items.is_empty() {
            let picks = ranking.select(popularity_scores(self), n);
            return Ok(self.slate(Strategy::PopularFallback, picks));
        }
        let plays = vec![1.0; items.len()];
        let picks = ranking.select_query(&self.fold_in(&items, &plays), n);
        Ok(self.slate(Strategy::FoldIn, picks))
    }

    /// Items most like `item` (cosine of item vectors): "fans also like".
    pub fn similar(&self, item: &str, n: usize, rules: &Rules) -> Result<Slate, ServingError> {
        let n = check_n(n)?;
        let i = self
            .item_index(item)
            .ok_or_else(|| ServingError::UnknownItem(item.into()))?;
        let mut scores = vec![0f32; self.n_items()];
        self.unit_tiles.scores(self.unit_vector(i), &mut scores);
        let seed = [i];
        let ranking = Ranking {
            m: self,
            rules,
            exclude: vec![i],
            explain: &seed,
            explain_kind: "similar_to_seed",
        };
        Ok(self.slate(Strategy::ItemSimilarity, ranking.select(scores, n)))
    }

    /// A radio station from seed tracks: items near the seeds' mean direction, never a seed or
    /// an `exclude`d item (already played in the session), no artist twice within
    /// `rules.artist_window` positions.
    pub fn radio(
        &self,
        seeds: &[String],
        exclude: &[String],
        n: usize,
        rules: &Rules,
    ) -> Result<Slate, ServingError> {
        let n = check_n(n)?;
        if seeds.is_empty() {
            return Err(ServingError::BadParameter {
                name: "seeds",
                message: "a radio needs at least one seed item".into(),
            });
        }
        let items = resolve(self, seeds)?;
        let mut query = vec![0f32; self.width];
        for &i in &items {
            query
                .iter_mut()
                .zip(self.unit_vector(i))
                .for_each(|(q, v)| *q += v);
        }
        let mut scores = vec![0f32; self.n_items()];
        self.unit_tiles.scores(&query, &mut scores);
        let mut skip = items.clone();
        skip.extend(exclude.iter().filter_map(|id| self.item_index(id)));
        let ranking = Ranking {
            m: self,
            rules,
            exclude: skip,
            explain: &items,
            explain_kind: "similar_to_seed",
        };
        Ok(self.slate(Strategy::ItemSimilarity, ranking.select(scores, n)))
    }
}
