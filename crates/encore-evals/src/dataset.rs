//! Dataset items from JSON Lines, and from traces.
//!
//! A JSONL line is an object with `input` (required; a string, or any JSON value, kept as its
//! JSON text), `expected` (or `expected_output`), `context`, and `metadata` (an object). Other
//! keys go into the metadata. A bad line is reported with its number and reason; the other
//! lines are kept.

use crate::store::DatasetItem;
use serde_json::Value;

/// A line that was not imported, and why.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Rejected {
    pub line: usize,
    pub reason: String,
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// Parses JSON Lines (`source` names the file in reasons); blank lines are skipped.
pub fn parse_jsonl(data: &str, source: &str) -> (Vec<DatasetItem>, Vec<Rejected>) {
    let mut items = Vec::new();
    let mut rejected = Vec::new();
    for (i, line) in data.lines().enumerate() {
        let line_no = i + 1;
        let l = line.trim().trim_start_matches('\u{feff}');
        if l.is_empty() {
            continue;
        }
        let reject = |reason: String| Rejected {
            line: line_no,
            reason: format!("{source}:{line_no}: {reason}"),
        };
        let obj = match serde_json::from_str::<Value>(l) {
            Ok(Value::Object(o)) => o,
            Ok(other) => {
                rejected.push(reject(format!(
                    "expected a JSON object, got {}",
                    other.to_string().chars().take(40).collect::<String>()
                )));
                continue;
            }
            Err(e) => {
                rejected.push(reject(format!("not JSON: {e}")));
                continue;
            }
        };
        let Some(input) = obj.get("input").and_then(text) else {
            rejected.push(reject("field `input` is missing or null".into()));
            continue;
        };
        let mut metadata = match obj.get("metadata") {
            None | Some(Value::Null) => serde_json::Map::new(),
            Some(Value::Object(m)) => m.clone(),
            Some(_) => {
                rejected.push(reject("field `metadata`: expected an object".into()));
                continue;
            }
        };
        for (k, v) in &obj {
            if !matches!(
                k.as_str(),
                "input" | "expected" | "expected_output" | "context" | "metadata"
            ) {
                metadata.insert(k.clone(), v.clone());
            }
        }
        items.push(DatasetItem {
            input,
            expected: obj
                .get("expected")
                .or_else(|| obj.get("expected_output"))
                .and_then(text),
            context: obj.get("context").and_then(text),
            metadata,
            trace_id: None,
            span_id: None,
        });
    }
    (items, rejected)
}

/// Dataset items from spans with content: the span's input, and its output as the expected
/// output (production answers to review or to regress against).
pub fn from_spans(spans: &[crate::online::SpanSample]) -> Vec<DatasetItem> {
    spans
        .iter()
        .filter_map(|s| {
            let input = s.input.clone()?;
            let mut metadata = serde_json::Map::new();
            if let Some(m) = &s.target.model {
                metadata.insert("model".into(), m.clone().into());
            }
            if let Some(sv) = &s.target.service {
                metadata.insert("service".into(), sv.clone().into());
            }
            Some(DatasetItem {
                input,
                expected: s.output.clone(),
                context: None,
                metadata,
                trace_id: Some(s.target.trace_id.clone()),
                span_id: Some(s.target.span_id.clone()),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jsonl_keeps_good_lines_and_names_bad_ones() {
        let data = "{\"input\": \"q1\", \"expected\": \"a1\", \"topic\": \"jazz\"}\r\n\
                    \n\
                    {\"input\": {\"mood\": \"calm\"}, \"expected_output\": 3}\n\
                    [1, 2]\n\
                    {\"expected\": \"x\"}\n\
                    {\"input\": \"q\", \"metadata\": 7}\n\
                    {oops\n";
        let (items, rejected) = parse_jsonl(data, "golden.jsonl");
        assert_eq!(items.len(), 2);
        assert_eq!(items[0].metadata["topic"], "jazz");
        assert_eq!(items[0].expected.as_deref(), Some("a1"));
        assert_eq!(items[1].input, "{\"mood\":\"calm\"}");
        assert_eq!(items[1].expected.as_deref(), Some("3"));
        let lines: Vec<usize> = rejected.iter().map(|r| r.line).collect();
        assert_eq!(lines, vec![4, 5, 6, 7]);
        assert!(
            rejected[1]
                .reason
                .starts_with("golden.jsonl:5: field `input`")
        );
        assert!(rejected[2].reason.contains("metadata"));
    }
}
