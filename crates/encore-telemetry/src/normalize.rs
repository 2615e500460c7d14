//! One canonical span from the three attribute vocabularies in use: the current OpenTelemetry
//! GenAI conventions, their deprecated predecessors, and OpenInference (plus the Vercel AI SDK's
//! `ai.*` keys, which real exporters send beside them).
//!
//! The mapping is the table [`RULES`]: each row maps one attribute key (or key prefix, for the
//! flattened message lists) to one canonical field. For each field the first row of the table
//! whose key is present wins, so the table's order is the precedence: current names before
//! deprecated ones before other vocabularies. Attributes that a row consumed are not kept again
//! in the span's remaining attributes.

use serde::Serialize;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::sync::OnceLock;

/// A canonical field a rule fills.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Field {
    Operation,
    Provider,
    RequestModel,
    ResponseModel,
    InputTokens,
    OutputTokens,
    CacheReadTokens,
    CacheWriteTokens,
    ReasoningTokens,
    TotalTokens,
    /// provider-reported cost in USD
    Cost,
    User,
    Session,
    Conversation,
    PromptVersion,
    ErrorType,
    /// OpenInference span kind: LLM, CHAIN, TOOL, RETRIEVER, EMBEDDING, AGENT, ...
    AiKind,
    Input,
    Output,
}

/// Where a key comes from (reported with each mapped field in tests and docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vocabulary {
    GenAi,
    GenAiDeprecated,
    OpenInference,
    VercelAi,
}

#[derive(Debug, Clone, Copy)]
pub struct Rule {
    pub key: &'static str,
    /// `key` is a prefix of indexed keys (`gen_ai.prompt.0.content`, `llm.input_messages.0...`)
    pub prefix: bool,
    pub field: Field,
    pub vocabulary: Vocabulary,
}

const fn rule(key: &'static str, field: Field, vocabulary: Vocabulary) -> Rule {
    Rule {
        key,
        prefix: false,
        field,
        vocabulary,
    }
}

const fn prefix(key: &'static str, field: Field, vocabulary: Vocabulary) -> Rule {
    Rule {
        key,
        prefix: true,
        field,
        vocabulary,
    }
}

use Field as F;
use Vocabulary::{GenAi, GenAiDeprecated, OpenInference, VercelAi};

/// The mapping, in precedence order per field.
pub const RULES: &[Rule] = &[
    rule("gen_ai.operation.name", F::Operation, GenAi),
    rule("ai.operationId", F::Operation, VercelAi),
    rule("gen_ai.provider.name", F::Provider, GenAi),
    rule("gen_ai.system", F::Provider, GenAiDeprecated),
    rule("llm.provider", F::Provider, OpenInference),
    rule("llm.system", F::Provider, OpenInference),
    rule("ai.model.provider", F::Provider, VercelAi),
    rule("gen_ai.request.model", F::RequestModel, GenAi),
    rule("ai.model.id", F::RequestModel, VercelAi),
    rule("llm.model_name", F::RequestModel, OpenInference),
    rule("gen_ai.response.model", F::ResponseModel, GenAi),
    rule("ai.response.model", F::ResponseModel, VercelAi),
    rule("llm.model_name", F::ResponseModel, OpenInference),
    rule("gen_ai.usage.input_tokens", F::InputTokens, GenAi),
    rule(
        "gen_ai.usage.prompt_tokens",
        F::InputTokens,
        GenAiDeprecated,
    ),
    rule("llm.token_count.prompt", F::InputTokens, OpenInference),
    rule("ai.usage.promptTokens", F::InputTokens, VercelAi),
    rule("ai.usage.inputTokens", F::InputTokens, VercelAi),
    rule("gen_ai.usage.output_tokens", F::OutputTokens, GenAi),
    rule(
        "gen_ai.usage.completion_tokens",
        F::OutputTokens,
        GenAiDeprecated,
    ),
    rule("llm.token_count.completion", F::OutputTokens, OpenInference),
    rule("ai.usage.completionTokens", F::OutputTokens, VercelAi),
    rule("ai.usage.outputTokens", F::OutputTokens, VercelAi),
    rule(
        "gen_ai.usage.cache_read.input_tokens",
        F::CacheReadTokens,
        GenAi,
    ),
    rule(
        "gen_ai.usage.cache_read_input_tokens",
        F::CacheReadTokens,
        GenAiDeprecated,
    ),
    rule(
        "llm.token_count.prompt_details.cache_read",
        F::CacheReadTokens,
        OpenInference,
    ),
    rule("ai.usage.cachedInputTokens", F::CacheReadTokens, VercelAi),
    rule(
        "gen_ai.usage.cache_write.input_tokens",
        F::CacheWriteTokens,
        GenAi,
    ),
    rule(
        "gen_ai.usage.cache_creation.input_tokens",
        F::CacheWriteTokens,
        GenAiDeprecated,
    ),
    rule(
        "gen_ai.usage.cache_creation_input_tokens",
        F::CacheWriteTokens,
        GenAiDeprecated,
    ),
    rule(
        "llm.token_count.prompt_details.cache_write",
        F::CacheWriteTokens,
        OpenInference,
    ),
    rule(
        "gen_ai.usage.reasoning.output_tokens",
        F::ReasoningTokens,
        GenAi,
    ),
    rule(
        "llm.token_count.completion_details.reasoning",
        F::ReasoningTokens,
        OpenInference,
    ),
    rule("ai.usage.reasoningTokens", F::ReasoningTokens, VercelAi),
    rule("llm.token_count.total", F::TotalTokens, OpenInference),
    rule("gen_ai.usage.total_tokens", F::TotalTokens, GenAiDeprecated),
    rule("ai.usage.totalTokens", F::TotalTokens, VercelAi),
    rule("gen_ai.usage.cost", F::Cost, GenAi),
    rule("llm.cost.total", F::Cost, OpenInference),
    rule("user.id", F::User, OpenInference),
    rule("enduser.id", F::User, GenAi),
    rule("session.id", F::Session, OpenInference),
    rule("gen_ai.conversation.id", F::Conversation, GenAi),
    rule("session.id", F::Conversation, OpenInference),
    rule("gen_ai.prompt.version", F::PromptVersion, GenAi),
    rule(
        "llm.prompt_template.version",
        F::PromptVersion,
        OpenInference,
    ),
    rule("error.type", F::ErrorType, GenAi),
    rule("openinference.span.kind", F::AiKind, OpenInference),
    rule("gen_ai.input.messages", F::Input, GenAi),
    rule("gen_ai.prompt", F::Input, GenAiDeprecated),
    prefix("gen_ai.prompt.", F::Input, GenAiDeprecated),
    prefix("llm.input_messages.", F::Input, OpenInference),
    rule("input.value", F::Input, OpenInference),
    rule("ai.prompt.messages", F::Input, VercelAi),
    rule("ai.prompt", F::Input, VercelAi),
    rule("gen_ai.tool.call.arguments", F::Input, GenAi),
    rule("gen_ai.output.messages", F::Output, GenAi),
    rule("gen_ai.completion", F::Output, GenAiDeprecated),
    prefix("gen_ai.completion.", F::Output, GenAiDeprecated),
    prefix("llm.output_messages.", F::Output, OpenInference),
    rule("output.value", F::Output, OpenInference),
    rule("ai.response.text", F::Output, VercelAi),
    rule("gen_ai.tool.call.result", F::Output, GenAi),
];

/// Token counts by type (absent: not reported).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Tokens {
    pub input: Option<i64>,
    pub output: Option<i64>,
    pub cache_read: Option<i64>,
    pub cache_write: Option<i64>,
    pub reasoning: Option<i64>,
    pub total: Option<i64>,
}

/// What the table extracted from one span's attributes.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Mapped {
    pub operation: Option<String>,
    pub provider: Option<String>,
    pub request_model: Option<String>,
    pub response_model: Option<String>,
    pub tokens: Tokens,
    pub reported_cost: Option<f64>,
    pub user: Option<String>,
    pub session: Option<String>,
    pub conversation: Option<String>,
    pub prompt_version: Option<String>,
    pub error_type: Option<String>,
    pub ai_kind: Option<String>,
    pub input: Option<String>,
    pub output: Option<String>,
    /// the attributes no rule consumed
    pub attributes: Map<String, Value>,
}

fn exact_index() -> &'static HashMap<&'static str, Vec<usize>> {
    static INDEX: OnceLock<HashMap<&'static str, Vec<usize>>> = OnceLock::new();
    INDEX.get_or_init(|| {
        let mut m: HashMap<&'static str, Vec<usize>> = HashMap::new();
        for (i, r) in RULES.iter().enumerate().filter(|(_, r)| !r.prefix) {
            m.entry(r.key).or_default().push(i);
        }
        m
    })
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn integer(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// Flattened indexed keys (`llm.input_messages.0.message.role` ...) back into a JSON array of
/// objects, in index order: `[{"message.role": "user", "message.content": "..."}, ...]`.
fn unflatten(prefix: &str, parts: &[(&str, &Value)]) -> String {
    let mut by_index: std::collections::BTreeMap<u64, Map<String, Value>> = Default::default();
    for (key, value) in parts {
        let rest = &key[prefix.len()..];
        let (index, field) = rest.split_once('.').unwrap_or((rest, "value"));
        let index = index.parse().unwrap_or(u64::MAX);
        by_index
            .entry(index)
            .or_default()
            .insert(field.to_owned(), (*value).clone());
    }
    Value::Array(by_index.into_values().map(Value::Object).collect()).to_string()
}

/// Maps `attributes` (already flattened to JSON values) by the table.
pub fn map(attributes: &Map<String, Value>) -> Mapped {
    // per field: (rule index, value) of the best rule found so far
    let mut best: HashMap<Field, (usize, Value)> = HashMap::new();
    let mut consumed: Vec<&str> = Vec::new();
    let index = exact_index();
    let mut prefixed: HashMap<usize, Vec<(&str, &Value)>> = HashMap::new();
    for (key, value) in attributes {
        if let Some(rules) = index.get(key.as_str()) {
            consumed.push(key);
            for &i in rules {
                let field = RULES[i].field;
                if best.get(&field).is_none_or(|(j, _)| i < *j) {
                    best.insert(field, (i, value.clone()));
                }
            }
            continue;
        }
        if let Some(i) = RULES
            .iter()
            .position(|r| r.prefix && key.starts_with(r.key))
        {
            consumed.push(key);
            prefixed.entry(i).or_default().push((key, value));
        }
    }
    for (i, mut parts) in prefixed {
        parts.sort_by(|a, b| a.0.cmp(b.0));
        let field = RULES[i].field;
        if best.get(&field).is_none_or(|(j, _)| i < *j) {
            best.insert(field, (i, Value::String(unflatten(RULES[i].key, &parts))));
        }
    }
    // OpenInference puts the request in `llm.invocation_parameters` (a JSON string): its model
    // is the request model (`llm.model_name` is the response's, and absent when the call
    // failed), its sampling parameters the GenAI request attributes
    let params: Option<Map<String, Value>> =
        attributes
            .get("llm.invocation_parameters")
            .and_then(|v| match v {
                Value::String(s) => serde_json::from_str(s).ok(),
                Value::Object(m) => Some(m.clone()),
                _ => None,
            });
    if let Some(p) = &params {
        let model = p.get("model").or_else(|| p.get("model_name")).cloned();
        let weaker = best
            .get(&F::RequestModel)
            .is_none_or(|(i, _)| RULES[*i].key == "llm.model_name");
        if let Some(m) = model.filter(|m| m.is_string() && weaker) {
            best.insert(F::RequestModel, (usize::MAX, m));
        }
    }
    let take_text = |f: Field| best.get(&f).map(|(_, v)| text(v));
    let take_int = |f: Field| best.get(&f).and_then(|(_, v)| integer(v));
    let mut remaining = attributes.clone();
    for key in consumed {
        remaining.remove(key);
    }
    for (param, key) in [
        ("temperature", "gen_ai.request.temperature"),
        ("top_p", "gen_ai.request.top_p"),
        ("max_tokens", "gen_ai.request.max_tokens"),
        ("max_completion_tokens", "gen_ai.request.max_tokens"),
        ("seed", "gen_ai.request.seed"),
        ("frequency_penalty", "gen_ai.request.frequency_penalty"),
        ("presence_penalty", "gen_ai.request.presence_penalty"),
    ] {
        if let Some(v) = params.as_ref().and_then(|p| p.get(param))
            && !remaining.contains_key(key)
        {
            remaining.insert(key.to_owned(), v.clone());
        }
    }
    Mapped {
        operation: take_text(F::Operation),
        provider: take_text(F::Provider),
        request_model: take_text(F::RequestModel),
        response_model: take_text(F::ResponseModel),
        tokens: Tokens {
            input: take_int(F::InputTokens),
            output: take_int(F::OutputTokens),
            cache_read: take_int(F::CacheReadTokens),
            cache_write: take_int(F::CacheWriteTokens),
            reasoning: take_int(F::ReasoningTokens),
            total: take_int(F::TotalTokens),
        },
        reported_cost: best.get(&F::Cost).and_then(|(_, v)| number(v)),
        user: take_text(F::User),
        session: take_text(F::Session),
        conversation: take_text(F::Conversation),
        prompt_version: take_text(F::PromptVersion),
        error_type: take_text(F::ErrorType),
        ai_kind: take_text(F::AiKind),
        input: take_text(F::Input),
        output: take_text(F::Output),
        attributes: remaining,
    }
}
