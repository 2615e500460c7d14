//! Serving every surface: the model in use (and the aliases experiments treat listeners with),
//! experiment assignment and treatments, feature-driven demotions, the slate cache, impressions
//! as typed events, self-tracing; fold-in of stored plays; loading a registry version and the
//! hot swap when an alias moves.
//!
//! Operations are blocking and transport-neutral: an adapter admits a request
//! ([`Serving::admit`]), runs the operation where blocking is fine, and renders the result.

use crate::AppError;
use crate::admission::{Limit, Permit};
use crate::experiments::{Experiments, Running};
use crate::features::OnlineFeatures;
use crate::ingest::{Pipeline, Subscriber};
use crate::telemetry::Telemetry;
use crate::worker::{BatchWriter, Batching};
use arrow::array::{Array, BooleanArray, Int64Array, RecordBatch, StringArray, UInt32Array};
use encore_core::ErrorCode;
use encore_core::event::{Consent, ExperimentAssignment, InteractionEvent, InteractionKind};
use encore_ingest::{Ingestor, Table};
use encore_serving::{ExperimentArm, Rules, Served, ServingModel, Slate};
use prometheus_client::metrics::counter::Counter;
use std::sync::{Arc, Weak};

/// What serving counts (exported as metrics by the server).
#[derive(Debug, Clone, Default)]
pub struct ServingCounters {
    /// requests refused over the in-flight limit
    pub shed: Counter,
    pub candidates_scored: Counter,
    pub impressions_logged: Counter,
    /// impressions not logged (queue full, or the write failed)
    pub impressions_dropped: Counter,
    /// listeners served the default model because their variant's alias was not loaded
    pub treatments_unavailable: Counter,
}

/// The served model and everything a list is made with.
#[derive(Debug)]
pub struct Serving {
    pub served: Arc<Served>,
    pub limit: Limit,
    pub experiments: Option<Arc<Experiments>>,
    pub features: Option<Arc<OnlineFeatures>>,
    pub telemetry: Option<Arc<Telemetry>>,
    /// where impressions of lists served to known listeners go (none: not logged)
    impressions: Option<BatchWriter<InteractionEvent>>,
    pub counters: ServingCounters,
}

/// A home list request, validated by the adapter.
#[derive(Debug, Clone)]
pub struct HomeRequest {
    pub user: String,
    pub n: usize,
    pub exclude_seen: bool,
    pub rules: Rules,
    /// for assignment and the impression events
    pub platform: Option<String>,
    pub country: Option<String>,
}

/// A home request resolved against the running experiments: the rules after treatments, the
/// model alias, the arms served, and the cache key.
#[derive(Debug)]
pub struct Home {
    req: HomeRequest,
    arms: Vec<ExperimentArm>,
    model: Option<Arc<ServingModel>>,
    shape: String,
    started: (i64, std::time::Instant),
}

const HOME_ROUTE: &str = "GET /v1/users/{id}/recommendations";

impl Serving {
    pub fn new(served: Arc<Served>, max_in_flight: usize) -> Serving {
        Serving {
            served,
            limit: Limit::new(max_in_flight),
            experiments: None,
            features: None,
            telemetry: None,
            impressions: None,
            counters: ServingCounters::default(),
        }
    }

    /// Logs impressions (and exposures) of lists served to known listeners through `pipeline`,
    /// in batches of up to 5,000 events or 200 ms.
    pub fn log_impressions(mut self, pipeline: &Arc<Pipeline>) -> Result<Serving, AppError> {
        let (pipeline, counters) = (Arc::clone(pipeline), self.counters.clone());
        let writer = BatchWriter::start(
            "impressions-writer",
            Batching {
                queue: 4_096,
                max_items: 5_000,
                linger: std::time::Duration::from_millis(200),
            },
            move |events: Vec<InteractionEvent>| {
                let n = events.len() as u64;
                let written = encore_core::arrow::interaction_batch(&events)
                    .map_err(|e| AppError::new(ErrorCode::Internal, e.to_string()))
                    .and_then(|b| Ok(pipeline.ingest_rows(Table::Interaction, &b)?));
                match written {
                    Ok(o) => counters.impressions_logged.inc_by(o.accepted),
                    Err(e) => {
                        tracing::warn!("impressions not logged: {e}");
                        counters.impressions_dropped.inc_by(n)
                    }
                };
            },
        )
        .map_err(|e| AppError::new(ErrorCode::Internal, format!("impressions writer: {e}")))?;
        self.impressions = Some(writer);
        Ok(self)
    }

    /// A slot for one request, or `unavailable` (counted) when the limit is reached.
    pub fn admit(&self) -> Result<Permit, AppError> {
        self.limit.try_acquire().ok_or_else(|| {
            self.counters.shed.inc();
            AppError::busy(format!(
                "over capacity: {} recommendation requests in flight",
                self.limit.max()
            ))
        })
    }

    /// The model to score with: `alias`'s when given, else the default one.
    fn model(&self, alias: Option<Arc<ServingModel>>) -> Result<Arc<ServingModel>, AppError> {
        let m = alias.or_else(|| self.served.get()).ok_or_else(|| {
            AppError::busy("no model is loaded yet (train one and move its `production` alias)")
        })?;
        self.counters.candidates_scored.inc_by(m.n_items() as u64);
        Ok(m)
    }

    fn running(&self) -> Option<Arc<Running>> {
        self.experiments.as_ref().map(|e| e.current())
    }

    /// Assigns the listener to the running experiments and applies their treatments.
    pub fn resolve_home(&self, mut req: HomeRequest) -> Home {
        let started = (
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as i64),
            std::time::Instant::now(),
        );
        let context = encore_experiments::assignment::Context {
            country: req.country.as_deref().unwrap_or("ZZ"),
            platform: req.platform.as_deref().unwrap_or("other"),
            tier: "unknown",
            new_user: false,
        };
        let assigned = self
            .running()
            .map(|r| r.assign(&req.user, &context))
            .unwrap_or_default();
        let mut alias: Option<(String, Arc<ServingModel>)> = None;
        let mut arms = Vec::new();
        for (a, t) in &assigned {
            // a model alias that is not loaded (yet): the listener gets the default list and
            // is not counted as exposed, rather than counted in an arm they did not get
            if let Some(wanted) = t.model_alias.as_deref()
                && wanted != encore_registry::PRODUCTION
            {
                match self.served.get_alias(wanted) {
                    Some(m) => alias = Some((wanted.to_owned(), m)),
                    None => {
                        self.counters.treatments_unavailable.inc();
                        continue;
                    }
                }
            }
            if let Some(d) = t.diversity {
                req.rules.relevance_weight = d.clamp(0.0, 1.0);
            }
            if let Some(c) = t.artist_cap {
                req.rules.artist_cap = c;
            }
            arms.push(ExperimentArm {
                experiment: a.experiment.clone(),
                variant: a.variant.clone(),
            });
        }
        let r = &req.rules;
        let shape = format!(
            "n={}&exclude_seen={}&artist_cap={}&weight={}&explicit={}&alias={}",
            req.n,
            req.exclude_seen,
            r.artist_cap,
            r.relevance_weight,
            r.allow_explicit,
            alias.as_ref().map_or("", |(a, _)| a.as_str())
        );
        Home {
            req,
            arms,
            model: alias.map(|(_, m)| m),
            shape,
            started,
        }
    }

    /// The listener's cached list for this request (same model version, no plays since),
    /// served (impressions, trace) as if computed; cheap enough for any thread.
    pub fn cached_home(&self, home: &Home) -> Option<Slate> {
        let model = home.model.clone().or_else(|| self.served.get())?;
        let slate = self
            .served
            .cache
            .get(&home.req.user, &home.shape, model.version)?;
        Some(self.finish_home(home, slate, true))
    }

    /// Computes the home list (blocking: call it where blocking is fine, under a permit).
    pub fn compute_home(&self, home: Home) -> Result<Slate, AppError> {
        let m = self.model(home.model.clone())?;
        let user = &home.req.user;
        let slate = if self.served.consent.withdrawn(user) {
            m.popular(home.req.n, &home.req.rules, encore_serving::NOTE_WITHDRAWN)?
        } else {
            let recent = self.served.recent.get(user);
            // the listener's feature-driven demotions (e.g. artists they skip)
            let mut rules = home.req.rules.clone();
            if let Some(f) = &self.features {
                rules.artist_demotion = f.demotions(user);
            }
            m.home(user, &recent, home.req.n, home.req.exclude_seen, &rules)?
        };
        self.served
            .cache
            .put(user, &home.shape, slate.model_version, &slate);
        Ok(self.finish_home(&home, slate, false))
    }

    fn finish_home(&self, home: &Home, mut slate: Slate, cached: bool) -> Slate {
        // a list made without the listener's history applied no treatment: not an exposure
        slate.experiments = if slate.note.is_none() {
            home.arms.clone()
        } else {
            Vec::new()
        };
        let (platform, country) = (home.req.platform.as_deref(), home.req.country.as_deref());
        self.impressions(&home.req.user, &slate, platform, country);
        if let Some(t) = &self.telemetry {
            t.own_request(HOME_ROUTE, &home.req.user, &slate, home.started, cached);
        }
        slate
    }

    /// A list from seed items; with a known listener and no seeds, their home list.
    pub fn seeded(
        &self,
        user: Option<&str>,
        seeds: &[String],
        n: usize,
        rules: &Rules,
    ) -> Result<Slate, AppError> {
        let m = self.model(None)?;
        let served = &self.served;
        let slate = match user.filter(|u| !served.consent.withdrawn(u)) {
            Some(u) if seeds.is_empty() => {
                let recent = served.recent.get(u);
                if m.user_index(u).is_some() || !recent.is_empty() {
                    m.home(u, &recent, n, true, rules)?
                } else {
                    m.from_seeds(seeds, n, rules)?
                }
            }
            _ => m.from_seeds(seeds, n, rules)?,
        };
        if let Some(u) = user {
            self.impressions(u, &slate, None, None);
        }
        Ok(slate)
    }

    pub fn similar(&self, item: &str, n: usize, rules: &Rules) -> Result<Slate, AppError> {
        Ok(self.model(None)?.similar(item, n, rules)?)
    }

    pub fn radio(
        &self,
        seeds: &[String],
        exclude: &[String],
        n: usize,
        rules: &Rules,
    ) -> Result<Slate, AppError> {
        Ok(self.model(None)?.radio(seeds, exclude, n, rules)?)
    }

    pub fn mixes(
        &self,
        user: &str,
        max: usize,
        size: usize,
    ) -> Result<encore_serving::Mixes, AppError> {
        let m = self.model(None)?;
        if self.served.consent.withdrawn(user) {
            return Err(encore_serving::ServingError::NotPersonalized(user.to_owned()).into());
        }
        let recent = self.served.recent.get(user);
        Ok(m.mixes(user, &recent, max, size)?)
    }

    pub fn blend(
        &self,
        users: &[String],
        n: usize,
        rules: &Rules,
    ) -> Result<encore_serving::Blend, AppError> {
        let m = self.model(None)?;
        if let Some(u) = users.iter().find(|u| self.served.consent.withdrawn(u)) {
            return Err(encore_serving::ServingError::NotPersonalized(u.clone()).into());
        }
        let members: Vec<(String, Vec<(String, u32)>)> = users
            .iter()
            .map(|u| (u.clone(), self.served.recent.get(u)))
            .collect();
        Ok(m.blend(&members, n, rules)?)
    }

    /// Hands one `exposure` per variant and one `impression` per item of `slate` to the
    /// impression writer; a full queue drops them (counted), it never slows the response.
    fn impressions(
        &self,
        user: &str,
        slate: &Slate,
        platform: Option<&str>,
        country: Option<&str>,
    ) {
        let Some(writer) = &self.impressions else {
            return;
        };
        let events = impression_events(user, slate, platform, country);
        let n = events.len() as u64;
        if writer.try_send(events).is_err() {
            self.counters.impressions_dropped.inc_by(n);
        }
    }
}

/// The events a served list leaves: exposures (one per variant; the id is the same every time,
/// so the event log's deduplication keeps the first) and impressions (one per item, in context
/// `recommendation` with the model version as `context_id`, e.g. `als@3`).
pub fn impression_events(
    user: &str,
    slate: &Slate,
    platform: Option<&str>,
    country: Option<&str>,
) -> Vec<InteractionEvent> {
    use encore_ingest::import::content_uuid;
    let now = encore_core::time::now_ms();
    // an unknown platform is "other", as the contract would otherwise refuse the events
    let platform = platform
        .and_then(encore_core::event::Platform::parse)
        .unwrap_or(encore_core::event::Platform::Other);
    let event = |id: String, kind: InteractionKind| InteractionEvent {
        event_id: id.into(),
        schema_version: 1,
        user_id: user.into(),
        session_id: None,
        ts_ms: now,
        kind,
        item_id: None,
        item_type: None,
        context_type: None,
        context_id: None,
        request_id: Some(slate.request_id.clone()),
        position: None,
        propensity: None,
        experiments: Vec::new(),
        count: None,
        query: None,
        value: None,
        platform,
        country: country.unwrap_or("ZZ").to_owned(),
        tier: encore_core::event::Tier::Unknown,
        consent: Consent::default(),
    };
    let mut out = Vec::with_capacity(slate.items.len() + slate.experiments.len());
    for arm in &slate.experiments {
        let mut e = event(
            content_uuid(&format!("exposure:{}:{}", arm.experiment, user)),
            InteractionKind::Exposure,
        );
        e.experiments = vec![ExperimentAssignment {
            id: arm.experiment.clone(),
            variant: arm.variant.clone(),
        }];
        out.push(e);
    }
    for it in &slate.items {
        let mut e = event(
            content_uuid(&format!("impression:{}:{}", slate.request_id, it.position)),
            InteractionKind::Impression,
        );
        e.item_id = Some(it.id.as_str().into());
        e.item_type = Some(encore_core::event::ItemType::Track);
        // the recommender that made the list, as monitors compare what each version serves
        e.context_type = Some(encore_core::event::ContextType::Recommendation);
        e.context_id = Some(format!("{}@{}", slate.model, slate.model_version));
        e.position = Some(it.position);
        e.propensity = Some(it.propensity);
        // the model's score, for monitors of what each version serves
        e.value = it.score.is_finite().then(|| f64::from(it.score));
        out.push(e);
    }
    out
}

/// Fold-in: stored plays are remembered for the listener's next lists (streams for taste,
/// skips only to leave them out), with what each listener allows. A play without
/// personalization consent, in a private session or excluded from taste is not remembered.
#[derive(Debug)]
pub struct RecentPlays(pub Arc<Served>);

impl Subscriber for RecentPlays {
    fn name(&self) -> &'static str {
        "recent-plays"
    }

    fn stored(&self, table: Table, rows: &RecordBatch) {
        if table != Table::Playback {
            return;
        }
        if let Err(e) = remember(&self.0, rows) {
            tracing::error!("fold-in: stored rows unreadable: {e}");
        }
    }
}

fn remember(served: &Served, b: &RecordBatch) -> Result<(), String> {
    fn col<'a, T: 'static>(b: &'a RecordBatch, name: &str) -> Result<&'a T, String> {
        b.column_by_name(name)
            .and_then(|c| c.as_any().downcast_ref::<T>())
            .ok_or_else(|| format!("column {name} is missing or of another type"))
    }
    let user: &StringArray = col(b, "user_id")?;
    let item: &StringArray = col(b, "item_id")?;
    let played: &UInt32Array = col(b, "ms_played")?;
    let ts: &Int64Array = col(b, "ts_end_ms")?;
    let private: &BooleanArray = col(b, "private_session")?;
    let excluded: &BooleanArray = col(b, "taste_excluded")?;
    let consent: &arrow::array::StructArray = col(b, "consent")?;
    let personalization = consent
        .column_by_name("personalization")
        .and_then(|c| c.as_any().downcast_ref::<BooleanArray>())
        .ok_or("column consent.personalization is missing")?;
    for i in 0..b.num_rows() {
        let (u, allowed) = (user.value(i), personalization.value(i));
        if served.consent.record(u, ts.value(i), allowed) {
            served.cache.invalidate(u);
        }
        if allowed && !private.value(i) && !excluded.value(i) {
            let streamed = played.value(i) >= encore_core::event::STREAM_THRESHOLD_MS;
            served.recent.record(u, item.value(i), streamed);
            served.cache.invalidate(u);
        }
    }
    Ok(())
}

/// Reads what every listener in the playback log last allowed into `served.consent` (at
/// start, before requests are served); the number of listeners who withdrew personalization.
pub fn load_consent(served: &Served, ingestor: &Ingestor) -> Result<usize, AppError> {
    let withdrawn = encore_ingest::matrix::withdrawn_personalization(ingestor)?;
    for (user, ts) in &withdrawn {
        served.consent.record(user, *ts, false);
    }
    Ok(withdrawn.len())
}

/// Loads `reference` (`NAME@production`, `NAME@3`) from the registry of the data directory
/// `root` for serving, with catalogue facts from `ingestor`.
pub fn load_version(
    root: &std::path::Path,
    reference: &str,
    ingestor: &Ingestor,
    choice: encore_index::Choice,
) -> Result<ServingModel, AppError> {
    let registry = encore_registry::Registry::open(root)?;
    let version = registry.resolve(reference)?;
    let artifact = registry.load_artifact(&version)?;
    let facts = ingestor
        .catalog()
        .item_info()?
        .into_iter()
        .map(|(id, i)| {
            (
                id,
                encore_serving::ItemFacts {
                    title: i.title,
                    artist_id: i.artist_id,
                    explicit: i.explicit,
                },
            )
        })
        .collect();
    // a large catalogue's HNSW graph is kept beside the artifacts, keyed by the artifact's
    // checksum, and memory-mapped on the next load instead of rebuilt
    let retrieval = encore_serving::Retrieval {
        choice,
        cache: Some(encore_serving::IndexCache {
            objects: registry.objects().clone(),
            key: encore_registry::index_key(&version.record.checksum),
        }),
    };
    Ok(ServingModel::with_retrieval(
        &version.model,
        version.version,
        artifact,
        &facts,
        retrieval,
    )?)
}

/// Keeps the served model in step with the registry: `production` and the aliases running
/// experiments serve are loaded off the request path when they move; requests keep the model
/// they started with, and a version that fails to load is not swapped in.
#[derive(Debug, Clone)]
pub struct HotSwap {
    pub served: Weak<Served>,
    pub ingestor: Weak<Ingestor>,
    pub root: std::path::PathBuf,
    /// the served model's name
    pub model: String,
    pub choice: encore_index::Choice,
}

impl HotSwap {
    /// Loads `production` now (a model that cannot be had is logged: the server starts without
    /// one and answers 503 until it can).
    pub fn load_production(&self) {
        self.swap(encore_registry::PRODUCTION, None);
    }

    /// Serves every move of `moves` (a registry watcher's subscription) until it ends.
    pub fn follow(
        self,
        moves: std::sync::mpsc::Receiver<encore_registry::AliasMove>,
    ) -> std::io::Result<()> {
        std::thread::Builder::new()
            .name("hot-swap".into())
            .spawn(move || {
                for m in moves {
                    tracing::info!(model = %m.model, alias = %m.alias, from = ?m.from, to = m.to,
                        action = %m.action, forced = m.forced, actor = %m.actor, "alias moved");
                    if m.model != self.model {
                        continue;
                    }
                    let Some(served) = self.served.upgrade() else {
                        return;
                    };
                    // an alias no running experiment serves is not loaded
                    if m.alias == encore_registry::PRODUCTION
                        || served.get_alias(&m.alias).is_some()
                    {
                        self.swap(&m.alias, Some(m.to));
                    }
                }
            })?;
        Ok(())
    }

    /// Keeps the aliases `defs` serve loaded (and drops the others): what
    /// [`Experiments::watch`] calls before a new plan is used.
    pub fn keep_aliases(&self, defs: &[encore_experiments::store::Definition]) {
        let Some(served) = self.served.upgrade() else {
            return;
        };
        let wanted = Running::model_aliases(defs);
        served.retain_aliases(&wanted);
        for alias in wanted {
            if alias != encore_registry::PRODUCTION && served.get_alias(&alias).is_none() {
                self.swap(&alias, None);
            }
        }
    }

    /// Loads `alias` (at `version` when the move says which) and serves it.
    fn swap(&self, alias: &str, version: Option<u32>) {
        let (Some(served), Some(ingestor)) = (self.served.upgrade(), self.ingestor.upgrade())
        else {
            return;
        };
        let name = &self.model;
        let reference = match version {
            Some(v) if alias == encore_registry::PRODUCTION => format!("{name}@{v}"),
            _ => format!("{name}@{alias}"),
        };
        match load_version(&self.root, &reference, &ingestor, self.choice) {
            Ok(m) if alias == encore_registry::PRODUCTION => {
                tracing::info!(model = %name, version = m.version, users = m.n_users(),
                    items = m.n_items(), "serving");
                served.swap(m);
            }
            Ok(m) => {
                tracing::info!(model = %name, alias, version = m.version, "experiment model loaded");
                served.swap_alias(alias, m);
            }
            Err(e) if version.is_none() && alias == encore_registry::PRODUCTION => {
                tracing::warn!("not serving recommendations yet: {e}");
            }
            Err(e) => {
                tracing::error!(model = %name, alias, "not swapped in: {e}");
                served.swap_failed();
            }
        }
    }
}
