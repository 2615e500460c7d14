//! OTLP/HTTP trace export requests (protobuf or JSON, optionally gzip) into canonical spans.

use crate::cost::{Cost, PriceTable};
use crate::normalize::{Mapped, map};
use crate::redact::{Redactions, Redactor};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use prost::Message;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::io::Read;

/// One span, normalized, redacted and priced: what the store keeps.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Span {
    pub project: String,
    pub trace_id: String,
    pub span_id: String,
    pub parent_span_id: Option<String>,
    pub name: String,
    /// `internal`, `server`, `client`, `producer`, `consumer` or `unspecified`
    pub kind: &'static str,
    pub service: String,
    pub start_ns: i64,
    pub end_ns: i64,
    /// `unset`, `ok` or `error`
    pub status: &'static str,
    pub status_message: Option<String>,
    #[serde(flatten)]
    pub mapped: Mapped,
    pub cost: Option<Cost>,
}

impl Span {
    pub fn duration_ns(&self) -> i64 {
        (self.end_ns - self.start_ns).max(0)
    }

    pub fn key(&self) -> String {
        format!("{}{}", self.trace_id, self.span_id)
    }
}

/// What may be stored of prompts and completions, per service.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContentPolicy {
    /// content and the attributes no rule mapped are dropped
    None,
    /// content is dropped, the remaining attributes kept
    MetadataOnly,
    /// everything is kept (redacted)
    #[default]
    Full,
}

/// How spans are turned into stored rows.
#[derive(Debug, Clone, Default)]
pub struct Normalizer {
    pub redactor: Redactor,
    pub prices: PriceTable,
    pub content: ContentPolicy,
    pub content_by_service: HashMap<String, ContentPolicy>,
    /// when set, user ids are stored as a keyed hash (HMAC-SHA256, hex)
    pub user_id_key: Option<Vec<u8>>,
    /// the key of [`Normalizer::redact_id`]: an identifier (user, session, conversation,
    /// project) that carries personal data is stored as `redacted-<keyed hash>`, so two such
    /// listeners stay two
    pub id_key: Vec<u8>,
    pub sampling: Sampling,
}

/// Which traces are kept: every trace with an error or a span slower than `keep_slower_than_ms`,
/// and `rate` of the others, chosen by trace id so that a trace is kept or dropped whole.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sampling {
    pub rate: f64,
    pub keep_slower_than_ms: f64,
}

impl Default for Sampling {
    fn default() -> Self {
        Sampling {
            rate: 1.0,
            keep_slower_than_ms: 2_000.0,
        }
    }
}

impl Sampling {
    /// Drops from `spans` the traces not kept; returns how many spans were dropped.
    pub fn apply(&self, spans: &mut Vec<Span>) -> usize {
        if self.rate >= 1.0 {
            return 0;
        }
        let mut keep: HashMap<&str, bool> = HashMap::new();
        for s in spans.iter() {
            let k = keep
                .entry(s.trace_id.as_str())
                .or_insert_with(|| trace_draw(&s.trace_id) < self.rate);
            if s.status == "error" || s.duration_ns() as f64 / 1e6 >= self.keep_slower_than_ms {
                *k = true;
            }
        }
        let kept: std::collections::HashSet<String> = keep
            .into_iter()
            .filter(|(_, k)| *k)
            .map(|(t, _)| t.to_owned())
            .collect();
        let before = spans.len();
        spans.retain(|s| kept.contains(&s.trace_id));
        before - spans.len()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("the body is not gzip: {0}")]
    Gzip(std::io::Error),
    #[error("the body is not an OTLP protobuf export request: {0}")]
    Protobuf(prost::DecodeError),
    #[error("the body is not an OTLP/JSON export request: {0}")]
    Json(serde_json::Error),
    #[error("unsupported content type {0:?}: expected application/x-protobuf or application/json")]
    ContentType(String),
    #[error("the body inflates to more than {0} bytes")]
    TooLarge(usize),
}

impl encore_core::Coded for DecodeError {
    fn code(&self) -> encore_core::ErrorCode {
        use encore_core::ErrorCode;
        match self {
            DecodeError::Gzip(_) | DecodeError::Protobuf(_) | DecodeError::Json(_) => {
                ErrorCode::InvalidArgument
            }
            DecodeError::ContentType(_) => ErrorCode::UnsupportedMedia,
            DecodeError::TooLarge(_) => ErrorCode::TooLarge,
        }
    }
}

/// Decodes a trace export request body. `content_type`: `application/x-protobuf` (or
/// `application/protobuf`) or `application/json`; `gzip`: the body is gzip-compressed, and
/// inflates to at most `max_inflated` bytes (a gzip bomb stops there).
pub fn decode(
    body: &[u8],
    content_type: &str,
    gzip: bool,
    max_inflated: usize,
) -> Result<ExportTraceServiceRequest, DecodeError> {
    decode_any(body, content_type, gzip, max_inflated)
}

/// Decodes a log export request body, as [`decode`] does a trace export's.
pub fn decode_logs(
    body: &[u8],
    content_type: &str,
    gzip: bool,
    max_inflated: usize,
) -> Result<ExportLogsServiceRequest, DecodeError> {
    decode_any(body, content_type, gzip, max_inflated)
}

fn decode_any<T: Message + Default + serde::de::DeserializeOwned>(
    body: &[u8],
    content_type: &str,
    gzip: bool,
    max_inflated: usize,
) -> Result<T, DecodeError> {
    let inflated;
    let body = if gzip {
        let mut out = Vec::with_capacity(body.len().saturating_mul(4).min(max_inflated));
        flate2::read::GzDecoder::new(body)
            .take(max_inflated as u64 + 1)
            .read_to_end(&mut out)
            .map_err(DecodeError::Gzip)?;
        if out.len() > max_inflated {
            return Err(DecodeError::TooLarge(max_inflated));
        }
        inflated = out;
        &inflated[..]
    } else {
        body
    };
    let media = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match media.as_str() {
        "application/x-protobuf" | "application/protobuf" | "" => {
            T::decode(body).map_err(DecodeError::Protobuf)
        }
        "application/json" => serde_json::from_slice(body).map_err(DecodeError::Json),
        other => Err(DecodeError::ContentType(other.to_owned())),
    }
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

/// An OTLP value as JSON.
pub fn any_to_json(v: &AnyValue) -> Value {
    match &v.value {
        Some(any_value::Value::StringValue(s)) => Value::String(s.clone()),
        Some(any_value::Value::BoolValue(b)) => Value::Bool(*b),
        Some(any_value::Value::IntValue(i)) => Value::from(*i),
        Some(any_value::Value::DoubleValue(d)) => {
            serde_json::Number::from_f64(*d).map_or(Value::Null, Value::Number)
        }
        Some(any_value::Value::ArrayValue(a)) => {
            Value::Array(a.values.iter().map(any_to_json).collect())
        }
        Some(any_value::Value::KvlistValue(kv)) => Value::Object(attributes(&kv.values)),
        Some(any_value::Value::BytesValue(b)) => Value::String(hex(b)),
        // an index into a profile's string table: meaningless without it
        Some(any_value::Value::StringValueStrindex(_)) | None => Value::Null,
    }
}

fn attributes(kvs: &[KeyValue]) -> Map<String, Value> {
    kvs.iter()
        .map(|kv| {
            (
                kv.key.clone(),
                kv.value.as_ref().map_or(Value::Null, any_to_json),
            )
        })
        .collect()
}

fn hmac_sha256(key: &[u8], message: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let pad = |b: u8| k.iter().map(|x| x ^ b).collect::<Vec<u8>>();
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    let outer = Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize();
    hex(&outer[..16])
}

const KINDS: [&str; 6] = [
    "unspecified",
    "internal",
    "server",
    "client",
    "producer",
    "consumer",
];

/// Characters per token of English text under the GPT tokenizers: an estimate's scale.
const CHARS_PER_TOKEN: usize = 4;

/// Estimates the token counts an LLM call did not report (a stream without usage) from its
/// content: one token per [`CHARS_PER_TOKEN`] characters of the prompt and of the completion.
/// Only for a model call with content; the estimate is marked in the attributes
/// (`encore.tokens.estimated`) and in the cost's source. Returns whether it estimated.
fn estimate_tokens(mapped: &mut Mapped) -> bool {
    let llm = mapped.operation.as_deref().is_some_and(|o| {
        matches!(
            o,
            "chat" | "text_completion" | "generate_content" | "completion"
        )
    }) || mapped.ai_kind.as_deref() == Some("LLM");
    let model = mapped.request_model.is_some() || mapped.response_model.is_some();
    // a completion was received: a call that failed or was cut off has no output to count
    if !llm || !model || mapped.output.is_none() {
        return false;
    }
    let count = |t: &Option<String>| {
        t.as_deref()
            .map(|t| (t.chars().count().div_ceil(CHARS_PER_TOKEN)) as i64)
    };
    let mut estimated = Vec::new();
    if mapped.tokens.input.is_none()
        && let Some(n) = count(&mapped.input)
    {
        mapped.tokens.input = Some(n);
        estimated.push(Value::from("input"));
    }
    if mapped.tokens.output.is_none()
        && let Some(n) = count(&mapped.output)
    {
        mapped.tokens.output = Some(n);
        estimated.push(Value::from("output"));
    }
    if estimated.is_empty() {
        return false;
    }
    mapped
        .attributes
        .insert("encore.tokens.estimated".into(), Value::Array(estimated));
    true
}

/// What GenAI log events say of one span: its prompt messages and its completions, as the
/// content table stores them (JSON arrays), with the project and time they belong to.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SpanContent {
    pub project: String,
    pub trace_id: String,
    pub span_id: String,
    /// the first event's time
    pub time_ns: i64,
    pub input: Option<String>,
    pub output: Option<String>,
}

impl SpanContent {
    pub fn key(&self) -> String {
        format!("{}{}", self.trace_id, self.span_id)
    }
}

/// What a log export held: the GenAI events' content per span, and the records left out
/// (not a GenAI event, or no span to attach to), for the partial-success answer.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LogContent {
    pub spans: Vec<SpanContent>,
    pub ignored: u64,
}

/// The role a message event's name implies (`gen_ai.user.message` is `user`).
fn event_role(name: &str) -> Option<&str> {
    name.strip_prefix("gen_ai.")?.strip_suffix(".message")
}

impl Normalizer {
    /// The GenAI events of a log export (OpenTelemetry GenAI conventions: the
    /// `gen_ai.{system,user,assistant,tool}.message` and `gen_ai.choice` events that
    /// instrumentations such as `openai-v2` send as log records, and the newer
    /// `gen_ai.client.inference.operation.details` event with `gen_ai.input.messages` and
    /// `gen_ai.output.messages`), gathered per span, with the service's content policy and
    /// redaction applied as to span content.
    pub fn log_content(
        &self,
        request: &ExportLogsServiceRequest,
        counts: &mut Redactions,
    ) -> LogContent {
        let mut out = LogContent::default();
        // (project, trace, span) -> (first time, input messages, outputs)
        type Gathered = (i64, Vec<Value>, Vec<Value>);
        let mut by_span: std::collections::BTreeMap<(String, String, String), Gathered> =
            Default::default();
        for rl in &request.resource_logs {
            let resource = rl
                .resource
                .as_ref()
                .map(|r| attributes(&r.attributes))
                .unwrap_or_default();
            let (project, service) = self.project_and_service(&resource, counts);
            let keep = self.policy(&service) == ContentPolicy::Full;
            for sl in &rl.scope_logs {
                for r in &sl.log_records {
                    let attrs = attributes(&r.attributes);
                    let name = if r.event_name.is_empty() {
                        attrs
                            .get("event.name")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .to_owned()
                    } else {
                        r.event_name.clone()
                    };
                    let genai = name.starts_with("gen_ai.");
                    if !genai || r.trace_id.len() != 16 || r.span_id.len() != 8 {
                        out.ignored += 1;
                        continue;
                    }
                    let time = if r.time_unix_nano > 0 {
                        r.time_unix_nano
                    } else {
                        r.observed_time_unix_nano
                    } as i64;
                    let entry = by_span
                        .entry((project.clone(), hex(&r.trace_id), hex(&r.span_id)))
                        .or_insert_with(|| (time, Vec::new(), Vec::new()));
                    entry.0 = entry.0.min(time);
                    if !keep {
                        continue;
                    }
                    let body = r.body.as_ref().map_or(Value::Null, any_to_json);
                    let messages = |v: Option<&Value>| -> Vec<Value> {
                        match v {
                            Some(Value::Array(a)) => a.clone(),
                            // a JSON string of a message list
                            Some(Value::String(s)) => match serde_json::from_str(s) {
                                Ok(Value::Array(a)) => a,
                                _ => vec![Value::String(s.clone())],
                            },
                            Some(other) if !other.is_null() => vec![other.clone()],
                            _ => Vec::new(),
                        }
                    };
                    if let Some(role) = event_role(&name) {
                        let mut m = match body {
                            Value::Object(m) => m,
                            Value::Null => Map::new(),
                            other => Map::from_iter([("content".to_owned(), other)]),
                        };
                        m.entry("role")
                            .or_insert_with(|| Value::String(role.to_owned()));
                        entry.1.push(Value::Object(m));
                    } else if name == "gen_ai.choice" {
                        entry.2.push(body);
                    } else if name == "gen_ai.client.inference.operation.details" {
                        let from = |k: &str| attrs.get(k).or_else(|| body.get(k));
                        entry.1.extend(messages(from("gen_ai.system_instructions")));
                        entry.1.extend(messages(from("gen_ai.input.messages")));
                        entry.2.extend(messages(from("gen_ai.output.messages")));
                    }
                }
            }
        }
        for ((project, trace_id, span_id), (time_ns, input, output)) in by_span {
            let redacted = |v: Vec<Value>, counts: &mut Redactions| {
                (!v.is_empty()).then(|| self.redactor.redact(&Value::Array(v).to_string(), counts))
            };
            let input = redacted(input, counts);
            let output = redacted(output, counts);
            if input.is_none() && output.is_none() {
                continue;
            }
            out.spans.push(SpanContent {
                project,
                trace_id,
                span_id,
                time_ns,
                input,
                output,
            });
        }
        out
    }

    /// A user id as stored: the keyed hash when a key is configured, else as sent (or its
    /// keyed hash when it carries personal data).
    pub fn user_id(&self, raw: &str) -> String {
        match &self.user_id_key {
            Some(key) => hmac_sha256(key, raw.as_bytes()),
            None => self.redact_id(raw, &mut Redactions::default()),
        }
    }

    /// An identifier as stored: as sent, unless it carries personal data (an email, a phone
    /// number, ...); then `redacted-<HMAC-SHA256 under id_key>`, distinct per value.
    pub fn redact_id(&self, raw: &str, counts: &mut Redactions) -> String {
        let mut found = Redactions::default();
        if self.redactor.redact(raw, &mut found) == raw {
            return raw.to_owned();
        }
        counts.add(&found);
        format!("redacted-{}", hmac_sha256(&self.id_key, raw.as_bytes()))
    }

    /// A resource's project (`openinference.project.name`, else `encore.project`, else
    /// `default`) and service (`service.name`), both redacted as stored.
    fn project_and_service(
        &self,
        resource: &Map<String, Value>,
        counts: &mut Redactions,
    ) -> (String, String) {
        let text = |k: &str| resource.get(k).and_then(Value::as_str).map(str::to_owned);
        let project = text("openinference.project.name")
            .or_else(|| text("encore.project"))
            .unwrap_or_else(|| "default".into());
        let service = text("service.name").unwrap_or_else(|| "unknown_service".into());
        (
            self.redact_id(&project, counts),
            self.redactor.redact(&service, counts),
        )
    }

    fn policy(&self, service: &str) -> ContentPolicy {
        self.content_by_service
            .get(service)
            .copied()
            .unwrap_or(self.content)
    }

    /// Every span of `request`, normalized; `counts` gets what redaction replaced.
    pub fn spans(&self, request: &ExportTraceServiceRequest, counts: &mut Redactions) -> Vec<Span> {
        let mut out = Vec::new();
        for rs in &request.resource_spans {
            let resource = rs
                .resource
                .as_ref()
                .map(|r| attributes(&r.attributes))
                .unwrap_or_default();
            let (project, service) = self.project_and_service(&resource, counts);
            let policy = self.policy(&service);
            for ss in &rs.scope_spans {
                for s in &ss.spans {
                    let mut attrs = attributes(&s.attributes);
                    // the deprecated message events carry prompts and completions
                    let mut event_input = Vec::new();
                    let mut event_output = Vec::new();
                    let mut exception = None;
                    for e in &s.events {
                        let ea = attributes(&e.attributes);
                        match e.name.as_str() {
                            "gen_ai.choice" => event_output.push(Value::Object(ea)),
                            n if n.starts_with("gen_ai.") && n.ends_with(".message") => {
                                let mut m = ea;
                                m.insert("event".into(), Value::String(n.to_owned()));
                                event_input.push(Value::Object(m));
                            }
                            "exception" => {
                                exception = ea
                                    .get("exception.type")
                                    .and_then(Value::as_str)
                                    .map(str::to_owned);
                            }
                            _ => {}
                        }
                    }
                    // resource-level user and session ids count when the span has none
                    for k in ["user.id", "session.id"] {
                        if !attrs.contains_key(k)
                            && let Some(v) = resource.get(k)
                        {
                            attrs.insert(k.to_owned(), v.clone());
                        }
                    }
                    let mut mapped = map(&attrs);
                    if mapped.input.is_none() && !event_input.is_empty() {
                        mapped.input = Some(Value::Array(event_input).to_string());
                    }
                    if mapped.output.is_none() && !event_output.is_empty() {
                        mapped.output = Some(Value::Array(event_output).to_string());
                    }
                    let (status, status_message) = match s.status.as_ref() {
                        Some(st) if st.code == 2 => ("error", Some(st.message.clone())),
                        Some(st) if st.code == 1 => ("ok", None),
                        _ => ("unset", None),
                    };
                    if mapped.error_type.is_none() && status == "error" {
                        mapped.error_type = exception.clone();
                    }
                    // a failed call was not billed: nothing to estimate
                    let estimated = status != "error" && estimate_tokens(&mut mapped);
                    if mapped.tokens.total.is_none()
                        && (mapped.tokens.input.is_some() || mapped.tokens.output.is_some())
                    {
                        mapped.tokens.total = Some(
                            mapped.tokens.input.unwrap_or(0) + mapped.tokens.output.unwrap_or(0),
                        );
                    }
                    // privacy before anything is kept
                    match policy {
                        ContentPolicy::Full => {}
                        ContentPolicy::MetadataOnly => {
                            mapped.input = None;
                            mapped.output = None;
                        }
                        ContentPolicy::None => {
                            mapped.input = None;
                            mapped.output = None;
                            mapped.attributes.clear();
                        }
                    }
                    for field in [&mut mapped.input, &mut mapped.output] {
                        if let Some(t) = field.as_mut() {
                            *t = self.redactor.redact(t, counts);
                        }
                    }
                    // keys too: a key can carry what a value would
                    mapped.attributes = std::mem::take(&mut mapped.attributes)
                        .into_iter()
                        .map(|(k, mut v)| {
                            self.redactor.redact_json(&mut v, counts);
                            (self.redactor.redact(&k, counts), v)
                        })
                        .collect();
                    for field in [
                        &mut mapped.operation,
                        &mut mapped.provider,
                        &mut mapped.request_model,
                        &mut mapped.response_model,
                        &mut mapped.prompt_version,
                        &mut mapped.error_type,
                        &mut mapped.ai_kind,
                    ] {
                        if let Some(t) = field.as_mut() {
                            *t = self.redactor.redact(t, counts);
                        }
                    }
                    for id in [&mut mapped.session, &mut mapped.conversation] {
                        if let Some(t) = id.as_mut() {
                            *t = self.redact_id(t, counts);
                        }
                    }
                    let mut status_message = status_message.filter(|m| !m.is_empty());
                    if let Some(m) = status_message.as_mut() {
                        *m = self.redactor.redact(m, counts);
                    }
                    if let Some(u) = mapped.user.as_mut() {
                        match &self.user_id_key {
                            Some(key) => *u = hmac_sha256(key, u.as_bytes()),
                            None => *u = self.redact_id(u, counts),
                        }
                    }
                    let mut cost = self.prices.cost(
                        mapped.reported_cost,
                        mapped.response_model.as_deref(),
                        mapped.request_model.as_deref(),
                        &mapped.tokens,
                    );
                    if estimated && let Some(c) = cost.as_mut().filter(|c| c.source != "provider") {
                        c.source.push_str("+estimated");
                    }
                    out.push(Span {
                        project: project.clone(),
                        trace_id: hex(&s.trace_id),
                        span_id: hex(&s.span_id),
                        parent_span_id: (!s.parent_span_id.is_empty())
                            .then(|| hex(&s.parent_span_id)),
                        name: self.redactor.redact(&s.name, counts),
                        kind: KINDS.get(s.kind as usize).copied().unwrap_or("unspecified"),
                        service: service.clone(),
                        start_ns: s.start_time_unix_nano as i64,
                        end_ns: s.end_time_unix_nano as i64,
                        status,
                        status_message,
                        mapped,
                        cost,
                    });
                }
            }
        }
        inherit_user_and_session(&mut out);
        out
    }
}

/// A trace's user and session, usually set on its root span only, go to its other spans of
/// the same export too, so per-user cost counts the LLM calls made on a user's behalf.
fn inherit_user_and_session(spans: &mut [Span]) {
    let mut by_trace: HashMap<String, (Option<String>, Option<String>)> = HashMap::new();
    for s in spans.iter() {
        let e = by_trace.entry(s.trace_id.clone()).or_default();
        if e.0.is_none() {
            e.0.clone_from(&s.mapped.user);
        }
        if e.1.is_none() {
            e.1.clone_from(&s.mapped.session);
        }
    }
    for s in spans.iter_mut() {
        if let Some((user, session)) = by_trace.get(&s.trace_id) {
            if s.mapped.user.is_none() {
                s.mapped.user.clone_from(user);
            }
            if s.mapped.session.is_none() {
                s.mapped.session.clone_from(session);
            }
        }
    }
}

/// A trace id's uniform draw in [0, 1): its last 8 bytes are random.
pub fn trace_draw(trace_id: &str) -> f64 {
    let tail = &trace_id[trace_id.len().saturating_sub(16)..];
    u64::from_str_radix(tail, 16).unwrap_or(0) as f64 / u64::MAX as f64
}
