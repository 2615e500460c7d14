//! Model cards (Mitchell et al. 2019, trimmed to what a recommender team reads): what the model
//! is for, what it was trained on, how it was configured, how it scores offline next to the
//! popularity baseline and the current production version, where it has served, and its limits.

use crate::{AliasMove, PRODUCTION, Registry, RegistryError, Version};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write;

#[derive(Debug, Clone, Serialize)]
pub struct Card {
    pub model: String,
    pub version: u32,
    pub kind: String,
    pub created_ms: i64,
    pub aliases: Vec<String>,
    pub intended_use: String,
    pub data: serde_json::Value,
    pub lineage: serde_json::Value,
    pub config: serde_json::Value,
    pub split: Option<String>,
    /// metric -> this version, the popularity baseline, the production version
    pub metrics: BTreeMap<String, MetricRow>,
    pub production_version: Option<u32>,
    pub alias_history: Vec<AliasMove>,
    pub limitations: Vec<String>,
    /// listeners whose data this version was trained on and who have since been erased
    pub erased_listeners: u32,
}

#[derive(Debug, Clone, Serialize)]
pub struct MetricRow {
    pub this: f64,
    pub popularity: Option<f64>,
    pub production: Option<f64>,
}

fn intended_use(kind: &str) -> &'static str {
    match kind {
        "als" | "bpr" => {
            "Personalized track recommendations for listeners with history (home, mixes), similar \
             items from item factors, and fold-in for new listeners from their first plays."
        }
        "itemknn" => {
            "\"Fans also like\" and radio continuations from seed items; personalized lists from a \
             listener's items."
        }
        _ => "A non-personalized fallback for cold starts and a baseline for offline comparison.",
    }
}

impl Registry {
    /// The card of a version (`NAME`, `NAME@N` or `NAME@ALIAS`).
    pub fn card(&self, reference: &str) -> Result<Card, RegistryError> {
        let v = self.resolve(reference)?;
        let production = self.resolve(&format!("{}@{PRODUCTION}", v.model)).ok();
        let history = self.history(&v.model)?;
        let mut metrics = BTreeMap::new();
        for (name, &this) in &v.record.metrics {
            metrics.insert(
                name.clone(),
                MetricRow {
                    this,
                    popularity: v.record.baseline.get(name).copied(),
                    production: production
                        .as_ref()
                        .filter(|p| p.record.split == v.record.split)
                        .and_then(|p| p.record.metrics.get(name).copied()),
                },
            );
        }
        let mut limitations = limitations(&v);
        let erased = self.erasures(&v.model, v.version)?;
        if erased > 0 {
            limitations.insert(
                0,
                format!(
                    "Trained on data of {erased} listener(s) who have since been erased: their ids \
                     are gone from the artifact, but what they taught the model is not. Retrain \
                     to remove it (`encore train`), then promote the new version."
                ),
            );
        }
        Ok(Card {
            intended_use: intended_use(&v.record.kind).into(),
            limitations,
            erased_listeners: erased,
            model: v.model.clone(),
            version: v.version,
            kind: v.record.kind.clone(),
            created_ms: v.created_ms,
            aliases: v.aliases.clone(),
            data: v.record.data.clone(),
            lineage: v.record.lineage.clone(),
            config: v.record.config.clone(),
            split: v.record.split.clone(),
            metrics,
            production_version: production.map(|p| p.version),
            alias_history: history,
        })
    }
}

fn limitations(v: &Version) -> Vec<String> {
    let mut out = vec![
        "Offline metrics come from a random 20 % holdout of each listener's items; they rank \
         models but do not predict online lift, which needs an experiment."
            .to_string(),
        "Listeners and tracks unseen in training get no learned vector: new listeners are served \
         by fold-in or popularity, new tracks are not recommended until the next training."
            .to_string(),
        "An A/B test needs a sample its effect can show in: on the simulated service, with about \
         820 listeners per arm, a planted +10 % lift in streams per listener was found 60 % of \
         the time, +5 % 34 % and +2 % 2 % (`encore experiments simulate --lift 0.02,0.05,0.1`; \
         benches/RESULTS.md). Finding +2 % with 80 % power takes about 40 times as many \
         listeners."
            .to_string(),
    ];
    if matches!(v.record.kind.as_str(), "als" | "bpr" | "itemknn") {
        out.push(
            "Collaborative filtering favours tracks with many listeners; check the novelty and \
             coverage figures before using it for discovery surfaces."
                .into(),
        );
    }
    if v.record.metrics.is_empty() {
        out.push("No offline evaluation was recorded for this version.".into());
    }
    out
}

fn fmt_opt(v: Option<f64>) -> String {
    v.map_or("-".into(), |x| format!("{x:.4}"))
}

fn fmt_time(ms: i64) -> String {
    let day = encore_core::time::Date::from_epoch_ms(ms);
    let secs = ms.rem_euclid(86_400_000) / 1000;
    format!(
        "{day} {:02}:{:02}:{:02} UTC",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

impl Card {
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let aliases = if self.aliases.is_empty() {
            String::new()
        } else {
            format!(" ({})", self.aliases.join(", "))
        };
        let _ = writeln!(
            s,
            "# Model card: {} v{}{aliases}\n",
            self.model, self.version
        );
        let _ = writeln!(
            s,
            "- model: `{}`\n- registered: {}\n",
            self.kind,
            fmt_time(self.created_ms)
        );
        let _ = writeln!(s, "## Intended use\n\n{}\n", self.intended_use);
        let _ = writeln!(s, "## Training data\n");
        let d = &self.data;
        let num = |k: &str| d.get(k).and_then(serde_json::Value::as_u64);
        for (label, key) in [
            ("listeners", "users"),
            ("tracks", "items"),
            ("interactions", "interactions"),
        ] {
            if let Some(n) = num(key) {
                let _ = writeln!(s, "- {label}: {n}");
            }
        }
        if let Some(src) = d.get("source").and_then(|v| v.as_str()) {
            let _ = writeln!(s, "- source: {src}");
        }
        if let Some([a, b]) = d
            .get("time_range_ms")
            .and_then(|v| serde_json::from_value::<[i64; 2]>(v.clone()).ok())
        {
            let _ = writeln!(s, "- time range: {} to {}", fmt_time(a), fmt_time(b));
        }
        if let Some(h) = self.lineage.get("snapshot_sha256").and_then(|v| v.as_str()) {
            let _ = writeln!(s, "- event-log snapshot: sha256 {h}");
        }
        for key in ["code_version", "host", "started_ms", "finished_ms"] {
            if let Some(v) = self.lineage.get(key) {
                let text = match v.as_i64() {
                    Some(ms) if key.ends_with("_ms") => fmt_time(ms),
                    _ => v.as_str().map_or(v.to_string(), str::to_string),
                };
                let _ = writeln!(
                    s,
                    "- {}: {text}",
                    key.trim_end_matches("_ms").replace('_', " ")
                );
            }
        }
        let _ = writeln!(
            s,
            "\n## Configuration\n\n```json\n{}\n```\n",
            serde_json::to_string_pretty(&self.config).unwrap_or_default()
        );
        let split = self.split.as_deref().unwrap_or("none");
        let _ = writeln!(s, "## Offline metrics (split: {split})\n");
        if self.metrics.is_empty() {
            let _ = writeln!(s, "Not evaluated.\n");
        } else {
            let prod = self
                .production_version
                .map_or("production".into(), |p| format!("production (v{p})"));
            let _ = writeln!(s, "| metric | this version | popularity | {prod} |");
            let _ = writeln!(s, "|---|---|---|---|");
            for (name, row) in &self.metrics {
                let _ = writeln!(
                    s,
                    "| {name} | {:.4} | {} | {} |",
                    row.this,
                    fmt_opt(row.popularity),
                    fmt_opt(row.production)
                );
            }
            s.push('\n');
        }
        let _ = writeln!(s, "## Alias history of {}\n", self.model);
        if self.alias_history.is_empty() {
            let _ = writeln!(s, "No alias has moved yet.\n");
        } else {
            let _ = writeln!(s, "| when | alias | from | to | action | by | reason |");
            let _ = writeln!(s, "|---|---|---|---|---|---|---|");
            for m in &self.alias_history {
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | v{} | {}{} | {} | {} |",
                    fmt_time(m.at_ms),
                    m.alias,
                    m.from.map_or("-".into(), |f| format!("v{f}")),
                    m.to,
                    m.action,
                    if m.forced { " (forced)" } else { "" },
                    m.actor,
                    m.reason
                );
            }
            s.push('\n');
        }
        let _ = writeln!(s, "## Known limitations\n");
        for l in &self.limitations {
            let _ = writeln!(s, "- {l}");
        }
        s
    }
}
