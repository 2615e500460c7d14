//! `GET /v1/assignments?user_id=&country=&platform=&tier=`: the running experiments a listener
//! is in. The assignment plan is rebuilt on a background thread when the set of running
//! experiments changes (checked every second), so a request costs a few hashes and look-ups.

use crate::AppState;
use crate::error::ApiError;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use encore_core::ErrorCode;
use encore_experiments::assignment::{Assignment, Context, ExperimentSpec, Plan};
use encore_experiments::store::{Definition, Treatment};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// The global holdout share and salt, the same as the CLI's.
pub const HOLDOUT: f64 = 0.05;
pub const HOLDOUT_SALT: &str = "encore-global-holdout";

/// The current plan and the running experiments' treatments, kept fresh by
/// [`ExperimentsAccess::start`].
#[derive(Debug)]
pub struct ExperimentsAccess {
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
    fn build(defs: &[Definition]) -> Result<Running, String> {
        let specs: Vec<ExperimentSpec> = defs.iter().map(|d| d.allocation.clone()).collect();
        let plan = Plan::new(&specs, &Default::default(), HOLDOUT, HOLDOUT_SALT)
            .map_err(|e| e.to_string())?;
        let treatments = defs
            .iter()
            .map(|d| (d.id().to_string(), d.treatments.clone()))
            .collect();
        Ok(Running { plan, treatments })
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

impl ExperimentsAccess {
    /// Loads the running experiments of the data directory `root` and refreshes them every
    /// second on a thread that ends with the process.
    pub fn start(root: std::path::PathBuf) -> Result<Arc<ExperimentsAccess>, String> {
        let load = |root: &std::path::Path| -> Result<Vec<Definition>, String> {
            encore_experiments::store::Store::open(root)
                .and_then(|s| s.running_definitions())
                .map_err(|e| e.to_string())
        };
        let mut defs = load(&root)?;
        let access = Arc::new(ExperimentsAccess {
            current: RwLock::new(Arc::new(Running::build(&defs)?)),
        });
        let weak = Arc::downgrade(&access);
        std::thread::spawn(move || {
            loop {
                std::thread::sleep(std::time::Duration::from_secs(1));
                let Some(access) = weak.upgrade() else { return };
                match load(&root) {
                    Ok(now) if now != defs => match Running::build(&now) {
                        Ok(running) => {
                            *access.current.write().unwrap_or_else(|e| e.into_inner()) =
                                Arc::new(running);
                            tracing::info!(experiments = now.len(), "assignment plan rebuilt");
                            defs = now;
                        }
                        Err(e) => tracing::warn!("assignment plan not rebuilt: {e}"),
                    },
                    Ok(_) => {}
                    Err(e) => tracing::warn!("experiments not reloaded: {e}"),
                }
            }
        });
        Ok(access)
    }

    pub fn current(&self) -> Arc<Running> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

pub fn routes() -> Router<AppState> {
    Router::new().route("/v1/assignments", get(assignments))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct AssignmentParams {
    user_id: String,
    #[serde(default)]
    country: Option<String>,
    #[serde(default)]
    platform: Option<String>,
    #[serde(default)]
    tier: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct AssignmentsResponse {
    user_id: String,
    holdout: bool,
    #[schema(value_type = Vec<Object>)]
    assignments: Vec<Assignment>,
}

#[utoipa::path(get, path = "/v1/assignments", tag = "experiments", params(AssignmentParams),
    responses((status = 200, body = AssignmentsResponse), (status = 400, body = crate::openapi::ErrorBody)))]
pub(crate) async fn assignments(
    State(state): State<AppState>,
    params: Result<Query<AssignmentParams>, QueryRejection>,
) -> Result<Json<AssignmentsResponse>, ApiError> {
    let Query(p) = params.map_err(|e| ApiError::new(ErrorCode::InvalidArgument, e.body_text()))?;
    let Some(access) = state.experiments.as_ref() else {
        return Err(ApiError::new(
            ErrorCode::FailedPrecondition,
            "this server runs no experiments",
        ));
    };
    let running = access.current();
    let plan = &running.plan;
    let context = Context {
        country: p.country.as_deref().unwrap_or("ZZ"),
        platform: p.platform.as_deref().unwrap_or("other"),
        tier: p.tier.as_deref().unwrap_or("unknown"),
        new_user: false,
    };
    Ok(Json(AssignmentsResponse {
        holdout: plan.held_out(&p.user_id),
        assignments: plan.assign(&p.user_id, &context),
        user_id: p.user_id,
    }))
}
