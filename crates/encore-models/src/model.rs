//! One interface over every recommender: a typed configuration (a tagged enum, so a config file
//! or artifact names its model), fitting with progress, and top-k recommendation with the
//! user's own items excluded.

use crate::als::{AlsConfig, AlsModel};
use crate::bpr::{BprConfig, BprModel};
use crate::data::Csr;
use crate::itemknn::{ItemKnn, ItemKnnConfig};
use crate::popularity::Popularity;
use crate::scoring::ItemTiles;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PopularityConfig {}

/// A model and its hyper-parameters, e.g. `{"model": "als", "factors": 64, ...}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "model", rename_all = "lowercase")]
pub enum ModelConfig {
    Popularity(PopularityConfig),
    #[serde(rename = "itemknn")]
    ItemKnn(ItemKnnConfig),
    Als(AlsConfig),
    Bpr(BprConfig),
}

impl ModelConfig {
    pub fn kind(&self) -> &'static str {
        match self {
            ModelConfig::Popularity(_) => "popularity",
            ModelConfig::ItemKnn(_) => "itemknn",
            ModelConfig::Als(_) => "als",
            ModelConfig::Bpr(_) => "bpr",
        }
    }

    /// Iterations (ALS) or epochs (BPR); 1 for the models fitted in one pass.
    pub fn steps(&self) -> usize {
        match self {
            ModelConfig::Als(c) => c.iterations,
            ModelConfig::Bpr(c) => c.epochs,
            _ => 1,
        }
    }
}

/// Reported after each iteration or epoch of a fit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Progress {
    /// 1-based
    pub step: usize,
    pub steps: usize,
    /// the training loss after this step, when the model has one and it was asked for
    pub loss: Option<f64>,
}

/// A fitted model over dense user and item indices.
#[derive(Debug, Clone)]
pub enum Model {
    Popularity(Popularity),
    ItemKnn(ItemKnn),
    Als(AlsModel),
    Bpr(BprModel),
}

impl Model {
    /// Fits `config` on `plays` (users x items, raw weights such as play counts), on the current
    /// rayon pool. With `loss`, ALS computes its training loss after every iteration (about one
    /// more CG step of work); BPR's comes free with its updates.
    pub fn fit(
        config: &ModelConfig,
        plays: &Csr,
        loss: bool,
        on_progress: &mut dyn FnMut(Progress),
    ) -> Model {
        let steps = config.steps();
        match config {
            ModelConfig::Popularity(_) => {
                let m = Popularity::fit(plays);
                on_progress(Progress {
                    step: 1,
                    steps,
                    loss: None,
                });
                Model::Popularity(m)
            }
            ModelConfig::ItemKnn(c) => {
                let m = ItemKnn::fit(plays, c);
                on_progress(Progress {
                    step: 1,
                    steps,
                    loss: None,
                });
                Model::ItemKnn(m)
            }
            ModelConfig::Als(c) => {
                let conf = c.confidence.matrix(plays);
                Model::Als(AlsModel::fit(&conf, c, &mut |it, model| {
                    on_progress(Progress {
                        step: it + 1,
                        steps,
                        loss: loss.then(|| model.loss(&conf, c.regularization)),
                    })
                }))
            }
            ModelConfig::Bpr(c) => Model::Bpr(BprModel::fit(plays, c, &mut |e| {
                on_progress(Progress {
                    step: e.index + 1,
                    steps,
                    loss: Some(e.loss),
                })
            })),
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Model::Popularity(_) => "popularity",
            Model::ItemKnn(_) => "itemknn",
            Model::Als(_) => "als",
            Model::Bpr(_) => "bpr",
        }
    }

    pub fn n_items(&self) -> usize {
        match self {
            Model::Popularity(m) => m.counts.len(),
            Model::ItemKnn(m) => m.neighbors.len(),
            Model::Als(m) => m.item_factors.len() / m.factors.max(1),
            Model::Bpr(m) => m.item_factors.len() / m.width.max(1),
        }
    }

    /// Row-major item vectors and their width, for latent-factor models.
    pub fn item_vectors(&self) -> Option<(&[f32], usize)> {
        match self {
            Model::Als(m) => Some((&m.item_factors, m.factors)),
            Model::Bpr(m) => Some((&m.item_factors, m.width)),
            _ => None,
        }
    }

    /// Row-major user vectors and their width, for latent-factor models.
    pub fn user_vectors(&self) -> Option<(&[f32], usize)> {
        match self {
            Model::Als(m) => Some((&m.user_factors, m.factors)),
            Model::Bpr(m) => Some((&m.user_factors, m.width)),
            _ => None,
        }
    }

    /// The top `k` items of every user (row) of `plays`, the user's own items excluded, in
    /// parallel on the current rayon pool. Users must be those the model was fitted on.
    pub fn recommend_all(&self, plays: &Csr, k: usize) -> Vec<Vec<u32>> {
        let n_items = self.n_items();
        let per_user = |rec: &(dyn Fn(usize, &mut [f32]) -> Vec<u32> + Sync)| -> Vec<Vec<u32>> {
            (0..plays.n_rows)
                .into_par_iter()
                .map_init(|| vec![0f32; n_items], |scores, u| rec(u, scores))
                .collect()
        };
        match self {
            Model::Popularity(m) => per_user(&|u, _| m.recommend(plays, u, k)),
            Model::ItemKnn(m) => per_user(&|u, scores| m.recommend(plays.row(u), k, scores)),
            Model::Als(_) | Model::Bpr(_) => {
                let (users, width) = self.user_vectors().unwrap_or((&[], 1));
                let (items, _) = self.item_vectors().unwrap_or((&[], 1));
                ItemTiles::new(items, width).top_k_all(users, &|u| plays.row(u).0, k)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configs_are_tagged_and_strict() {
        let c: ModelConfig = serde_json::from_str(r#"{"model":"als","factors":8,"iterations":2,"regularization":0.1,"cg_steps":3,"seed":1}"#).unwrap();
        assert!(matches!(&c, ModelConfig::Als(a) if a.factors == 8 && !a.exact));
        let back: ModelConfig = serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
        assert_eq!(back, c);
        let err = serde_json::from_str::<ModelConfig>(r#"{"model":"bpr","factors":8,"epochs":1,"learning_rate":0.1,"regularization":0.0,"seed":1,"momentum":0.9}"#).unwrap_err();
        assert!(
            err.to_string().contains("unknown field `momentum`"),
            "{err}"
        );
        let err = serde_json::from_str::<ModelConfig>(r#"{"model":"svd"}"#).unwrap_err();
        assert!(err.to_string().contains("unknown variant `svd`"), "{err}");
        let knn: ModelConfig = serde_json::from_str(
            r#"{"model":"itemknn","neighbors":50,"similarity":{"kind":"bm25","k1":1.2,"b":0.75}}"#,
        )
        .unwrap();
        assert_eq!(knn.kind(), "itemknn");
        assert!(serde_json::from_str::<ModelConfig>(r#"{"model":"popularity","x":1}"#).is_err());
    }

    fn toy() -> Csr {
        // two taste groups: users 0-3 play items 0-2, users 4-7 play items 3-5; each user
        // misses one item of their group
        let mut e = Vec::new();
        for u in 0..8u32 {
            let base = if u < 4 { 0 } else { 3 };
            for i in base..base + 3 {
                if i != base + u % 3 {
                    e.push((u, i, 1.0 + (u + i) as f32 % 3.0));
                }
            }
        }
        Csr::from_entries(8, 6, e)
    }

    #[test]
    fn every_model_recommends_within_the_taste_group() {
        let plays = toy();
        let configs = [
            ModelConfig::ItemKnn(ItemKnnConfig::default()),
            ModelConfig::Als(AlsConfig {
                factors: 2,
                regularization: 0.1,
                ..AlsConfig::default()
            }),
        ];
        for config in configs {
            let mut seen = 0;
            let model = Model::fit(&config, &plays, true, &mut |p| {
                seen = p.step;
                if let Some(l) = p.loss {
                    assert!(l.is_finite() && l >= 0.0);
                }
            });
            assert_eq!(seen, config.steps());
            let recs = model.recommend_all(&plays, 1);
            for (u, r) in recs.iter().enumerate() {
                let base = if u < 4 { 0 } else { 3 };
                assert_eq!(r, &vec![(base + u % 3) as u32], "{} user {u}", model.kind());
            }
        }
    }

    #[test]
    fn als_loss_decreases() {
        let plays = toy();
        let mut losses = Vec::new();
        let config = ModelConfig::Als(AlsConfig {
            factors: 4,
            iterations: 6,
            ..AlsConfig::default()
        });
        Model::fit(&config, &plays, true, &mut |p| losses.extend(p.loss));
        assert_eq!(losses.len(), 6);
        assert!(
            losses.windows(2).all(|w| w[1] <= w[0] * 1.0001),
            "{losses:?}"
        );
    }

    #[test]
    fn bpr_is_reproducible_single_threaded() {
        let plays = toy();
        let config = ModelConfig::Bpr(BprConfig {
            factors: 4,
            epochs: 3,
            ..BprConfig::default()
        });
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        let fit = || pool.install(|| Model::fit(&config, &plays, true, &mut |_| {}));
        let (a, b) = (fit(), fit());
        assert_eq!(a.user_vectors(), b.user_vectors());
        assert_eq!(a.item_vectors(), b.item_vectors());
    }
}
