//! Evaluators by description: what rules, experiments and the CLI name in JSON or TOML, built
//! into evaluators against what they need (the catalog, the judge endpoint).
//!
//! ```
//! use encore_evals::spec::{Context, EvaluatorSpec};
//! let spec: EvaluatorSpec = serde_json::from_str(r#"{"kind": "length_bounds", "min": 1, "max": 280}"#).unwrap();
//! let e = spec.build(&Context::default()).unwrap();
//! assert_eq!(e.name(), "length_bounds");
//! ```

use crate::catalog::{CatalogGrounding, CatalogIndex};
use crate::heuristic::{
    Contains, ExactMatch, Grounding, JsonValid, LengthBounds, Refusal, RegexMatch, RougeL, TokenF1,
};
use crate::judge::{JudgeConfig, LlmJudge, Rubric, Tracer};
use crate::schema::JsonSchema;
use crate::{EvalError, Evaluator};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// One evaluator, described.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum EvaluatorSpec {
    ExactMatch,
    Contains {
        needle: String,
        #[serde(default)]
        case_sensitive: bool,
    },
    Regex {
        pattern: String,
    },
    JsonValid,
    JsonSchema {
        schema: serde_json::Value,
    },
    LengthBounds {
        min: usize,
        max: usize,
    },
    TokenF1,
    RougeL,
    Refusal,
    Grounding {
        #[serde(default = "half")]
        threshold: f64,
    },
    CatalogGrounding,
    /// a built-in rubric by name, or a custom one
    Judge {
        #[serde(default)]
        rubric: Option<String>,
        #[serde(default)]
        custom: Option<Rubric>,
    },
}

fn half() -> f64 {
    0.5
}

/// What evaluators may need.
#[derive(Clone, Default)]
pub struct Context {
    pub catalog: Option<Arc<CatalogIndex>>,
    pub judge: Option<JudgeConfig>,
    pub prices: encore_telemetry::cost::PriceTable,
    pub tracer: Option<Tracer>,
    /// where tasks given by an API caller (a chat task's `base_url`, an HTTP task's `url`) may
    /// send requests; `None`: anywhere (the operator's own command line)
    pub destinations: Option<encore_http::outbound::Allow>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("catalog", &self.catalog.as_ref().map(|c| c.tracks()))
            .field("judge", &self.judge)
            .finish_non_exhaustive()
    }
}

impl EvaluatorSpec {
    /// Parses `text` as a spec in JSON, or as the bare name of an evaluator without settings
    /// (`exact_match`, `json_valid`, `refusal`, `catalog_grounding`, ...) or a built-in judge
    /// rubric (`judge:hallucination`).
    pub fn parse(text: &str) -> Result<EvaluatorSpec, encore_core::Invalid> {
        let t = text.trim();
        if t.starts_with('{') {
            return serde_json::from_str(t).map_err(|e| format!("evaluator {t}: {e}").into());
        }
        if let Some(r) = t.strip_prefix("judge:") {
            return Ok(EvaluatorSpec::Judge {
                rubric: Some(r.to_owned()),
                custom: None,
            });
        }
        serde_json::from_value(serde_json::json!({ "kind": t })).map_err(|_| {
            encore_core::Invalid::from(format!(
                "evaluator {t:?}: expected a JSON spec or one of exact_match, json_valid, \
                 token_f1, rouge_l, refusal, grounding, catalog_grounding, judge:<rubric>"
            ))
        })
    }

    pub fn build(&self, ctx: &Context) -> Result<Box<dyn Evaluator>, EvalError> {
        let config = |evaluator: &str, message: &str| EvalError::Config {
            evaluator: evaluator.to_owned(),
            message: message.to_owned(),
        };
        Ok(match self {
            EvaluatorSpec::ExactMatch => Box::new(ExactMatch),
            EvaluatorSpec::Contains {
                needle,
                case_sensitive,
            } => Box::new(Contains {
                needle: needle.clone(),
                case_sensitive: *case_sensitive,
            }),
            EvaluatorSpec::Regex { pattern } => Box::new(RegexMatch::new(pattern)?),
            EvaluatorSpec::JsonValid => Box::new(JsonValid),
            EvaluatorSpec::JsonSchema { schema } => Box::new(JsonSchema::new(schema)?),
            EvaluatorSpec::LengthBounds { min, max } => {
                if min > max {
                    return Err(config("length_bounds", "min is above max"));
                }
                Box::new(LengthBounds {
                    min: *min,
                    max: *max,
                })
            }
            EvaluatorSpec::TokenF1 => Box::new(TokenF1),
            EvaluatorSpec::RougeL => Box::new(RougeL),
            EvaluatorSpec::Refusal => Box::new(Refusal),
            EvaluatorSpec::Grounding { threshold } => Box::new(Grounding {
                threshold: *threshold,
            }),
            EvaluatorSpec::CatalogGrounding => Box::new(CatalogGrounding {
                catalog: ctx.catalog.clone().ok_or_else(|| {
                    config(
                        "catalog_grounding",
                        "needs a catalog: import one with `encore import catalog`",
                    )
                })?,
            }),
            EvaluatorSpec::Judge { rubric, custom } => {
                let rubric = match (rubric, custom) {
                    (_, Some(c)) => c.clone(),
                    (Some(name), None) => Rubric::named(name).ok_or_else(|| {
                        config(
                            "judge",
                            &format!(
                                "unknown rubric {name:?}: expected relevance, correctness, \
                                 hallucination or toxicity, or a custom rubric"
                            ),
                        )
                    })?,
                    (None, None) => return Err(config("judge", "names no rubric")),
                };
                let judge = ctx.judge.clone().ok_or_else(|| {
                    config(
                        "judge",
                        "no judge endpoint: set [evals.judge] base_url and model",
                    )
                })?;
                Box::new(LlmJudge::new(
                    judge,
                    rubric,
                    ctx.prices.clone(),
                    ctx.tracer.clone(),
                )?)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_from_names_and_json() {
        assert_eq!(
            EvaluatorSpec::parse("exact_match").unwrap(),
            EvaluatorSpec::ExactMatch
        );
        assert_eq!(
            EvaluatorSpec::parse("judge:toxicity").unwrap(),
            EvaluatorSpec::Judge {
                rubric: Some("toxicity".into()),
                custom: None
            }
        );
        assert!(matches!(
            EvaluatorSpec::parse(r#"{"kind": "grounding"}"#).unwrap(),
            EvaluatorSpec::Grounding { threshold } if threshold == 0.5
        ));
        let e = EvaluatorSpec::parse("vibes").unwrap_err();
        assert!(
            e.0.contains("\"vibes\"") && e.0.contains("exact_match"),
            "{e}"
        );
        let e = EvaluatorSpec::parse(r#"{"kind": "regex"}"#).unwrap_err();
        assert!(e.0.contains("pattern"), "{e}");
        let ctx = Context::default();
        let e = EvaluatorSpec::parse("judge:relevance")
            .unwrap()
            .build(&ctx)
            .unwrap_err();
        assert!(e.to_string().contains("base_url"), "{e}");
        let e = EvaluatorSpec::parse("catalog_grounding")
            .unwrap()
            .build(&ctx)
            .unwrap_err();
        assert!(e.to_string().contains("catalog"), "{e}");
    }
}
