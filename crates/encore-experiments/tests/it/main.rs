//! Assignment properties on many synthetic listeners.

use encore_experiments::analysis::{ArmData, Decision, MetricData, MetricSpec, Role, analyze};
use encore_experiments::assignment::{
    AssignmentError, Context, ExperimentSpec, Plan, Targeting, Variant,
};
use encore_stats::CoMoments;
use std::collections::HashMap;

fn spec(id: &str, domain: &str, traffic: f64, weights: &[f64]) -> ExperimentSpec {
    ExperimentSpec {
        id: id.into(),
        domain: domain.into(),
        traffic,
        variants: weights
            .iter()
            .enumerate()
            .map(|(i, &w)| Variant {
                name: format!("v{i}"),
                weight: w,
            })
            .collect(),
        targeting: Targeting::default(),
        stretch: Vec::new(),
        ramps: Vec::new(),
    }
}

fn ctx() -> Context<'static> {
    Context {
        country: "SE",
        platform: "ios",
        tier: "premium",
        new_user: false,
    }
}

fn users(n: usize) -> impl Iterator<Item = String> {
    (0..n).map(|i| format!("user-{i}"))
}

/// The same listener gets the same answer from any plan of the same experiments; raising an
/// experiment's traffic while it runs (a ramp) only adds listeners, split by its weights, and
/// moves nobody already in it or in the experiment beside it; an experiment starting after the
/// ramp moves nobody either.
#[test]
fn deterministic_and_sticky() {
    use encore_experiments::assignment::{place, ramp};
    let experiments = [
        spec("e1", "home", 0.6, &[1.0, 1.0]),
        spec("e2", "search", 1.0, &[3.0, 1.0]),
    ];
    let a = Plan::new(&experiments, &HashMap::new(), 0.05, "holdout").unwrap();
    let b = Plan::new(&experiments, &HashMap::new(), 0.05, "holdout").unwrap();
    for u in users(20_000) {
        let first = a.assign(&u, &ctx());
        assert_eq!(first, a.assign(&u, &ctx()));
        assert_eq!(first, b.assign(&u, &ctx()));
    }

    // ramping: e1 at 10 % beside e2 at 30 %, then e1 to 25 % and 40 %, then e3 starts
    let of = |plan: &Plan, u: &str, id: &str| {
        plan.assign(u, &ctx())
            .into_iter()
            .find(|a| a.experiment == id)
            .map(|a| a.variant)
    };
    let plan_of = |specs: &[ExperimentSpec]| Plan::new(specs, &HashMap::new(), 0.0, "h").unwrap();
    let mut running = vec![
        spec("e1", "home", 0.1, &[1.0, 3.0]),
        spec("e2", "home", 0.3, &[1.0, 1.0]),
    ];
    place(&mut running).unwrap();
    let mut plans = vec![plan_of(&running)];
    for traffic in [0.25, 0.4] {
        ramp(&mut running, "e1", traffic).unwrap();
        plans.push(plan_of(&running));
    }
    running.push(spec("e3", "home", 0.3, &[1.0, 1.0]));
    place(&mut running).unwrap();
    plans.push(plan_of(&running));
    let n = 100_000;
    let mut counts = vec![[0usize; 2]; plans.len()];
    let mut joined = [0usize; 2];
    for u in users(n) {
        let e1: Vec<Option<String>> = plans.iter().map(|p| of(p, &u, "e1")).collect();
        for w in e1.windows(2) {
            // once in, always in, in the same variant
            if w[0].is_some() {
                assert_eq!(w[0], w[1], "{u}: the ramp moved a listener of e1");
            }
        }
        let e2 = of(&plans[0], &u, "e2");
        for p in &plans {
            assert_eq!(
                of(p, &u, "e2"),
                e2,
                "{u}: ramping e1 moved a listener of e2"
            );
            assert!(
                of(p, &u, "e1").is_none() || of(p, &u, "e2").is_none(),
                "{u}"
            );
        }
        for (k, v) in e1.iter().enumerate() {
            if let Some(v) = v {
                counts[k][usize::from(v == "v1")] += 1;
            }
        }
        // the listeners each raise added split by the weights too
        if e1[0].is_none()
            && let Some(v) = &e1[2]
        {
            joined[usize::from(v == "v1")] += 1;
        }
    }
    for (k, traffic) in [0.1, 0.25, 0.4, 0.4].iter().enumerate() {
        let total = (counts[k][0] + counts[k][1]) as f64;
        let want = traffic * n as f64;
        assert!(
            (total - want).abs() < 0.02 * n as f64,
            "plan {k}: {total} in e1, want {want}"
        );
        let share = counts[k][1] as f64 / total;
        assert!((share - 0.75).abs() < 0.02, "plan {k}: v1 share {share}");
    }
    let share = joined[1] as f64 / (joined[0] + joined[1]) as f64;
    assert!((share - 0.75).abs() < 0.02, "ramped-in v1 share {share}");
    // lowering traffic would drop listeners mid-run; a raise past what the domain has is full
    assert!(matches!(
        ramp(&mut running, "e1", 0.3),
        Err(AssignmentError::Invalid { .. })
    ));
    assert!(matches!(
        ramp(&mut running, "e1", 0.5),
        Err(AssignmentError::DomainFull { .. })
    ));
}

/// Experiments starting and stopping beside a running one never move its listeners: each keeps
/// the stretch of its domain it was placed in when it started.
#[test]
fn a_running_experiment_keeps_its_listeners_when_others_start_and_stop() {
    use encore_experiments::assignment::place;
    let assigned = |plan: &Plan, u: &str, id: &str| {
        plan.assign(u, &ctx())
            .into_iter()
            .find(|a| a.experiment == id)
            .map(|a| a.variant)
    };
    let plan_of = |specs: &[ExperimentSpec]| Plan::new(specs, &HashMap::new(), 0.0, "h").unwrap();
    // e1 starts alone, then e2 beside it in the same domain, then e1 stops, then e3 starts
    let mut running = vec![spec("e1", "home", 0.3, &[1.0, 1.0])];
    place(&mut running).unwrap();
    let p1 = plan_of(&running);
    running.push(spec("e2", "home", 0.4, &[1.0, 2.0]));
    place(&mut running).unwrap();
    let p2 = plan_of(&running);
    running.remove(0);
    let p3 = plan_of(&running);
    running.push(spec("e3", "home", 0.5, &[1.0, 1.0]));
    place(&mut running).unwrap();
    let p4 = plan_of(&running);
    let (mut in_e1, mut in_e2, mut in_e3) = (0, 0, 0);
    for u in users(50_000) {
        let e1 = assigned(&p1, &u, "e1");
        assert_eq!(e1, assigned(&p2, &u, "e1"), "{u}: e2 starting moved e1");
        let e2 = assigned(&p2, &u, "e2");
        assert!(
            e1.is_none() || e2.is_none(),
            "{u} in two experiments of a domain"
        );
        assert_eq!(e2, assigned(&p3, &u, "e2"), "{u}: e1 stopping moved e2");
        assert_eq!(e2, assigned(&p4, &u, "e2"), "{u}: e3 starting moved e2");
        let e3 = assigned(&p4, &u, "e3");
        assert!(e2.is_none() || e3.is_none(), "{u} in e2 and e3");
        in_e1 += usize::from(e1.is_some());
        in_e2 += usize::from(e2.is_some());
        in_e3 += usize::from(e3.is_some());
    }
    // each holds about its traffic (e3 reuses what e1 freed)
    for (n, share) in [(in_e1, 0.3), (in_e2, 0.4), (in_e3, 0.5)] {
        let want = share * 50_000.0;
        assert!((n as f64 - want).abs() < 0.02 * 50_000.0, "{n} vs {want}");
    }
    // a domain cannot hold more than all of it
    running.push(spec("e4", "home", 0.2, &[1.0, 1.0]));
    assert!(matches!(
        place(&mut running),
        Err(AssignmentError::DomainFull { .. })
    ));
}

#[test]
fn weights_are_honoured_on_a_million_listeners() {
    let plan = Plan::new(
        &[spec("e", "home", 1.0, &[1.0, 1.0, 2.0])],
        &HashMap::new(),
        0.0,
        "h",
    )
    .unwrap();
    let mut counts = [0f64; 3];
    for u in users(1_000_000) {
        let a = plan.assign(&u, &ctx());
        assert_eq!(a.len(), 1);
        counts[a[0].variant[1..].parse::<usize>().unwrap()] += 1.0;
    }
    let (chi2, _, p, _) = encore_stats::srm(&counts, &[1.0, 1.0, 2.0]);
    assert!(p > 0.001, "counts {counts:?}: chi2 {chi2}, p {p}");
}

#[test]
fn domains_are_independent_and_experiments_in_one_domain_exclusive() {
    let experiments = [
        spec("home-a", "home", 0.4, &[1.0, 1.0]),
        spec("home-b", "home", 0.5, &[1.0, 1.0]),
        spec("radio", "radio", 1.0, &[1.0, 1.0]),
    ];
    let plan = Plan::new(&experiments, &HashMap::new(), 0.0, "h").unwrap();
    let n = 300_000;
    let (mut in_a, mut in_b) = (0usize, 0usize);
    // rows: home-a variant (v0, v1, not in home-a); columns: radio variant
    let mut table = [[0f64; 2]; 3];
    for u in users(n) {
        let got = plan.assign(&u, &ctx());
        let home: Vec<_> = got
            .iter()
            .filter(|a| a.experiment.starts_with("home"))
            .collect();
        assert!(
            home.len() <= 1,
            "{u} is in two experiments of one domain: {got:?}"
        );
        in_a += usize::from(home.first().is_some_and(|a| a.experiment == "home-a"));
        in_b += usize::from(home.first().is_some_and(|a| a.experiment == "home-b"));
        let row = match home.first() {
            Some(a) if a.experiment == "home-a" => usize::from(a.variant == "v1"),
            _ => 2,
        };
        let radio = got.iter().find(|a| a.experiment == "radio").unwrap();
        table[row][usize::from(radio.variant == "v1")] += 1.0;
    }
    let share = |k: usize| k as f64 / n as f64;
    assert!((share(in_a) - 0.4).abs() < 0.005 && (share(in_b) - 0.5).abs() < 0.005);
    // independence: the radio split is the same whatever the home assignment
    let radio_v0: Vec<f64> = table.iter().map(|r| r[0]).collect();
    let radio_v1: Vec<f64> = table.iter().map(|r| r[1]).collect();
    let d = encore_stats::categorical_drift(&radio_v0, &radio_v1);
    assert!(
        d.chi2_contingency.2 > 0.001,
        "{table:?}: {:?}",
        d.chi2_contingency
    );
}

#[test]
fn the_holdout_is_never_enrolled_and_a_new_salt_reshuffles() {
    let experiments = [spec("e", "home", 1.0, &[1.0, 1.0])];
    let plan = Plan::new(&experiments, &HashMap::new(), 0.1, "global-holdout").unwrap();
    let salted = HashMap::from([("home".to_string(), "home-2026".to_string())]);
    let reshuffled = Plan::new(&experiments, &salted, 0.1, "global-holdout").unwrap();
    let n = 100_000;
    let (mut held, mut moved, mut enrolled) = (0usize, 0usize, 0usize);
    for u in users(n) {
        let a = plan.assign(&u, &ctx());
        if plan.held_out(&u) {
            held += 1;
            assert!(a.is_empty(), "held-out {u} was enrolled");
            continue;
        }
        enrolled += 1;
        let b = reshuffled.assign(&u, &ctx());
        moved += usize::from(a[0].variant != b[0].variant);
    }
    assert!((held as f64 / n as f64 - 0.1).abs() < 0.005, "{held}");
    let moved_share = moved as f64 / enrolled as f64;
    assert!(
        (moved_share - 0.5).abs() < 0.01,
        "a new salt moved {moved_share}"
    );
}

#[test]
fn targeting_and_configuration_errors() {
    let mut se_only = spec("e", "home", 1.0, &[1.0, 1.0]);
    se_only.targeting.countries = vec!["SE".into()];
    let plan = Plan::new(&[se_only], &HashMap::new(), 0.0, "h").unwrap();
    let br = Context {
        country: "BR",
        ..ctx()
    };
    assert_eq!(plan.assign("u1", &ctx()).len(), 1);
    assert!(plan.assign("u1", &br).is_empty());

    let full = Plan::new(
        &[
            spec("a", "home", 0.7, &[1.0, 1.0]),
            spec("b", "home", 0.4, &[1.0, 1.0]),
        ],
        &HashMap::new(),
        0.0,
        "h",
    );
    assert!(matches!(full, Err(AssignmentError::DomainFull { .. })));
    let one_variant = Plan::new(&[spec("a", "home", 0.5, &[1.0])], &HashMap::new(), 0.0, "h");
    assert!(matches!(one_variant, Err(AssignmentError::Invalid { .. })));
}

/// Standard normal draws from a seeded SplitMix64 stream (Box-Muller).
struct Normal(u64);

impl Normal {
    fn uniform(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64 + 1e-17
    }

    fn draw(&mut self) -> f64 {
        let (a, b) = (self.uniform(), self.uniform());
        (-2.0 * a.ln()).sqrt() * (std::f64::consts::TAU * b).cos()
    }
}

/// An arm of `n` users: per metric, pre-period values around `base` and post values that
/// follow them (correlation about 0.7) moved by `lifts[m]` (relative).
fn arm(variant: &str, n: usize, bases: &[f64], lifts: &[f64], seed: u64) -> ArmData {
    let mut rng = Normal(seed);
    let metrics = bases
        .iter()
        .zip(lifts)
        .map(|(&base, &lift)| {
            let mut m = CoMoments::default();
            for _ in 0..n {
                let pre = base * (1.0 + 0.3 * rng.draw());
                let post = (0.7 * pre + 0.3 * base + 0.2 * base * rng.draw()) * (1.0 + lift);
                m.push(pre, post);
            }
            MetricData::Mean(m)
        })
        .collect();
    ArmData {
        variant: variant.into(),
        users: n as f64,
        metrics,
    }
}

fn metrics() -> Vec<MetricSpec> {
    encore_experiments::analysis::default_metrics()
}

#[test]
fn a_clear_win_ships_and_cuped_narrows_the_interval() {
    let bases = [20.0, 60.0, 0.3];
    let control = arm("control", 20_000, &bases, &[0.0, 0.0, 0.0], 1);
    let treatment = arm("treatment", 20_000, &bases, &[0.03, 0.0, 0.0], 2);
    let r = analyze(&metrics(), &[control, treatment], &[1.0, 1.0], 0.05, 0.001);
    assert_eq!(r.decision, Decision::Ship, "{:?}", r.reasons);
    let streams = &r.results[0];
    assert!(streams.better && streams.p_adjusted.is_some());
    assert!(
        (streams.cuped.lift - 0.03).abs() < 0.01,
        "{}",
        streams.cuped.lift
    );
    let width = |ci: (f64, f64)| ci.1 - ci.0;
    assert!(width(streams.cuped.ci) < 0.8 * width(streams.unadjusted.ci));
    assert!(
        streams.variance_reduction > 0.3,
        "{}",
        streams.variance_reduction
    );
}

#[test]
fn a_guardrail_breach_or_a_deterioration_blocks_shipping() {
    let bases = [20.0, 60.0, 0.3];
    let control = arm("control", 20_000, &bases, &[0.0, 0.0, 0.0], 3);
    let costly = arm("treatment", 20_000, &bases, &[0.03, -0.05, 0.0], 4);
    let r = analyze(
        &metrics(),
        &[control.clone(), costly],
        &[1.0, 1.0],
        0.05,
        0.001,
    );
    assert_eq!(r.decision, Decision::DoNotShip, "{:?}", r.reasons);
    assert!(r.results[1].inferior);
    let skippy = arm("treatment", 20_000, &bases, &[0.03, 0.0, 0.06], 5);
    let r = analyze(&metrics(), &[control, skippy], &[1.0, 1.0], 0.05, 0.001);
    assert_eq!(r.decision, Decision::DoNotShip, "{:?}", r.reasons);
    assert!(r.results[2].worse, "a higher skip rate is worse");
}

#[test]
fn srm_makes_the_result_untrustworthy_and_aa_is_inconclusive() {
    let bases = [20.0, 60.0, 0.3];
    let control = arm("control", 10_000, &bases, &[0.0, 0.0, 0.0], 6);
    let lopsided = arm("treatment", 10_600, &bases, &[0.03, 0.0, 0.0], 7);
    let r = analyze(
        &metrics(),
        &[control.clone(), lopsided],
        &[1.0, 1.0],
        0.05,
        0.001,
    );
    assert_eq!(r.decision, Decision::Untrustworthy);
    assert!(!r.srm_ok && r.srm_p_value < 0.001);
    let same = arm("treatment", 10_000, &bases, &[0.0, 0.0, 0.0], 8);
    let r = analyze(&metrics(), &[control, same], &[1.0, 1.0], 0.05, 0.001);
    assert_eq!(r.decision, Decision::Inconclusive, "{:?}", r.reasons);
}

#[test]
fn two_hundred_aa_tests_keep_the_false_positive_rate_near_alpha() {
    let bases = [20.0];
    let spec = [MetricSpec {
        name: "streams".into(),
        role: Role::Success,
        higher_is_better: true,
    }];
    let mut positives = 0;
    for seed in 0..200u64 {
        let a = arm("control", 2_000, &bases, &[0.0], 1_000 + 2 * seed);
        let b = arm("treatment", 2_000, &bases, &[0.0], 1_001 + 2 * seed);
        let r = analyze(&spec, &[a, b], &[1.0, 1.0], 0.05, 0.001);
        positives += usize::from(r.results[0].cuped.p_value < 0.05);
    }
    let rate = positives as f64 / 200.0;
    assert!(
        (0.02..=0.09).contains(&rate),
        "A/A false-positive rate {rate}"
    );
}

use encore_storage::metadata::testsuite::on_every_backend;

#[test]
fn lifecycle_refuses_allocation_edits_while_running() {
    on_every_backend("experiments", &lifecycle);
}

fn lifecycle(root: &std::path::Path) {
    use encore_experiments::store::{Definition, State, Store, StoreError, Treatment};
    let mut store = Store::open(root).unwrap();
    let def = |id: &str, traffic: f64| Definition {
        hypothesis: "more diverse home lists keep listeners streaming".into(),
        allocation: spec(id, "home", traffic, &[1.0, 1.0]),
        treatments: HashMap::from([
            ("v0".into(), Treatment::default()),
            (
                "v1".into(),
                Treatment {
                    diversity: Some(0.7),
                    ..Treatment::default()
                },
            ),
        ]),
        metrics: metrics(),
        planned_users: Some(40_000),
    };
    store.create(&def("mmr", 0.6)).unwrap();
    assert!(matches!(
        store.create(&def("mmr", 0.6)),
        Err(StoreError::Exists(_))
    ));
    // a draft may change anything
    store.update(&def("mmr", 0.5)).unwrap();
    store.start("mmr").unwrap();
    assert_eq!(store.get("mmr").unwrap().state, State::Running);
    // running: the allocation is frozen but for a raise of traffic; the hypothesis is not
    let mut reweighted = def("mmr", 0.5);
    reweighted.allocation.variants[1].weight = 2.0;
    let err = store.update(&reweighted).unwrap_err().to_string();
    assert!(err.contains("cannot change while it runs"), "{err}");
    let err = store.update(&def("mmr", 0.3)).unwrap_err().to_string();
    assert!(err.contains("can only rise"), "{err}");
    let plan_before = Plan::new(&store.running().unwrap(), &HashMap::new(), 0.0, "h").unwrap();
    store.update(&def("mmr", 0.55)).unwrap();
    let ramped = store.get("mmr").unwrap().definition.allocation;
    assert_eq!((ramped.traffic, ramped.ramps.len()), (0.55, 1));
    let plan_after = Plan::new(&store.running().unwrap(), &HashMap::new(), 0.0, "h").unwrap();
    for u in users(2_000) {
        let before = plan_before.assign(&u, &ctx());
        if !before.is_empty() {
            assert_eq!(before, plan_after.assign(&u, &ctx()), "{u}");
        }
    }
    let mut reworded = def("mmr", 0.55);
    reworded.hypothesis = "diversity helps".into();
    store.update(&reworded).unwrap();
    assert_eq!(store.get("mmr").unwrap().definition.allocation, ramped);
    // a second experiment that does not fit the domain cannot start
    store.create(&def("too-big", 0.5)).unwrap();
    assert!(matches!(
        store.start("too-big"),
        Err(StoreError::Assignment(_))
    ));
    let running = store.running().unwrap();
    assert_eq!(running.len(), 1);
    let plan = Plan::new(&running, &HashMap::new(), 0.0, "h").unwrap();
    assert!(users(1_000).any(|u| !plan.assign(&u, &ctx()).is_empty()));
    store.stop("mmr").unwrap();
    assert!(matches!(store.stop("mmr"), Err(StoreError::State { .. })));
    assert!(store.running().unwrap().is_empty());
    store.start("too-big").unwrap();
    assert_eq!(store.list().unwrap().len(), 2);
    // through the store: a running experiment keeps its listeners when one beside it stops
    store.create(&def("beside", 0.3)).unwrap();
    store.start("beside").unwrap();
    let plan =
        |store: &Store| Plan::new(&store.running().unwrap(), &HashMap::new(), 0.0, "h").unwrap();
    let before = plan(&store);
    store.stop("too-big").unwrap();
    let after = plan(&store);
    let mut kept = 0;
    for u in users(5_000) {
        let was = before
            .assign(&u, &ctx())
            .into_iter()
            .find(|a| a.experiment == "beside");
        let is = after
            .assign(&u, &ctx())
            .into_iter()
            .find(|a| a.experiment == "beside");
        assert_eq!(was, is, "{u}");
        kept += usize::from(is.is_some());
    }
    assert!(kept > 1_000, "{kept}");
    // a caller cannot move it: an update keeps the stored stretch
    let stretch = store.get("beside").unwrap().definition.allocation.stretch;
    assert!(!stretch.is_empty());
    let mut moved = def("beside", 0.3);
    moved.allocation.stretch = vec![[0, 300_000]];
    store.update(&moved).unwrap();
    assert_eq!(
        store.get("beside").unwrap().definition.allocation.stretch,
        stretch
    );
}
