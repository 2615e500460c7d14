//! `encore experiments simulate`: experiments on a simulated service, end to end through the
//! real serving path, to check that the analysis is calibrated and has power.
//!
//! A world of listeners is simulated up to today (their history is the CUPED pre-period) and
//! ingested into a fresh data directory; a weak model (ALS with a few factors) becomes `production` and a
//! good one (ALS, 64 factors) the `candidate` alias. A real `encore serve` runs in this process on
//! 127.0.0.1. Then:
//!
//! - **A/A**: rounds of `aa_per_round` experiments at once, sharing one exclusivity domain with
//!   an equal share each (so each has listeners of its own, and its outcomes are a draw no other
//!   experiment shares), with two identical arms. In a round every
//!   listener asks for their home list once (which logs their exposures) and reacts to it
//!   through the simulator's response model (and, with `organic`, listens for a day on their
//!   own). Each experiment's report should find a significant difference about `alpha` of the
//!   time.
//! - **A/B**: `ab` experiments one after another, each in a fresh domain: control serves
//!   `production`, the treatment `candidate`. Each round is the same: serve, react, listen,
//!   report. The report should decide "ship" nearly every time.
//! - **Power** (with `lift`): for each planted lift, `ab` more experiments with the same model
//!   in both arms, where every stream a treatment listener makes after exposure is doubled with
//!   probability `lift`: the true lift of streams per listener is exactly `lift`, and the share
//!   of experiments that find it is the power at that lift.
//!
//! Events after exposure are compressed into the two seconds after the round's requests (a day
//! of listening into two seconds; the ingest contract allows timestamps up to five minutes
//! ahead); plays keep their true `ms_played`. The next round's exposures wait until those two
//! seconds are past, so no play of a round falls after a later round's exposures (squeezed
//! into a minute, a round's organic day overlapped the next rounds' and was counted in their
//! outcomes: a planted lift measured a third of its size with organic listening on).

use crate::cli::SimulateArgs;
use crate::error::CliError;
use crate::output::Output;
use encore_core::event::STREAM_THRESHOLD_MS;
use encore_core::time::{Date, MS_PER_DAY, now_ms};
use encore_experiments::analysis::{MetricSpec, Role};
use encore_experiments::assignment::{ExperimentSpec, Variant};
use encore_experiments::store::{Definition, Store, Treatment};
use encore_http::Connection;
use encore_sim::listen::Play;
use encore_sim::{Rng, World};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

const CANDIDATE: &str = "candidate";

#[derive(Debug, Serialize)]
pub struct SimulationReport {
    pub users: u32,
    pub history_days: u32,
    pub data_dir: String,
    pub alpha: f64,
    pub aa: AaSummary,
    pub ab: AbSummary,
    /// one series per planted lift: the power curve
    pub power: Vec<AbSummary>,
    pub seconds: f64,
}

/// A/A: how often the analysis finds a difference that is not there.
#[derive(Debug, Default, Serialize)]
pub struct AaSummary {
    pub experiments: usize,
    pub exposed_per_experiment: f64,
    /// the success metric's CUPED p-value below alpha
    pub false_positive_rate: f64,
    /// the same without CUPED
    pub false_positive_rate_unadjusted: f64,
    /// every metric (success, guardrail, deterioration): share of (experiment, metric) pairs
    pub false_positive_rate_any_metric: f64,
    pub srm_failures: usize,
    pub decisions: BTreeMap<String, usize>,
    /// the success metric's p-values, for a uniformity check
    pub p_values: Vec<f64>,
}

/// A/B: how often the analysis ships the good model over the weak one, or finds a planted
/// lift.
#[derive(Debug, Default, Serialize)]
pub struct AbSummary {
    /// the lift planted in the treatment arm's streams (none: weak against good model)
    pub planted_lift: Option<f64>,
    pub experiments: usize,
    pub exposed_per_experiment: f64,
    /// the success metric's CUPED p-value below alpha, lift positive: the power
    pub significant_rate: f64,
    /// the same without CUPED
    pub significant_rate_unadjusted: f64,
    pub ship_rate: f64,
    pub decisions: BTreeMap<String, usize>,
    /// mean relative lift (CUPED) per metric
    pub mean_lift: BTreeMap<String, f64>,
    pub mean_variance_reduction: BTreeMap<String, f64>,
}

fn failed(what: impl std::fmt::Display) -> CliError {
    CliError::failed(
        format!("experiment simulation: {what}"),
        "see the log (RUST_LOG=info)",
    )
}

pub fn run(
    loaded: &encore_config::Loaded,
    args: &SimulateArgs,
    out: &Output,
) -> Result<(), CliError> {
    let started = Instant::now();
    let root = loaded.config.data.dir.clone();
    if root.join("events").exists() || root.join("experiments.sqlite").exists() {
        return Err(CliError::usage(
            format!("{} already holds data", root.display()),
            "the simulation needs a fresh data directory: pass --data-dir with a new path",
        ));
    }
    let mut loaded = loaded.clone();
    loaded.config.serving.impressions = true;
    loaded.config.serving.model = "recommender".into();
    loaded.config.server.otlp_grpc = String::new();
    // the simulation's own server, on loopback, called only by this process
    loaded.config.server.auth = encore_config::AuthMode::Off;

    // a world whose history ends today, ingested; the weak and the good model registered
    let today = now_ms().div_euclid(MS_PER_DAY);
    let mut config = encore_sim::SimConfig::new(args.users as usize, args.days, args.seed);
    config.start = Date::from_days(today - i64::from(args.days));
    prepare(&loaded, &config, args.weak_factors, out)?;
    let mut world = World::new(config);
    for _ in 0..args.days {
        world.simulate_day();
    }

    // the real server, in this process
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server_config = loaded;
    let server = std::thread::spawn(move || {
        crate::commands::serve::serve_until(
            &server_config,
            ([127, 0, 0, 1], 0).into(),
            |addr, _, _| {
                let _ = addr_tx.send(addr);
            },
            async {
                let _ = stop_rx.await;
            },
        )
    });
    let addr = addr_rx
        .recv_timeout(Duration::from_secs(120))
        .map_err(|_| failed("the server did not start"))?
        .to_string();
    let result = simulate(&root, &addr, &mut world, args, out);
    let _ = stop_tx.send(());
    match server.join() {
        Ok(r) => r?,
        Err(_) => return Err(failed("the server thread panicked")),
    }
    let (aa, ab, power) = result?;
    let report = SimulationReport {
        users: args.users,
        history_days: args.days,
        data_dir: root.display().to_string(),
        alpha: args.alpha,
        aa,
        ab,
        power,
        seconds: started.elapsed().as_secs_f64(),
    };
    out.emit(&report, || text(&report));
    Ok(())
}

fn text(r: &SimulationReport) -> String {
    format!(
        "simulated {} listeners ({} days of history), alpha {}\n\
         A/A  {} experiments, {:.0} exposed each: false-positive rate {:.3} (CUPED), {:.3} unadjusted, \
         {:.3} over every metric; {} SRM failures; decisions {:?}\n\
         A/B  {} experiments (weak vs good ALS), {:.0} exposed each: shipped {:.0} %; decisions {:?}; \
         mean lift {:?}\n\
         {}in {:.1} s",
        r.users,
        r.history_days,
        r.alpha,
        r.aa.experiments,
        r.aa.exposed_per_experiment,
        r.aa.false_positive_rate,
        r.aa.false_positive_rate_unadjusted,
        r.aa.false_positive_rate_any_metric,
        r.aa.srm_failures,
        r.aa.decisions,
        r.ab.experiments,
        r.ab.exposed_per_experiment,
        100.0 * r.ab.ship_rate,
        r.ab.decisions,
        r.ab.mean_lift,
        r.power
            .iter()
            .map(|p| format!(
                "power at a planted lift of {:.1} %: {:.2} significant ({:.2} unadjusted), \
                 {:.2} shipped, {:.0} exposed each, measured lift {:.4}\n",
                100.0 * p.planted_lift.unwrap_or(0.0),
                p.significant_rate,
                p.significant_rate_unadjusted,
                p.ship_rate,
                p.exposed_per_experiment,
                p.mean_lift.get("streams_per_user").copied().unwrap_or(0.0)
            ))
            .collect::<String>(),
        r.seconds
    )
}

/// Ingests the world's history and registers popularity as `production`, ALS as `candidate`.
fn prepare(
    loaded: &encore_config::Loaded,
    config: &encore_sim::SimConfig,
    weak_factors: usize,
    out: &Output,
) -> Result<(), CliError> {
    let (dir, ingestor) = crate::commands::events::open(loaded)?;
    let world_dir = dir.subdir("worlds")?.join("simulation");
    crate::commands::sim::write_world(config, &world_dir, encore_sim::Format::Parquet, true, out)?;
    crate::commands::events::ingest_paths(
        &ingestor,
        std::slice::from_ref(&world_dir),
        None,
        false,
        out,
    )?;
    let data = encore_app::training::TrainingData::from_log(&ingestor)?;
    let mut registry = encore_registry::Registry::open(dir.path())?;
    let actor = crate::commands::models::actor();
    let gate = crate::cli::GateArgs::default().gate(&loaded.config.registry);
    // the weak model: ALS with a few factors and two iterations, which knows little more than
    // what is popular; the good one: ALS as `encore train` fits it
    let mut weak = crate::cli::ModelArgs::defaults(crate::cli::ModelArg::Als);
    weak.factors = weak_factors;
    weak.iterations = 2;
    let good = crate::cli::ModelArgs::defaults(crate::cli::ModelArg::Als);
    for (model, alias) in [(weak, encore_registry::PRODUCTION), (good, CANDIDATE)] {
        let args = crate::cli::TrainArgs {
            train: None,
            model,
            threads: 0,
            no_loss: true,
            out: None,
            name: "recommender".into(),
            no_eval: true,
            promote: false,
            description: format!("experiment simulation: the {alias} arm"),
            gate: crate::cli::GateArgs::default(),
            tags: vec![("source".into(), "simulation".into())],
        };
        let t = crate::commands::train::settings(loaded, &args);
        let bars = crate::commands::train::Bars::new(out);
        let mut trained = encore_app::training::fit(dir.path(), &data, &t, &bars)?;
        encore_app::training::register(
            dir.path(),
            &data,
            &t,
            &mut trained,
            Default::default(),
            Default::default(),
        )?;
        let how = encore_registry::Promotion {
            alias,
            actor: &actor,
            reason: "experiment simulation",
            force: true,
        };
        registry.promote("recommender", trained.version, &how, &gate)?;
    }
    Ok(())
}

fn definition(id: &str, treatments: HashMap<String, Treatment>) -> Definition {
    Definition {
        hypothesis: "simulated".into(),
        allocation: ExperimentSpec {
            id: id.into(),
            domain: id.into(),
            traffic: 1.0,
            variants: ["control", "treatment"]
                .iter()
                .map(|v| Variant {
                    name: (*v).into(),
                    weight: 1.0,
                })
                .collect(),
            targeting: Default::default(),
            stretch: Vec::new(),
            ramps: Vec::new(),
        },
        treatments,
        metrics: metrics(),
        planned_users: None,
    }
}

/// What the simulated experiments are judged on: streams per listener must improve; listening
/// minutes may not drop by more than 5 % (a margin this sample can rule out); the skip rate may
/// not rise significantly; the stream rate is reported.
fn metrics() -> Vec<MetricSpec> {
    let spec = |name: &str, role: Role, higher_is_better: bool| MetricSpec {
        name: name.into(),
        role,
        higher_is_better,
    };
    vec![
        spec("streams_per_user", Role::Success, true),
        spec("listening_minutes", Role::Guardrail { margin: 0.05 }, true),
        spec("skip_rate", Role::Deterioration, false),
        spec("stream_rate", Role::Quality, true),
    ]
}

fn simulate(
    root: &std::path::Path,
    addr: &str,
    world: &mut World,
    args: &SimulateArgs,
    out: &Output,
) -> Result<(AaSummary, AbSummary, Vec<AbSummary>), CliError> {
    let mut store = Store::open(root)?;
    // when the last round's plays are all in the past
    let mut busy_until = 0i64;
    let mut conn = Connection::open(addr).map_err(failed)?;
    let alpha = args.alpha;

    // A/A: in rounds of `aa_per_round` experiments at once, sharing one domain (each its own
    // listeners); each round is a fresh draw of the listeners' reactions
    let mut aa = AaSummary::default();
    let (mut fp, mut fp_plain, mut fp_any, mut pairs) = (0u32, 0u32, 0u32, 0u32);
    let bar = out.progress(u64::from(args.aa), "A/A experiments");
    let per_round = args.aa_per_round.max(1);
    for (k, first) in (0..args.aa).step_by(per_round as usize).enumerate() {
        let ids: Vec<String> = (first..(first + per_round).min(args.aa))
            .map(|i| format!("aa-{i}"))
            .collect();
        // one domain for the round, an equal share of it each: disjoint listeners, so each
        // experiment rests on reactions of its own (no two share a draw)
        let share = 1.0 / ids.len() as f64;
        for id in &ids {
            let mut d = definition(id, HashMap::new());
            d.allocation.domain = format!("aa-round-{k}");
            d.allocation.traffic = share;
            store.create(&d)?;
            store.start(id)?;
        }
        wait_for_plan(&mut conn, world, &ids)?;
        let exposed = round(&mut conn, world, args, k as u64, None, &mut busy_until)?;
        for id in &ids {
            let r = results(&mut conn, id, exposed.get(id).copied().unwrap_or(0), alpha)?;
            store.stop(id)?;
            bar.inc(1);
            aa.exposed_per_experiment += r["exposed"].as_f64().unwrap_or(0.0);
            *aa.decisions.entry(decision(&r)).or_default() += 1;
            aa.srm_failures += usize::from(r["srm_ok"] == false);
            for m in r["results"].as_array().into_iter().flatten() {
                let (p, p_plain) = (
                    m["cuped"]["p_value"].as_f64().unwrap_or(1.0),
                    m["unadjusted"]["p_value"].as_f64().unwrap_or(1.0),
                );
                pairs += 1;
                fp_any += u32::from(p < alpha);
                if m["metric"] == "streams_per_user" {
                    fp += u32::from(p < alpha);
                    fp_plain += u32::from(p_plain < alpha);
                    aa.p_values.push(p);
                }
            }
        }
    }
    bar.finish_and_clear();
    if args.aa > 0 {
        let n = f64::from(args.aa);
        aa.experiments = args.aa as usize;
        aa.exposed_per_experiment /= n;
        aa.false_positive_rate = f64::from(fp) / n;
        aa.false_positive_rate_unadjusted = f64::from(fp_plain) / n;
        aa.false_positive_rate_any_metric = f64::from(fp_any) / f64::from(pairs.max(1));
    }

    // A/B: the weak model in control, the good one in treatment
    let models = HashMap::from([
        (
            "control".to_string(),
            Treatment {
                model_alias: Some(encore_registry::PRODUCTION.into()),
                ..Default::default()
            },
        ),
        (
            "treatment".to_string(),
            Treatment {
                model_alias: Some(CANDIDATE.into()),
                ..Default::default()
            },
        ),
    ]);
    let series = Series {
        prefix: "ab".into(),
        treatments: models,
        plant: None,
        seed: 1_000,
    };
    let ab = series.run(&mut store, &mut conn, world, args, out, &mut busy_until)?;
    // the power curve: the same model in both arms, a planted lift in the treatment's streams
    let mut power = Vec::new();
    for (k, &lift) in args.lift.iter().enumerate() {
        let series = Series {
            prefix: format!("power-{k}"),
            treatments: HashMap::new(),
            plant: Some(lift),
            seed: 1_000_000 * (k as u64 + 1),
        };
        power.push(series.run(&mut store, &mut conn, world, args, out, &mut busy_until)?);
    }
    Ok((aa, ab, power))
}

/// `ab` experiments one after another, each a fresh randomization in a domain of its own.
struct Series {
    prefix: String,
    treatments: HashMap<String, Treatment>,
    /// a lift planted in the treatment arm's streams
    plant: Option<f64>,
    seed: u64,
}

impl Series {
    fn run(
        &self,
        store: &mut Store,
        conn: &mut Connection,
        world: &mut World,
        args: &SimulateArgs,
        out: &Output,
        busy_until: &mut i64,
    ) -> Result<AbSummary, CliError> {
        let mut ab = AbSummary {
            planted_lift: self.plant,
            ..Default::default()
        };
        let (mut significant, mut significant_plain) = (0u32, 0u32);
        let (mut lifts, mut reductions): (BTreeMap<String, f64>, BTreeMap<String, f64>) =
            Default::default();
        let what = match self.plant {
            Some(lift) => format!("A/B experiments, planted lift {lift}"),
            None => "A/B experiments".into(),
        };
        let bar = out.progress(u64::from(args.ab), &what);
        for i in 0..args.ab {
            let id = format!("{}-{i}", self.prefix);
            store.create(&definition(&id, self.treatments.clone()))?;
            store.start(&id)?;
            wait_for_plan(conn, world, std::slice::from_ref(&id))?;
            let plant = self.plant.map(|lift| (id.as_str(), lift));
            let exposed = round(
                conn,
                world,
                args,
                self.seed + u64::from(i),
                plant,
                busy_until,
            )?;
            let r = results(
                conn,
                &id,
                exposed.get(&id).copied().unwrap_or(0),
                args.alpha,
            )?;
            store.stop(&id)?;
            bar.inc(1);
            ab.exposed_per_experiment += r["exposed"].as_f64().unwrap_or(0.0);
            *ab.decisions.entry(decision(&r)).or_default() += 1;
            for m in r["results"].as_array().into_iter().flatten() {
                let name = m["metric"].as_str().unwrap_or_default().to_string();
                let lift = m["cuped"]["lift"].as_f64().unwrap_or(0.0);
                if name == "streams_per_user" {
                    let found = |how: &str| {
                        m[how]["p_value"].as_f64().unwrap_or(1.0) < args.alpha
                            && m[how]["lift"].as_f64().unwrap_or(0.0) > 0.0
                    };
                    significant += u32::from(found("cuped"));
                    significant_plain += u32::from(found("unadjusted"));
                }
                *lifts.entry(name.clone()).or_default() += lift;
                *reductions.entry(name).or_default() +=
                    m["variance_reduction"].as_f64().unwrap_or(0.0);
            }
        }
        bar.finish_and_clear();
        if args.ab > 0 {
            let n = f64::from(args.ab);
            ab.experiments = args.ab as usize;
            ab.exposed_per_experiment /= n;
            ab.significant_rate = f64::from(significant) / n;
            ab.significant_rate_unadjusted = f64::from(significant_plain) / n;
            ab.ship_rate = ab.decisions.get("ship").copied().unwrap_or(0) as f64 / n;
            ab.mean_lift = lifts.into_iter().map(|(k, v)| (k, v / n)).collect();
            ab.mean_variance_reduction = reductions.into_iter().map(|(k, v)| (k, v / n)).collect();
        }
        Ok(ab)
    }
}

fn decision(r: &serde_json::Value) -> String {
    r["decision"].as_str().unwrap_or("none").to_string()
}

fn get_json(conn: &mut Connection, path: &str) -> Result<(u16, serde_json::Value), CliError> {
    let r = conn.request("GET", path, b"").map_err(failed)?;
    Ok((r.status, serde_json::from_str(&r.body).unwrap_or_default()))
}

/// Waits until the server's plan runs exactly the experiments `running` (it reloads them every
/// second).
fn wait_for_plan(conn: &mut Connection, world: &World, running: &[String]) -> Result<(), CliError> {
    let mut want: Vec<&str> = running.iter().map(String::as_str).collect();
    want.sort_unstable();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        // the experiments the listeners are in, together (each holds a share of them), are
        // exactly the running ones: the plan of this round, no experiment of the last
        let mut have = std::collections::BTreeSet::new();
        for u in 0..world.profiles.len() as u32 {
            let (_, a) = get_json(
                conn,
                &format!("/v1/assignments?user_id={}", World::user_id(u)),
            )?;
            have.extend(
                a["assignments"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|x| x["experiment"].as_str().map(str::to_owned)),
            );
        }
        if have.iter().map(String::as_str).eq(want.iter().copied()) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(failed(format!(
                "the server did not pick up the running experiments {running:?}"
            )));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Real time a simulated day of listening is compressed into.
const SQUEEZE: i64 = MS_PER_DAY / 2_000;

/// One round: every listener is served their home list once and reacts to it, then everyone
/// listens for a day. With `plant` (an experiment and a lift), each stream of a listener in
/// that experiment's treatment arm is doubled with probability `lift`. Returns the listeners
/// exposed per experiment.
fn round(
    conn: &mut Connection,
    world: &mut World,
    args: &SimulateArgs,
    round: u64,
    plant: Option<(&str, f64)>,
    busy_until: &mut i64,
) -> Result<HashMap<String, usize>, CliError> {
    // the last round's plays are all in the past before anyone is exposed again
    while now_ms() <= *busy_until {
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut exposed: HashMap<String, usize> = HashMap::new();
    let mut served: Vec<(u32, Vec<u32>)> = Vec::new();
    // what each list was: its request, and each track's position and propensity, for the
    // plays that follow it to name (as a client attributes plays to a served list)
    let mut attribution: HashMap<(u32, u32), (String, u32, f64)> = HashMap::new();
    let mut treated = HashSet::new();
    for u in 0..world.profiles.len() as u32 {
        let path = format!(
            "/v1/users/{}/recommendations?n={}",
            World::user_id(u),
            args.list
        );
        let (status, slate) = get_json(conn, &path)?;
        if status != 200 {
            return Err(failed(format!("GET {path}: {status} {slate}")));
        }
        // a listener with no streams yet, or who withdrew personalization, gets the popular
        // list under no arm: not exposed; one who withholds analytics consent is exposed but
        // not analysed
        let analysed = world.profiles[u as usize].consent.analytics;
        for arm in slate["experiments"].as_array().into_iter().flatten() {
            if let Some(e) = arm["experiment"].as_str()
                && analysed
            {
                *exposed.entry(e.to_string()).or_default() += 1;
            }
            if plant.is_some_and(|(id, _)| arm["experiment"] == id) && arm["variant"] == "treatment"
            {
                treated.insert(u);
            }
        }
        let tracks: Vec<u32> = slate["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|i| i["id"].as_str()?.strip_prefix('t')?.parse().ok())
            .collect();
        if let Some(request) = slate["request_id"].as_str() {
            for (pos, item) in slate["items"].as_array().into_iter().flatten().enumerate() {
                if let Some(t) = item["id"]
                    .as_str()
                    .and_then(|i| i.strip_prefix('t')?.parse::<u32>().ok())
                {
                    let propensity = item["propensity"].as_f64().unwrap_or(1.0);
                    attribution.entry((u, t)).or_insert((
                        request.to_owned(),
                        pos as u32,
                        propensity,
                    ));
                }
            }
        }
        served.push((u, tracks));
    }
    // everything after exposure happens from here on
    let anchor = now_ms() + 1;
    let mut rng = Rng::stream(args.seed, &[0xE7, round]);
    let (mut plays, mut interactions) = (Vec::new(), Vec::new());
    // the lists' plays follow one another; squeezed like the day below
    for (u, tracks) in &served {
        let (p, i) = world.respond_events(*u, tracks, anchor, &mut rng);
        plays.extend(p.into_iter().map(|mut p| {
            p.ts_start_ms = anchor + (p.ts_start_ms - anchor) / SQUEEZE;
            p
        }));
        interactions.extend(i.into_iter().map(|mut i| {
            i.ts_ms = anchor + (i.ts_ms - anchor) / SQUEEZE;
            i
        }));
    }
    let from_lists = plays.len();
    if args.organic {
        // a day of their own listening, compressed like the lists' plays
        let day = world.simulate_day();
        let day_start = day
            .plays
            .first()
            .map_or(anchor, |p| p.ts_start_ms)
            .min(day.interactions.first().map_or(i64::MAX, |i| i.ts_ms));
        let squeeze = |ts: i64| anchor + (ts - day_start).max(0) / SQUEEZE;
        plays.extend(day.plays.into_iter().map(|mut p| {
            p.ts_start_ms = squeeze(p.ts_start_ms);
            p
        }));
        interactions.extend(day.interactions.into_iter().map(|mut i| {
            i.ts_ms = squeeze(i.ts_ms);
            i
        }));
    }
    if let Some((_, lift)) = plant {
        plant_lift(&mut plays, &treated, lift, &mut rng);
    }
    *busy_until = plays
        .iter()
        .map(|p| p.ts_start_ms + 1)
        .chain(interactions.iter().map(|i| i.ts_ms))
        .fold(*busy_until, i64::max);
    let latest_end = now_ms() + 4 * 60_000;
    let mut body = Vec::new();
    for (c, chunk) in plays.chunks(5_000).enumerate() {
        let body_start = c * 5_000;
        body.clear();
        for (k, p) in chunk.iter().enumerate() {
            let mut e = world.playback_event(p);
            e.ts_end_ms = e.ts_end_ms.min(latest_end.max(e.ts_start_ms));
            let index = body_start + k;
            if index < from_lists
                && let Some((request, position, propensity)) = attribution.get(&(p.user, p.track))
            {
                e.request_id = Some(request.clone());
                e.position = Some(*position);
                e.propensity = Some(*propensity);
            }
            serde_json::to_writer(&mut body, &e).map_err(failed)?;
            body.push(b'\n');
        }
        post(conn, &body)?;
    }
    for chunk in interactions.chunks(5_000) {
        body.clear();
        for i in chunk {
            serde_json::to_writer(&mut body, &world.interaction_event(i)).map_err(failed)?;
            body.push(b'\n');
        }
        post(conn, &body)?;
    }
    Ok(exposed)
}

/// Doubles each stream of a `treated` listener with probability `lift` (a play of its own, one
/// millisecond later): the treatment's streams per listener rise by `lift` in expectation,
/// whatever else the listeners do.
fn plant_lift(plays: &mut Vec<Play>, treated: &HashSet<u32>, lift: f64, rng: &mut Rng) {
    let mut extra = Vec::new();
    for p in plays.iter() {
        if p.ms_played >= STREAM_THRESHOLD_MS && treated.contains(&p.user) && rng.chance(lift) {
            extra.push(Play {
                event_id: (rng.next_u64(), rng.next_u64()),
                ts_start_ms: p.ts_start_ms + 1,
                ..p.clone()
            });
        }
    }
    plays.extend(extra);
}

fn post(conn: &mut Connection, body: &[u8]) -> Result<(), CliError> {
    let r = conn.request("POST", "/v1/events", body).map_err(failed)?;
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap_or_default();
    if r.status != 200 || v["rejected"].as_u64().unwrap_or(0) > 0 {
        return Err(failed(format!(
            "POST /v1/events: {} {}",
            r.status,
            r.body.chars().take(600).collect::<String>()
        )));
    }
    Ok(())
}

/// The experiment's results once all `exposed` exposures are in the log (they are written in
/// batches behind the requests).
fn results(
    conn: &mut Connection,
    id: &str,
    exposed: usize,
    alpha: f64,
) -> Result<serde_json::Value, CliError> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, r) = get_json(conn, &format!("/v1/experiments/{id}/results?alpha={alpha}"))?;
        if status == 200 && r["exposed"].as_u64() == Some(exposed as u64) {
            return Ok(r);
        }
        if Instant::now() > deadline {
            return Err(failed(format!(
                "{id}: expected {exposed} exposed listeners, the server reports {status} {}",
                r["exposed"]
            )));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_planted_lift_doubles_that_share_of_the_treated_streams_only() {
        let mut world = World::new(encore_sim::SimConfig::new(300, 1, 3));
        let plays = world.simulate_day().plays;
        let treated: HashSet<u32> = (0..300).filter(|u| u % 2 == 0).collect();
        let streams = |ps: &[Play], treated_only: bool| {
            ps.iter()
                .filter(|p| p.ms_played >= STREAM_THRESHOLD_MS)
                .filter(|p| !treated_only || treated.contains(&p.user))
                .count()
        };
        let base = streams(&plays, true);
        assert!(base > 1_000, "{base} treated streams");
        let mut planted = plays.clone();
        plant_lift(&mut planted, &treated, 0.2, &mut Rng::new(5));
        let extra = &planted[plays.len()..];
        // only streams of treated listeners are doubled, each as a new event
        assert_eq!(streams(extra, true), extra.len());
        let ids: HashSet<_> = planted.iter().map(|p| p.event_id).collect();
        assert_eq!(ids.len(), planted.len());
        // about a fifth of them: within four binomial standard errors
        let expected = 0.2 * base as f64;
        let sd = (base as f64 * 0.2 * 0.8).sqrt();
        assert!(
            (extra.len() as f64 - expected).abs() < 4.0 * sd,
            "{} extra of {base}",
            extra.len()
        );
        assert_eq!(
            streams(&planted, false) - streams(&plays, false),
            extra.len()
        );
    }
}
