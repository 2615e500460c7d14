//! `encore-telemetry`: observability of model-driven features, LLM calls and recommendation
//! requests alike.
//!
//! An OTLP/HTTP export request ([`otlp::decode`], protobuf or JSON, gzip or not) becomes
//! canonical spans ([`otlp::Normalizer`]): attributes of the OpenTelemetry GenAI conventions
//! (current and deprecated) and of OpenInference are mapped by one table
//! ([`normalize::RULES`]); personal data is redacted ([`redact`]) and content dropped per the
//! service's policy *before* anything is written; each span is priced ([`cost`]). The
//! [`store::SpanStore`] keeps them durably in two columnar logs (core and content) and answers
//! listings and counts.

pub mod cost;
pub mod normalize;
pub mod otlp;
pub mod redact;
pub mod store;

pub use otlp::{ContentPolicy, Normalizer, Span};
pub use redact::{Redactions, Redactor};
pub use store::{Filter, SpanRow, SpanStore};
