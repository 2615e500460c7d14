//! Surfaces built from several lists: daily mixes (a listener's taste clusters) and blend (a
//! fair merge of several listeners' recommendations).

use crate::{
    Reason, Recommended, Rules, ServingError, ServingModel, Slate, Strategy, check_n, request_id,
};
use encore_models::scoring::dot;
use serde::Serialize;

/// One mix: a cluster of the listener's taste, mostly familiar tracks with some new ones.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize)]
pub struct Mix {
    /// 1-based
    pub mix: usize,
    /// the most played track of the cluster, to name the mix after
    pub anchor_item: String,
    pub familiar: usize,
    pub new: usize,
    pub items: Vec<Recommended>,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize)]
pub struct Mixes {
    pub request_id: String,
    pub model: String,
    pub model_version: u32,
    pub strategy: Strategy,
    pub mixes: Vec<Mix>,
}

/// A blend of several listeners.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize)]
pub struct Blend {
    #[serde(flatten)]
    pub slate: Slate,
    /// 0..=100: how alike the members' tastes are (mean pairwise cosine of their vectors)
    pub taste_match: u32,
    /// items attributed to each member, in member order
    pub per_member: Vec<usize>,
}

/// A cluster's unit centroid and its (item, plays) members.
type Cluster = (Vec<f32>, Vec<(u32, f32)>);

/// Share of familiar tracks in a mix.
const FAMILIAR_SHARE: f32 = 0.7;

impl ServingModel {
    /// Up to `max` daily mixes of `size` tracks: the listener's most played items clustered by
    /// direction (spherical k-means, farthest-first seeds, so it is deterministic); each mix
    /// takes its cluster's familiar tracks and adds unplayed tracks nearest the cluster.
    pub fn mixes(
        &self,
        user: &str,
        recent: &[(String, u32)],
        max: usize,
        size: usize,
    ) -> Result<Mixes, ServingError> {
        let size = check_n(size)?;
        if !(1..=12).contains(&max) {
            return Err(ServingError::BadParameter {
                name: "max",
                message: format!("{max} is out of range, expected 1..=12"),
            });
        }
        let u = self.user_index(user);
        if u.is_none() && recent.is_empty() {
            return Err(ServingError::UnknownUser(user.into()));
        }
        let (items, plays) = self.history(u, recent);
        let mut top: Vec<(u32, f32)> = items.iter().copied().zip(plays.iter().copied()).collect();
        top.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        top.truncate(60);
        let k = max.min(top.len().div_ceil(6)).max(1);
        let clusters = self.spherical_kmeans(&top, k);
        let mut used: std::collections::HashSet<u32> = items.iter().copied().collect();
        let mut mixes = Vec::new();
        for (c, (centroid, members)) in clusters.into_iter().enumerate() {
            if members.is_empty() {
                continue;
            }
            let n_familiar = ((size as f32 * FAMILIAR_SHARE).ceil() as usize).min(members.len());
            let familiar: Vec<(u32, f32)> = members.iter().take(n_familiar).copied().collect();
            let mut scores = vec![0f32; self.n_items()];
            self.unit_tiles.scores(&centroid, &mut scores);
            for &i in &used {
                scores[i as usize] = f32::NEG_INFINITY;
            }
            let mut best = encore_models::recommend::TopK::new(size - familiar.len());
            best.offer(&scores, 0);
            let fresh = best.into_scored();
            used.extend(fresh.iter().map(|x| x.1));
            let anchor = familiar[0].0;
            let mut list = Vec::with_capacity(size);
            let (mut f, mut n) = (familiar.iter(), fresh.iter());
            // two familiar, one new, while both last
            loop {
                let pick = if list.len() % 3 == 2 {
                    n.next().map(|x| (x.1, x.0, false))
                } else {
                    None
                }
                .or_else(|| {
                    f.next()
                        .map(|&(i, _)| (i, dot(&centroid, self.unit_vector(i)), true))
                })
                .or_else(|| n.next().map(|x| (x.1, x.0, false)));
                let Some((item, score, is_familiar)) = pick else {
                    break;
                };
                list.push(Recommended {
                    id: self.item_ids[item as usize].clone(),
                    title: self.titles[item as usize].clone(),
                    artist_id: self.artist_of[item as usize]
                        .map(|a| self.artists[a as usize].clone()),
                    score,
                    position: list.len() as u32,
                    reason: Reason {
                        kind: if is_familiar {
                            "familiar"
                        } else {
                            "new_in_mix"
                        },
                        item_id: (!is_familiar).then(|| self.item_ids[anchor as usize].clone()),
                        user_id: None,
                    },
                    propensity: 1.0,
                });
            }
            mixes.push(Mix {
                mix: c + 1,
                anchor_item: self.item_ids[anchor as usize].clone(),
                familiar: familiar.len(),
                new: fresh.len(),
                items: list,
            });
        }
        Ok(Mixes {
            request_id: request_id(),
            model: self.name.clone(),
            model_version: self.version,
            strategy: if u.is_some() && recent.is_empty() {
                Strategy::Personalized
            } else {
                Strategy::FoldIn
            },
            mixes,
        })
    }

    /// Spherical k-means over `items` (with weights), seeded farthest-first from the heaviest;
    /// clusters come back heaviest first, members heaviest first.
    fn spherical_kmeans(&self, items: &[(u32, f32)], k: usize) -> Vec<Cluster> {
        let w = self.width;
        let mut centroids: Vec<Vec<f32>> = vec![self.unit_vector(items[0].0).to_vec()];
        while centroids.len() < k {
            let far = items
                .iter()
                .map(|&(i, _)| {
                    let v = self.unit_vector(i);
                    let near = centroids
                        .iter()
                        .map(|c| dot(c, v))
                        .fold(f32::NEG_INFINITY, f32::max);
                    (near, i)
                })
                .min_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            match far {
                Some((_, i)) => centroids.push(self.unit_vector(i).to_vec()),
                None => break,
            }
        }
        let mut assign = vec![0usize; items.len()];
        for _ in 0..8 {
            for (a, &(i, _)) in assign.iter_mut().zip(items) {
                let v = self.unit_vector(i);
                *a = (0..centroids.len())
                    .max_by(|&x, &y| {
                        dot(&centroids[x], v)
                            .total_cmp(&dot(&centroids[y], v))
                            .then(y.cmp(&x))
                    })
                    .unwrap_or(0);
            }
            for (c, centroid) in centroids.iter_mut().enumerate() {
                let mut sum = vec![0f32; w];
                for (&(i, p), _) in items.iter().zip(&assign).filter(|(_, a)| **a == c) {
                    sum.iter_mut()
                        .zip(self.unit_vector(i))
                        .for_each(|(s, v)| *s += p.ln_1p() * v);
                }
                let norm = dot(&sum, &sum).sqrt();
                if norm > 0.0 {
                    *centroid = sum.iter().map(|s| s / norm).collect();
                }
            }
        }
        let mut clusters: Vec<Cluster> = centroids
            .into_iter()
            .enumerate()
            .map(|(c, centroid)| {
                let members = items
                    .iter()
                    .zip(&assign)
                    .filter(|(_, a)| **a == c)
                    .map(|(x, _)| *x)
                    .collect();
                (centroid, members)
            })
            .collect();
        let weight = |m: &Vec<(u32, f32)>| m.iter().map(|x| x.1).sum::<f32>();
        clusters.sort_by(|a, b| weight(&b.1).total_cmp(&weight(&a.1)));
        clusters
    }

    /// A list for several listeners together: each member's own ranking, merged in turns (the
    /// member with the fewest picks goes next), every item attributed to the member it came
    /// from; with the members' taste match.
    pub fn blend(
        &self,
        members: &[(String, Vec<(String, u32)>)],
        n: usize,
        rules: &Rules,
    ) -> Result<Blend, ServingError> {
        let n = check_n(n)?;
        if !(2..=10).contains(&members.len()) {
            return Err(ServingError::BadParameter {
                name: "users",
                message: format!("{} listeners, expected 2..=10", members.len()),
            });
        }
        let mut queries = Vec::new();
        let mut lists = Vec::new();
        for (user, recent) in members {
            let u = self.user_index(user);
            if u.is_none() && recent.is_empty() {
                return Err(ServingError::UnknownUser(user.clone()));
            }
            let (items, plays) = self.history(u, recent);
            let query = match (u, recent.is_empty()) {
                (Some(u), true) => self.user_vector(u).map(<[f32]>::to_vec).unwrap_or_default(),
                _ => self.fold_in(&items, &plays),
            };
            let ranking = crate::Ranking {
                m: self,
                rules,
                exclude: Vec::new(),
                explain: &[],
                explain_kind: "for_member",
            };
            lists.push(ranking.select_query(&query, n));
            queries.push(query);
        }
        let mut chosen: Vec<Recommended> = Vec::with_capacity(n);
        let mut taken = std::collections::HashSet::new();
        let mut per_member = vec![0usize; members.len()];
        let mut cursors = vec![0usize; members.len()];
        while chosen.len() < n {
            // the member with the fewest picks whose list still has something new
            let next = (0..members.len())
                .filter(|&m| {
                    lists[m][cursors[m]..]
                        .iter()
                        .any(|r| !taken.contains(&r.id))
                })
                .min_by_key(|&m| (per_member[m], m));
            let Some(m) = next else { break };
            while let Some(r) = lists[m].get(cursors[m]) {
                cursors[m] += 1;
                if taken.insert(r.id.clone()) {
                    let mut r = r.clone();
                    r.position = chosen.len() as u32;
                    r.reason = Reason {
                        kind: "for_member",
                        item_id: None,
                        user_id: Some(members[m].0.clone()),
                    };
                    chosen.push(r);
                    per_member[m] += 1;
                    break;
                }
            }
        }
        let mut sims = Vec::new();
        for a in 0..queries.len() {
            for b in a + 1..queries.len() {
                let (x, y) = (&queries[a], &queries[b]);
                let denom = (dot(x, x) * dot(y, y)).sqrt().max(1e-12);
                sims.push(dot(x, y) / denom);
            }
        }
        let mean = sims.iter().sum::<f32>() / sims.len().max(1) as f32;
        Ok(Blend {
            slate: self.slate(Strategy::Personalized, chosen),
            taste_match: ((mean.clamp(-1.0, 1.0) + 1.0) * 50.0).round() as u32,
            per_member,
        })
    }
}
