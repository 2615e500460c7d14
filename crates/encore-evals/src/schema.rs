//! JSON-schema conformance: the output (a Markdown code fence is unwrapped) parses as JSON and
//! conforms to a schema. The schema is checked once, when the evaluator is built.
//!
//! Supported keywords (JSON Schema 2020-12 validation vocabulary, without references):
//! `type` (one or a list), `enum`, `const`, `properties`, `required`, `additionalProperties`
//! (boolean or schema), `items` (one schema), `minItems`, `maxItems`, `uniqueItems`, `minLength`,
//! `maxLength` (in characters), `pattern`, `minimum`, `maximum`, `exclusiveMinimum`,
//! `exclusiveMaximum`, `multipleOf`, `allOf`, `anyOf`, `oneOf`, `not`. Annotations (`title`,
//! `description`, `$schema`, `$id`, `default`, `examples`, `format`, `$comment`) are ignored. Any
//! other keyword (`$ref`, `patternProperties`, ...) is refused when the evaluator is built rather
//! than silently passing everything.

use crate::heuristic::unfence;
use crate::{EvalError, Evaluator, Sample, Score};
use serde_json::Value;

const NAME: &str = "json_schema";

const KNOWN: &[&str] = &[
    "type",
    "enum",
    "const",
    "properties",
    "required",
    "additionalProperties",
    "items",
    "minItems",
    "maxItems",
    "uniqueItems",
    "minLength",
    "maxLength",
    "pattern",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "multipleOf",
    "allOf",
    "anyOf",
    "oneOf",
    "not",
    "title",
    "description",
    "$schema",
    "$id",
    "default",
    "examples",
    "format",
    "$comment",
];

/// A compiled schema node.
#[derive(Debug, Clone, Default)]
struct Node {
    types: Option<Vec<String>>,
    enumeration: Option<Vec<Value>>,
    constant: Option<Value>,
    properties: Vec<(String, Node)>,
    required: Vec<String>,
    /// `None`: any; `Some(None)`: none allowed; `Some(Some(n))`: each must conform to `n`
    additional: Option<Option<Box<Node>>>,
    items: Option<Box<Node>>,
    min_items: Option<usize>,
    max_items: Option<usize>,
    unique_items: bool,
    min_length: Option<usize>,
    max_length: Option<usize>,
    pattern: Option<regex::Regex>,
    minimum: Option<f64>,
    maximum: Option<f64>,
    exclusive_minimum: Option<f64>,
    exclusive_maximum: Option<f64>,
    multiple_of: Option<f64>,
    all_of: Vec<Node>,
    any_of: Vec<Node>,
    one_of: Vec<Node>,
    not: Option<Box<Node>>,
    /// `false` as a schema: nothing conforms
    never: bool,
}

fn config(message: String) -> EvalError {
    EvalError::Config {
        evaluator: NAME.to_owned(),
        message,
    }
}

fn compile(v: &Value, at: &str) -> Result<Node, EvalError> {
    let obj = match v {
        Value::Bool(b) => {
            return Ok(Node {
                never: !b,
                ..Default::default()
            });
        }
        Value::Object(o) => o,
        other => return Err(config(format!("{at}: a schema is an object, got {other}"))),
    };
    if let Some(k) = obj.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        return Err(config(format!("{at}: keyword {k:?} is not supported")));
    }
    let count = |k: &str| -> Result<Option<usize>, EvalError> {
        obj.get(k)
            .map(|v| {
                v.as_u64()
                    .map(|n| n as usize)
                    .ok_or_else(|| config(format!("{at}/{k}: expected a non-negative integer")))
            })
            .transpose()
    };
    let number = |k: &str| -> Result<Option<f64>, EvalError> {
        obj.get(k)
            .map(|v| {
                v.as_f64()
                    .ok_or_else(|| config(format!("{at}/{k}: expected a number")))
            })
            .transpose()
    };
    let list = |k: &str| -> Result<Vec<Node>, EvalError> {
        match obj.get(k) {
            None => Ok(Vec::new()),
            Some(Value::Array(a)) if !a.is_empty() => a
                .iter()
                .enumerate()
                .map(|(i, s)| compile(s, &format!("{at}/{k}/{i}")))
                .collect(),
            Some(_) => Err(config(format!(
                "{at}/{k}: expected a non-empty array of schemas"
            ))),
        }
    };
    let mut node = Node {
        min_items: count("minItems")?,
        max_items: count("maxItems")?,
        min_length: count("minLength")?,
        max_length: count("maxLength")?,
        minimum: number("minimum")?,
        maximum: number("maximum")?,
        exclusive_minimum: number("exclusiveMinimum")?,
        exclusive_maximum: number("exclusiveMaximum")?,
        multiple_of: number("multipleOf")?,
        unique_items: obj
            .get("uniqueItems")
            .is_some_and(|v| v.as_bool() == Some(true)),
        constant: obj.get("const").cloned(),
        all_of: list("allOf")?,
        any_of: list("anyOf")?,
        one_of: list("oneOf")?,
        ..Default::default()
    };
    if let Some(t) = obj.get("type") {
        let names: Vec<String> = match t {
            Value::String(s) => vec![s.clone()],
            Value::Array(a) => a
                .iter()
                .map(|x| x.as_str().map(str::to_owned))
                .collect::<Option<_>>()
                .ok_or_else(|| config(format!("{at}/type: expected type names")))?,
            _ => return Err(config(format!("{at}/type: expected a type name or a list"))),
        };
        const TYPES: &[&str] = &[
            "null", "boolean", "object", "array", "number", "string", "integer",
        ];
        if let Some(bad) = names.iter().find(|n| !TYPES.contains(&n.as_str())) {
            return Err(config(format!(
                "{at}/type: {bad:?} is not one of {}",
                TYPES.join(", ")
            )));
        }
        node.types = Some(names);
    }
    if let Some(e) = obj.get("enum") {
        node.enumeration = Some(
            e.as_array()
                .cloned()
                .ok_or_else(|| config(format!("{at}/enum: expected an array")))?,
        );
    }
    if let Some(p) = obj.get("properties") {
        let p = p
            .as_object()
            .ok_or_else(|| config(format!("{at}/properties: expected an object")))?;
        for (k, s) in p {
            node.properties
                .push((k.clone(), compile(s, &format!("{at}/properties/{k}"))?));
        }
    }
    if let Some(r) = obj.get("required") {
        node.required = r
            .as_array()
            .and_then(|a| a.iter().map(|x| x.as_str().map(str::to_owned)).collect())
            .ok_or_else(|| config(format!("{at}/required: expected property names")))?;
    }
    if let Some(a) = obj.get("additionalProperties") {
        node.additional = match a {
            Value::Bool(true) => None,
            Value::Bool(false) => Some(None),
            s => Some(Some(Box::new(compile(
                s,
                &format!("{at}/additionalProperties"),
            )?))),
        };
    }
    if let Some(i) = obj.get("items") {
        node.items = Some(Box::new(compile(i, &format!("{at}/items"))?));
    }
    if let Some(p) = obj.get("pattern") {
        let p = p
            .as_str()
            .ok_or_else(|| config(format!("{at}/pattern: expected a string")))?;
        node.pattern =
            Some(regex::Regex::new(p).map_err(|e| config(format!("{at}/pattern: {e}")))?);
    }
    if let Some(n) = obj.get("not") {
        node.not = Some(Box::new(compile(n, &format!("{at}/not"))?));
    }
    Ok(node)
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Object(_) => "object",
        Value::Array(_) => "array",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
    }
}

fn has_type(v: &Value, t: &str) -> bool {
    let actual = type_name(v);
    actual == t
        || (t == "number" && actual == "integer")
        || (t == "integer" && v.as_f64().is_some_and(|f| f.fract() == 0.0))
}

impl Node {
    /// Appends every violation at `path` to `out` (stops early past 20).
    fn check(&self, v: &Value, path: &str, out: &mut Vec<String>) {
        if out.len() >= 20 {
            return;
        }
        let here = if path.is_empty() { "/" } else { path };
        if self.never {
            out.push(format!("{here}: no value is allowed here"));
            return;
        }
        if let Some(types) = &self.types
            && !types.iter().any(|t| has_type(v, t))
        {
            out.push(format!(
                "{here}: expected {}, got {}",
                types.join(" or "),
                type_name(v)
            ));
            return;
        }
        if let Some(e) = &self.enumeration
            && !e.contains(v)
        {
            out.push(format!(
                "{here}: {v} is not one of {}",
                Value::from(e.clone())
            ));
        }
        if let Some(c) = &self.constant
            && c != v
        {
            out.push(format!("{here}: expected {c}, got {v}"));
        }
        match v {
            Value::Object(o) => {
                for r in &self.required {
                    if !o.contains_key(r) {
                        out.push(format!("{here}: required property {r:?} is missing"));
                    }
                }
                for (k, x) in o {
                    let at = format!("{path}/{k}");
                    match self.properties.iter().find(|(p, _)| p == k) {
                        Some((_, n)) => n.check(x, &at, out),
                        None => match &self.additional {
                            Some(Some(n)) => n.check(x, &at, out),
                            Some(None) => {
                                out.push(format!("{here}: property {k:?} is not allowed"))
                            }
                            None => {}
                        },
                    }
                }
            }
            Value::Array(a) => {
                if self.min_items.is_some_and(|m| a.len() < m) {
                    out.push(format!(
                        "{here}: {} items, expected at least {}",
                        a.len(),
                        self.min_items.unwrap_or(0)
                    ));
                }
                if self.max_items.is_some_and(|m| a.len() > m) {
                    out.push(format!(
                        "{here}: {} items, expected at most {}",
                        a.len(),
                        self.max_items.unwrap_or(0)
                    ));
                }
                if self.unique_items
                    && let Some(j) = (1..a.len()).find(|&j| a[..j].contains(&a[j]))
                {
                    out.push(format!("{here}: item {j} repeats an earlier item"));
                }
                if let Some(n) = &self.items {
                    for (i, x) in a.iter().enumerate() {
                        n.check(x, &format!("{path}/{i}"), out);
                    }
                }
            }
            Value::String(s) => {
                let len = s.chars().count();
                if self.min_length.is_some_and(|m| len < m) {
                    out.push(format!(
                        "{here}: {len} characters, expected at least {}",
                        self.min_length.unwrap_or(0)
                    ));
                }
                if self.max_length.is_some_and(|m| len > m) {
                    out.push(format!(
                        "{here}: {len} characters, expected at most {}",
                        self.max_length.unwrap_or(0)
                    ));
                }
                if let Some(p) = &self.pattern
                    && !p.is_match(s)
                {
                    out.push(format!("{here}: does not match the pattern {}", p.as_str()));
                }
            }
            Value::Number(n) => {
                let x = n.as_f64().unwrap_or(f64::NAN);
                let bound = |ok: bool, what: &str, b: Option<f64>, out: &mut Vec<String>| {
                    if !ok {
                        out.push(format!("{here}: {x} is not {what} {}", b.unwrap_or(0.0)));
                    }
                };
                bound(self.minimum.is_none_or(|m| x >= m), ">=", self.minimum, out);
                bound(self.maximum.is_none_or(|m| x <= m), "<=", self.maximum, out);
                bound(
                    self.exclusive_minimum.is_none_or(|m| x > m),
                    ">",
                    self.exclusive_minimum,
                    out,
                );
                bound(
                    self.exclusive_maximum.is_none_or(|m| x < m),
                    "<",
                    self.exclusive_maximum,
                    out,
                );
                if let Some(m) = self.multiple_of
                    && m > 0.0
                    && ((x / m) - (x / m).round()).abs() > 1e-9
                {
                    out.push(format!("{here}: {x} is not a multiple of {m}"));
                }
            }
            _ => {}
        }
        let conforms = |n: &Node| {
            let mut sink = Vec::new();
            n.check(v, path, &mut sink);
            sink.is_empty()
        };
        for n in &self.all_of {
            n.check(v, path, out);
        }
        if !self.any_of.is_empty() && !self.any_of.iter().any(conforms) {
            out.push(format!("{here}: matches none of the anyOf schemas"));
        }
        if !self.one_of.is_empty() {
            let k = self.one_of.iter().filter(|n| conforms(n)).count();
            if k != 1 {
                out.push(format!(
                    "{here}: matches {k} of the oneOf schemas, expected exactly 1"
                ));
            }
        }
        if let Some(n) = &self.not
            && conforms(n)
        {
            out.push(format!("{here}: matches the schema under not"));
        }
    }
}

/// The output is JSON that conforms to a schema; the explanation lists the violations by JSON
/// pointer.
#[derive(Debug, Clone)]
pub struct JsonSchema {
    root: Node,
}

impl JsonSchema {
    /// Checks `schema` and compiles it; an unsupported keyword or malformed value is an error
    /// naming its location in the schema.
    pub fn new(schema: &Value) -> Result<JsonSchema, EvalError> {
        Ok(JsonSchema {
            root: compile(schema, "#")?,
        })
    }

    /// The violations of `v`, empty when it conforms.
    pub fn violations(&self, v: &Value) -> Vec<String> {
        let mut out = Vec::new();
        self.root.check(v, "", &mut out);
        out
    }
}

impl Evaluator for JsonSchema {
    fn name(&self) -> &'static str {
        NAME
    }
    fn version(&self) -> u32 {
        1
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
            "/title: 0 characters, expected at least 1",
            "/mood: \"sad\" is not one of",
            "property \"extra\" is not allowed",
            "/tracks/0/artist: expected string, got integer",
            "/tracks/1: required property \"artist\" is missing",
            "/tracks/1/year: 2031 is not < 2030",
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
                .contains("/tracks: item 1 repeats")
        );
    }

    #[test]
    fn combinators_and_boolean_schemas() {
        let s = JsonSchema::new(
            &json!({"oneOf": [{"type": "integer"}, {"type": "number", "minimum": 10}]}),
        )
        .unwrap();
        assert!(s.violations(&json!(3)).is_empty());
        assert!(s.violations(&json!(3.5)).len() == 1);
        // 12 is an integer and a number >= 10: two matches
        assert!(s.violations(&json!(12))[0].contains("matches 2 of the oneOf"));
        let s = JsonSchema::new(
            &json!({"anyOf": [{"type": "string"}, {"type": "null"}], "not": {"const": "x"}}),
        )
        .unwrap();
        assert!(s.violations(&json!(null)).is_empty());
        assert_eq!(s.violations(&json!(1)).len(), 1);
        assert!(s.violations(&json!("x"))[0].contains("under not"));
        assert!(
            JsonSchema::new(&json!(false))
                .unwrap()
                .violations(&json!(1))
                .len()
                == 1
        );
        assert!(
            JsonSchema::new(&json!({"multipleOf": 0.5}))
                .unwrap()
                .violations(&json!(1.25))
                .len()
                == 1
        );
    }

    #[test]
    fn unsupported_or_malformed_schemas_are_refused_with_their_location() {
        let e = JsonSchema::new(&json!({"properties": {"a": {"$ref": "#/x"}}})).unwrap_err();
        assert!(
            e.to_string()
                .contains("#/properties/a: keyword \"$ref\" is not supported"),
            "{e}"
        );
        let e = JsonSchema::new(&json!({"type": "text"})).unwrap_err();
        assert!(e.to_string().contains("#/type: \"text\""), "{e}");
        let e = JsonSchema::new(&json!({"minItems": -1})).unwrap_err();
        assert!(e.to_string().contains("#/minItems"), "{e}");
    }
}
