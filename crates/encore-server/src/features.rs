//! Online features over HTTP:
//!
//! - `POST /v1/features` `{"service": "reranker", "entities": [{"user_id": "u1", "artist_id": "a2"}, ...]}`:
//!   every view of the service for every entity in one round trip, through a compiled plan
//!   cached per service. An unknown entity gives nulls with `missing: true`, not an error; an
//!   expired view gives nulls with its status `expired`.
//! - `GET /v1/features/services`: the current definitions' services and views.
//!
//! Plays stored by `POST /v1/events` reach the online store within a fraction of a second (see
//! `encore_app::features`).

use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use encore_app::features::OnlineFeatures;
use encore_core::ErrorCode;
use encore_features::online::Plan;
use serde::Deserialize;

use std::collections::BTreeMap;
use std::sync::Arc;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/features", post(read))
        .route("/v1/features/services", get(services))
}

fn access(state: &AppState) -> Result<Arc<OnlineFeatures>, ApiError> {
    state.features.clone().ok_or_else(|| {
        ApiError::new(
            ErrorCode::FailedPrecondition,
            "no feature definitions are applied (run `encore features apply FILE` and restart)",
        )
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReadBody<'a> {
    service: String,
    /// keys and values borrowed from the request body where they need no unescaping
    #[serde(borrow)]
    entities: Vec<BTreeMap<Text<'a>, Text<'a>>>,
    #[serde(default)]
    format: Format,
}

/// How rows are written: `maps` names every value (`{"values": {"view__feature": x}}`);
/// `arrays` lists the names once (`"features": [...]`) and each row's values in that order,
/// about a third of the bytes for machine clients.
#[derive(Debug, Default, Clone, Copy, PartialEq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Format {
    #[default]
    Maps,
    Arrays,
}

/// An entity key or key value: a string, or a number or boolean taken as its text.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Text<'a>(std::borrow::Cow<'a, str>);

impl AsRef<str> for Text<'_> {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl std::borrow::Borrow<str> for Text<'_> {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Text<'a>, D::Error> {
        use std::borrow::Cow;
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string or a number")
            }
            fn visit_borrowed_str<E: serde::de::Error>(self, s: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Borrowed(s)))
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(s.to_owned())))
            }
            fn visit_string<E: serde::de::Error>(self, s: String) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(s)))
            }
            fn visit_u64<E: serde::de::Error>(self, x: u64) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(x.to_string())))
            }
            fn visit_i64<E: serde::de::Error>(self, x: i64) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(x.to_string())))
            }
            fn visit_f64<E: serde::de::Error>(self, x: f64) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(x.to_string())))
            }
            fn visit_bool<E: serde::de::Error>(self, x: bool) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(x.to_string())))
            }
        }
        d.deserialize_any(V)
    }
}

/// Batches up to this many entities are read on the request's own task (a read of 100
/// entities takes a fraction of a millisecond); larger ones on the blocking pool.
const INLINE_ENTITIES: usize = 1_000;

/// `POST /v1/features` (documentation: the body is parsed by [`ReadBody`]).
#[derive(Debug, utoipa::ToSchema)]
#[allow(dead_code)]
pub(crate) struct FeatureRequest {
    service: String,
    /// each entity's keys, e.g. `{"user_id": "u1", "artist_id": "ar7"}`; at most 10,000
    entities: Vec<BTreeMap<String, String>>,
    /// `maps` (default) or `arrays`
    format: Option<String>,
}

/// The answer, written by hand for speed (documentation of its two shapes).
#[derive(Debug, utoipa::ToSchema)]
#[allow(dead_code)]
#[serde(untagged)]
pub(crate) enum FeatureRows {
    Maps {
        service: String,
        version: u32,
        rows: Vec<MapRow>,
    },
    Arrays {
        service: String,
        version: u32,
        /// `view__feature`, in value order
        features: Vec<String>,
        views: Vec<String>,
        rows: Vec<ArrayRow>,
    },
}

/// One entity's features by name.
#[derive(Debug, utoipa::ToSchema)]
#[allow(dead_code)]
pub(crate) struct MapRow {
    /// `view__feature` to its value (`null`: not available)
    values: BTreeMap<String, Option<f64>>,
    /// per view: `live`, `expired` or `missing`
    status: BTreeMap<String, String>,
    /// per view: how old its newest event is
    age_ms: BTreeMap<String, i64>,
    /// no view has the entity
    missing: bool,
}

/// One entity's features in the order of `features`.
#[derive(Debug, utoipa::ToSchema)]
#[allow(dead_code)]
pub(crate) struct ArrayRow {
    values: Vec<Option<f64>>,
    status: Vec<String>,
    age_ms: Vec<Option<i64>>,
    missing: bool,
}

#[utoipa::path(post, path = "/v1/features", tag = "features",
    request_body(content = FeatureRequest, description = "a service and its entities (at most 10,000)"),
    responses((status = 200, description = "the service's features per entity, by name (`maps`) or in one order (`arrays`)", body = FeatureRows),
        (status = 413, body = crate::error::ErrorBody),
        (status = 400, body = crate::error::ErrorBody), (status = 404, description = "unknown service", body = crate::error::ErrorBody)))]
pub(crate) async fn read(
    State(state): State<AppState>,
    body: axum::body::Bytes,
) -> Result<axum::response::Response, ApiError> {
    // parsed straight from the bytes (the Json extractor tracks paths, a tenth of a read)
    let b: ReadBody = serde_json::from_slice(&body).map_err(|e| {
        ApiError::new(
            ErrorCode::InvalidArgument,
            format!("request body: {e} (expected {{\"service\", \"entities\": [{{...}}]}})"),
        )
    })?;
    if b.entities.len() > 10_000 {
        return Err(ApiError::new(
            ErrorCode::TooLarge,
            format!("{} entities: at most 10,000 per request", b.entities.len()),
        ));
    }
    let a = access(&state)?;
    let plan = a.plan(&b.service)?;
    let rows = if b.entities.len() <= INLINE_ENTITIES {
        a.read(&plan, &b.entities)?
    } else {
        read_blocking(a.clone(), Arc::clone(&plan), &b.entities).await?
    };
    let arrays = b.format == Format::Arrays;
    render(Features {
        service: b.service,
        version: a.version,
        plan: arrays.then_some(plan),
        rows,
    })
}

/// A large read, on the blocking pool (the entities copied out of the request body).
async fn read_blocking(
    a: Arc<OnlineFeatures>,
    plan: Arc<Plan>,
    entities: &[BTreeMap<Text<'_>, Text<'_>>],
) -> Result<Vec<encore_features::online::FeatureRow>, ApiError> {
    let rows: Vec<BTreeMap<String, String>> = entities
        .iter()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.0.to_string(), v.0.to_string()))
                .collect()
        })
        .collect();
    Ok(tokio::task::spawn_blocking(move || a.read(&plan, &rows))
        .await
        .map_err(|e| ApiError::new(ErrorCode::Internal, format!("features task failed: {e}")))??)
}

/// The answer, written into a buffer sized for it up front (no regrowing a 60 KB body).
fn render(features: Features) -> Result<axum::response::Response, ApiError> {
    let per_value = if features.plan.is_some() { 12 } else { 40 };
    let names = features.rows.first().map_or(0, |r| r.values.len());
    let mut body = Vec::with_capacity(256 + features.rows.len() * (64 + names * per_value));
    serde_json::to_writer(&mut body, &features)
        .map_err(|e| ApiError::new(ErrorCode::Internal, format!("features answer: {e}")))?;
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response())
}

#[derive(Debug)]
pub(crate) struct Features {
    service: String,
    version: u32,
    /// set for the `arrays` format
    plan: Option<Arc<Plan>>,
    rows: Vec<encore_features::online::FeatureRow>,
}

impl serde::Serialize for Features {
    fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        struct Row<'a>(&'a encore_features::online::FeatureRow);
        impl serde::Serialize for Row<'_> {
            fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
                let mut m = ser.serialize_map(Some(4))?;
                m.serialize_entry("values", &self.0.values)?;
                m.serialize_entry("status", &self.0.status)?;
                m.serialize_entry("age_ms", &self.0.age_ms)?;
                m.serialize_entry("missing", &self.0.missing)?;
                m.end()
            }
        }
        struct Rows<'a>(&'a [encore_features::online::FeatureRow]);
        impl serde::Serialize for Rows<'_> {
            fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
                ser.collect_seq(self.0.iter().map(Row))
            }
        }
        let mut m = ser.serialize_map(None)?;
        m.serialize_entry("service", &self.service)?;
        m.serialize_entry("version", &self.version)?;
        match &self.plan {
            None => m.serialize_entry("rows", &self.rows)?,
            Some(p) => {
                m.serialize_entry("features", p.names.as_slice())?;
                m.serialize_entry("views", p.view_names.as_slice())?;
                m.serialize_entry("rows", &Rows(&self.rows))?;
            }
        }
        m.end()
    }
}

/// `GET /v1/features/services`
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct Services {
    /// the definitions' version
    version: u32,
    /// service name to its views
    services: BTreeMap<String, Vec<String>>,
    reads: Reads,
    /// the entity cache, when `[serving] feature_cache_mb` is set
    cache: Option<CacheCounts>,
}

#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct Reads {
    entities: u64,
    expired: u64,
    missing: u64,
    events_applied: u64,
}

#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct CacheCounts {
    hits: u64,
    misses: u64,
}

#[utoipa::path(get, path = "/v1/features/services", tag = "features",
    responses((status = 200, description = "the services and their views, and read counters", body = Services), (status = 412, body = crate::error::ErrorBody)))]
pub(crate) async fn services(State(state): State<AppState>) -> Result<Json<Services>, ApiError> {
    let a = access(&state)?;
    let s = &a.store.stats;
    let load = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
    Ok(Json(Services {
        version: a.version,
        services: a.definitions.services.clone(),
        reads: Reads {
            entities: load(&s.reads),
            expired: load(&s.expired),
            missing: load(&s.missing),
            events_applied: load(&s.events_applied),
        },
        cache: a.store.cache.as_ref().map(|c| CacheCounts {
            hits: load(&c.hits),
            misses: load(&c.misses),
        }),
    }))
}
