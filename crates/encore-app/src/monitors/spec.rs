//! What a monitor watches, as written in a monitors file (TOML, `[[monitor]]` tables) or sent
//! to the API (JSON), and the default set every deployment starts with.

use super::profiling::{CATEGORICAL, NUMERIC, SERVED_NUMERIC};
use serde::{Deserialize, Serialize};

/// What a monitor computes per window and slice.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// how far each attribute's distribution moved from the baseline's (an effect size)
    Drift,
    /// rows in the window against the baseline windows' mean: `now / mean − 1`
    Volume,
    /// the 95th percentile of arrival lag (seconds after a play ended that it was stored)
    Freshness,
    /// what followed the served lists, per model version: streams per impression and skips
    /// per play, each version against the window's incumbent (source `served`)
    Quality,
}

/// The statistic a drift monitor thresholds.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Statistic {
    /// Jensen-Shannon distance, natural log (0 to √ln 2 ≈ 0.83)
    #[default]
    JsDistance,
    Psi,
    Hellinger,
    /// the largest gain in one value's share, in proportion points (0.05 = 5 points): one
    /// track taking plays, one bin filling up
    ShareGain,
}

/// What a monitor reads: the plays listeners sent, or what the recommenders served (the
/// impressions serving logs).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    #[default]
    Plays,
    Served,
}

/// A monitor's slices: every row together, or one result per platform or per country (plays),
/// or per model version (served).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SliceBy {
    Platform,
    Country,
    Model,
}

/// What a window is compared with.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Baseline {
    /// the same window on each of the previous `baseline_days` days
    #[default]
    Trailing,
    /// what the production model was trained on: the profile of its training window, saved
    /// with the version (drift of plays only; no day-to-day noise to guard with)
    Reference,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Window {
    Hour,
    Day,
}

impl Window {
    pub fn ms(self) -> i64 {
        match self {
            Window::Hour => 3_600_000,
            Window::Day => 86_400_000,
        }
    }
}

/// One monitor.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Monitor {
    pub name: String,
    pub kind: Kind,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    #[serde(default)]
    pub source: Source,
    /// drift: the attributes compared (one result per attribute and slice)
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attributes: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slice_by: Option<SliceBy>,
    pub window: Window,
    #[serde(default)]
    pub baseline: Baseline,
    /// the trailing baseline: the same window on each of the previous `baseline_days` days (the same
    /// hour of the day for hourly windows, so daily rhythms do not look like drift)
    #[serde(default = "seven")]
    pub baseline_days: u32,
    /// drift only
    #[serde(default)]
    pub statistic: Statistic,
    /// drift: fires when the statistic is above it; volume: when `|now / mean − 1|` is and
    /// the window is that far below the quietest baseline window (or above the busiest);
    /// freshness: when the p95 lag in seconds is
    pub threshold: f64,
    /// drift: fires only when the statistic is also this many times the baseline's own
    /// day-to-day drift (each baseline window against the others, the largest)
    #[serde(default = "two")]
    pub noise_factor: f64,
    /// windows with fewer rows (for volume: whose baseline mean has fewer) give no verdict
    #[serde(default = "hundred")]
    pub min_rows: u64,
    /// baseline windows with rows needed for a verdict
    #[serde(default = "three")]
    pub min_baseline_windows: u32,
    /// quality: how long after a window plays of what it served still count, in seconds
    #[serde(default = "hour")]
    pub horizon_s: u32,
}

fn seven() -> u32 {
    7
}
fn hundred() -> u64 {
    100
}
fn three() -> u32 {
    3
}
fn two() -> f64 {
    2.0
}
fn hour() -> u32 {
    3_600
}

/// The attributes a drift monitor of `source` can compare.
pub fn attributes(source: Source) -> Vec<&'static str> {
    match source {
        Source::Plays => CATEGORICAL
            .iter()
            .copied()
            .chain(NUMERIC.iter().map(|(n, _)| *n))
            .chain(std::iter::once("item"))
            .collect(),
        Source::Served => ["genre", "model"]
            .into_iter()
            .chain(SERVED_NUMERIC.iter().map(|(n, _)| *n))
            .collect(),
    }
}

impl Monitor {
    /// Checks the definition; the message names the monitor and the field.
    pub fn check(&self) -> Result<(), encore_core::Invalid> {
        let name = &self.name;
        if name.is_empty()
            || name.len() > 100
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(format!(
                "monitor name {name:?}: expected 1 to 100 letters, digits, '-', '_' or '.'"
            )
            .into());
        }
        if !self.threshold.is_finite() || self.threshold < 0.0 {
            return Err(format!(
                "monitor {name}: threshold {} must be a number >= 0",
                self.threshold
            )
            .into());
        }
        if !self.noise_factor.is_finite() || self.noise_factor < 0.0 {
            return Err(format!(
                "monitor {name}: noise_factor {} must be a number >= 0",
                self.noise_factor
            )
            .into());
        }
        if self.baseline_days == 0 || self.baseline_days > 90 {
            return Err(format!(
                "monitor {name}: baseline_days {} must be 1 to 90",
                self.baseline_days
            )
            .into());
        }
        if self.min_baseline_windows == 0 || self.min_baseline_windows > self.baseline_days {
            return Err(format!(
                "monitor {name}: min_baseline_windows {} must be 1 to baseline_days ({})",
                self.min_baseline_windows, self.baseline_days
            )
            .into());
        }
        if self.baseline == Baseline::Reference
            && (self.kind != Kind::Drift || self.source != Source::Plays)
        {
            return Err(format!(
                "monitor {name}: a reference baseline is for drift of plays (kind \"drift\", \
                 source \"plays\")"
            )
            .into());
        }
        let known = attributes(self.source);
        match (self.source, self.slice_by) {
            (Source::Plays, Some(SliceBy::Model)) => {
                return Err(format!(
                    "monitor {name}: plays are sliced by platform or country (by model: source \
                     \"served\")"
                )
                .into());
            }
            (Source::Served, Some(SliceBy::Platform | SliceBy::Country)) => {
                return Err(
                    format!("monitor {name}: what was served is sliced by model only").into(),
                );
            }
            (Source::Served, None | Some(SliceBy::Model)) if self.kind == Kind::Freshness => {
                return Err(
                    format!("monitor {name}: freshness is of plays (source \"plays\")").into(),
                );
            }
            _ => {}
        }
        match self.kind {
            Kind::Drift => {
                if self.attributes.is_empty() {
                    return Err(format!(
                        "monitor {name}: a drift monitor needs attributes (any of {})",
                        known.join(", ")
                    )
                    .into());
                }
                for a in &self.attributes {
                    if !known.contains(&a.as_str()) {
                        return Err(format!(
                            "monitor {name}: attribute {a:?} is not profiled (one of {})",
                            known.join(", ")
                        )
                        .into());
                    }
                    if (a == "item" || a == "model") && self.slice_by.is_some() {
                        return Err(format!(
                            "monitor {name}: {a} is profiled over every row only, not by slice"
                        )
                        .into());
                    }
                }
            }
            Kind::Quality => {
                if self.source != Source::Served
                    || self.slice_by == Some(SliceBy::Platform)
                    || self.slice_by == Some(SliceBy::Country)
                {
                    return Err(format!(
                        "monitor {name}: quality is of what was served (source \"served\"), per \
                         model version"
                    )
                    .into());
                }
                if !self.attributes.is_empty() {
                    return Err(
                        format!("monitor {name}: attributes apply to drift monitors only").into(),
                    );
                }
                if self.horizon_s > 7 * 86_400 {
                    return Err(format!(
                        "monitor {name}: horizon_s {} must be at most a week",
                        self.horizon_s
                    )
                    .into());
                }
            }
            Kind::Volume | Kind::Freshness => {
                if !self.attributes.is_empty() {
                    return Err(
                        format!("monitor {name}: attributes apply to drift monitors only").into(),
                    );
                }
            }
        }
        Ok(())
    }

    /// The name of the statistic this monitor's results carry.
    pub fn statistic_name(&self) -> &'static str {
        match self.kind {
            Kind::Volume => "relative_change",
            Kind::Freshness => "lag_p95_s",
            Kind::Quality => "stream_rate",
            Kind::Drift => match self.statistic {
                Statistic::JsDistance => "js_distance",
                Statistic::Psi => "psi",
                Statistic::Hellinger => "hellinger",
                Statistic::ShareGain => "share_gain",
            },
        }
    }
}

/// A monitors file: `[[monitor]]` tables.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MonitorsFile {
    #[serde(default)]
    monitor: Vec<Monitor>,
}

/// The monitors of a TOML file's text (`what` names it in errors), each checked; an error
/// names the line, the key or the monitor.
pub fn parse_toml(text: &str, what: &str) -> Result<Vec<Monitor>, encore_core::Invalid> {
    let file: MonitorsFile =
        toml::from_str(text).map_err(|e| format!("{what}: {}", e.to_string().trim_end()))?;
    if file.monitor.is_empty() {
        return Err(format!("{what}: no [[monitor]] tables").into());
    }
    let mut seen = std::collections::HashSet::new();
    for m in &file.monitor {
        m.check()
            .map_err(|e| encore_core::Invalid(format!("{what}: {e}")))?;
        if !seen.insert(m.name.as_str()) {
            return Err(format!("{what}: monitor {} is defined twice", m.name).into());
        }
    }
    Ok(file.monitor)
}

/// The monitors a deployment starts with, their thresholds calibrated on unshifted simulated
/// worlds (`encore monitors calibrate`; docs/MONITORING.md has the figures).
pub fn defaults() -> Vec<Monitor> {
    let m = |name: &str, kind: Kind, description: &str| Monitor {
        name: name.to_owned(),
        kind,
        description: description.to_owned(),
        source: Source::Plays,
        attributes: Vec::new(),
        slice_by: None,
        window: Window::Day,
        baseline: Baseline::Trailing,
        baseline_days: 7,
        statistic: Statistic::JsDistance,
        threshold: 0.0,
        noise_factor: 1.5,
        min_rows: 100,
        min_baseline_windows: 3,
        horizon_s: 3_600,
    };
    let strings = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<String>>();
    vec![
        Monitor {
            // every categorical attribute of plays, time played and completion
            attributes: CATEGORICAL
                .iter()
                .chain(&["ms_played", "completion"])
                .map(|s| (*s).to_owned())
                .collect(),
            threshold: 0.05,
            min_rows: 1_000,
            ..m(
                "events-drift",
                Kind::Drift,
                "the day's plays against the previous week's: platforms, countries, contexts, \
                 how plays end, genres, skips, time played",
            )
        },
        Monitor {
            attributes: strings(&["item"]),
            statistic: Statistic::ShareGain,
            threshold: 0.02,
            min_rows: 1_000,
            ..m(
                "catalog-share",
                Kind::Drift,
                "which tracks take the day's plays, against the previous week: a release or a \
                 promotion taking a large share",
            )
        },
        Monitor {
            source: Source::Served,
            attributes: strings(&["popularity", "genre"]),
            threshold: 0.1,
            min_rows: 1_000,
            ..m(
                "served-drift",
                Kind::Drift,
                "what the recommenders served against the previous week: how popular the \
                 served tracks are and their genres (a version that leans on the charts)",
            )
        },
        Monitor {
            source: Source::Served,
            slice_by: Some(SliceBy::Model),
            attributes: strings(&["score", "list_genres"]),
            threshold: 0.1,
            min_rows: 1_000,
            ..m(
                "served-scores",
                Kind::Drift,
                "per model version, the scores it gives what it serves and how many genres a \
                 list spans, against the previous week",
            )
        },
        Monitor {
            source: Source::Served,
            slice_by: Some(SliceBy::Model),
            threshold: 0.1,
            min_rows: 1_000,
            ..m(
                "served-quality",
                Kind::Quality,
                "streams per impression and skips per play of each model version's lists, \
                 against the version serving most: a version listeners take less to",
            )
        },
        Monitor {
            attributes: strings(&["ms_played", "completion", "skip"]),
            slice_by: Some(SliceBy::Platform),
            window: Window::Hour,
            threshold: 0.2,
            min_rows: 200,
            ..m(
                "playback-by-platform",
                Kind::Drift,
                "per platform and hour, how much of each track is played and how plays end, \
                 against the same hour of the previous week: a client reporting plays wrong",
            )
        },
        Monitor {
            slice_by: Some(SliceBy::Platform),
            threshold: 0.5,
            min_rows: 1_000,
            ..m(
                "volume-by-platform",
                Kind::Volume,
                "plays per platform and day against the previous week: a client that stopped \
                 sending",
            )
        },
        Monitor {
            slice_by: Some(SliceBy::Country),
            threshold: 0.5,
            min_rows: 1_000,
            ..m(
                "volume-by-country",
                Kind::Volume,
                "plays per country and day against the previous week: a market's traffic lost",
            )
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        for m in defaults() {
            m.check().unwrap();
        }
    }

    #[test]
    fn a_bad_file_is_refused_naming_the_key_or_monitor() {
        let e = parse_toml("[[monitor]]\nname = \"x\"\nkind = \"drift\"\n", "m.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("m.toml") && e.contains("window"), "{e}");
        let e = parse_toml(
            "[[monitor]]\nname = \"x\"\nkind = \"drift\"\nwindow = \"day\"\nthreshold = 0.1\n\
             attributes = [\"colour\"]\n",
            "m.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("colour") && e.contains("genre"), "{e}");
        let e = parse_toml(
            "[[monitor]]\nname = \"x\"\nkind = \"volume\"\nwindow = \"week\"\nthreshold = 1\n",
            "m.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("week"), "{e}");
        let e = parse_toml(
            "[[monitor]]\nname = \"x\"\nkind = \"volume\"\nwindow = \"day\"\nthreshold = 1\n\
             [[monitor]]\nname = \"x\"\nkind = \"volume\"\nwindow = \"hour\"\nthreshold = 1\n",
            "m.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("twice"), "{e}");
    }
}
