//! `encore-registry`: registered models and their numbered versions (artifact, lineage, training
//! configuration, offline metrics), aliases such as `production` with an append-only history of
//! every move, the validation gate that guards `production`, rollback and model cards.
//!
//! Metadata lives in the metadata store (`encore_storage::metadata`: embedded, the SQLite file
//! `<data dir>/registry.sqlite`); artifacts live in the object store (`encore_storage::objects`:
//! embedded, files under the data directory), content-addressed
//! (`models/artifacts/<sha256>.encore`). Every change runs in one serialized write transaction,
//! so concurrent writers (threads or processes) never interleave: an alias never points at two
//! versions and no move is lost from its history.

mod card;
mod error;
mod features;
mod watch;

pub use card::Card;
pub use error::RegistryError;
pub use features::FeatureDefinitions;
pub use watch::{Watcher, webhooks};

use encore_core::time::now_ms;
use encore_models::artifact::Artifact;
use encore_storage::metadata::{Durability, Metadata, Row, Sql};
use encore_storage::objects::ObjectStore;
use encore_storage::params;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

/// The alias the gate guards.
pub const PRODUCTION: &str = "production";

/// What a new version records.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct NewVersion {
    pub kind: String,
    pub checksum: String,
    /// the artifact's path, relative to the data directory (`models/artifacts/<sha256>.encore`)
    pub artifact: String,
    /// the model's configuration (JSON of `ModelConfig`)
    pub config: serde_json::Value,
    /// where the model came from: data snapshot, code version, host, start and end time
    pub lineage: serde_json::Value,
    /// offline metrics on `split`
    pub metrics: BTreeMap<String, f64>,
    /// the popularity baseline's metrics on the same split, for the model card
    pub baseline: BTreeMap<String, f64>,
    /// the evaluation split, e.g. `holdout-20pct-seed42`
    pub split: Option<String>,
    /// users, items, interactions, time range
    pub data: serde_json::Value,
    pub tags: BTreeMap<String, String>,
    pub description: String,
}

/// A registered version.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Version {
    pub model: String,
    pub version: u32,
    pub created_ms: i64,
    /// aliases that point here now
    pub aliases: Vec<String>,
    #[serde(flatten)]
    pub record: NewVersion,
}

/// One move of an alias.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AliasMove {
    pub id: i64,
    pub model: String,
    pub alias: String,
    pub from: Option<u32>,
    pub to: u32,
    pub at_ms: i64,
    pub actor: String,
    pub reason: String,
    /// `promote` or `rollback`
    pub action: String,
    /// the gate was overridden
    pub forced: bool,
}

/// A model and its versions at a glance.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelSummary {
    pub name: String,
    pub versions: u32,
    pub latest: u32,
    pub aliases: BTreeMap<String, u32>,
}

/// The checks a version must pass before `production` may point at it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Gate {
    /// the metric compared with the current production version's, e.g. `ndcg@10`
    pub metric: String,
    /// how much worse than production the candidate may be
    pub tolerance: f64,
    /// the least catalogue coverage a candidate must have (a model that recommends the same
    /// few items to everyone is broken even when its NDCG looks fine)
    pub min_coverage: f64,
}

impl Default for Gate {
    fn default() -> Self {
        Gate {
            metric: "ndcg@10".into(),
            tolerance: 0.005,
            min_coverage: 0.001,
        }
    }
}

/// A request to move an alias.
#[derive(Debug, Clone, Default)]
pub struct Promotion<'a> {
    pub alias: &'a str,
    pub actor: &'a str,
    pub reason: &'a str,
    /// skip the gate; recorded in the history
    pub force: bool,
}

#[derive(Debug, Clone)]
pub struct Registry {
    db: Arc<dyn Metadata>,
    objects: Arc<dyn ObjectStore>,
}

/// Where artifacts are kept in the object store.
pub const ARTIFACTS: &str = "models/artifacts/";

/// Where the HNSW graph built from the artifact with `checksum` is kept between loads (in the
/// same object store; it goes when the artifact goes).
pub fn index_key(checksum: &str) -> String {
    format!("models/indexes/{checksum}.usearch")
}

/// An artifact in the object store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredArtifact {
    /// its key (`models/artifacts/<sha256>.encore`), what a version records
    pub key: String,
    /// sha256 of its content (hex)
    pub checksum: String,
    pub bytes: u64,
}

/// The schema's migration steps, in order (append; never edit a released step).
const MIGRATIONS: &[&str] = &[SCHEMA, FEATURES_SCHEMA];

const FEATURES_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS feature_definitions (
    version     INTEGER PRIMARY KEY,
    created_ms  INTEGER NOT NULL,
    origin      TEXT NOT NULL,
    text        TEXT NOT NULL
);
";

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS models (
    name        TEXT PRIMARY KEY,
    created_ms  INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS versions (
    model       TEXT NOT NULL REFERENCES models(name),
    version     INTEGER NOT NULL,
    created_ms  INTEGER NOT NULL,
    record      TEXT NOT NULL,
    checksum    TEXT NOT NULL,
    PRIMARY KEY (model, version)
);
CREATE TABLE IF NOT EXISTS aliases (
    model       TEXT NOT NULL REFERENCES models(name),
    alias       TEXT NOT NULL,
    version     INTEGER NOT NULL,
    PRIMARY KEY (model, alias)
);
CREATE TABLE IF NOT EXISTS erasures (
    model       TEXT NOT NULL,
    version     INTEGER NOT NULL,
    listener    TEXT NOT NULL,
    at_ms       INTEGER NOT NULL,
    PRIMARY KEY (model, version, listener)
);
CREATE TABLE IF NOT EXISTS alias_history (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    model       TEXT NOT NULL,
    alias       TEXT NOT NULL,
    from_version INTEGER,
    to_version  INTEGER NOT NULL,
    at_ms       INTEGER NOT NULL,
    actor       TEXT NOT NULL,
    reason      TEXT NOT NULL,
    action      TEXT NOT NULL,
    forced      INTEGER NOT NULL
);
";

/// An artifact path as stored and shown: relative to the data directory, so a copied or moved
/// data directory serves its own artifacts and no answer shows a host path. Paths recorded
/// absolute by earlier versions are read the same way.
pub fn relative_artifact(artifact: &str) -> String {
    const DIR: &str = "models/artifacts/";
    match artifact.rfind(DIR) {
        Some(at) if Path::new(artifact).is_absolute() || at > 0 => artifact[at..].to_owned(),
        _ => artifact.to_owned(),
    }
}

fn parse_record(json: &str) -> Result<NewVersion, serde_json::Error> {
    let mut r: NewVersion = serde_json::from_str(json)?;
    r.artifact = relative_artifact(&r.artifact);
    Ok(r)
}

/// Model and alias names: letters, digits, `-`, `_`, `.`; 1 to 64 characters.
pub fn check_name(what: &str, name: &str) -> Result<(), RegistryError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(RegistryError::InvalidName {
            what: what.into(),
            name: name.into(),
        })
    }
}

impl Registry {
    /// Opens (creating if needed) the registry of the data directory `root`, in the metadata
    /// store the data directory uses.
    pub fn open(root: &Path) -> Result<Registry, RegistryError> {
        let db = encore_storage::metadata::open(root, "registry", Durability::Full)?;
        Registry::with_stores(db, encore_storage::objects::open(root)?)
    }

    /// The registry kept in `db`, its artifacts in `objects`.
    pub fn with_stores(
        db: Arc<dyn Metadata>,
        objects: Arc<dyn ObjectStore>,
    ) -> Result<Registry, RegistryError> {
        db.migrate("registry", MIGRATIONS)?;
        Ok(Registry { db, objects })
    }

    /// Where artifacts and the indexes built from them are kept.
    pub fn objects(&self) -> &Arc<dyn ObjectStore> {
        &self.objects
    }

    /// Stores `artifact` content-addressed (a second store of the same content writes nothing).
    pub fn store_artifact(&self, artifact: &Artifact) -> Result<StoredArtifact, RegistryError> {
        let (bytes, checksum) = artifact.to_bytes();
        let key = format!("{ARTIFACTS}{checksum}.encore");
        if !self.objects.exists(&key)? {
            self.objects.put(&key, &bytes)?;
        }
        Ok(StoredArtifact {
            key,
            checksum,
            bytes: bytes.len() as u64,
        })
    }

    /// Reads and verifies `v`'s artifact; errors name where it is kept.
    pub fn load_artifact(&self, v: &Version) -> Result<Artifact, RegistryError> {
        let key = &v.record.artifact;
        let at = self.objects.describe(key);
        let bytes = self
            .objects
            .get(key)?
            .ok_or_else(|| RegistryError::NotFound {
                what: format!("the artifact of {}@{} ({at})", v.model, v.version),
            })?;
        Ok(Artifact::from_bytes(&bytes, Path::new(&at))?)
    }

    /// Records that `model@version` was trained on data of an erased listener (`listener` is
    /// the erasure ledger's keyed hash, never the id): its card recommends retraining.
    pub fn flag_erasure(
        &self,
        model: &str,
        version: u32,
        listener: &str,
    ) -> Result<(), RegistryError> {
        self.db.write(|tx| {
            tx.execute(
                "INSERT INTO erasures (model, version, listener, at_ms) VALUES (?1, ?2, ?3, ?4) \
                 ON CONFLICT DO NOTHING",
                params![model, version, listener, now_ms()],
            )
        })?;
        Ok(())
    }

    /// How many erased listeners' data `model@version` was trained on.
    pub fn erasures(&self, model: &str, version: u32) -> Result<u32, RegistryError> {
        self.db.read(|q| {
            Ok(q.query_one(
                "SELECT COUNT(*) FROM erasures WHERE model = ?1 AND version = ?2",
                params![model, version],
            )?
            .get(0)?)
        })
    }

    /// Every version, of every model.
    pub fn all_versions(&self) -> Result<Vec<Version>, RegistryError> {
        let mut out = Vec::new();
        for m in self.list()? {
            out.extend(self.versions(&m.name)?);
        }
        Ok(out)
    }

    /// Points `model@version` at a rewritten artifact (`artifact` under the data directory,
    /// `checksum` its content address), as an erasure does; the old file goes when no other
    /// version uses it.
    pub fn replace_artifact(
        &mut self,
        model: &str,
        version: u32,
        artifact: &str,
        checksum: &str,
    ) -> Result<(), RegistryError> {
        let (v, shared) = self.db.write(|tx| {
            let v =
                Self::version_in(tx, model, version)?.ok_or_else(|| RegistryError::NotFound {
                    what: format!("model version {model}@{version}"),
                })?;
            let record = NewVersion {
                artifact: relative_artifact(artifact),
                checksum: checksum.to_owned(),
                ..v.record.clone()
            };
            tx.execute(
                "UPDATE versions SET record = ?3, checksum = ?4 WHERE model = ?1 AND version = ?2",
                params![model, version, serde_json::to_string(&record)?, checksum],
            )?;
            let shared = Self::versions_sharing(tx, &v.record.checksum)?;
            Ok::<_, RegistryError>((v, shared))
        })?;
        if shared == 0 && v.record.checksum != checksum {
            self.drop_artifact(&v.record);
        }
        Ok(())
    }

    /// Deletes an artifact no version uses any more, and its index; a failure leaves an orphan,
    /// nothing worse.
    fn drop_artifact(&self, record: &NewVersion) {
        let _ = self.objects.delete(&record.artifact);
        let _ = self.objects.delete(&index_key(&record.checksum));
    }

    /// Registers a new version of `model` (created on first use); returns its number.
    pub fn register(&mut self, model: &str, record: &NewVersion) -> Result<u32, RegistryError> {
        check_name("model", model)?;
        let stored = serde_json::to_string(&NewVersion {
            artifact: relative_artifact(&record.artifact),
            ..record.clone()
        })?;
        self.db.write(|tx| {
            let now = now_ms();
            tx.execute(
                "INSERT INTO models (name, created_ms) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
                params![model, now],
            )?;
            let next: u32 = tx
                .query_one(
                    "SELECT COALESCE(MAX(version), 0) + 1 FROM versions WHERE model = ?1",
                    params![model],
                )?
                .get(0)?;
            tx.execute(
                "INSERT INTO versions (model, version, created_ms, record, checksum) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![model, next, now, stored, &record.checksum],
            )?;
            Ok(next)
        })
    }

    pub fn list(&self) -> Result<Vec<ModelSummary>, RegistryError> {
        let rows = self.db.read(|q| {
            q.query(
                "SELECT m.name, COUNT(v.version), COALESCE(MAX(v.version), 0) \
                 FROM models m LEFT JOIN versions v ON v.model = m.name \
                 GROUP BY m.name ORDER BY m.name",
                &[],
            )
        })?;
        rows.iter()
            .map(|r| {
                let name: String = r.get(0)?;
                Ok(ModelSummary {
                    aliases: self.aliases(&name)?,
                    name,
                    versions: r.get(1)?,
                    latest: r.get(2)?,
                })
            })
            .collect()
    }

    /// Every alias of `model` and the version it points to.
    pub fn aliases(&self, model: &str) -> Result<BTreeMap<String, u32>, RegistryError> {
        self.db.read(|q| Self::aliases_in(q, model))
    }

    fn aliases_in(q: &mut dyn Sql, model: &str) -> Result<BTreeMap<String, u32>, RegistryError> {
        q.query(
            "SELECT alias, version FROM aliases WHERE model = ?1 ORDER BY alias",
            params![model],
        )?
        .iter()
        .map(|r| Ok((r.get(0)?, r.get(1)?)))
        .collect()
    }

    /// Every version of `model`, oldest first.
    pub fn versions(&self, model: &str) -> Result<Vec<Version>, RegistryError> {
        self.db.read(|q| {
            let exists = q
                .query_opt("SELECT 1 FROM models WHERE name = ?1", params![model])?
                .is_some();
            if !exists {
                return Err(RegistryError::NotFound {
                    what: format!("model {model}"),
                });
            }
            let aliases = Self::aliases_in(q, model)?;
            q.query(
                "SELECT version, created_ms, record FROM versions WHERE model = ?1 ORDER BY version",
                params![model],
            )?
            .iter()
            .map(|r| {
                let version: u32 = r.get(0)?;
                Ok(Version {
                    model: model.into(),
                    version,
                    created_ms: r.get(1)?,
                    aliases: aliases
                        .iter()
                        .filter(|(_, v)| **v == version)
                        .map(|(a, _)| a.clone())
                        .collect(),
                    record: parse_record(&r.get::<String>(2)?)?,
                })
            })
            .collect()
        })
    }

    /// `NAME`, `NAME@3` or `NAME@production`: the latest version, a number, or an alias.
    pub fn resolve(&self, reference: &str) -> Result<Version, RegistryError> {
        let (model, which) = match reference.split_once('@') {
            Some((m, w)) => (m, Some(w)),
            None => (reference, None),
        };
        let versions = self.versions(model)?;
        let found = match which {
            None => versions.last().cloned(),
            Some(w) => match w.parse::<u32>() {
                Ok(n) => versions.iter().find(|v| v.version == n).cloned(),
                Err(_) => versions
                    .iter()
                    .find(|v| v.aliases.iter().any(|a| a == w))
                    .cloned(),
            },
        };
        found.ok_or_else(|| RegistryError::NotFound {
            what: format!("model version {reference}"),
        })
    }

    /// The checks of `gate` that `candidate` fails against `current` (empty: it passes).
    pub fn gate_failures(
        &self,
        gate: &Gate,
        candidate: &Version,
        current: Option<&Version>,
    ) -> Vec<String> {
        let mut failures = self.sanity_failures(gate, candidate);
        failures.extend(Self::metric_failures(gate, candidate, current));
        failures
    }

    /// The artifact loads (its checksum holds), its factors are finite, its coverage is above
    /// the floor.
    fn sanity_failures(&self, gate: &Gate, candidate: &Version) -> Vec<String> {
        let mut failures = Vec::new();
        let v = candidate.version;
        match self.load_artifact(candidate) {
            Err(e) => failures.push(format!("the artifact of v{v} does not load: {e}")),
            Ok(a) => {
                let mut vectors = [a.model.user_vectors(), a.model.item_vectors()].into_iter();
                if vectors.any(|x| x.is_some_and(|(x, _)| x.iter().any(|f| !f.is_finite()))) {
                    failures.push(format!("v{v} has NaN or infinite factors"));
                }
            }
        }
        let coverage = candidate
            .record
            .metrics
            .iter()
            .find(|(k, _)| k.starts_with("coverage@"));
        if let Some((name, &c)) = coverage
            && c < gate.min_coverage
        {
            failures.push(format!(
                "{name} of v{v} is {c:.4}, below the floor {:.4}",
                gate.min_coverage
            ));
        }
        failures
    }

    /// The gate metric is there and not worse than the current version's minus the tolerance,
    /// on the same split.
    fn metric_failures(gate: &Gate, candidate: &Version, current: Option<&Version>) -> Vec<String> {
        let mut failures = Vec::new();
        let v = candidate.version;
        let metric = &gate.metric;
        match candidate.record.metrics.get(metric) {
            None => failures.push(format!(
                "v{v} has no offline {metric} (train without --no-eval)"
            )),
            Some(&m) => {
                if let Some(cur) = current
                    && let Some(&p) = cur.record.metrics.get(metric)
                    && m < p - gate.tolerance
                {
                    failures.push(format!(
                        "{metric} of v{v} is {m:.4}, below v{}'s {p:.4} minus the tolerance {} (at least {:.4} needed)",
                        cur.version,
                        gate.tolerance,
                        p - gate.tolerance
                    ));
                }
                if let Some(cur) = current
                    && candidate.record.split != cur.record.split
                {
                    failures.push(format!(
                        "v{v} was evaluated on split {:?}, v{} on {:?}: the metrics do not compare",
                        candidate.record.split, cur.version, cur.record.split
                    ));
                }
            }
        }
        failures
    }

    /// Points `alias` of `model` at `version`. Moving `production` goes through `gate` unless
    /// forced; the move is recorded in the history either way.
    pub fn promote(
        &mut self,
        model: &str,
        version: u32,
        how: &Promotion<'_>,
        gate: &Gate,
    ) -> Result<AliasMove, RegistryError> {
        check_name("alias", how.alias)?;
        if how.force && how.reason.trim().is_empty() {
            return Err(RegistryError::ReasonRequired);
        }
        let candidate = self.resolve(&format!("{model}@{version}"))?;
        let gated = how.alias == PRODUCTION && !how.force;
        // the sanity checks read the artifact: before the write transaction
        let mut failures = if gated {
            self.sanity_failures(gate, &candidate)
        } else {
            Vec::new()
        };
        self.db.write(|tx| {
            let from: Option<u32> = tx
                .query_opt(
                    "SELECT version FROM aliases WHERE model = ?1 AND alias = ?2",
                    params![model, how.alias],
                )?
                .map(|r| r.get(0))
                .transpose()?;
            if gated {
                let current = match from {
                    Some(f) => Self::version_in(tx, model, f)?,
                    None => None,
                };
                failures.extend(Self::metric_failures(gate, &candidate, current.as_ref()));
                if !failures.is_empty() {
                    return Err(RegistryError::GateRefused {
                        model: model.into(),
                        version,
                        failures: std::mem::take(&mut failures),
                    });
                }
            }
            Self::record_move(tx, model, how, from, version, "promote")
        })
    }

    fn version_in(
        tx: &mut dyn Sql,
        model: &str,
        version: u32,
    ) -> Result<Option<Version>, RegistryError> {
        let Some(r) = tx.query_opt(
            "SELECT created_ms, record FROM versions WHERE model = ?1 AND version = ?2",
            params![model, version],
        )?
        else {
            return Ok(None);
        };
        Ok(Some(Version {
            model: model.into(),
            version,
            created_ms: r.get(0)?,
            aliases: Vec::new(),
            record: parse_record(&r.get::<String>(1)?)?,
        }))
    }

    /// How many versions point at the artifact with `checksum`.
    fn versions_sharing(tx: &mut dyn Sql, checksum: &str) -> Result<u32, RegistryError> {
        Ok(tx
            .query_one(
                "SELECT COUNT(*) FROM versions WHERE checksum = ?1",
                params![checksum],
            )?
            .get(0)?)
    }

    fn record_move(
        tx: &mut dyn Sql,
        model: &str,
        how: &Promotion<'_>,
        from: Option<u32>,
        to: u32,
        action: &str,
    ) -> Result<AliasMove, RegistryError> {
        let at = now_ms();
        tx.execute(
            "INSERT INTO aliases (model, alias, version) VALUES (?1, ?2, ?3) \
             ON CONFLICT (model, alias) DO UPDATE SET version = excluded.version",
            params![model, how.alias, to],
        )?;
        let id: i64 = tx
            .query_one(
                "INSERT INTO alias_history (model, alias, from_version, to_version, at_ms, actor, \
                 reason, action, forced) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) RETURNING id",
                params![
                    model, how.alias, from, to, at, how.actor, how.reason, action, how.force
                ],
            )?
            .get(0)?;
        Ok(AliasMove {
            id,
            model: model.into(),
            alias: how.alias.into(),
            from,
            to,
            at_ms: at,
            actor: how.actor.into(),
            reason: how.reason.into(),
            action: action.into(),
            forced: how.force,
        })
    }

    /// Moves `alias` back to the version it pointed at before the promotion that brought it to
    /// its current version. Not gated: it returns to a version that already served.
    pub fn rollback(
        &mut self,
        model: &str,
        how: &Promotion<'_>,
    ) -> Result<AliasMove, RegistryError> {
        self.db.write(|tx| {
            let current: u32 = tx
                .query_opt(
                    "SELECT version FROM aliases WHERE model = ?1 AND alias = ?2",
                    params![model, how.alias],
                )?
                .ok_or_else(|| RegistryError::NotFound {
                    what: format!("alias {} of model {model}", how.alias),
                })?
                .get(0)?;
            let previous: Option<u32> = tx
                .query_opt(
                    "SELECT from_version FROM alias_history \
                     WHERE model = ?1 AND alias = ?2 AND to_version = ?3 AND action = 'promote' \
                     ORDER BY id DESC LIMIT 1",
                    params![model, how.alias, current],
                )?
                .map(|r| r.get::<Option<u32>>(0))
                .transpose()?
                .flatten();
            let Some(previous) = previous else {
                return Err(RegistryError::NothingToRollBack {
                    model: model.into(),
                    alias: how.alias.into(),
                    version: current,
                });
            };
            Self::record_move(tx, model, how, Some(current), previous, "rollback")
        })
    }

    /// Every alias move of `model`, oldest first.
    pub fn history(&self, model: &str) -> Result<Vec<AliasMove>, RegistryError> {
        self.db.read(|q| {
            if q.query_opt("SELECT 1 FROM models WHERE name = ?1", params![model])?
                .is_none()
            {
                return Err(RegistryError::NotFound {
                    what: format!("model {model}"),
                });
            }
            Self::moves(q, "WHERE model = ?1", params![model])
        })
    }

    /// Every alias move (of any model) after history id `after`: what a watcher has not seen.
    pub fn moves_since(&self, after: i64) -> Result<Vec<AliasMove>, RegistryError> {
        self.db
            .read(|q| Self::moves(q, "WHERE id > ?1", params![after]))
    }

    fn moves(
        q: &mut dyn Sql,
        filter: &str,
        args: &[encore_storage::metadata::Value],
    ) -> Result<Vec<AliasMove>, RegistryError> {
        let rows = q.query(
            &format!(
                "SELECT id, model, alias, from_version, to_version, at_ms, actor, reason, action, \
                 forced FROM alias_history {filter} ORDER BY id"
            ),
            args,
        )?;
        rows.iter().map(alias_move).collect()
    }

    /// Deletes a version that no alias points at; its artifact goes too unless another version
    /// shares it. Version numbers are never reused.
    pub fn delete(&mut self, model: &str, version: u32) -> Result<(), RegistryError> {
        let (v, shared) = self.db.write(|tx| {
            let pointing: Vec<String> = tx
                .query(
                    "SELECT alias FROM aliases WHERE model = ?1 AND version = ?2",
                    params![model, version],
                )?
                .iter()
                .map(|r| r.get(0))
                .collect::<Result<_, _>>()?;
            if !pointing.is_empty() {
                return Err(RegistryError::InUse {
                    model: model.into(),
                    version,
                    aliases: pointing,
                });
            }
            let v =
                Self::version_in(tx, model, version)?.ok_or_else(|| RegistryError::NotFound {
                    what: format!("model version {model}@{version}"),
                })?;
            tx.execute(
                "DELETE FROM versions WHERE model = ?1 AND version = ?2",
                params![model, version],
            )?;
            let shared = Self::versions_sharing(tx, &v.record.checksum)?;
            Ok::<_, RegistryError>((v, shared))
        })?;
        if shared == 0 {
            self.drop_artifact(&v.record);
        }
        Ok(())
    }
}

fn alias_move(r: &Row) -> Result<AliasMove, RegistryError> {
    Ok(AliasMove {
        id: r.get(0)?,
        model: r.get(1)?,
        alias: r.get(2)?,
        from: r.get(3)?,
        to: r.get(4)?,
        at_ms: r.get(5)?,
        actor: r.get(6)?,
        reason: r.get(7)?,
        action: r.get(8)?,
        forced: r.get(9)?,
    })
}
