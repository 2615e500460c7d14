//! Bucket-reuse assignment: domains, buckets, experiments, variants and the global holdout.

use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// Buckets per domain.
pub const BUCKETS: u32 = 1_000_000;

/// A stable 64-bit hash of `salt` and `key`: FNV-1a over the bytes, then the SplitMix64
/// finalizer for avalanche. Written out here (not a library hasher) so that assignments never
/// change when a dependency is upgraded.
pub fn hash(salt: &str, key: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in salt.bytes().chain([0xff]).chain(key.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    let mut z = h.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A listener's bucket under `salt`.
pub fn bucket(salt: &str, user: &str) -> u32 {
    // multiply-shift: an unbiased map of the 64-bit hash onto [0, BUCKETS)
    ((u128::from(hash(salt, user)) * u128::from(BUCKETS)) >> 64) as u32
}

/// Who may enter an experiment (all when empty).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Targeting {
    #[serde(default)]
    pub countries: Vec<String>,
    #[serde(default)]
    pub platforms: Vec<String>,
    #[serde(default)]
    pub tiers: Vec<String>,
    /// only listeners new since the experiment started
    #[serde(default)]
    pub new_users_only: bool,
}

/// What is known of the listener at request time.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Context<'a> {
    pub country: &'a str,
    pub platform: &'a str,
    pub tier: &'a str,
    pub new_user: bool,
}

impl Targeting {
    pub fn admits(&self, c: &Context<'_>) -> bool {
        let ok = |list: &[String], v: &str| list.is_empty() || list.iter().any(|x| x == v);
        ok(&self.countries, c.country)
            && ok(&self.platforms, c.platform)
            && ok(&self.tiers, c.tier)
            && (!self.new_users_only || c.new_user)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Variant {
    pub name: String,
    pub weight: f64,
}

/// An experiment as assignment sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExperimentSpec {
    pub id: String,
    pub domain: String,
    /// share of the domain's buckets it takes, in (0, 1]
    pub traffic: f64,
    pub variants: Vec<Variant>,
    #[serde(default)]
    pub targeting: Targeting,
    /// The positions of the domain's bucket order it owns (`[first, end)` pieces, highest
    /// first), fixed when it starts (by [`place`]) so that experiments starting or stopping
    /// beside it never move its listeners; empty for a draft (laid out after every placed one).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stretch: Vec<[u32; 2]>,
    /// The pieces each raise of its traffic while it runs added (see [`ramp`]), one list per
    /// raise. Each raise is split among the variants on its own, so nobody already in the
    /// experiment changes variant.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ramps: Vec<Vec<[u32; 2]>>,
}

impl ExperimentSpec {
    /// The buckets it takes.
    fn needed(&self) -> u32 {
        (self.traffic * f64::from(BUCKETS)).round() as u32
    }

    /// Every piece it owns: its stretch, then each raise's.
    fn pieces(&self) -> impl Iterator<Item = (u32, u32)> + '_ {
        self.stretch
            .iter()
            .chain(self.ramps.iter().flatten())
            .map(|p| (p[0], p[1]))
    }
}

/// `needed` positions of `[0, BUCKETS)` that no piece of `taken` (sorted, disjoint `(first,
/// end)`) overlaps, taken from the top down, gap by gap; `None` when the gaps are too small.
fn take_gaps(taken: &[(u32, u32)], needed: u32) -> Option<Vec<[u32; 2]>> {
    let mut out = Vec::new();
    let mut left = needed;
    let mut end = BUCKETS;
    let mut below = taken.iter().rev().map(|r| (r.0, r.1)).chain([(0, 0)]);
    while left > 0 {
        let (first, last) = below.next()?;
        if end > last {
            let n = left.min(end - last);
            out.push([end - n, end]);
            left -= n;
        }
        end = end.min(first);
    }
    Some(out)
}

/// Gives every experiment of `running` without a stretch one (in order, from the top of what
/// the others leave in its domain), so that a plan of them stays the same whatever starts or
/// stops later. Running experiments placed by a build without stretches get the ones they had
/// (the same order, the same gaps).
pub fn place(running: &mut [ExperimentSpec]) -> Result<(), AssignmentError> {
    let mut taken: HashMap<String, Vec<(u32, u32)>> = HashMap::new();
    for spec in running.iter() {
        let domain = taken.entry(spec.domain.clone()).or_default();
        domain.extend(spec.pieces());
    }
    for spec in running.iter_mut().filter(|s| s.stretch.is_empty()) {
        spec.ramps.clear();
        let domain = taken.entry(spec.domain.clone()).or_default();
        domain.sort_unstable();
        let needed = spec.needed();
        let free = BUCKETS - domain.iter().map(|(a, b)| b - a).sum::<u32>();
        spec.stretch = take_gaps(domain, needed).ok_or_else(|| AssignmentError::DomainFull {
            domain: spec.domain.clone(),
            id: spec.id.clone(),
            free,
            needed,
        })?;
        domain.extend(spec.stretch.iter().map(|p| (p[0], p[1])));
    }
    Ok(())
}

/// Raises the traffic of the running experiment `id` (one of `running`, every one placed) to
/// `traffic`: the extra buckets come from the gaps the others leave in its domain, as one more
/// raise (see [`ExperimentSpec::ramps`]). Nobody already in it moves: not out, not to another
/// variant. Lowering traffic would drop listeners in the middle of a run, and is refused.
pub fn ramp(running: &mut [ExperimentSpec], id: &str, traffic: f64) -> Result<(), AssignmentError> {
    let Some(at) = running.iter().position(|s| s.id == id) else {
        return Err(AssignmentError::Invalid {
            id: id.into(),
            message: "is not running".into(),
        });
    };
    let invalid = |message: String| AssignmentError::Invalid {
        id: id.into(),
        message,
    };
    if !(traffic > 0.0 && traffic <= 1.0) {
        return Err(invalid(format!("traffic {traffic} is not in (0, 1]")));
    }
    let spec = &running[at];
    let (now, wanted) = (spec.needed(), (traffic * f64::from(BUCKETS)).round() as u32);
    if wanted < now {
        return Err(invalid(format!(
            "traffic can only rise while it runs ({} to {traffic} would drop listeners in the \
             middle of the run): stop it and start a new run",
            spec.traffic
        )));
    }
    let mut taken: Vec<(u32, u32)> = running
        .iter()
        .filter(|s| s.domain == spec.domain)
        .flat_map(ExperimentSpec::pieces)
        .collect();
    taken.sort_unstable();
    let free = BUCKETS - taken.iter().map(|(a, b)| b - a).sum::<u32>();
    let extra = wanted - now;
    let spec = &mut running[at];
    if extra > 0 {
        let pieces = take_gaps(&taken, extra).ok_or_else(|| AssignmentError::DomainFull {
            domain: spec.domain.clone(),
            id: id.into(),
            free,
            needed: extra,
        })?;
        spec.ramps.push(pieces);
    }
    spec.traffic = traffic;
    Ok(())
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum AssignmentError {
    #[error("experiment {id}: {message}")]
    Invalid { id: String, message: String },
    #[error("domain {domain} has {free} free buckets, experiment {id} needs {needed}")]
    DomainFull {
        domain: String,
        id: String,
        free: u32,
        needed: u32,
    },
}

impl encore_core::Coded for AssignmentError {
    fn code(&self) -> encore_core::ErrorCode {
        encore_core::ErrorCode::InvalidArgument
    }

    fn hint(&self) -> Option<String> {
        match self {
            AssignmentError::DomainFull { .. } => {
                Some("stop an experiment of that domain or lower the traffic".into())
            }
            AssignmentError::Invalid { .. } => None,
        }
    }
}

/// One domain: its salt, and who owns which stretch of its bucket order.
///
/// The domain's buckets are put in a random order fixed by its salt (a keyed permutation of
/// `[0, BUCKETS)`, evaluated per bucket, never stored); each experiment takes the next stretch
/// of that order (its stretch, fixed when it starts; see [`place`]), and its variants split the
/// stretch by weight. So a plan costs a
/// few bytes per experiment, however many domains there are, and a look-up is one permutation
/// and a binary search.
#[derive(Debug, Clone)]
struct Domain {
    salt: String,
    key: u64,
    /// `(first position, end position, index into Plan::owners)`, sorted, disjoint
    ranges: Vec<(u32, u32, u32)>,
    /// how many positions are not taken
    free: u32,
}

impl Domain {
    fn owner(&self, bucket: u32) -> Option<u32> {
        let pos = permute(self.key, bucket);
        let i = self.ranges.partition_point(|r| r.1 <= pos);
        self.ranges.get(i).filter(|r| r.0 <= pos).map(|r| r.2)
    }
}

/// A keyed permutation of `[0, BUCKETS)`: a four-round Feistel network on 20 bits (2^20 ≥
/// BUCKETS) with cycle walking, so every bucket gets a distinct position.
pub fn permute(key: u64, bucket: u32) -> u32 {
    const HALF: u32 = 10;
    const MASK: u32 = (1 << HALF) - 1;
    let mut x = bucket;
    loop {
        let (mut l, mut r) = (x >> HALF, x & MASK);
        for round in 0..4u64 {
            let mut z = key ^ (round << 40) ^ u64::from(r);
            z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            (l, r) = (r, l ^ (z as u32 & MASK));
        }
        x = (l << HALF) | r;
        if x < BUCKETS {
            return x;
        }
    }
}

/// The assignment plan of every running experiment, built once per configuration change and
/// then evaluated per request (two hashes and a table look-up per domain).
#[derive(Debug, Clone)]
pub struct Plan {
    domains: HashMap<String, Domain>,
    /// (experiment index, variant index)
    owners: Vec<(usize, usize)>,
    experiments: Vec<ExperimentSpec>,
    holdout_salt: String,
    /// buckets below this (under the holdout salt) are held out of every experiment
    holdout_buckets: u32,
}

/// An assignment of one listener to one experiment.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Assignment {
    pub experiment: String,
    pub variant: String,
}

impl Plan {
    /// Lays out `experiments` (in order) over their domains. `domain_salts` gives each domain's
    /// salt (a domain not listed uses its name); `holdout` is the share of listeners in the
    /// global holdout, drawn with `holdout_salt`.
    pub fn new(
        experiments: &[ExperimentSpec],
        domain_salts: &HashMap<String, String>,
        holdout: f64,
        holdout_salt: &str,
    ) -> Result<Plan, AssignmentError> {
        let mut domains: HashMap<String, Domain> = HashMap::new();
        let mut owners = Vec::new();
        for (e, spec) in experiments.iter().enumerate() {
            let invalid = |message: String| AssignmentError::Invalid {
                id: spec.id.clone(),
                message,
            };
            if !(spec.traffic > 0.0 && spec.traffic <= 1.0) {
                return Err(invalid(format!(
                    "traffic {} is not in (0, 1]",
                    spec.traffic
                )));
            }
            let total: f64 = spec.variants.iter().map(|v| v.weight).sum();
            if spec.variants.len() < 2 || spec.variants.iter().any(|v| v.weight <= 0.0) {
                return Err(invalid(
                    "needs at least two variants with positive weights".into(),
                ));
            }
            let salt = domain_salts
                .get(&spec.domain)
                .cloned()
                .unwrap_or_else(|| spec.domain.clone());
            let domain = domains
                .entry(spec.domain.clone())
                .or_insert_with(|| Domain {
                    key: hash(&salt, "bucket-order"),
                    salt: salt.clone(),
                    ranges: Vec::new(),
                    free: BUCKETS,
                });
            let needed = spec.needed();
            let taken: Vec<(u32, u32)> = domain.ranges.iter().map(|r| (r.0, r.1)).collect();
            let full = || AssignmentError::DomainFull {
                domain: spec.domain.clone(),
                id: spec.id.clone(),
                free: domain.free,
                needed,
            };
            let (stretch, ramps) = if spec.stretch.is_empty() {
                (take_gaps(&taken, needed).ok_or_else(full)?, Vec::new())
            } else {
                (spec.stretch.clone(), spec.ramps.clone())
            };
            let steps: Vec<&Vec<[u32; 2]>> = std::iter::once(&stretch).chain(&ramps).collect();
            let mut mine: Vec<(u32, u32)> = steps
                .iter()
                .flat_map(|s| s.iter())
                .map(|p| (p[0], p[1]))
                .collect();
            mine.sort_unstable();
            let fits = mine
                .iter()
                .all(|&(a, b)| a < b && b <= BUCKETS && !taken.iter().any(|r| a < r.1 && r.0 < b))
                && mine.windows(2).all(|w| w[0].1 <= w[1].0)
                && mine.iter().map(|(a, b)| b - a).sum::<u32>() == needed;
            if !fits {
                return Err(full());
            }
            // variants by weight along the stretch, piece after piece; then each raise of its
            // traffic the same way on its own
            let first_owner = owners.len() as u32;
            owners.extend((0..spec.variants.len()).map(|v| (e, v)));
            for step in steps {
                let size: u32 = step.iter().map(|p| p[1] - p[0]).sum();
                let mut bounds = Vec::with_capacity(spec.variants.len());
                let mut cumulative = 0.0;
                for (v, variant) in spec.variants.iter().enumerate() {
                    cumulative += variant.weight / total;
                    bounds.push(if v + 1 == spec.variants.len() {
                        size
                    } else {
                        (cumulative * f64::from(size)).round() as u32
                    });
                }
                let mut offset = 0u32;
                for piece in step {
                    let mut at = piece[0];
                    while at < piece[1] {
                        let v = bounds.partition_point(|&b| b <= offset);
                        let until = (bounds[v] - offset).min(piece[1] - at);
                        domain.ranges.push((at, at + until, first_owner + v as u32));
                        at += until;
                        offset += until;
                    }
                }
            }
            domain.free -= needed;
            domain.ranges.sort_unstable();
        }
        Ok(Plan {
            domains,
            owners,
            experiments: experiments.to_vec(),
            holdout_salt: holdout_salt.into(),
            holdout_buckets: (holdout.clamp(0.0, 1.0) * f64::from(BUCKETS)).round() as u32,
        })
    }

    /// Whether `user` is in the global holdout.
    pub fn held_out(&self, user: &str) -> bool {
        bucket(&self.holdout_salt, user) < self.holdout_buckets
    }

    /// Every experiment `user` is in, with its variant: at most one per domain.
    pub fn assign(&self, user: &str, context: &Context<'_>) -> Vec<Assignment> {
        if self.held_out(user) {
            return Vec::new();
        }
        let mut out = Vec::new();
        let mut names: Vec<&String> = self.domains.keys().collect();
        names.sort();
        for name in names {
            let d = &self.domains[name];
            let Some(owner) = d.owner(bucket(&d.salt, user)) else {
                continue;
            };
            let (e, v) = self.owners[owner as usize];
            let spec = &self.experiments[e];
            if spec.targeting.admits(context) {
                out.push(Assignment {
                    experiment: spec.id.clone(),
                    variant: spec.variants[v].name.clone(),
                });
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permute_is_a_bijection_on_the_buckets() {
        let mut seen = vec![false; BUCKETS as usize];
        for b in 0..BUCKETS {
            let p = permute(0x1234_5678_9abc_def0, b);
            assert!(p < BUCKETS && !seen[p as usize], "bucket {b} -> {p}");
            seen[p as usize] = true;
        }
    }
}
