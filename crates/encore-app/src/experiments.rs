//! Experiments as serving and analysis see them: the running experiments' assignment plan and
//! treatments (kept fresh from the metadata store), and the analysis of an experiment on the
//! event log (the metric catalogue joined to exposures).

use crate::AppError;
use encore_core::ErrorCode;
use encore_experiments::analysis::MetricData;
use encore_experiments::assignment::{Assignment, Context, ExperimentSpec, Plan};
use encore_experiments::store::{Definition, Treatment};
use encore_ingest::exposure::Listening;
use serde::Serialize;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// The global holdout share and salt, the same everywhere.
pub const HOLDOUT: f64 = 0.05;
pub const HOLDOUT_SALT: &str = "encore-global-holdout";

/// The current plan and the running experiments' treatments, kept fresh by
/// [`Experiments::watch`].
#[derive(Debug)]
pub struct Experiments {
    /// the data directory
    pub root: std::path::PathBuf,
    current: RwLock<Arc<Running>>,
}

/// What serving needs of the running experiments.
#[derive(Debug)]
pub struct Running {
    pub plan: Plan,
    /// per experiment, per variant
    pub treatments: HashMap<String, HashMap<String, Treatment>>,
}

impl Running {
    fn build(defs: &[Definition]) -> Result<Running, AppError> {
        let specs: Vec<ExperimentSpec> = defs.iter().map(|d| d.allocation.clone()).collect();
        let plan = Plan::new(&specs, &Default::default(), HOLDOUT, HOLDOUT_SALT)?;
        let treatments = defs
            .iter()
            .map(|d| (d.id().to_string(), d.treatments.clone()))
            .collect();
        Ok(Running { plan, treatments })
    }

    /// The model aliases the running experiments' treatments serve.
    pub fn model_aliases(defs: &[Definition]) -> std::collections::HashSet<String> {
        defs.iter()
            .flat_map(|d| d.treatments.values())
            .filter_map(|t| t.model_alias.clone())
            .collect()
    }

    /// `user`'s assignments with the treatment of each (default when the definition has none).
    pub fn assign(&self, user: &str, context: &Context<'_>) -> Vec<(Assignment, Treatment)> {
        self.plan
            .assign(user, context)
            .into_iter()
            .map(|a| {
                let t = self
                    .treatments
                    .get(&a.experiment)
                    .and_then(|v| v.get(&a.variant))
                    .cloned()
                    .unwrap_or_default();
                (a, t)
            })
            .collect()
    }
}

fn running_definitions(root: &std::path::Path) -> Result<Vec<Definition>, AppError> {
    Ok(encore_experiments::store::Store::open(root)?.running_definitions()?)
}

impl Experiments {
    /// Loads the running experiments of the data directory `root` and refreshes them every
    /// second, calling `on_change` with the running definitions once before it returns and
    /// again each time they change (before the new plan is used, so what they need, such as
    /// the models of their treatments, is ready when listeners get them).
    pub fn watch(
        root: std::path::PathBuf,
        on_change: impl Fn(&[Definition]) + Send + Sync + 'static,
    ) -> Result<Arc<Experiments>, AppError> {
        let defs = running_definitions(&root)?;
        on_change(&defs);
        let access = Arc::new(Experiments {
            root: root.clone(),
            current: RwLock::new(Arc::new(Running::build(&defs)?)),
        });
        let last = std::sync::Mutex::new(defs);
        crate::worker::every(
            "experiments-watch",
            std::time::Duration::from_secs(1),
            true,
            Arc::downgrade(&access),
            move |access: &Experiments| {
                let mut last = last.lock().unwrap_or_else(|e| e.into_inner());
                match running_definitions(&root) {
                    Ok(now) if now != *last => match Running::build(&now) {
                        Ok(running) => {
                            on_change(&now);
                            *access.current.write().unwrap_or_else(|e| e.into_inner()) =
                                Arc::new(running);
                            tracing::info!(experiments = now.len(), "assignment plan rebuilt");
                            *last = now;
                        }
                        Err(e) => tracing::warn!("assignment plan not rebuilt: {e}"),
                    },
                    Ok(_) => {}
                    Err(e) => tracing::warn!("experiments not reloaded: {e}"),
                }
            },
        )
        .map_err(|e| AppError::new(ErrorCode::Internal, format!("experiments watch: {e}")))?;
        Ok(access)
    }

    pub fn current(&self) -> Arc<Running> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The analysis of experiment `id` on `ingestor`'s log (see [`report`]).
    pub fn report(
        &self,
        ingestor: &encore_ingest::Ingestor,
        id: &str,
        pre_days: u32,
        alpha: f64,
    ) -> Result<ExperimentReport, AppError> {
        let store = encore_experiments::store::Store::open(&self.root)?;
        let def = store.get(id)?.definition;
        Ok(report(ingestor, &def, pre_days, alpha)?)
    }
}

/// How a named metric is computed from a listener's listening in a period: a per-listener
/// value (its mean over listeners is compared), or a numerator and a denominator (the ratio of
/// their sums is compared, by the delta method).
#[derive(Clone, Copy)]
enum MetricValue {
    Mean(fn(&Listening) -> f64),
    Ratio(fn(&Listening) -> f64, fn(&Listening) -> f64),
}

impl MetricValue {
    fn named(name: &str) -> Option<MetricValue> {
        use MetricValue::{Mean, Ratio};
        Some(match name {
            "streams_per_user" => Mean(|l| l.streams),
            "plays_per_user" => Mean(|l| l.plays),
            "listening_minutes" | "listening_minutes_per_user" => Mean(|l| l.minutes),
            "saves_per_user" => Mean(|l| l.saves),
            "stream_rate" => Ratio(|l| l.streams, |l| l.plays),
            "skip_rate" => Ratio(Listening::skips, |l| l.plays),
            _ => return None,
        })
    }

    fn empty(self) -> MetricData {
        match self {
            MetricValue::Mean(_) => MetricData::Mean(Default::default()),
            MetricValue::Ratio(..) => MetricData::Ratio(Default::default()),
        }
    }

    fn push(self, data: &mut MetricData, pre: &Listening, post: &Listening) {
        match (self, data) {
            (MetricValue::Mean(f), MetricData::Mean(m)) => m.push(f(pre), f(post)),
            (MetricValue::Ratio(num, den), MetricData::Ratio(m)) => {
                m.push([num(post), den(post), num(pre), den(pre)]);
            }
            _ => {}
        }
    }
}

const KNOWN_METRICS: &str =
    "streams_per_user, plays_per_user, listening_minutes, stream_rate, skip_rate, saves_per_user";

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("experiment {id}: unknown metric {name:?} (known: {KNOWN_METRICS})")]
    UnknownMetric { id: String, name: String },
    #[error("experiment {id}: every variant needs at least 2 exposed listeners (have {have})")]
    TooFew { id: String, have: String },
    #[error(transparent)]
    Ingest(#[from] encore_ingest::IngestError),
}

impl encore_core::Coded for ReportError {
    fn code(&self) -> ErrorCode {
        match self {
            ReportError::UnknownMetric { .. } => ErrorCode::InvalidArgument,
            ReportError::TooFew { .. } => ErrorCode::FailedPrecondition,
            ReportError::Ingest(e) => e.code(),
        }
    }

    fn hint(&self) -> Option<String> {
        match self {
            ReportError::TooFew { .. } => {
                Some("serve the experiment's surface to more listeners first".into())
            }
            _ => None,
        }
    }
}

impl From<ReportError> for AppError {
    fn from(e: ReportError) -> AppError {
        AppError::of(&e)
    }
}

#[derive(Debug, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ExperimentReport {
    pub experiment: String,
    pub hypothesis: String,
    pub exposed: usize,
    /// (variant, exposed listeners)
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<Vec<String>>))]
    pub per_variant: Vec<(String, usize)>,
    #[serde(flatten)]
    pub analysis: encore_experiments::analysis::Report,
}

/// The analysis of `def` on the event log: each exposed listener's first exposure and variant,
/// their listening after it (the metrics) and in the `pre_days` before it (CUPED covariates).
pub fn report(
    ingestor: &encore_ingest::Ingestor,
    def: &Definition,
    pre_days: u32,
    alpha: f64,
) -> Result<ExperimentReport, ReportError> {
    use encore_experiments::analysis::{ArmData, MetricSpec, analyze, default_metrics};
    let metrics: Vec<MetricSpec> = if def.metrics.is_empty() {
        default_metrics()
    } else {
        def.metrics.clone()
    };
    let values = metrics
        .iter()
        .map(|m| {
            MetricValue::named(&m.name).ok_or_else(|| ReportError::UnknownMetric {
                id: def.id().into(),
                name: m.name.clone(),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let outcomes = encore_ingest::exposure::outcomes(ingestor, def.id(), pre_days)?;
    let variants = &def.allocation.variants;
    let arms: Vec<ArmData> = variants
        .iter()
        .map(|v| {
            let mut per_metric: Vec<MetricData> = values.iter().map(|v| v.empty()).collect();
            let mut users = 0.0;
            for o in outcomes.values().filter(|o| o.variant == v.name) {
                users += 1.0;
                for (m, value) in per_metric.iter_mut().zip(&values) {
                    value.push(m, &o.pre, &o.post);
                }
            }
            ArmData {
                variant: v.name.clone(),
                users,
                metrics: per_metric,
            }
        })
        .collect();
    if arms.iter().any(|a| a.users < 2.0) {
        return Err(ReportError::TooFew {
            id: def.id().into(),
            have: arms
                .iter()
                .map(|a| format!("{} {}", a.variant, a.users))
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    let weights: Vec<f64> = variants.iter().map(|v| v.weight).collect();
    Ok(ExperimentReport {
        experiment: def.id().into(),
        hypothesis: def.hypothesis.clone(),
        exposed: outcomes.len(),
        per_variant: arms
            .iter()
            .map(|a| (a.variant.clone(), a.users as usize))
            .collect(),
        analysis: analyze(&metrics, &arms, &weights, alpha, 0.001),
    })
}
