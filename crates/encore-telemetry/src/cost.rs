//! What a span cost: a versioned price table per model and token type, a provider-reported
//! cost winning over it when present.
//!
//! Prices are USD per million tokens. Token accounting follows the GenAI conventions:
//! `input_tokens` includes cached reads and cache writes, `output_tokens` includes reasoning.
//!
//! The built-in table is a pinned snapshot of LiteLLM's public price map
//! (`data/prices.json`, refreshed by `scripts/refresh-prices.py`). A model name is matched
//! exactly, never by prefix (`gpt-4.1-nano` is not `gpt-4.1`), in this order:
//! 1. the name as given (`gpt-4o-2024-05-13`, `us.anthropic.claude-3-7-sonnet-20250219-v1:0`);
//! 2. without its route (`openai/gpt-4o` is `gpt-4o`), or under a first-party route
//!    (`mistral-large-latest` is `mistral/mistral-large-latest`);
//! 3. with route, cloud region (`us.`), vendor (`anthropic.`) and version tag (`-v1:0`) set
//!    aside on both sides (`claude-3-5-sonnet-20241022` is Bedrock's
//!    `anthropic.claude-3-5-sonnet-20241022-v2:0`);
//! 4. with the date suffix set aside too (`-2025-04-14`, `-20250514`, `@20240620`, `-latest`):
//!    the undated entry when there is one (`gpt-4o-2099-01-01` is `gpt-4o`).
//!
//! Steps 3 and 4 prefer first-party entries over resellers', and answer only when every
//! candidate left has the same prices: a name that could mean two prices gets no cost (and is
//! counted as unpriced) rather than a guess. Entries from `[telemetry] prices` win at every
//! step. The response model is tried before the request model.

use crate::normalize::Tokens;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{LazyLock, OnceLock};

/// Prices of one model, USD per million tokens.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Price {
    /// a model name, e.g. `gpt-4o-mini` (its dated versions match it too)
    pub model: String,
    /// who sells it at this price (LiteLLM's provider name, `config` for an override)
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub provider: String,
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

/// The provider name of prices that come from the configuration.
pub const CONFIG_PROVIDER: &str = "config";

/// Routes whose entries are the model maker's own list price.
const FIRST_PARTY: [&str; 9] = [
    "",
    "openai",
    "anthropic",
    "gemini",
    "mistral",
    "deepseek",
    "xai",
    "cohere",
    "cohere_chat",
];

/// The table in force: its version is stored with every cost computed from it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PriceTable {
    pub version: String,
    /// change entries in place before the first lookup; add them with [`PriceTable::set`]
    pub prices: Vec<Price>,
    /// names to entries, built on first use (after any overrides were pushed)
    #[serde(skip)]
    index: OnceLock<Index>,
}

impl PartialEq for PriceTable {
    fn eq(&self, other: &Self) -> bool {
        self.version == other.version && self.prices == other.prices
    }
}

#[derive(Debug, Clone, Default)]
struct Index {
    exact: HashMap<String, usize>,
    /// route, region, vendor and version tag set aside
    bare: HashMap<String, Vec<usize>>,
    /// and the date suffix
    base: HashMap<String, Vec<usize>>,
}

/// The snapshot's row: `[model, provider, input, output, cached_input, cache_write, reasoning,
/// long_context_threshold, long_input, long_output]`.
type Row = (
    String,
    String,
    f64,
    f64,
    Option<f64>,
    Option<f64>,
    Option<f64>,
    Option<i64>,
    Option<f64>,
    Option<f64>,
);

#[derive(Deserialize)]
struct Snapshot {
    version: String,
    prices: Vec<Row>,
}

static BUILTIN: LazyLock<PriceTable> = LazyLock::new(|| {
    let snapshot: Snapshot = serde_json::from_str(include_str!("../data/prices.json"))
        .unwrap_or_else(|_| Snapshot {
            version: "none".into(),
            prices: Vec::new(),
        });
    PriceTable::new(
        snapshot.version,
        snapshot
            .prices
            .into_iter()
            .map(|r| Price {
                model: r.0,
                provider: r.1,
                input: r.2,
                output: r.3,
                cached_input: r.4,
                cache_write: r.5,
                reasoning: r.6,
                long_context_threshold: r.7,
                long_input: r.8,
                long_output: r.9,
            })
            .collect(),
    )
});

impl Default for PriceTable {
    /// The pinned LiteLLM snapshot (`data/prices.json`).
    fn default() -> Self {
        BUILTIN.clone()
    }
}

/// `name` without its route (`bedrock/us-east-1/`), cloud region (`us.`), vendor
/// (`anthropic.`) and version tag (`-v1:0`), lower-cased.
fn bare(name: &str) -> String {
    let mut n = name.rsplit('/').next().unwrap_or(name).to_ascii_lowercase();
    for region in REGIONS {
        if let Some(rest) = n.strip_prefix(region) {
            n = rest.to_owned();
            break;
        }
    }
    for vendor in [
        "anthropic.",
        "meta.",
        "mistral.",
        "amazon.",
        "cohere.",
        "ai21.",
        "deepseek.",
        "openai.",
        "qwen.",
        "writer.",
        "google.",
    ] {
        if let Some(rest) = n.strip_prefix(vendor) {
            n = rest.to_owned();
            break;
        }
    }
    // -v1, -v2:0
    if let Some(at) = n.rfind("-v") {
        let tag = &n[at + 2..];
        let (major, minor) = tag.split_once(':').unwrap_or((tag, "0"));
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if digits(major) && digits(minor) {
            n.truncate(at);
        }
    }
    n
}

/// Whether `name` starts with a cloud region (`us.anthropic...`): a regional price.
fn has_region(name: &str) -> bool {
    REGIONS.iter().any(|r| name.starts_with(r))
}

const REGIONS: [&str; 8] = [
    "us-gov.", "us.", "eu.", "apac.", "jp.", "au.", "ca.", "global.",
];

/// A model's family for filters: `gpt-4o-mini-2024-07-18`, `openai/gpt-4o-mini` and
/// `gpt-4o-mini` are one family; `gpt-4o` is another.
pub fn model_family(name: &str) -> String {
    base(name)
}

/// [`bare`] with date suffixes set aside: `-2025-04-14`, `-20250514`, `@20240620`, `@001`,
/// `-latest`, `-0125` (repeatedly: `-2024-08-06-latest`).
fn base(name: &str) -> String {
    let mut n = bare(name);
    loop {
        let before = n.len();
        let digits = |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_digit());
        if let Some(rest) = n
            .strip_suffix("-latest")
            .or_else(|| n.strip_suffix("@latest"))
        {
            n = rest.to_owned();
        } else if let Some(at) = n.rfind('@') {
            if digits(&n[at + 1..], 8) || digits(&n[at + 1..], 3) {
                n.truncate(at);
            }
        } else if n.len() > 11
            && n.as_bytes()[n.len() - 11] == b'-'
            && n[n.len() - 10..].split('-').map(str::len).eq([4, 2, 2])
            && n[n.len() - 10..]
                .bytes()
                .all(|b| b.is_ascii_digit() || b == b'-')
        {
            n.truncate(n.len() - 11);
        } else if let Some(at) = n.rfind('-')
            && (digits(&n[at + 1..], 8) || digits(&n[at + 1..], 4))
        {
            n.truncate(at);
        }
        if n.len() == before {
            return n;
        }
    }
}

impl PriceTable {
    pub fn new(version: String, prices: Vec<Price>) -> PriceTable {
        PriceTable {
            version,
            prices,
            index: OnceLock::new(),
        }
    }

    /// Adds or replaces (same model name) a price from the configuration; it wins over the
    /// snapshot's entries at every matching step.
    pub fn set(&mut self, mut price: Price) {
        price.provider = CONFIG_PROVIDER.into();
        match self
            .prices
            .iter_mut()
            .find(|q| q.model.eq_ignore_ascii_case(&price.model) && q.provider == CONFIG_PROVIDER)
        {
            Some(q) => *q = price,
            None => self.prices.push(price),
        }
        self.index = OnceLock::new();
    }

    fn index(&self) -> &Index {
        self.index.get_or_init(|| {
            let mut index = Index::default();
            for (i, p) in self.prices.iter().enumerate() {
                let key = p.model.to_ascii_lowercase();
                let config = p.provider == CONFIG_PROVIDER;
                match index.exact.get(&key) {
                    Some(&j) if !config || self.prices[j].provider == CONFIG_PROVIDER => {}
                    _ => {
                        index.exact.insert(key, i);
                    }
                }
                index.bare.entry(bare(&p.model)).or_default().push(i);
                index.base.entry(base(&p.model)).or_default().push(i);
            }
            index
        })
    }

    /// The entry for `model` (see the module documentation for how names match), or `None`
    /// when the table has none or several that disagree.
    pub fn find(&self, model: &str) -> Option<&Price> {
        let index = self.index();
        let lower = model.trim().to_ascii_lowercase();
        let last = lower.rsplit('/').next().unwrap_or(&lower);
        let exact = std::iter::once(lower.clone())
            .chain(std::iter::once(last.to_owned()))
            .chain(
                FIRST_PARTY[1..]
                    .iter()
                    .map(|route| format!("{route}/{last}")),
            )
            .filter_map(|k| index.exact.get(&k).copied());
        let mut exact: Vec<usize> = exact.collect();
        if let Some(&c) = exact
            .iter()
            .find(|&&i| self.prices[i].provider == CONFIG_PROVIDER)
        {
            return Some(&self.prices[c]);
        }
        if !exact.is_empty() {
            exact.truncate(1);
            return Some(&self.prices[exact[0]]);
        }
        if let Some(p) = self.agreeing(index.bare.get(&bare(model))) {
            return Some(p);
        }
        let b = base(model);
        let undated = index.exact.get(&b).map(|&i| &self.prices[i]);
        let config_base = index.base.get(&b).is_some_and(|c| {
            c.iter()
                .any(|&i| self.prices[i].provider == CONFIG_PROVIDER)
        });
        match undated {
            Some(p) if !config_base || p.provider == CONFIG_PROVIDER => Some(p),
            _ => self.agreeing(index.base.get(&b)),
        }
    }

    /// Among `candidates`: the configuration's, else the first-party ones (no route or the
    /// maker's, no cloud region), else all; one of them when they all have the same prices.
    fn agreeing(&self, candidates: Option<&Vec<usize>>) -> Option<&Price> {
        let all: Vec<&Price> = candidates?.iter().map(|&i| &self.prices[i]).collect();
        let config: Vec<&Price> = all
            .iter()
            .copied()
            .filter(|p| p.provider == CONFIG_PROVIDER)
            .collect();
        let first: Vec<&Price> = all
            .iter()
            .copied()
            .filter(|p| {
                let lower = p.model.to_ascii_lowercase();
                let (route, name) = lower.rsplit_once('/').unwrap_or(("", &lower));
                FIRST_PARTY.contains(&route) && !has_region(name)
            })
            .collect();
        let group = [config, first, all].into_iter().find(|g| !g.is_empty())?;
        let same = |a: &Price, b: &Price| {
            a.input == b.input
                && a.output == b.output
                && a.cached_input == b.cached_input
                && a.cache_write == b.cache_write
                && a.reasoning == b.reasoning
        };
        group.iter().all(|p| same(p, group[0])).then(|| {
            *group
                .iter()
                .min_by_key(|p| p.model.len())
                .unwrap_or(&group[0])
        })
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

    fn input_output(t: &PriceTable, model: &str) -> Option<(f64, f64)> {
        t.find(model).map(|p| (p.input, p.output))
    }

    #[test]
    fn prices_by_token_type_and_provider_first() {
        let t = PriceTable::default();
        assert!(t.version.starts_with("litellm-"), "{}", t.version);
        assert!(t.prices.len() > 1000);
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
        assert_eq!(c.source, format!("prices:{}", t.version));
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
        let c = t.cost(None, Some("gemini-2.5-pro"), None, &long).unwrap();
        assert!((c.usd - (0.3 * 2.5 + 0.001 * 15.0)).abs() < 1e-12, "{c:?}");
        assert!(t.cost(None, Some("unknown-model"), None, &tokens).is_none());
        // the response model first, the request model when the response has none we know
        let c = t
            .cost(None, Some("nobody-knows"), Some("gpt-4o-mini"), &tokens)
            .unwrap();
        assert!((c.usd - 0.18).abs() < 1e-12);
    }

    /// Names that a prefix match priced as another model, and current models it did not
    /// price at all (USD per million input and output tokens, from LiteLLM's map).
    #[test]
    fn exact_names_never_a_neighbour_s_price() {
        let t = PriceTable::default();
        for (model, want) in [
            ("gpt-4.1-nano", (0.1, 0.4)),
            ("gpt-4.1-nano-2025-04-14", (0.1, 0.4)),
            ("gpt-4.1", (2.0, 8.0)),
            ("o3-pro", (20.0, 80.0)),
            ("o3", (2.0, 8.0)),
            ("gpt-4-turbo", (10.0, 30.0)),
            ("gpt-4", (30.0, 60.0)),
            ("gpt-4o-2024-05-13", (5.0, 15.0)),
            ("gpt-4o-2099-01-01", (2.5, 10.0)),
            ("openai/gpt-4o", (2.5, 10.0)),
            ("o1", (15.0, 60.0)),
            ("o4-mini", (1.1, 4.4)),
            ("claude-3-5-sonnet-20241022", (3.0, 15.0)),
            ("claude-3-7-sonnet-20250219", (3.0, 15.0)),
            ("claude-haiku-4-5", (1.0, 5.0)),
            ("claude-haiku-4-5-20251001", (1.0, 5.0)),
            ("claude-sonnet-4-20250514", (3.0, 15.0)),
            ("us.anthropic.claude-3-7-sonnet-20250219-v1:0", (3.0, 15.0)),
            ("anthropic.claude-3-5-sonnet-20240620-v1:0", (3.0, 15.0)),
            ("mistral-large-latest", (0.5, 1.5)),
            ("deepseek-chat", (0.28, 0.42)),
            ("text-embedding-3-small", (0.02, 0.0)),
        ] {
            assert_eq!(input_output(&t, model), Some(want), "{model}");
        }
        // names that could mean several prices get none, never a guess
        for model in [
            "llama-3.1-70b-instruct",
            "gpt-4.1-nano-but-not",
            "",
            "claude-9-opus",
        ] {
            assert_eq!(input_output(&t, model), None, "{model}");
        }
    }

    #[test]
    fn dates_regions_and_tags_are_set_aside() {
        assert_eq!(base("gpt-4o-2024-08-06"), "gpt-4o");
        assert_eq!(base("claude-sonnet-4-20250514"), "claude-sonnet-4");
        assert_eq!(
            base("vertex_ai/claude-3-5-sonnet@20240620"),
            "claude-3-5-sonnet"
        );
        assert_eq!(
            base("bedrock/us-east-1/us.anthropic.claude-3-7-sonnet-20250219-v1:0"),
            "claude-3-7-sonnet"
        );
        assert_eq!(base("gpt-3.5-turbo-0125"), "gpt-3.5-turbo");
        assert_eq!(base("mistral-large-latest"), "mistral-large");
        assert_eq!(
            bare("eu.anthropic.claude-3-5-sonnet-20241022-v2:0"),
            "claude-3-5-sonnet-20241022"
        );
        // version numbers in the name are not dates
        assert_eq!(base("gpt-4.1"), "gpt-4.1");
        assert_eq!(base("llama-3.1-70b"), "llama-3.1-70b");
    }

    #[test]
    fn configured_prices_win_and_match_dated_names() {
        let mut t = PriceTable::default();
        let mut p = Price {
            model: "gpt-4o".into(),
            provider: String::new(),
            input: 1.0,
            cached_input: None,
            cache_write: None,
            output: 2.0,
            reasoning: None,
            long_context_threshold: None,
            long_input: None,
            long_output: None,
        };
        t.set(p.clone());
        assert_eq!(input_output(&t, "gpt-4o"), Some((1.0, 2.0)));
        assert_eq!(input_output(&t, "gpt-4o-2099-01-01"), Some((1.0, 2.0)));
        p.model = "our-finetune".into();
        t.set(p);
        assert_eq!(
            input_output(&t, "our-finetune-2026-01-01"),
            Some((1.0, 2.0))
        );
        // others are untouched
        assert_eq!(input_output(&t, "gpt-4o-mini"), Some((0.15, 0.6)));
    }
}
