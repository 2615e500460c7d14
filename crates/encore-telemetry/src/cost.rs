//! What a span cost: a versioned price table per model and token type, a provider-reported
//! cost winning over it when present.
//!
//! Prices are USD per million tokens. Token accounting follows the GenAI conventions:
//! `input_tokens` includes cached reads and cache writes, `output_tokens` includes reasoning.
//! A model matches the longest table entry that prefixes its name (`gpt-4o-mini-2024-07-18`
//! is `gpt-4o-mini`, not `gpt-4o`); the response model is tried before the request model.

use crate::normalize::Tokens;
use serde::{Deserialize, Serialize};

/// Prices of one model, USD per million tokens.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Price {
    /// a model name or prefix, e.g. `gpt-4o-mini`
    pub model: String,
    pub input: f64,
    /// cached input reads (default: `input`)
    #[serde(default)]
    pub cached_input: Option<f64>,
    /// cache writes (default: `input`)
    #[serde(default)]
    pub cache_write: Option<f64>,
    pub output: f64,
    /// reasoning output (default: `output`)
    #[serde(default)]
    pub reasoning: Option<f64>,
    /// above this many input tokens in one call, the `long_*` prices apply to the whole call
    #[serde(default)]
    pub long_context_threshold: Option<i64>,
    #[serde(default)]
    pub long_input: Option<f64>,
    #[serde(default)]
    pub long_output: Option<f64>,
}

/// The table in force: its version is stored with every cost computed from it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PriceTable {
    pub version: String,
    pub prices: Vec<Price>,
}

fn price(model: &str, input: f64, cached: f64, output: f64) -> Price {
    Price {
        model: model.into(),
        input,
        cached_input: Some(cached),
        cache_write: None,
        output,
        reasoning: None,
        long_context_threshold: None,
        long_input: None,
        long_output: None,
    }
}

impl Default for PriceTable {
    /// Built-in list prices of common models (USD per million tokens, 2026-11).
    fn default() -> Self {
        let mut sonnet = price("claude-sonnet-4", 3.0, 0.30, 15.0);
        sonnet.cache_write = Some(3.75);
        sonnet.long_context_threshold = Some(200_000);
        sonnet.long_input = Some(6.0);
        sonnet.long_output = Some(22.5);
        let mut opus = price("claude-opus-4", 15.0, 1.50, 75.0);
        opus.cache_write = Some(18.75);
        let mut haiku = price("claude-3-5-haiku", 0.80, 0.08, 4.0);
        haiku.cache_write = Some(1.0);
        let mut gemini_pro = price("gemini-2.5-pro", 1.25, 0.31, 10.0);
        gemini_pro.long_context_threshold = Some(200_000);
        gemini_pro.long_input = Some(2.5);
        gemini_pro.long_output = Some(15.0);
        PriceTable {
            version: "builtin-2026-11".into(),
            prices: vec![
                price("gpt-4o-mini", 0.15, 0.075, 0.60),
                price("gpt-4o", 2.50, 1.25, 10.0),
                price("gpt-4.1-mini", 0.40, 0.10, 1.60),
                price("gpt-4.1", 2.0, 0.50, 8.0),
                price("gpt-4-", 30.0, 30.0, 60.0),
                price("gpt-5-mini", 0.25, 0.025, 2.0),
                price("gpt-5", 1.25, 0.125, 10.0),
                price("o3-mini", 1.10, 0.55, 4.40),
                price("o3", 2.0, 0.50, 8.0),
                price("text-embedding-3-small", 0.02, 0.02, 0.0),
                price("text-embedding-3-large", 0.13, 0.13, 0.0),
                sonnet,
                opus,
                haiku,
                price("gemini-2.0-flash", 0.10, 0.025, 0.40),
                price("gemini-2.5-flash", 0.30, 0.075, 2.50),
                gemini_pro,
                price("meta.llama3-1-70b-instruct", 0.72, 0.72, 0.72),
                price("llama-3.1-70b-instruct", 0.72, 0.72, 0.72),
            ],
        }
    }
}

/// A cost and where it came from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Cost {
    pub usd: f64,
    /// `provider`, or `prices:<table version>`
    pub source: String,
}

impl PriceTable {
    /// The entry for `model`: the longest name that prefixes it.
    pub fn find(&self, model: &str) -> Option<&Price> {
        let model = model.rsplit('/').next().unwrap_or(model);
        self.prices
            .iter()
            .filter(|p| model.starts_with(p.model.as_str()))
            .max_by_key(|p| p.model.len())
    }

    /// The cost of a call: the provider's if reported, else from the table by the response
    /// model, else the request model; `None` without token counts or a known model.
    pub fn cost(
        &self,
        reported: Option<f64>,
        response_model: Option<&str>,
        request_model: Option<&str>,
        tokens: &Tokens,
    ) -> Option<Cost> {
        if let Some(usd) = reported.filter(|c| c.is_finite() && *c >= 0.0) {
            return Some(Cost {
                usd,
                source: "provider".into(),
            });
        }
        if tokens.input.is_none() && tokens.output.is_none() {
            return None;
        }
        let p = response_model
            .and_then(|m| self.find(m))
            .or_else(|| request_model.and_then(|m| self.find(m)))?;
        let input = tokens.input.unwrap_or(0).max(0);
        let read = tokens.cache_read.unwrap_or(0).clamp(0, input);
        let write = tokens.cache_write.unwrap_or(0).clamp(0, input - read);
        let output = tokens.output.unwrap_or(0).max(0);
        let reasoning = tokens.reasoning.unwrap_or(0).clamp(0, output);
        let long = p.long_context_threshold.is_some_and(|t| input > t);
        let (in_price, out_price) = if long {
            (
                p.long_input.unwrap_or(p.input),
                p.long_output.unwrap_or(p.output),
            )
        } else {
            (p.input, p.output)
        };
        let scale = if long && p.input > 0.0 {
            in_price / p.input
        } else {
            1.0
        };
        let usd = ((input - read - write) as f64 * in_price
            + read as f64 * p.cached_input.unwrap_or(p.input) * scale
            + write as f64 * p.cache_write.unwrap_or(p.input) * scale
            + (output - reasoning) as f64 * out_price
            + reasoning as f64
                * p.reasoning.unwrap_or(p.output)
                * (out_price / p.output.max(f64::MIN_POSITIVE)))
            / 1e6;
        Some(Cost {
            usd,
            source: format!("prices:{}", self.version),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prices_by_token_type_longest_prefix_and_provider_first() {
        let t = PriceTable::default();
        assert_eq!(
            t.find("gpt-4o-mini-2024-07-18").unwrap().model,
            "gpt-4o-mini"
        );
        assert_eq!(t.find("gpt-4o-2024-08-06").unwrap().model, "gpt-4o");
        assert_eq!(t.find("openai/gpt-4o-mini").unwrap().model, "gpt-4o-mini");
        let tokens = Tokens {
            input: Some(1_000_000),
            output: Some(100_000),
            cache_read: Some(400_000),
            ..Default::default()
        };
        // 600k uncached at 0.15 + 400k cached at 0.075 + 100k out at 0.60
        let c = t
            .cost(None, Some("gpt-4o-mini-2024-07-18"), None, &tokens)
            .unwrap();
        assert!((c.usd - (0.09 + 0.03 + 0.06)).abs() < 1e-12, "{c:?}");
        assert_eq!(c.source, "prices:builtin-2026-11");
        let c = t
            .cost(Some(0.5), Some("gpt-4o-mini"), None, &tokens)
            .unwrap();
        assert_eq!((c.usd, c.source.as_str()), (0.5, "provider"));
        // long context: over 200k input tokens every token is billed at the long price
        let long = Tokens {
            input: Some(300_000),
            output: Some(1_000),
            ..Default::default()
        };
        let c = t
            .cost(None, Some("claude-sonnet-4-20250514"), None, &long)
            .unwrap();
        assert!((c.usd - (0.3 * 6.0 + 0.001 * 22.5)).abs() < 1e-12, "{c:?}");
        assert!(t.cost(None, Some("unknown-model"), None, &tokens).is_none());
    }
}
