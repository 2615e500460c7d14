//! JSON-schema conformance: the output (a Markdown code fence is unwrapped) parses as JSON and
//! conforms to a schema, checked by `boon` (JSON Schema draft 2020-12 by default, or the draft
//! the schema's `$schema` names; it passes the official JSON-Schema-Test-Suite).
//!
//! Everything a Pydantic or OpenAI structured-output schema uses works: `$defs` and `$ref`
//! (within the schema), `format` as an assertion (`date-time`, `email`, `uri`, `uuid`, ...),
//! `patternProperties`, `prefixItems`, `unevaluatedProperties`, `dependentRequired`, ...
//! A `$ref` to anything outside the schema (a file, a URL) is refused when the evaluator is
//! built: a schema sent over the API never makes encore read a file or the network.

use crate::heuristic::unfence;
use crate::{EvalError, Evaluator, Sample, Score};
use serde_json::Value;

const NAME: &str = "json_schema";

/// Where the schema sits for `boon` (and what its own `$ref`s resolve against).
const LOCATION: &str = "urn:encore:json-schema";

fn config(message: String) -> EvalError {
    EvalError::Config {
        evaluator: NAME.to_owned(),
        message,
    }
}

/// Loads nothing: only the schema itself and the drafts' metaschemas (built into `boon`) are
/// there to refer to.
struct NoRemote;

impl boon::UrlLoader for NoRemote {
    fn load(&self, url: &str) -> Result<Value, Box<dyn std::error::Error>> {
        Err(format!("{url} is outside the schema: references must stay within it ($defs)").into())
    }
}

/// The output is JSON that conforms to a schema; the explanation lists the violations by JSON
/// pointer.
pub struct JsonSchema {
    schemas: boon::Schemas,
    index: boon::SchemaIndex,
}

impl std::fmt::Debug for JsonSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JsonSchema").finish_non_exhaustive()
    }
}

impl JsonSchema {
    /// Checks `schema` against its draft's metaschema and compiles it; a malformed schema or a
    /// reference outside it is an error naming where.
    pub fn new(schema: &Value) -> Result<JsonSchema, EvalError> {
        let mut compiler = boon::Compiler::new();
        compiler.set_default_draft(boon::Draft::V2020_12);
        compiler.enable_format_assertions();
        compiler.use_loader(Box::new(NoRemote));
        let mut schemas = boon::Schemas::new();
        let refused = |e: boon::CompileError| config(format!("{e:#}").replace(LOCATION, "schema"));
        compiler
            .add_resource(LOCATION, schema.clone())
            .map_err(refused)?;
        let index = compiler.compile(LOCATION, &mut schemas).map_err(refused)?;
        Ok(JsonSchema { schemas, index })
    }

    /// The violations of `v`, empty when it conforms: `pointer: what is wrong`, deepest first.
    pub fn violations(&self, v: &Value) -> Vec<String> {
        match self.schemas.validate(v, self.index) {
            Ok(()) => Vec::new(),
            Err(e) => {
                let mut out = Vec::new();
                leaves(&e, &mut out);
                out
            }
        }
    }
}

/// The innermost errors of `e`, each at its instance location.
fn leaves(e: &boon::ValidationError<'_, '_>, out: &mut Vec<String>) {
    if e.causes.is_empty() {
        let at = e.instance_location.to_string();
        let at = if at.is_empty() {
            "(root)".to_owned()
        } else {
            at
        };
        out.push(format!("{at}: {}", e.kind).replace(LOCATION, "schema"));
    }
    for c in &e.causes {
        leaves(c, out);
    }
}

impl Evaluator for JsonSchema {
    fn name(&self) -> &'static str {
        NAME
    }
    fn version(&self) -> u32 {
        2
    }
    fn evaluate(&self, s: &Sample<'_>) -> Result<Score, EvalError> {
        let (ok, why) = match serde_json::from_str::<Value>(unfence(s.output)) {
            Err(e) => (false, format!("not JSON: {e}")),
            Ok(v) => {
                let errors = self.violations(&v);
                if errors.is_empty() {
                    (true, "conforms to the schema".to_owned())
                } else {
                    (false, errors.join("; "))
                }
            }
        };
        Ok(self.score(
            f64::from(u8::from(ok)),
            Some(if ok { "pass" } else { "fail" }),
            Some(why),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn playlist() -> JsonSchema {
        JsonSchema::new(&json!({
            "type": "object",
            "required": ["title", "tracks"],
            "additionalProperties": false,
            "properties": {
                "title": {"type": "string", "minLength": 1, "maxLength": 40},
                "mood": {"enum": ["calm", "upbeat"]},
                "tracks": {
                    "type": "array", "minItems": 1, "maxItems": 3, "uniqueItems": true,
                    "items": {
                        "type": "object", "required": ["artist", "track"],
                        "properties": {
                            "artist": {"type": "string"},
                            "track": {"type": "string", "pattern": "^[^\\n]+$"},
                            "year": {"type": "integer", "minimum": 1900, "exclusiveMaximum": 2030}
                        }
                    }
                }
            }
        }))
        .unwrap()
    }

    fn eval(s: &JsonSchema, output: &str) -> Score {
        s.evaluate(&Sample {
            output,
            ..Default::default()
        })
        .unwrap()
    }

    #[test]
    fn conforming_output_passes_even_inside_a_fence() {
        let out = "```json\n{\"title\": \"Calm\", \"mood\": \"calm\", \"tracks\": [{\"artist\": \"Nils Frahm\", \"track\": \"Says\", \"year\": 2013}]}\n```";
        let s = eval(&playlist(), out);
        assert_eq!((s.value, s.label.as_deref()), (1.0, Some("pass")));
    }

    #[test]
    fn every_violation_is_named_by_its_pointer() {
        let out = r#"{"title": "", "mood": "sad", "extra": 1,
            "tracks": [{"artist": 7, "track": "A"}, {"track": "B", "year": 2031.0}]}"#;
        let s = eval(&playlist(), out);
        assert_eq!(s.value, 0.0);
        let why = s.explanation.unwrap();
        for needle in [
            "/title: length must be >=1",
            "/mood: value must be one of 'calm', 'upbeat'",
            "(root): additionalProperties 'extra' not allowed",
            "/tracks/0/artist: want string",
            "/tracks/1: missing properties 'artist'",
            "/tracks/1/year: must be < 2030",
        ] {
            assert!(why.contains(needle), "{needle} not in {why}");
        }
        assert!(
            eval(&playlist(), "not json")
                .explanation
                .unwrap()
                .starts_with("not JSON")
        );
        let dup = r#"{"title": "t", "tracks": [{"artist": "a", "track": "b"}, {"artist": "a", "track": "b"}]}"#;
        assert!(
            eval(&playlist(), dup)
                .explanation
                .unwrap()
                .contains("/tracks: items at 0 and 1 are equal"),
            "{:?}",
            eval(&playlist(), dup).explanation
        );
    }

    #[test]
    fn combinators_and_boolean_schemas() {
        let s = JsonSchema::new(
            &json!({"oneOf": [{"type": "integer"}, {"type": "number", "minimum": 10}]}),
        )
        .unwrap();
        assert!(s.violations(&json!(3)).is_empty());
        assert!(!s.violations(&json!(3.5)).is_empty());
        // 12 is an integer and a number >= 10: two matches
        assert!(!s.violations(&json!(12)).is_empty());
        let s = JsonSchema::new(
            &json!({"anyOf": [{"type": "string"}, {"type": "null"}], "not": {"const": "x"}}),
        )
        .unwrap();
        assert!(s.violations(&json!(null)).is_empty());
        assert!(!s.violations(&json!(1)).is_empty());
        assert!(!s.violations(&json!("x")).is_empty());
        assert_eq!(
            JsonSchema::new(&json!(false))
                .unwrap()
                .violations(&json!(1))
                .len(),
            1
        );
        assert_eq!(
            JsonSchema::new(&json!({"multipleOf": 0.5}))
                .unwrap()
                .violations(&json!(1.25))
                .len(),
            1
        );
    }

    /// What `Playlist.model_json_schema()` gives for a Pydantic model with a nested model, an
    /// enum, an optional field and formatted strings.
    #[test]
    fn pydantic_schemas_with_defs_refs_and_formats() {
        let s = JsonSchema::new(&json!({
            "$defs": {
                "Mood": {"enum": ["calm", "upbeat"], "title": "Mood", "type": "string"},
                "Track": {
                    "properties": {
                        "artist": {"title": "Artist", "type": "string"},
                        "track": {"title": "Track", "type": "string"},
                        "url": {"anyOf": [{"format": "uri", "type": "string"}, {"type": "null"}], "default": null, "title": "Url"}
                    },
                    "required": ["artist", "track"],
                    "title": "Track",
                    "type": "object"
                }
            },
            "properties": {
                "title": {"title": "Title", "type": "string"},
                "mood": {"$ref": "#/$defs/Mood"},
                "created": {"format": "date-time", "title": "Created", "type": "string"},
                "owner": {"format": "email", "title": "Owner", "type": "string"},
                "tracks": {"items": {"$ref": "#/$defs/Track"}, "title": "Tracks", "type": "array"}
            },
            "required": ["title", "mood", "created", "tracks"],
            "title": "Playlist",
            "type": "object"
        }))
        .unwrap();
        let good = json!({"title": "Rainy", "mood": "calm", "created": "2026-12-06T10:00:00Z",
            "owner": "a@example.com",
            "tracks": [{"artist": "Nils Frahm", "track": "Says", "url": "https://open.spotify.com/track/1"}]});
        assert!(s.violations(&good).is_empty(), "{:?}", s.violations(&good));
        let bad = json!({"title": "Rainy", "mood": "sad", "created": "yesterday",
            "owner": "nobody", "tracks": [{"artist": "Nils Frahm"}]});
        let why = s.violations(&bad).join("; ");
        for needle in [
            "/mood: value must be one of",
            "/created: 'yesterday' is not valid date-time",
            "/owner: 'nobody' is not valid email",
            "/tracks/0: missing properties 'track'",
        ] {
            assert!(why.contains(needle), "{needle} not in {why}");
        }
    }

    #[test]
    fn malformed_schemas_and_outside_references_are_refused() {
        let e = JsonSchema::new(&json!({"properties": {"a": {"$ref": "#/x"}}})).unwrap_err();
        assert!(e.to_string().contains("#/x"), "{e}");
        let e = JsonSchema::new(&json!({"type": "text"})).unwrap_err();
        assert!(e.to_string().contains("type"), "{e}");
        let e = JsonSchema::new(&json!({"minItems": -1})).unwrap_err();
        assert!(e.to_string().contains("minItems"), "{e}");
        // never a file or the network
        for outside in ["file:///etc/passwd", "http://127.0.0.1:1/schema.json"] {
            let e = JsonSchema::new(&json!({"$ref": outside})).unwrap_err();
            assert!(e.to_string().contains("outside the schema"), "{e}");
        }
    }
}
