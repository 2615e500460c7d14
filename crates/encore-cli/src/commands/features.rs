//! `encore features`: definitions, materialization, training sets and online values, on the
//! data directory (a running server answers `POST /v1/features`).

use crate::cli::FeaturesCommand;
use crate::error::CliError;
use crate::output::Output;
use encore_features::attrs::AttrTable;
use encore_features::def::{Agg, NO_TTL, View};
use encore_features::offline::{
    EntityRows, compute_view, load_events, load_keyed, read_entities_csv, write_parquet,
};
use encore_features::online::{OnlineStore, Plan, kinds};
use encore_features::versions::Versions;
use serde_json::json;
use std::collections::{BTreeMap, HashMap};

/// The rows of attribute view `v` from its source (the catalog, or its file).
fn attr_table(v: &View, ingestor: &encore_ingest::Ingestor) -> Result<AttrTable, CliError> {
    use encore_features::def::{EntityKind, Source};
    Ok(match &v.source {
        Source::Catalog => {
            let kinds: &[&str] = if v.kind == EntityKind::Artist {
                &["artists"]
            } else {
                &["tracks", "items"]
            };
            AttrTable::from_catalog(v, &ingestor.catalog().records(kinds)?)?
        }
        _ => AttrTable::from_file(v)?,
    })
}

/// `v` for entity `rows`: aggregated from the grouped events, or from its attribute table.
fn compute_any(
    v: &View,
    grouped: &HashMap<encore_features::def::EntityKind, encore_features::offline::ByEntity>,
    ingestor: &encore_ingest::Ingestor,
    rows: &EntityRows,
) -> Result<encore_features::offline::ViewColumns, CliError> {
    if v.source.is_events() {
        let empty = Default::default();
        Ok(compute_view(
            v,
            grouped.get(&v.kind).unwrap_or(&empty),
            rows,
        )?)
    } else {
        Ok(attr_table(v, ingestor)?.compute(v, rows)?)
    }
}

fn describe_agg(a: &Agg) -> String {
    use encore_features::event::{CATEGORICAL, NUMERIC};
    match a {
        Agg::Count => "count".into(),
        Agg::Sum(i) => format!("sum({})", NUMERIC[*i]),
        Agg::Mean(i) => format!("mean({})", NUMERIC[*i]),
        Agg::Distinct(i) => format!("distinct({})", CATEGORICAL[*i]),
        Agg::Last(i) => format!("last({})", NUMERIC[*i]),
        Agg::Value(c) => format!("value({c})"),
        Agg::Ratio { num, den } => {
            let p = |(f, filt): &(Option<usize>, encore_features::def::Filter)| {
                let base = f.map_or("count".to_owned(), |i| format!("sum({})", NUMERIC[i]));
                if filt.text.is_empty() {
                    base
                } else {
                    format!("{base} where {}", filt.text)
                }
            };
            format!("{} / {}", p(num), p(den))
        }
    }
}

fn view_json(v: &View) -> serde_json::Value {
    json!({
        "name": v.name, "entity": v.entity, "keys": v.kind.keys(), "source": v.source,
        "ttl_ms": (v.ttl_ms != NO_TTL).then_some(v.ttl_ms),
        "features": v.features.iter().map(|f| json!({
            "name": f.name, "agg": describe_agg(&f.agg), "span_ms": f.span_ms,
            "filter": (!f.filter.text.is_empty()).then_some(&f.filter.text),
        })).collect::<Vec<_>>(),
    })
}

fn parse_entity(s: &str) -> Result<BTreeMap<String, String>, CliError> {
    s.split(',')
        .map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
                .ok_or_else(|| {
                    CliError::usage(
                        format!("--entity {s:?}: {kv:?} is not KEY=VALUE"),
                        "e.g. --entity user_id=u1,artist_id=a2",
                    )
                })
        })
        .collect()
}

pub fn run(
    loaded: &encore_config::Loaded,
    cmd: FeaturesCommand,
    out: &Output,
) -> Result<(), CliError> {
    let dir = encore_storage::DataDir::open(&loaded.config.data.dir)?;
    let versions = Versions::new(dir.path());
    match cmd {
        FeaturesCommand::Apply { file } => {
            let text = std::fs::read_to_string(&file).map_err(|e| {
                CliError::usage(
                    format!("cannot read {}: {e}", file.display()),
                    "check the path",
                )
            })?;
            let (cur, new) = versions.apply(&text, &file)?;
            let d = &cur.definitions;
            let body = json!({
                "version": cur.version, "changed": new,
                "views": d.views.keys().collect::<Vec<_>>(),
                "services": d.services.keys().collect::<Vec<_>>(),
            });
            out.emit(&body, || {
                format!(
                    "feature definitions v{}{}: {} views ({} features), {} services\n",
                    cur.version,
                    if new { "" } else { " (unchanged)" },
                    d.views.len(),
                    d.views.values().map(|v| v.features.len()).sum::<usize>(),
                    d.services.len()
                )
            });
        }
        FeaturesCommand::List => {
            let cur = versions.require()?;
            let d = &cur.definitions;
            let history: Vec<serde_json::Value> = versions
                .history()?
                .into_iter()
                .map(|(v, at, origin)| json!({"version": v, "applied_ms": at, "origin": origin}))
                .collect();
            let body = json!({
                "version": cur.version,
                "origin": cur.origin,
                "views": d.views.values().map(view_json).collect::<Vec<_>>(),
                "services": d.services,
                "history": history,
            });
            out.emit(&body, || {
                let mut t = format!("definitions v{} (from {})\n", cur.version, cur.origin);
                for v in d.views.values() {
                    let ttl = if v.ttl_ms == NO_TTL {
                        "none".to_owned()
                    } else {
                        format!("{} h", v.ttl_ms / 3_600_000)
                    };
                    t.push_str(&format!(
                        "view {:<24} entity {:<14} ttl {:>7}  {} features\n",
                        v.name,
                        v.entity,
                        ttl,
                        v.features.len()
                    ));
                }
                for (s, views) in &d.services {
                    t.push_str(&format!("service {s:<21} {}\n", views.join(", ")));
                }
                t
            });
        }
        FeaturesCommand::Describe { name } => {
            let cur = versions.require()?;
            let d = &cur.definitions;
            let body = if let Some(v) = d.views.get(&name) {
                view_json(v)
            } else if let Some(views) = d.service(&name) {
                json!({"service": name, "views": views.into_iter().map(view_json).collect::<Vec<_>>()})
            } else {
                return Err(CliError::usage(
                    format!("{name} is neither a view nor a service"),
                    "list them with `encore features list`",
                ));
            };
            out.emit(&body, || {
                serde_json::to_string_pretty(&body).unwrap_or_default() + "\n"
            });
        }
        FeaturesCommand::Materialize { start_ms, end_ms } => {
            let cur = versions.require()?;
            let ingestor = encore_ingest::Ingestor::open(dir.path(), Default::default())?;
            let store = OnlineStore::open(dir.path())?;
            let start = match start_ms {
                Some(s) => s,
                None => store.watermark()?,
            };
            let end = end_ms.unwrap_or_else(encore_core::time::now_ms);
            let t0 = std::time::Instant::now();
            let events = load_keyed(
                ingestor.log(encore_ingest::Table::Playback),
                &encore_app::setup::artists(&encore_app::setup::catalog_items(&ingestor.catalog())),
                start,
                end,
            )?;
            let now = encore_core::time::now_ms();
            for chunk in events.chunks(100_000) {
                store.apply(&cur.definitions, chunk, now)?;
            }
            store.set_watermark(end.max(start))?;
            // attribute views are loaded whole from their sources
            let mut attributes = serde_json::Map::new();
            for v in cur.definitions.views.values() {
                if !v.source.is_events() {
                    let n = store.put_attributes(v, &attr_table(v, &ingestor)?, now)?;
                    attributes.insert(v.name.clone(), json!(n));
                }
            }
            let body = json!({"events": events.len(), "start_ms": start, "end_ms": end,
                "attribute_entities": attributes, "seconds": t0.elapsed().as_secs_f64()});
            out.emit(&body, || {
                format!(
                    "{} plays ending in ({start}, {end}] materialized in {:.1} s\n",
                    events.len(),
                    t0.elapsed().as_secs_f64()
                )
            });
        }
        FeaturesCommand::TrainingSet {
            entities,
            service,
            out: path,
        } => {
            let cur = versions.require()?;
            let plan = Plan::new(&cur.definitions, &service)?;
            let text = std::fs::read_to_string(&entities).map_err(|e| {
                CliError::usage(
                    format!("cannot read {}: {e}", entities.display()),
                    "check the path",
                )
            })?;
            let t0 = std::time::Instant::now();
            let rows: EntityRows =
                read_entities_csv(&text, &entities.display().to_string(), &plan.fields)?;
            let to = rows.ts.iter().copied().max().unwrap_or(i64::MIN);
            let ingestor = encore_ingest::Ingestor::open(dir.path(), Default::default())?;
            let defs = &cur.definitions;
            let grouped = load_events(
                ingestor.log(encore_ingest::Table::Playback),
                &encore_app::setup::artists(&encore_app::setup::catalog_items(&ingestor.catalog())),
                &kinds(defs),
                to,
            )?;
            let loaded_s = t0.elapsed().as_secs_f64();
            let mut computed = Vec::new();
            for (v, _) in &plan.views {
                computed.push((v, compute_any(v, &grouped, &ingestor, &rows)?));
            }
            let n = write_parquet(&path, &rows, &computed)?;
            let features: usize = plan.views.iter().map(|(v, _)| v.features.len()).sum();
            let body = json!({"rows": n, "features": features, "out": path.display().to_string(),
                "seconds": t0.elapsed().as_secs_f64(), "load_seconds": loaded_s});
            out.emit(&body, || {
                format!(
                    "{n} rows x {features} features of {service} written to {} in {:.1} s\n",
                    path.display(),
                    t0.elapsed().as_secs_f64()
                )
            });
        }
        FeaturesCommand::Skew { service, sample } => {
            let cur = versions.require()?;
            let plan = Plan::new(&cur.definitions, &service)?;
            let store = OnlineStore::open(dir.path())?;
            let now = encore_core::time::now_ms();
            let ingestor = encore_ingest::Ingestor::open(dir.path(), Default::default())?;
            let grouped = load_events(
                ingestor.log(encore_ingest::Table::Playback),
                &encore_app::setup::artists(&encore_app::setup::catalog_items(&ingestor.catalog())),
                &kinds(&cur.definitions),
                now,
            )?;
            let mut report = Vec::new();
            for (v, keys) in &plan.views {
                let entities = store.entities(&v.name, sample)?;
                let maps: Vec<BTreeMap<String, String>> = entities
                    .iter()
                    .map(|e| {
                        keys.iter()
                            .zip(e.split('\u{1f}'))
                            .map(|(k, x)| ((*k).to_owned(), x.to_owned()))
                            .collect()
                    })
                    .collect();
                let single = Plan::of(&service, vec![(v.clone(), keys.clone())], keys.clone());
                let online = store.read(&single, &maps, now)?;
                let rows = EntityRows {
                    columns: keys.iter().map(|k| (*k).to_owned()).collect(),
                    keys: entities
                        .iter()
                        .map(|e| e.split('\u{1f}').map(str::to_owned).collect())
                        .collect(),
                    ts: vec![now; entities.len()],
                };
                let offline = compute_any(v, &grouped, &ingestor, &rows)?;
                for (fi, f) in v.features.iter().enumerate() {
                    let name = format!("{}__{}", v.name, f.name);
                    let (mut differ, mut max_diff) = (0usize, 0f64);
                    for (r, on) in online.iter().enumerate() {
                        let (a, b) = (on.value(&name), offline.values[fi][r]);
                        let same = match (a, b) {
                            (None, None) => true,
                            (Some(x), Some(y)) => {
                                max_diff = max_diff.max((x - y).abs());
                                (x - y).abs() <= 1e-9 * (1.0 + x.abs())
                            }
                            _ => false,
                        };
                        differ += usize::from(!same);
                    }
                    report.push(json!({"feature": name, "entities": online.len(),
                        "differ": differ, "max_abs_diff": max_diff}));
                }
            }
            out.emit(&report, || {
                report
                    .iter()
                    .map(|r| {
                        format!(
                            "{:<40} {:>5} entities  {:>4} differ  max |diff| {}\n",
                            r["feature"].as_str().unwrap_or(""),
                            r["entities"],
                            r["differ"],
                            r["max_abs_diff"]
                        )
                    })
                    .collect()
            });
        }
        FeaturesCommand::Get { service, entities } => {
            let cur = versions.require()?;
            let plan = Plan::new(&cur.definitions, &service)?;
            let rows: Vec<BTreeMap<String, String>> = entities
                .iter()
                .map(|e| parse_entity(e))
                .collect::<Result<_, _>>()?;
            let store = OnlineStore::open(dir.path())?;
            let got = store.read(&plan, &rows, encore_core::time::now_ms())?;
            out.emit(&got, || {
                let mut t = String::new();
                for (r, g) in rows.iter().zip(&got) {
                    t.push_str(&format!(
                        "{r:?}{}\n",
                        if g.missing { " (missing)" } else { "" }
                    ));
                    for (k, v) in g.named() {
                        t.push_str(&format!(
                            "  {k:<36} {}\n",
                            v.map_or("null".into(), |x| format!("{x}"))
                        ));
                    }
                }
                t
            });
        }
    }
    Ok(())
}
