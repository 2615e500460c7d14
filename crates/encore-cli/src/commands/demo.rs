//! `encore demo`: the main job for a newcomer. Today it simulates a world into the data directory
//! and reports it; each capability that lands extends it (ingest, train, evaluate, register,
//! serve) until it ends with a running server and URLs to open.

use crate::cli::DemoArgs;
use crate::commands::sim::{WorldReport, write_world};
use crate::error::CliError;
use crate::output::Output;
use encore_config::Loaded;
use encore_sim::output::MANIFEST_FILE;
use encore_sim::{Format, Manifest, SimConfig};
use serde::Serialize;

#[derive(Serialize)]
struct DemoReport {
    data_dir: String,
    reused: bool,
    world: WorldReport,
    ingest: encore_ingest::IngestSummary,
    /// rows in the event log after the run
    log_rows: u64,
    /// offline evaluation on the log (20 % of each listener's streamed tracks held out)
    models: Vec<encore_app::training::EvalReport>,
    /// ALS trained on the whole log, registered and moved to production through the gate
    registered: encore_app::training::TrainReport,
    /// requests to try against the server the demo starts
    #[serde(skip_serializing_if = "Vec::is_empty")]
    requests: Vec<String>,
    /// an admin key for the demo's server (the previous demo key is revoked); shown once
    #[serde(skip_serializing_if = "Option::is_none")]
    api_key: Option<String>,
    next: Vec<String>,
}

pub fn run(loaded: &Loaded, args: &DemoArgs, out: &Output) -> Result<(), CliError> {
    build(loaded, args, out)?;
    if args.no_serve {
        return Ok(());
    }
    // the data directory was released when `build` returned: the server takes it now
    crate::commands::serve::run(
        loaded,
        &crate::cli::ServeArgs {
            bind: args.bind,
            repair_damage: false,
            role: None,
        },
        out,
    )
}

/// Example requests against the demo's server (`$ENCORE_API_KEY` holds the demo's key).
fn curl_examples(base: &str, user: &str, item: &str, keyed: bool) -> Vec<String> {
    let h = if keyed {
        " -H \"Authorization: Bearer $ENCORE_API_KEY\""
    } else {
        ""
    };
    vec![
        format!("curl -s{h} '{base}/v1/users/{user}/recommendations?n=10'"),
        format!("curl -s{h} '{base}/v1/items/{item}/similar?n=10'"),
        format!("curl -s{h} '{base}/v1/users/{user}/mixes?max=3&size=10'"),
        format!(
            "curl -s{h} {base}/v1/radio -H 'content-type: application/json' -d '{{\"seeds\": [\"{item}\"], \"n\": 10}}'"
        ),
        format!(
            "curl -s{h} {base}/v1/recommendations -H 'content-type: application/json' -d '{{\"seed_items\": [\"{item}\"], \"n\": 5}}'"
        ),
        format!("curl -s{h} {base}/v1/models/recommender/history"),
        format!("curl -s {base}/metrics"),
    ]
}

/// A fresh admin key named `demo` for the demo's server; earlier demo keys are revoked.
fn demo_key(root: &std::path::Path) -> Result<String, CliError> {
    let keys = encore_access::Keys::open(root)?;
    for k in keys.list()? {
        if k.name == "demo" && k.revoked_ms.is_none() {
            keys.revoke(&k.id)?;
        }
    }
    let created = keys.create(&encore_access::NewKey::new(
        "demo",
        vec![encore_access::Scope::Admin],
    ))?;
    crate::commands::access::audit_local(
        root,
        "keys create",
        &created.key.id,
        "name=demo scopes=admin (encore demo)",
    );
    Ok(created.secret)
}

/// Everything but serving.
fn build(loaded: &Loaded, args: &DemoArgs, out: &Output) -> Result<(), CliError> {
    let demo = &loaded.config.demo;
    let users = args.users.unwrap_or(demo.users).max(1);
    let days = args.days.unwrap_or(demo.days).max(1);
    let seed = args.seed.unwrap_or(demo.seed);
    let (dir, ingestor) = crate::commands::events::open(loaded)?;
    let world_dir = dir.subdir("worlds")?.join("demo");
    let config = SimConfig::new(users as usize, days, seed);

    // a world of the same size and seed is the same world: reuse it when it is intact
    let existing: Option<Manifest> = std::fs::read_to_string(world_dir.join(MANIFEST_FILE))
        .ok()
        .and_then(|text| serde_json::from_str(&text).ok())
        .filter(|m: &Manifest| m.seed == seed && m.users == u64::from(users) && m.days == days)
        .filter(|_| encore_sim::verify(&world_dir).is_ok_and(|problems| problems.is_empty()));
    let (world, reused) = match existing {
        Some(m) => (WorldReport::new(&world_dir, &m, 0.0), true),
        None => (
            write_world(&config, &world_dir, Format::Parquet, true, out)?,
            false,
        ),
    };
    // ingest through the real path: contracts, dedup, durable log (a second run finds duplicates)
    let ingest = crate::commands::events::ingest_paths(
        &ingestor,
        std::slice::from_ref(&world_dir),
        None,
        false,
        out,
    )?;
    let stats = encore_ingest::stats::event_stats(&ingestor)?;
    // train and evaluate on the log: ALS next to popularity on a holdout of each listener's streams
    let ds = encore_app::training::dataset_from_log(&ingestor)?;
    let mut models = Vec::new();
    for model in [crate::cli::ModelArg::Popularity, crate::cli::ModelArg::Als] {
        let args = crate::cli::ModelArgs::defaults(model);
        models.push(crate::commands::eval::evaluate(&ds, &args, 0, 10, out)?);
    }
    // the production model: ALS on every stream, registered with the metrics above
    let data = encore_app::training::TrainingData::from_log(&ingestor)?;
    let train_args = crate::cli::TrainArgs {
        train: None,
        model: crate::cli::ModelArgs::defaults(crate::cli::ModelArg::Als),
        threads: 0,
        no_loss: false,
        out: None,
        name: "recommender".into(),
        no_eval: false,
        promote: false,
        description: "encore demo: ALS on the simulated world".into(),
        gate: crate::cli::GateArgs::default(),
        tags: vec![("source".into(), "demo".into())],
    };
    let t = crate::commands::train::settings(loaded, &train_args);
    let bars = crate::commands::train::Bars::new(out);
    let mut registered = encore_app::training::fit(dir.path(), &data, &t, &bars)?;
    let (als_metrics, pop_metrics) = (models[1].metrics.clone(), models[0].metrics.clone());
    encore_app::training::register(
        dir.path(),
        &data,
        &t,
        &mut registered,
        als_metrics,
        pop_metrics,
    )?;
    // a refusal (a different world scoring lower than the last demo's) is reported, not fatal
    let mut registry = encore_registry::Registry::open(dir.path())?;
    let actor = crate::commands::models::actor();
    let how = encore_registry::Promotion {
        alias: encore_registry::PRODUCTION,
        actor: &actor,
        reason: "encore demo",
        force: false,
    };
    let gate = t.gate.clone();
    registered.promoted = match registry.promote("recommender", registered.version, &how, &gate) {
        Ok(m) => Some(m),
        Err(e @ encore_registry::RegistryError::GateRefused { .. }) => {
            tracing::warn!("{e}");
            None
        }
        Err(e) => return Err(e.into()),
    };
    let world_path = world_dir.display().to_string();
    let keyed = loaded.config.server.auth == encore_config::AuthMode::Required;
    let api_key = if args.no_serve || !keyed {
        None
    } else {
        Some(demo_key(dir.path())?)
    };
    let requests = if args.no_serve {
        Vec::new()
    } else {
        let base = format!("http://{}", args.bind.unwrap_or(loaded.config.server.bind));
        let user = data.users.first().cloned().unwrap_or_default();
        // the most streamed track makes a good seed
        let mut listeners = vec![0u32; data.items.len()];
        for &i in &data.plays.indices {
            listeners[i as usize] += 1;
        }
        let top = (0..listeners.len()).max_by_key(|&i| (listeners[i], std::cmp::Reverse(i)));
        let item = top.map(|i| data.items[i].clone()).unwrap_or_default();
        curl_examples(&base, &user, &item, keyed)
    };
    let report = DemoReport {
        requests,
        data_dir: dir.path().display().to_string(),
        reused,
        api_key,
        ingest,
        log_rows: stats.plays + stats.interactions,
        models,
        registered,
        next: vec![
            "encore models card recommender@production".into(),
            "encore models history recommender".into(),
            "encore events stats".into(),
            "encore events verify".into(),
            format!("encore sim verify {world_path}"),
            "encore sim generate --users 20000 --days 30 --out /tmp/world --format parquet".into(),
            "encore config show".into(),
        ],
        world,
    };
    out.emit(&report, || {
        let mut text = format!(
            "encore demo: a simulated music streaming service\n\n{}{}\n",
            report.world.text(),
            if report.reused {
                "(reused: same seed and size as before)\n"
            } else {
                ""
            },
        );
        text.push_str(&format!(
            "ingested   {}event log holds {} rows\n\n",
            crate::commands::events::summary_text(&report.ingest),
            crate::output::thousands(report.log_rows)
        ));
        if let [pop, als] = &report.models[..] {
            text.push_str(&format!(
                "trained    ALS (64 factors, 15 iterations) in {:.1} s on {} listeners x {} tracks\n\
                 evaluated  NDCG@10 ALS {:.4} vs popularity {:.4} ({:.1}x), 20 % of each listener's streams held out\n\n",
                als.fit_seconds,
                crate::output::thousands(als.users as u64),
                crate::output::thousands(als.items as u64),
                als.ndcg(),
                pop.ndcg(),
                als.ndcg() / pop.ndcg().max(1e-9),
            ));
        }
        let r = &report.registered;
        text.push_str(&format!(
            "registered {}@{} ({}), production: {}\n\n",
            r.name,
            r.version,
            r.artifact,
            r.promoted
                .as_ref()
                .map_or("unchanged (the gate refused it)".to_string(), |m| format!("v{}", m.to)),
        ));
        text.push_str("try next:\n");
        for n in &report.next {
            text.push_str(&format!("  {n}\n"));
        }
        if let Some(key) = &report.api_key {
            text.push_str(&format!(
                "\nan admin API key for this server (shown once; `encore keys list` shows it):\n  \
                 export ENCORE_API_KEY={key}\n"
            ));
        }
        if !report.requests.is_empty() {
            text.push_str("\nserving the production model now (Ctrl-C stops it); try:\n");
            for r in &report.requests {
                text.push_str(&format!("  {r}\n"));
            }
        }
        text
    });
    Ok(())
}
