//! Online features: the store, the definitions in use, compiled read plans per service, and the
//! writer that keeps the store fresh from stored playback rows.

use crate::AppError;
use crate::worker::{BatchWriter, Batching};
use arrow::array::RecordBatch;
use encore_core::ErrorCode;
use encore_features::Definitions;
use encore_features::online::{FeatureRow, Keyed, OnlineStore, Plan};
use encore_ingest::Table;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The online store, the definitions in use, and the writer fed by ingestion.
#[derive(Debug)]
pub struct OnlineFeatures {
    pub store: Arc<OnlineStore>,
    pub version: u32,
    pub definitions: Arc<Definitions>,
    plans: Mutex<HashMap<String, Arc<Plan>>>,
    /// each catalog item's artist
    artists: Arc<HashMap<String, String>>,
    writer: BatchWriter<Keyed>,
    /// the user-artist feature that demotes artists in home lists, and its weight
    rerank: Option<Rerank>,
}

/// A user-artist feature feeding the re-ranking of home lists: an artist is demoted by
/// `weight × value` (clamped to [0, 1]).
#[derive(Debug, Clone)]
pub struct Rerank {
    pub view: encore_features::def::View,
    /// the view's read layout, compiled once
    pub layout: encore_features::columns::Layout,
    pub feature: usize,
    pub weight: f32,
}

impl Rerank {
    /// `<view>__<feature>` of a user-artist view of `defs`, or an `invalid_argument` saying why
    /// not.
    pub fn new(defs: &Definitions, name: &str, weight: f32) -> Result<Rerank, AppError> {
        let bad = |why: String| AppError::invalid(format!("rerank feature {name:?}: {why}"));
        let (view, feature) = name
            .split_once("__")
            .ok_or_else(|| bad("expected <view>__<feature>".into()))?;
        let v = defs
            .views
            .get(view)
            .ok_or_else(|| bad(format!("no view {view}")))?;
        if v.kind != encore_features::def::EntityKind::UserArtist {
            return Err(bad(format!(
                "view {view} is not keyed by user_id and artist_id"
            )));
        }
        let feature = v
            .features
            .iter()
            .position(|f| f.name == feature)
            .ok_or_else(|| bad(format!("view {view} has no {feature}")))?;
        Ok(Rerank {
            layout: encore_features::columns::Layout::of(v),
            view: v.clone(),
            feature,
            weight,
        })
    }
}

impl OnlineFeatures {
    /// Starts the writer: stored plays are coalesced for up to 100 ms and applied in one
    /// transaction.
    pub fn start(
        store: OnlineStore,
        version: u32,
        definitions: Definitions,
        artists: HashMap<String, String>,
        rerank: Option<Rerank>,
    ) -> Result<Arc<OnlineFeatures>, AppError> {
        let store = Arc::new(store);
        let definitions = Arc::new(definitions);
        let (s, defs) = (Arc::clone(&store), Arc::clone(&definitions));
        let writer = BatchWriter::start(
            "features-writer",
            Batching {
                queue: 1_024,
                max_items: usize::MAX,
                linger: std::time::Duration::from_millis(100),
            },
            move |batch: Vec<Keyed>| {
                if let Err(e) = s.apply(&defs, &batch, encore_core::time::now_ms()) {
                    tracing::warn!("online features not updated: {e}");
                }
            },
        )
        .map_err(|e| AppError::new(ErrorCode::Internal, format!("features writer: {e}")))?;
        Ok(Arc::new(OnlineFeatures {
            store,
            version,
            definitions,
            plans: Mutex::default(),
            artists: Arc::new(artists),
            writer,
            rerank,
        }))
    }

    /// The compiled read plan of `service` (cached).
    pub fn plan(&self, service: &str) -> Result<Arc<Plan>, AppError> {
        let mut plans = self.plans.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = plans.get(service) {
            return Ok(Arc::clone(p));
        }
        let p = Arc::new(Plan::new(&self.definitions, service)?);
        plans.insert(service.to_owned(), Arc::clone(&p));
        Ok(p)
    }

    /// Every view of `plan`'s service for each entity (keys by name), as of now.
    pub fn read<K, V>(
        &self,
        plan: &Plan,
        entities: &[std::collections::BTreeMap<K, V>],
    ) -> Result<Vec<FeatureRow>, AppError>
    where
        K: std::borrow::Borrow<str> + Ord,
        V: AsRef<str>,
    {
        Ok(self
            .store
            .read(plan, entities, encore_core::time::now_ms())?)
    }

    /// The demotion of each artist for `user` in home lists (empty without a rerank feature).
    pub fn demotions(&self, user: &str) -> HashMap<String, f32> {
        let Some(r) = &self.rerank else {
            return HashMap::new();
        };
        match self.store.prefix_values(
            &r.view,
            &r.layout,
            r.feature,
            user,
            encore_core::time::now_ms(),
        ) {
            Ok(v) => v
                .into_iter()
                .map(|(artist, x)| (artist, (r.weight * x as f32).clamp(0.0, 1.0)))
                .filter(|(_, d)| *d > 0.0)
                .collect(),
            Err(e) => {
                tracing::warn!("home list without feature demotions: {e}");
                HashMap::new()
            }
        }
    }
}

impl crate::ingest::Subscriber for OnlineFeatures {
    fn name(&self) -> &'static str {
        "online-features"
    }

    /// Stored plays, keyed the way the offline computation keys them (one conversion:
    /// [`encore_features::offline::batch_events`]), go to the writer.
    fn stored(&self, table: Table, rows: &RecordBatch) {
        if table != Table::Playback {
            return;
        }
        let mut keyed = Vec::with_capacity(rows.num_rows());
        let all = encore_features::offline::batch_events(
            rows,
            &self.artists,
            i64::MIN,
            i64::MAX,
            |user, item, artist, event| {
                keyed.push(Keyed {
                    user_id: user.to_owned(),
                    item_id: item.to_owned(),
                    artist_id: artist.map(str::to_owned),
                    event,
                });
            },
        );
        if let Err(e) = all {
            tracing::error!("online features: stored rows unreadable: {e}");
            return;
        }
        if self.writer.try_send(keyed).is_err() {
            tracing::warn!(
                "online features: the writer is behind; a batch waits for materialization"
            );
        }
    }
}
